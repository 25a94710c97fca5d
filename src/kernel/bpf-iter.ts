/**
 * The socket table through a BPF iterator (`iter/tcp`, Linux 5.9+): a small
 * program, assembled here against the running kernel's BTF, that the kernel
 * runs for every TCP socket of this network namespace, writing one compact
 * record each (20 bytes for IPv4, 44 for IPv6) into what read(2) returns.
 * It walks the same hash tables as sock_diag but skips building a netlink
 * message per socket: at a million sockets on the reference VM the kernel's
 * share fell from 1.1–1.4 s (sock_diag) to 0.7–0.9 s.
 *
 * Needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), a kernel with BTF and the
 * tcp iterator. Whatever is missing, `tcpIterator()` says why and the socket
 * table falls back to sock_diag. The rows are those of scanSockDiag, field
 * for field (tested side by side): request sockets as SYN_RECV, TIME_WAIT
 * sockets by their substate, a listener's accept-queue length or a
 * connection's unread bytes as rxQueue.
 */
import * as ffi from './ffi.js';
import { FP, FUNC, R0, R1, R2, R3, R6, R7, R8, R9, BPF_TRACE_ITER, addImm, assemble, attach, call, exit, ja, jeqImm, jneImm, jsetImm, jslt32Imm, ldx, loadTracing, lshReg, movImm, movReg, rshImm, runIterator, sockCommonOffsets, stDw0, stx, sub32Reg, type Insn, type SockCommonOffsets } from './bpf.js';
import { AF_INET, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_SYN_RECV, TCP_TIME_WAIT } from './linux.js';
import { Btf, BtfKind } from './btf.js';
import type { TcpRow } from './proc-net-tcp.js';
import { v4Address, v6Address } from './sock-diag.js';

const V4_RECORD = 20;
const V6_RECORD = 44;
/**
 * Who holds each socket, when asked: its cgroup id (8 bytes after the
 * addresses), and with 'cgroup+inode' its inode number too (8 more). The
 * inode costs three more pointers per socket (socket, file, inode: each its
 * own cache line), so only `--pids` asks for it.
 */
export type OwnerFields = 'cgroup' | 'cgroup+inode';

const ownerBytes = (o: OwnerFields | undefined): number => (o === undefined ? 0 : o === 'cgroup' ? 8 : 16);

/** Offsets the program reads, from BTF. */
interface Layout extends SockCommonOffsets {
  metaSeq: number;
  ackBacklog: number;
  rcvNxt: number;
  copiedSeq: number;
  twSubstate: number;
  /** BTF id of the iterator target, `bpf_iter_tcp`. */
  target: number;
}

/** Offsets the owner fields need (cgroup id, inode number): read only when asked for, so a kernel without them still scans. */
interface OwnerLayout {
  /** A full socket's cgroup (v2) and its kernfs id, which is the cgroup directory's inode number. */
  cgroup: number;
  cgroupKn: number;
  knId: number;
  /** A full socket's inode number: sk_socket → file → f_inode → i_ino, what /proc/PID/fd links name. */
  socket: number;
  socketFile: number;
  fileInode: number;
  inodeIno: number;
}

let ownerLayout: OwnerLayout | undefined;

function readOwnerLayout(): OwnerLayout {
  if (ownerLayout) return ownerLayout;
  const btf = Btf.vmlinux();
  const m = (struct: string, path: string[], size: number): number => btf.offsetOf(struct, path, size);
  const sk = ['inet_conn', 'icsk_inet', 'sk'];
  ownerLayout = {
    cgroup: m('tcp_sock', [...sk, 'sk_cgrp_data', 'cgroup'], 8),
    cgroupKn: m('cgroup', ['kn'], 8),
    knId: m('kernfs_node', ['id'], 8),
    socket: m('tcp_sock', [...sk, 'sk_socket'], 8),
    socketFile: m('socket', ['file'], 8),
    fileInode: m('file', ['f_inode'], 8),
    inodeIno: m('inode', ['i_ino'], 8),
  };
  return ownerLayout;
}

let layout: Layout | undefined;
let layoutError: string | undefined;
/** One loaded iterator (program + link) per state mask and unread-bytes choice, kept for the life of the process. */
const links = new Map<string, number>();
const loadErrors = new Map<string, string>();

function readLayout(): Layout {
  if (layout !== undefined) return layout;
  try {
    const btf = Btf.vmlinux();
    const target = btf.find(BtfKind.FUNC, 'bpf_iter_tcp');
    if (target === undefined) throw new Error('the kernel has no tcp iterator (bpf_iter_tcp)');
    const m = (struct: string, path: string[], size: number): number => btf.offsetOf(struct, path, size);
    layout = {
      metaSeq: m('bpf_iter_meta', ['seq'], 8),
      ...sockCommonOffsets(btf),
      ackBacklog: m('tcp_sock', ['inet_conn', 'icsk_inet', 'sk', 'sk_ack_backlog'], 4),
      rcvNxt: m('tcp_sock', ['rcv_nxt'], 4),
      copiedSeq: m('tcp_sock', ['copied_seq'], 4),
      twSubstate: m('tcp_timewait_sock', ['tw_sk', 'tw_substate'], 1),

      target,
    };
    return layout;
  } catch (err) {
    layoutError = (err as Error).message;
    throw err;
  }
}

/**
 * The iterator program. The record, on the stack at fp-48:
 * family u8, state u8, local port u16 (host order), remote port u16
 * (network order), pad u16, rxQueue u32, local then remote address.
 */
function iteratorProgram(l: Layout, stateMask: number, unread: boolean, owners: { layout: OwnerLayout; fields: OwnerFields } | undefined): Buffer {
  const extra = ownerBytes(owners?.fields);
  const rec = -64;
  const v4 = (from: number, to: number): Insn[] => [ldx(4, R1, R7, from), stx(4, FP, to, R1)];
  const v6 = (from: number, to: number): Insn[] => [0, 4, 8, 12].flatMap((i) => v4(from + i, to + i));
  const write = (len: number): Insn[] => [movReg(R1, R8), movReg(R2, FP), addImm(R2, rec), movImm(R3, len), call(FUNC.seqWrite)];
  return assemble([
    ldx(8, R6, R1, 0), // ctx->meta
    ldx(8, R7, R1, 8), // ctx->sk_common
    jeqImm(R7, 0, 'out'),
    ldx(8, R8, R6, l.metaSeq), // meta->seq
    ...[64, 56, 48, 40, 32, 24, 16, 8].map((o) => stDw0(-o)),
    // State; a TIME_WAIT socket by its substate (TIME_WAIT or FIN_WAIT2), as sock_diag and /proc say.
    ldx(1, R9, R7, l.state),
    jneImm(R9, TCP_TIME_WAIT, 'state'),
    movReg(R1, R7),
    call(FUNC.skcToTcpTimewaitSock),
    jeqImm(R0, 0, 'state'),
    ldx(1, R9, R0, l.twSubstate),
    'state',
    movImm(R1, 1),
    lshReg(R1, R9),
    jsetImm(R1, stateMask, 'keep'),
    ja('out'),
    'keep',
    stx(1, FP, rec + 1, R9),
    ldx(2, R1, R7, l.family),
    stx(1, FP, rec, R1),
    ldx(2, R1, R7, l.num),
    stx(2, FP, rec + 2, R1),
    ldx(2, R1, R7, l.dport),
    stx(2, FP, rec + 4, R1),
    // rxQueue: a listener's accept queue, a connection's bytes not yet read (never negative), else 0.
    // Reading the latter touches another cache line of every socket: skipped when not asked for.
    ...(unread ? [] : [jneImm(R9, TCP_LISTEN, 'addresses')]),
    movReg(R1, R7),
    call(FUNC.skcToTcpSock),
    jeqImm(R0, 0, 'addresses'),
    jneImm(R9, TCP_LISTEN, 'unread'),
    ldx(4, R1, R0, l.ackBacklog),
    stx(4, FP, rec + 8, R1),
    ja('addresses'),
    'unread',
    ldx(4, R1, R0, l.rcvNxt),
    ldx(4, R2, R0, l.copiedSeq),
    sub32Reg(R1, R2),
    jslt32Imm(R1, 0, 'addresses'),
    stx(4, FP, rec + 8, R1),
    'addresses',
    // Owners: the cgroup id in R9 and the inode number in R6 (0 for TIME_WAIT and request sockets, which have neither).
    ...(owners ? ownerInsns(owners.layout, owners.fields === 'cgroup+inode') : []),
    ldx(2, R1, R7, l.family),
    jneImm(R1, AF_INET, 'v6'),
    ...v4(l.rcvSaddr, rec + 12),
    ...v4(l.daddr, rec + 16),
    ...(owners ? storeOwners(rec + V4_RECORD, extra) : []),
    ...write(V4_RECORD + extra),
    ja('out'),
    'v6',
    ...v6(l.v6RcvSaddr, rec + 12),
    ...v6(l.v6Daddr, rec + 28),
    ...(owners ? storeOwners(rec + V6_RECORD, extra) : []),
    ...write(V6_RECORD + extra),
    'out',
    movImm(R0, 0),
    exit(),
  ]);
}

/** R9 = the socket's cgroup id, R6 = its inode number (with `inode`), each 0 when it has none (R6's meta is not needed past this point). */
function ownerInsns(l: OwnerLayout, inode: boolean): (Insn | string)[] {
  return [
    movImm(R9, 0),
    movImm(R6, 0),
    movReg(R1, R7),
    call(FUNC.skcToTcpSock),
    jeqImm(R0, 0, 'owned'),
    movReg(R2, R0),
    ldx(8, R1, R2, l.cgroup),
    jeqImm(R1, 0, 'inode'),
    ldx(8, R1, R1, l.cgroupKn),
    jeqImm(R1, 0, 'inode'),
    ldx(8, R9, R1, l.knId),
    'inode',
    ...(inode ? inodeInsns(l) : []),
    'owned',
  ];
}

/** R6 = the inode number of the socket in R2 (0 when it has no file: not accepted yet). */
function inodeInsns(l: OwnerLayout): Insn[] {
  return [
    ldx(8, R1, R2, l.socket),
    jeqImm(R1, 0, 'owned'),
    ldx(8, R1, R1, l.socketFile),
    jeqImm(R1, 0, 'owned'),
    ldx(8, R1, R1, l.fileInode),
    jeqImm(R1, 0, 'owned'),
    ldx(8, R6, R1, l.inodeIno),
  ];
}

/** Stores R9 (and R6, for 16 bytes) as little-endian u64 at `at` (4-byte aligned: two u32 each, as the stack wants aligned stores). */
function storeOwners(at: number, bytes: number): Insn[] {
  const u64 = (reg: number, to: number): Insn[] => [stx(4, FP, to, reg), rshImm(reg, 32), stx(4, FP, to + 4, reg)];
  return bytes === 16 ? [...u64(R9, at), ...u64(R6, at + 8)] : u64(R9, at);
}

/** Loads the program and attaches it as an iterator; the link's fd, or throws with the kernel's reason. */
function loadLink(stateMask: number, unread: boolean, owners: OwnerFields | undefined): number {
  const l = readLayout();
  const prog = loadTracing({ insns: iteratorProgram(l, stateMask, unread, owners ? { layout: readOwnerLayout(), fields: owners } : undefined), name: 'ft_tcp_iter', attachType: BPF_TRACE_ITER, attachBtfId: l.target });
  try {
    return attach(prog, BPF_TRACE_ITER);
  } finally {
    ffi.close(prog); // the link holds the program
  }
}

/**
 * The iterator's link for `stateMask` (loaded once per process), or the
 * reason it cannot be had here. With `unread` false a connection's rxQueue
 * is 0 (a listener's accept queue is still read), which spares the kernel a
 * cache line per socket: about 12% of the scan at a million.
 * With `owners`, each row also has its cgroup id, and with 'cgroup+inode'
 * its inode number (full sockets; 0 for TIME_WAIT and request sockets).
 * FOURTUPLE_NO_BPF=1 turns the iterator off.
 */
export function tcpIterator(stateMask: number, unread = true, owners?: OwnerFields): { link: number } | { reason: string } {
  if (process.env.FOURTUPLE_NO_BPF === '1') return { reason: 'disabled by FOURTUPLE_NO_BPF=1' };
  if (!ffi.ffiAvailable()) return { reason: ffi.ffiUnavailableReason() ?? 'no FFI' };
  const key = `${stateMask} ${unread} ${owners}`;
  const have = links.get(key);
  if (have !== undefined) return { link: have };
  const failed = loadErrors.get(key) ?? layoutError;
  if (failed !== undefined) return { reason: failed };
  try {
    const link = loadLink(stateMask, unread, owners);
    links.set(key, link);
    return { link };
  } catch (err) {
    const reason = (err as Error).message;
    loadErrors.set(key, reason);
    return { reason };
  }
}

/** The iterator's state bits for TCP_STATES indexes: SYN_RECV also selects request sockets (NEW_SYN_RECV). */
export function iteratorMask(stateMask: number): number {
  return stateMask & (1 << TCP_SYN_RECV) ? stateMask | (1 << TCP_NEW_SYN_RECV) : stateMask;
}

let buffer: Buffer | undefined;

/**
 * Runs the iterator of `link` once: `onRow` for every socket it reports.
 * `owners`: what the link was made with (tcpIterator's), so rows carry
 * `cgroup` (and `inode`). Kernel failures come back in `errors` (rows
 * delivered before stay delivered).
 */
export function scanTcpIterator(link: number, onRow: (row: TcpRow) => void, owners?: OwnerFields): { rows: number; errors: string[] } {
  const extra = ownerBytes(owners);
  const inode = owners === 'cgroup+inode';
  const errors: string[] = [];
  // A nested scan (from inside onRow) gets a buffer of its own.
  const buf = buffer ?? Buffer.alloc(1 << 16);
  buffer = undefined;
  const u32 = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
  let rows = 0;
  // The kernel returns whole records only.
  const onData = (n: number): void => {
    for (let off = 0; off < n; ) {
      const v6 = buf[off] !== AF_INET;
      const len = (v6 ? V6_RECORD : V4_RECORD) + extra;
      if (off + len > n) {
        errors.push(`bpf iterator: a record cut at ${off} of ${n} bytes`);
        return;
      }
      let state = buf[off + 1];
      if (state === TCP_NEW_SYN_RECV) state = TCP_SYN_RECV;
      rows++;
      const family = v6 ? 6 : 4;
      const localAddress = v6 ? v6Address(buf, u32, off + 12) : v4Address(buf, u32, off + 12);
      const localPort = buf[off + 2] | (buf[off + 3] << 8);
      const remoteAddress = v6 ? v6Address(buf, u32, off + 28) : v4Address(buf, u32, off + 16);
      const remotePort = (buf[off + 4] << 8) | buf[off + 5];
      const rxQueue = u32[(off + 8) >>> 2];
      // One object literal per shape, so every row of a scan has the same hidden class.
      if (extra === 0) onRow({ family, localAddress, localPort, remoteAddress, remotePort, state, rxQueue });
      else {
        const w = (off + len - extra) >>> 2;
        const cgroup = u32[w] + u32[w + 1] * 0x1_0000_0000;
        if (inode) onRow({ family, localAddress, localPort, remoteAddress, remotePort, state, rxQueue, cgroup, inode: u32[w + 2] + u32[w + 3] * 0x1_0000_0000 });
        else onRow({ family, localAddress, localPort, remoteAddress, remotePort, state, rxQueue, cgroup });
      }
      off += len;
    }
  };
  try {
    const failed = runIterator(link, buf, onData);
    if (failed !== undefined) errors.push(failed.startsWith('read') ? `bpf iterator: ${failed}` : failed);
  } finally {
    buffer = buf;
  }
  return { rows, errors };
}
