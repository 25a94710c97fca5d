/**
 * The /proc/net/tcp and /proc/net/tcp6 reader: the socket table's fallback
 * source (netlink sock_diag is the fast one). Streams the file in chunks so a
 * table of a million sockets never sits in memory as one string.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { formatIp } from '../ip.js';

/** Kernel TCP states by their /proc hex code (defined in linux.ts). */
export { TCP_STATES } from './linux.js';

/** One row of the table, addresses already decoded. */
export interface TcpRow {
  family: 4 | 6;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** Index into TCP_STATES. */
  state: number;
  /** For LISTEN: current accept-queue length; otherwise bytes queued to receive. */
  rxQueue: number;
  /** The socket's cgroup (v2) id, when the reader was asked for owners; 0: none (TIME_WAIT, request sockets). */
  cgroup?: number;
  /** The socket's inode number (what /proc/PID/fd links name), when asked for owners; 0: none. */
  inode?: number;
}

/** Calls `onRow` for every socket of the table whose state is in `states` (all when omitted). */
export function scanProcNetTcp(root: string, onRow: (row: TcpRow) => void, states?: ReadonlySet<number>): { rows: number; errors: string[] } {
  const errors: string[] = [];
  let rows = 0;
  for (const [file, family] of [['proc/net/tcp', 4], ['proc/net/tcp6', 6]] as const) {
    let fd: number;
    try {
      fd = openSync(join(root, file), 'r');
    } catch (err) {
      errors.push(`${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
      continue;
    }
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      let carry = '';
      let header = true;
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, null);
        if (n === 0) break;
        const text = carry + buf.toString('latin1', 0, n);
        const lines = text.split('\n');
        carry = lines.pop() ?? '';
        for (const line of lines) {
          if (header) {
            header = false;
            continue;
          }
          const row = parseLine(line, family, states);
          if (row) {
            rows++;
            onRow(row);
          }
        }
      }
      if (carry) {
        const row = parseLine(carry, family, states);
        if (row) {
          rows++;
          onRow(row);
        }
      }
    } finally {
      closeSync(fd);
    }
  }
  return { rows, errors };
}

function parseLine(line: string, family: 4 | 6, states?: ReadonlySet<number>): TcpRow | undefined {
  const f = line.trim().split(/\s+/);
  if (f.length < 5) return undefined;
  const state = parseInt(f[3], 16);
  if (states && !states.has(state)) return undefined;
  const [la, lp] = f[1].split(':');
  const [ra, rp] = f[2].split(':');
  const rx = f[4].split(':')[1] ?? '0';
  return {
    family,
    localAddress: decodeAddress(la),
    localPort: parseInt(lp, 16),
    remoteAddress: decodeAddress(ra),
    remotePort: parseInt(rp, 16),
    state,
    rxQueue: parseInt(rx, 16),
  };
}

/** Decodes the kernel's hex address: 32-bit words in little-endian host order. */
export function decodeAddress(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < hex.length; w += 8) {
    const word = hex.slice(w, w + 8);
    for (let b = 6; b >= 0; b -= 2) bytes.push(parseInt(word.slice(b, b + 2), 16));
  }
  if (bytes.length === 4) return bytes.join('.');
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return formatIp({ family: 6, n });
}
