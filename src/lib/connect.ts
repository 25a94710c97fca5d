/**
 * `connect`: `net.connect` with a pool of source addresses, where each
 * connection's 4-tuple is made unique per destination instead of per source
 * address, so a program gets (ports × sources) connections to every
 * destination rather than (ports × sources) in all.
 *
 * Mechanism: net.connect makes the socket object and its libuv handle, still
 * without a kernel socket, resolves the host and then calls the handle's
 * connect(). This module wraps that call, so the source is chosen knowing
 * the destination address: a socket made through the FFI gets
 * IP_BIND_ADDRESS_NO_PORT + bind(source, 0) ('nopo') or SO_REUSEADDR +
 * bind(source, port) from SourcePool ('explicit'), is handed to the handle
 * (handle.open), and libuv performs the connect(), so the socket behaves and
 * emits 'connect' exactly as net's own. When connect() says EADDRNOTAVAIL
 * (that pool is full, or that explicit 4-tuple is taken), a socket bound to
 * the next source replaces the one behind the same fd number (dup3) and
 * connect() runs again, before libuv has registered the fd anywhere: the
 * caller never sees the retry.
 */
import net from 'node:net';
import { getSystemErrorName } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import * as ffi from '../kernel/ffi.js';
import { formatEndpoint } from '../model/address.js';
import { type Lease, SourcePool, type SourcePoolOptions } from './source-pool.js';

/** Options of `connect`: those of `net.connect` for TCP (without localAddress/localPort), plus the sources or a pool. */
export interface ConnectOptions
  extends Omit<net.TcpNetConnectOpts, 'localAddress' | 'localPort' | 'autoSelectFamily' | 'autoSelectFamilyAttemptTimeout' | 'fd'>,
    Partial<SourcePoolOptions> {
  /** A pool shared with other calls; without it, calls with the same sources and strategy share one pool. */
  pool?: SourcePool;
  /** Stream buffer size, as net.Socket's constructor takes it. */
  highWaterMark?: number;
}

type TcpConnect = (req: object, address: string, port: number) => number;
interface TcpHandle {
  open(fd: number): number;
  connect: TcpConnect;
  connect6: TcpConnect;
}

// libuv reports errors as -errno on Linux.
const UV_EADDRNOTAVAIL = -ffi.EADDRNOTAVAIL;
const EADDRINUSE = -ffi.EADDRINUSE;
// Explicit ports found taken in a row before the source counts as full for this destination.
const TAKEN_LIMIT = 64;
const MAX_CACHED_POOLS = 256;
const pools = new Map<string, SourcePool>();

/**
 * Opens a TCP connection like `net.connect(options)`, from one of
 * `options.sources`: returns the net.Socket at once; it emits 'connect', or
 * 'error' with a PoolExhaustedError (code FT_POOL_EXHAUSTED) when every source
 * is full for the destination.
 */
export function connect(options: ConnectOptions, connectListener?: () => void): net.Socket {
  const socket = openWith(poolOf(options), options);
  if (connectListener !== undefined) socket.once('connect', connectListener);
  return socket;
}

/** The pool `options` name: `options.pool`, or the shared one for its sources and strategy. */
export function poolOf(options: Partial<SourcePoolOptions> & { pool?: SourcePool }): SourcePool {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options: expected an object with sources or pool');
  if (options.pool !== undefined) {
    if (!(options.pool instanceof SourcePool)) throw new InvalidArgumentError('pool: expected a SourcePool');
    return options.pool;
  }
  const { sources } = options;
  if (sources === undefined) throw new InvalidArgumentError('sources: expected source addresses (or a pool)');
  const key = `${options.strategy ?? ''}|${typeof sources === 'string' ? sources : Array.isArray(sources) ? sources.join(',') : ''}|${String(options.ports ?? '')}|${options.retryFullAfterMs ?? ''}`;
  let pool = pools.get(key);
  if (pool === undefined) {
    pool = new SourcePool(options as SourcePoolOptions);
    if (pools.size >= MAX_CACHED_POOLS) pools.delete(pools.keys().next().value as string);
    pools.set(key, pool);
  }
  return pool;
}

/** `connect` on a given pool: the path `connector` and `createConnection` share. */
export function openWith(pool: SourcePool, options: ConnectOptions): net.Socket {
  const loose = options as { localAddress?: unknown; localPort?: unknown };
  if (loose.localAddress != null || loose.localPort != null) {
    throw new InvalidArgumentError('localAddress/localPort: fourtuple chooses the source; give the addresses as sources');
  }
  const host = options.host ?? 'localhost';
  if (!ffi.ffiAvailable()) return fallback(pool, options, host);
  // Named fields, not a spread of `options` (which costs more per connection than the syscalls added here); the rest only when given.
  const socket = net.connect(
    options.timeout === undefined && options.signal === undefined && options.lookup === undefined && options.hints === undefined && options.onread === undefined && options.allowHalfOpen === undefined && options.noDelay === undefined && options.keepAlive === undefined && options.highWaterMark === undefined
      ? { host, port: options.port, family: options.family ?? pool.lookupFamily, autoSelectFamily: false }
      : ({
          host,
          port: options.port,
          family: options.family ?? pool.lookupFamily,
          hints: options.hints,
          lookup: options.lookup,
          timeout: options.timeout,
          allowHalfOpen: options.allowHalfOpen,
          signal: options.signal,
          onread: options.onread,
          noDelay: options.noDelay,
          keepAlive: options.keepAlive,
          keepAliveInitialDelay: options.keepAliveInitialDelay,
          highWaterMark: options.highWaterMark,
          autoSelectFamily: false,
        } as net.TcpNetConnectOpts),
  );
  // net.connect made the handle (still without a socket) and connects on the next tick, after the lookup.
  const handle = (socket as unknown as { _handle: TcpHandle | null })._handle;
  if (handle !== null) hook(pool, socket, handle);
  return socket;
}

function hook(pool: SourcePool, socket: net.Socket, handle: TcpHandle): void {
  const connect4 = handle.connect;
  const connect6 = handle.connect6;
  let fd = -1; // the fd the handle owns, once it has one
  const attempt = (real: TcpConnect, req: object, address: string, port: number): number => {
    let taken = 0;
    for (;;) {
      const lease = pool.lease(address, port);
      if (lease === undefined) {
        socket.destroy(pool.exhausted(address, port));
        return 0;
      }
      const next = bindLease(pool, lease);
      let r = next < 0 ? next : 0;
      if (r === 0) {
        if (fd < 0) {
          r = handle.open(next);
          if (r === 0) fd = next;
          else ffi.close(next);
        } else {
          r = ffi.dup3(next, fd);
          ffi.close(next);
        }
      }
      if (r !== 0) {
        if (r === EADDRINUSE && lease.port !== 0) {
          // A listener (or a socket without SO_REUSEADDR) holds that explicit port.
          pool.reject(lease, ++taken < TAKEN_LIMIT ? 'taken' : 'full');
          continue;
        }
        pool.reject(lease, 'other');
        socket.destroy(sysError(r, next < 0 ? failedCall : fd < 0 ? 'open' : 'dup3', lease.source, lease.port));
        return 0;
      }
      const err = real.call(handle, req, address, port);
      if (err === 0) {
        socket.on('close', () => pool.release(lease));
        return 0;
      }
      if (err === UV_EADDRNOTAVAIL) {
        pool.reject(lease, lease.port !== 0 && ++taken < TAKEN_LIMIT ? 'taken' : 'full');
        continue;
      }
      pool.reject(lease, 'other');
      return err;
    }
  };
  handle.connect = (req, address, port) => attempt(connect4, req, address, port);
  handle.connect6 = (req, address, port) => attempt(connect6, req, address, port);
}

let failedCall = '';

// A new socket bound for the lease: its fd, or -errno (closed on failure; failedCall names the call).
function bindLease(pool: SourcePool, lease: Lease): number {
  const fd = ffi.socket(lease.family, true);
  if (fd < 0) {
    failedCall = 'socket';
    return fd;
  }
  let r = lease.port === 0 ? ffi.setBindAddressNoPort(fd) : ffi.setReuseAddr(fd, true);
  failedCall = 'setsockopt';
  if (r === 0) {
    r = ffi.bind(fd, pool.sockaddrOf(lease));
    failedCall = 'bind';
  }
  if (r === 0) return fd;
  ffi.close(fd);
  return r;
}

// Without koffi: net's own bind(source, port) (SO_REUSEADDR, port 0 with nopo), one attempt, no retry.
function fallback(pool: SourcePool, options: ConnectOptions, host: string): net.Socket {
  const lease = pool.lease(host, options.port);
  if (lease === undefined) return failLater(pool.exhausted(host, options.port));
  const socket = net.connect({ ...options, host, localAddress: lease.source, localPort: lease.port || undefined, autoSelectFamily: false } as net.TcpNetConnectOpts);
  socket.on('close', () => pool.release(lease));
  return socket;
}

function failLater(err: Error): net.Socket {
  const socket = new net.Socket();
  process.nextTick(() => socket.destroy(err));
  return socket;
}

function sysError(negErrno: number, syscall: string, address?: string, port?: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(negErrno);
  const where = address === undefined ? '' : ` ${formatEndpoint(address, String(port))}`;
  return Object.assign(new Error(`${syscall} ${code}${where}`), { errno: negErrno, code, syscall, address, port });
}
