/**
 * HTTP clients on top of `connect`: a `connector` for undici's `connect`
 * option and a `createConnection` for Node's `http.Agent`. HTTPS works by
 * wrapping the socket with tls.connect({ socket }).
 */
import type { ClientRequestArgs } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { ConnectTimeoutError, InvalidArgumentError } from '../errors.js';
import { formatEndpoint } from '../model/address.js';
import { openWith, poolOf } from './connect.js';
import type { SourcePool, SourcePoolOptions } from './source-pool.js';

/** Options of `connector` and `createConnection`: the sources (or a pool) and socket settings. */
export interface ConnectorOptions extends Partial<SourcePoolOptions> {
  /** A pool shared with other connectors or `connect` calls. */
  pool?: SourcePool;
  /** `connector` only: ms before a connection (and its TLS handshake) that has not completed fails with ConnectTimeoutError; 0 disables. Default 10,000, as undici's. */
  timeout?: number;
  /** `connector` only: TCP keep-alive, default true with a 60 s initial delay, as undici's. */
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
  /** Extra options for tls.connect when the protocol is https. */
  tls?: tls.ConnectionOptions;
}

/** What undici passes to its `connect` function. */
export interface ConnectorRequest {
  hostname: string;
  host?: string;
  protocol: string;
  port: string | number;
  servername?: string | null;
  localAddress?: string | null;
  socketPath?: string | null;
  httpSocket?: net.Socket;
}

/** undici's connect callback: `(null, socket)` or `(error, null)`. */
export type ConnectorCallback = (...args: [null, net.Socket] | [Error, null]) => void;

/** A function usable as undici's `connect` option (`new Agent({ connect })`). */
export type Connector = (options: ConnectorRequest, callback: ConnectorCallback) => net.Socket | undefined;

/** What `createConnection` returns: a replacement for `http.Agent#createConnection`. */
export type CreateConnection = (options: ClientRequestArgs & { servername?: string }) => net.Socket;

/**
 * An undici connector whose connections come from `options.sources`:
 * `new undici.Agent({ connect: connector({ sources: '127.0.0.2-127.0.0.4' }) })`.
 */
export function connector(options: ConnectorOptions): Connector {
  const pool = poolOf(options);
  const timeout = options.timeout ?? 10_000;
  if (typeof timeout !== 'number' || !(timeout >= 0)) throw new InvalidArgumentError(`timeout ${String(timeout)}: expected milliseconds >= 0`);
  const keepAlive = options.keepAlive ?? true;
  const keepAliveDelay = options.keepAliveInitialDelay ?? 60_000;
  return (req, callback) => {
    if (req.localAddress != null || req.socketPath != null) {
      callback(new InvalidArgumentError('localAddress/socketPath: the fourtuple connector chooses the source from its sources'), null);
      return undefined;
    }
    const https = req.protocol === 'https:';
    const port = Number(req.port) || (https ? 443 : 80);
    const destination = formatEndpoint(req.hostname, port);
    let socket: net.Socket;
    try {
      if (https) {
        const raw = req.httpSocket ?? openWith(pool, { host: req.hostname, port });
        socket = wrapTls(raw, req.hostname, req.servername ?? undefined, options.tls);
      } else {
        socket = openWith(pool, { host: req.hostname, port, highWaterMark: 64 * 1024 });
      }
    } catch (err) {
      callback(err as Error, null);
      return undefined;
    }
    if (keepAlive) socket.setKeepAlive(true, keepAliveDelay);
    socket.setNoDelay(true);
    let pending: ConnectorCallback | undefined = callback;
    const timer = timeout > 0 ? setTimeout(() => socket.destroy(new ConnectTimeoutError(destination, timeout)), timeout) : undefined;
    timer?.unref();
    socket
      .once(https ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        const cb = pending;
        pending = undefined;
        cb?.(null, socket);
      })
      .on('error', (err: Error) => {
        clearTimeout(timer);
        const cb = pending;
        pending = undefined;
        cb?.(err, null);
      });
    return socket;
  };
}

/**
 * A `createConnection` for Node's http.Agent whose connections come from
 * `options.sources`: `agent.createConnection = createConnection({ sources })`.
 */
export function createConnection(options: ConnectorOptions): CreateConnection {
  const pool = poolOf(options);
  return (req) => {
    const host = req.host ?? req.hostname ?? 'localhost';
    const https = req.protocol === 'https:';
    const port = Number(req.port) || (https ? 443 : 80);
    const raw = openWith(pool, { host, port, timeout: req.timeout, family: req.family, lookup: req.lookup });
    return https ? wrapTls(raw, host, req.servername, options.tls) : raw;
  };
}

function wrapTls(raw: net.Socket, host: string, servername: string | undefined, extra: tls.ConnectionOptions | undefined): tls.TLSSocket {
  const name = servername ?? (net.isIP(host) === 0 ? host : undefined);
  const socket = tls.connect({ ALPNProtocols: ['http/1.1'], ...extra, socket: raw, servername: name });
  // An error of the TCP socket before the handshake (e.g. PoolExhaustedError) must reach the TLS socket's listeners.
  raw.once('error', (err) => socket.destroy(err));
  return socket;
}
