/**
 * The socket table through netlink NETLINK_SOCK_DIAG / INET_DIAG, what `ss`
 * reads: the fast source (/proc/net/tcp is the fallback). The kernel filters
 * by state (and optionally by port) before anything crosses into user space,
 * and the replies are parsed in place in one reused buffer, so a table of
 * millions of sockets costs one small object per row delivered and nothing
 * per row skipped.
 *
 * Both families are asked for in ONE dump (TCPDIAG_GETSOCK, which the kernel
 * runs with AF_UNSPEC): the kernel walks its established hash once instead
 * of once per family (each walk touches every socket of the host: ~0.3 s of
 * kernel time at a million sockets on the reference VM, a quarter of the
 * whole dump). Per-family SOCK_DIAG_BY_FAMILY requests are the fallback, and
 * the way to ask for one family.
 */
import * as ffi from './ffi.js';
import { AF_INET, AF_INET6, IPPROTO_TCP, TCP_NEW_SYN_RECV, TCP_SYN_RECV } from './linux.js';
import type { TcpRow } from './proc-net-tcp.js';
import { formatIp } from '../ip.js';
import { InvalidArgumentError } from '../errors.js';

const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const TCPDIAG_GETSOCK = 18; // the original inet_diag request: dumps AF_UNSPEC, both families in one walk
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300; // NLM_F_ROOT | NLM_F_MATCH
const NLMSG_HDRLEN = 16;
const REQ_V2_LEN = 56; // struct inet_diag_req_v2
const REQ_V1_LEN = 60; // struct inet_diag_req
const DIAG_MSG_LEN = 72; // struct inet_diag_msg
const INET_DIAG_REQ_BYTECODE = 1;
/**
 * Every state of a TCP connection or listener, 1 (ESTABLISHED) to 12
 * (NEW_SYN_RECV). Not bit 13, TCP_BOUND_INACTIVE (Linux 6.5+): asking for
 * it makes the kernel walk the bind hash as well, for sockets that are bound
 * but neither listening nor connecting. /proc/net/tcp does not show those,
 * and at a million sockets that second walk costs about 0.3 s.
 */
export const ALL_CONNECTION_STATES = 0x1ffe;

// inet_diag_bc_op codes (linux/inet_diag.h).
const BC_JMP = 1;
const BC_S_EQ = 11;
const BC_D_EQ = 12;

/** Kernel-side port filter; the given fields must all match. */
export interface SockDiagFilter {
  /** Local (source) port equals. */
  readonly localPort?: number;
  /** Remote (destination) port equals. */
  readonly remotePort?: number;
  /** Either end's port equals (ss's `sport = :P or dport = :P`). */
  readonly port?: number;
}

/** Options of scanSockDiag. */
export interface SockDiagOptions {
  /** TCP_STATES indexes to keep; the kernel drops the others. All when omitted. */
  readonly states?: ReadonlySet<number>;
  /** Address families to dump, in order; default both. */
  readonly families?: readonly (4 | 6)[];
  /** Kernel-side port filter (inet_diag bytecode). */
  readonly filter?: SockDiagFilter;
}

const BUFFER_BYTES = 1 << 20;
let shared: Buffer | undefined;
let sharedBusy = false;
let seq = 0;

/**
 * Calls `onRow` for every TCP socket the kernel reports, in the shape and
 * address spelling of scanProcNetTcp. Never throws for kernel failures:
 * netlink errors come back as strings in `errors` (rows already delivered
 * stay delivered). Throws InvalidArgumentError for bad options and
 * FfiUnavailableError when the FFI cannot be used (check ffi.ffiAvailable()).
 */
export function scanSockDiag(onRow: (row: TcpRow) => void, options: SockDiagOptions = {}): { rows: number; errors: string[] } {
  const families = [...new Set<4 | 6>(options.families ?? [4, 6])];
  for (const f of families) {
    if (f !== 4 && f !== 6) throw new InvalidArgumentError(`families: ${JSON.stringify(f)} is not 4 or 6`);
  }
  const bytecode = options.filter ? filterBytecode(options.filter) : undefined;
  const states = options.states;
  const mask = states ? stateMask(states) : ALL_CONNECTION_STATES;
  const errors: string[] = [];
  if (mask === 0 || families.length === 0) return { rows: 0, errors };

  const fd = ffi.netlinkSocket(NETLINK_SOCK_DIAG);
  if (fd < 0) return { rows: 0, errors: [`socket(AF_NETLINK, NETLINK_SOCK_DIAG): ${ffi.errnoName(fd)}`] };
  // A re-entrant scan from inside onRow gets its own buffer instead of clobbering ours.
  const own = sharedBusy;
  const buf = own ? Buffer.from(new ArrayBuffer(BUFFER_BYTES)) : (shared ??= Buffer.from(new ArrayBuffer(BUFFER_BYTES)));
  if (!own) sharedBusy = true;
  let rows = 0;
  try {
    const dump = (req: Buffer, name: string, errs: string[]): number => {
      const sent = ffi.send(fd, req);
      if (sent !== req.length) {
        errs.push(`${name}: send: ${sent < 0 ? ffi.errnoName(sent) : `short write ${sent}/${req.length}`}`);
        return 0;
      }
      return readDump(fd, buf, req.readUInt32LE(8), states, onRow, name, errs);
    };
    let perFamily = families;
    if (families.length === 2) {
      const both: string[] = [];
      rows = dump(requestBoth(mask, bytecode, ++seq), 'sock_diag', both);
      // A kernel without the old request refuses it before any row: then ask per family.
      if (rows > 0 || both.length === 0) {
        errors.push(...both);
        perFamily = [];
      }
    }
    for (const family of perFamily) rows += dump(request(family, mask, bytecode, ++seq), `sock_diag IPv${family}`, errors);
  } finally {
    ffi.close(fd);
    if (!own) sharedBusy = false;
  }
  return { rows, errors };
}

/** idiag_states for `states`; SYN_RECV also asks for request sockets (NEW_SYN_RECV), which both readers show as SYN_RECV. */
export function stateMask(states: ReadonlySet<number>): number {
  let mask = 0;
  for (const s of states) {
    if (Number.isInteger(s) && s >= 0 && s < 32) mask |= 1 << s;
  }
  if (states.has(TCP_SYN_RECV)) mask |= 1 << TCP_NEW_SYN_RECV;
  return mask >>> 0;
}

/** True when `row` passes `filter`: the same test the kernel bytecode makes, for readers that cannot filter in the kernel. */
export function matchesFilter(row: TcpRow, filter: SockDiagFilter): boolean {
  if (filter.localPort !== undefined && row.localPort !== filter.localPort) return false;
  if (filter.remotePort !== undefined && row.remotePort !== filter.remotePort) return false;
  if (filter.port !== undefined && row.localPort !== filter.port && row.remotePort !== filter.port) return false;
  return true;
}

function checkPort(name: string, port: number | undefined): void {
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    throw new InvalidArgumentError(`filter.${name}: ${JSON.stringify(port)} is not a port (0-65535)`);
  }
}

/**
 * inet_diag bytecode for `filter`: an AND of blocks, each an OR of port
 * comparisons. Every comparison's `yes` steps to the next op (the kernel's
 * audit walks the program by `yes`); a miss jumps to the next alternative or
 * past the end + 4, which rejects; a hit on a non-last alternative takes a
 * JMP to the end of its block. Undefined when the filter has no field.
 */
export function filterBytecode(filter: SockDiagFilter): Buffer | undefined {
  checkPort('localPort', filter.localPort);
  checkPort('remotePort', filter.remotePort);
  checkPort('port', filter.port);
  const blocks: [number, number][][] = [];
  if (filter.localPort !== undefined) blocks.push([[BC_S_EQ, filter.localPort]]);
  if (filter.remotePort !== undefined) blocks.push([[BC_D_EQ, filter.remotePort]]);
  if (filter.port !== undefined) blocks.push([[BC_S_EQ, filter.port], [BC_D_EQ, filter.port]]);
  if (blocks.length === 0) return undefined;
  const blockLen = (b: readonly unknown[]): number => b.length * 8 + (b.length - 1) * 4;
  const total = blocks.reduce((n, b) => n + blockLen(b), 0);
  const bc = Buffer.alloc(total);
  const op = (at: number, code: number, yes: number, no: number): void => {
    bc[at] = code;
    bc[at + 1] = yes;
    bc.writeUInt16LE(no, at + 2);
  };
  let pos = 0;
  for (const block of blocks) {
    const end = pos + blockLen(block);
    block.forEach(([code, port], i) => {
      const last = i === block.length - 1;
      op(pos, code, 8, last ? total + 4 - pos : 12);
      op(pos + 4, 0, 0, port);
      if (!last) op(pos + 8, BC_JMP, 4, end - (pos + 8));
      pos += last ? 8 : 12;
    });
  }
  return bc;
}

function header(type: number, bodyLen: number, bytecode: Buffer | undefined, sequence: number): Buffer {
  const attrLen = bytecode ? 4 + bytecode.length : 0;
  const req = Buffer.alloc(NLMSG_HDRLEN + bodyLen + attrLen);
  req.writeUInt32LE(req.length, 0);
  req.writeUInt16LE(type, 4);
  req.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6);
  req.writeUInt32LE(sequence, 8);
  if (bytecode) {
    const at = NLMSG_HDRLEN + bodyLen;
    req.writeUInt16LE(attrLen, at);
    req.writeUInt16LE(INET_DIAG_REQ_BYTECODE, at + 2);
    bytecode.copy(req, at + 4);
  }
  return req;
}

/** SOCK_DIAG_BY_FAMILY with struct inet_diag_req_v2: one family. */
function request(family: 4 | 6, mask: number, bytecode: Buffer | undefined, sequence: number): Buffer {
  const req = header(SOCK_DIAG_BY_FAMILY, REQ_V2_LEN, bytecode, sequence);
  req[16] = family === 6 ? AF_INET6 : AF_INET; // sdiag_family
  req[17] = IPPROTO_TCP; // sdiag_protocol
  req.writeUInt32LE(mask, 20); // idiag_states; id (48 bytes) stays zero: no prefilter
  return req;
}

/** TCPDIAG_GETSOCK with struct inet_diag_req: TCP of both families, one walk of the kernel's tables. */
function requestBoth(mask: number, bytecode: Buffer | undefined, sequence: number): Buffer {
  const req = header(TCPDIAG_GETSOCK, REQ_V1_LEN, bytecode, sequence);
  // idiag_family, src/dst_len, ext and id stay zero (the kernel dumps AF_UNSPEC); idiag_states follows the 48-byte id.
  req.writeUInt32LE(mask, NLMSG_HDRLEN + 52);
  return req;
}

/** Reads one dump to NLMSG_DONE; returns the rows delivered. */
function readDump(
  fd: number,
  buf: Buffer,
  sequence: number,
  states: ReadonlySet<number> | undefined,
  onRow: (row: TcpRow) => void,
  name: string,
  errors: string[],
): number {
  const u32 = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
  const i32 = new Int32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
  let rows = 0;
  for (;;) {
    const n = ffi.recv(fd, buf);
    if (n === -ffi.EINTR) continue;
    if (n <= 0) {
      errors.push(`${name}: recv: ${n < 0 ? ffi.errnoName(n) : 'netlink socket closed'}`);
      return rows;
    }
    let off = 0;
    while (off + NLMSG_HDRLEN <= n) {
      const len = u32[off >>> 2];
      const type = buf[off + 4] | (buf[off + 5] << 8);
      if (len < NLMSG_HDRLEN || off + len > n) {
        errors.push(`${name}: malformed netlink message (length ${len} at ${off} of ${n})`);
        return rows;
      }
      if (u32[(off + 8) >>> 2] === sequence) {
        if (type === NLMSG_DONE) {
          const status = len >= NLMSG_HDRLEN + 4 ? i32[(off + NLMSG_HDRLEN) >>> 2] : 0;
          if (status < 0) errors.push(`${name}: dump ended with ${ffi.errnoName(status)}`);
          return rows;
        }
        if (type === NLMSG_ERROR) {
          const err = len >= NLMSG_HDRLEN + 4 ? i32[(off + NLMSG_HDRLEN) >>> 2] : 0;
          if (err !== 0) {
            errors.push(`${name}: ${ffi.errnoName(err)}`);
            return rows;
          }
        } else if ((type === SOCK_DIAG_BY_FAMILY || type === TCPDIAG_GETSOCK) && len >= NLMSG_HDRLEN + DIAG_MSG_LEN) {
          const m = off + NLMSG_HDRLEN;
          const state = buf[m + 1];
          if (states === undefined || states.has(state)) {
            const v6 = buf[m] === AF_INET6;
            rows++;
            onRow({
              family: v6 ? 6 : 4,
              localAddress: v6 ? v6Address(buf, u32, m + 8) : v4Address(buf, u32, m + 8),
              localPort: (buf[m + 4] << 8) | buf[m + 5],
              remoteAddress: v6 ? v6Address(buf, u32, m + 24) : v4Address(buf, u32, m + 24),
              remotePort: (buf[m + 6] << 8) | buf[m + 7],
              state,
              rxQueue: u32[(m + 56) >>> 2],
            });
          }
        }
      }
      off += (len + 3) & ~3;
    }
  }
}

// Direct-mapped caches of formatted addresses: a table repeats a handful of
// addresses millions of times, so a hit costs a hash and a compare, no string.
const SLOTS = 1024;
const v4Keys = new Uint32Array(SLOTS);
const v4Text: (string | undefined)[] = new Array<string | undefined>(SLOTS).fill(undefined);
const v6Keys = new Uint32Array(SLOTS * 4);
const v6Text: (string | undefined)[] = new Array<string | undefined>(SLOTS).fill(undefined);

/** The dotted form of the IPv4 address at `at` (network order), cached. */
export function v4Address(buf: Buffer, u32: Uint32Array, at: number): string {
  const k = u32[at >>> 2];
  const slot = Math.imul(k, 0x9e3779b1) >>> 22;
  const hit = v4Text[slot];
  if (hit !== undefined && v4Keys[slot] === k) return hit;
  const text = `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
  v4Keys[slot] = k;
  v4Text[slot] = text;
  return text;
}

/** The text form of the IPv6 address at `at` (16 bytes, network order, 4-byte aligned), cached. */
export function v6Address(buf: Buffer, u32: Uint32Array, at: number): string {
  const w = at >>> 2;
  const a = u32[w];
  const b = u32[w + 1];
  const c = u32[w + 2];
  const d = u32[w + 3];
  const slot = Math.imul(a ^ Math.imul(b, 31) ^ Math.imul(c, 961) ^ Math.imul(d, 0x9e3779b1), 0x85ebca6b) >>> 22;
  const hit = v6Text[slot];
  const k = slot * 4;
  if (hit !== undefined && v6Keys[k] === a && v6Keys[k + 1] === b && v6Keys[k + 2] === c && v6Keys[k + 3] === d) return hit;
  // The miss path is ip.ts's own formatter, so both readers spell every address the same way.
  const n = (BigInt(buf.readUInt32BE(at)) << 96n) | (BigInt(buf.readUInt32BE(at + 4)) << 64n) | (BigInt(buf.readUInt32BE(at + 8)) << 32n) | BigInt(buf.readUInt32BE(at + 12));
  const text = formatIp({ family: 6, n });
  v6Keys[k] = a;
  v6Keys[k + 1] = b;
  v6Keys[k + 2] = c;
  v6Keys[k + 3] = d;
  v6Text[slot] = text;
  return text;
}
