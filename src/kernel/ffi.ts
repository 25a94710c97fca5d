/**
 * The one FFI module: raw Linux socket syscalls through koffi, so the engine
 * can open and hold hundreds of thousands of sockets as bare fds, with no
 * JS socket object, libuv handle or event-loop registration per connection.
 *
 * Syscall wrappers never throw on failure: they return a non-negative result
 * or `-errno`, because in a connection flood failures are data, not accidents.
 * They throw only FfiUnavailableError, when koffi/libc cannot be used.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { FfiUnavailableError, InvalidArgumentError } from '../errors.js';
import { AF_INET, AF_INET6, EINVAL, IPPROTO_TCP, errnoName } from './linux.js';

type Koffi = typeof import('koffi');

// Linux x86_64 ABI values; the kernel's, not libuv's (the shared ones are in linux.ts).
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_ERROR = 4;
const SO_LINGER = 13;
const SO_REUSEPORT = 15;
const SOL_IP = 0;
const IP_BIND_ADDRESS_NO_PORT = 24;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const RLIMIT_NOFILE = 7;
const RLIM_INFINITY = 0xffff_ffff_ffff_ffffn;

// The errno values callers compare results with, and their names, as ffi.EADDRNOTAVAIL, ffi.errnoName().
export {
  EAGAIN,
  EINPROGRESS,
  EADDRNOTAVAIL,
  EADDRINUSE,
  EMFILE,
  ENFILE,
  ENOBUFS,
  ENOMEM,
  ECONNREFUSED,
  ETIMEDOUT,
  ECONNRESET,
  EINTR,
  errnoName,
} from './linux.js';

/** poll(2) event: readable, or a pending connection on a listener. */
export const POLLIN = 0x001;
/** poll(2) event: writable, i.e. a nonblocking connect has completed (check socketError). */
export const POLLOUT = 0x004;
/** poll(2) revent: error pending on the socket. */
export const POLLERR = 0x008;
/** poll(2) revent: hung up. */
export const POLLHUP = 0x010;

interface Native {
  errno: () => number;
  socket: (domain: number, type: number, protocol: number) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  connect: (fd: number, addr: Buffer, len: number) => number;
  listen: (fd: number, backlog: number) => number;
  accept4: (fd: number, addr: null, len: null, flags: number) => number;
  close: (fd: number) => number;
  dup: (fd: number) => number;
  setsockopt: (fd: number, level: number, name: number, val: Buffer, len: number) => number;
  getsockopt: (fd: number, level: number, name: number, val: Buffer, len: Buffer) => number;
  getsockname: (fd: number, addr: Buffer, len: Buffer) => number;
  getpeername: (fd: number, addr: Buffer, len: Buffer) => number;
  poll: (fds: Uint8Array, nfds: number, timeout: number) => number;
  getrlimit: (resource: number, rlim: Buffer) => number;
  setrlimit: (resource: number, rlim: Buffer) => number;
  send: (fd: number, buf: Uint8Array, len: number, flags: number) => number;
  recv: (fd: number, buf: Uint8Array, len: number, flags: number) => number;
}

let native: Native | undefined;
// Kept from load() for the calls bound on first use (late()).
let koffiModule: Koffi | undefined;
let libc: ReturnType<Koffi['load']> | undefined;
let unavailable: string | undefined;
let loaded = false;

// Preallocated so option setters and getters allocate nothing per call.
const intBuf = Buffer.alloc(4);
const lenBuf = Buffer.alloc(4);
const lingerBuf = Buffer.alloc(8);
lingerBuf.writeInt32LE(1, 0); // l_onoff = 1, l_linger = 0: close() sends RST
const nameBuf = Buffer.alloc(28);
const rlimBuf = Buffer.alloc(16);

function load(): void {
  loaded = true;
  if (process.env.FOURTUPLE_NO_FFI === '1') {
    unavailable = 'disabled by FOURTUPLE_NO_FFI=1';
    return;
  }
  if (process.platform !== 'linux') {
    unavailable = `platform ${process.platform} is not linux`;
    return;
  }
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (err) {
    unavailable = `cannot load koffi: ${(err as Error).message}`;
    return;
  }
  try {
    const lib = koffi.load('libc.so.6');
    koffiModule = koffi;
    libc = lib;
    native = {
      errno: () => koffi.errno(),
      socket: lib.func('int socket(int domain, int type, int protocol)'),
      bind: lib.func('int bind(int fd, const void *addr, uint32_t len)'),
      connect: lib.func('int connect(int fd, const void *addr, uint32_t len)'),
      listen: lib.func('int listen(int fd, int backlog)'),
      accept4: lib.func('int accept4(int fd, void *addr, void *len, int flags)'),
      close: lib.func('int close(int fd)'),
      dup: lib.func('int dup(int fd)'),
      setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)'),
      getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *val, void *len)'),
      getsockname: lib.func('int getsockname(int fd, void *addr, void *len)'),
      getpeername: lib.func('int getpeername(int fd, void *addr, void *len)'),
      poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)'),
      getrlimit: lib.func('int getrlimit(int resource, void *rlim)'),
      setrlimit: lib.func('int setrlimit(int resource, const void *rlim)'),
      send: lib.func('long send(int fd, const void *buf, size_t len, int flags)'),
      recv: lib.func('long recv(int fd, void *buf, size_t len, int flags)'),
    };
  } catch (err) {
    unavailable = `cannot load libc.so.6: ${(err as Error).message}`;
  }
}

function need(): Native {
  if (!loaded) load();
  if (native === undefined) throw new FfiUnavailableError(unavailable ?? 'unknown reason');
  return native;
}

/** Lets callers pick the raw path or the plain `net` fallback without try/catch. */
export function ffiAvailable(): boolean {
  if (!loaded) load();
  return native !== undefined;
}

/** Says why the raw path is off, for `limits` and probe reports; undefined when it is on. */
export function ffiUnavailableReason(): string | undefined {
  if (!loaded) load();
  return unavailable;
}

/** Builds a sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes) once, so the hot path only passes a Buffer. */
export function sockaddr(ip: string, port: number): Buffer {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError(`port ${port}: expected an integer 0-65535`);
  }
  if (isIPv4(ip)) {
    const buf = Buffer.alloc(16);
    buf.writeUInt16LE(AF_INET, 0);
    buf.writeUInt16BE(port, 2);
    writeIpv4(ip, buf, 4);
    return buf;
  }
  if (isIPv6(ip)) {
    const buf = Buffer.alloc(28);
    buf.writeUInt16LE(AF_INET6, 0);
    buf.writeUInt16BE(port, 2);
    const pct = ip.indexOf('%');
    writeIpv6(pct < 0 ? ip : ip.slice(0, pct), buf, 8);
    if (pct >= 0) buf.writeUInt32LE(scopeId(ip.slice(pct + 1)), 24);
    return buf;
  }
  throw new InvalidArgumentError(`address ${JSON.stringify(ip)}: expected a dotted IPv4 or an IPv6 address`);
}

/** Rewrites the port of a sockaddr in place, so explicit-port strategies reuse one Buffer. */
export function setSockaddrPort(addr: Buffer, port: number): void {
  addr.writeUInt16BE(port, 2);
}

/** Decodes what getsockname/getpeername (or sockaddr) produced. */
export function parseSockaddr(buf: Buffer): { address: string; port: number; family: 4 | 6 } {
  const family = buf.readUInt16LE(0);
  const port = buf.readUInt16BE(2);
  if (family === AF_INET) {
    return { address: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port, family: 4 };
  }
  if (family === AF_INET6 && buf.length >= 28) {
    const scope = buf.readUInt32LE(24);
    const address = formatIpv6(buf, 8) + (scope !== 0 ? `%${scope}` : '');
    return { address, port, family: 6 };
  }
  throw new InvalidArgumentError(`sockaddr family ${family}: expected AF_INET (${AF_INET}) or AF_INET6 (${AF_INET6})`);
}

function writeIpv4(ip: string, buf: Buffer, off: number): void {
  const parts = ip.split('.');
  for (let i = 0; i < 4; i++) buf[off + i] = Number(parts[i]);
}

function writeIpv6(ip: string, buf: Buffer, off: number): void {
  const groups = (s: string): number[] => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (g.includes('.')) {
        const b = g.split('.').map(Number);
        out.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]);
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const dbl = ip.indexOf('::');
  let all: number[];
  if (dbl < 0) {
    all = groups(ip);
  } else {
    const head = groups(ip.slice(0, dbl));
    const tail = groups(ip.slice(dbl + 2));
    all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  for (let i = 0; i < 8; i++) buf.writeUInt16BE(all[i], off + 2 * i);
}

// RFC 5952: lowercase, longest run (>= 2) of zero groups becomes "::", first run wins a tie.
function formatIpv6(buf: Buffer, off: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(off + 2 * i));
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${buf[off + 12]}.${buf[off + 13]}.${buf[off + 14]}.${buf[off + 15]}`;
  }
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

function scopeId(zone: string): number {
  if (/^\d+$/.test(zone)) return Number(zone);
  try {
    return Number(readFileSync(`/sys/class/net/${zone}/ifindex`, 'utf8').trim());
  } catch {
    throw new InvalidArgumentError(`IPv6 zone ${JSON.stringify(zone)}: expected an interface name or index`);
  }
}

/**
 * New TCP socket fd, or -errno. CLOEXEC unless `cloexec` is false: the
 * probe's client workers hand their connections to a holder process by
 * letting it inherit them, and nothing else.
 */
export function socket(family: 4 | 6, nonblock: boolean, cloexec = true): number {
  const n = native ?? need();
  const fd = n.socket(family === 6 ? AF_INET6 : AF_INET, SOCK_STREAM | (cloexec ? SOCK_CLOEXEC : 0) | (nonblock ? SOCK_NONBLOCK : 0), 0);
  return fd < 0 ? -n.errno() : fd;
}

/** bind(2) with a Buffer from sockaddr(); 0 or -errno (EADDRINUSE, EADDRNOTAVAIL). */
export function bind(fd: number, addr: Buffer): number {
  const n = native ?? need();
  return n.bind(fd, addr, addr.length) < 0 ? -n.errno() : 0;
}

/** connect(2); a nonblocking socket gives -EINPROGRESS, then poll for POLLOUT and read socketError. */
export function connect(fd: number, addr: Buffer): number {
  const n = native ?? need();
  return n.connect(fd, addr, addr.length) < 0 ? -n.errno() : 0;
}

/** listen(2); the kernel caps backlog at net.core.somaxconn. */
export function listen(fd: number, backlog: number): number {
  const n = native ?? need();
  return n.listen(fd, backlog) < 0 ? -n.errno() : 0;
}

/** Accepted fd, already nonblocking and CLOEXEC; -EAGAIN when the queue is empty. */
export function accept4(fd: number): number {
  const n = native ?? need();
  const r = n.accept4(fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
  return r < 0 ? -n.errno() : r;
}

/** close(2); 0 or -errno. */
export function close(fd: number): number {
  const n = native ?? need();
  return n.close(fd) < 0 ? -n.errno() : 0;
}

/** dup(2), e.g. to hand a raw fd to net.Socket while keeping ownership clear; new fd or -errno. */
export function dup(fd: number): number {
  const n = native ?? need();
  const r = n.dup(fd);
  return r < 0 ? -n.errno() : r;
}

function setInt(fd: number, level: number, name: number, value: number): number {
  const n = native ?? need();
  intBuf.writeInt32LE(value, 0);
  return n.setsockopt(fd, level, name, intBuf, 4) < 0 ? -n.errno() : 0;
}

/** SO_REUSEADDR, as libuv sets it: lets explicit binds share a source port across destinations. */
export function setReuseAddr(fd: number, on: boolean): number {
  return setInt(fd, SOL_SOCKET, SO_REUSEADDR, on ? 1 : 0);
}

/** SO_REUSEPORT: several listeners (one per worker) on one port. */
export function setReusePort(fd: number, on: boolean): number {
  return setInt(fd, SOL_SOCKET, SO_REUSEPORT, on ? 1 : 0);
}

/** IP_BIND_ADDRESS_NO_PORT: bind(ip, 0) defers the port pick to connect(), restoring per-destination pools. */
export function setBindAddressNoPort(fd: number): number {
  return setInt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1);
}

/** SO_LINGER {1, 0}: the following close() sends RST and leaves no TIME_WAIT on the host. */
export function setLinger0(fd: number): number {
  const n = native ?? need();
  return n.setsockopt(fd, SOL_SOCKET, SO_LINGER, lingerBuf, 8) < 0 ? -n.errno() : 0;
}

/** IPV6_V6ONLY, so an AF_INET6 socket never takes IPv4-mapped traffic or ports. */
export function setIpv6Only(fd: number, on = true): number {
  return setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, on ? 1 : 0);
}

/** Pending error after a nonblocking connect: 0, a positive errno (e.g. ECONNREFUSED), or -errno if getsockopt failed. */
export function socketError(fd: number): number {
  const n = native ?? need();
  lenBuf.writeUInt32LE(4, 0);
  if (n.getsockopt(fd, SOL_SOCKET, SO_ERROR, intBuf, lenBuf) < 0) return -n.errno();
  return intBuf.readInt32LE(0);
}

function sockName(
  fn: (fd: number, addr: Buffer, len: Buffer) => number,
  n: Native,
  fd: number,
): { address: string; port: number; family: 4 | 6 } | number {
  lenBuf.writeUInt32LE(nameBuf.length, 0);
  if (fn(fd, nameBuf, lenBuf) < 0) return -n.errno();
  return parseSockaddr(nameBuf);
}

/** Local address of a raw fd (the source port the kernel picked), or -errno. */
export function getsockname(fd: number): { address: string; port: number; family: 4 | 6 } | number {
  const n = native ?? need();
  return sockName(n.getsockname, n, fd);
}

/** Remote address of a raw fd, or -errno (-ENOTCONN before the handshake completes). */
export function getpeername(fd: number): { address: string; port: number; family: 4 | 6 } | number {
  const n = native ?? need();
  return sockName(n.getpeername, n, fd);
}

/** poll(2) over `count` struct pollfd in `fds`; blocks the thread up to timeoutMs, so use it in workers. Ready count or -errno. */
export function poll(fds: Uint8Array, count: number, timeoutMs: number): number {
  const n = native ?? need();
  if (count < 0 || count * 8 > fds.byteLength) return -EINVAL; // a bad count would let the kernel write past the Buffer
  const r = n.poll(fds, count, timeoutMs);
  return r < 0 ? -n.errno() : r;
}

/** A fixed array of struct pollfd, so callers never do byte math; slots with fd -1 are ignored by the kernel. */
export class PollSet {
  /** Number of slots. */
  readonly capacity: number;
  /** The raw struct pollfd array, for poll(). */
  readonly buffer: Buffer;
  #i32: Int32Array;
  #i16: Int16Array;

  constructor(capacity: number) {
    const ab = new ArrayBuffer(capacity * 8);
    this.capacity = capacity;
    this.buffer = Buffer.from(ab);
    this.#i32 = new Int32Array(ab);
    this.#i16 = new Int16Array(ab);
    for (let i = 0; i < capacity; i++) this.#i32[2 * i] = -1;
  }

  /** Fills slot i and clears its revents. */
  set(i: number, fd: number, events: number): void {
    this.#i32[2 * i] = fd;
    this.#i16[4 * i + 2] = events;
    this.#i16[4 * i + 3] = 0;
  }

  /** Events the kernel reported for slot i after the last poll. */
  revents(i: number): number {
    return this.#i16[4 * i + 3];
  }

  /** The fd in slot i (-1 when empty). */
  fd(i: number): number {
    return this.#i32[2 * i];
  }

  /** Polls the first `count` slots; ready count or -errno. */
  poll(count: number, timeoutMs: number): number {
    return poll(this.buffer, count, timeoutMs);
  }
}

function rlimToNumber(v: bigint): number {
  return v === RLIM_INFINITY ? Infinity : Number(v);
}

/** Current RLIMIT_NOFILE; Infinity stands for RLIM_INFINITY. */
export function getNofileLimit(): { soft: number; hard: number } {
  const n = native ?? need();
  if (n.getrlimit(RLIMIT_NOFILE, rlimBuf) < 0) {
    const e = n.errno();
    throw Object.assign(new Error(`getrlimit(RLIMIT_NOFILE): ${errnoName(e)}`), { code: errnoName(e), errno: -e });
  }
  return { soft: rlimToNumber(rlimBuf.readBigUInt64LE(0)), hard: rlimToNumber(rlimBuf.readBigUInt64LE(8)) };
}

/** Sets RLIMIT_NOFILE (raising the soft limit to the hard one is what a probe needs); 0 or -errno (EPERM, EINVAL). */
export function setNofileLimit(soft: number, hard: number): number {
  const n = native ?? need();
  if (!(soft >= 0) || !(hard >= 0)) return -EINVAL;
  rlimBuf.writeBigUInt64LE(soft === Infinity ? RLIM_INFINITY : BigInt(Math.floor(soft)), 0);
  rlimBuf.writeBigUInt64LE(hard === Infinity ? RLIM_INFINITY : BigInt(Math.floor(hard)), 8);
  return n.setrlimit(RLIMIT_NOFILE, rlimBuf) < 0 ? -n.errno() : 0;
}

const tcpInfoBuf = Buffer.alloc(32);
const TCP_INFO = 11;

/**
 * Accept-queue length and its maximum of a listening socket, from TCP_INFO
 * (for a listener the kernel reports sk_ack_backlog in tcpi_unacked and the
 * backlog in tcpi_sacked). Lets a client slow down before the queue
 * overflows and SYNs are dropped. Queue length, or -errno.
 */
export function listenQueue(fd: number): number {
  const n = native ?? need();
  lenBuf.writeUInt32LE(tcpInfoBuf.length, 0);
  if (n.getsockopt(fd, IPPROTO_TCP, TCP_INFO, tcpInfoBuf, lenBuf) < 0) return -n.errno();
  return tcpInfoBuf.readUInt32LE(24);
}

const AF_NETLINK = 16;
const SOCK_RAW = 3;

/** New netlink socket (AF_NETLINK, SOCK_RAW, CLOEXEC, blocking) of `protocol`, e.g. NETLINK_SOCK_DIAG (4); fd or -errno. */
export function netlinkSocket(protocol: number): number {
  const n = native ?? need();
  const fd = n.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  return fd < 0 ? -n.errno() : fd;
}

/** send(2) of the first `len` bytes of `buf`; bytes sent or -errno. */
export function send(fd: number, buf: Uint8Array, len = buf.byteLength): number {
  const n = native ?? need();
  if (len < 0 || len > buf.byteLength) return -EINVAL;
  const r = n.send(fd, buf, len, 0);
  return r < 0 ? -n.errno() : r;
}

/** recv(2) into `buf` (no copy: the kernel writes into the Buffer's own memory); bytes received or -errno. */
export function recv(fd: number, buf: Uint8Array, flags = 0): number {
  const n = native ?? need();
  const r = n.recv(fd, buf, buf.byteLength, flags);
  return r < 0 ? -n.errno() : r;
}

/** A libc function bound on its first call: for calls only some commands make. */
function late<F>(signature: string): () => F {
  let fn: F | undefined;
  return () => {
    need();
    fn ??= (libc as NonNullable<typeof libc>).func(signature) as unknown as F;
    return fn;
  };
}

const dup3Fn = late<(oldfd: number, newfd: number, flags: number) => number>('int dup3(int oldfd, int newfd, int flags)');

/**
 * dup3(2) with O_CLOEXEC: makes `newfd` refer to the socket of `oldfd`,
 * closing what `newfd` held. Lets a libuv handle keep its fd number while the
 * socket behind it is replaced (a retry on another source address). 0 or -errno.
 */
export function dup3(oldfd: number, newfd: number): number {
  const n = native ?? need();
  return dup3Fn()(oldfd, newfd, SOCK_CLOEXEC) < 0 ? -n.errno() : 0; // O_CLOEXEC == SOCK_CLOEXEC on Linux
}

/** bpf(2)'s syscall number by architecture (glibc has no wrapper). */
const SYS_BPF: Record<string, number> = { x64: 321, arm64: 280 };
const bpfFn = late<(nr: number, cmd: number, attr: Buffer, size: number) => number>('long syscall(long nr, int cmd, void *attr, unsigned int size)');
const readFn = late<(fd: number, buf: Uint8Array, len: number) => number>('long read(int fd, void *buf, size_t count)');

/** bpf(2): `cmd` with `attr` (a union bpf_attr, its size the Buffer's); the result (often an fd) or -errno. */
export function bpf(cmd: number, attr: Buffer): number {
  const n = native ?? need();
  const nr = SYS_BPF[process.arch];
  if (nr === undefined) return -EINVAL;
  const r = bpfFn()(nr, cmd, attr, attr.length);
  return r < 0 ? -n.errno() : r;
}

/** The address of a Buffer's memory, for pointers inside a bpf_attr. The caller keeps the Buffer alive. */
export function addressOf(buf: Uint8Array): bigint {
  need();
  return (koffiModule as Koffi).address(buf) as bigint;
}

/** read(2) into `buf` (the kernel writes into the Buffer's own memory); bytes read, 0 at the end, or -errno. */
export function read(fd: number, buf: Uint8Array): number {
  const n = native ?? need();
  const r = readFn()(fd, buf, buf.byteLength);
  return r < 0 ? -n.errno() : r;
}

const pipe2Fn = late<(fds: Int32Array, flags: number) => number>('int pipe2(void *fds, int flags)');

/** pipe2(2) with O_CLOEXEC: [read end, write end], or -errno. */
export function pipe(): [number, number] | number {
  const n = native ?? need();
  const fds = new Int32Array(2);
  return pipe2Fn()(fds, SOCK_CLOEXEC) < 0 ? -n.errno() : [fds[0], fds[1]];
}
