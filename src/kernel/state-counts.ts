/**
 * Client-side sockets per destination and state, kept by the kernel as they
 * change, so that reading them costs a map walk instead of a walk of the
 * whole socket table (about 1.3 s at a million sockets).
 *
 * How. A tp_btf program on `sock:inet_sock_set_state` sees every state
 * change of every TCP socket of this network namespace. A socket on a
 * listener's address and port is the server's side (the program keeps the
 * `listeners` map up to date as sockets start listening; the periodic scan
 * prunes those gone); any other moves one count of its destination (family,
 * source, destination address and port) from the old state to the new one.
 * CLOSE is not counted, so connect() adds a socket and its close removes it.
 * No per-socket state is kept: the connect path pays two small lookups and
 * three atomic adds on a per-CPU value.
 *
 * Sockets that existed before are seeded by an iterator that walks the
 * table once. While it runs, the program records each socket it moves, with
 * its state before, in `touched`; the iterator counts a socket in its state
 * then, or, if the program moved it already, in the state it had before
 * (those moves are counted), and marks it seen. Sockets moved but never
 * seen (closed before the iterator reached them) come back as
 * `seedCorrections`. The iterator holds each socket's lock while it looks,
 * as the state changes do. `touched` is emptied after the seed.
 *
 * What it cannot see: TIME_WAIT. A closing socket leaves a separate timewait
 * socket behind without a traced event, and that one expires without one
 * too (fentry on the kernel's timewait functions would see both; this
 * kernel refuses fentry). So the counts here are of every other state, and
 * TIME_WAIT comes from the periodic full scan that also reconciles the
 * counts (engine/kept-ports.ts).
 *
 * Bounded: `counts` holds at most MAX_DESTINATIONS destinations, `touched`
 * MAX_SOCKETS sockets while seeding; what does not fit is counted in
 * `stats` (and then not counted), which a reader reports. Nothing is pinned.
 */
import { readFileSync } from 'node:fs';
import * as ffi from './ffi.js';
import {
  BPF_ANY,
  BPF_F_NO_PREALLOC,
  BPF_MAP_TYPE_ARRAY,
  BPF_MAP_TYPE_HASH,
  BPF_MAP_TYPE_PERCPU_HASH,
  BPF_NOEXIST,
  BPF_TRACE_ITER,
  BPF_TRACE_RAW_TP,
  DESTINATION_KEY_SIZE,
  FP,
  FUNC,
  R0,
  R1,
  R2,
  R3,
  R4,
  R6,
  R7,
  R8,
  addImm,
  addReg,
  andImm,
  assemble,
  atomicAdd32,
  atomicAdd64,
  attach,
  attachRawTracepoint,
  be16,
  call,
  createMap,
  destinationKeyInsns,
  exit,
  ja,
  jeqImm,
  jgtImm,
  jne32Imm,
  jneImm,
  keyAddresses,
  ldMap,
  netnsInode,
  netnsMapName,
  ldx,
  loadTracing,
  lshImm,
  mapEntries,
  mapDelete,
  mapLookup,
  mapUpdate,
  runIterator,
  tracepointId,
  movImm,
  movReg,
  sockCommonOffsets,
  st,
  stDw0,
  stx,
  type Insn,
  type SockCommonOffsets,
} from './bpf.js';
import { Btf, BtfKind } from './btf.js';
import { AF_INET, AF_INET6, EEXIST, IPPROTO_TCP, TCP_CLOSE, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_STATES, TCP_SYN_SENT, TCP_TIME_WAIT } from './linux.js';
import { UnsupportedError } from '../errors.js';
import { parseIp } from '../ip.js';

/** Sockets the seed can mark at most; more are counted in `socketsOverflow` and not seeded. */
export const MAX_SOCKETS = 4_194_304;
/** Sockets the seed's map holds beyond the table's: those that open while it runs. */
const SEED_SLACK = 131_072;
/** Destinations counted at most; changes past it are counted in `destinationsOverflow`. */
export const MAX_DESTINATIONS = 65_536;
/** Per destination: one u32 per TCP state number (0-14), and in slot 15 its changes so far. */
const STATE_SLOTS = 16;
const CHANGES_SLOT = 15;
const VALUE_SIZE = STATE_SLOTS * 4;
const LISTENER_KEY_SIZE = 20;
/** Listening addresses and ports the program can tell apart. */
const MAX_LISTENERS = 65_536;

/** Indexes of the `stats` array (its entries are shared by every CPU: bumped only when something does not fit). */
const STAT_SOCKETS_OVERFLOW = 0;
const STAT_DESTINATIONS_OVERFLOW = 1;
const STATS = 2;

interface Layout extends SockCommonOffsets {
  protocol: number;
  /** inet_sport, through the tcp_sock (it lies past struct sock). */
  sport: number;
  inum: number;
  stateTp: number;
  iterTarget: number;
  metaSeq: number;
}

let layout: Layout | undefined;

function readLayout(): Layout {
  if (layout) return layout;
  const btf = Btf.vmlinux();
  const stateTp = tracepointId(btf, 'inet_sock_set_state');
  const iterTarget = btf.find(BtfKind.FUNC, 'bpf_iter_tcp');
  if (iterTarget === undefined) throw new Error('the kernel has no tcp iterator (bpf_iter_tcp)');
  layout = {
    ...sockCommonOffsets(btf),
    protocol: btf.offsetOf('sock', ['sk_protocol'], 2),
    sport: btf.offsetOf('tcp_sock', ['inet_conn', 'icsk_inet', 'inet_sport'], 2),
    inum: btf.offsetOf('net', ['ns', 'inum'], 4),
    metaSeq: btf.offsetOf('bpf_iter_meta', ['seq'], 8),
    stateTp,
    iterTarget,
  };
  return layout;
}

interface Maps {
  counts: number;
  listeners: number;
  /** Index 0: 1 while seeding (the program then records the sockets it moves in `touched`). */
  flags: number;
  touched: number;
  stats: number;
}

const SK = -8;
const KEY = -56;
const ZERO = -120;
const STAT_KEY = -124;
const FLAG_KEY = -128;
/** The listener key: family u8, pad, port u16 (host order), address (16 bytes; IPv4 in the first 4). */
const LKEY = -152;
/** A `touched` value: the destination key (48), the state before the first change (u32), visited by the seed (u32). */
const TOUCHED = -208;
const TOUCHED_SIZE = DESTINATION_KEY_SIZE + 8;

/** Adds `delta` (±1) to the state in register `state` of the counts value in R0 (R1-R3 clobbered). */
function addState(state: number, delta: number): Insn[] {
  return [movReg(R1, state), lshImm(R1, 2), movReg(R2, R0), addReg(R2, R1), movImm(R3, delta), atomicAdd32(R2, 0, R3)];
}

/** Adds one to stats[index] (R1, R2, R0 clobbered). */
function bumpStat(maps: Maps, index: number, done: string): (Insn | string)[] {
  return [st(4, FP, STAT_KEY, index), ...ldMap(R1, maps.stats), movReg(R2, FP), addImm(R2, STAT_KEY), call(FUNC.mapLookupElem), jeqImm(R0, 0, done), movImm(R1, 1), atomicAdd64(R0, 0, R1), ja(done)];
}

/** R0 = the counts value of the key at fp+KEY, made when missing; jumps to `full` when the map is full. */
function countsOf(maps: Maps, p: string, full: string): (Insn | string)[] {
  const lookup = [...ldMap(R1, maps.counts), movReg(R2, FP), addImm(R2, KEY), call(FUNC.mapLookupElem)];
  return [
    ...lookup,
    jneImm(R0, 0, `${p}have`),
    ...[0, 8, 16, 24, 32, 40, 48, 56].map((o) => stDw0(ZERO + o)),
    ...ldMap(R1, maps.counts),
    movReg(R2, FP),
    addImm(R2, KEY),
    movReg(R3, FP),
    addImm(R3, ZERO),
    movImm(R4, BPF_NOEXIST),
    call(FUNC.mapUpdateElem),
    ...lookup,
    jeqImm(R0, 0, full),
    `${p}have`,
  ];
}

/**
 * Jumps to `server` when the local address and port at fp+LKEY (port and
 * address filled, family at byte 0) or its family's wildcard with that port
 * is a listener's. R0-R3 clobbered; the address is zeroed for the second look.
 */
function onListener(maps: Maps, server: string): Insn[] {
  const lookup = [...ldMap(R1, maps.listeners), movReg(R2, FP), addImm(R2, LKEY), call(FUNC.mapLookupElem), jneImm(R0, 0, server)];
  return [...lookup, st(4, FP, LKEY + 4, 0), stDw0(LKEY + 8), st(4, FP, LKEY + 16, 0), ...lookup];
}

/** The family and local address of socket R6 into fp+LKEY (`p`: a label prefix, unique per use). */
function localAddress(l: Layout, p: string): (Insn | string)[] {
  const v4 = (from: number, to: number): Insn[] => [ldx(4, R1, R6, from), stx(4, FP, to, R1)];
  return [
    ldx(2, R1, R6, l.family),
    stx(1, FP, LKEY, R1),
    jneImm(R1, AF_INET, `${p}v6`),
    ...v4(l.rcvSaddr, LKEY + 4),
    ja(`${p}done`),
    `${p}v6`,
    ...[0, 4, 8, 12].flatMap((i) => v4(l.v6RcvSaddr + i, LKEY + 4 + i)),
    `${p}done`,
  ];
}

/**
 * Inserts (if absent) the `touched` entry of the socket at fp+SK: its
 * destination key (fp+KEY), the state in register `state`, and `seen`.
 * R0 is the insert's result.
 */
function recordTouched(maps: Maps, state: number, seen: 0 | 1): Insn[] {
  return [
    ...[0, 8, 16, 24, 32, 40].flatMap((o) => [ldx(8, R1, FP, KEY + o), stx(8, FP, TOUCHED + o, R1)]),
    stx(4, FP, TOUCHED + DESTINATION_KEY_SIZE, state),
    st(4, FP, TOUCHED + DESTINATION_KEY_SIZE + 4, seen),
    ...ldMap(R1, maps.touched),
    movReg(R2, FP),
    addImm(R2, SK),
    movReg(R3, FP),
    addImm(R3, TOUCHED),
    movImm(R4, BPF_NOEXIST),
    call(FUNC.mapUpdateElem),
  ];
}

const clearLkey = (): Insn[] => [stDw0(LKEY), stDw0(LKEY + 8), st(4, FP, LKEY + 16, 0)];
const clearKey = (): Insn[] => [0, 8, 16, 24, 32, 40].map((o) => stDw0(KEY + o));

/**
 * The tracepoint program: inet_sock_set_state(sk, oldstate, newstate).
 *  - A socket starting to listen adds its address and port to `listeners`
 *    (which the periodic scan prunes: a listener's closing children must
 *    still be told from clients after it is gone).
 *  - A socket on a listener's address and port is the server's side: not
 *    counted. connect() (CLOSE → SYN_SENT) always starts a client.
 *  - Any other change moves one count of the socket's destination from the
 *    old state to the new one (CLOSE is not counted), and adds one to the
 *    destination's change count; while seeding, the socket's first change is
 *    also recorded in `touched`.
 */
function transitionProgram(l: Layout, maps: Maps, netns: number): Buffer {
  return assemble([
    ldx(8, R6, R1, 0),
    ldx(8, R7, R1, 8),
    andImm(R7, 0xffff),
    ldx(8, R8, R1, 16),
    andImm(R8, 0xffff),
    jgtImm(R7, CHANGES_SLOT - 1, 'out'),
    jgtImm(R8, CHANGES_SLOT - 1, 'out'),
    ldx(2, R1, R6, l.protocol),
    jneImm(R1, IPPROTO_TCP, 'out'),
    ldx(8, R1, R6, l.net),
    ldx(4, R1, R1, l.inum),
    jne32Imm(R1, netns, 'out'),
    ...clearLkey(),
    jneImm(R8, TCP_LISTEN, 'notlisten'),
    // Starts listening: remember its address and port.
    ...localAddress(l, 'l_'),
    ldx(2, R1, R6, l.num),
    stx(2, FP, LKEY + 2, R1),
    st(4, FP, ZERO, 1),
    ...ldMap(R1, maps.listeners),
    movReg(R2, FP),
    addImm(R2, LKEY),
    movReg(R3, FP),
    addImm(R3, ZERO),
    movImm(R4, BPF_ANY),
    call(FUNC.mapUpdateElem),
    ja('out'),
    'notlisten',
    // A listener closing, or a listener's new child.
    jeqImm(R7, TCP_LISTEN, 'out'),
    jneImm(R7, TCP_CLOSE, 'classify'),
    jeqImm(R8, TCP_SYN_SENT, 'client'),
    'classify',
    // The local port: inet_sport, which a closing socket keeps (skc_num is cleared when its port is released).
    movReg(R1, R6),
    call(FUNC.skcToTcpSock),
    jeqImm(R0, 0, 'out'),
    ldx(2, R1, R0, l.sport),
    be16(R1),
    stx(2, FP, LKEY + 2, R1),
    ...localAddress(l, 'c_'),
    ...onListener(maps, 'out'),
    'client',
    stx(8, FP, SK, R6),
    ...clearKey(),
    ...destinationKeyInsns(l, R6, KEY),
    // While seeding: the socket's state before its first change, unless the seed has seen it already.
    st(4, FP, FLAG_KEY, 0),
    ...ldMap(R1, maps.flags),
    movReg(R2, FP),
    addImm(R2, FLAG_KEY),
    call(FUNC.mapLookupElem),
    jeqImm(R0, 0, 'count'),
    ldx(4, R1, R0, 0),
    jeqImm(R1, 0, 'count'),
    ...recordTouched(maps, R7, 0),
    'count',
    ...countsOf(maps, 't_', 'full'),
    jeqImm(R7, TCP_CLOSE, 'added'),
    ...addState(R7, -1),
    'added',
    jeqImm(R8, TCP_CLOSE, 'changed'),
    ...addState(R8, 1),
    'changed',
    movImm(R3, 1),
    atomicAdd32(R0, CHANGES_SLOT * 4, R3),
    ja('out'),
    'full',
    ...bumpStat(maps, STAT_DESTINATIONS_OVERFLOW, 'out'),
    'out',
    movImm(R0, 0),
    exit(),
  ]);
}

/**
 * The seeding iterator: every client-side socket (TIME_WAIT, request
 * sockets and listeners passed over) counted once: in its state now, or, if
 * the tracepoint moved it already while seeding, in the state it had before
 * (the moves are counted). Each one is marked seen in `touched`.
 */
function seedProgram(l: Layout, maps: Maps): Buffer {
  return assemble([
    ldx(8, R6, R1, 8), // ctx->sk_common
    jeqImm(R6, 0, 'out'),
    ldx(1, R8, R6, l.state),
    jeqImm(R8, TCP_TIME_WAIT, 'out'),
    jeqImm(R8, TCP_NEW_SYN_RECV, 'out'),
    jeqImm(R8, TCP_LISTEN, 'out'),
    jeqImm(R8, TCP_CLOSE, 'out'),
    jgtImm(R8, CHANGES_SLOT - 1, 'out'),
    stx(8, FP, SK, R6),
    ...clearLkey(),
    ldx(2, R1, R6, l.num),
    stx(2, FP, LKEY + 2, R1),
    ...localAddress(l, 's_'),
    ...onListener(maps, 'out'),
    ...clearKey(),
    ...destinationKeyInsns(l, R6, KEY),
    ...ldMap(R1, maps.touched),
    movReg(R2, FP),
    addImm(R2, SK),
    call(FUNC.mapLookupElem),
    jeqImm(R0, 0, 'fresh'),
    // Seen already: the iterator showed it twice (it may, resuming within a bucket that changed).
    ldx(4, R1, R0, DESTINATION_KEY_SIZE + 4),
    jneImm(R1, 0, 'out'),
    // Moved while seeding: count the state it had before (its moves are counted), and mark it seen.
    st(4, R0, DESTINATION_KEY_SIZE + 4, 1),
    ldx(4, R8, R0, DESTINATION_KEY_SIZE),
    jeqImm(R8, TCP_CLOSE, 'out'),
    jgtImm(R8, CHANGES_SLOT - 1, 'out'),
    ja('count'),
    'fresh',
    ...recordTouched(maps, R8, 1),
    jeqImm(R0, 0, 'count'),
    // The tracepoint recorded it meanwhile: its entry, never marked seen, comes back as a seed correction.
    jeqImm(R0, -EEXIST, 'out'),
    ...bumpStat(maps, STAT_SOCKETS_OVERFLOW, 'out'),
    'count',
    ...countsOf(maps, 'n_', 'full'),
    ...addState(R8, 1),
    movImm(R3, 1),
    atomicAdd32(R0, CHANGES_SLOT * 4, R3),
    ja('out'),
    'full',
    ...bumpStat(maps, STAT_DESTINATIONS_OVERFLOW, 'out'),
    'out',
    movImm(R0, 0),
    exit(),
  ]);
}

/** One destination's followed sockets, by state name (TIME_WAIT never: see the header). */
export interface DestinationStates {
  readonly source: string;
  readonly destination: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** Counts by TCP state number (index into TCP_STATES). */
  readonly states: readonly number[];
  /** Changes counted for it so far (sockets followed, state changes): the same before and after a scan means it did not move meanwhile. */
  readonly changes: number;
  /** The map keys behind it (two when IPv4 and v4-mapped IPv6 sockets share it), for forget(). */
  readonly keys: readonly Buffer[];
}

/** What a read of the counts gives. */
export interface KeptCounts {
  readonly destinations: readonly DestinationStates[];
  /** Sockets the seed could not mark because `touched` was full, and changes not counted because `counts` was. */
  readonly socketsOverflow: number;
  readonly destinationsOverflow: number;
  /** Wall time of the read. */
  readonly ms: number;
}

/** A listener, as the seeding iterator's map wants it. */
export interface ListenerAddress {
  readonly address: string;
  readonly port: number;
}

/**
 * The kernel-kept counts: open() attaches the tracepoint and seeds from the
 * table (`listeners`: the namespace's listening addresses, to tell the
 * server's side from the client's), read() walks the counts, close()
 * detaches and frees everything.
 */
export class StateCounter {
  readonly #maps: Maps;
  readonly #links: number[];
  readonly #seedCorrections: readonly DestinationStates[];
  #closed = false;

  private constructor(maps: Maps, links: number[], seedCorrections: DestinationStates[]) {
    this.#maps = maps;
    this.#links = links;
    this.#seedCorrections = seedCorrections;
  }

  /**
   * Sockets that existed when the counter started and closed (or changed)
   * before the seed reached them: their first change took a count from a
   * state they were never counted in. Add these to the counts read.
   */
  get seedCorrections(): readonly DestinationStates[] {
    return this.#seedCorrections;
  }

  /**
   * Attaches and seeds. `listeners()` gives the namespace's listening
   * addresses; it is called once the tracepoint is attached (a socket that
   * starts listening from then on is seen by the program), so no listener's
   * children are taken for clients. `sockets`: about how many sockets the
   * table holds on the client side, to size the seed's map. UnsupportedError (with the kernel's
   * reason) when it cannot attach.
   */
  static open(listeners: () => readonly ListenerAddress[], sockets = 0): StateCounter {
    if (!ffi.ffiAvailable()) throw new UnsupportedError(ffi.ffiUnavailableReason() ?? 'no FFI');
    const opened: number[] = [];
    const links: number[] = [];
    try {
      const l = readLayout();
      const netns = netnsInode();
      const map = (type: number, key: number, value: number, max: number, name: string, flags = 0): number => {
        const fd = createMap(type, key, value, max, name, flags);
        opened.push(fd);
        return fd;
      };
      const maps: Maps = {
        // Per CPU: two CPUs moving sockets of one destination never share a cache line; a read sums them.
        counts: map(BPF_MAP_TYPE_PERCPU_HASH, DESTINATION_KEY_SIZE, VALUE_SIZE, MAX_DESTINATIONS, countsMapName(netns)),
        listeners: map(BPF_MAP_TYPE_HASH, LISTENER_KEY_SIZE, 4, MAX_LISTENERS, 'ft_listeners'),
        flags: map(BPF_MAP_TYPE_ARRAY, 4, 4, 1, 'ft_count_flags'),
        // Sized for the table and what may open while the seed runs (a hash map's buckets are allocated whole).
        touched: map(BPF_MAP_TYPE_HASH, 8, TOUCHED_SIZE, Math.min(MAX_SOCKETS, sockets + SEED_SLACK), 'ft_touched', BPF_F_NO_PREALLOC),
        stats: map(BPF_MAP_TYPE_ARRAY, 4, 8, STATS, 'ft_count_stats'),
      };
      setFlag(maps.flags, 1);
      // First the tracepoint, then the listeners, then the seed; sockets changing meanwhile are recorded in `touched`.
      const prog = loadTracing({ insns: transitionProgram(l, maps, netns), name: 'ft_count_state', attachType: BPF_TRACE_RAW_TP, attachBtfId: l.stateTp });
      try {
        links.push(attachRawTracepoint(prog));
      } finally {
        ffi.close(prog);
      }
      setListeners(maps.listeners, listeners());
      const seed = loadTracing({ insns: seedProgram(l, maps), name: 'ft_count_seed', attachType: BPF_TRACE_ITER, attachBtfId: l.iterTarget });
      let seedLink: number;
      try {
        seedLink = attach(seed, BPF_TRACE_ITER);
      } finally {
        ffi.close(seed);
      }
      try {
        drainIterator(seedLink);
      } finally {
        ffi.close(seedLink);
      }
      setFlag(maps.flags, 0);
      return new StateCounter(maps, links, drainTouched(maps.touched));
    } catch (err) {
      for (const fd of [...links, ...opened]) ffi.close(fd);
      throw err instanceof UnsupportedError ? err : new UnsupportedError((err as Error).message);
    }
  }

  /**
   * Deletes the entries of destinations with nothing left (the reconciling
   * scan's idle ones), so the bounded map keeps room for live ones. A change
   * the program makes between the read and the delete is lost, and the next
   * reconciliation finds it as drift.
   */
  forget(destinations: readonly DestinationStates[]): void {
    for (const d of destinations) for (const key of d.keys) mapDelete(this.#maps.counts, key);
  }

  /** Replaces the listeners the program tells the server's side by (the reconciling scan's): those gone are forgotten. */
  setListeners(listeners: readonly ListenerAddress[]): void {
    const stale: Buffer[] = [];
    mapEntries(this.#maps.listeners, LISTENER_KEY_SIZE, 4, (key) => stale.push(Buffer.from(key)));
    const keep = new Set(listeners.map((x) => listenerKey(x)?.toString('hex')));
    for (const key of stale) if (!keep.has(key.toString('hex'))) mapDelete(this.#maps.listeners, key);
    setListeners(this.#maps.listeners, listeners);
  }

  /** The counts now. */
  read(): KeptCounts {
    if (this.#closed) throw new UnsupportedError('the state counter is closed');
    const start = performance.now();
    const destinations: DestinationStates[] = [];
    const cpus = possibleCpus();
    mapEntries(this.#maps.counts, DESTINATION_KEY_SIZE, VALUE_SIZE * cpus, (key, value) => {
      const states: number[] = [];
      let changes = 0;
      for (let s = 0; s < TCP_STATES.length; s++) {
        // One CPU may hold the +1 of a socket and another its −1: only the sum means something.
        let n = 0;
        for (let c = 0; c < cpus; c++) n += value.readInt32LE(c * VALUE_SIZE + s * 4);
        states.push(n);
      }
      for (let c = 0; c < cpus; c++) changes = (changes + value.readUInt32LE(c * VALUE_SIZE + CHANGES_SLOT * 4)) >>> 0;
      const a = keyAddresses(key);
      destinations.push({ ...a, family: a.destination.includes(':') ? 6 : 4, states, changes, keys: [Buffer.from(key)] });
    });
    const stat = (i: number): number => {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(i, 0);
      const v = Buffer.alloc(8);
      return mapLookup(this.#maps.stats, k, v) === 0 ? Number(v.readBigUInt64LE(0)) : 0;
    };
    return {
      destinations,
      socketsOverflow: stat(STAT_SOCKETS_OVERFLOW),
      destinationsOverflow: stat(STAT_DESTINATIONS_OVERFLOW),
      ms: performance.now() - start,
    };
  }

  /** Detaches the program and frees the maps. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const fd of this.#links) ffi.close(fd);
    for (const fd of Object.values(this.#maps)) ffi.close(fd);
  }
}

let cpuCount: number | undefined;

/** The kernel's possible CPUs (/sys/devices/system/cpu/possible): how many values a per-CPU map gives per key. */
function possibleCpus(): number {
  if (cpuCount !== undefined) return cpuCount;
  const text = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
  let n = 0;
  for (const part of text.split(',')) {
    const [lo, hi] = part.split('-').map(Number);
    n += hi === undefined ? 1 : hi - lo + 1;
  }
  cpuCount = n;
  return n;
}

/** The counts map's name: per network namespace, so a test (or bpftool) can tell its own. */
export function countsMapName(netns: number): string {
  return netnsMapName('ftcnt_', netns);
}

/** A listener's key in `listeners`: family u8, pad, port u16 (host order), address (16 bytes; IPv4 in the first 4); undefined for a bad address. */
function listenerKey(l: ListenerAddress): Buffer | undefined {
  const ip = parseIp(l.address);
  if (!ip) return undefined;
  const key = Buffer.alloc(LISTENER_KEY_SIZE);
  key[0] = ip.family === 4 ? AF_INET : AF_INET6;
  key.writeUInt16LE(l.port, 2);
  if (ip.family === 4) key.writeUInt32BE(Number(ip.n), 4);
  else for (let i = 0; i < 16; i++) key[4 + i] = Number((ip.n >> BigInt(8 * (15 - i))) & 0xffn);
  return key;
}

/** Adds listening addresses to the map. */
function setListeners(fd: number, listeners: readonly ListenerAddress[]): void {
  const one = Buffer.alloc(4);
  one.writeUInt32LE(1, 0);
  for (const l of listeners) {
    const key = listenerKey(l);
    if (key) mapUpdate(fd, key, one);
  }
}

function setFlag(fd: number, value: number): void {
  const key = Buffer.alloc(4);
  const v = Buffer.alloc(4);
  v.writeUInt32LE(value, 0);
  mapUpdate(fd, key, v);
}

/**
 * After the seed: the sockets the tracepoint moved before the seed reached
 * them (not marked seen), as corrections by destination (+1 in the state
 * before their first change); then empties the map, which holds an entry
 * for every socket the seed saw.
 */
function drainTouched(fd: number): DestinationStates[] {
  const keys: Buffer[] = [];
  const byKey = new Map<string, { source: string; destination: string; port: number; family: 4 | 6; states: number[]; changes: number; keys: Buffer[] }>();
  mapEntries(fd, 8, TOUCHED_SIZE, (key, value) => {
    keys.push(Buffer.from(key));
    const seen = value.readUInt32LE(DESTINATION_KEY_SIZE + 4);
    const first = value.readUInt32LE(DESTINATION_KEY_SIZE);
    if (seen || first === TCP_CLOSE || first >= TCP_STATES.length) return;
    const a = keyAddresses(value);
    const k = `${a.source}|${a.destination}|${a.port}`;
    let d = byKey.get(k);
    if (!d) byKey.set(k, (d = { ...a, family: a.destination.includes(':') ? 6 : 4, states: new Array<number>(TCP_STATES.length).fill(0), changes: 0, keys: [] }));
    d.states[first]++;
  });
  for (const key of keys) mapDelete(fd, key);
  return [...byKey.values()];
}

/** Runs an iterator that writes nothing to the end. */
function drainIterator(link: number): void {
  const failed = runIterator(link, Buffer.alloc(4096), () => undefined);
  if (failed !== undefined) throw new Error(`seeding iterator: ${failed}`);
}

/** The counter, or why it cannot attach here. */
export function stateCounter(listeners: () => readonly ListenerAddress[], sockets = 0): { counter: StateCounter } | { reason: string } {
  if (process.env.FOURTUPLE_NO_BPF === '1') return { reason: 'disabled by FOURTUPLE_NO_BPF=1' };
  try {
    return { counter: StateCounter.open(listeners, sockets) };
  } catch (err) {
    return { reason: (err as Error).message };
  }
}
