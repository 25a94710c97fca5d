/**
 * Runs inside `unshare -n` (see netns.ts). Builds a known socket population
 * on loopback (listeners, connections held open, some closed client-first
 * with FIN so they sit in TIME_WAIT), then aggregates the namespace's table
 * in process and runs the real `fourtuple ports` binary against it, in the
 * foreground and in the background (watch, exporter). The namespace dies
 * with this process, and everything still open is reset first.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { scanProcNetTcp, TCP_STATES } from '../../dist/index.js';
import { scanPorts, type PortScan } from '../../dist/index.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** A CLI run in the foreground. */
export interface CliRun {
  args: string[];
  env?: Record<string, string>;
}

/** A CLI run in the background: its first stdout line may announce a URL to fetch; it may get a signal. */
export interface BackgroundRun {
  args: string[];
  /** Fetch the `http://...` URL of the first stdout line once it appears (the exporter). */
  fetch?: boolean;
  /** Send this signal after `signalAfterMs` (after the fetch when there is one). */
  signal?: NodeJS.Signals;
  signalAfterMs?: number;
}

/** Arguments of a scenario. */
export interface PortsScenarioArgs {
  range: [number, number];
  listen: { address: string; port: number }[];
  /** Connections to open and hold, in order. */
  open: { to: string; port: number; count: number }[];
  /** Of the connections to this port, close `count` client-first with FIN (they stay in TIME_WAIT). */
  finClose?: { port: number; count: number };
  cli?: CliRun[];
  /** Groups run one after the other; the runs of a group run at the same time. */
  background?: BackgroundRun[][];
}

/** A finished CLI run. */
export interface RunOutput {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from the signal (or the start) to the exit. */
  exitMs: number;
  /** Body and status of the fetch, when asked. */
  fetched?: { status: number; contentType: string | null; body: string };
}

/** What the scenario prints. */
export interface PortsScenarioResult {
  scan: PortScan;
  /** Distinct local ports of the client-side sockets, counted from /proc/net/tcp (a second reader). */
  distinctClientPorts: number;
  /** States in the table before the scans, from /proc/net/tcp. */
  states: Record<string, number>;
  cli: RunOutput[];
  /** Flattened in the order given. */
  background: RunOutput[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function connect(to: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: to, port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function tableStates(): Record<string, number> {
  const out: Record<string, number> = {};
  scanProcNetTcp('/', (row) => {
    const name = TCP_STATES[row.state] || String(row.state);
    out[name] = (out[name] ?? 0) + 1;
  });
  return out;
}

function background(run: BackgroundRun): Promise<RunOutput> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...run.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let fetched: RunOutput['fetched'];
    let from = Date.now();
    let started = false;
    const act = async (): Promise<void> => {
      if (run.fetch) {
        const url = /http:\/\/\S+\/metrics/.exec(stdout)?.[0];
        if (url) {
          const res = await fetch(url);
          fetched = { status: res.status, contentType: res.headers.get('content-type'), body: await res.text() };
        }
      }
      if (run.signal) {
        await sleep(run.signalAfterMs ?? 0);
        from = Date.now();
        child.kill(run.signal);
      }
    };
    let acting: Promise<void> = Promise.resolve();
    child.stdout.on('data', (d) => {
      stdout += d;
      if (!started && stdout.includes('\n')) {
        started = true;
        acting = act().catch((err: unknown) => {
          stderr += `scenario: ${String(err)}\n`;
        });
      }
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (status, signal) => {
      const exitMs = Date.now() - from;
      void acting.then(() => resolve({ status, signal, stdout, stderr, exitMs, fetched }));
    });
  });
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2]) as PortsScenarioArgs;
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  writeFileSync('/proc/sys/net/ipv4/ip_local_port_range', `${args.range[0]} ${args.range[1]}`);
  const servers: net.Server[] = [];
  const accepted = new Set<net.Socket>();
  for (const l of args.listen) {
    const srv = net.createServer((c) => {
      accepted.add(c);
      c.on('close', () => accepted.delete(c));
      c.on('error', () => undefined);
    });
    await new Promise<void>((res) => srv.listen(l.port, l.address, res));
    servers.push(srv);
  }
  const held: { port: number; socket: net.Socket }[] = [];
  for (const o of args.open) {
    for (let i = 0; i < o.count; i++) held.push({ port: o.port, socket: await connect(o.to, o.port) });
  }
  // Client-first close with FIN: the client ends in TIME_WAIT, the server side goes away after LAST_ACK.
  let timeWait = 0;
  if (args.finClose) {
    const fc = args.finClose;
    const victims = held.filter((h) => h.port === fc.port).slice(0, fc.count);
    await Promise.all(victims.map((v) => new Promise<void>((res) => v.socket.once('close', () => res()).end())));
    for (const v of victims) held.splice(held.indexOf(v), 1);
    timeWait = fc.count;
  }
  // Wait until the table is settled: only ESTABLISHED, LISTEN and the expected TIME_WAIT.
  let states = tableStates();
  for (let i = 0; i < 200; i++) {
    const others = Object.keys(states).filter((s) => !['ESTABLISHED', 'LISTEN', 'TIME_WAIT'].includes(s));
    if ((states.TIME_WAIT ?? 0) === timeWait && others.length === 0) break;
    await sleep(10);
    states = tableStates();
  }
  const clientPorts = new Set<number>();
  const listenPorts = new Set(args.listen.map((l) => l.port));
  scanProcNetTcp('/', (row) => {
    if (row.state !== 10 && !listenPorts.has(row.localPort)) clientPorts.add(row.localPort);
  });

  const scan = scanPorts();
  const cli: RunOutput[] = [];
  for (const c of args.cli ?? []) {
    const start = Date.now();
    const r = spawnSync(process.execPath, [CLI, ...c.args], { encoding: 'utf8', env: { ...process.env, ...c.env }, timeout: 30_000 });
    cli.push({ status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, exitMs: Date.now() - start });
  }
  // Load fetch's HTTP client now (a refused connection leaves nothing behind), so the first scrape is not late.
  await fetch('http://127.0.0.1:1/').catch(() => undefined);
  const bg: RunOutput[] = [];
  for (const group of args.background ?? []) bg.push(...(await Promise.all(group.map(background))));

  for (const h of held) h.socket.resetAndDestroy();
  for (const s of accepted) s.resetAndDestroy();
  for (const srv of servers) srv.close();
  const result: PortsScenarioResult = { scan, distinctClientPorts: clientPorts.size, states, cli, background: bg };
  process.stdout.write(JSON.stringify(result));
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error).stack ?? err));
  process.exit(1);
});
