/**
 * What fourtuple's BPF programs share: a tiny assembler (instructions,
 * labels, map references), and the bpf(2) commands they need — load a
 * program (with the verifier's last words when it refuses), create a map,
 * read and walk one, attach a link. Programs are built here against the
 * running kernel's BTF (btf.ts) instead of being compiled for one kernel, so
 * nothing but koffi is needed at run time.
 *
 * Every object lives in a file descriptor of this process: nothing is
 * pinned, so closing the descriptors (or the process ending, however it
 * ends) detaches the programs and frees the maps.
 */
import { statSync } from 'node:fs';
import * as ffi from './ffi.js';
import { BtfKind, type Btf } from './btf.js';
import { AF_INET, EACCES, EAGAIN, EINTR, EINVAL, EPERM } from './linux.js';
import { formatIp } from '../ip.js';

export const BPF_MAP_CREATE = 0;
export const BPF_MAP_LOOKUP_ELEM = 1;
export const BPF_MAP_UPDATE_ELEM = 2;
export const BPF_MAP_DELETE_ELEM = 3;
export const BPF_MAP_GET_NEXT_KEY = 4;
export const BPF_PROG_LOAD = 5;
export const BPF_LINK_CREATE = 28;
export const BPF_RAW_TRACEPOINT_OPEN = 17;
export const BPF_MAP_GET_NEXT_ID = 12;
export const BPF_MAP_GET_FD_BY_ID = 14;
export const BPF_OBJ_GET_INFO_BY_FD = 15;
export const BPF_ITER_CREATE = 33;

export const BPF_PROG_TYPE_TRACING = 26;
export const BPF_MAP_TYPE_HASH = 1;
export const BPF_MAP_TYPE_ARRAY = 2;
export const BPF_MAP_TYPE_PERCPU_HASH = 5;
export const BPF_MAP_TYPE_PERCPU_ARRAY = 6;

/** Attach types of tracing programs. */
export const BPF_TRACE_RAW_TP = 23;
export const BPF_TRACE_FENTRY = 24;
export const BPF_TRACE_FEXIT = 25;
export const BPF_TRACE_ITER = 28;

/** Helpers, by number (include/uapi/linux/bpf.h). */
export const FUNC = {
  mapLookupElem: 1,
  mapUpdateElem: 2,
  mapDeleteElem: 3,
  probeReadUser: 112,
  probeReadKernel: 113,
  getCurrentTaskBtf: 158,
  seqWrite: 127,
  skcToTcpSock: 137,
  skcToTcpTimewaitSock: 138,
} as const;

/** bpf_map_update_elem flags: insert or replace; insert only. */
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
/** Map flag: allocate entries as they are inserted (a hash map of sockets that come and go). */
export const BPF_F_NO_PREALLOC = 1;

export interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
  /** Jump target label, resolved into `off`. */
  to?: string;
}

export const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R5 = 5, R6 = 6, R7 = 7, R8 = 8, R9 = 9, FP = 10; // prettier-ignore

const SIZE = { 1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18 } as const;

export const ldx = (size: 1 | 2 | 4 | 8, dst: number, src: number, off: number): Insn => ({ code: 0x61 | SIZE[size], dst, src, off, imm: 0 });
export const stx = (size: 1 | 2 | 4 | 8, dst: number, off: number, src: number): Insn => ({ code: 0x63 | SIZE[size], dst, src, off, imm: 0 });
/** *(size *)(dst + off) = imm. */
export const st = (size: 1 | 2 | 4 | 8, dst: number, off: number, imm: number): Insn => ({ code: 0x62 | SIZE[size], dst, src: 0, off, imm });
export const stDw0 = (off: number): Insn => st(8, FP, off, 0);
export const movImm = (dst: number, imm: number): Insn => ({ code: 0xb7, dst, src: 0, off: 0, imm });
export const movReg = (dst: number, src: number): Insn => ({ code: 0xbf, dst, src, off: 0, imm: 0 });
export const addImm = (dst: number, imm: number): Insn => ({ code: 0x07, dst, src: 0, off: 0, imm });
export const addReg = (dst: number, src: number): Insn => ({ code: 0x0f, dst, src, off: 0, imm: 0 });
export const andImm = (dst: number, imm: number): Insn => ({ code: 0x57, dst, src: 0, off: 0, imm });
export const lshReg = (dst: number, src: number): Insn => ({ code: 0x6f, dst, src, off: 0, imm: 0 });
export const rshImm = (dst: number, imm: number): Insn => ({ code: 0x77, dst, src: 0, off: 0, imm });
export const lshImm = (dst: number, imm: number): Insn => ({ code: 0x67, dst, src: 0, off: 0, imm });
export const sub32Reg = (dst: number, src: number): Insn => ({ code: 0x1c, dst, src, off: 0, imm: 0 });
/** dst = the low 16 bits of dst byte-swapped on a little-endian host (BPF_END | BPF_TO_BE, 16): network to host order. */
export const be16 = (dst: number): Insn => ({ code: 0xdc, dst, src: 0, off: 0, imm: 16 });
/** dst = -(s32)dst, zero-extended. */
export const neg32 = (dst: number): Insn => ({ code: 0x84, dst, src: 0, off: 0, imm: 0 });
export const jeqImm = (dst: number, imm: number, to: string): Insn => ({ code: 0x15, dst, src: 0, off: 0, imm, to });
export const jneImm = (dst: number, imm: number, to: string): Insn => ({ code: 0x55, dst, src: 0, off: 0, imm, to });
export const jneReg = (dst: number, src: number, to: string): Insn => ({ code: 0x5d, dst, src, off: 0, imm: 0, to });
export const jgtImm = (dst: number, imm: number, to: string): Insn => ({ code: 0x25, dst, src: 0, off: 0, imm, to });
export const jsetImm = (dst: number, imm: number, to: string): Insn => ({ code: 0x45, dst, src: 0, off: 0, imm, to });
/** 32-bit compares (BPF_JMP32): the low halves only, so a u32 constant past 2^31 compares as written. */
export const jeq32Imm = (dst: number, imm: number, to: string): Insn => ({ code: 0x16, dst, src: 0, off: 0, imm: imm | 0, to });
export const jne32Imm = (dst: number, imm: number, to: string): Insn => ({ code: 0x56, dst, src: 0, off: 0, imm: imm | 0, to });
/** Signed 32-bit less-than against an immediate (BPF_JMP32 | BPF_JSLT). */
export const jslt32Imm = (dst: number, imm: number, to: string): Insn => ({ code: 0xc6, dst, src: 0, off: 0, imm, to });
export const ja = (to: string): Insn => ({ code: 0x05, dst: 0, src: 0, off: 0, imm: 0, to });
export const call = (helper: number): Insn => ({ code: 0x85, dst: 0, src: 0, off: 0, imm: helper });
export const exit = (): Insn => ({ code: 0x95, dst: 0, src: 0, off: 0, imm: 0 });
/** lock *(u64 *)(dst + off) += src (BPF_ATOMIC | BPF_ADD, 64 bits). */
export const atomicAdd64 = (dst: number, off: number, src: number): Insn => ({ code: 0xdb, dst, src, off, imm: 0 });
/** lock *(u32 *)(dst + off) += src (BPF_ATOMIC | BPF_ADD, 32 bits). */
export const atomicAdd32 = (dst: number, off: number, src: number): Insn => ({ code: 0xc3, dst, src, off, imm: 0 });
/** dst = the map of descriptor `fd` (a two-slot ld_imm64 with BPF_PSEUDO_MAP_FD). */
export const ldMap = (dst: number, fd: number): Insn[] => [
  { code: 0x18, dst, src: 1, off: 0, imm: fd },
  { code: 0x00, dst: 0, src: 0, off: 0, imm: 0 },
];

/** Assembles instructions and `label` strings into bytecode. */
export function assemble(items: (Insn | string)[]): Buffer {
  const labels = new Map<string, number>();
  const insns: Insn[] = [];
  for (const it of items) {
    if (typeof it === 'string') labels.set(it, insns.length);
    else insns.push(it);
  }
  const out = Buffer.alloc(insns.length * 8);
  insns.forEach((insn, pc) => {
    let off = insn.off;
    if (insn.to !== undefined) {
      const target = labels.get(insn.to);
      if (target === undefined) throw new Error(`bpf: no label ${insn.to}`);
      off = target - (pc + 1);
    }
    out[pc * 8] = insn.code;
    out[pc * 8 + 1] = (insn.src << 4) | insn.dst;
    out.writeInt16LE(off, pc * 8 + 2);
    out.writeInt32LE(insn.imm, pc * 8 + 4);
  });
  return out;
}

/** What a tracing program is attached to. */
export interface ProgramSpec {
  readonly insns: Buffer;
  /** Up to 15 characters, shown by bpftool. */
  readonly name: string;
  readonly attachType: number;
  /** BTF id (in vmlinux) of the function, tracepoint or iterator target. */
  readonly attachBtfId: number;
}

/** Loads a tracing program; its descriptor, or throws with the errno and the verifier's last lines. */
export function loadTracing(spec: ProgramSpec): number {
  const license = Buffer.from('Dual MIT/GPL\0');
  const { insns } = spec;
  const load = (log?: Buffer): number => {
    const attr = Buffer.alloc(128);
    attr.writeUInt32LE(BPF_PROG_TYPE_TRACING, 0);
    attr.writeUInt32LE(insns.length / 8, 4);
    attr.writeBigUInt64LE(ffi.addressOf(insns), 8);
    attr.writeBigUInt64LE(ffi.addressOf(license), 16);
    if (log) {
      attr.writeUInt32LE(1, 24);
      attr.writeUInt32LE(log.length, 28);
      attr.writeBigUInt64LE(ffi.addressOf(log), 32);
    }
    attr.write(spec.name.slice(0, 15), 48, 'latin1');
    attr.writeUInt32LE(spec.attachType, 68);
    attr.writeUInt32LE(spec.attachBtfId, 108);
    return ffi.bpf(BPF_PROG_LOAD, attr);
  };
  const prog = load();
  if (prog >= 0) return prog;
  if (prog !== -EINVAL && prog !== -EACCES && prog !== -EPERM) throw new BpfError('BPF_PROG_LOAD', prog);
  const log = Buffer.alloc(1 << 16);
  const again = load(log);
  if (again >= 0) return again;
  const text = log.toString('latin1', 0, Math.max(0, log.indexOf(0))).trim().split('\n').slice(-2).join(' / ');
  throw new BpfError('BPF_PROG_LOAD', prog, text);
}

/** A bpf(2) command that failed: its name, the errno, and what it means for a user. */
export class BpfError extends Error {
  readonly errno: number;
  constructor(command: string, result: number, detail?: string) {
    const name = ffi.errnoName(result);
    const hint = result === -EPERM ? ' (needs CAP_BPF and CAP_PERFMON, or root)' : '';
    super(`${command}: ${name}${hint}${detail ? `: ${detail}` : ''}`);
    this.name = 'BpfError';
    this.errno = -result;
  }
}

/** Attaches a loaded tracing program (fentry, fexit, tp_btf, iter): the link's descriptor, or throws. */
export function attach(prog: number, attachType: number): number {
  const attr = Buffer.alloc(64);
  attr.writeUInt32LE(prog, 0);
  attr.writeUInt32LE(attachType, 8);
  const link = ffi.bpf(BPF_LINK_CREATE, attr);
  if (link < 0) throw new BpfError('BPF_LINK_CREATE', link);
  return link;
}

/** Attaches a loaded tp_btf program to its tracepoint (BPF_RAW_TRACEPOINT_OPEN, which every kernel with tp_btf has): the link's descriptor, or throws. */
export function attachRawTracepoint(prog: number): number {
  const attr = Buffer.alloc(16);
  attr.writeUInt32LE(prog, 8);
  const link = ffi.bpf(BPF_RAW_TRACEPOINT_OPEN, attr);
  if (link < 0) throw new BpfError('BPF_RAW_TRACEPOINT_OPEN', link);
  return link;
}

/** Creates a map; its descriptor, or throws. `name` up to 15 characters, found again by findMaps(). */
export function createMap(type: number, keySize: number, valueSize: number, maxEntries: number, name: string, flags = 0): number {
  const attr = Buffer.alloc(72);
  attr.writeUInt32LE(type, 0);
  attr.writeUInt32LE(keySize, 4);
  attr.writeUInt32LE(valueSize, 8);
  attr.writeUInt32LE(maxEntries, 12);
  attr.writeUInt32LE(flags, 16);
  attr.write(name.slice(0, 15), 28, 'latin1');
  const fd = ffi.bpf(BPF_MAP_CREATE, attr);
  if (fd < 0) throw new BpfError('BPF_MAP_CREATE', fd);
  return fd;
}

const mapAttr = Buffer.alloc(32);

/** One element command (lookup, update, delete) on `key`, with `value` where it has one: 0, or -errno. */
function mapElem(cmd: number, fd: number, key: Buffer, value?: Buffer): number {
  mapAttr.fill(0);
  mapAttr.writeUInt32LE(fd, 0);
  mapAttr.writeBigUInt64LE(ffi.addressOf(key), 8);
  if (value) mapAttr.writeBigUInt64LE(ffi.addressOf(value), 16);
  return ffi.bpf(cmd, mapAttr);
}

/** Copies the value of `key` into `value`: 0, or -errno (-ENOENT: no such key). */
export function mapLookup(fd: number, key: Buffer, value: Buffer): number {
  return mapElem(BPF_MAP_LOOKUP_ELEM, fd, key, value);
}

/** Sets the value of `key` (insert or replace): 0, or -errno. */
export function mapUpdate(fd: number, key: Buffer, value: Buffer): number {
  return mapElem(BPF_MAP_UPDATE_ELEM, fd, key, value);
}

/** Deletes `key`: 0, or -errno (-ENOENT: no such key). */
export function mapDelete(fd: number, key: Buffer): number {
  return mapElem(BPF_MAP_DELETE_ELEM, fd, key);
}

/**
 * Runs the iterator of `link` to its end: `onData(n)` for every read that
 * returned n bytes into `buf`. Returns the first read error (as an errno
 * name), or undefined. EAGAIN (the kernel stops after a million objects
 * without output) and EINTR are read through.
 */
export function runIterator(link: number, buf: Uint8Array, onData: (n: number) => void): string | undefined {
  const attr = Buffer.alloc(8);
  attr.writeUInt32LE(link, 0);
  const fd = ffi.bpf(BPF_ITER_CREATE, attr);
  if (fd < 0) return `BPF_ITER_CREATE: ${ffi.errnoName(fd)}`;
  try {
    for (;;) {
      const n = ffi.read(fd, buf);
      if (n === 0) return undefined;
      if (n === -EAGAIN || n === -EINTR) continue;
      if (n < 0) return `read: ${ffi.errnoName(n)}`;
      onData(n);
    }
  } finally {
    ffi.close(fd);
  }
}

/** The BTF id of tracepoint `name`'s tp_btf target (`btf_trace_<name>`); throws when the kernel has none. */
export function tracepointId(btf: Btf, name: string): number {
  const id = btf.find(BtfKind.TYPEDEF, `btf_trace_${name}`);
  if (id === undefined) throw new Error(`the kernel's BTF has no tracepoint ${name}`);
  return id;
}

/**
 * Every entry of a hash map: `onEntry(key, value)` with buffers reused
 * between calls. An entry inserted or deleted during the walk may be seen or
 * not; none is seen twice unless the walk restarts (a deleted current key).
 */
export function mapEntries(fd: number, keySize: number, valueSize: number, onEntry: (key: Buffer, value: Buffer) => void): void {
  let key: Buffer | null = null;
  let next: Buffer = Buffer.alloc(keySize);
  let spare: Buffer = Buffer.alloc(keySize);
  const value = Buffer.alloc(valueSize);
  for (;;) {
    mapAttr.fill(0);
    mapAttr.writeUInt32LE(fd, 0);
    if (key) mapAttr.writeBigUInt64LE(ffi.addressOf(key), 8);
    mapAttr.writeBigUInt64LE(ffi.addressOf(next), 16);
    const r = ffi.bpf(BPF_MAP_GET_NEXT_KEY, mapAttr);
    if (r < 0) return; // ENOENT: the end
    if (mapLookup(fd, next, value) === 0) onEntry(next, value);
    const was = key ?? spare;
    key = next;
    next = was;
    spare = was;
  }
}

/** Maps of this machine named `name` (root only: ids need CAP_SYS_ADMIN), as descriptors the caller closes; lowest id first. */
export function findMaps(name: string): number[] {
  const out: number[] = [];
  const attr = Buffer.alloc(16);
  const info = Buffer.alloc(88);
  let id = 0;
  for (;;) {
    attr.fill(0);
    attr.writeUInt32LE(id, 0);
    if (ffi.bpf(BPF_MAP_GET_NEXT_ID, attr) < 0) return out;
    id = attr.readUInt32LE(4);
    const byId = Buffer.alloc(16);
    byId.writeUInt32LE(id, 0);
    const fd = ffi.bpf(BPF_MAP_GET_FD_BY_ID, byId);
    if (fd < 0) continue; // gone meanwhile, or not ours to open
    info.fill(0);
    const getInfo = Buffer.alloc(16);
    getInfo.writeUInt32LE(fd, 0);
    getInfo.writeUInt32LE(info.length, 4);
    getInfo.writeBigUInt64LE(ffi.addressOf(info), 8);
    const ok = ffi.bpf(BPF_OBJ_GET_INFO_BY_FD, getInfo) === 0;
    // struct bpf_map_info: name at byte 24, 16 bytes.
    const mapName = ok ? info.toString('latin1', 24, 40).replace(/\0.*$/s, '') : '';
    if (mapName === name) out.push(fd);
    else ffi.close(fd);
  }
}

/** Where a socket's family, state, ports and addresses lie in `struct sock_common`, from BTF. */
export interface SockCommonOffsets {
  family: number;
  state: number;
  num: number;
  dport: number;
  daddr: number;
  rcvSaddr: number;
  v6Daddr: number;
  v6RcvSaddr: number;
  /** `skc_net.net`: the socket's network namespace (struct net *). */
  net: number;
}

/** The sock_common offsets every program of fourtuple reads. */
export function sockCommonOffsets(btf: Btf): SockCommonOffsets {
  const m = (name: string, size: number): number => btf.offsetOf('sock_common', [name], size);
  return {
    family: m('skc_family', 2),
    state: m('skc_state', 1),
    num: m('skc_num', 2),
    dport: m('skc_dport', 2),
    daddr: m('skc_daddr', 4),
    rcvSaddr: m('skc_rcv_saddr', 4),
    v6Daddr: m('skc_v6_daddr', 16),
    v6RcvSaddr: m('skc_v6_rcv_saddr', 16),
    net: btf.offsetOf('sock_common', ['skc_net', 'net'], 8),
  };
}

/**
 * The 48-byte destination key of a socket, written at fp+`at` (zeroed
 * before): family u8 at 0, destination port (network order) u16 at 2, IPv4
 * source and destination at 8 and 12, IPv6 source and destination at 16 and
 * 32. The socket is in `sk`; R1 is clobbered. Readers pick the family's
 * fields (a v4-mapped IPv6 address stands for its IPv4 one).
 */
export const DESTINATION_KEY_SIZE = 48;

export function destinationKeyInsns(o: SockCommonOffsets, sk: number, at: number): Insn[] {
  const words = (from: number, to: number, n: number): Insn[] => Array.from({ length: n }, (_, i) => [ldx(4, R1, sk, from + 4 * i), stx(4, FP, to + 4 * i, R1)]).flat();
  return [
    ldx(2, R1, sk, o.family),
    stx(1, FP, at, R1),
    ldx(2, R1, sk, o.dport),
    stx(2, FP, at + 2, R1),
    ...words(o.rcvSaddr, at + 8, 1),
    ...words(o.daddr, at + 12, 1),
    ...words(o.v6RcvSaddr, at + 16, 4),
    ...words(o.v6Daddr, at + 32, 4),
  ];
}

/** Decodes the addresses of a destination key (or of a failure key, laid out the same): a v4-mapped address as its IPv4 text. */
export function keyAddresses(key: Buffer): { source: string; destination: string; port: number } {
  const v6 = key[0] !== AF_INET;
  const addr = (at: number, v4At: number): string => {
    if (!v6) return formatIp({ family: 4, n: BigInt(key.readUInt32BE(v4At)) });
    const n = (key.readBigUInt64BE(at) << 64n) | key.readBigUInt64BE(at + 8);
    if (n >> 32n === 0xffffn) return formatIp({ family: 4, n: n & 0xffff_ffffn });
    return formatIp({ family: 6, n });
  };
  return { source: addr(16, 8), destination: addr(32, 12), port: key.readUInt16BE(2) };
}

/** This process's network namespace: the inode number of /proc/self/ns/net (what a program compares net->ns.inum with). */
export function netnsInode(): number {
  return statSync('/proc/self/ns/net').ino;
}

/** A map name for one network namespace (`prefix` and its inode in hex, 15 characters at most), so each process finds its namespace's own. */
export function netnsMapName(prefix: string, netns: number): string {
  return `${prefix}${(netns >>> 0).toString(16).padStart(8, '0')}`;
}
