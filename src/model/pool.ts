/**
 * How many source ports the kernel lets one pool use, as its own allocation
 * loops choose them (Linux 4.6 and later; read against 6.x):
 *
 * - connect() without a bound port (`__inet_hash_connect`, strategies auto
 *   and nopo) scans the range in two passes of one parity each. It rounds an
 *   odd range size down to even, so each call sees all but one port: the top
 *   one when its random offset is 0, the bottom one otherwise. A range of 3
 *   never gives its top port; an odd range of 5 or more gives its last port
 *   only by chance. It skips every port that has a bind bucket made by
 *   bind() (a listener on any address, a socket bound with bind()), and a
 *   port whose 4-tuple to the destination is taken (a TIME_WAIT one may be
 *   taken over when tcp_tw_reuse allows, once its last timestamp is a
 *   second old).
 * - bind(address, 0) (`inet_csk_find_open_port`, strategy bind) scans the
 *   same way, but with SO_REUSEADDR first the lower part of the range
 *   (2 × ⌊size/4⌋ ports) and then the upper part, each rounded down to even:
 *   with an odd size the upper part loses a port (its top one when it has 3
 *   ports, its top or its bottom by chance when it has 5 or more). It skips
 *   any port a socket on the same address (or the wildcard) holds.
 *   With net.ipv4.ip_autobind_reuse = 1 and SO_REUSEADDR it then accepts a
 *   port our own sockets hold, always the first it tries: an odd offset in
 *   the lower part, so other destinations get those ports again, and only
 *   those.
 * - bind(address, port) (strategy explicit) may use every port from 1 with
 *   CAP_NET_BIND_SERVICE, or from ip_unprivileged_port_start without it;
 *   reserved ports do not apply (they only keep automatic choices away).
 *
 * What the model cannot see: connect() also passes over a port that another
 * program bound with bind() for its own outgoing connections (and their
 * TIME_WAITs), but the socket table does not say how a port was bound, so
 * only listeners are counted so. Such ports make the kernel allow less.
 *
 * Pure: no I/O.
 */
import { type Endpoints, isLoopback, parseIp } from './address.js';
import { PortSet } from './port-set.js';
import { type Strategy, strategySpec } from './strategy.js';
import { TCP_TIME_WAIT } from '../kernel/linux.js';
import type { Occupant } from '../kernel/facts.js';

export type { Occupant };

/** A listening socket. */
export interface ListeningSocket {
  readonly address: string;
  readonly port: number;
}

/** What one strategy's pools are computed from. */
export interface PoolInput {
  readonly strategy: Strategy;
  readonly range: { readonly lo: number; readonly hi: number };
  readonly reserved: PortSet;
  readonly listeners: readonly ListeningSocket[];
  /** Sockets holding ports now (TIME_WAIT ones included). */
  readonly occupants: readonly Occupant[];
  /** SO_REUSEADDR before bind(ip, 0). */
  readonly reuseAddr: boolean;
  readonly autobindReuse: boolean;
  /** net.ipv4.tcp_tw_reuse: 0 off, 1 on, 2 loopback only. */
  readonly twReuse: number;
  /** net.ipv4.tcp_timestamps on: the kernel takes a TIME_WAIT 4-tuple over only when the peer sent timestamps. */
  readonly timestamps: boolean;
  /** The kernel's two-parity scans (4.6+); without them every free port is found. */
  readonly parityScan: boolean;
  /** First port an explicit bind may use: 1 with CAP_NET_BIND_SERVICE, else ip_unprivileged_port_start. */
  readonly explicitStart: number;
  /** Source addresses; empty: the kernel picks one per destination. */
  readonly sources: readonly string[];
  /** Destinations (addresses × ports); empty: one unnamed destination. */
  readonly destinations: readonly Endpoints[];
}

/** What the pools allow, in all. */
export interface PoolAnswer {
  /** Connections at most. */
  readonly max: number;
  /** Connections at least: less than max where the kernel's choices leave it to chance. */
  readonly min: number;
  /** Ports one (source, destination) may use at most (for bind: one source address's pool). */
  readonly perPool: number;
  /** Why min and max differ, or what the count already leaves out (sentences). */
  readonly notes: readonly string[];
}

/** 127.0.0.1 and ::ffff:127.0.0.1 are one address to the kernel's bind checks. */
function canonical(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1] : address.toLowerCase();
}

function isWildcard(address: string): boolean {
  return parseIp(address)?.n === 0n;
}

/** True when a socket bound to `held` keeps `address` off its port (same address, or either is the wildcard). */
function sameBind(held: string, address: string): boolean {
  return isWildcard(held) || isWildcard(address) || canonical(held) === canonical(address);
}

/** Ports usable in [a, b] at most and at least, given the ports `free` (the two-parity scan's loss applied). */
function scan(a: number, b: number, free: (p: number) => boolean, freeAtLeast: (p: number) => boolean, parityScan: boolean): { max: number; min: number; lost: boolean } {
  const n = b - a + 1;
  let max = 0;
  let min = 0;
  for (let p = a; p <= b; p++) {
    if (free(p)) max++;
    if (freeAtLeast(p)) min++;
  }
  if (!parityScan || n <= 2 || n % 2 === 0) return { max, min, lost: false };
  if (n === 3) {
    // The offset is always 0: the top port is never tried.
    return { max: max - (free(b) ? 1 : 0), min: min - (freeAtLeast(b) ? 1 : 0), lost: free(b) };
  }
  // Each call misses its top or its bottom port: the last free one may be the one missed.
  const edge = freeAtLeast(a) || freeAtLeast(b);
  return { max, min: min - (edge ? 1 : 0), lost: edge };
}

/** The pools of `input.strategy`, summed over sources and destinations. */
export function poolCapacity(input: PoolInput): PoolAnswer {
  switch (strategySpec(input.strategy).portPickedBy) {
    case 'bind':
      return bindPools(input);
    case 'program':
      return explicitPools(input);
    default:
      return connectPools(input);
  }
}

/**
 * May connect() take the TIME_WAIT 4-tuple of `o` over? A socket whose port
 * is bound already (bind, explicit) always may, with timestamps, whatever
 * tcp_tw_reuse says (tcp_twsk_unique is called without a TIME_WAIT to
 * recycle); one whose port connect() picks, only as tcp_tw_reuse allows.
 */
function twReusable(o: Occupant, input: PoolInput, bound: boolean): boolean {
  if (o.state !== TCP_TIME_WAIT || !input.timestamps) return false;
  if (bound || input.twReuse === 1) return true;
  return input.twReuse === 2 && (isLoopback(o.localAddress) || isLoopback(o.remoteAddress));
}

/** Sources to count: the given ones, or one the kernel picks (matched as any). */
function sourceList(input: PoolInput): (string | null)[] {
  return input.sources.length ? [...input.sources] : [null];
}

/** (address, port) destinations in all; 1 for the unnamed one. */
function destinationCount(input: PoolInput): number {
  return input.destinations.length ? input.destinations.reduce((n, d) => n + d.addresses.length * d.ports.size, 0) : 1;
}

/** A test for "is (address, port) one of these destinations", built once: a /16 of addresses costs a set lookup per socket, not 65,536 comparisons. */
function destinationTest(destinations: readonly Endpoints[]): (address: string, port: number) => boolean {
  const groups = destinations.map((d) => ({ ports: d.ports, addresses: new Set(d.addresses.map(canonical)) }));
  return (address, port) => {
    let a: string | undefined;
    for (const g of groups) {
      if (!g.ports.has(port)) continue;
      a ??= canonical(address);
      if (g.addresses.has(a)) return true;
    }
    return false;
  };
}

/** 4-tuples held per pool: always (max) and until tcp_tw_reuse may take them over (min). */
interface Held {
  readonly busy: Set<number>;
  readonly busyAtFirst: Set<number>;
}

/** Occupants toward the destinations, by source (`*`: the kernel picks it, any counts), then by destination. */
function heldByPool(input: PoolInput, from: number, to = 65535): Map<string, Map<string, Held>> {
  const out = new Map<string, Map<string, Held>>();
  const isDestination = destinationTest(input.destinations);
  const add = (source: string, o: Occupant): void => {
    let bySource = out.get(source);
    if (!bySource) out.set(source, (bySource = new Map()));
    const key = `${canonical(o.remoteAddress)}|${o.remotePort}`;
    let h = bySource.get(key);
    if (!h) bySource.set(key, (h = { busy: new Set(), busyAtFirst: new Set() }));
    const bound = strategySpec(input.strategy).portPickedBy !== 'connect';
    const reusable = twReusable(o, input, bound);
    // A bound socket takes a TIME_WAIT over at once; connect() with tcp_tw_reuse only once it is old enough.
    if (!reusable || !bound) h.busyAtFirst.add(o.localPort);
    if (!reusable) h.busy.add(o.localPort);
  };
  for (const o of input.occupants) {
    if (o.localPort < from || o.localPort > to || !isDestination(o.remoteAddress, o.remotePort)) continue;
    add('*', o);
    add(canonical(o.localAddress), o);
  }
  return out;
}

/** The pools of one source that hold 4-tuples already (a wildcard source's are every source's: connected sockets carry the real address). */
function heldFor(held: Map<string, Map<string, Held>>, source: string | null): Held[] {
  return [...(held.get(source === null || isWildcard(source) ? '*' : canonical(source))?.values() ?? [])];
}

/** A pool with 4-tuples held: the base pool less them, scanned again only where the kernel's edge loss depends on which ports are free. */
function heldScan(lo: number, hi: number, base: { max: number; min: number; lost: boolean }, ok: (p: number) => boolean, h: Held, parityScan: boolean): { max: number; min: number; lost: boolean } {
  const n = hi - lo + 1;
  if (!parityScan || n <= 2 || n % 2 === 0) {
    let busy = 0;
    let busyAtFirst = 0;
    for (const p of h.busy) if (ok(p)) busy++;
    for (const p of h.busyAtFirst) if (ok(p)) busyAtFirst++;
    return { max: base.max - busy, min: base.min - busyAtFirst, lost: false };
  }
  return scan(lo, hi, (p) => ok(p) && !h.busy.has(p), (p) => ok(p) && !h.busyAtFirst.has(p), parityScan);
}

function connectPools(input: PoolInput): PoolAnswer {
  const { lo, hi } = input.range;
  const bound = new Set(input.listeners.map((l) => l.port));
  const ok = (p: number): boolean => !input.reserved.has(p) && !bound.has(p);
  // Pools in which nothing holds a 4-tuple are all alike: scanned once.
  const base = scan(lo, hi, ok, ok, input.parityScan);
  const held = heldByPool(input, lo, hi);
  let max = 0;
  let min = 0;
  let perPool = 0;
  let lost = false;
  let taken = 0;
  let tw = 0;
  const dests = destinationCount(input);
  for (const s of sourceList(input)) {
    const special = heldFor(held, s);
    max += base.max * (dests - special.length);
    min += base.min * (dests - special.length);
    perPool = Math.max(perPool, base.max);
    lost ||= base.lost;
    for (const h of special) {
      const r = heldScan(lo, hi, base, ok, h, input.parityScan);
      max += r.max;
      min += r.min;
      lost ||= r.lost;
      taken += h.busy.size;
      tw += h.busyAtFirst.size - h.busy.size;
    }
  }
  const notes: string[] = [];
  if (lost) notes.push(oddNote(hi - lo + 1, 'connect()'));
  if (taken) notes.push(`${fmt(taken)} of these 4-tuples are held already (TIME_WAIT included where tcp_tw_reuse does not apply)`);
  if (tw) notes.push(`${fmt(tw)} in TIME_WAIT may be taken over (tcp_tw_reuse ${input.twReuse}) once their last timestamp is a second old; until then they count against the pool`);
  return { max, min, perPool, notes };
}

function bindPools(input: PoolInput): PoolAnswer {
  const { lo, hi } = input.range;
  const size = hi - lo + 1;
  // With SO_REUSEADDR, bind(0) tries the lower part of the range first, then the upper one (4.6+).
  const halves = input.reuseAddr && input.parityScan && size >= 4;
  const half = lo + ((size >> 2) << 1);
  const windows: [number, number][] = halves ? [[lo, half - 1], [half, hi]] : [[lo, hi]];
  const dests = destinationCount(input);
  const relax = input.autobindReuse && input.reuseAddr;
  let max = 0;
  let min = 0;
  let perPool = 0;
  let lost = false;
  let shared = 0;
  let taken = 0;
  // Sockets in the range by their address, once: a source sees its own address's and the wildcard's (a wildcard source sees all).
  const byAddress = new Map<string, { listening: number[]; timeWait: number[]; other: number[] }>();
  const group = (address: string): { listening: number[]; timeWait: number[]; other: number[] } => {
    const key = isWildcard(address) ? '*' : canonical(address);
    let g = byAddress.get(key);
    if (!g) byAddress.set(key, (g = { listening: [], timeWait: [], other: [] }));
    return g;
  };
  for (const l of input.listeners) if (l.port >= lo && l.port <= hi) group(l.address).listening.push(l.port);
  for (const o of input.occupants) if (o.localPort >= lo && o.localPort <= hi) group(o.localAddress)[twReusable(o, input, true) ? 'timeWait' : 'other'].push(o.localPort);
  for (const s of sourceList(input)) {
    // bind(0) passes over any port a socket on this address (or the wildcard) holds, listening or not.
    const mine = s === null || isWildcard(s) ? [...byAddress.values()] : [byAddress.get(canonical(s)), byAddress.get('*')].filter((g) => g !== undefined);
    const listening = new Set(mine.flatMap((g) => g.listening));
    const timeWait = new Set(mine.flatMap((g) => g.timeWait));
    const other = new Set(mine.flatMap((g) => g.other));
    const held = new Set([...listening, ...timeWait, ...other]);
    taken += held.size - listening.size;
    const free = (p: number): boolean => !input.reserved.has(p) && !held.has(p);
    let poolMax = 0;
    let poolMin = 0;
    for (const [a, b] of windows) {
      const r = scan(a, b, free, free, input.parityScan);
      poolMax += r.max;
      poolMin += r.min;
      lost ||= r.lost;
    }
    // ip_autobind_reuse: once the pool is used up, bind(0) returns a port that sockets with SO_REUSEADDR hold (ours, or
    // TIME_WAIT ones, which a bound socket takes over): to every destination but the one it went to first, if any.
    // One pool is what bind(0) hands out before it relaxes; the stretch below is counted in the total only.
    perPool = Math.max(perPool, poolMax);
    if (relax) {
      const again = relaxPorts(windows, (p) => !input.reserved.has(p) && !listening.has(p) && !other.has(p));
      let more = 0;
      for (const p of again) more += dests - (free(p) ? 1 : 0);
      shared += more;
      poolMax += more;
    }
    max += poolMax;
    min += poolMin;
  }
  const notes: string[] = [];
  if (lost) notes.push(oddNote(halves ? hi - half + 1 : size, halves ? 'bind(address, 0) in the upper part of the range' : 'bind(address, 0)'));
  if (taken) notes.push(`${fmt(taken)} ports of the range are held already by sockets on the source address`);
  if (shared) {
    notes.push(
      `with ip_autobind_reuse = 1 and SO_REUSEADDR, bind(address, 0) then returns ports already in use, always at odd offsets of the range's lower part: up to ${fmt(shared)} more 4-tuples toward the other destinations, each found only by retrying after EADDRNOTAVAIL`,
    );
  }
  return { max, min, perPool, notes };
}

/**
 * The ports bind(address, 0) returns once relaxed (ip_autobind_reuse): the
 * first port it tries that nothing refuses, which is an odd offset of the
 * first part of the range when one is free of refusal, else an even one,
 * then the second part.
 */
function relaxPorts(windows: readonly [number, number][], ok: (p: number) => boolean): number[] {
  for (const [a, b] of windows) {
    for (const first of [a + 1, a]) {
      const ports: number[] = [];
      for (let p = first; p <= b; p += 2) if (ok(p)) ports.push(p);
      if (ports.length) return ports;
    }
  }
  return [];
}

function explicitPools(input: PoolInput): PoolAnswer {
  const start = Math.max(1, input.explicitStart);
  const held = heldByPool(input, start);
  let max = 0;
  let min = 0;
  let perPool = 0;
  let taken = 0;
  for (const s of sourceList(input)) {
    const listening = new Set(input.listeners.filter((l) => l.port >= start && (s === null || sameBind(l.address, s))).map((l) => l.port));
    const all = 65535 - start + 1 - listening.size;
    max += all * destinationCount(input);
    min += all * destinationCount(input);
    perPool = Math.max(perPool, all);
    for (const h of heldFor(held, s)) {
      const busy = [...h.busy].filter((p) => !listening.has(p)).length;
      max -= busy;
      min -= [...h.busyAtFirst].filter((p) => !listening.has(p)).length;
      taken += busy;
    }
  }
  const notes: string[] = [];
  if (taken) notes.push(`${fmt(taken)} of these 4-tuples are held already`);
  return { max, min, perPool, notes };
}

function oddNote(size: number, who: string): string {
  return size === 3
    ? `${who} scans a range of 3 ports as 2 and never tries its top port`
    : `the range has an odd size (${fmt(size)}): ${who} scans one port fewer each time, the top or the bottom one by chance, so the last free port of a pool may never be found`;
}

const fmt = (n: number): string => n.toLocaleString('en-US');

/**
 * Which sockets a prediction for these sources and destinations depends on:
 * the ones toward a destination, and for bind the ones on a source address
 * (all, when bind uses the wildcard).
 */
export function occupantFilter(strategy: Strategy, sources: readonly string[], destinations: readonly Endpoints[]): (o: Occupant) => boolean {
  const src = new Set(sources.map(canonical));
  // bind(0) on the wildcard (no --from, or 0.0.0.0 / ::) conflicts with a socket on any address.
  const anySource = src.size === 0 || sources.some(isWildcard);
  const isDestination = destinationTest(destinations);
  const bind = strategySpec(strategy).portPickedBy === 'bind';
  return (o) => isDestination(o.remoteAddress, o.remotePort) || (bind && (anySource || src.has(canonical(o.localAddress)) || isWildcard(o.localAddress)));
}

/** The explicit pool's ports for a process: every port from `start` (the engine skips the ones bind() refuses). */
export function explicitPorts(start: number): PortSet {
  return PortSet.range(Math.max(1, start), 65535);
}
