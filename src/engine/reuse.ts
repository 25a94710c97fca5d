/**
 * The original question's experiment: k sockets bound to ONE source address
 * and port (SO_REUSEADDR), each connected to a different destination, shown
 * from the kernel's own socket table; then the counter-case (a duplicate
 * 4-tuple, and a bind without SO_REUSEADDR) measured, not assumed.
 * Library only: returns data, prints nothing. Blocks the thread in poll(2)
 * for at most `connectTimeoutMs`. The table is read through netlink sock_diag
 * (filtered in the kernel by port), /proc/net/tcp as the fallback.
 */
import * as ffi from '../kernel/ffi.js';
import { TCP_STATES } from '../kernel/linux.js';
import type { TcpRow } from '../kernel/proc-net-tcp.js';
import { scanSockets } from '../kernel/socket-table.js';
import { readInts, readText } from '../kernel/procfs.js';
import { familyOf, formatEndpoint, isLoopback, normalizeAddress, parsePorts } from '../model/address.js';
import { PortSet } from '../model/port-set.js';
import { EngineError, InvalidArgumentError } from '../errors.js';
import type { Target } from './protocol.js';

/** Where fourtuple looks for a free source port when none is given: above the usual service ports, below the ephemeral range. */
export const SOURCE_PORT_FROM = 20_000;

/** Input of runReuse. */
export interface ReuseOptions {
  /** The one source address every socket binds to. */
  readonly source: string;
  /** The one source port; omitted: the first free port from SOURCE_PORT_FROM outside the ephemeral range. */
  readonly port?: number;
  /** One connection per destination; listeners are opened on the loopback ones. */
  readonly destinations: readonly Target[];
  /** Also measure the duplicate 4-tuple and the bind without SO_REUSEADDR. */
  readonly counterCase: boolean;
  /** Bound on the whole connect phase. */
  readonly connectTimeoutMs?: number;
  /** Root of /proc (tests on fixture trees); default `/`. */
  readonly procRoot?: string;
}

/** One socket as the kernel's table shows it. */
export interface ReuseRow {
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Kernel state name, e.g. ESTABLISHED. */
  readonly state: string;
}

/** A connect that did not complete. */
export interface ReuseFailure {
  readonly destination: Target;
  /** errno name, e.g. ECONNREFUSED, or ETIMEDOUT when the bound ran out. */
  readonly errno: string;
}

/** What the kernel answered to a socket bound to the shared source port connecting to an already used destination. */
export interface CounterCase {
  readonly destination: Target;
  /** errno of bind() with SO_REUSEADDR; null: it succeeded. */
  readonly bindErrno: string | null;
  /** errno of connect(); null: it succeeded (a duplicate 4-tuple, which Linux never allows). */
  readonly errno: string | null;
  /** Numeric value of `errno` (0 when null). */
  readonly errnoValue: number;
  /** Why, in one line. */
  readonly explanation: string;
}

/** What bind() answers for the shared source port on a socket without SO_REUSEADDR. */
export interface WithoutReuseAddr {
  /** errno of bind(); null: it succeeded. */
  readonly errno: string | null;
  readonly errnoValue: number;
  readonly explanation: string;
}

/** Result of runReuse. */
export interface ReuseResult {
  /** The shared source endpoint actually used. */
  readonly source: Target;
  /** True when the port was picked here rather than given. */
  readonly portPicked: boolean;
  readonly destinations: readonly Target[];
  /** Destinations on which this run opened its own listener (the others already had a server). */
  readonly listenersOpened: number;
  /** Rows of the kernel's table whose local endpoint is the shared source, in destination order. */
  readonly connections: readonly ReuseRow[];
  /** How the table was read: netlink sock_diag (filtered in the kernel by port) or /proc/net/tcp. */
  readonly table: TableSource;
  readonly failures: readonly ReuseFailure[];
  /** Null when not asked for, or when no connection was established to repeat. */
  readonly counterCase: CounterCase | null;
  readonly withoutReuseAddr: WithoutReuseAddr | null;
  /** Sockets still in the table on the source endpoint (either end) after closing with RST. */
  readonly cleanup: { readonly left: number; readonly rows: readonly ReuseRow[] };
}

/** `127.0.0.1:7000`, `[::1]:7000`. */
export function formatTarget(t: Target): string {
  return formatEndpoint(t.address, t.port);
}

/** Ports fourtuple should not pick by itself: the ephemeral range and reserved ports, read from the live kernel. */
export function unpickablePorts(procRoot = '/'): (port: number) => boolean {
  const range = readInts(procRoot, 'proc/sys/net/ipv4/ip_local_port_range', 2);
  const [lo, hi] = range.known ? range.value : [32768, 60999];
  const reservedText = readText(procRoot, 'proc/sys/net/ipv4/ip_local_reserved_ports');
  let reserved = new PortSet();
  try {
    if (reservedText.known && reservedText.value.trim() !== '') reserved = parsePorts(reservedText.value.trim());
  } catch {
    // An unreadable list only means a reserved port might be picked; bind() still decides.
  }
  return (port) => (port >= lo && port <= hi) || reserved.has(port);
}

/**
 * The first `count` ports from `from` that `address` can bind without
 * SO_REUSEADDR (so nothing at all holds them, not even TIME_WAIT), skipping
 * `avoid`. Each is probed with a socket that is bound and closed at once.
 */
export function pickFreePorts(address: string, count: number, from: number, avoid: (port: number) => boolean): number[] {
  const family = familyOf(address);
  const out: number[] = [];
  for (let port = from; out.length < count && port <= 65535; port++) {
    if (avoid(port)) continue;
    const fd = ffi.socket(family, true);
    if (fd < 0) throw new EngineError(`cannot open a socket to probe port ${port}: ${ffi.errnoName(fd)}`);
    if (family === 6) ffi.setIpv6Only(fd, true);
    const r = ffi.bind(fd, ffi.sockaddr(address, port));
    ffi.close(fd);
    if (r === 0) out.push(port);
    else if (r !== -ffi.EADDRINUSE) throw new EngineError(`cannot bind ${formatTarget({ address, port })}: ${ffi.errnoName(r)}${r === -ffi.EADDRNOTAVAIL ? ' (not an address of this host)' : ''}`);
  }
  if (out.length < count) throw new EngineError(`only ${out.length} of ${count} free ports on ${address} from ${from}`);
  return out;
}

function rowOf(r: TcpRow): ReuseRow {
  return { localAddress: r.localAddress, localPort: r.localPort, remoteAddress: r.remoteAddress, remotePort: r.remotePort, state: TCP_STATES[r.state] || `state ${r.state}` };
}

/** Where the rows came from. */
export type TableSource = 'sock_diag' | 'proc';

/** ss's state names, as the kernel's TCP_STATES spell them. */
/** Every socket of the table with `source` at either end (`local`: as the local end). */
function tableAt(procRoot: string, source: Target): { local: ReuseRow[]; any: ReuseRow[]; via: TableSource } {
  const isSource = (a: string, p: number): boolean => a === source.address && p === source.port;
  const local: ReuseRow[] = [];
  const any: ReuseRow[] = [];
  // Filtered by port in the kernel (sock_diag): a host holding a million sockets answers in a second.
  const { errors, source: via } = scanSockets(
    (r) => {
      const isLocal = isSource(r.localAddress, r.localPort);
      if (isLocal) local.push(rowOf(r));
      if (isLocal || isSource(r.remoteAddress, r.remotePort)) any.push(rowOf(r));
    },
    { root: procRoot, filter: { port: source.port } },
  );
  if (errors.length === 2 && local.length === 0 && any.length === 0) throw new EngineError(`cannot read the socket table: ${errors.join(', ')}`);
  return { local, any, via: via === 'netlink' ? 'sock_diag' : 'proc' };
}

function sleep(msec: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, msec);
}

function counterExplanation(errno: string | null, source: Target, dest: Target): string {
  const tuple = `${formatTarget(source)} -> ${formatTarget(dest)}`;
  switch (errno) {
    case 'EADDRNOTAVAIL':
      return `the 4-tuple ${tuple} is already ESTABLISHED; bind() allowed the shared port (SO_REUSEADDR), but connect() refuses a 4-tuple that exists, because it is what tells connections apart`;
    case 'EADDRINUSE':
      return `bind() refused the shared port ${formatTarget(source)} itself, before any destination was known`;
    case null:
      return `the kernel accepted a second connection with the 4-tuple ${tuple}`;
    default:
      return `unexpected answer for the duplicate 4-tuple ${tuple}`;
  }
}

function noReuseExplanation(errno: string | null, source: Target): string {
  switch (errno) {
    case 'EADDRINUSE':
      return `bind() checks the local address and port alone, before any destination is known, and refuses ${formatTarget(source)} while other sockets hold it unless all of them (this one too) set SO_REUSEADDR`;
    case null:
      return `bind() of ${formatTarget(source)} succeeded without SO_REUSEADDR`;
    default:
      return `unexpected answer to bind() of ${formatTarget(source)} without SO_REUSEADDR`;
  }
}

/**
 * Runs the experiment and closes everything it opened with RST (SO_LINGER 0),
 * so it leaves no TIME_WAIT. Throws InvalidArgumentError for bad options and
 * EngineError when the source cannot be bound or a listener cannot be opened.
 */
export function runReuse(options: ReuseOptions): ReuseResult {
  const procRoot = options.procRoot ?? '/';
  const timeoutMs = options.connectTimeoutMs ?? 3_000;
  const address = normalizeAddress(options.source, 'source');
  const family = familyOf(address);
  const destinations = options.destinations.map((d) => ({ address: normalizeAddress(d.address, 'destination'), port: d.port }));
  if (destinations.length === 0) throw new InvalidArgumentError('no destination: expected at least one');
  for (const d of destinations) {
    if (familyOf(d.address) !== family) throw new InvalidArgumentError(`destination ${formatTarget(d)} is IPv${familyOf(d.address)} but the source ${address} is IPv${family}`);
  }
  const keys = new Set(destinations.map(formatTarget));
  if (keys.size !== destinations.length) throw new InvalidArgumentError('destinations repeat: each connection needs its own destination');

  const need = 3 * destinations.length + 16;
  const lim = ffi.getNofileLimit();
  if (lim.soft < need) ffi.setNofileLimit(Math.min(Math.max(need, lim.soft), lim.hard), lim.hard);

  const listeners: number[] = [];
  const accepted: number[] = [];
  const clients: number[] = [];
  const extra: number[] = [];
  const closeAll = (): void => {
    // Clients first: their RST also resets the accepting ends; every fd has SO_LINGER 0 (accepted ones inherit it).
    for (const list of [clients, extra, accepted, listeners]) {
      for (const fd of list.splice(0)) ffi.close(fd);
    }
  };

  try {
    let port = options.port;
    const portPicked = port === undefined;
    if (port === undefined) {
      const avoid = unpickablePorts(procRoot);
      const taken = new Set(destinations.map((d) => d.port));
      port = pickFreePorts(address, 1, SOURCE_PORT_FROM, (p) => avoid(p) || taken.has(p))[0];
    }
    const source: Target = { address, port };
    if (keys.has(formatTarget(source))) throw new InvalidArgumentError(`the source ${formatTarget(source)} is also a destination`);
    const src = ffi.sockaddr(address, port);

    // Listeners on the loopback destinations; an address:port that already has a server is used as it is.
    let listenersOpened = 0;
    for (const d of destinations) {
      if (!isLoopback(d.address)) continue;
      const fd = ffi.socket(family, true);
      if (fd < 0) throw new EngineError(`cannot open a listening socket: ${ffi.errnoName(fd)}`);
      ffi.setReuseAddr(fd, true);
      ffi.setLinger0(fd);
      if (family === 6) ffi.setIpv6Only(fd, true);
      const b = ffi.bind(fd, ffi.sockaddr(d.address, d.port));
      if (b === -ffi.EADDRINUSE) {
        ffi.close(fd);
        continue;
      }
      const l = b < 0 ? b : ffi.listen(fd, 16);
      if (l < 0) {
        ffi.close(fd);
        throw new EngineError(`cannot listen on ${formatTarget(d)}: ${ffi.errnoName(l)}`);
      }
      listeners.push(fd);
      listenersOpened++;
    }

    // k clients, every one bound to the same source address and port.
    const failures: ReuseFailure[] = [];
    const pending = new ffi.PollSet(destinations.length);
    const slotOf: number[] = [];
    for (const d of destinations) {
      const fd = ffi.socket(family, true);
      if (fd < 0) throw new EngineError(`cannot open a client socket: ${ffi.errnoName(fd)}`);
      clients.push(fd);
      ffi.setReuseAddr(fd, true);
      ffi.setLinger0(fd);
      if (family === 6) ffi.setIpv6Only(fd, true);
      const b = ffi.bind(fd, src);
      if (b < 0) throw new EngineError(`cannot bind ${formatTarget(source)} with SO_REUSEADDR: ${ffi.errnoName(b)}${b === -ffi.EADDRNOTAVAIL ? ' (not an address of this host)' : ''}`);
      const c = ffi.connect(fd, ffi.sockaddr(d.address, d.port));
      if (c === -ffi.EINPROGRESS) {
        pending.set(slotOf.length, fd, ffi.POLLOUT);
        slotOf.push(clients.length - 1);
      } else if (c < 0) {
        failures.push({ destination: d, errno: ffi.errnoName(c) });
      }
    }
    const deadline = Date.now() + timeoutMs;
    const open = new Set(slotOf.keys());
    while (open.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const n = pending.poll(slotOf.length, left);
      if (n < 0 && n !== -ffi.EINTR) throw new EngineError(`poll: ${ffi.errnoName(n)}`);
      for (const slot of [...open]) {
        if (pending.revents(slot) === 0) continue;
        const i = slotOf[slot];
        const err = ffi.socketError(clients[i]);
        if (err !== 0) failures.push({ destination: destinations[i], errno: ffi.errnoName(err) });
        pending.set(slot, -1, 0);
        open.delete(slot);
      }
    }
    for (const slot of open) failures.push({ destination: destinations[slotOf[slot]], errno: 'ETIMEDOUT' });

    // Own the accepting ends so they are closed by us, not left to the listener's close.
    for (const lfd of listeners) {
      for (let fd = ffi.accept4(lfd); fd >= 0; fd = ffi.accept4(lfd)) accepted.push(fd);
    }

    const order = new Map(destinations.map((d, i) => [formatTarget(d), i]));
    const rank = (r: ReuseRow): number => order.get(formatTarget({ address: r.remoteAddress, port: r.remotePort })) ?? destinations.length;
    const seen = tableAt(procRoot, source);
    const connections = seen.local.sort((a, b) => rank(a) - rank(b));

    let counterCase: CounterCase | null = null;
    let withoutReuseAddr: WithoutReuseAddr | null = null;
    const failed = new Set(failures.map((f) => formatTarget(f.destination)));
    const used = destinations.find((d) => !failed.has(formatTarget(d)));
    if (options.counterCase && used !== undefined) {
      const fd = ffi.socket(family, true);
      if (fd < 0) throw new EngineError(`cannot open a socket: ${ffi.errnoName(fd)}`);
      extra.push(fd);
      ffi.setReuseAddr(fd, true);
      ffi.setLinger0(fd);
      if (family === 6) ffi.setIpv6Only(fd, true);
      const b = ffi.bind(fd, src);
      let r = b;
      if (b === 0) {
        r = ffi.connect(fd, ffi.sockaddr(used.address, used.port));
        if (r === -ffi.EINPROGRESS) {
          const ps = new ffi.PollSet(1);
          ps.set(0, fd, ffi.POLLOUT);
          r = ps.poll(1, timeoutMs) > 0 ? -ffi.socketError(fd) : -ffi.ETIMEDOUT;
        }
      }
      const errno = r < 0 ? ffi.errnoName(r) : null;
      counterCase = { destination: used, bindErrno: b < 0 ? ffi.errnoName(b) : null, errno, errnoValue: -Math.min(r, 0), explanation: counterExplanation(errno, source, used) };

      const plain = ffi.socket(family, true);
      if (plain < 0) throw new EngineError(`cannot open a socket: ${ffi.errnoName(plain)}`);
      extra.push(plain);
      ffi.setLinger0(plain);
      if (family === 6) ffi.setIpv6Only(plain, true);
      const nb = ffi.bind(plain, src);
      const nbErrno = nb < 0 ? ffi.errnoName(nb) : null;
      withoutReuseAddr = { errno: nbErrno, errnoValue: -Math.min(nb, 0), explanation: noReuseExplanation(nbErrno, source) };
    }

    closeAll();
    // Loopback RSTs are processed within the close() calls; the retries only cover a slow softirq.
    let after = tableAt(procRoot, source).any;
    for (let i = 0; i < 50 && after.length > 0; i++) {
      sleep(20);
      after = tableAt(procRoot, source).any;
    }
    return { source, portPicked, destinations, listenersOpened, connections, table: seen.via, failures, counterCase, withoutReuseAddr, cleanup: { left: after.length, rows: after } };
  } finally {
    closeAll();
  }
}
