/**
 * The one place for the Linux numbers several modules share: TCP states,
 * address families, the IPPROTO_TCP protocol number and errno values, with
 * the errno number-to-name table. They are the kernel's ABI values (the same
 * on x86_64 and arm64), not libuv's.
 */
import { constants as osConstants } from 'node:os';

// TCP states (include/net/tcp_states.h), as /proc/net/tcp, netlink sock_diag
// and the BPF iterator report them; also the indexes of TCP_STATES.
export const TCP_ESTABLISHED = 1;
export const TCP_SYN_SENT = 2;
export const TCP_SYN_RECV = 3;
export const TCP_FIN_WAIT1 = 4;
export const TCP_FIN_WAIT2 = 5;
export const TCP_TIME_WAIT = 6;
export const TCP_CLOSE = 7;
export const TCP_CLOSE_WAIT = 8;
export const TCP_LAST_ACK = 9;
export const TCP_LISTEN = 10;
export const TCP_CLOSING = 11;
/** A request socket (a SYN received, not yet accepted); the socket-table readers report it as SYN_RECV. */
export const TCP_NEW_SYN_RECV = 12;

/** Kernel TCP states by their code (/proc/net/tcp's hex `st` column); index 0 is no state. */
export const TCP_STATES = [
  '', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT',
  'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV',
] as const;

// Address families, as sockaddr's sa_family and sock_diag's sdiag_family carry them.
/** IPv4. */
export const AF_INET = 2;
/** IPv6. */
export const AF_INET6 = 10;

/** The TCP protocol number: setsockopt level for TCP options, sock_diag's sdiag_protocol. */
export const IPPROTO_TCP = 6;

// errno values the code compares results with (the syscall wrappers of
// ffi.ts return them negated: -errno), and their names.
/** Operation not permitted: a capability is missing (bpf(2) without CAP_BPF). */
export const EPERM = 1;
/** No such entry: the end of a BPF map walk. */
export const ENOENT = 2;
/** Interrupted by a signal; the call may be retried. */
export const EINTR = 4;
/** Resource temporarily unavailable: no pending connection for accept4, or no data yet. */
export const EAGAIN = 11;
/** Kernel memory exhausted. */
export const ENOMEM = 12;
/** Permission denied: the BPF verifier refused a program. */
export const EACCES = 13;
/** Exists already: a BPF map insert lost to another CPU's. */
export const EEXIST = 17;
/** Invalid argument. */
export const EINVAL = 22;
/** System-wide fs.file-max reached. */
export const ENFILE = 23;
/** Per-process RLIMIT_NOFILE reached. */
export const EMFILE = 24;
/** Operation not supported on the socket (the socket-layer spelling of ENOTSUP). */
export const EOPNOTSUPP = 95;
/** The explicit local address/port is already taken. */
export const EADDRINUSE = 98;
/** No free source port for this 4-tuple pool: the limit fourtuple is about. */
export const EADDRNOTAVAIL = 99;
/** Peer reset the connection. */
export const ECONNRESET = 104;
/** Kernel socket buffer memory exhausted. */
export const ENOBUFS = 105;
/** SYN never answered (e.g. backlog full and SYNs dropped). */
export const ETIMEDOUT = 110;
/** Nothing listens on the destination (RST on SYN). */
export const ECONNREFUSED = 111;
/** Nonblocking connect started; completion is reported by poll + socketError. */
export const EINPROGRESS = 115;

/** errno names by number: Node's table for this platform, first name of a value wins. */
const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}
errnoNames.set(EOPNOTSUPP, 'EOPNOTSUPP');

/** Symbolic name of an errno, positive or negated (99 or -99 -> 'EADDRNOTAVAIL'); 'E<n>' if unknown. */
export function errnoName(n: number): string {
  const v = Math.abs(n);
  return errnoNames.get(v) ?? `E${v}`;
}
