/**
 * Runs inside `unshare -n` (see netns.ts), with a 100-port range: the
 * failure tracer against plain Node clients (net, not fourtuple's engine).
 *
 *  1. The exporter starts (as root, or as nobody when asked).
 *  2. A client opens 150 connections to 127.0.0.1:7000 and keeps them: 100
 *     connect, 50 fail with EADDRNOTAVAIL. The exporter is scraped and
 *     `ports --json` run (as root and as nobody).
 *  3. The same client in a nested namespace (its own failures are not
 *     ours), then the connections are reset and 150 more opened: the
 *     counter keeps counting.
 *  4. A client that binds (127.0.0.2, 0) before each connect (net's
 *     localAddress): its bind() failures, EADDRINUSE.
 *  5. The same client over IPv6, toward [::1]:7000.
 *  6. More refused connects, each to its own port, than the map has keys.
 *  7. The exporter stops: its map (and so its programs) must be gone.
 */
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { liveFailures } from '../../dist/kernel/failure-tracer.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

export interface FailuresScenarioArgs {
  /** Run the exporter as nobody. */
  readonly exporterAsNobody: boolean;
  /** Ports of the overflow step, one refused connect each: more than the map's keys. */
  readonly refusedPorts: number;
}

/** What a client saw. */
export interface ClientResult {
  connected: number;
  /** Its failures by errno and syscall: `EADDRNOTAVAIL connect`. */
  failed: Record<string, number>;
}

export interface FailuresScenarioResult {
  exporterBanner: string;
  first: ClientResult;
  scrape1: string;
  portsJson: string;
  portsText: string;
  portsJsonNobody: { status: number | null; stdout: string; stderr: string };
  nested: ClientResult;
  second: ClientResult;
  scrape2: string;
  /** The last line `ports --watch --json` printed. */
  watchLast: string;
  bind: ClientResult;
  scrape3: string;
  /** The client toward [::1]:7000, and the scrape after it. */
  v6: ClientResult;
  scrapeV6: string;
  /** Connects refused, each to its own port (refusedPorts of them). */
  refused: number;
  scrape4: string;
  exporterStatus: number | null;
  afterStop: string;
}

const sockets: net.Socket[] = [];

/** Opens `n` connections one after another and keeps them; counts failures by errno and syscall. */
async function client(n: number, localAddress?: string, host = '127.0.0.1'): Promise<ClientResult> {
  const out: ClientResult = { connected: 0, failed: {} };
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve) => {
      const s = net.connect({ host, port: 7000, ...(localAddress ? { localAddress } : {}) });
      s.on('connect', () => {
        out.connected++;
        sockets.push(s);
        resolve();
      });
      s.on('error', (e: NodeJS.ErrnoException) => {
        const k = `${e.code} ${e.syscall}`;
        out.failed[k] = (out.failed[k] ?? 0) + 1;
        resolve();
      });
    });
  }
  return out;
}

function resetAll(): void {
  for (const s of sockets.splice(0)) s.resetAndDestroy();
}

function cli(args: string[], prefix: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const cmd = [...prefix, process.execPath, CLI, ...args];
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function scrape(url: string): Promise<string> {
  return (await fetch(url)).text();
}

async function main(args: FailuresScenarioArgs): Promise<FailuresScenarioResult> {
  spawnSync('ip', ['link', 'set', 'lo', 'up']);
  writeFileSync('/proc/sys/net/ipv4/ip_local_port_range', '40000 40099');
  const server = net.createServer((s) => s.on('error', () => undefined)).listen(7000, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));

  // The exporter on a port outside the range (a listener inside it would take one of the pool's ports).
  const exporterCmd = [...(args.exporterAsNobody ? AS_NOBODY : []), process.execPath, CLI, 'ports', '--prometheus', '127.0.0.1:9464', '--bind-failures', '--duration', '60'];
  const exporter = spawn(exporterCmd[0], exporterCmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  exporter.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  exporter.stderr.on('data', (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((r) => exporter.on('exit', (code) => r(code)));
  const started = Date.now();
  while (!stdout.includes('\n')) {
    if (Date.now() - started > 20_000) throw new Error(`the exporter did not start: ${stdout}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const url = 'http://127.0.0.1:9464/metrics';

  const first = await client(150);
  const scrape1 = await scrape(url);
  const portsJson = cli(['ports', '--json']).stdout;
  const portsText = cli(['ports']).stdout;
  const portsJsonNobody = cli(['ports', '--json'], AS_NOBODY);

  // A nested namespace's failures are another namespace's.
  const nestedRun = spawnSync('unshare', ['-n', process.execPath, SELF, 'client'], { encoding: 'utf8', timeout: 30_000 });
  const nested = JSON.parse(nestedRun.stdout) as ClientResult;

  resetAll();
  // A watch view with a tracer of its own, beside the exporter's, through the second client.
  const watchCmd = [process.execPath, CLI, 'ports', '--watch', '0.3', '--json', '--duration', '3'];
  const watch = spawn(watchCmd[0], watchCmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let watchOut = '';
  watch.stdout.on('data', (d: Buffer) => (watchOut += d.toString()));
  const watchDone = new Promise((r) => watch.on('exit', r));
  while (!watchOut.includes('\n')) await new Promise((r) => setTimeout(r, 20));
  const second = await client(150);
  const scrape2 = await scrape(url);
  await watchDone;
  resetAll();
  const bind = await client(150, '127.0.0.2');
  const scrape3 = await scrape(url);
  resetAll();
  // IPv6: its own pool toward [::1]:7000.
  const server6 = net.createServer((s) => s.on('error', () => undefined)).listen(7000, '::1');
  await new Promise((r) => server6.once('listening', r));
  const v6 = await client(150, undefined, '::1');
  const scrapeV6 = await scrape(url);
  resetAll();
  server6.close();
  // More distinct keys than the map holds: refused connects to REFUSED_PORTS ports nobody listens on.
  let refused = 0;
  for (let port = 20000; port < 20000 + args.refusedPorts; port++) {
    await new Promise<void>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.on('connect', () => {
        s.destroy();
        resolve();
      });
      s.on('error', () => {
        refused++;
        resolve();
      });
    });
  }
  const scrape4 = await scrape(url);

  exporter.kill('SIGTERM');
  const exporterStatus = await exited;
  // The kernel frees a map after an RCU grace period once the last program using it is gone: wait for it, 5 s at most.
  let live = liveFailures();
  for (const t0 = Date.now(); 'snapshot' in live && Date.now() - t0 < 5000; live = liveFailures()) await new Promise((r) => setTimeout(r, 50));
  server.close();
  return {
    exporterBanner: stdout.split('\n')[0],
    first,
    scrape1,
    portsJson,
    portsText,
    portsJsonNobody,
    nested,
    second,
    scrape2,
    watchLast: watchOut.trim().split('\n').at(-1) ?? '',
    bind,
    scrape3,
    v6,
    scrapeV6,
    refused,
    scrape4,
    exporterStatus,
    afterStop: 'reason' in live ? live.reason : `a tracer still runs: ${JSON.stringify(live.snapshot)}`,
  };
}

if (process.argv[2] === 'client') {
  // In the nested namespace: the same 100-port range, a listener, 150 connects.
  spawnSync('ip', ['link', 'set', 'lo', 'up']);
  writeFileSync('/proc/sys/net/ipv4/ip_local_port_range', '40000 40099');
  const server = net.createServer((s) => s.on('error', () => undefined)).listen(7000, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const r = await client(150);
  resetAll();
  server.close();
  process.stdout.write(JSON.stringify(r));
} else {
  const result = await main(JSON.parse(process.argv[2]) as FailuresScenarioArgs);
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}
