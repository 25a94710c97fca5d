/**
 * A known socket population on loopback, and the socket table as the three
 * readers see it (sock_diag, /proc/net/tcp, `ss -Htan`). Imported by
 * socket-table.test.ts for the host part; run as a script inside
 * `unshare -n` (see netns.ts) for the part that leaves TIME_WAIT, which dies
 * with the namespace instead of lingering on the host.
 */
import { spawnSync, execFileSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import * as ffi from '../../dist/kernel/ffi.js';
import { scanProcNetTcp, TCP_STATES, type TcpRow } from '../../dist/kernel/proc-net-tcp.js';
import { scanSockDiag, type SockDiagFilter } from '../../dist/kernel/sock-diag.js';
import { scanSockets } from '../../dist/kernel/socket-table.js';
import { iteratorMask, scanTcpIterator, tcpIterator } from '../../dist/kernel/bpf-iter.js';
import { ALL_CONNECTION_STATES, stateMask } from '../../dist/kernel/sock-diag.js';
import { formatIp, parseIp } from '../../dist/ip.js';

/** One row as a comparable string: family, endpoints, state name, receive queue. */
export function rowKey(r: TcpRow): string {
  return `${r.family} ${r.localAddress} ${r.localPort} ${r.remoteAddress} ${r.remotePort} ${TCP_STATES[r.state] || r.state} ${r.rxQueue}`;
}

/** Sockets this population opened, and how to close them all with RST. */
export interface Population {
  /** Ports of its listeners: every socket it made has one of them at one end. */
  ports: number[];
  /** The rows it must produce, as rowKey strings (TIME_WAIT included when asked). */
  expected: string[];
  close(): void;
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function check(what: string, r: number): number {
  if (r < 0) throw new Error(`${what}: ${ffi.errnoName(r)}`);
  return r;
}

/**
 * Opens on 127.0.0.1 and ::1: listeners on port 0, established pairs, an
 * IPv4 client of a dual-stack `::` listener (its accepted end is
 * ::ffff:127.0.0.1), a listener with two unaccepted connections (accept
 * queue 2), 5 unread bytes on one accepted end, `bulk` more pairs, and with
 * `timeWait` one pair closed client first with FIN (client left in TIME_WAIT)
 * and one whose server never closes (client FIN_WAIT2, server CLOSE_WAIT).
 */
export function openPopulation(options: { bulk: number; timeWait: boolean }): Population {
  const fds: number[] = [];
  const ports: number[] = [];
  const expected: string[] = [];
  const own = (fd: number): number => {
    fds.push(check('socket', fd));
    return fd;
  };
  const listener = (family: 4 | 6, address: string, backlog: number, linger = true, v6only = true): number => {
    const fd = own(ffi.socket(family, true));
    if (linger) ffi.setLinger0(fd);
    if (family === 6) ffi.setIpv6Only(fd, v6only);
    check(`bind ${address}`, ffi.bind(fd, ffi.sockaddr(address, 0)));
    check('listen', ffi.listen(fd, backlog));
    const name = ffi.getsockname(fd);
    if (typeof name === 'number') throw new Error(`getsockname: ${ffi.errnoName(name)}`);
    ports.push(name.port);
    return name.port;
  };
  const connect = (family: 4 | 6, address: string, port: number, linger = true): { fd: number; port: number } => {
    const fd = ffi.socket(family, true);
    check('socket', fd);
    if (linger) {
      ffi.setLinger0(fd);
      fds.push(fd);
    }
    const c = ffi.connect(fd, ffi.sockaddr(address, port));
    if (c === -ffi.EINPROGRESS) {
      const ps = new ffi.PollSet(1);
      ps.set(0, fd, ffi.POLLOUT);
      if (ps.poll(1, 3000) !== 1) throw new Error(`connect ${address}:${port}: timed out`);
      const err = ffi.socketError(fd);
      if (err !== 0) throw new Error(`connect ${address}:${port}: ${ffi.errnoName(err)}`);
    } else {
      check(`connect ${address}:${port}`, c);
    }
    const name = ffi.getsockname(fd);
    if (typeof name === 'number') throw new Error(`getsockname: ${ffi.errnoName(name)}`);
    return { fd, port: name.port };
  };
  const listenerFd = (): number => fds[fds.length - 1];
  const acceptOne = (lfd: number, linger = true): number => {
    for (let i = 0; i < 300; i++) {
      const fd = ffi.accept4(lfd);
      if (fd >= 0) {
        if (linger) {
          ffi.setLinger0(fd);
          fds.push(fd);
        }
        return fd;
      }
      if (fd !== -ffi.EAGAIN) check('accept4', fd);
      sleep(10);
    }
    throw new Error('accept4: nothing to accept');
  };
  const row = (family: 4 | 6, la: string, lp: number, ra: string, rp: number, state: string, rx = 0): void => {
    expected.push(`${family} ${la} ${lp} ${ra} ${rp} ${state} ${rx}`);
  };
  const pair = (family: 4 | 6, address: string): void => {
    const p = listener(family, address, 64);
    const lfd = listenerFd();
    row(family, address, p, family === 4 ? '0.0.0.0' : '::', 0, 'LISTEN');
    const c = connect(family, address, p);
    acceptOne(lfd);
    row(family, address, c.port, address, p, 'ESTABLISHED');
    row(family, address, p, address, c.port, 'ESTABLISHED');
  };

  try {
    pair(4, '127.0.0.1');
    pair(6, '::1');

    // Bound but neither listening nor connecting: not in the table of any reader
    // (sock_diag lists such sockets only when asked for state 13, BOUND_INACTIVE).
    const bound = own(ffi.socket(4, true));
    check('bind 127.0.0.1:0', ffi.bind(bound, ffi.sockaddr('127.0.0.1', 0)));

    // Dual-stack listener: the accepted end of an IPv4 client is AF_INET6, ::ffff:127.0.0.1.
    const dual = listener(6, '::', 64, true, false);
    const dualFd = listenerFd();
    row(6, '::', dual, '::', 0, 'LISTEN');
    const mc = connect(4, '127.0.0.1', dual);
    acceptOne(dualFd);
    row(4, '127.0.0.1', mc.port, '127.0.0.1', dual, 'ESTABLISHED');
    row(6, '::ffff:127.0.0.1', dual, '::ffff:127.0.0.1', mc.port, 'ESTABLISHED');

    // Accept queue of 2, and 5 bytes nobody reads.
    const q = listener(4, '127.0.0.1', 8);
    row(4, '127.0.0.1', q, '0.0.0.0', 0, 'LISTEN', 2);
    for (let i = 0; i < 2; i++) {
      const c = connect(4, '127.0.0.1', q);
      row(4, '127.0.0.1', c.port, '127.0.0.1', q, 'ESTABLISHED');
      row(4, '127.0.0.1', q, '127.0.0.1', c.port, 'ESTABLISHED');
    }
    const d = listener(6, '::1', 8);
    const dFd = listenerFd();
    row(6, '::1', d, '::', 0, 'LISTEN');
    const dc = connect(6, '::1', d);
    acceptOne(dFd);
    check('send', ffi.send(dc.fd, Buffer.from('hello')));
    row(6, '::1', dc.port, '::1', d, 'ESTABLISHED');
    row(6, '::1', d, '::1', dc.port, 'ESTABLISHED', 5);

    if (options.bulk > 0) {
      const b = listener(4, '127.0.0.1', 4096);
      const bFd = listenerFd();
      row(4, '127.0.0.1', b, '0.0.0.0', 0, 'LISTEN');
      for (let i = 0; i < options.bulk; i++) {
        const c = connect(4, '127.0.0.1', b);
        acceptOne(bFd);
        row(4, '127.0.0.1', c.port, '127.0.0.1', b, 'ESTABLISHED');
        row(4, '127.0.0.1', b, '127.0.0.1', c.port, 'ESTABLISHED');
      }
    }

    if (options.timeWait) {
      // No SO_LINGER on this pair: the client's FIN goes first, the server answers with its own FIN.
      const t = listener(4, '127.0.0.1', 8, false);
      const tFd = listenerFd();
      row(4, '127.0.0.1', t, '0.0.0.0', 0, 'LISTEN');
      const c = connect(4, '127.0.0.1', t, false);
      const s = acceptOne(tFd, false);
      ffi.close(c.fd);
      sleep(20);
      ffi.close(s);
      row(4, '127.0.0.1', c.port, '127.0.0.1', t, 'TIME_WAIT');
      // The client closes first and the server never does: the server sits in CLOSE_WAIT, the client,
      // an orphan now, becomes a timewait socket whose substate is FIN_WAIT2 (every reader says FIN_WAIT2).
      const c2 = connect(4, '127.0.0.1', t, false);
      const s2 = acceptOne(tFd, false);
      fds.push(s2);
      ffi.close(c2.fd);
      row(4, '127.0.0.1', c2.port, '127.0.0.1', t, 'FIN_WAIT2');
      // Its receive queue says 1: the FIN takes a sequence number the reader has not consumed.
      row(4, '127.0.0.1', t, '127.0.0.1', c2.port, 'CLOSE_WAIT', 1);
    }
  } catch (err) {
    for (const fd of fds.splice(0)) ffi.close(fd);
    throw err;
  }
  return {
    ports,
    expected,
    close: () => {
      for (const fd of fds.splice(0).reverse()) ffi.close(fd);
    },
  };
}

/** ss's state names, as TCP_STATES spells them. */
const SS_STATES: Record<string, string> = {
  'ESTAB': 'ESTABLISHED', 'SYN-SENT': 'SYN_SENT', 'SYN-RECV': 'SYN_RECV', 'FIN-WAIT-1': 'FIN_WAIT1', 'FIN-WAIT-2': 'FIN_WAIT2',
  'TIME-WAIT': 'TIME_WAIT', 'UNCONN': 'CLOSE', 'CLOSE-WAIT': 'CLOSE_WAIT', 'LAST-ACK': 'LAST_ACK', 'LISTEN': 'LISTEN', 'CLOSING': 'CLOSING',
};

function ssEndpoint(text: string, family: 4 | 6): [string, number] {
  const colon = text.lastIndexOf(':');
  let address = text.slice(0, colon).replace(/^\[|\]$/g, '');
  const pct = address.indexOf('%');
  if (pct >= 0) address = address.slice(0, pct);
  if (address === '*') address = family === 4 ? '0.0.0.0' : '::';
  const ip = parseIp(address);
  if (!ip) throw new Error(`ss printed an address we cannot parse: ${text}`);
  const port = text.slice(colon + 1);
  return [formatIp(ip), port === '*' ? 0 : Number(port)];
}

/** `ss -Htan` (IPv4 then IPv6, so `*` has a family), as rowKey strings. */
export function ssRows(): string[] {
  const out: string[] = [];
  for (const family of [4, 6] as const) {
    const r = spawnSync('ss', ['-Htan', `-${family}`], { encoding: 'utf8', maxBuffer: 256 << 20 });
    if (r.status !== 0) throw new Error(`ss failed: ${r.stderr}`);
    for (const line of r.stdout.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length < 5) continue;
      const [la, lp] = ssEndpoint(f[3], family);
      const [ra, rp] = ssEndpoint(f[4], family);
      out.push(`${family} ${la} ${lp} ${ra} ${rp} ${SS_STATES[f[0]] ?? f[0]} ${Number(f[1])}`);
    }
  }
  return out;
}

/** Every row of sock_diag, as rowKey strings. */
export function diagRows(options: { states?: ReadonlySet<number>; families?: (4 | 6)[]; filter?: SockDiagFilter } = {}): { rows: string[]; count: number; errors: string[] } {
  const rows: string[] = [];
  const r = scanSockDiag((row) => rows.push(rowKey(row)), options);
  return { rows, count: r.rows, errors: r.errors };
}

/** Every row of the BPF iterator (for `states`, all when omitted), as rowKey strings; `skip` says why it cannot run here. */
export function bpfRows(states?: ReadonlySet<number>, unread = true): { rows: string[]; count: number; errors: string[]; skip?: string } {
  const it = tcpIterator(iteratorMask(states ? stateMask(states) : ALL_CONNECTION_STATES), unread);
  if ('reason' in it) return { rows: [], count: 0, errors: [], skip: it.reason };
  const rows: string[] = [];
  const r = scanTcpIterator(it.link, (row) => rows.push(rowKey(row)));
  return { rows, count: r.rows, errors: r.errors };
}

/** Every row of /proc/net/tcp{,6}, as rowKey strings. */
export function procRows(): { rows: string[]; count: number; errors: string[] } {
  const rows: string[] = [];
  const r = scanProcNetTcp('/', (row) => rows.push(rowKey(row)));
  return { rows, count: r.rows, errors: r.errors };
}

/** What the namespace run prints. */
export interface NetnsTables {
  expected: string[];
  ports: number[];
  diag: { rows: string[]; count: number; errors: string[] };
  bpf: { rows: string[]; count: number; errors: string[]; skip?: string };
  bpfEstablished: { rows: string[]; count: number; errors: string[]; skip?: string };
  bpfClosing: { rows: string[]; count: number; errors: string[]; skip?: string };
  bpfNoUnread: { rows: string[]; count: number; errors: string[]; skip?: string };
  proc: { rows: string[]; count: number; errors: string[] };
  ss: string[];
  listenOnly: { rows: string[]; count: number; errors: string[] };
  timeWaitOnly: { rows: string[]; count: number; errors: string[] };
  v6Only: { rows: string[]; count: number; errors: string[] };
  byPort: { rows: string[]; count: number; errors: string[] };
  byLocalPort: { rows: string[]; count: number; errors: string[] };
  byRemotePort: { rows: string[]; count: number; errors: string[] };
  facade: { source: string; count: number };
  facadeNoDiag: { source: string; count: number };
  facadeNoBpf: { source: string; count: number };
  facadeListeners: { source: string; count: number };
  facadeByPortNoDiag: { rows: string[]; source: string };
}

function main(): void {
  const args = JSON.parse(process.argv[2] ?? '{}') as { bulk?: number };
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  const lim = ffi.getNofileLimit();
  ffi.setNofileLimit(lim.hard, lim.hard);
  const pop = openPopulation({ bulk: args.bulk ?? 0, timeWait: true });
  // The FIN exchange runs in softirq; wait until the client's TIME_WAIT is in the table.
  for (let i = 0; i < 100 && !procRows().rows.some((r) => r.includes('TIME_WAIT')); i++) sleep(20);
  const port = pop.ports[0];
  const count = (source: string, n: number): { source: string; count: number } => ({ source, count: n });
  const facade = scanSockets(() => {});
  const facadeListeners = scanSockets(() => {}, { states: new Set([10]) });
  process.env.FOURTUPLE_NO_BPF = '1';
  const facadeNoBpf = scanSockets(() => {});
  delete process.env.FOURTUPLE_NO_BPF;
  process.env.FOURTUPLE_NO_SOCK_DIAG = '1';
  const facadeNoDiag = scanSockets(() => {});
  const byPortNoDiag: string[] = [];
  const fp = scanSockets((r) => byPortNoDiag.push(rowKey(r)), { filter: { port } });
  delete process.env.FOURTUPLE_NO_SOCK_DIAG;
  const result: NetnsTables = {
    expected: pop.expected,
    ports: pop.ports,
    diag: diagRows(),
    bpf: bpfRows(),
    bpfEstablished: bpfRows(new Set([1])),
    bpfClosing: bpfRows(new Set([5, 6, 8])),
    bpfNoUnread: bpfRows(undefined, false),
    proc: procRows(),
    ss: ssRows(),
    listenOnly: diagRows({ states: new Set([10]) }),
    timeWaitOnly: diagRows({ states: new Set([6]) }),
    v6Only: diagRows({ families: [6] }),
    byPort: diagRows({ filter: { port } }),
    byLocalPort: diagRows({ filter: { localPort: port } }),
    byRemotePort: diagRows({ filter: { remotePort: port } }),
    facade: count(facade.source, facade.rows),
    facadeNoDiag: count(facadeNoDiag.source, facadeNoDiag.rows),
    facadeNoBpf: count(facadeNoBpf.source, facadeNoBpf.rows),
    facadeListeners: count(facadeListeners.source, facadeListeners.rows),
    facadeByPortNoDiag: { rows: byPortNoDiag, source: fp.source },
  };
  pop.close();
  process.stdout.write(JSON.stringify(result));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
