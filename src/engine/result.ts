/** The run's result: its types, and the pure function that builds it from what the run collected. */
import { errnoMeaning } from '../model/errno.js';
import type { ConstraintId, Limits } from '../model/limits.js';
import type { Strategy } from '../model/strategy.js';
import { occupancyCurve, sourcePortStats, type Totals } from './aggregate.js';
import { quantile } from './histogram.js';
import type { SinkMode } from './plan.js';
import type { PeakMemory, Sample } from './sampler.js';
import type { OthersCpu } from './others.js';

/** Why the ramp ended. */
export type StopReason = 'target' | 'time' | 'limit' | 'stall' | 'signal' | 'worker-died';

/** A worker that died during the run. */
export interface DeadWorker {
  readonly kind: 'client' | 'sink';
  readonly pid: number;
  readonly signal: string | null;
  readonly code: number | null;
  readonly held: number;
}

/** The host a run ran on. */
export interface Machine {
  readonly kernel: string | null;
  readonly cpus: number;
  readonly memoryBytes: number | null;
  readonly portRange: string | null;
  readonly nofile: { readonly soft: number; readonly hard: number } | null;
  readonly node: string;
}

/** Everything a run measured. Times in milliseconds. */
export interface ProbeResult {
  readonly target: number;
  readonly held: number;
  readonly predicted: number | null;
  /** The least the model expects: below `predicted` only where the kernel leaves the last ports to chance (the constraint's detail says why). */
  readonly predictedMin: number | null;
  readonly ceiling: { readonly connections: number | null; readonly binding: ConstraintId | null; readonly remedy: string };
  readonly stoppedBy: StopReason;
  /** The signal that ended the run (SIGINT, SIGTERM, SIGHUP), or null. */
  readonly interrupted: string | null;
  readonly limit: { readonly id: ConstraintId | null; readonly errno: string; readonly count: number; readonly words: string } | null;
  /** Set when no connect ever succeeded: the errno and the destination that gave it. */
  readonly failure: { readonly errno: string; readonly destination: string; readonly words: string } | null;
  readonly errors: Readonly<Record<string, number>>;
  readonly attempts: number;
  /** Connects that succeeded, held at the end or not. */
  readonly connected: number;
  readonly lost: number;
  readonly rate: { readonly median: number | null; readonly peak: number | null; readonly samples: readonly number[] };
  readonly latency: { readonly p50: number | null; readonly p99: number | null; readonly max: number | null };
  readonly latencyByOccupancy: ReturnType<typeof occupancyCurve>;
  readonly sourcePorts: ReturnType<typeof sourcePortStats>;
  readonly memory: {
    readonly userBytes: number;
    readonly userBytesPerConnection: number | null;
    readonly kernelBytes: number;
    readonly kernelBytesPerConnection: number | null;
    /** MemAvailable's fall from the start to the peak: everything the run cost the host, user and kernel. */
    readonly availableDropBytes: number | null;
    readonly availableDropBytesPerConnection: number | null;
  };
  readonly cleanup: { readonly left: number; readonly timeWait: number };
  /** From the end of the ramp (or hold) until every process of the run had exited and the table was checked. */
  readonly closeMs: number;
  /**
   * Other programs on the host: the share of all CPU time (every core) their
   * user-space processes took during the ramp, the one that took the most,
   * and the kernel memory of the /proc entries cached for the run's
   * descriptors by a program listing /proc/PID/fd (inside kernelBytes).
   * Null where it could not be read (/proc/slabinfo is root's).
   */
  readonly others: {
    readonly cpuShare: number | null;
    readonly top: { readonly pid: number; readonly name: string; readonly cpuShare: number } | null;
    readonly procEntryBytes: number | null;
    readonly procEntryBytesPerConnection: number | null;
  };
  /** The embedded sink: how it held the server's end, and why; mode 'none' for load. */
  readonly sink: { readonly mode: SinkMode | 'none'; readonly why: string; readonly listeners: number };
  readonly destinations: readonly string[];
  readonly sources: readonly string[];
  readonly strategy: Strategy;
  readonly workers: { readonly clients: number; readonly sinks: number; readonly died: readonly DeadWorker[]; readonly holders?: number };
  readonly timeline: readonly Sample[];
  /** Connections each client worker held at the peak, in start order (the spread across processes). */
  /** The run this is a shard of (--shard I/K), or null. */
  readonly run: { readonly id: string; readonly shard: number; readonly shards: number } | null;
  /** When the ramp began, Unix milliseconds: the timeline's zero, so shards line up. */
  readonly rampStartUnixMs: number;
  /** Connect latencies in the fixed log buckets of engine/histogram.ts (20 a decade from 1 µs): shards add exactly. */
  readonly latencyHistogram: readonly number[];
  /** Who counted `held`: the kernel's socket table, or (when it could not be read) the clients, with why. */
  readonly heldBy: { readonly source: 'kernel' | 'clients'; readonly why?: string };
  readonly heldPerWorker: readonly number[];
  /** What was run and where, so the run can be reproduced. */
  readonly command: readonly string[];
  readonly machine: Machine;
  readonly rampMs: number;
  /** From the process's start (Node's time origin) to the ramp's: what a user waits before the first connect. */
  readonly startupMs: number;
  readonly durationMs: number;
  readonly limits: Limits;
}

/** What the coordinator collected, for buildResult. */
export interface RunRecord {
  readonly target: number;
  readonly strategy: Strategy;
  readonly sources: readonly string[];
  readonly destinations: readonly string[];
  readonly limits: Limits;
  readonly stoppedBy: StopReason | undefined;
  readonly stopErrno: string | undefined;
  readonly interrupted: string | null;
  /** When the ramp ended, and when the held count last grew (same clock). */
  readonly rampEndedAt: number;
  readonly lastGrowthAt: number;
  readonly totals: Totals;
  readonly peak: number;
  readonly peakAt: number;
  readonly rampStart: number;
  readonly startedAt: number;
  readonly now: number;
  readonly rate: ProbeResult['rate'];
  readonly memory: PeakMemory;
  readonly others: { readonly cpu: OthersCpu | null; readonly procEntryBytes: number | null };
  readonly ports: Iterable<readonly number[]>;
  readonly cleanup: ProbeResult['cleanup'];
  readonly closeMs: number;
  readonly sink: ProbeResult['sink'];
  readonly workers: ProbeResult['workers'];
  readonly timeline: readonly Sample[];
  readonly heldPerWorker: readonly number[];
  readonly heldBy: ProbeResult['heldBy'];
  readonly run: ProbeResult['run'];
  readonly rampStartUnixMs: number;
  readonly command: readonly string[];
  readonly machine: Machine;
}

/** No growth for this long before the time bound: the run had stopped on a limit. */
export const TIME_STALL_MS = 1000;

/** The result of a run. Pure. */
export function buildResult(r: RunRecord): ProbeResult {
  const t = r.totals;
  // What ended the ramp; a signal during the hold (or the ramp) makes the run 'signal' all the same.
  const rampStop = r.stoppedBy ?? 'target';
  const stoppedBy: StopReason = r.interrupted ? 'signal' : rampStop;
  let limit: ProbeResult['limit'] = null;
  // A time bound that came after progress had stopped (no growth in its last second) with
  // failures is a limit too: the report names it rather than only the clock.
  const stalledAtTime = rampStop === 'time' && t.held < r.target && r.rampEndedAt - r.lastGrowthAt >= TIME_STALL_MS;
  if (rampStop === 'limit' || rampStop === 'stall' || stalledAtTime) {
    const errno = r.stopErrno ?? dominant(t.errors);
    if (errno) {
      const meaning = errnoMeaning(errno, r.strategy);
      limit = { id: meaning.constraint, errno, count: t.errors[errno] ?? 0, words: meaning.words };
    } else if (r.sink.mode === 'queue' && t.held < r.target) {
      limit = { id: 'backlog', errno: 'none', count: 0, words: "every accept queue of the queue sink is full (somaxconn + 1 each); more ports, a larger somaxconn or --sink accept hold more" };
    }
  }
  let failure: ProbeResult['failure'] = null;
  if (t.connected === 0 && t.attempts > 0 && stoppedBy !== 'signal') {
    const errno = t.hardError?.errno ?? dominant(t.errors) ?? 'unknown';
    failure = { errno, destination: t.hardError?.destination ?? r.destinations.slice(0, 3).join(', '), words: errnoMeaning(errno, r.strategy).words };
  }
  const ceiling = r.limits.host;
  const predicted = ceiling.connections === null ? null : Math.min(r.target, ceiling.connections);
  const predictedMin = ceiling.connectionsMin === null ? predicted : Math.min(r.target, ceiling.connectionsMin);
  const held = r.peak;
  const per = (bytes: number | null): number | null => (held && bytes !== null ? Math.round(bytes / held) : null);
  const top = r.others.cpu?.top;
  return {
    target: r.target,
    held,
    predicted,
    predictedMin,
    ceiling,
    stoppedBy,
    interrupted: r.interrupted,
    limit,
    failure,
    errors: t.errors,
    attempts: t.attempts,
    connected: t.connected,
    lost: t.lost,
    rate: r.rate,
    latency: { p50: capped(quantile(t.latency, 0.5), t.latencyMax), p99: capped(quantile(t.latency, 0.99), t.latencyMax), max: t.attempts ? t.latencyMax : null },
    latencyByOccupancy: occupancyCurve(t.byOccupancy),
    sourcePorts: sourcePortStats(r.ports),
    memory: {
      userBytes: r.memory.userBytes,
      userBytesPerConnection: per(r.memory.userBytes),
      kernelBytes: r.memory.kernelBytes,
      kernelBytesPerConnection: per(r.memory.kernelBytes),
      availableDropBytes: r.memory.availableDropBytes,
      availableDropBytesPerConnection: per(r.memory.availableDropBytes),
    },
    cleanup: r.cleanup,
    closeMs: r.closeMs,
    others: {
      cpuShare: r.others.cpu ? round3(r.others.cpu.share) : null,
      top: top ? { pid: top.pid, name: top.name, cpuShare: round3(top.share) } : null,
      procEntryBytes: r.others.procEntryBytes,
      procEntryBytesPerConnection: per(r.others.procEntryBytes),
    },
    sink: r.sink,
    destinations: r.destinations,
    sources: r.sources,
    strategy: r.strategy,
    workers: r.workers,
    timeline: r.timeline,
    heldPerWorker: r.heldPerWorker,
    heldBy: r.heldBy,
    run: r.run,
    rampStartUnixMs: r.rampStartUnixMs,
    latencyHistogram: [...t.latency],
    command: r.command,
    machine: r.machine,
    rampMs: Math.round((r.peakAt || r.now) - r.rampStart),
    startupMs: Math.round(r.rampStart),
    durationMs: Math.round(r.now - r.startedAt),
    limits: r.limits,
  };
}

/** A bucket's upper edge can pass the largest value seen; report no more than that. */
function capped(q: number | null, max: number): number | null {
  return q === null ? null : Math.min(q, max);
}

/** A share to three decimals (0.183 is 18.3%). */
function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function dominant(errors: Readonly<Record<string, number>>): string | undefined {
  let best: string | undefined;
  for (const [k, v] of Object.entries(errors)) if (!best || v > errors[best]) best = k;
  return best;
}
