/**
 * Runs inside `unshare -n` (see netns.ts): a 100-port ephemeral range, three
 * source addresses (127.0.0.2-127.0.0.4) and listeners on 127.0.0.1:7000 and
 * 7001, then one scenario of the library's connect; prints what it observed
 * as JSON. Everything it opens is closed with RST before it prints.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { Agent, request } from 'undici';
import { connect, connector, createConnection, SourcePool, type ConnectOptions } from '../../dist/index.js';

/** Which scenario, and its knobs. */
export interface LibScenarioArgs {
  mode: 'plain' | 'nopo' | 'undici' | 'explicit' | 'explicit-ports';
  range: [number, number];
}

/** One connection attempt's outcome. */
interface Outcome {
  socket?: net.Socket;
  code?: string;
  message?: string;
  ms: number;
}

const SOURCES = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
const HOST = '127.0.0.1';
const PORTS = [7000, 7001];
const held: net.Socket[] = [];
const accepted: net.Socket[] = [];
const servers: net.Server[] = [];

function attempt(open: () => net.Socket): Promise<Outcome> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const s = open();
    s.once('connect', () => {
      held.push(s);
      resolve({ socket: s, ms: performance.now() - t0 });
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve({ code: err.code, message: err.message, ms: performance.now() - t0 }));
  });
}

async function listenTcp(address: string, port: number): Promise<void> {
  const srv = net.createServer((c) => {
    c.on('error', () => {});
    accepted.push(c);
  });
  await new Promise<void>((res) => srv.listen(port, address, res));
  servers.push(srv);
}

function count<T>(items: T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) out[key(i)] = (out[key(i)] ?? 0) + 1;
  return out;
}

/** Open accepted connections, once they reach `expected` or `ms` have passed. */
async function acceptedOnceSettled(expected: number, ms: number): Promise<number> {
  const until = performance.now() + ms;
  const open = (): number => accepted.filter((c) => !c.destroyed).length;
  while (open() < expected && performance.now() < until) await new Promise((res) => setTimeout(res, 10));
  // A moment more, so that accepts beyond the clients' count (a bug) would show too.
  await new Promise((res) => setTimeout(res, 20));
  return open();
}

const closeAll = async (): Promise<void> => {
  for (const s of [...held, ...accepted]) s.resetAndDestroy();
  await Promise.all(servers.map((srv) => new Promise((res) => srv.close(res))));
};

// Plain net.connect with localAddress, round-robin over the sources, each source alternating destinations.
async function plain(): Promise<object> {
  for (const p of PORTS) await listenTcp(HOST, p);
  let opened = 0;
  let error: string | undefined;
  for (let i = 0; i < 1000; i++) {
    const r = await attempt(() => net.connect({ host: HOST, port: PORTS[Math.floor(i / 3) % 2], localAddress: SOURCES[i % 3] }));
    if (!r.socket) {
      error = r.code;
      break;
    }
    opened++;
  }
  const perDestination = count(held, (s) => String(s.remotePort));
  await closeAll();
  return { opened, error, perDestination };
}

async function nopo(): Promise<object> {
  for (const p of PORTS) await listenTcp(HOST, p);
  const options = (port: number): ConnectOptions => ({ host: HOST, port, sources: '127.0.0.2-127.0.0.4' });
  // 600 at once: 300 to each destination, all in flight together.
  const first = await Promise.all([...PORTS.flatMap((p) => Array.from({ length: 300 }, () => attempt(() => connect(options(p)))))]);
  const ok = first.filter((r) => r.socket).map((r) => r.socket as net.Socket);
  const failed = first.filter((r) => !r.socket).map((r) => r.code);
  const perPair = count(ok, (s) => `${s.localAddress}>${s.remotePort}`);
  const extra = await attempt(() => connect(options(7000)));
  const again = await attempt(() => connect(options(7000)));
  // Closing one connection from 127.0.0.3 to 7000 reopens that pool at once.
  const victim = ok.find((s) => s.localAddress === '127.0.0.3' && s.remotePort === 7000) as net.Socket;
  await new Promise((res) => {
    victim.once('close', res);
    victim.resetAndDestroy();
  });
  const reopened = await attempt(() => connect(options(7000)));
  const reopenedSource = reopened.socket?.localAddress;
  const pool = new SourcePool({ sources: SOURCES }); // a fresh pool knows nothing: it must find out from the kernel
  const fresh = await attempt(() => connect({ host: HOST, port: 7001, pool }));
  // The server's accepts run in this same event loop, behind the clients' connects: give it up to 2 s to catch up.
  const acceptedCount = await acceptedOnceSettled(held.filter((s) => !s.destroyed).length, 2000);
  await closeAll();
  await new Promise((res) => setTimeout(res, 50));
  return {
    opened: ok.length,
    failed,
    perPair,
    accepted: acceptedCount,
    extra: { code: extra.code, message: extra.message, ms: extra.ms },
    again: { code: again.code, ms: again.ms },
    reopened: { ok: reopened.socket !== undefined, source: reopenedSource, code: reopened.code },
    fresh: { code: fresh.code, ms: fresh.ms },
  };
}

async function undici(): Promise<object> {
  const PER = 250;
  const waiting: http.ServerResponse[] = [];
  const sockets = new Set<net.Socket>();
  const peers = new Set<string>();
  let release: () => void = () => {};
  const all = new Promise<void>((res) => {
    release = res;
  });
  const fallback = setTimeout(() => release(), 15_000);
  const httpServers: http.Server[] = [];
  for (const p of PORTS) {
    const srv = http.createServer((req, res) => {
      const key = `${req.socket.remoteAddress}:${req.socket.remotePort}>${p}`;
      peers.add(key);
      if (req.url === '/now') {
        res.end(`${req.socket.remoteAddress}`);
        return;
      }
      waiting.push(res);
      if (waiting.length === PER * PORTS.length) release();
    });
    srv.on('connection', (c: net.Socket) => {
      sockets.add(c);
      c.on('error', () => {});
    });
    await new Promise<void>((res) => srv.listen(p, HOST, res));
    httpServers.push(srv);
  }
  // Hold every response until all requests have arrived: that many connections are open at once.
  void all.then(() => {
    for (const res of waiting) res.end('ok');
  });
  const agent = new Agent({ connect: connector({ sources: SOURCES }), pipelining: 1 });
  const results = await Promise.all(
    PORTS.flatMap((p) =>
      Array.from({ length: PER }, async () => {
        try {
          const r = await request(`http://${HOST}:${p}/hold`, { dispatcher: agent });
          return `${r.statusCode} ${await r.body.text()}`;
        } catch (err) {
          return `error ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
        }
      }),
    ),
  );
  clearTimeout(fallback);
  const heldAtOnce = waiting.length;
  const distinctConnections = peers.size;

  // http.Agent with createConnection: a few requests, sources spread.
  const hagent = new http.Agent({ keepAlive: false });
  hagent.createConnection = createConnection({ sources: SOURCES });
  const viaHttp = await Promise.all(
    Array.from(
      { length: 6 },
      () =>
        new Promise<string>((resolve) => {
          http
            .get(`http://${HOST}:7000/now`, { agent: hagent }, (res) => {
              let body = '';
              res.setEncoding('utf8');
              res.on('data', (d: string) => (body += d));
              res.on('end', () => resolve(`${res.statusCode} ${body}`));
            })
            .on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code}`));
        }),
    ),
  );
  hagent.destroy();
  await agent.destroy();
  for (const c of sockets) c.resetAndDestroy();
  await Promise.all(httpServers.map((srv) => new Promise((res) => srv.close(res))));
  return { results: count(results, (r) => r), heldAtOnce, distinctConnections, viaHttp };
}

// Explicit: one source, ports chosen by fourtuple: past the 100-port range, the same ports to both destinations.
async function explicit(range: [number, number]): Promise<object> {
  for (const p of PORTS) await listenTcp(HOST, p);
  const pool = new SourcePool({ sources: '127.0.0.2', strategy: 'explicit' });
  const N = 250;
  const byPort: Record<number, number[]> = {};
  const failed: (string | undefined)[] = [];
  for (const p of PORTS) {
    const rs = await Promise.all(Array.from({ length: N }, () => attempt(() => connect({ host: HOST, port: p, pool }))));
    byPort[p] = rs.filter((r) => r.socket).map((r) => r.socket?.localPort as number);
    failed.push(...rs.filter((r) => !r.socket).map((r) => r.code));
  }
  const inRange = (ps: number[]): number => ps.filter((x) => x >= range[0] && x <= range[1]).length;
  const shared = byPort[7000].filter((x) => new Set(byPort[7001]).has(x)).length;
  const sources = count(held, (s) => s.localAddress as string);
  await closeAll();
  return {
    strategy: pool.strategy,
    opened: { 7000: byPort[7000].length, 7001: byPort[7001].length },
    distinct: { 7000: new Set(byPort[7000]).size, 7001: new Set(byPort[7001]).size },
    inRange: inRange([...byPort[7000], ...byPort[7001]]),
    shared,
    sources,
    failed,
  };
}

// Explicit with its own 50 ports, one of them taken by a listener: 49 per source, then the documented error.
async function explicitPorts(): Promise<object> {
  for (const p of PORTS) await listenTcp(HOST, p);
  await listenTcp('0.0.0.0', 20010);
  const pool = new SourcePool({ sources: SOURCES, strategy: 'explicit', ports: '20000-20049' });
  const rs = await Promise.all(Array.from({ length: 150 }, () => attempt(() => connect({ host: HOST, port: 7000, pool }))));
  const ok = rs.filter((r) => r.socket).map((r) => r.socket as net.Socket);
  const failed = rs.filter((r) => !r.socket);
  const next = await attempt(() => connect({ host: HOST, port: 7000, pool }));
  const ports = ok.map((s) => s.localPort as number);
  await closeAll();
  return {
    opened: ok.length,
    failed: failed.map((r) => r.code),
    usedListenerPort: ports.includes(20010),
    outside: ports.filter((p) => p < 20000 || p > 20049).length,
    next: { code: next.code, message: next.message, ms: next.ms },
  };
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2]) as LibScenarioArgs;
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  writeFileSync('/proc/sys/net/ipv4/ip_local_port_range', `${args.range[0]} ${args.range[1]}`);
  let result: object;
  if (args.mode === 'plain') result = await plain();
  else if (args.mode === 'nopo') result = await nopo();
  else if (args.mode === 'undici') result = await undici();
  else if (args.mode === 'explicit') result = await explicit(args.range);
  else result = await explicitPorts();
  process.stdout.write(JSON.stringify(result));
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error).stack ?? err));
  process.exit(1);
});
