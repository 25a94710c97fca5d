/**
 * The HTTP server behind `--prometheus`: GET /metrics answers with the
 * registry's exposition text, anything else with 404. Explicit states and a
 * Set of live sockets; close() resolves when the last one is gone.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Registry } from 'prom-client';

/** Serves one registry. */
export class MetricsServer {
  #state: 'idle' | 'listening' | 'closing' | 'closed' = 'idle';
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #registry: Registry;
  #scrapes = 0;

  constructor(registry: Registry) {
    this.#registry = registry;
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
  }

  /** Scrapes answered so far. */
  get scrapes(): number {
    return this.#scrapes;
  }

  /** Listens; rejects with the listen error (EADDRINUSE, EADDRNOTAVAIL, ...). */
  listen(host: string, port: number): Promise<AddressInfo> {
    if (this.#state !== 'idle') return Promise.reject(new Error(`metrics server is ${this.#state}`));
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host, port, exclusive: true }, () => {
        this.#server.off('error', reject);
        this.#state = 'listening';
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  /** Stops accepting, ends open connections, resolves when all are gone. */
  close(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'idle') {
      this.#state = 'closed';
      return Promise.resolve();
    }
    this.#state = 'closing';
    return new Promise((resolve) => {
      this.#server.close(() => {
        this.#state = 'closed';
        resolve();
      });
      this.#server.closeIdleConnections();
      for (const s of this.#sockets) s.destroy();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('fourtuple ports exporter: see /metrics\n');
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: see /metrics\n');
      return;
    }
    try {
      const body = await this.#registry.metrics();
      this.#scrapes++;
      res.writeHead(200, { 'content-type': this.#registry.contentType });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`scan failed: ${(err as Error).message}\n`);
    }
  }
}
