/** `fourtuple ports`: the kernel's socket table grouped per destination, once, live (--watch) or as Prometheus metrics. */
import { InvalidArgumentError } from '../errors.js';
import { TCP_ESTABLISHED, TCP_NEW_SYN_RECV, TCP_STATES } from '../kernel/linux.js';
import { formatEndpoint, normalizeAddress, type Endpoints } from '../model/address.js';
import { overThreshold, STATE } from '../model/port-pressure.js';
import { churnSettings, destinationCeilings } from '../model/churn.js';
import { ScanHistory } from '../model/scan-history.js';
import type { Strategy } from '../model/strategy.js';
import { readChurnFacts } from '../kernel/facts.js';
import { scanPorts, type PortScanOptions } from '../engine/port-scan.js';
import { portsJson, renderPorts, renderWatch } from '../report/ports.js';
import { oncePerTurn, portsRegistry } from '../report/ports-metrics.js';
import { endpointsOption, intOption, numberOption, parseOptions, strategyOption } from './args.js';
import { MetricsServer } from './metrics-server.js';
import { failureTracer, liveFailures, type FailureTracer } from '../kernel/failure-tracer.js';
import { FailureWindow } from '../model/failures.js';
import { KeptPorts } from '../engine/kept-ports.js';
import type { FailuresView } from '../report/ports.js';
import { RunUntil } from './run-until.js';

/** Defaults, in one place. */
export const PORTS_DEFAULTS = {
  /** Rows per table in the human report and the watch view. */
  top: 20,
  /** Destination series of the exporter before `other`. */
  metricsTop: 50,
  watchS: 2,
  metricsPort: 9464,
  /** The exporter's full scan with kernel-kept counts: as long as a TIME_WAIT lasts. */
  reconcileS: 60,
} as const;

/** Usage text. */
export const PORTS_HELP = `Usage: fourtuple ports [--top N] [--state S,...] [--to ADDR:PORTS ...] [--json] [--warn PERCENT]
                      [--by cgroup] [--pids] [--bind-failures]
                      [--watch [SECONDS] [--strategy S]] [--prometheus ADDR:PORT [--reconcile S]] [--duration S]

Reads the kernel's socket table (a BPF iterator where allowed, as root; else
netlink sock_diag; /proc/net/tcp as fallback) and shows, per destination (source address, destination address, destination
port), how many source ports are in use and how many the kernel allows: the
first line names the destination closest to running out.

  --top N              rows per table (default ${PORTS_DEFAULTS.top}; --json: all; --prometheus: ${PORTS_DEFAULTS.metricsTop}
                       destination series plus one aggregated destination="other")
  --state S,...        count only these states: ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1,
                       FIN_WAIT2, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING
  --to ADDR:PORTS      only these destinations: 10.0.0.5:5432, 127.0.0.1:7000-7099 (repeatable)
  --json               print one JSON object (with --watch: one per line per refresh)
  --by cgroup          who holds each destination's ports: its sockets per control group (cgroup v2
                       path, with the systemd unit or the Kubernetes pod and container it names);
                       TIME_WAIT sockets belong to no one. Needs the BPF iterator (root)
  --pids               also the processes holding them (every /proc/PID/fd link is read: costly
                       with many descriptors; not with --prometheus)
  --warn PERCENT       exit 3 when a destination uses at least PERCENT of its ports (for cron
                       and health checks); with --watch, highlight those rows instead
  --watch [SECONDS]    redraw every SECONDS (default ${PORTS_DEFAULTS.watchS}) with the trend per destination, the
                       time until exhaustion at the recent rate, the new connections per second
                       (NEW/S: sockets on ports the previous scan did not see) and the churn ceiling
                       (CEILING/S: new connections per second the pool sustains when this host closes
                       first, its ports held 60 s in TIME_WAIT; none: TIME_WAIT sets no ceiling),
                       until Ctrl-C or --duration
  --strategy S         with --watch: how the clients choose their source, for CEILING/S: auto (the
                       default; explicit for a destination reached from ports outside the range),
                       bind (bind(ip, 0): one pool per source address), nopo, explicit
  --prometheus ADDR:PORT  serve /metrics on ADDR:PORT (a port alone: 127.0.0.1), one scan
                       per scrape, until Ctrl-C or --duration
  --reconcile S        with --prometheus, as root: scrapes read counts the kernel keeps per destination
                       and state (BPF on sock:inet_sock_set_state), and a full scan runs every S seconds
                       (default ${PORTS_DEFAULTS.reconcileS}) for TIME_WAIT, listeners and source pools, and to check the counts
                       (fourtuple_kept_counts_drift_sockets); 0: a full scan per scrape
  --bind-failures      with --watch or --prometheus: also count failed bind() calls (see below)
  --duration S         stop --watch or --prometheus after S seconds

Failed calls: as root, --watch and --prometheus attach a BPF tracer (on the
kernel's tracepoints, detached when they stop) that counts every connect()
that fails (EADDRNOTAVAIL: no source port left; or the handshake's error),
and with --bind-failures every bind() that fails with EADDRINUSE or
EADDRNOTAVAIL (a program at every system call's exit: about 80 ns more per
system call of every process while attached), by source, destination and
errno, in this network namespace. --watch shows those of the
last 10 s (a FAILED column and a line per destination, beside its pool and
churn); the exporter exports fourtuple_connect_failures_total and
fourtuple_bind_failures_total; a one-shot run reads the counts of a tracer
that runs. Without the privileges, the rest works and the report says why.

Used counts every client-side socket but LISTEN, TIME_WAIT included (it holds
its 4-tuple); capacity is the ephemeral range minus reserved and listened-on
ports, per destination. Exit codes: 0 done, 1 failure, 2 bad input, 3 --warn
threshold reached.
`;

const OPTIONS = {
  top: { type: 'string' },
  state: { type: 'string', multiple: true },
  to: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  warn: { type: 'string' },
  watch: { type: 'string' },
  prometheus: { type: 'string' },
  duration: { type: 'string' },
  strategy: { type: 'string' },
  by: { type: 'string' },
  reconcile: { type: 'string' },
  'bind-failures': { type: 'boolean' },
  pids: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** What `ports` does. */
export type PortsMode = { kind: 'once' } | { kind: 'watch'; intervalS: number } | { kind: 'prometheus'; host: string; port: number };

/** Parsed `ports` options. */
export interface PortsArgs {
  readonly help: boolean;
  readonly json: boolean;
  /** Explicit --top, or null for the mode's default. */
  readonly top: number | null;
  readonly states: ReadonlySet<number> | undefined;
  readonly to: readonly Endpoints[];
  readonly warn: number | null;
  readonly mode: PortsMode;
  readonly durationS: number | null;
  /** --strategy for the watch view's churn ceiling; null: auto (explicit for ports outside the range). */
  readonly strategy: Strategy | null;
  /** --by cgroup: who holds each destination's sockets. */
  readonly byCgroup: boolean;
  /** --pids: and which processes (reads every /proc/PID/fd link). */
  readonly pids: boolean;
  /** --reconcile S: the exporter's full-scan period with kernel-kept counts; 0: a full scan per scrape. */
  readonly reconcileS: number;
  /** --bind-failures: also count failed bind() calls (a program at every system call's exit). */
  readonly bindFailures: boolean;
}

const STATE_ALIASES: Readonly<Record<string, number>> = { ESTAB: STATE.ESTABLISHED };

/** `--state` values (comma lists, repeatable) to TCP_STATES indexes; SYN_RECV includes request sockets. */
export function statesOption(values: string[] | undefined): ReadonlySet<number> | undefined {
  if (!values) return undefined;
  const out = new Set<number>();
  for (const raw of values.flatMap((v) => v.split(','))) {
    const name = raw.trim().toUpperCase().replace(/-/g, '_');
    const code = STATE_ALIASES[name] ?? TCP_STATES.indexOf(name as (typeof TCP_STATES)[number]);
    if (!name || code <= 0 || name === 'NEW_SYN_RECV') {
      throw new InvalidArgumentError(`unknown state '${raw}' in --state: expected ${TCP_STATES.slice(TCP_ESTABLISHED, TCP_NEW_SYN_RECV).join(', ')}`);
    }
    out.add(code);
    if (code === STATE.SYN_RECV) out.add(STATE.NEW_SYN_RECV);
  }
  return out;
}

/** `ADDR:PORT`, `[::1]:PORT` or `PORT` (on 127.0.0.1); port 0 picks a free one. */
export function listenOption(value: string): { host: string; port: number } {
  const bad = (): never => {
    throw new InvalidArgumentError(`invalid --prometheus '${value}': expected ADDR:PORT like 127.0.0.1:${PORTS_DEFAULTS.metricsPort}, [::1]:${PORTS_DEFAULTS.metricsPort} or a port`);
  };
  const m = /^(?:\[([^\]]+)\]:|([^:[\]]+):)?(\d{1,5})$/.exec(value);
  if (!m) return bad();
  const port = Number(m[3]);
  if (port > 65535) return bad();
  const host = m[1] ?? m[2];
  return { host: host === undefined ? '127.0.0.1' : normalizeAddress(host, '--prometheus address'), port };
}

/** `--watch` takes an optional value: a bare --watch becomes --watch=<default>. */
function withWatchDefault(argv: string[]): string[] {
  return argv.map((a, i) => (a === '--watch' && !/^\d+(\.\d+)?$/.test(argv[i + 1] ?? '') ? `--watch=${PORTS_DEFAULTS.watchS}` : a));
}

/** Parses argv without running anything (tests use it directly). */
export function parsePortsArgs(argv: string[]): PortsArgs {
  const { values: v } = parseOptions('ports', { args: withWatchDefault(argv), options: OPTIONS });
  const warn = v.warn === undefined ? null : numberOption('--warn', v.warn, 0, 0, 100);
  let mode: PortsMode = { kind: 'once' };
  if (v.watch !== undefined && v.prometheus !== undefined) throw new InvalidArgumentError('--watch and --prometheus cannot be combined: run two commands');
  if (v.watch !== undefined) mode = { kind: 'watch', intervalS: numberOption('--watch', v.watch, PORTS_DEFAULTS.watchS, 0.1, 3600) };
  if (v.prometheus !== undefined) {
    if (v.json) throw new InvalidArgumentError('--json does not apply to --prometheus: the exporter serves the exposition format');
    if (warn !== null) throw new InvalidArgumentError('--warn does not apply to --prometheus: alert on fourtuple_destination_headroom_ratio instead');
    mode = { kind: 'prometheus', ...listenOption(v.prometheus) };
  }
  if (v.duration !== undefined && mode.kind === 'once') throw new InvalidArgumentError(`--duration ${v.duration} applies to --watch and --prometheus only`);
  if (v.strategy !== undefined && mode.kind !== 'watch') throw new InvalidArgumentError(`--strategy ${v.strategy} applies to --watch only (its churn ceiling)`);
  if (v.reconcile !== undefined && mode.kind !== 'prometheus') throw new InvalidArgumentError(`--reconcile ${v.reconcile} applies to --prometheus only`);
  if (v['bind-failures'] && mode.kind === 'once') throw new InvalidArgumentError('--bind-failures applies to --watch and --prometheus (they attach the tracer)');
  if (v.by !== undefined && v.by !== 'cgroup') throw new InvalidArgumentError(`invalid --by '${v.by}': expected cgroup`);
  if (v.pids && mode.kind === 'prometheus') throw new InvalidArgumentError('--pids does not apply to --prometheus: reading every /proc/PID/fd link on each scrape costs too much; use --by cgroup');
  return {
    help: v.help ?? false,
    json: v.json ?? false,
    top: v.top === undefined ? null : intOption('--top', v.top, 0, 1, 100_000),
    states: statesOption(v.state),
    to: endpointsOption(v.to),
    warn,
    mode,
    durationS: v.duration === undefined ? null : numberOption('--duration', v.duration, 0, 0.1, 31_536_000),
    strategy: v.strategy === undefined ? null : strategyOption(v.strategy, 'auto'),
    byCgroup: v.by === 'cgroup' || v.pids === true,
    pids: v.pids === true,
    bindFailures: v['bind-failures'] === true,
    reconcileS: v.reconcile === undefined ? PORTS_DEFAULTS.reconcileS : numberOption('--reconcile', v.reconcile, PORTS_DEFAULTS.reconcileS, 0, 86_400),
  };
}

function scanOptions(a: PortsArgs): PortScanOptions {
  return { states: a.states, to: a.to, byCgroup: a.byCgroup, pids: a.pids };
}

/** Runs the command; returns the exit code (3: --warn threshold reached in a one-shot run). */
export async function runPorts(argv: string[], out: (s: string) => void): Promise<number> {
  const a = parsePortsArgs(argv);
  if (a.help) {
    out(PORTS_HELP);
    return 0;
  }
  if (a.mode.kind === 'watch') return runWatch(a, a.mode.intervalS, out);
  if (a.mode.kind === 'prometheus') return runExporter(a, a.mode.host, a.mode.port, out);
  const scan = scanPorts(scanOptions(a));
  const live = liveFailures();
  const failures: FailuresView = 'snapshot' in live ? { counted: true, seconds: null, counts: live.snapshot.counts, overflow: live.snapshot.overflow } : { counted: false, reason: live.reason };
  if (a.json) out(JSON.stringify(portsJson(scan, { top: a.top, warn: a.warn, failures }), null, 2));
  else out(renderPorts(scan, { top: a.top ?? PORTS_DEFAULTS.top, warn: a.warn, ansi: process.stdout.isTTY === true, failures }));
  return a.warn !== null && overThreshold(scan.report, a.warn).length > 0 ? 3 : 0;
}

async function runWatch(a: PortsArgs, intervalS: number, out: (s: string) => void): Promise<number> {
  const run = new RunUntil(a.durationS);
  const tty = process.stdout.isTTY === true && !a.json;
  const history = new ScanHistory();
  const tracing = failureTracer({ bind: a.bindFailures });
  const window = 'tracer' in tracing ? new FailureWindow(Date.now()) : undefined;
  try {
    while (!run.stopped) {
      const scan = scanPorts({ ...scanOptions(a), localPorts: true });
      const { trend: rates, newPerSecond } = history.update(scan.report.destinations, scan.at);
      const facts = readChurnFacts();
      const churn = {
        strategy: a.strategy,
        newPerSecond,
        ceilingOf: destinationCeilings(facts, a.strategy, scan.report.destinations.length),
        settings: churnSettings(facts),
      };
      const failures = watchFailures(tracing, window);
      if (a.json) {
        out(JSON.stringify({ at: new Date(scan.at).toISOString(), ...portsJson(scan, { top: a.top, warn: a.warn, rates, churn, failures }) }));
      } else {
        const view = renderWatch(scan, { top: a.top ?? PORTS_DEFAULTS.top, warn: a.warn, ansi: tty, rates, churn, intervalS, failures });
        out(tty ? `\x1b[H\x1b[2J${view}` : `${view}\n`);
      }
      await run.sleep(intervalS * 1000);
    }
  } finally {
    run.dispose();
    if ('tracer' in tracing) tracing.tracer.close();
  }
  return 0;
}

/** The watch view's failures: those of the last window, or why none are counted. */
function watchFailures(tracing: { tracer: FailureTracer } | { reason: string }, window: FailureWindow | undefined): FailuresView {
  if (!('tracer' in tracing) || !window) return { counted: false, reason: 'reason' in tracing ? tracing.reason : 'no tracer' };
  const view = window.push(tracing.tracer.read());
  return { counted: true, seconds: view.seconds, counts: view.recent, overflow: view.overflow };
}

async function runExporter(a: PortsArgs, host: string, port: number, out: (s: string) => void): Promise<number> {
  // Kernel-kept counts when allowed: a scrape reads a map; a full scan runs every --reconcile seconds.
  const keeping = a.reconcileS > 0 ? KeptPorts.open(scanOptions(a)) : { reason: '--reconcile 0' };
  const kept = 'kept' in keeping ? keeping.kept : undefined;
  const reconciler = kept ? setInterval(() => kept.reconcile(), a.reconcileS * 1000) : undefined;
  const snapshot = oncePerTurn(() => (kept ? kept.snapshot() : scanPorts(scanOptions(a))));
  const top = a.top ?? PORTS_DEFAULTS.metricsTop;
  const tracing = failureTracer({ bind: a.bindFailures });
  const failures = oncePerTurn(() => ('tracer' in tracing ? tracing.tracer.read() : { reason: tracing.reason }));
  const server = new MetricsServer(portsRegistry(snapshot, top, failures));
  const run = new RunUntil(a.durationS);
  try {
    let addr;
    try {
      addr = await server.listen(host, port);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new InvalidArgumentError(`cannot serve --prometheus ${host}:${port}: ${e.code ?? e.message}`);
    }
    const how = kept ? `counts kept by the kernel, a full scan every ${a.reconcileS} s` : `one scan per scrape: ${'reason' in keeping ? keeping.reason : ''}`;
    out(
      `Serving Prometheus metrics on http://${formatEndpoint(addr.address, addr.port)}/metrics (${how}; top ${top} destinations plus "other") ` +
        `${a.durationS === null ? 'until SIGINT/SIGTERM' : `for ${a.durationS} s`}; ` +
        `${'tracer' in tracing ? `failed connect()${a.bindFailures ? ' and bind()' : ''} calls counted from now` : `failed calls not counted: ${tracing.reason}`}.`,
    );
    await run.done();
    await server.close();
    out(`Stopped (${run.reason === 'signal' ? 'signal' : 'duration over'}) after ${server.scrapes} scrape(s).`);
    return 0;
  } finally {
    run.dispose();
    await server.close();
    if ('tracer' in tracing) tracing.tracer.close();
    clearInterval(reconciler);
    kept?.close();
  }
}
