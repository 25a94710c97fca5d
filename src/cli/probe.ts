/** `fourtuple probe` (embedded sink) and `fourtuple load` (an existing server): open, hold, report, clean up. */
import { defaultDuration, Probe, PROBE_DEFAULTS, type ProbeOptions } from '../engine/probe.js';
import { InvalidArgumentError } from '../errors.js';
import { probeJson, renderProbe, renderProgress } from '../report/probe.js';
import { writeFileSync } from 'node:fs';
import { renderHtml } from '../report/html.js';
import { churnRun, renderChurn } from './churn.js';
import { parseShard, parseStartAt, runIdOf, shardItems, shardShare, type Shard } from '../engine/shard.js';
import { PortSet } from '../model/port-set.js';

/** Destinations a sharded run may name, counted before they are split. */
const MAX_SHARD_TARGETS = 1_000_000;
import { checkSources, expandEndpoints, reuseAddrOption, checkWritable, endpointsOption, intOption, numberOption, parseOptions, localSourcesOption, sourcesOption, strategyOption } from './args.js';

/** Usage text; `load` is the same engine without the sink. */
export function probeHelp(command: 'probe' | 'load'): string {
  const what =
    command === 'probe'
      ? `Opens and holds TCP connections against an embedded sink on this host until
the target, the time bound or the first limit, then reports what was held
beside the model's prediction, the limit hit and its errno, and closes
everything (RST by default: no TIME_WAIT left).`
      : `Opens and holds TCP connections to an existing server (--to is required),
with the same engine and report as probe.`;
  return `Usage: fourtuple ${command} [--connections N] [--duration S] [--to ADDR:PORTS ...] [--from ADDRS ...]
       [--strategy auto|bind|nopo|explicit]${command === 'probe' ? ' [--sink queue|accept]' : ''} [--concurrency C] [--rate R] [--hold S] [--close rst|fin] [--json]

${what}

  --connections N   target (default ${PROBE_DEFAULTS.connections.toLocaleString('en-US')}; more than 65,536 makes the point)
  --duration S      time bound of the ramp in seconds (default max(60, N/5000))
  --to ADDR:PORTS   destinations (${command === 'probe' ? 'default: enough loopback ports for the target, chosen from the model' : 'required'})
  --from ADDRS      source addresses: 127.0.0.2, 127.0.0.2-127.0.0.40, 127.0.1.0/28 (implies --strategy nopo)
  --strategy S      auto | bind | nopo | explicit (see 'fourtuple limits --help')
${command === 'probe' ? `  --sink queue|accept  how the embedded sink holds the server's end: queue (listeners that never
                    accept; no descriptor per connection; the default when their accept queues
                    hold the target) or accept (worker processes accept and hold each one)
` : ''}  --concurrency C   connects in flight at once (default ${PROBE_DEFAULTS.concurrency})
  --rate R          connects per second at most (default: no cap)
  --hold S          seconds to hold the peak before closing (default 0)
  --close rst|fin   how to close: rst leaves no TIME_WAIT (default), fin is a normal close
  --parallel P      client processes ramping at once (default ${PROBE_DEFAULTS.parallel})
  --reuseaddr yes|no  with --strategy bind: SO_REUSEADDR before bind(ip, 0) or not (default yes)
${command === 'load' ? `  --churn R         short-lived connections instead: R new ones per second to the time bound, each
                    closed by this side first (FIN: its 4-tuple stays here in TIME_WAIT); says when
                    the first connect failed and why, beside the model's churn ceiling
` : ''}
  --on-worker-death continue|stop   what a dead client process does to the run (default continue)
  --shard I/K       shard I (0..K-1) of a run started K times from the same command line: its share of
                    the target and of the destinations; the report is tagged for 'fourtuple merge'
  --start-at T      wait until T (RFC 3339, or +S seconds) before the ramp, so the shards ramp together
  --run-id ID       the run's id for merge (default: a hash of the command line without --shard)
  --report FILE     also write a self-contained HTML report with charts
  --json            print one JSON object (no progress line); 'fourtuple report' turns it into HTML
`;
}

const OPTIONS = {
  connections: { type: 'string', short: 'n' },
  duration: { type: 'string' },
  to: { type: 'string', multiple: true },
  from: { type: 'string', multiple: true },
  strategy: { type: 'string' },
  concurrency: { type: 'string' },
  rate: { type: 'string' },
  hold: { type: 'string' },
  close: { type: 'string' },
  parallel: { type: 'string' },
  sink: { type: 'string' },
  'on-worker-death': { type: 'string' },
  reuseaddr: { type: 'string' },
  churn: { type: 'string' },
  shard: { type: 'string' },
  'start-at': { type: 'string' },
  'run-id': { type: 'string' },
  'worker-nofile': { type: 'string' },
  json: { type: 'boolean' },
  report: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Parsed options, or help. */
export interface ProbeArgs {
  readonly help: boolean;
  readonly json: boolean;
  /** Where to write the HTML report, checked writable before the run. */
  readonly report?: string;
  /** load --churn R: new connections per second, each closed at once (undefined: hold them, as usual). */
  readonly churn?: number;
  readonly options: ProbeOptions;
}

/** Parses argv without running anything. */
export function parseProbeArgs(command: 'probe' | 'load', argv: string[], where: 'here' | 'elsewhere' = 'here'): ProbeArgs {
  const { values: v } = parseOptions(command, { args: argv, options: OPTIONS });
  const connections = intOption('--connections', v.connections, PROBE_DEFAULTS.connections, 1, 10_000_000);
  // 'elsewhere': validated for another network namespace (lab run), whose addresses this one lacks.
  const from = where === 'here' ? localSourcesOption(v.from) : sourcesOption(v.from);
  const to = endpointsOption(v.to);
  if (command === 'load' && to.length === 0 && !v.help) throw new InvalidArgumentError("'load' needs --to ADDR:PORTS: the server to connect to");
  const close = v.close ?? PROBE_DEFAULTS.close;
  if (close !== 'rst' && close !== 'fin') throw new InvalidArgumentError(`invalid --close '${close}': expected rst or fin`);
  const death = v['on-worker-death'] ?? PROBE_DEFAULTS.onWorkerDeath;
  if (death !== 'continue' && death !== 'stop') throw new InvalidArgumentError(`invalid --on-worker-death '${death}': expected continue or stop`);
  const strategy = strategyOption(v.strategy, from.length ? 'nopo' : PROBE_DEFAULTS.strategy);
  checkSources(strategy, from, to, v.from);
  const reuseAddr = reuseAddrOption(v.reuseaddr, strategy);
  const churn = v.churn === undefined ? undefined : intOption('--churn', v.churn, 0, 1, 1_000_000);
  if (churn !== undefined && command === 'probe') throw new InvalidArgumentError("--churn is for load: probe holds its connections; 'fourtuple load --churn R --to ADDR:PORT' opens and closes them at R per second");
  if (churn !== undefined) {
    // It runs at its own rate to the time bound and closes each connection at once, FIN first.
    const clash = (['report', 'hold', 'connections', 'close', 'rate', 'concurrency', 'parallel'] as const).find((k) => v[k] !== undefined);
    if (clash) throw new InvalidArgumentError(`--churn ${churn} takes no --${clash}: it opens R connections a second to the time bound and closes each at once, FIN first`);
  }
  if (v.report !== undefined) checkWritable(v.report, '--report');
  const sinkMode = v.sink;
  if (sinkMode !== undefined && command === 'load') throw new InvalidArgumentError(`--sink ${sinkMode} is for probe: load connects to an existing server`);
  if (sinkMode !== undefined && sinkMode !== 'queue' && sinkMode !== 'accept') throw new InvalidArgumentError(`invalid --sink '${sinkMode}': expected queue or accept`);
  // One shard of a run: its share of the target and of the destinations (engine/shard.ts), tagged with the run's id.
  let shard: Shard | undefined;
  let shardTo = to;
  let share = connections;
  if (v.shard !== undefined) {
    const { index, count } = parseShard(v.shard);
    const runId = v['run-id'] ?? runIdOf([command, ...argv]);
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(runId)) throw new InvalidArgumentError(`invalid --run-id '${runId}': letters, digits, '.', '_' and '-', at most 64`);
    shard = { index, count, runId };
    share = shardShare(connections, index, count);
    if (share === 0) throw new InvalidArgumentError(`--shard ${v.shard}: a target of ${connections} leaves shard ${index} of ${count} nothing to do`);
    if (to.length) shardTo = shardItems(expandEndpoints(to, MAX_SHARD_TARGETS, '--to'), index, count).map((t) => ({ addresses: [t.address], ports: PortSet.of(t.port) }));
  } else if (v['run-id'] !== undefined) throw new InvalidArgumentError('--run-id goes with --shard I/K');
  const startAt = v['start-at'] === undefined ? undefined : parseStartAt(v['start-at']);
  return {
    help: v.help ?? false,
    json: v.json ?? false,
    report: v.report,
    churn,
    options: {
      command: ['fourtuple', command, ...argv],
      connections: share,
      shard,
      startAt,
      durationS: numberOption('--duration', v.duration, defaultDuration(connections), 0.1, 86_400),
      holdS: numberOption('--hold', v.hold, PROBE_DEFAULTS.holdS, 0, 86_400),
      to: shardTo,
      from,
      strategy,
      reuseAddr,
      concurrency: intOption('--concurrency', v.concurrency, PROBE_DEFAULTS.concurrency, 1, 100_000),
      rate: intOption('--rate', v.rate, PROBE_DEFAULTS.rate, 0, 10_000_000),
      close,
      sink: command === 'probe',
      sinkMode: sinkMode as 'queue' | 'accept' | undefined,
      parallel: intOption('--parallel', v.parallel, PROBE_DEFAULTS.parallel, 1, 64),
      workerNofile: v['worker-nofile'] === undefined ? undefined : intOption('--worker-nofile', v['worker-nofile'], 0, 70),
      onWorkerDeath: death,
      connectTimeoutMs: PROBE_DEFAULTS.connectTimeoutMs,
    },
  };
}

/** Exit codes after a signal: 128 + its number, as a shell reports it. */
const SIGNAL_EXIT: Record<string, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };

/** Runs probe or load; returns the exit code. */
export async function runProbe(command: 'probe' | 'load', argv: string[], out: (s: string) => void): Promise<number> {
  const args = parseProbeArgs(command, argv);
  if (args.help) {
    out(probeHelp(command));
    return 0;
  }
  if (args.churn !== undefined) return churnCommand(args.options, args.churn, args.json, out);
  const probe = new Probe(args.options);
  const tty = process.stderr.isTTY && !args.json;
  if (tty) {
    probe.on('progress', (p) => process.stderr.write(`\r\x1b[K${renderProgress(p, args.options.connections)}`));
  }
  // The first signal ends the run cleanly and still reports; a second one kills every worker and exits now.
  const signals = onSignals(
    (sig) => probe.abort(sig),
    (sig) => {
      probe.kill();
      if (tty) process.stderr.write('\r\x1b[K');
      process.stderr.write(`fourtuple: ${sig} again: killed every worker; the kernel closes their connections with RST\n`);
    },
  );
  try {
    const result = await probe.run();
    if (tty) process.stderr.write('\r\x1b[K');
    const doc = probeJson(result);
    let reportError: string | null = null;
    if (args.report) {
      try {
        writeFileSync(args.report, renderHtml(doc));
      } catch (err) {
        reportError = `cannot write the report to ${args.report}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      }
    }
    out(args.json ? JSON.stringify(doc, null, 2) : renderProbe(result) + (args.report && !reportError ? `\n  report          ${args.report}` : ''));
    if (reportError) process.stderr.write(`fourtuple: ${reportError}\n`);
    const interrupted = result.interrupted ?? signals.first();
    if (interrupted) return SIGNAL_EXIT[interrupted] ?? 130;
    if (result.failure) {
      process.stderr.write(`fourtuple: no connection succeeded: ${result.failure.errno} from ${result.failure.destination} (${result.attempts.toLocaleString('en-US')} attempts; ${result.failure.words})\n`);
      return 1;
    }
    return reportError ? 1 : 0;
  } finally {
    signals.dispose();
  }
}

/**
 * SIGINT, SIGTERM and SIGHUP while a run goes on: the first calls `first`
 * (end the run, still report); another calls `again` and exits at once with
 * the first signal's code.
 */
function onSignals(first: (sig: NodeJS.Signals) => void, again: (sig: NodeJS.Signals) => void = () => {}): { first: () => NodeJS.Signals | null; dispose: () => void } {
  let signalled: NodeJS.Signals | null = null;
  const handler = (sig: NodeJS.Signals): void => {
    if (signalled === null) {
      signalled = sig;
      first(sig);
      return;
    }
    again(sig);
    process.exit(SIGNAL_EXIT[signalled] ?? 130);
  };
  const names = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of names) process.on(s, handler);
  return { first: () => signalled, dispose: () => names.forEach((s) => process.off(s, handler)) };
}

/** `load --churn R`: runs to the time bound; a first signal ends it and still reports, exit 128 + its number. */
async function churnCommand(options: ProbeOptions, rate: number, json: boolean, out: (s: string) => void): Promise<number> {
  const abort = new AbortController();
  const signals = onSignals(() => abort.abort());
  const tty = process.stderr.isTTY && !json;
  try {
    const report = await churnRun(options, rate, abort.signal, tty ? (s) => process.stderr.write(`\r\x1b[K${s}`) : undefined);
    if (tty) process.stderr.write('\r\x1b[K');
    out(json ? JSON.stringify(report, null, 2) : renderChurn(report));
    const signalled = signals.first();
    return signalled ? (SIGNAL_EXIT[signalled] ?? 130) : 0;
  } finally {
    signals.dispose();
  }
}
