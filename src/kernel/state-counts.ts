/**
 * Client-side sockets per destination and state, kept by the kernel as they
 * change, so that reading them costs a map walk instead of a walk of the
 * whole socket table (about 1 s at a million sockets).
 *
 * How. A tp_btf program on `sock:inet_sock_set_state` follows every TCP
 * socket of this network namespace that connect() starts (CLOSE → SYN_SENT):
 * it remembers the socket's destination key in `socks` (keyed by the
 * socket's address) and adds one to its state in `counts` (keyed by the
 * destination: family, source, destination address and port); each later
 * transition moves the count from the old state to the new one, and CLOSE
 * forgets the socket. Sockets that existed before are seeded once by an
 * iterator program that walks the table: every socket not on a listener's
 * address and port (the `listeners` map, filled from a scan of the
 * listeners) and not already followed. The iterator holds each socket's
 * lock while it looks, as the state changes do, so no change is counted
 * twice or lost between the two.
 *
 * What it cannot see: TIME_WAIT. A closing socket leaves a separate timewait
 * socket behind without a traced event, and that one expires without one
 * too (fentry on the kernel's timewait functions would see both; this
 * kernel refuses fentry). So the counts here are of every other state, and
 * TIME_WAIT comes from the periodic full scan that also reconciles the
 * counts (kernel-counts.ts).
 *
 * Bounded: `socks` holds at most MAX_SOCKETS entries and `counts`
 * MAX_DESTINATIONS; what does not fit is counted in `stats` (and then not
 * followed), which a reader reports. Nothing is pinned.
 */
import * as ffi from './ffi.js';
import {
  BPF_ANY,
  BPF_F_NO_PREALLOC,
  BPF_ITER_CREATE,
  BPF_MAP_TYPE_ARRAY,
  BPF_MAP_TYPE_HASH,
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
  R9,
  addImm,
  addReg,
  andImm,
  assemble,
  atomicAdd32,
  atomicAdd64,
  attach,
  attachRawTracepoint,
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
  mapLookup,
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
import { AF_INET, AF_INET6, EAGAIN, EEXIST, EINTR, IPPROTO_TCP, TCP_CLOSE, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_STATES, TCP_SYN_SENT, TCP_TIME_WAIT } from './linux.js';
import { UnsupportedError } from '../errors.js';
import { parseIp } from '../ip.js';

/** Sockets followed at most; more are counted in `socketsOverflow` and not followed. */
export const MAX_SOCKETS = 4_194_304;
/** Destinations counted at most; more are counted in `destinationsOverflow`. */
export const MAX_DESTINATIONS = 65_536;
/** Per destination: one u32 per TCP state number (0-14), and in slot 15 its changes so far. */
const STATE_SLOTS = 16;
const CHANGES_SLOT = 15;
const VALUE_SIZE = STATE_SLOTS * 4;
const LISTENER_KEY_SIZE = 20;

/** Indexes of the `stats` array. */
const STAT_SOCKETS_OVERFLOW = 0;
const STAT_DESTINATIONS_OVERFLOW = 1;
/** Changes applied (a socket followed, or a followed socket's state change): a reader compares it before and after a scan to know nothing moved. */
const STAT_TRANSITIONS = 2;
const STATS = 4;

interface Layout extends SockCommonOffsets {
  protocol: number;
  inum: number;
  stateTp: number;
  iterTarget: number;
  metaSeq: number;
}

let layout: Layout | undefined;

function readLayout(): Layout {
  if (layout) return layout;
  const btf = Btf.vmlinux();
  const stateTp = btf.find(BtfKind.TYPEDEF, 'btf_trace_inet_sock_set_state');
  if (stateTp === undefined) throw new Error("the kernel's BTF has no tracepoint inet_sock_set_state");
  const iterTarget = btf.find(BtfKind.FUNC, 'bpf_iter_tcp');
  if (iterTarget === undefined) throw new Error('the kernel has no tcp iterator (bpf_iter_tcp)');
  layout = {
    ...sockCommonOffsets(btf),
    protocol: btf.offsetOf('sock', ['sk_protocol'], 2),
    inum: btf.offsetOf('net', ['ns', 'inum'], 4),
    metaSeq: btf.offsetOf('bpf_iter_meta', ['seq'], 8),
    stateTp,
    iterTarget,
  };
  return layout;
}

interface Maps {
  socks: number;
  counts: number;
  listeners: number;
  stats: number;
}

const SK = -8;
const KEY = -56;
const ZERO = -120;
const STAT_KEY = -128;

/** Adds `delta` (±1) to the state in register `state` of the counts value in R0 (R1-R3 clobbered). */
function addState(state: number, delta: number): Insn[] {
  return [movReg(R1, state), lshImm(R1, 2), movReg(R2, R0), addReg(R2, R1), movImm(R3, delta), atomicAdd32(R2, 0, R3)];
}

/** Adds one to stats[index] (R1, R2, R0 clobbered). */
function bumpStat(maps: Maps, index: number, done: string): (Insn | string)[] {
  return [st(4, FP, STAT_KEY, index), ...ldMap(R1, maps.stats), movReg(R2, FP), addImm(R2, STAT_KEY), call(FUNC.mapLookupElem), jeqImm(R0, 0, done), movImm(R1, 1), atomicAdd64(R0, 0, R1), ja(done)];
}

/**
 * Follows socket R6 (its key at fp+KEY, its address at fp+SK) from state in
 * register `state`: remembers it, then adds one to its destination's state,
 * making the destination's entry when it has none. Jumps to `done`.
 */
function follow(maps: Maps, state: number, done: string, p: string): (Insn | string)[] {
  return [
    ...ldMap(R1, maps.socks),
    movReg(R2, FP),
    addImm(R2, SK),
    movReg(R3, FP),
    addImm(R3, KEY),
    movImm(R4, BPF_NOEXIST),
    call(FUNC.mapUpdateElem),
    jeqImm(R0, 0, `${p}count`),
    // Followed already (the iterator meets a socket the tracepoint took up): nothing to do. Else `socks` is full.
    jeqImm(R0, -EEXIST, done),
    ...bumpStat(maps, STAT_SOCKETS_OVERFLOW, done),
    `${p}count`,
    ...ldMap(R1, maps.counts),
    movReg(R2, FP),
    addImm(R2, KEY),
    call(FUNC.mapLookupElem),
    jneImm(R0, 0, `${p}add`),
    ...[0, 8, 16, 24, 32, 40, 48, 56].map((o) => stDw0(ZERO + o)),
    ...ldMap(R1, maps.counts),
    movReg(R2, FP),
    addImm(R2, KEY),
    movReg(R3, FP),
    addImm(R3, ZERO),
    movImm(R4, BPF_NOEXIST),
    call(FUNC.mapUpdateElem),
    ...ldMap(R1, maps.counts),
    movReg(R2, FP),
    addImm(R2, KEY),
    call(FUNC.mapLookupElem),
    jneImm(R0, 0, `${p}add`),
    // `counts` is full: stop following this socket, and count it.
    ...ldMap(R1, maps.socks),
    movReg(R2, FP),
    addImm(R2, SK),
    call(FUNC.mapDeleteElem),
    ...bumpStat(maps, STAT_DESTINATIONS_OVERFLOW, done),
    `${p}add`,
    ...addState(state, 1),
    movImm(R3, 1),
    atomicAdd32(R0, CHANGES_SLOT * 4, R3),
    ...bumpStat(maps, STAT_TRANSITIONS, done),
  ];
}

/** The tracepoint program: inet_sock_set_state(sk, oldstate, newstate). */
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
    stx(8, FP, SK, R6),
    jneImm(R7, TCP_CLOSE, 'known'),
    jneImm(R8, TCP_SYN_SENT, 'out'),
    // connect() starts: follow it.
    ...[0, 8, 16, 24, 32, 40].map((o) => stDw0(KEY + o)),
    ...destinationKeyInsns(l, R6, KEY),
    ...follow(maps, R8, 'out', 'f_'),
    'known',
    ...ldMap(R1, maps.socks),
    movReg(R2, FP),
    addImm(R2, SK),
    call(FUNC.mapLookupElem),
    jeqImm(R0, 0, 'out'),
    // R0: the socket's destination key, in `socks`.
    movReg(R2, R0),
    ...ldMap(R1, maps.counts),
    call(FUNC.mapLookupElem),
    jeqImm(R0, 0, 'forget'),
    movReg(R9, R0),
    movImm(R3, 1),
    atomicAdd32(R9, CHANGES_SLOT * 4, R3),
    ...addState(R7, -1),
    jeqImm(R8, TCP_CLOSE, 'moved'),
    movReg(R0, R9),
    ...addState(R8, 1),
    'moved',
    ...bumpStat(maps, STAT_TRANSITIONS, 'forget'),
    'forget',
    jneImm(R8, TCP_CLOSE, 'out'),
    ...ldMap(R1, maps.socks),
    movReg(R2, FP),
    addImm(R2, SK),
    call(FUNC.mapDeleteElem),
    'out',
    movImm(R0, 0),
    exit(),
  ]);
}

/** The seeding iterator: every client-side socket not yet followed, in its current state (TIME_WAIT and request sockets passed over). */
function seedProgram(l: Layout, maps: Maps): Buffer {
  const lkey = -80;
  const v4 = (from: number, to: number): Insn[] => [ldx(4, R1, R6, from), stx(4, FP, to, R1)];
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
    // On a listener's address and port (or its family's wildcard with that port): the server's side.
    stDw0(lkey), stDw0(lkey + 8), stDw0(lkey + 16),
    ldx(2, R1, R6, l.family),
    stx(1, FP, lkey, R1),
    ldx(2, R1, R6, l.num),
    stx(2, FP, lkey + 2, R1),
    ...ldMap(R1, maps.listeners),
    movReg(R2, FP),
    addImm(R2, lkey),
    call(FUNC.mapLookupElem),
    jneImm(R0, 0, 'out'),
    ldx(2, R1, R6, l.family),
    jneImm(R1, AF_INET, 'v6'),
    ...v4(l.rcvSaddr, lkey + 4),
    ja('lookup'),
    'v6',
    ...[0, 4, 8, 12].flatMap((i) => v4(l.v6RcvSaddr + i, lkey + 4 + i)),
    'lookup',
    ...ldMap(R1, maps.listeners),
    movReg(R2, FP),
    addImm(R2, lkey),
    call(FUNC.mapLookupElem),
    jneImm(R0, 0, 'out'),
    ...[0, 8, 16, 24, 32, 40].map((o) => stDw0(KEY + o)),
    ...destinationKeyInsns(l, R6, KEY),
    ...follow(maps, R8, 'out', 's_'),
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
}

/** What a read of the counts gives. */
export interface KeptCounts {
  readonly destinations: readonly DestinationStates[];
  /** Sockets not followed because `socks` was full, and destinations not counted because `counts` was. */
  readonly socketsOverflow: number;
  readonly destinationsOverflow: number;
  /** Changes applied since the counter started (sockets followed, state changes): unchanged across a scan means nothing moved during it. */
  readonly transitions: number;
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
  #closed = false;

  private constructor(maps: Maps, links: number[]) {
    this.#maps = maps;
    this.#links = links;
  }

  /** UnsupportedError (with the kernel's reason) when it cannot attach. */
  static open(listeners: readonly ListenerAddress[]): StateCounter {
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
        socks: map(BPF_MAP_TYPE_HASH, 8, DESTINATION_KEY_SIZE, MAX_SOCKETS, 'ft_socks', BPF_F_NO_PREALLOC),
        counts: map(BPF_MAP_TYPE_HASH, DESTINATION_KEY_SIZE, VALUE_SIZE, MAX_DESTINATIONS, countsMapName(netns)),
        listeners: map(BPF_MAP_TYPE_HASH, LISTENER_KEY_SIZE, 1, Math.max(1, listeners.length + 2), 'ft_listeners'),
        stats: map(BPF_MAP_TYPE_ARRAY, 4, 8, STATS, 'ft_count_stats'),
      };
      fillListeners(maps.listeners, listeners);
      // First the tracepoint, then the seed: a socket changing meanwhile is followed by one or the other, never both.
      const prog = loadTracing({ insns: transitionProgram(l, maps, netns), name: 'ft_count_state', attachType: BPF_TRACE_RAW_TP, attachBtfId: l.stateTp });
      try {
        links.push(attachRawTracepoint(prog));
      } finally {
        ffi.close(prog);
      }
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
      return new StateCounter(maps, links);
    } catch (err) {
      for (const fd of [...links, ...opened]) ffi.close(fd);
      throw err instanceof UnsupportedError ? err : new UnsupportedError((err as Error).message);
    }
  }

  /** The counts now. */
  read(): KeptCounts {
    if (this.#closed) throw new UnsupportedError('the state counter is closed');
    const start = performance.now();
    const destinations: DestinationStates[] = [];
    mapEntries(this.#maps.counts, DESTINATION_KEY_SIZE, VALUE_SIZE, (key, value) => {
      const states: number[] = [];
      for (let s = 0; s < TCP_STATES.length; s++) states.push(value.readInt32LE(s * 4));
      const a = keyAddresses(key);
      destinations.push({ ...a, family: a.destination.includes(':') ? 6 : 4, states, changes: value.readUInt32LE(CHANGES_SLOT * 4) });
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
      transitions: stat(STAT_TRANSITIONS),
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

/** The counts map's name: per network namespace, so a test (or bpftool) can tell its own. */
export function countsMapName(netns: number): string {
  return netnsMapName('ftcnt_', netns);
}

/** Listening addresses into the seeding iterator's map: family u8, pad, port u16 (host order), address (16 bytes; IPv4 in the first 4). */
function fillListeners(fd: number, listeners: readonly ListenerAddress[]): void {
  const key = Buffer.alloc(LISTENER_KEY_SIZE);
  const one = Buffer.from([1]);
  const attr = Buffer.alloc(32);
  for (const l of listeners) {
    const ip = parseIp(l.address);
    if (!ip) continue;
    key.fill(0);
    key[0] = ip.family === 4 ? AF_INET : AF_INET6;
    key.writeUInt16LE(l.port, 2);
    if (ip.family === 4) key.writeUInt32BE(Number(ip.n), 4);
    else for (let i = 0; i < 16; i++) key[4 + i] = Number((ip.n >> BigInt(8 * (15 - i))) & 0xffn);
    attr.fill(0);
    attr.writeUInt32LE(fd, 0);
    attr.writeBigUInt64LE(ffi.addressOf(key), 8);
    attr.writeBigUInt64LE(ffi.addressOf(one), 16);
    attr.writeBigUInt64LE(BigInt(BPF_ANY), 24);
    ffi.bpf(2 /* BPF_MAP_UPDATE_ELEM */, attr);
  }
}

/** Runs an iterator that writes nothing to the end. */
function drainIterator(link: number): void {
  const attr = Buffer.alloc(8);
  attr.writeUInt32LE(link, 0);
  const fd = ffi.bpf(BPF_ITER_CREATE, attr);
  if (fd < 0) throw new Error(`BPF_ITER_CREATE: ${ffi.errnoName(fd)}`);
  const buf = Buffer.alloc(4096);
  try {
    for (;;) {
      const n = ffi.read(fd, buf);
      if (n === 0) return;
      if (n === -EAGAIN || n === -EINTR) continue;
      if (n < 0) throw new Error(`seeding iterator: read: ${ffi.errnoName(n)}`);
    }
  } finally {
    ffi.close(fd);
  }
}

/** The counter, or why it cannot attach here. */
export function stateCounter(listeners: readonly ListenerAddress[]): { counter: StateCounter } | { reason: string } {
  if (process.env.FOURTUPLE_NO_BPF === '1') return { reason: 'disabled by FOURTUPLE_NO_BPF=1' };
  try {
    return { counter: StateCounter.open(listeners) };
  } catch (err) {
    return { reason: (err as Error).message };
  }
}
