/**
 * Runs inside `unshare -n` (see netns.ts), with a 100-port range: two plain
 * Node clients, each moved into its own child cgroup of the cgroup v2 tree
 * before it opens a socket, hold connections to 127.0.0.1:7000 (client A
 * 30, of which it closes 5 first, so they sit in TIME_WAIT; client B 20).
 * Then `ports --by cgroup --json`, `ports --pids --json`, the text report
 * and the exporter with --by cgroup, as root and as nobody. Both cgroups
 * are removed at the end; the namespace dies with this process.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

export interface OwnersScenarioArgs {
  /** The cgroup v2 mount, e.g. /sys/fs/cgroup/unified. */
  readonly cgroupRoot: string;
}

export interface OwnersScenarioResult {
  /** The two cgroups' paths from the v2 root, and the clients' pids. */
  readonly a: { path: string; pid: number };
  readonly b: { path: string; pid: number };
  readonly byCgroup: string;
  readonly pids: string;
  readonly text: string;
  readonly nobody: { status: number | null; stdout: string; stderr: string };
  readonly scrape: string;
}

function cli(args: string[], prefix: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const cmd = [...prefix, process.execPath, CLI, ...args];
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts a client in `cgroupDir` (it moves itself there before any socket) and waits for its "ready". */
async function startClient(cgroupDir: string, count: number, finFirst: number): Promise<ChildProcess> {
  const child = spawn('sh', ['-c', `echo $$ > '${cgroupDir}/cgroup.procs' && exec '${process.execPath}' '${SELF}' client ${count} ${finFirst}`], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const started = Date.now();
  while (!out.includes('ready')) {
    if (Date.now() - started > 20_000 || child.exitCode !== null) throw new Error(`client in ${cgroupDir} did not get ready: ${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return child;
}

async function main(args: OwnersScenarioArgs): Promise<OwnersScenarioResult> {
  spawnSync('ip', ['link', 'set', 'lo', 'up']);
  writeFileSync('/proc/sys/net/ipv4/ip_local_port_range', '40000 40099');
  const server = net.createServer((s) => s.on('error', () => undefined)).listen(7000, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const base = `fourtuple-test-${process.pid}`;
  const dirs = [`${args.cgroupRoot}/${base}`, `${args.cgroupRoot}/${base}/a`, `${args.cgroupRoot}/${base}/b`];
  for (const d of dirs) mkdirSync(d);
  const children: ChildProcess[] = [];
  try {
    const a = await startClient(dirs[1], 30, 5);
    children.push(a);
    const b = await startClient(dirs[2], 20, 0);
    children.push(b);
    const byCgroup = cli(['ports', '--by', 'cgroup', '--json']).stdout;
    const pids = cli(['ports', '--pids', '--json']).stdout;
    const text = cli(['ports', '--pids']).stdout;
    const nobody = cli(['ports', '--by', 'cgroup', '--json'], AS_NOBODY);
    const exporter = spawn(process.execPath, [CLI, 'ports', '--prometheus', '127.0.0.1:9464', '--by', 'cgroup', '--duration', '30'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let banner = '';
    exporter.stdout.on('data', (d: Buffer) => (banner += d.toString()));
    while (!banner.includes('\n')) await new Promise((r) => setTimeout(r, 20));
    const scrape = await (await fetch('http://127.0.0.1:9464/metrics')).text();
    exporter.kill('SIGTERM');
    await new Promise((r) => exporter.on('exit', r));
    return { a: { path: `/${base}/a`, pid: a.pid ?? 0 }, b: { path: `/${base}/b`, pid: b.pid ?? 0 }, byCgroup, pids, text, nobody, scrape };
  } finally {
    for (const c of children) {
      c.kill('SIGKILL');
      await new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.on('exit', r)));
    }
    server.close();
    // Deepest first; a cgroup goes once its processes have exited.
    for (const d of [...dirs].reverse()) {
      for (let i = 0; i < 100; i++) {
        try {
          rmdirSync(d);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  }
}

if (process.argv[2] === 'client') {
  // Opens N connections to 127.0.0.1:7000, closes the first F itself (FIN first: TIME_WAIT here), says ready, holds.
  const [n, fin] = [Number(process.argv[3]), Number(process.argv[4])];
  const sockets: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    sockets.push(await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: 7000 }, () => resolve(s));
      s.on('error', reject);
    }));
  }
  for (const s of sockets.slice(0, fin)) s.end();
  // Wait until the FIN-closed ones are gone from this process (closed both ways).
  await Promise.all(sockets.slice(0, fin).map((s) => new Promise((r) => (s.closed ? r(null) : s.on('close', r)))));
  process.stdout.write('ready\n');
  setInterval(() => undefined, 1 << 30);
} else {
  const result = await main(JSON.parse(process.argv[2]) as OwnersScenarioArgs);
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}
