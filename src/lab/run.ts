/**
 * `lab run`: a sink in the server namespace, one `load` per client
 * namespace, the gateway's conntrack table sampled meanwhile; then the
 * results merged and the constraint that stopped the run named.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mergeReports, type MergedReport, type ShardReport } from '../report/merge.js';
import { LabError } from '../errors.js';
import { natCeiling, NAT_POOL } from '../model/nat.js';
import { ConntrackPeaks, conntrackByDestination, type ConntrackDestination } from './conntrack.js';
import { GATEWAY_NS, SERVER_NS } from './plan.js';
import { labStatus, type LabStatus } from './topology.js';

/** What the CLI decided to run. */
export interface LabRunPlan {
  readonly node: string;
  /** Path of dist/cli/main.js. */
  readonly cli: string;
  /** `sink --listen` values. */
  readonly listen: readonly string[];
  /** Extra `sink` arguments (--max, --backlog). */
  readonly sinkArgs: readonly string[];
  /** Listening sockets those values make. */
  readonly listenSockets: number;
  readonly sinkDurationS: number;
  /** Full `load` argv for one client, given its addresses. */
  /** A client's command line: its addresses, and its shard of the run (the target is split among the clients). */
  readonly clientArgs: (addresses: readonly string[], shard: { readonly index: number; readonly count: number; readonly runId: string; readonly startAt: string }) => string[];
  /** Distinct (address, port) destinations. */
  readonly destinations: number;
  /** --connections, per client. */
  readonly target: number;
}

/** The part of `load --json` the lab uses. */
export interface ClientReport extends Partial<ShardReport> {
  readonly held: number;
  readonly predicted: number | null;
  readonly ceiling: { connections: number | null; binding: string | null };
  readonly stoppedBy: string;
  readonly limit: { id: string | null; errno: string; count: number } | null;
  readonly errors: Record<string, number>;
  readonly cleanup: { left: number; timeWait: number };
}

/** One client namespace's outcome. */
export interface ClientOutcome {
  readonly namespace: string;
  readonly addresses: readonly string[];
  readonly report: ClientReport | null;
  readonly failure: string | null;
}

/** Which constraint stopped the run, and the evidence. */
export interface Verdict {
  readonly id: string | null;
  readonly where: 'clients' | 'gateway' | 'server' | null;
  readonly words: string;
}

/** How long the clients have to start before they ramp together (--start-at). */
const CLIENT_START_MS = 2000;

/** A lab run. */
export interface LabRunResult {
  readonly held: number;
  /** Most connections the server's sink had accepted and held at once. */
  readonly serverPeak: number | null;
  /**
   * Most connections established at the server at once, by the kernel's
   * count in its namespace (accepted or waiting in an accept queue): the
   * figure to set against the clients' held; sampled every 200 ms, so a
   * peak shorter than that may be missed.
   */
  readonly serverEstablished: number | null;
  /** The clients' run as `fourtuple merge` puts it together (null when a client did not report). */
  readonly run: { readonly id: string; readonly shards: number; readonly latency: MergedReport['latency'] } | null;
  readonly predicted: number | null;
  readonly target: number;
  readonly model: { readonly clients: number | null; readonly natPool: number | null };
  readonly stoppedBy: Verdict;
  readonly errors: Record<string, number>;
  readonly nat: {
    addresses: string[];
    ports: { lo: number; hi: number };
    perDestination: number;
    ceiling: number;
    /** The gateway's pool use per destination at its peak, from its conntrack table: NATed entries against perDestination. */
    use: readonly (ConntrackDestination & { readonly percent: number })[];
  } | null;
  readonly conntrack: { peak: number | null; max: number | null };
  readonly clients: readonly ClientOutcome[];
  readonly listen: readonly string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `p`, or `fallback` after `ms`; the timer is cleared either way, so it never keeps the process alive. */
function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function collect(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    child.on('error', (err) => resolve({ code: null, stdout, stderr: stderr + err.message }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function listeningCount(): number {
  const r = spawnSync('ip', ['netns', 'exec', SERVER_NS, 'ss', '-Hltn'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n').filter((l) => l.trim()).length : 0;
}

/** A destination's NAT pool this full, with timeouts, is what stopped the run. */
const NEARLY_FULL = 0.9;

/** Names the constraint that stopped the run. Pure. */
export function verdict(input: {
  held: number;
  targetTotal: number;
  natCeiling: number | null;
  conntrack: { peak: number | null; max: number | null };
  errors: Record<string, number>;
  clientLimitIds: readonly (string | null)[];
  /** The gateway's pool use at its peak, the fullest destination first. */
  natUse?: readonly { destination: string; natted: number }[];
  /** (public address, port) pairs per destination. */
  natPerDestination?: number;
  /** Most connections the server's sink held (accepted) at once. */
  serverPeak?: number | null;
  /** Most connections established at the server at once (accepted or queued), by the kernel's count. */
  serverEstablished?: number | null;
}): Verdict {
  const { held, errors } = input;
  const n = (k: string): number => errors[k] ?? 0;
  const timeouts = n('ETIMEDOUT') + n('ECONNREFUSED') + n('ECONNRESET');
  if (input.conntrack.peak !== null && input.conntrack.max !== null && input.conntrack.peak >= input.conntrack.max) {
    return { id: 'conntrack', where: 'gateway', words: `the gateway's conntrack table is full (${input.conntrack.peak} of nf_conntrack_max ${input.conntrack.max}): new SYNs are dropped` };
  }
  if (input.natCeiling !== null && held >= input.natCeiling) {
    const words = `the gateway's NAT pool is exhausted (${Math.min(held, input.natCeiling)} of ${input.natCeiling}): it drops the SYNs it cannot map, the clients see ${timeouts ? `ETIMEDOUT (${n('ETIMEDOUT')})` : 'timeouts'}`;
    // More than the pool can map at once: seen with hundreds of SYNs retrying against a full pool.
    const over =
      held > input.natCeiling
        ? `; the clients count ${held}, more than the ${input.natCeiling} the pool maps at once: the gateway gave the (address, port) of live connections to new ones, and the server reset the old ones without their clients knowing (fewer connects in flight, --concurrency, avoids it)`
        : '';
    return { id: NAT_POOL, where: 'gateway', words: words + over };
  }
  // A pool nearly full when the time bound came: near the end the gateway's search for a free
  // port is bounded and random, and the last ports fill only as the clients retry their SYNs.
  const fullest = input.natUse?.[0];
  const per = input.natPerDestination ?? 0;
  if (fullest && per > 0 && fullest.natted >= NEARLY_FULL * per && timeouts > 0 && held < input.targetTotal) {
    const pct = Math.round((100 * fullest.natted) / per);
    return {
      id: NAT_POOL,
      where: 'gateway',
      words: `the gateway's NAT pool toward ${fullest.destination} was ${pct}% used (${fullest.natted} of ${per}) when the run ended: it drops the SYNs it cannot map (ETIMEDOUT ${n('ETIMEDOUT')}), and the last free ports are found only as the clients retry; a longer --duration gets closer to ${per}`,
    };
  }
  // A target met is the verdict, whatever failed on the way (a few EADDRNOTAVAIL a retry got past).
  if (held >= input.targetTotal) return { id: null, where: null, words: 'every client reached its target' };
  if (n('EADDRNOTAVAIL') + n('EADDRINUSE') > 0) {
    const id = input.clientLimitIds.find((x) => x !== null && x !== 'backlog') ?? 'ephemeral-ports';
    return { id, where: 'clients', words: `the clients ran out of source ports (EADDRNOTAVAIL ${n('EADDRNOTAVAIL')}, EADDRINUSE ${n('EADDRINUSE')})` };
  }
  if (timeouts > 0) {
    // Both figures from the server's side, so a sink slower to accept than the clients to connect is not taken for a full queue.
    const accepted = input.serverPeak ?? null;
    const established = input.serverEstablished ?? null;
    const queued = accepted !== null && established !== null && established > accepted ? `; the server accepted ${accepted}, the other ${established - accepted} established there sat in its accept queue` : '';
    return { id: 'backlog', where: 'server', words: `connects to the server timed out or were refused (ETIMEDOUT ${n('ETIMEDOUT')}, ECONNREFUSED ${n('ECONNREFUSED')}, ECONNRESET ${n('ECONNRESET')})${queued}` };
  }
  const id = input.clientLimitIds.find((x) => x !== null) ?? null;
  return { id, where: id ? 'clients' : null, words: id ? `the clients stopped on ${id}` : 'the time bound ended the run' };
}

/** The largest number a sampling loop (one number per line on stdout) printed so far. */
function peakOf(child: ChildProcess): { child: ChildProcess; peak: () => number | null } {
  let peak: number | null = null;
  child.stdout?.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n')) {
      const v = Number(line.trim());
      if (line.trim() && Number.isFinite(v)) peak = Math.max(peak ?? 0, v);
    }
  });
  return { child, peak: () => peak };
}

/** How often the gateway's whole conntrack table is read for the per-destination pool use. */
const TABLE_SAMPLE_MS = 500;

/** Reads the gateway's conntrack table every TABLE_SAMPLE_MS until stopped; keeps each destination's peak. */
function sampleTable(): { stop: () => Promise<ConntrackDestination[]> } {
  const peaks = new ConntrackPeaks();
  let running = true;
  const loop = (async (): Promise<void> => {
    while (running) {
      const child = spawn('ip', ['netns', 'exec', GATEWAY_NS, 'cat', '/proc/net/nf_conntrack'], { stdio: ['ignore', 'pipe', 'ignore'] });
      const r = await collect(child);
      if (r.code === 0) peaks.add(conntrackByDestination(r.stdout));
      if (running) await sleep(TABLE_SAMPLE_MS);
    }
  })();
  return {
    stop: async (): Promise<ConntrackDestination[]> => {
      running = false;
      await loop;
      return peaks.peaks;
    },
  };
}

/** Runs the sink and the clients, samples conntrack, merges the results. */
export async function labRun(plan: LabRunPlan, signal?: AbortSignal): Promise<LabRunResult> {
  const status: LabStatus = labStatus();
  if (status.incomplete) throw new LabError("the lab is incomplete (a 'lab up' was interrupted half way): run 'fourtuple lab down', then 'fourtuple lab up'", 'FT_LAB_DOWN');
  if (!status.up || !status.server || !status.gateway) throw new LabError("no lab is up: run 'fourtuple lab up' first", 'FT_LAB_DOWN');
  const children: ChildProcess[] = [];
  const start = (args: string[]): ChildProcess => {
    const c = spawn('ip', ['netns', 'exec', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(c);
    return c;
  };
  try {
    const sink = start([SERVER_NS, plan.node, plan.cli, 'sink', '--json', '--duration', String(plan.sinkDurationS), ...plan.sinkArgs, ...plan.listen.flatMap((l) => ['--listen', l])]);
    const sinkDone = collect(sink);
    const deadline = Date.now() + 15_000;
    while (listeningCount() < plan.listenSockets) {
      if (Date.now() > deadline || sink.exitCode !== null) {
        const s = await within(sinkDone, 500, { code: null, stdout: '', stderr: '' });
        throw new LabError(`the sink in ${SERVER_NS} did not start listening: ${s.stderr.trim()}`, 'FT_LAB_SINK');
      }
      await sleep(100);
    }
    const conntrackPeak = peakOf(start([GATEWAY_NS, 'sh', '-c', 'while :; do cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null; sleep 0.2; done']));
    // The server's end by the kernel's count: CurrEstab of its namespace (accepted or still queued), at a constant cost whatever it holds.
    const serverPeak = peakOf(start([SERVER_NS, 'sh', '-c', "while :; do awk '/^Tcp: [0-9]/ {print $10}' /proc/net/snmp 2>/dev/null; sleep 0.2; done"]));
    const stopSampling = (): void => {
      for (const p of [conntrackPeak, serverPeak]) p.child.kill('SIGTERM');
    };
    const table = status.gateway.nat ? sampleTable() : null;
    const loads: ChildProcess[] = [];
    // A signal to 'lab run' ends the clients' runs (they close and report, as on Ctrl-C) and stops the sampling.
    const onAbort = (): void => {
      for (const l of loads) if (l.exitCode === null && l.signalCode === null) l.kill('SIGTERM');
      stopSampling();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    // The clients are the shards of one run, as on Kubernetes: one id, one start time, the target split among them.
    const runId = `lab-${Date.now().toString(36)}`;
    const startAt = new Date(Date.now() + CLIENT_START_MS).toISOString();
    const outcomes = await Promise.all(
      status.clients.map(async (c, index): Promise<ClientOutcome> => {
        const child = start([c.namespace, plan.node, plan.cli, ...plan.clientArgs(c.addresses, { index, count: status.clients.length, runId, startAt })]);
        loads.push(child);
        if (signal?.aborted) child.kill('SIGTERM');
        const r = await collect(child);
        // A report comes with exit 0, 1 (no connection ever succeeded) or 130/143 (interrupted): read it whatever the code.
        try {
          const report = JSON.parse(r.stdout) as ClientReport;
          if (typeof report.held === 'number') return { namespace: c.namespace, addresses: c.addresses, report, failure: null };
        } catch {
          // no report: a failure
        }
        return { namespace: c.namespace, addresses: c.addresses, report: null, failure: r.stderr.trim() || (r.stdout ? `unreadable output: ${r.stdout.slice(0, 200)}` : `exit ${r.code}`) };
      }),
    );
    signal?.removeEventListener('abort', onAbort);
    stopSampling();
    const tablePeaks = table ? await table.stop() : [];
    sink.kill('SIGTERM');
    const s = await within<Awaited<typeof sinkDone> | null>(sinkDone, 10_000, null);
    let accepted: number | null = null;
    try {
      accepted = s ? (JSON.parse(s.stdout) as { peak: number }).peak : null;
    } catch {
      accepted = null;
    }
    const maxText = spawnSync('ip', ['netns', 'exec', GATEWAY_NS, 'cat', '/proc/sys/net/netfilter/nf_conntrack_max'], { encoding: 'utf8' });
    const conntrack = { peak: conntrackPeak.peak(), max: maxText.status === 0 ? Number(maxText.stdout.trim()) : null };
    const established = serverPeak.peak();
    const reports = outcomes.map((o) => o.report).filter((r): r is ClientReport => r !== null);
    // Every shard reported: the run's figures are their merge (exact percentiles); else the sum of those that did.
    const merged = reports.length === outcomes.length ? mergeReports(outcomes.map((o) => ({ file: o.namespace, doc: o.report as ShardReport }))) : null;
    const held = merged ? merged.held : reports.reduce((a, r) => a + r.held, 0);
    const errors: Record<string, number> = merged ? { ...merged.errors } : {};
    if (!merged) for (const r of reports) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
    const g = status.gateway.nat;
    const perDestination = g ? g.addresses.length * (g.ports.hi - g.ports.lo + 1) : 0;
    const nat = g
      ? {
          addresses: g.addresses,
          ports: g.ports,
          perDestination,
          ceiling: natCeiling({ addresses: g.addresses.length, portsPerAddress: g.ports.hi - g.ports.lo + 1, source: 'lab' }, plan.destinations),
          use: tablePeaks.filter((d) => d.natted > 0).map((d) => ({ ...d, percent: Math.round((1000 * d.natted) / perDestination) / 10 })),
        }
      : null;
    const clientModel = reports.length === outcomes.length && reports.every((r) => r.ceiling.connections !== null) ? reports.reduce((a, r) => a + (r.ceiling.connections as number), 0) : null;
    const targetTotal = plan.target;
    const candidates = [targetTotal, clientModel, nat?.ceiling ?? null].filter((x): x is number => x !== null);
    const failed = outcomes.filter((o) => o.failure);
    if (failed.length === outcomes.length) throw new LabError(`every client failed: ${failed.map((f) => `${f.namespace}: ${f.failure}`).join('; ')}`, 'FT_LAB_CLIENT');
    return {
      held,
      serverPeak: accepted,
      serverEstablished: established,
      run: merged ? { id: merged.run.id, shards: merged.run.shards, latency: merged.latency } : null,
      predicted: Math.min(...candidates),
      target: targetTotal,
      model: { clients: clientModel, natPool: nat?.ceiling ?? null },
      stoppedBy: verdict({ held, targetTotal, natCeiling: nat?.ceiling ?? null, conntrack, errors, clientLimitIds: reports.map((r) => r.limit?.id ?? null), natUse: nat?.use, natPerDestination: nat?.perDestination, serverPeak: accepted, serverEstablished: established }),
      errors,
      nat,
      conntrack,
      clients: outcomes,
      listen: plan.listen,
    };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}
