/**
 * Port pressure per destination, aggregated from a stream of socket-table
 * rows. Pure: no I/O. Memory is one small counter object per destination key
 * (source, destination, port), one per listener, one port bitmap (8 KiB)
 * per source address, and the local port of each client-side socket, two
 * bytes in its destination's array (what the watch view compares between
 * scans to count new connections); never an object per socket.
 *
 * Client or server side. A socket is on the server side when its local
 * address and port belong to a listener (the same address, or the wildcard
 * of its family, with the same port); every other non-listening socket is on
 * the client side and holds a source port toward its remote address and port.
 * Listeners must therefore be known before the sockets that use them: feed
 * every LISTEN row first (scan the table twice: LISTEN only, then the rest).
 * A connection whose listener has closed looks like a client socket.
 *
 * What the table cannot tell. It shows the 4-tuple, not how the source port
 * was chosen. The per-destination capacity assumes connect() chose it (or
 * IP_BIND_ADDRESS_NO_PORT), which gives every (source, destination, port) its
 * own ephemeral pool. A program that calls bind(source, 0) before connect()
 * draws from one pool per source address shared by all its destinations: for
 * that case each source address gets the number of distinct ephemeral ports
 * in use on it (`sources`). A destination reached from ports outside the
 * ephemeral range is counted against the explicit pool (every unprivileged,
 * unreserved port not listened on), since only an explicit bind() puts them
 * there.
 */
import type { Fact } from '../kernel/fact.js';
import type { KernelFacts, Listener } from '../kernel/facts.js';
import { TCP_ESTABLISHED, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_STATES, TCP_SYN_RECV, TCP_SYN_SENT, TCP_TIME_WAIT } from '../kernel/linux.js';
import type { TcpRow } from '../kernel/proc-net-tcp.js';
import { KERNEL_BYTES_PER_SOCKET } from './costs.js';
import { ephemeralPool, explicitPool } from './limits.js';

/** TCP state codes, by name. */
export const STATE = {
  ESTABLISHED: TCP_ESTABLISHED,
  SYN_SENT: TCP_SYN_SENT,
  SYN_RECV: TCP_SYN_RECV,
  TIME_WAIT: TCP_TIME_WAIT,
  LISTEN: TCP_LISTEN,
  NEW_SYN_RECV: TCP_NEW_SYN_RECV,
} as const;

/** A TCP state name (`ESTABLISHED`, `TIME_WAIT`, ...). */
export type StateName = Exclude<(typeof TCP_STATES)[number], ''>;

/** The facts the result needs (a subset of KernelFacts). */
export type PressureFacts = Partial<Pick<KernelFacts, 'capabilities'>> & Pick<KernelFacts, 'portRange' | 'reservedPorts' | 'unprivilegedPortStart' | 'fileNr' | 'fileMax' | 'memAvailable'>;

/** How the aggregator counts. */
export interface PortPressureOptions {
  /** The ephemeral range, to count source ports inside and outside it; null when unknown. */
  readonly range: { lo: number; hi: number } | null;
  /** Count only sockets in these states (LISTEN rows still classify sockets). All when omitted. */
  readonly states?: ReadonlySet<number>;
  /** Keep only destinations for which this returns true (address as printed, port). */
  readonly match?: (address: string, port: number) => boolean;
  /** Keep each destination's local ports (`localPorts`), which only a view comparing scans needs: 2 bytes a socket. */
  readonly localPorts?: boolean;
  /** Count each destination's sockets by the rows' `cgroup` (`cgroups`). */
  readonly cgroups?: boolean;
  /** Keep each destination's socket inode numbers (`inodes`), to name their processes: 8 bytes a socket. */
  readonly inodes?: boolean;
}

/** One destination as seen from one source address. */
export interface DestinationPressure {
  readonly source: string;
  readonly destination: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** Sockets holding a source port toward it: every state but LISTEN, TIME_WAIT included. */
  readonly used: number;
  /** Source ports the kernel may use toward it; null when the ephemeral range is unknown. */
  readonly capacity: number | null;
  /** `ephemeral` (connect() chooses) or `explicit` (some source ports are outside the range). */
  readonly pool: 'ephemeral' | 'explicit';
  /** 100 × (capacity − used) / capacity; null when capacity is unknown or 0. */
  readonly headroom: number | null;
  /** 100 × used / capacity; null when capacity is unknown or 0. */
  readonly share: number | null;
  readonly timeWait: number;
  /** Sockets by state name, states with none left out. */
  readonly states: Readonly<Partial<Record<StateName, number>>>;
  /** Source ports inside and outside the ephemeral range (all inside when the range is unknown). */
  readonly inRange: number;
  readonly outOfRange: number;
  /** The local ports of its sockets, in no order: those not in TIME_WAIT, and those in TIME_WAIT. */
  readonly localPorts: LocalPorts;
  /** With the `cgroups` option: its sockets by cgroup id (0: none, TIME_WAIT and request sockets), most first. */
  readonly cgroups?: readonly { readonly id: number; readonly sockets: number }[];
  /** With the `inodes` option: its sockets' inode numbers (0 left out). */
  readonly inodes?: readonly number[];
}

/** Local ports toward one destination (views of one buffer). */
export interface LocalPorts {
  readonly live: Uint16Array;
  readonly timeWait: Uint16Array;
}

/** One listening address and port (several sockets with SO_REUSEPORT count as one). */
export interface ListenerLoad {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** LISTEN sockets on it (more than one with SO_REUSEPORT). */
  readonly sockets: number;
  /** Connections waiting in the accept queue (summed over its sockets). */
  readonly acceptQueue: number;
  /** ESTABLISHED sockets whose local address and port are this listener's. */
  readonly accepted: number;
  /** Its other server-side sockets (SYN_RECV, CLOSE_WAIT, TIME_WAIT, ...). */
  readonly other: number;
}

/** The pool bind(source, 0) draws from: distinct ephemeral ports in use on a source address. */
export interface SourcePool {
  readonly source: string;
  readonly portsInUse: number;
  readonly capacity: number | null;
  readonly headroom: number | null;
}

/** Totals over every counted socket. */
export interface PressureTotals {
  readonly sockets: number;
  readonly byState: Readonly<Partial<Record<StateName, number>>>;
  readonly clientSide: number;
  readonly serverSide: number;
  readonly listening: number;
  readonly destinations: number;
  /** Sockets that are full sockets with a descriptor, at most (not TIME_WAIT or SYN_RECV request socks). */
  readonly fullSockets: number;
  /** fs.file-nr allocated handles and fs.file-max; null when unknown. */
  readonly descriptors: { readonly sockets: number; readonly allocated: number; readonly max: number } | null;
  /** Kernel memory of the full sockets at KERNEL_BYTES_PER_SOCKET each, and MemAvailable; null when unknown. */
  readonly memory: { readonly kernelBytes: number; readonly available: number } | null;
}

/** The aggregated table. */
export interface PortPressureReport {
  /** Sorted by pressure: share used, highest first. */
  readonly destinations: readonly DestinationPressure[];
  /** Sorted by accepted connections, most first. */
  readonly listeners: readonly ListenerLoad[];
  /** Sorted by ports in use, most first. */
  readonly sources: readonly SourcePool[];
  readonly totals: PressureTotals;
  /** The ephemeral and explicit pool sizes used for capacity; null when unknown. */
  readonly pools: { readonly ephemeral: number | null; readonly explicit: number | null };
}

interface DestCounter {
  readonly source: string;
  readonly destination: string;
  readonly port: number;
  readonly family: 4 | 6;
  readonly states: Uint32Array;
  inRange: number;
  outOfRange: number;
  /** Local ports: live ones from the front, TIME_WAIT ones from the back. */
  ports: Uint16Array;
  live: number;
  timeWait: number;
  /** Cgroup ids and their socket counts, side by side (a destination has few; the last one hit is tried first). */
  cgroupIds?: number[];
  cgroupCounts?: number[];
  lastCgroup: number;
  inodes?: number[];
}

interface ListenerCounter {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
  sockets: number;
  acceptQueue: number;
  accepted: number;
  other: number;
}

/** Identifies a destination across scans (the watch view's trend). */
export function destinationKey(d: { source: string; destination: string; port: number }): string {
  return `${d.source}|${d.destination}|${d.port}`;
}

/** `::ffff:10.0.0.1` → `10.0.0.1`: a v6 socket to a mapped address uses the IPv4 destination's ports. */
function unmap(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

function familyOfAddress(address: string): 4 | 6 {
  return address.includes(':') ? 6 : 4;
}

/** Streaming aggregator: `add()` every row (LISTEN rows first), then `result()`. */
export class PortPressure {
  readonly #range: { lo: number; hi: number } | null;
  readonly #states: ReadonlySet<number> | undefined;
  readonly #match: ((address: string, port: number) => boolean) | undefined;
  // Per-row lookups go through nested maps keyed by the reader's (cached) address
  // strings and numeric ports, so a row builds no key string.
  readonly #dests: DestCounter[] = [];
  readonly #destIndex = new Map<string, Map<string, Map<number, DestCounter>>>();
  readonly #listeners = new Map<string, ListenerCounter>();
  readonly #listenersByPort = new Map<number, Map<string, ListenerCounter>>();
  /** Ports with a listener on any address: most client sockets skip the listener lookup on this alone. */
  readonly #listenedPorts = new Uint8Array(65536);
  readonly #sourcePorts = new Map<string, Uint8Array>();
  #lastSource: string | undefined;
  #lastSourceBits: Uint8Array | undefined;
  readonly #byState = new Float64Array(TCP_STATES.length);
  #clientSide = 0;
  #serverSide = 0;

  readonly #keepPorts: boolean;
  readonly #cgroups: boolean;
  readonly #inodes: boolean;

  constructor(options: PortPressureOptions) {
    this.#range = options.range;
    this.#states = options.states;
    this.#match = options.match;
    this.#keepPorts = options.localPorts === true;
    this.#cgroups = options.cgroups === true;
    this.#inodes = options.inodes === true;
  }

  /** Counts one row. LISTEN rows must come before the sockets accepted on them. */
  add(row: TcpRow): void {
    const counted = !this.#states || this.#states.has(row.state);
    if (row.state === STATE.LISTEN) {
      const key = `${row.localAddress}|${row.localPort}`;
      let l = this.#listeners.get(key);
      if (!l) {
        l = { address: row.localAddress, port: row.localPort, family: row.family, sockets: 0, acceptQueue: 0, accepted: 0, other: 0 };
        this.#listeners.set(key, l);
        let byAddress = this.#listenersByPort.get(row.localPort);
        if (!byAddress) this.#listenersByPort.set(row.localPort, (byAddress = new Map()));
        byAddress.set(row.localAddress, l);
        this.#listenedPorts[row.localPort] = 1;
      }
      l.sockets++;
      l.acceptQueue += row.rxQueue;
      if (counted) this.#byState[row.state]++;
      return;
    }
    if (!counted) return;
    this.#byState[row.state]++;
    const listener = this.#listenerOf(row);
    if (listener) {
      this.#serverSide++;
      if (row.state === STATE.ESTABLISHED) listener.accepted++;
      else listener.other++;
      return;
    }
    this.#clientSide++;
    const source = row.family === 6 ? unmap(row.localAddress) : row.localAddress;
    const destination = row.family === 6 ? unmap(row.remoteAddress) : row.remoteAddress;
    const r = this.#range;
    const inRange = !r || (row.localPort >= r.lo && row.localPort <= r.hi);
    // The shared bind() pool of a source address counts every destination, filtered or not.
    if (r && inRange) this.#markSourcePort(source, row.localPort);
    if (this.#match && !this.#match(destination, row.remotePort)) return;
    let bySource = this.#destIndex.get(source);
    if (!bySource) this.#destIndex.set(source, (bySource = new Map()));
    let byPort = bySource.get(destination);
    if (!byPort) bySource.set(destination, (byPort = new Map()));
    let d = byPort.get(row.remotePort);
    if (!d) {
      d = { source, destination, port: row.remotePort, family: familyOfAddress(destination), states: new Uint32Array(TCP_STATES.length), inRange: 0, outOfRange: 0, ports: this.#keepPorts ? new Uint16Array(4) : NO_PORTS, live: 0, timeWait: 0, lastCgroup: 0 };
      byPort.set(row.remotePort, d);
      this.#dests.push(d);
    }
    d.states[row.state < TCP_STATES.length ? row.state : 0]++;
    if (inRange) d.inRange++;
    else d.outOfRange++;
    if (this.#keepPorts) keepPort(d, row.localPort, row.state === STATE.TIME_WAIT);
    if (this.#cgroups) countCgroup(d, row.cgroup ?? 0);
    if (this.#inodes && row.inode) (d.inodes ??= []).push(row.inode);
  }

  /**
   * Counts a destination's client-side sockets given as totals per state
   * (kernel-kept counts) instead of rows: `states` by TCP state number,
   * `inRange`/`outOfRange` how many of them use ports inside or outside the
   * ephemeral range (which tells the pool). Listeners and the source pools
   * are not touched.
   */
  addCounts(d: { source: string; destination: string; port: number }, states: ArrayLike<number>, inRange: number, outOfRange: number): void {
    if (this.#match && !this.#match(d.destination, d.port)) return;
    let bySource = this.#destIndex.get(d.source);
    if (!bySource) this.#destIndex.set(d.source, (bySource = new Map()));
    let byPort = bySource.get(d.destination);
    if (!byPort) bySource.set(d.destination, (byPort = new Map()));
    let c = byPort.get(d.port);
    if (!c) {
      c = { source: d.source, destination: d.destination, port: d.port, family: familyOfAddress(d.destination), states: new Uint32Array(TCP_STATES.length), inRange: 0, outOfRange: 0, ports: NO_PORTS, live: 0, timeWait: 0, lastCgroup: 0 };
      byPort.set(d.port, c);
      this.#dests.push(c);
    }
    for (let s = 0; s < Math.min(states.length, TCP_STATES.length); s++) {
      const n = states[s];
      if (n <= 0 || (this.#states && !this.#states.has(s))) continue;
      c.states[s] += n;
      this.#byState[s] += n;
      this.#clientSide += n;
    }
    c.inRange += inRange;
    c.outOfRange += outOfRange;
  }

  #listenerOf(row: TcpRow): ListenerCounter | undefined {
    if (this.#listenedPorts[row.localPort] === 0) return undefined;
    const byAddress = this.#listenersByPort.get(row.localPort);
    return byAddress?.get(row.localAddress) ?? byAddress?.get(row.family === 4 ? '0.0.0.0' : '::');
  }

  #markSourcePort(source: string, port: number): void {
    let bits = source === this.#lastSource ? this.#lastSourceBits : this.#sourcePorts.get(source);
    if (!bits) {
      bits = new Uint8Array(8192);
      this.#sourcePorts.set(source, bits);
    }
    this.#lastSource = source;
    this.#lastSourceBits = bits;
    bits[port >> 3] |= 1 << (port & 7);
  }

  /** Listeners seen so far, in the form the ceiling model takes. */
  get listeners(): Listener[] {
    return [...this.#listeners.values()].map((l) => ({ address: l.address, port: l.port }));
  }

  /** The aggregate, with capacity from the ceiling model for these facts. */
  result(facts: PressureFacts): PortPressureReport {
    // ephemeralPool/explicitPool read only the port facts and the listeners; the listeners come from this scan.
    const poolFacts = { ...facts, listeners: { known: true, value: this.listeners, source: 'socket table' } as Fact<Listener[]> };
    const eph = facts.portRange.known ? (ephemeralPool(poolFacts as KernelFacts)?.size ?? null) : null;
    const expl = explicitPool(poolFacts as KernelFacts).size;
    const destinations: DestinationPressure[] = [];
    for (const d of this.#dests) destinations.push(this.#destination(d, eph, expl));
    destinations.sort(byPressure);
    const listeners: ListenerLoad[] = [...this.#listeners.values()].map((l) => ({ ...l }));
    listeners.sort((a, b) => b.accepted - a.accepted || b.acceptQueue - a.acceptQueue || a.port - b.port || a.address.localeCompare(b.address));
    const sources: SourcePool[] = [];
    for (const [source, bits] of this.#sourcePorts) {
      let inUse = 0;
      for (const byte of bits) if (byte) inUse += popcount(byte);
      sources.push({ source, portsInUse: inUse, capacity: eph, headroom: headroomOf(inUse, eph) });
    }
    sources.sort((a, b) => b.portsInUse - a.portsInUse || a.source.localeCompare(b.source));
    return { destinations, listeners, sources, totals: this.#totals(facts), pools: { ephemeral: eph, explicit: expl } };
  }

  #destination(d: DestCounter, eph: number | null, expl: number): DestinationPressure {
    let used = 0;
    const states: Partial<Record<StateName, number>> = {};
    for (let s = 0; s < d.states.length; s++) {
      const n = d.states[s];
      if (n === 0) continue;
      used += n;
      states[(TCP_STATES[s] || 'UNKNOWN') as StateName] = n;
    }
    const pool = d.outOfRange > 0 ? 'explicit' : 'ephemeral';
    const capacity = pool === 'explicit' ? expl : eph;
    return {
      source: d.source,
      destination: d.destination,
      port: d.port,
      family: d.family,
      used,
      capacity,
      pool,
      headroom: headroomOf(used, capacity),
      share: capacity ? (100 * used) / capacity : null,
      timeWait: d.states[STATE.TIME_WAIT],
      states,
      inRange: d.inRange,
      outOfRange: d.outOfRange,
      localPorts: { live: d.ports.subarray(0, d.live), timeWait: d.ports.subarray(d.ports.length - d.timeWait) },
      ...(this.#cgroups ? { cgroups: (d.cgroupIds ?? []).map((id, i) => ({ id, sockets: (d.cgroupCounts as number[])[i] })).sort((a, b) => b.sockets - a.sockets || a.id - b.id) } : {}),
      ...(this.#inodes ? { inodes: d.inodes ?? [] } : {}),
    };
  }

  #totals(facts: PressureFacts): PressureTotals {
    const byState: Partial<Record<StateName, number>> = {};
    let sockets = 0;
    for (let s = 0; s < this.#byState.length; s++) {
      const n = this.#byState[s];
      if (n === 0) continue;
      sockets += n;
      byState[(TCP_STATES[s] || 'UNKNOWN') as StateName] = n;
    }
    // TIME_WAIT and request socks are small kernel objects without a descriptor.
    const fullSockets = sockets - this.#byState[STATE.TIME_WAIT] - this.#byState[STATE.SYN_RECV] - this.#byState[STATE.NEW_SYN_RECV];
    const descriptors = facts.fileNr.known
      ? { sockets: fullSockets, allocated: facts.fileNr.value.allocated, max: facts.fileMax.known ? facts.fileMax.value : facts.fileNr.value.max }
      : null;
    const memory = facts.memAvailable.known ? { kernelBytes: fullSockets * KERNEL_BYTES_PER_SOCKET, available: facts.memAvailable.value } : null;
    return {
      sockets,
      byState,
      clientSide: this.#clientSide,
      serverSide: this.#serverSide,
      listening: this.#byState[STATE.LISTEN],
      destinations: this.#dests.length,
      fullSockets,
      descriptors,
      memory,
    };
  }
}

/** One more socket of cgroup `id` toward `d`. */
function countCgroup(d: DestCounter, id: number): void {
  const ids = (d.cgroupIds ??= []);
  const counts = (d.cgroupCounts ??= []);
  let i = d.lastCgroup;
  if (ids[i] !== id) {
    i = ids.indexOf(id);
    if (i < 0) {
      i = ids.length;
      ids.push(id);
      counts.push(0);
    }
    d.lastCgroup = i;
  }
  counts[i]++;
}

/** The ports of every destination when they are not kept. */
const NO_PORTS = new Uint16Array(0);

/** Adds a local port to a destination's array, doubling it when full (live ports grow from the front, TIME_WAIT ones from the back). */
function keepPort(d: DestCounter, port: number, timeWait: boolean): void {
  if (d.live + d.timeWait === d.ports.length) {
    const grown = new Uint16Array(d.ports.length * 2);
    grown.set(d.ports.subarray(0, d.live));
    grown.set(d.ports.subarray(d.ports.length - d.timeWait), grown.length - d.timeWait);
    d.ports = grown;
  }
  if (timeWait) d.ports[d.ports.length - ++d.timeWait] = port;
  else d.ports[d.live++] = port;
}

function headroomOf(used: number, capacity: number | null): number | null {
  return capacity ? (100 * (capacity - used)) / capacity : null;
}

function popcount(byte: number): number {
  let n = 0;
  for (let b = byte; b; b &= b - 1) n++;
  return n;
}

/** Highest share first; unknown capacity after known, by count; then by name for a stable order. */
export function byPressure(a: DestinationPressure, b: DestinationPressure): number {
  const sa = a.share ?? -1;
  const sb = b.share ?? -1;
  return sb - sa || b.used - a.used || a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination) || a.port - b.port;
}

/** Destinations whose used share is at least `percent`. */
export function overThreshold(report: PortPressureReport, percent: number): DestinationPressure[] {
  return report.destinations.filter((d) => d.share !== null && d.share >= percent);
}
