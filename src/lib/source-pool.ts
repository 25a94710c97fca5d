/**
 * The allocator behind the library's `connect`: which source address (and,
 * with 'explicit', which source port) the next connection to a destination
 * uses, and which (source, destination) pools are full. It opens no socket:
 * connect.ts does, and reports each outcome back.
 */
import { isIP } from 'node:net';
import { release as osRelease } from 'node:os';
import { InvalidArgumentError, PoolExhaustedError, UnsupportedError } from '../errors.js';
import { featuresOf, readKernelFacts } from '../kernel/facts.js';
import { sockaddr, setSockaddrPort } from '../kernel/ffi.js';
import { formatEndpoint, parseAddresses, parsePorts } from '../model/address.js';
import { politeExplicitPool } from '../model/limits.js';
import { PortSet } from '../model/port-set.js';

/**
 * How `connect` picks the source port: 'nopo' binds the address with
 * IP_BIND_ADDRESS_NO_PORT and lets connect() pick a port per destination;
 * 'explicit' binds (address, port) with SO_REUSEADDR from fourtuple's own
 * per-(source, destination) allocator, past the ephemeral range.
 */
export type ConnectStrategy = 'nopo' | 'explicit';

/** Options of a SourcePool (and of `connect`, `connector`, `createConnection`). */
export interface SourcePoolOptions {
  /** Source addresses: a list, or a string of addresses, ranges and CIDRs (`127.0.0.2-127.0.0.4`, `10.0.1.0/28`). */
  sources: string | readonly string[];
  /** Default 'nopo' where the kernel has IP_BIND_ADDRESS_NO_PORT (Linux 4.2+), 'explicit' otherwise. */
  strategy?: ConnectStrategy;
  /** 'explicit' only: the source ports to use (`20000-29999` or a PortSet). Default: the model's explicit pool for this host, ports outside the ephemeral range first. */
  ports?: string | PortSet;
  /** How long a full (source, destination) pool is skipped before it is tried again, in ms (default 1000). One of the pool's own connections closing reopens it at once. */
  retryFullAfterMs?: number;
  /**
   * How long the pool keeps the state of a destination with no connection
   * open, in ms (default 60,000: Linux's TIME_WAIT, so an explicit port that
   * closed is not handed out again while its 4-tuple may still wait). A
   * program that connects to many destinations, each for a while, holds state
   * only for the recent ones.
   */
  forgetIdleAfterMs?: number;
}

/** How one (source, destination) pool stands, for `SourcePool.usage()`. */
export interface SourceUsage {
  readonly source: string;
  /** `address:port` (`[v6]:port`). */
  readonly destination: string;
  /** Connections open (or being opened) through this pool. */
  readonly open: number;
  /** True while the pool is known to be full and skipped. */
  readonly full: boolean;
}

/** One pick of the allocator: bind `source` (and `port`; 0 with 'nopo') before connect(). */
export interface Lease {
  readonly source: string;
  readonly family: 4 | 6;
  /** Source port to bind; 0 with 'nopo' (the kernel picks it at connect()). */
  readonly port: number;
  /** The destination, `address:port`. */
  readonly destination: string;
}

/** Why an attempt failed: the whole pool is full, or (explicit) only that port is taken. */
export type RejectReason = 'full' | 'taken' | 'other';

// Ports of one explicit (source, destination) pool: never-used ports first,
// then released ones in the order they were released (FIFO, so a port that
// has just closed rests, e.g. in TIME_WAIT, as long as possible).
class ExplicitPorts {
  cursor = 0;
  free: number[] = [];
  head = 0;
  skipped: number[] = [];

  take(list: Uint16Array): number {
    if (this.cursor < list.length) return list[this.cursor++];
    if (this.head < this.free.length) {
      const p = this.free[this.head++];
      if (this.head > 1024 && this.head * 2 > this.free.length) {
        this.free = this.free.slice(this.head);
        this.head = 0;
      }
      return p;
    }
    return -1;
  }

  reopen(): void {
    for (const p of this.skipped) this.free.push(p);
    this.skipped = [];
  }
}

class Destination {
  readonly open: Uint32Array;
  readonly fullUntil: Float64Array;
  readonly explicit: (ExplicitPorts | undefined)[] | undefined;
  total = 0;
  fullCount = 0;
  cursor: number;
  /** When `total` last fell to 0 (Date.now()), 0 while connections are open. */
  idleSince = 0;

  constructor(
    readonly key: string,
    readonly name: string,
    readonly family: 4 | 6,
    sources: number,
    explicit: boolean,
    cursor: number,
  ) {
    this.open = new Uint32Array(sources);
    this.fullUntil = new Float64Array(sources);
    this.explicit = explicit ? new Array<ExplicitPorts | undefined>(sources) : undefined;
    this.cursor = cursor;
  }
}

class LeaseImpl implements Lease {
  constructor(
    readonly dest: Destination,
    readonly index: number,
    readonly source: string,
    readonly family: 4 | 6,
    readonly port: number,
  ) {}

  get destination(): string {
    return this.dest.name;
  }
}

/**
 * Source addresses and the state of every (source, destination) pool: spreads
 * connections round-robin over the sources per destination, skips pools known
 * to be full, and says when every source is exhausted for a destination.
 */
export class SourcePool {
  /** The source addresses, expanded and deduplicated. */
  readonly sources: readonly string[];
  readonly strategy: ConnectStrategy;
  readonly retryFullAfterMs: number;
  readonly forgetIdleAfterMs: number;
  /** Family of the first source: the family `connect` opens a socket in before a host name is resolved. */
  readonly family: 4 | 6;
  /** 4 or 6 when every source has that family (host names are then resolved in it), else 0. */
  readonly lookupFamily: 0 | 4 | 6;
  #families: Uint8Array;
  #addrs: Buffer[];
  #ports: Uint16Array | undefined;
  #dests = new Map<string, Destination>();
  #start = 0;
  // The destination of the last lease: most programs connect to few, so most leases skip the key and the Map.
  #last: Destination | undefined;
  #lastAddress = '';
  #lastPort = -1;
  #lastSweep = 0;

  constructor(options: SourcePoolOptions) {
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options: expected an object with sources');
    const { sources } = options;
    if (typeof sources !== 'string' && !Array.isArray(sources)) {
      throw new InvalidArgumentError('sources: expected addresses, as an array or a string like 127.0.0.2-127.0.0.4');
    }
    const list = parseAddresses(typeof sources === 'string' ? sources : sources.join(','), 'sources');
    this.sources = Object.freeze(list);
    this.#families = Uint8Array.from(list, (a) => isIP(a));
    this.#addrs = list.map((a) => sockaddr(a, 0));
    this.family = this.#families[0] === 6 ? 6 : 4;
    this.lookupFamily = this.#families.every((f) => f === this.family) ? this.family : 0;

    const noPort = () => {
      const f = featuresOf(osRelease());
      return f.known && f.value.bindAddressNoPort;
    };
    const strategy = options.strategy;
    if (strategy === undefined) this.strategy = noPort() ? 'nopo' : 'explicit';
    else if (strategy === 'nopo' || strategy === 'explicit') this.strategy = strategy;
    else throw new InvalidArgumentError(`strategy '${String(strategy)}': expected nopo or explicit`);
    if (this.strategy === 'nopo' && strategy !== undefined && !noPort()) {
      throw new UnsupportedError(`strategy nopo needs IP_BIND_ADDRESS_NO_PORT (Linux 4.2+); this kernel is ${osRelease()}: use strategy explicit`);
    }

    const retry = options.retryFullAfterMs ?? 1000;
    if (typeof retry !== 'number' || !(retry >= 0) || !Number.isFinite(retry)) {
      throw new InvalidArgumentError(`retryFullAfterMs ${String(retry)}: expected a number of milliseconds >= 0`);
    }
    this.retryFullAfterMs = retry;
    const idle = options.forgetIdleAfterMs ?? 60_000;
    if (typeof idle !== 'number' || !(idle >= 0) || !Number.isFinite(idle)) {
      throw new InvalidArgumentError(`forgetIdleAfterMs ${String(idle)}: expected a number of milliseconds >= 0`);
    }
    this.forgetIdleAfterMs = idle;

    if (options.ports !== undefined && this.strategy !== 'explicit') throw new InvalidArgumentError('ports: only with strategy explicit');
    if (this.strategy === 'explicit') this.#ports = explicitPorts(options.ports);
  }

  /** Destinations the pool holds state for (open connections, full pools, or explicit ports resting after a close). */
  get tracked(): number {
    return this.#dests.size;
  }

  /** Connections open (or being opened) through the pool. */
  get open(): number {
    let n = 0;
    for (const d of this.#dests.values()) n += d.total;
    return n;
  }

  /**
   * Picks the source (and explicit port) of the next connection to
   * (address, port), counting it as open until `reject` or `release`;
   * undefined when every source of the address's family is full for it.
   */
  lease(address: string, port: number): Lease | undefined {
    let d = address === this.#lastAddress && port === this.#lastPort ? this.#last : undefined;
    if (d === undefined) d = this.#destination(address, port);
    const n = this.sources.length;
    let now = 0;
    for (let i = 0; i < n; i++) {
      let s = d.cursor + i;
      if (s >= n) s -= n;
      if (this.#families[s] !== d.family) continue;
      if (d.fullUntil[s] !== 0) {
        if (now === 0) now = Date.now();
        if (now < d.fullUntil[s]) continue;
        this.#reopen(d, s);
      }
      let p = 0;
      if (d.explicit !== undefined) {
        const ports = (d.explicit[s] ??= new ExplicitPorts());
        p = ports.take(this.#ports as Uint16Array);
        if (p < 0) {
          this.#markFull(d, s);
          continue;
        }
      }
      d.cursor = s + 1 === n ? 0 : s + 1;
      d.open[s]++;
      d.total++;
      d.idleSince = 0;
      return new LeaseImpl(d, s, this.sources[s], d.family, p);
    }
    if (d.total === 0 && d.fullCount === 0 && d.explicit === undefined) this.#forget(d);
    return undefined;
  }

  #destination(address: string, port: number): Destination {
    const key = `${address}|${port}`;
    let d = this.#dests.get(key);
    if (d === undefined) {
      const family = isIP(address) === 6 ? 6 : 4;
      const name = formatEndpoint(address, port);
      // New destinations start one source further on, so many destinations with few connections each spread too.
      d = new Destination(key, name, family, this.sources.length, this.#ports !== undefined, this.#start);
      this.#start = (this.#start + 1) % this.sources.length;
      this.#sweep(Date.now());
      this.#dests.set(key, d);
    }
    this.#last = d;
    this.#lastAddress = address;
    this.#lastPort = port;
    return d;
  }

  #forget(d: Destination): void {
    this.#dests.delete(d.key);
    if (this.#last === d) {
      this.#last = undefined;
      this.#lastPort = -1;
    }
  }

  /** The sockaddr to bind for a lease (reused between calls: bind it before the next lease). */
  sockaddrOf(lease: Lease): Buffer {
    const l = lease as LeaseImpl;
    const buf = this.#addrs[l.index];
    setSockaddrPort(buf, l.port);
    return buf;
  }

  /** The attempt with this lease failed; 'full' marks its (source, destination) pool full, 'taken' (explicit) sets its port aside. */
  reject(lease: Lease, why: RejectReason): void {
    const l = lease as LeaseImpl;
    const d = l.dest;
    this.#drop(d, l.index);
    if (d.explicit !== undefined && l.port !== 0) {
      const ports = d.explicit[l.index] as ExplicitPorts;
      if (why === 'other') ports.free.push(l.port);
      else ports.skipped.push(l.port);
    }
    if (why === 'full') this.#markFull(d, l.index);
    else if (d.total === 0 && d.fullCount === 0 && d.explicit === undefined) this.#forget(d);
  }

  /** The connection made with this lease has closed: its port is free again, and its pool no longer full. */
  release(lease: Lease): void {
    const l = lease as LeaseImpl;
    const d = l.dest;
    this.#drop(d, l.index);
    if (d.explicit !== undefined && l.port !== 0) (d.explicit[l.index] as ExplicitPorts).free.push(l.port);
    if (d.fullUntil[l.index] !== 0) this.#reopen(d, l.index);
    if (d.total === 0 && d.fullCount === 0 && d.explicit === undefined) this.#forget(d);
  }

  /** The error for a destination no source can reach: PoolExhaustedError, or InvalidArgumentError when no source has its family. */
  exhausted(address: string, port: number): Error {
    const family = isIP(address) === 6 ? 6 : 4;
    const name = formatEndpoint(address, port);
    const same = this.sources.filter((_, i) => this.#families[i] === family);
    if (same.length === 0) return new InvalidArgumentError(`sources: none is an IPv${family} address, so none can connect to ${name}`);
    return new PoolExhaustedError(name, same, this.strategy);
  }

  /** Every (source, destination) pool the allocator holds state for. */
  usage(): SourceUsage[] {
    const out: SourceUsage[] = [];
    const now = Date.now();
    for (const d of this.#dests.values()) {
      for (let s = 0; s < this.sources.length; s++) {
        const full = d.fullUntil[s] !== 0 && now < d.fullUntil[s];
        if (d.open[s] > 0 || full) out.push({ source: this.sources[s], destination: d.name, open: d.open[s], full });
      }
    }
    return out;
  }

  #drop(d: Destination, s: number): void {
    if (d.open[s] > 0) {
      d.open[s]--;
      if (--d.total === 0) d.idleSince = Date.now();
    }
  }

  /**
   * Forgets destinations idle for forgetIdleAfterMs whose pools are not
   * marked full. Runs when a new destination is added, at most once per
   * tenth of that time, so its cost stays proportional to the destinations
   * added.
   */
  #sweep(now: number): void {
    if (now - this.#lastSweep < this.forgetIdleAfterMs / 10) return;
    this.#lastSweep = now;
    for (const d of this.#dests.values()) {
      if (d.total !== 0 || d.idleSince === 0 || now - d.idleSince < this.forgetIdleAfterMs) continue;
      if (d.fullCount > 0) {
        let stillFull = false;
        for (let s = 0; s < d.fullUntil.length; s++) if (d.fullUntil[s] !== 0 && now < d.fullUntil[s]) stillFull = true;
        if (stillFull) continue;
      }
      this.#forget(d);
    }
  }

  #markFull(d: Destination, s: number): void {
    if (d.fullUntil[s] === 0) d.fullCount++;
    d.fullUntil[s] = Date.now() + this.retryFullAfterMs;
  }

  #reopen(d: Destination, s: number): void {
    d.fullUntil[s] = 0;
    d.fullCount--;
    d.explicit?.[s]?.reopen();
  }
}

// Explicit candidates in allocation order: outside the ephemeral range first,
// so explicit binds leave the kernel's own pool to other programs as long as they can.
function explicitPorts(ports: string | PortSet | undefined): Uint16Array {
  let set: PortSet;
  let order: PortSet[];
  if (ports !== undefined) {
    set = typeof ports === 'string' ? parsePorts(ports, 'ports') : ports;
    if (!(set instanceof PortSet)) throw new InvalidArgumentError('ports: expected a string like 20000-29999 or a PortSet');
    order = [set];
  } else {
    const facts = readKernelFacts();
    // A library's default stays polite: no port below ip_unprivileged_port_start even for root, and no
    // reserved port (kept for other programs), though the kernel would allow both (explicitPool).
    set = politeExplicitPool(facts);
    const eph = facts.portRange.known ? PortSet.range(facts.portRange.value.lo, facts.portRange.value.hi) : new PortSet();
    order = [set.subtract(eph), set.intersect(eph)];
  }
  if (set.isEmpty) throw new InvalidArgumentError('ports: no port left to bind explicitly');
  const out = new Uint16Array(set.size);
  let i = 0;
  for (const part of order) for (const p of part) out[i++] = p;
  return out;
}
