/**
 * The embedded sink's listening sockets, opened by the coordinator through
 * raw syscalls so every sink worker can inherit and accept from them.
 */
import * as ffi from '../kernel/ffi.js';
import { familyOf, formatEndpoint } from '../model/address.js';
import type { Target } from './protocol.js';

/** An open listening socket. */
export interface Listener extends Target {
  readonly fd: number;
}

/** Why a listener could not be opened. */
export class ListenError extends Error {
  constructor(
    readonly target: Target,
    readonly errno: string,
  ) {
    super(`cannot listen on ${fmtTarget(target)}: ${errno}`);
  }
}

/** `127.0.0.1:7000`, `[::1]:7000`. */
export function fmtTarget(t: Target): string {
  return formatEndpoint(t.address, t.port);
}

/** Opens one listener; SO_LINGER 0 is inherited by every accepted socket, so they close with RST too. */
export function openListener(target: Target, backlog: number, rst: boolean): Listener | ListenError {
  // Nonblocking: sink workers share it, and an accept with nothing queued must return EAGAIN, not wait.
  const fd = ffi.socket(familyOf(target.address), true);
  if (fd < 0) return new ListenError(target, ffi.errnoName(fd));
  ffi.setReuseAddr(fd, true);
  if (rst) ffi.setLinger0(fd);
  // An IPv4-mapped address (::ffff:127.0.0.1) is IPv4 traffic on an IPv6 socket: only a dual-stack socket can bind it.
  if (target.address.includes(':')) ffi.setIpv6Only(fd, !/^::ffff:\d/i.test(target.address));
  let r = ffi.bind(fd, ffi.sockaddr(target.address, target.port));
  if (r >= 0) r = ffi.listen(fd, backlog);
  if (r < 0) {
    ffi.close(fd);
    return new ListenError(target, ffi.errnoName(r));
  }
  return { ...target, fd };
}

/**
 * Opens `count` listeners on `address`, on the first free ports from `from`
 * that are not in `avoid` (the ephemeral range, reserved ports).
 */
export function openFreeListeners(address: string, count: number, from: number, avoid: (port: number) => boolean, backlog: number, rst: boolean): Listener[] {
  const out: Listener[] = [];
  for (let port = from; out.length < count && port <= 65535; port++) {
    if (avoid(port)) continue;
    const l = openListener({ address, port }, backlog, rst);
    if (l instanceof ListenError) {
      if (l.errno === 'EADDRINUSE') continue;
      closeListeners(out);
      throw l;
    }
    out.push(l);
  }
  if (out.length < count) {
    closeListeners(out);
    throw new ListenError({ address, port: from }, 'no free ports');
  }
  return out;
}

/** Closes listeners (idempotent on an emptied array). */
export function closeListeners(list: Listener[]): void {
  for (const l of list.splice(0)) ffi.close(l.fd);
}
