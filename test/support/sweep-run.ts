/**
 * Runs inside `unshare -n` (see sweep.ts): sets up one sweep configuration
 * in this fresh namespace (sysctls, addresses, listeners, TIME_WAIT sockets),
 * then runs `fourtuple limits --json` and `fourtuple probe --json` as the
 * configuration's user, and prints both answers as one JSON object.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { CAP, type SweepConfig } from './sweep-config.js';
import { parseEndpoints } from '../../dist/model/address.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** What one configuration gave. */
export interface SweepOutcome {
  limits: { status: number | null; json: unknown; stderr: string };
  probe: { status: number | null; json: unknown; stderr: string };
  /** load --churn's report (churn configurations only). */
  churn?: { status: number | null; json: unknown; stderr: string; rate: number };
  /** TIME_WAIT sockets present when the run started. */
  timeWait: number;
  target: number;
}

function sysctl(name: string, value: string | number): void {
  writeFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, String(value));
}

/** Runs the CLI as the configuration's user; nobody (65534) with or without CAP_NET_BIND_SERVICE. */
function asUser(who: SweepConfig['who'], args: string[]): string[] {
  const drop = ['--reuid=65534', '--regid=65534', '--clear-groups'];
  const caps = ['--inh-caps=+net_bind_service', '--ambient-caps=+net_bind_service'];
  return who === 'root' ? [process.execPath, CLI, ...args] : ['setpriv', ...drop, ...(who === 'caps' ? caps : []), process.execPath, CLI, ...args];
}

function cli(who: SweepConfig['who'], args: string[], timeoutMs: number): { status: number | null; json: unknown; stderr: string } {
  const argv = asUser(who, args);
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: timeoutMs });
  let json: unknown = null;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = null;
  }
  return { status: r.status, json, stderr: r.stderr.trim().split('\n').slice(-3).join('\n') };
}

/**
 * Connections made the configuration's way and closed by this side first
 * (`load --close fin`), so their 4-tuples stay in TIME_WAIT here.
 */
async function timeWaits(c: SweepConfig, address: string, port: number): Promise<void> {
  const srv = net.createServer((s) => s.on('error', () => {}));
  await new Promise<void>((res) => srv.listen(port, address, res));
  const to = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
  const args = ['load', '--json', '--to', to, '-n', String(c.timeWait), '--close', 'fin', '--parallel', '1', '--strategy', c.strategy, ...(c.sources.length ? ['--from', c.sources[0]] : [])];
  if (!c.reuseAddr) args.push('--reuseaddr', 'no');
  // Not spawnSync: this process's server must answer the FINs, or the client ends in FIN_WAIT2, not TIME_WAIT.
  await new Promise<void>((res) => execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, () => res()));
  await new Promise<void>((res) => srv.close(() => res()));
}

function countTimeWait(): number {
  const out = execFileSync('ss', ['-Htan', 'state', 'time-wait'], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim() !== '').length;
}

/** Every (address, port) of the --to values, parsed as the CLI parses them. */
function allDestinations(to: readonly string[]): { address: string; port: number }[] {
  return to.flatMap((t) => {
    const e = parseEndpoints(t);
    return e.addresses.flatMap((address) => [...e.ports].map((port) => ({ address, port })));
  });
}

/**
 * `load --churn` at the rate that uses `predicted` ports up in 1.5 s, for 3 s,
 * against servers on the destinations that close as soon as the client does
 * (so the TIME_WAIT is the client's), run as the configuration's user.
 */
async function churnRun(c: SweepConfig, common: string[], predicted: number): Promise<NonNullable<SweepOutcome['churn']>> {
  const servers: net.Server[] = [];
  for (const d of allDestinations(c.destinations)) {
    const srv = net.createServer((s) => {
      s.on('end', () => s.end());
      s.on('error', () => {});
      s.resume();
    });
    await new Promise<void>((res, rej) => {
      srv.once('error', rej);
      // A deep backlog: a queue that overflowed under load would drop handshakes the client thinks done, and their ports would come back early.
      srv.listen({ port: d.port, host: d.address, backlog: 4096 }, res);
    });
    servers.push(srv);
  }
  const rate = Math.ceil(predicted / 1.5);
  const argv = asUser(c.who, ['load', '--json', '--churn', String(rate), '--duration', '3', ...common]);
  const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((res) =>
    execFile(argv[0], argv.slice(1), { timeout: 30_000 }, (err, stdout, stderr) => res({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr })),
  );
  for (const s of servers) s.close();
  let json: unknown = null;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = null;
  }
  return { status: r.status, json, stderr: r.stderr.trim().split('\n').slice(-3).join('\n'), rate };
}


async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2]) as SweepConfig;
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  for (const a of c.addresses) execFileSync('ip', ['-6', 'addr', 'add', `${a}/128`, 'dev', 'lo', 'nodad']);
  // The kernel keeps ip_unprivileged_port_start at or below the range's start: the range first, as it only goes up from the default.
  sysctl('net.ipv4.ip_local_port_range', `${c.range[0]} ${c.range[1]}`);
  sysctl('net.ipv4.ip_unprivileged_port_start', c.unprivilegedPortStart);
  sysctl('net.ipv4.ip_local_reserved_ports', c.reserved);
  sysctl('net.ipv4.ip_autobind_reuse', c.autobindReuse);
  sysctl('net.ipv4.tcp_tw_reuse', c.twReuse);
  const servers: net.Server[] = [];
  for (const l of c.listeners) {
    const srv = net.createServer((s) => s.destroy());
    await new Promise<void>((res, rej) => {
      srv.once('error', rej);
      srv.listen(l.port, l.address, res);
    });
    servers.push(srv);
  }
  if (c.timeWait > 0) {
    const d = allDestinations(c.destinations.slice(0, 1))[0];
    // nopo/bind/explicit take the first source: TIME_WAIT from it toward the first destination.
    await timeWaits(c, d.address, d.port);
    // tcp_tw_reuse takes a TIME_WAIT over only once its last timestamp is a second old: wait that out, so the kernel is not left to chance.
    if (c.twReuse > 0) await new Promise((res) => setTimeout(res, 1100));
  }
  const tw = countTimeWait();
  const common = [...c.destinations.flatMap((d) => ['--to', d]), ...c.sources.flatMap((s) => ['--from', s]), '--strategy', c.strategy];
  if (!c.reuseAddr) common.push('--reuseaddr', 'no');
  const limits = cli(c.who, ['limits', '--json', '--sink', 'queue', ...common], 30_000);
  // Always CAP: a model that predicts too little is caught as surely as one that predicts too much.
  const target = CAP;
  const probe = cli(c.who, ['probe', '--json', '-n', String(target), '--duration', '20', ...common], 60_000);
  const predicted = (limits.json as { predicted?: number | null } | null)?.predicted ?? null;
  const churn = c.churn && predicted !== null && predicted > 0 && predicted < CAP ? await churnRun(c, common, predicted) : undefined;
  for (const s of servers) s.close();
  const out: SweepOutcome = { limits, probe, timeWait: tw, target, churn };
  process.stdout.write(JSON.stringify(out));
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error).stack ?? err));
  process.exit(1);
});
