/**
 * Every connect() and bind() that fails for want of a port, counted in the
 * kernel as it happens: two BPF programs on tracepoints (tp_btf), assembled
 * against the running kernel's BTF like the socket-table iterator, that add
 * one to a BPF hash map keyed by (call, family, source, destination, port,
 * errno).
 *
 * Where they attach, and why there. fentry/fexit on tcp_v4_connect and
 * inet_csk_get_port would be the obvious places, but they need ftrace's
 * trampolines, which some kernels refuse (EPERM on the VM this was built
 * on, where tracefs is closed too); tracepoints are always there.
 *  - `sock:inet_sock_set_state`, SYN_SENT → CLOSE: tcp_v4_connect and
 *    tcp_v6_connect set SYN_SENT before they pick the source port and CLOSE
 *    when that fails, with the source address the route chose and the
 *    destination still on the socket (they are reset just after). A socket
 *    that never got a source port (inet_sport 0) failed with EADDRNOTAVAIL;
 *    one that did failed later, with the error on the socket (sk_err:
 *    ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH...). SYN_SENT → CLOSE with
 *    neither is a close() before the handshake ended, not a failure.
 *  - `raw_syscalls:sys_exit` of bind() returning EADDRINUSE or
 *    EADDRNOTAVAIL (x86_64): the address and port asked for are read back
 *    from the caller's sockaddr (addrlen bytes, 28 at most). The exit does
 *    not say the socket's type: a UDP socket's failed bind() counts too. bind() changes no TCP state, so no socket
 *    tracepoint sees it fail. This program runs at every system call's exit
 *    while attached and returns after two compares for all but bind().
 *
 * Only failures in the tracer's own network namespace are counted: the
 * programs compare the socket's (or the calling task's) net->ns.inum with
 * this process's.
 *
 * Bounded: the map has MAX_KEYS entries (preallocated); a failure whose key
 * finds the map full adds to one reserved entry instead, reported as
 * `overflow`. Nothing is pinned: the links and the map live in descriptors of
 * this process, so the programs are detached when it closes them or ends.
 * Another process (one-shot `ports`) finds a running tracer's map by its name
 * and reads it (liveFailures).
 */
import * as ffi from './ffi.js';
import {
  BPF_MAP_TYPE_HASH,
  BPF_NOEXIST,
  BPF_TRACE_RAW_TP,
  FP,
  FUNC,
  R0,
  R1,
  R2,
  R3,
  R4,
  R6,
  R7,
  addImm,
  assemble,
  atomicAdd64,
  attachRawTracepoint,
  call,
  createMap,
  exit,
  findMaps,
  ja,
  jeq32Imm,
  jeqImm,
  jgtImm,
  jne32Imm,
  jneImm,
  ldMap,
  netnsInode,
  netnsMapName,
  ldx,
  loadTracing,
  mapEntries,
  mapUpdate,
  tracepointId,
  movImm,
  movReg,
  neg32,
  st,
  stDw0,
  destinationKeyInsns,
  keyAddresses,
  sockCommonOffsets,
  stx,
  type Insn,
  type SockCommonOffsets,
} from './bpf.js';
import { Btf } from './btf.js';
import { AF_INET, AF_INET6, EADDRINUSE, EADDRNOTAVAIL, EEXIST, IPPROTO_TCP, TCP_CLOSE, TCP_SYN_SENT, errnoName } from './linux.js';
import { UnsupportedError } from '../errors.js';

/** Distinct (call, source, destination, port, errno) keys the map holds; more go to `overflow`. */
export const MAX_KEYS = 4096;
const KEY_SIZE = 48;
const VALUE_SIZE = 8;
const CALL_CONNECT = 0;
const CALL_BIND = 1;
/** The reserved key of the overflow count. */
const CALL_OVERFLOW = 255;

/** Failures of one call toward one destination (or on one local address and port, for bind) with one errno, since the tracer attached. */
export interface FailureCount {
  readonly call: 'connect' | 'bind';
  readonly family: 4 | 6;
  /** The source address: the one the route chose (connect) or the one bound to (bind). */
  readonly source: string;
  /** The destination address; null for bind. */
  readonly destination: string | null;
  /** connect: the destination port; bind: the port asked for (0: any ephemeral port). */
  readonly port: number;
  /** The errno the call returned, by name: EADDRNOTAVAIL, EADDRINUSE. */
  readonly errno: string;
  readonly count: number;
}

/** What the tracer counted since it attached. */
export interface FailureSnapshot {
  /** When it was read (epoch ms). */
  readonly at: number;
  /** Most first. */
  readonly counts: readonly FailureCount[];
  /** Failures not counted by key because the map was full. */
  readonly overflow: number;
}

interface Layout extends SockCommonOffsets {
  inum: number;
  protocol: number;
  err: number;
  sport: number;
  /** Registers of a system call's exit (x86_64): its number and second argument. */
  origAx: number;
  si: number;
  dx: number;
  nsproxy: number;
  netNs: number;
  stateTp: number;
  exitTp: number;
}

let layout: Layout | undefined;

function readLayout(): Layout {
  if (layout) return layout;
  if (process.arch !== 'x64') throw new Error(`the failure tracer reads x86_64 system call registers; this is ${process.arch}`);
  const btf = Btf.vmlinux();
  const m = (struct: string, path: string[], size: number): number => btf.offsetOf(struct, path, size);
  layout = {
    ...sockCommonOffsets(btf),
    inum: m('net', ['ns', 'inum'], 4),
    protocol: m('sock', ['sk_protocol'], 2),
    err: m('sock', ['sk_err'], 4),
    sport: m('tcp_sock', ['inet_conn', 'icsk_inet', 'inet_sport'], 2),
    origAx: m('pt_regs', ['orig_ax'], 8),
    si: m('pt_regs', ['si'], 8),
    dx: m('pt_regs', ['dx'], 8),
    nsproxy: m('task_struct', ['nsproxy'], 8),
    netNs: m('nsproxy', ['net_ns'], 8),
    stateTp: tracepointId(btf, 'inet_sock_set_state'),
    exitTp: tracepointId(btf, 'sys_exit'),
  };
  return layout;
}

const KEY = -48;
const ONE = -56;

/** Adds one to the count of the key at fp-48, or to the overflow entry when the map is full. */
function count(map: number): (Insn | string)[] {
  const lookupAdd = (miss: string): Insn[] => [...ldMap(R1, map), movReg(R2, FP), addImm(R2, KEY), call(FUNC.mapLookupElem), jeqImm(R0, 0, miss), movImm(R1, 1), atomicAdd64(R0, 0, R1), ja('out')];
  return [
    ...lookupAdd('insert'),
    'insert',
    st(8, FP, ONE, 1),
    ...ldMap(R1, map),
    movReg(R2, FP),
    addImm(R2, KEY),
    movReg(R3, FP),
    addImm(R3, ONE),
    movImm(R4, BPF_NOEXIST),
    call(FUNC.mapUpdateElem),
    jeqImm(R0, 0, 'out'),
    // Another CPU inserted the key meanwhile: add to its entry. Else the map is full.
    jneImm(R0, -EEXIST, 'overflow'),
    ...lookupAdd('out'),
    'overflow',
    ...clearKey(),
    st(1, FP, KEY + 1, CALL_OVERFLOW),
    ...lookupAdd('out'),
    'out',
    movImm(R0, 0),
    exit(),
  ];
}

const clearKey = (): Insn[] => [48, 40, 32, 24, 16, 8].map((o) => stDw0(-o));

/**
 * On inet_sock_set_state(sk, oldstate, newstate), SYN_SENT → CLOSE of a TCP
 * socket in our namespace: EADDRNOTAVAIL when it never got a source port,
 * else its sk_err when it has one.
 */
function stateProgram(l: Layout, map: number, netns: number): Buffer {
  return assemble([
    ldx(8, R6, R1, 0),
    ldx(8, R2, R1, 8),
    jne32Imm(R2, TCP_SYN_SENT, 'out'),
    ldx(8, R2, R1, 16),
    jne32Imm(R2, TCP_CLOSE, 'out'),
    ldx(2, R2, R6, l.protocol),
    jneImm(R2, IPPROTO_TCP, 'out'),
    ldx(8, R1, R6, l.net),
    ldx(4, R1, R1, l.inum),
    jne32Imm(R1, netns, 'out'),
    // inet_sport lies past struct sock: reach it through the tcp_sock the socket is.
    movReg(R1, R6),
    call(FUNC.skcToTcpSock),
    jeqImm(R0, 0, 'out'),
    movImm(R7, EADDRNOTAVAIL),
    ldx(2, R1, R0, l.sport),
    jeqImm(R1, 0, 'failed'),
    ldx(4, R7, R6, l.err),
    jeq32Imm(R7, 0, 'out'),
    'failed',
    ...clearKey(),
    ...destinationKeyInsns(l, R6, KEY),
    st(1, FP, KEY + 1, CALL_CONNECT),
    stx(4, FP, KEY + 4, R7),
    ...count(map),
  ]);
}

/** x86_64 system call number of bind(). */
const NR_BIND = 49;

/**
 * On sys_exit(regs, ret): bind() in our namespace returning EADDRINUSE or
 * EADDRNOTAVAIL; the address and port asked for are read from the caller's
 * sockaddr (sockaddr_in or sockaddr_in6, 28 bytes at fp-88).
 */
function bindProgram(l: Layout, map: number, netns: number): Buffer {
  const addr = -88;
  return assemble([
    ldx(8, R7, R1, 8),
    jeqImm(R7, -EADDRINUSE, 'bind'),
    jneImm(R7, -EADDRNOTAVAIL, 'out'),
    'bind',
    ldx(8, R6, R1, 0),
    ldx(8, R2, R6, l.origAx),
    jneImm(R2, NR_BIND, 'out'),
    call(FUNC.getCurrentTaskBtf),
    ldx(8, R1, R0, l.nsproxy),
    jeqImm(R1, 0, 'out'),
    ldx(8, R1, R1, l.netNs),
    ldx(4, R1, R1, l.inum),
    jne32Imm(R1, netns, 'out'),
    ...clearKey(),
    stDw0(addr), stDw0(addr + 8), stDw0(addr + 16), stDw0(addr + 24),
    // addrlen, the third argument: at least a sockaddr_in's family and port, at most a sockaddr_in6.
    ldx(8, R2, R6, l.dx),
    jgtImm(R2, 7, 'lenok'),
    ja('out'),
    'lenok',
    jgtImm(R2, 28, 'clamp'),
    ja('read'),
    'clamp',
    movImm(R2, 28),
    'read',
    movReg(R1, FP),
    addImm(R1, addr),
    ldx(8, R3, R6, l.si),
    call(FUNC.probeReadUser),
    jneImm(R0, 0, 'out'),
    ldx(2, R1, FP, addr),
    jeqImm(R1, AF_INET, 'v4'),
    jneImm(R1, AF_INET6, 'out'),
    ...[0, 4, 8, 12].flatMap((i) => [ldx(4, R1, FP, addr + 8 + i), stx(4, FP, KEY + 16 + i, R1)]),
    ja('key'),
    'v4',
    ldx(4, R1, FP, addr + 4),
    stx(4, FP, KEY + 8, R1),
    'key',
    ldx(2, R1, FP, addr),
    stx(1, FP, KEY, R1),
    st(1, FP, KEY + 1, CALL_BIND),
    ldx(2, R1, FP, addr + 2),
    stx(2, FP, KEY + 2, R1),
    neg32(R7),
    stx(4, FP, KEY + 4, R7),
    ...count(map),
  ]);
}

/** The map's name, which tells other processes of this namespace where to read. */
function mapName(netns: number): string {
  return netnsMapName('ftfail_', netns);
}

/** Decodes the map into counts, most first. */
function readMap(fd: number): FailureSnapshot {
  const counts: FailureCount[] = [];
  let overflow = 0;
  mapEntries(fd, KEY_SIZE, VALUE_SIZE, (key, value) => {
    const count = Number(value.readBigUInt64LE(0));
    if (key[1] === CALL_OVERFLOW) {
      overflow += count;
      return;
    }
    if (count === 0) return;
    const isConnect = key[1] === CALL_CONNECT;
    // A v4-mapped address is counted as the IPv4 address it maps, as the port-pressure view does: it uses that destination's ports.
    const a = keyAddresses(key);
    const source = a.source;
    const destination = isConnect ? a.destination : null;
    counts.push({
      call: isConnect ? 'connect' : 'bind',
      family: (destination ?? source).includes(':') ? 6 : 4,
      source,
      destination,
      port: key.readUInt16BE(2),
      errno: errnoName(key.readUInt32LE(4)),
      count,
    });
  });
  counts.sort((a, b) => b.count - a.count || a.source.localeCompare(b.source) || (a.destination ?? '').localeCompare(b.destination ?? '') || a.port - b.port);
  return { at: Date.now(), counts, overflow };
}

/**
 * The tracer: attached by open(), counting until close(). Throws (with the
 * kernel's reason) when it cannot attach; see failureTracer() for the
 * form that reports the reason instead.
 */
export class FailureTracer {
  readonly #map: number;
  readonly #links: number[];
  #closed = false;

  private constructor(map: number, links: number[]) {
    this.#map = map;
    this.#links = links;
  }

  /**
   * Creates the map, loads the programs and attaches them; UnsupportedError
   * (with the kernel's reason) when it cannot. `bind: false` leaves out the
   * bind() program, the one that runs at every system call's exit.
   */
  static open(options: { bind?: boolean } = {}): FailureTracer {
    try {
      return FailureTracer.#open(options.bind !== false);
    } catch (err) {
      throw err instanceof UnsupportedError ? err : new UnsupportedError((err as Error).message);
    }
  }

  static #open(withBind: boolean): FailureTracer {
    if (!ffi.ffiAvailable()) throw new UnsupportedError(ffi.ffiUnavailableReason() ?? 'no FFI');
    const l = readLayout();
    const netns = netnsInode();
    const map = createMap(BPF_MAP_TYPE_HASH, KEY_SIZE, VALUE_SIZE, MAX_KEYS + 1, mapName(netns));
    const links: number[] = [];
    try {
      // The overflow entry exists from the start, so a full map can still count.
      const key = Buffer.alloc(KEY_SIZE);
      key[1] = CALL_OVERFLOW;
      const r = mapUpdate(map, key, Buffer.alloc(VALUE_SIZE));
      if (r < 0) throw new Error(`BPF_MAP_UPDATE_ELEM: ${ffi.errnoName(r)}`);
      const programs = [
        { insns: stateProgram(l, map, netns), name: 'ft_fail_connect', attachBtfId: l.stateTp },
        ...(withBind ? [{ insns: bindProgram(l, map, netns), name: 'ft_fail_bind', attachBtfId: l.exitTp }] : []),
      ];
      for (const p of programs) {
        const prog = loadTracing({ ...p, attachType: BPF_TRACE_RAW_TP });
        try {
          links.push(attachRawTracepoint(prog));
        } finally {
          ffi.close(prog);
        }
      }
    } catch (err) {
      for (const fd of links) ffi.close(fd);
      ffi.close(map);
      throw err;
    }
    return new FailureTracer(map, links);
  }

  /** The counts so far. */
  read(): FailureSnapshot {
    if (this.#closed) throw new Error('the failure tracer is closed');
    return readMap(this.#map);
  }

  /** Detaches both programs and frees the map. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const fd of this.#links) ffi.close(fd);
    ffi.close(this.#map);
  }
}

/** The tracer, or why it cannot attach here (no privileges, no BTF, a kernel without these functions). */
export function failureTracer(options: { bind?: boolean } = {}): { tracer: FailureTracer } | { reason: string } {
  if (process.env.FOURTUPLE_NO_BPF === '1') return { reason: 'disabled by FOURTUPLE_NO_BPF=1' };
  try {
    return { tracer: FailureTracer.open(options) };
  } catch (err) {
    return { reason: (err as Error).message };
  }
}

/**
 * The counts of a tracer another process of this network namespace keeps
 * attached (a `ports --prometheus` or `ports --watch`): the first one started
 * when there are several. Or why there are none to read.
 */
export function liveFailures(): { snapshot: FailureSnapshot } | { reason: string } {
  if (process.env.FOURTUPLE_NO_BPF === '1') return { reason: 'disabled by FOURTUPLE_NO_BPF=1' };
  if (!ffi.ffiAvailable()) return { reason: ffi.ffiUnavailableReason() ?? 'no FFI' };
  let fds: number[];
  try {
    fds = findMaps(mapName(netnsInode()));
  } catch (err) {
    return { reason: (err as Error).message };
  }
  if (fds.length === 0) {
    return {
      reason: process.getuid?.() === 0
        ? 'no failure tracer runs in this network namespace: start `fourtuple ports --prometheus` or `--watch` (it counts from when it starts)'
        : 'reading another process\'s tracer needs root (CAP_SYS_ADMIN)',
    };
  }
  try {
    return { snapshot: readMap(fds[0]) };
  } finally {
    for (const fd of fds) ffi.close(fd);
  }
}
