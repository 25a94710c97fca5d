/**
 * The coordinator: plans worker processes from the open-files limit, opens
 * the embedded sink's listeners, ramps client workers up to the target, a
 * time bound or the first limit, measures at the peak, closes everything and
 * checks that nothing is left. Emits 'progress'; resolves with the result.
 */
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { readKernelFacts, type KernelFacts } from '../kernel/facts.js';
import * as ffi from '../kernel/ffi.js';
import { scanProcNetTcp } from '../kernel/proc-net-tcp.js';
import { FfiUnavailableError, InvalidArgumentError } from '../errors.js';
import { type Endpoints, familyOf, parsePorts } from '../model/address.js';
import { errnoMeaning } from '../model/errno.js';
import { computeLimits, explicitPool, ephemeralPool, type ConstraintId, type Limits } from '../model/limits.js';
import type { Strategy } from '../model/strategy.js';
import { PortSet } from '../model/port-set.js';
import { median, occupancyCurve, sourcePortStats, sumStats } from './aggregate.js';
import { quantile } from './histogram.js';
import { closeListeners, fmtTarget, ListenError, openFreeListeners, openListener, type Listener } from './listeners.js';
import { kernelSocketBytes, pssBytes } from './memory.js';
import { cpuSnapshot, othersCpu, procEntryBytes, type CpuSnapshot, type OthersCpu } from './others.js';
import type { ClientConfig, ClientStats, FromWorker, Target } from './protocol.js';
import { FD_RESERVE, SinkPool } from './sink-pool.js';
import { reap, spawnWorker, type WorkerHandle } from './worker-pool.js';

/** Options of a run; the CLI validates them before they get here. */
export interface ProbeOptions {
  /** Connections to reach and hold. */
  readonly connections: number;
  /** Time bound of the whole ramp, seconds. */
  readonly durationS: number;
  /** Seconds to hold the peak before closing. */
  readonly holdS: number;
  /** Destinations; empty: the embedded sink picks loopback ports from the model. */
  readonly to: readonly Endpoints[];
  readonly from: readonly string[];
  readonly strategy: Strategy;
  /** Connects in flight at once, over all active workers. */
  readonly concurrency: number;
  /** Connects per second over all workers; 0: no cap. */
  readonly rate: number;
  readonly close: 'rst' | 'fin';
  /** Run the embedded sink (probe) or connect to an existing server (load). */
  readonly sink: boolean;
  /** Client workers ramping at the same time. */
  readonly parallel: number;
  /** Soft open-files limit for client workers instead of the hard one (tests of fd-process). */
  readonly workerNofile?: number;
  /** A client worker that dies: go on without it, or end the run. */
  readonly onWorkerDeath: 'continue' | 'stop';
  /** Give up on one connect after this long. */
  readonly connectTimeoutMs: number;
  /** The command line, recorded in the result so the run can be reproduced. */
  readonly command?: readonly string[];
}

/** Defaults for everything but what a run must say. */
export const PROBE_DEFAULTS = {
  connections: 100_000,
  holdS: 0,
  strategy: 'auto' as Strategy,
  concurrency: 512,
  rate: 0,
  close: 'rst' as const,
  parallel: 3,
  onWorkerDeath: 'continue' as const,
  connectTimeoutMs: 3000,
};

/** Default time bound for a target: generous for this machine's ~30k/s, and at least a minute. */
export function defaultDuration(connections: number): number {
  return Math.max(60, Math.ceil(connections / 5000));
}

/** A live snapshot for the progress line. */
export interface ProbeProgress {
  readonly elapsedMs: number;
  readonly held: number;
  readonly accepted: number;
  readonly ratePerSec: number;
  readonly errors: number;
  readonly phase: Phase;
  /** While closing: sockets of the run still open, both ends counted (the workers report as each one finishes). */
  readonly leftToClose?: number;
}

type Phase = 'starting' | 'ramping' | 'holding' | 'closing' | 'done';

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

/** One point of the run's time series (every 250 ms). */
export interface Sample {
  /** Milliseconds since the ramp started. */
  readonly t: number;
  readonly held: number;
  /** Connections per second over the last interval. */
  readonly rate: number;
  /** Failed attempts so far, all errnos. */
  readonly errors: number;
  /** Failed attempts so far, per errno. */
  readonly errorsBy: Readonly<Record<string, number>>;
  /** Kernel memory grown since the start (slab + TCP pages). */
  readonly kernelBytes: number;
  /** User-space memory (PSS) of every process of the run; sampled every 2 s, null between. */
  readonly userBytes: number | null;
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
  readonly ceiling: { readonly connections: number | null; readonly binding: ConstraintId | null; readonly remedy: string };
  readonly stoppedBy: StopReason;
  readonly limit: { readonly id: ConstraintId | null; readonly errno: string; readonly count: number; readonly words: string } | null;
  readonly errors: Readonly<Record<string, number>>;
  readonly attempts: number;
  readonly lost: number;
  readonly rate: { readonly median: number | null; readonly peak: number | null; readonly samples: readonly number[] };
  readonly latency: { readonly p50: number | null; readonly p99: number | null; readonly max: number | null };
  readonly latencyByOccupancy: ReturnType<typeof occupancyCurve>;
  readonly sourcePorts: ReturnType<typeof sourcePortStats>;
  readonly memory: { readonly userBytes: number; readonly userBytesPerConnection: number | null; readonly kernelBytes: number; readonly kernelBytesPerConnection: number | null };
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
  readonly destinations: readonly string[];
  readonly sources: readonly string[];
  readonly strategy: Strategy;
  readonly workers: { readonly clients: number; readonly sinks: number; readonly died: readonly DeadWorker[] };
  readonly timeline: readonly Sample[];
  /** Connections each client worker held at the peak, in start order (the spread across processes). */
  readonly heldPerWorker: readonly number[];
  /** What was run and where, so the run can be reproduced. */
  readonly command: readonly string[];
  readonly machine: Machine;
  readonly rampMs: number;
  readonly durationMs: number;
  readonly limits: Limits;
}

const PROGRESS_MS = 250;
/** Listening sockets the embedded sink opens at most: each worker inherits them all, out of its open-files limit. */
const MAX_SINK_LISTENERS = 2048;
/** Destinations a load run round-robins over at most. */
const MAX_TARGETS = 65_536;
/** How often user-space memory (PSS of every process) is sampled during a run, at the most. */
const USER_SAMPLE_MS = 2000;
/**
 * Reading smaps_rollup walks a process's page tables: with a hundred workers
 * one round costs tens of milliseconds, so rounds are spaced to keep them
 * under 2% of the coordinator's time.
 */
const USER_SAMPLE_COST_SHARE = 0.02;
/** Largest share of a port pool the default destinations are planned to fill. */
const FILL_TARGET = 0.45;
const STALL_MS = 5000;
/** No growth for this long before the time bound: the run had stopped on a limit. */
const TIME_STALL_MS = 1000;
/** How long to wait for the clients' count of what they hold once the ramp is over: this much... */
const CHECK_WAIT_MS = 2000;
/** ...plus this per connection held (one poll of 20,000 descriptors takes about 7 ms here). */
const CHECK_WAIT_US_PER_CONNECTION = 2;
/** How long a worker may take to close its descriptors before it is killed. */
const CLOSE_GRACE_MS = 1500;

/** One probe (or load) run. */
export class Probe extends EventEmitter {
  readonly #o: ProbeOptions;
  #phase: Phase = 'starting';
  #facts!: KernelFacts;
  #limits!: Limits;
  #targets: Target[] = [];
  #listeners: Listener[] = [];
  readonly #clients: WorkerHandle[] = [];
  readonly #stats = new Map<WorkerHandle, ClientStats>();
  readonly #ports = new Map<WorkerHandle, readonly number[]>();
  readonly #excluded = new Map<string, string>();
  readonly #died: DeadWorker[] = [];
  #active = 0;
  #assigned = 0;
  #plannedClients = 0;
  #clientQuota = 0;
  #started = 0;
  #rampStart = 0;
  #peak = 0;
  #peakAt = 0;
  #stopReason: StopReason | undefined;
  #stopErrno: string | undefined;
  #rampEndedAt = 0;
  #lastHeld = 0;
  #lastProgressAt = 0;
  #lastGrowthAt = 0;
  readonly #rates: number[] = [];
  readonly #timeline: Sample[] = [];
  #lastUserSample = 0;
  #userSampleEvery = USER_SAMPLE_MS;
  #rampEnded!: () => void;
  #ticker: NodeJS.Timeout | undefined;
  #memory = { userBytes: 0, kernelBytes: 0 };
  #kernelBefore = 0;
  #procEntriesBefore: number | null = null;
  #cpuAtRamp: CpuSnapshot | null = null;
  #others: { cpu: OthersCpu | null; procEntryBytes: number | null } = { cpu: null, procEntryBytes: null };
  /** Clients that have counted what they still hold since the ramp ended. */
  readonly #checked = new Set<WorkerHandle>();
  #onChecked: (() => void) | undefined;
  /** Clients that have closed their connections (phase 'closing'). */
  readonly #closedClients = new Set<WorkerHandle>();
  /** Connections held now, over every client worker. */
  #held = 0;
  #clientSpare: WorkerHandle | undefined;
  #sink: SinkPool | undefined;
  #backlog = 4096;

  constructor(options: ProbeOptions) {
    super();
    this.#o = options;
  }

  /** Ends the ramp now (SIGINT/SIGTERM): the run closes everything and resolves. */
  abort(): void {
    this.#endRamp('signal');
    this.emit('abort-hold');
  }

  /** Runs to the end; always closes what it opened. */
  async run(): Promise<ProbeResult> {
    if (!ffi.ffiAvailable()) throw new FfiUnavailableError(ffi.ffiUnavailableReason() ?? 'unknown reason');
    this.#started = performance.now();
    this.#facts = readKernelFacts();
    try {
      this.#plan();
      const timeWaitBefore = this.#countRunSockets().timeWait;
      this.#kernelBefore = kernelSocketBytes();
      this.#procEntriesBefore = procEntryBytes();
      await this.#startSinks();
      await this.#ramp();
      await this.#countHeld();
      this.#measurePeak();
      if (this.#o.holdS > 0 && this.#stopReason !== 'signal') await this.#hold();
      this.#phase = 'closing';
      this.#emitProgress();
      const closeStart = performance.now();
      await this.#closeAll();
      const after = this.#countRunSockets();
      return this.#result({ left: after.left, timeWait: Math.max(0, after.timeWait - timeWaitBefore) }, Math.round(performance.now() - closeStart));
    } finally {
      clearInterval(this.#ticker);
      closeListeners(this.#listeners);
      await reap([...this.#clients, ...(this.#sink?.workers ?? [])], 1500);
      this.#phase = 'done';
    }
  }

  #plan(): void {
    const o = this.#o;
    const nofile = ffi.getNofileLimit();
    const backlog = this.#facts.somaxconn.known ? this.#facts.somaxconn.value : 4096;
    this.#backlog = backlog;
    const rst = o.close === 'rst';
    if (o.to.length === 0) {
      if (!o.sink) throw new InvalidArgumentError('--to is required: the server to connect to');
      this.#listeners = this.#defaultListeners(backlog, rst);
    } else {
      const count = o.to.reduce((n, e) => n + e.addresses.length * e.ports.size, 0);
      const max = o.sink ? MAX_SINK_LISTENERS : MAX_TARGETS;
      if (count > max) throw new InvalidArgumentError(`--to names ${count.toLocaleString('en-US')} destinations: at most ${max.toLocaleString('en-US')}${o.sink ? ' for the embedded sink (every worker inherits its listeners)' : ''}`);
      for (const e of o.to) for (const address of e.addresses) for (const port of e.ports) this.#targets.push({ address, port });
      if (o.sink) {
        for (const t of this.#targets) {
          const l = openListener(t, backlog, rst);
          if (l instanceof ListenError) {
            closeListeners(this.#listeners);
            const hint = l.errno === 'EADDRNOTAVAIL' ? ' (the embedded sink listens on this host; use fourtuple load for a remote server)' : l.errno === 'EADDRINUSE' ? ' (already in use; use fourtuple load to connect to the server there)' : '';
            throw new InvalidArgumentError(`cannot listen on ${fmtTarget(t)} in --to: ${l.errno}${hint}`);
          }
          this.#listeners.push(l);
        }
      }
    }
    if (this.#listeners.length) this.#targets = this.#listeners.map(({ address, port }) => ({ address, port }));
    const fam = familyOf(this.#targets[0].address);
    for (const s of o.from) {
      if (familyOf(s) !== fam) throw new InvalidArgumentError(`source address '${s}' in --from is not of the destinations' family (IPv${fam})`);
    }
    this.#limits = this.#model();
    // Every client also inherits the listeners (to watch their accept queues).
    this.#clientQuota = Math.max(1, nofile.hard - FD_RESERVE - this.#listeners.length);
    this.#plannedClients = Math.ceil(o.connections / this.#clientQuota);
  }

  #model(): Limits {
    const byAddr = new Map<string, number[]>();
    for (const t of this.#targets) byAddr.set(t.address, [...(byAddr.get(t.address) ?? []), t.port]);
    const destinations = [...byAddr].map(([a, ports]) => ({ addresses: [a], ports: PortSet.of(...ports) }));
    const localAddresses = this.#facts.interfaces.known ? this.#facts.interfaces.value.map((i) => i.address) : [];
    // The facts were read before the probe opened its listeners, which sit below the ephemeral range anyway.
    return computeLimits({ facts: this.#facts, strategy: this.#o.strategy, sources: this.#o.from, destinations, localAddresses });
  }

  /**
   * Enough loopback ports, below the ephemeral range, that no pool gets more
   * than FILL_TARGET full: connect() scans even ports first, so past half full
   * every connect walks the whole used half before it finds a free odd port.
   */
  #defaultListeners(backlog: number, rst: boolean): Listener[] {
    const pool = ephemeralPool(this.#facts)?.size ?? 28_232;
    const perPort = this.#o.strategy === 'explicit' ? explicitPool(this.#facts).size : pool;
    const sources = Math.max(1, this.#o.from.length);
    const perPortAll = this.#o.strategy === 'bind' ? Number.MAX_SAFE_INTEGER : perPort * sources;
    const count = Math.max(1, Math.ceil(this.#o.connections / (perPortAll * FILL_TARGET)));
    const range = this.#facts.portRange.known ? this.#facts.portRange.value : { lo: 32768, hi: 60999 };
    const reserved = this.#facts.reservedPorts.known && this.#facts.reservedPorts.value ? parsePorts(this.#facts.reservedPorts.value, 'ip_local_reserved_ports') : new PortSet();
    const address = this.#o.from[0] && familyOf(this.#o.from[0]) === 6 ? '::1' : '127.0.0.1';
    return openFreeListeners(address, count, 7000, (p) => (p >= range.lo && p <= range.hi) || reserved.has(p), backlog, rst);
  }

  /** Starts the embedded sink; its deaths are reported like a client's. */
  async #startSinks(): Promise<void> {
    if (!this.#o.sink) return;
    const pool = new SinkPool({ listeners: this.#listeners, capacity: this.#o.connections, close: this.#o.close });
    this.#sink = pool;
    pool.on('died', (w: WorkerHandle, held: number) => {
      if (this.#phase === 'closing' || this.#phase === 'done') return;
      this.#died.push({ kind: 'sink', pid: w.pid, signal: w.exit?.signal ?? null, code: w.exit?.code ?? null, held });
    });
    await pool.start();
  }

  #ramp(): Promise<void> {
    this.#phase = 'ramping';
    this.#cpuAtRamp = cpuSnapshot();
    this.#rampStart = performance.now();
    this.#lastProgressAt = this.#rampStart;
    this.#lastGrowthAt = this.#rampStart;
    const done = new Promise<void>((resolve) => (this.#rampEnded = resolve));
    if (this.#stopReason) this.#rampEnded();
    const deadline = this.#rampStart + this.#o.durationS * 1000;
    this.#timeline.push({ t: 0, held: 0, rate: 0, errors: 0, errorsBy: {}, kernelBytes: 0, userBytes: null });
    this.#ticker = setInterval(() => {
      const now = performance.now();
      this.#sample(now);
      if (this.#phase !== 'ramping') return;
      if (now >= deadline) this.#endRamp('time');
      else if (now - this.#lastGrowthAt > STALL_MS && this.#active > 0) this.#endRamp('stall');
    }, PROGRESS_MS);
    for (let i = 0; i < this.#o.parallel; i++) this.#nextClient();
    return done;
  }

  /** Starts the next client worker if the plan has one left and the ramp goes on. */
  #nextClient(): void {
    const o = this.#o;
    // Once the ramp has ended (target, limit, time, signal), a client finishing starts no other.
    if (this.#phase !== 'ramping' || this.#stopReason || this.#assigned >= o.connections) return;
    const quota = Math.min(this.#clientQuota, o.connections - this.#assigned);
    this.#assigned += quota;
    const w = this.#clientSpare ?? this.#spawnClient();
    this.#clientSpare = undefined;
    const index = w.index;
    this.#quotaOf.set(w, quota);
    this.#active++;
    const heldPerTarget = this.#targets.map(() => Math.round(this.#held / Math.max(1, this.#targets.length)));
    // --concurrency and --rate are for the whole run: shared by the clients that ramp at once.
    const ramping = Math.max(1, Math.min(o.parallel, this.#plannedClients));
    const pool = ephemeralPool(this.#facts)?.size ?? 0;
    const config: ClientConfig = {
      kind: 'client',
      index,
      workers: Math.max(this.#plannedClients, 1),
      strategy: o.strategy,
      sources: o.from,
      targets: this.#targets,
      quota,
      concurrency: Math.max(1, Math.ceil(o.concurrency / ramping)),
      rate: o.rate > 0 ? o.rate / ramping : 0,
      connectTimeoutMs: o.connectTimeoutMs,
      close: o.close,
      explicitPorts: o.strategy === 'explicit' ? explicitPool(this.#facts).toString() : '',
      poolSize: o.strategy === 'explicit' ? explicitPool(this.#facts).size : pool,
      heldPerTarget,
      listeners: this.#listeners.length,
      backlog: this.#backlog,
      nofile: o.workerNofile,
      excluded: [...this.#excluded.keys()],
    };
    w.send({ type: 'start', config });
    // Spawn the next one now, so its start-up overlaps this one's ramp.
    if (this.#assigned < o.connections) this.#clientSpare = this.#spawnClient();
  }

  #spawnClient(): WorkerHandle {
    const w = spawnWorker('client', this.#clients.length, this.#onMessage, this.#onExit, this.#listeners.map((l) => l.fd));
    this.#clients.push(w);
    return w;
  }

  #onMessage = (w: WorkerHandle, m: FromWorker): void => {
    switch (m.type) {
      case 'progress':
        this.#setStats(w, m.stats);
        this.#checkTarget();
        break;
      case 'exhausted':
        if (!this.#excluded.has(m.key)) {
          this.#excluded.set(m.key, m.errno);
          for (const c of this.#clients) if (c !== w && !c.exit) c.send({ type: 'exclude', key: m.key });
        }
        break;
      case 'ports':
        this.#ports.set(w, m.pairs);
        break;
      case 'checked':
        this.#setStats(w, m.stats);
        this.#checked.add(w);
        this.#onChecked?.();
        break;
      case 'closed':
        this.#closedClients.add(w);
        break;
      case 'done':
        this.#setStats(w, m.stats);
        this.#doneClients.add(w);
        this.#active--;
        this.#onClientDone(m.reason, m.errno);
        break;
      default:
        break;
    }
  };

  #onClientDone(reason: 'quota' | 'limit' | 'stopped' | 'nothing-left', errno?: string): void {
    if (this.#phase !== 'ramping') return;
    if (reason === 'limit') return this.#endRamp('limit', errno);
    if (reason === 'nothing-left' && this.#o.strategy !== 'explicit') return this.#endRamp('limit', errno);
    if (this.#checkTarget()) return;
    if (this.#assigned < this.#o.connections) this.#nextClient();
    else if (this.#active === 0) this.#endRamp(reason === 'nothing-left' ? 'limit' : 'target', errno);
  }

  #checkTarget(): boolean {
    if (this.#phase !== 'ramping') return false;
    const held = this.#held;
    if (held >= this.#o.connections) {
      this.#endRamp('target');
      return true;
    }
    return false;
  }

  #onExit = (w: WorkerHandle): void => {
    // Gone while closing, said so or not: the kernel closed what it held on the way out.
    if (this.#phase === 'closing') this.#closedClients.add(w);
    // A client gone while the others count what they hold: no answer will come from it.
    this.#onChecked?.();
    if (this.#phase === 'closing' || this.#phase === 'done') return;
    if (w === this.#clientSpare) {
      this.#clientSpare = undefined;
      return;
    }
    const s = this.#stats.get(w);
    this.#died.push({ kind: w.kind, pid: w.pid, signal: w.exit?.signal ?? null, code: w.exit?.code ?? null, held: s?.held ?? 0 });
    // Its descriptors died with it; it holds nothing now.
    if (s) this.#setStats(w, { ...s, held: 0, pending: 0, lost: s.lost + s.held });
    const wasActive = !this.#doneClients.has(w);
    if (wasActive) this.#active--;
    if (this.#phase !== 'ramping') return;
    if (this.#o.onWorkerDeath === 'stop') this.#endRamp('worker-died');
    else if (wasActive) {
      // Its share is gone with it: hand the same share to a new worker.
      this.#assigned -= this.#quotaOf.get(w) ?? 0;
      this.#nextClient();
    }
  };

  readonly #doneClients = new Set<WorkerHandle>();
  readonly #quotaOf = new Map<WorkerHandle, number>();

  #endRamp(reason: StopReason, errno?: string): void {
    if (this.#stopReason) return;
    this.#stopReason = reason;
    this.#stopErrno = errno;
    this.#rampEndedAt = performance.now();
    const live = this.#clients.filter((c) => !c.exit);
    for (const c of live) c.send({ type: 'stop', clients: live.length });
    if (this.#phase === 'ramping' || this.#phase === 'starting') this.#rampEnded?.();
  }

  /** Keeps the held count current without summing every worker's histograms per message. */
  #setStats(w: WorkerHandle, stats: ClientStats): void {
    this.#held += stats.held - (this.#stats.get(w)?.held ?? 0);
    this.#stats.set(w, stats);
  }

  #total() {
    return sumStats(this.#stats.values());
  }

  #sample(now: number): void {
    if (this.#phase === 'closing') {
      this.#emitProgress();
      return;
    }
    const t = this.#total();
    const dt = (now - this.#lastProgressAt) / 1000;
    const rate = dt > 0 ? (t.held - this.#lastHeld) / dt : 0;
    if (t.held > this.#lastHeld) this.#lastGrowthAt = now;
    if (this.#phase === 'ramping' && t.held > this.#lastHeld) this.#rates.push(rate);
    const errors = Object.values(t.errors).reduce((a, b) => a + b, 0);
    let userBytes: number | null = null;
    if (now - this.#lastUserSample >= this.#userSampleEvery) {
      this.#lastUserSample = now;
      userBytes = this.#userBytes();
      const cost = performance.now() - now;
      this.#userSampleEvery = Math.max(USER_SAMPLE_MS, cost / USER_SAMPLE_COST_SHARE);
    }
    const kernelBytes = Math.max(0, kernelSocketBytes() - this.#kernelBefore);
    this.#timeline.push({ t: Math.round(now - this.#rampStart), held: t.held, rate: Math.round(rate), errors, errorsBy: t.errors, kernelBytes, userBytes });
    this.#lastHeld = t.held;
    this.#lastProgressAt = now;
    if (t.held > this.#peak) {
      this.#peak = t.held;
      this.#peakAt = now;
    }
    this.#emitProgress(t.held, rate, errors);
  }

  #emitProgress(held = this.#held, rate = 0, errors = 0): void {
    const accepted = this.#sink?.held ?? 0;
    const closing = this.#phase === 'closing' ? { leftToClose: this.#leftToClose() } : {};
    const p: ProbeProgress = { elapsedMs: performance.now() - this.#started, held, accepted, ratePerSec: rate, errors, phase: this.#phase, ...closing };
    this.emit('progress', p);
  }

  /**
   * Waits until every started client that is still alive has polled what it
   * holds since the ramp ended ('checked'), or CHECK_WAIT_MS plus a little
   * per connection has passed.
   */
  async #countHeld(): Promise<void> {
    if (this.#allCounted()) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CHECK_WAIT_MS + this.#held * CHECK_WAIT_US_PER_CONNECTION / 1000);
      this.#onChecked = () => {
        if (!this.#allCounted()) return;
        clearTimeout(timer);
        resolve();
      };
    });
    this.#onChecked = undefined;
  }

  /** Whether every started client still alive has answered 'checked'. */
  #allCounted(): boolean {
    return this.#clients.every((w) => w.exit || !this.#quotaOf.has(w) || this.#checked.has(w));
  }

  /** Waits for in-flight reports, then records the peak and its memory. */
  #measurePeak(): void {
    const t = this.#total();
    if (t.held >= this.#peak) {
      this.#peak = t.held;
      this.#peakAt = performance.now();
    } else if (this.#allCounted()) {
      // Samples during the ramp counted connections already reset, unseen until the clients
      // polled them all: what is held now is the best count there is.
      this.#peak = t.held;
    }
    this.#memory = { userBytes: this.#userBytes(), kernelBytes: Math.max(0, kernelSocketBytes() - this.#kernelBefore) };
    this.#measureOthers();
    this.#closeTimeline(performance.now(), t);
  }

  /** What other programs took during the ramp (CPU) and cached for the run's descriptors (/proc entries). */
  #measureOthers(): void {
    const now = cpuSnapshot();
    const ours = new Set([process.pid, ...[...this.#clients, ...(this.#sink?.workers ?? [])].map((w) => w.pid)]);
    const cpu = this.#cpuAtRamp && now ? othersCpu(this.#cpuAtRamp, now, ours) : null;
    const entries = procEntryBytes();
    const procEntries = entries !== null && this.#procEntriesBefore !== null ? Math.max(0, entries - this.#procEntriesBefore) : null;
    this.#others = { cpu, procEntryBytes: procEntries };
  }

  /**
   * The timeline's last ramp sample, at the peak: a ramp shorter than one
   * sampling period (or ending between two) still shows where it ended and
   * the errors that ended it. Not counted in the rate's median.
   */
  #closeTimeline(now: number, t: { held: number; errors: Readonly<Record<string, number>> }): void {
    const last = this.#timeline[this.#timeline.length - 1];
    // At the peak's time (never before the last sample): the point is the peak.
    const at = Math.max(last?.t ?? 0, Math.round((this.#peakAt || now) - this.#rampStart));
    if (last && last.held === t.held && at - last.t < PROGRESS_MS) return;
    const dt = (now - this.#lastProgressAt) / 1000;
    const rate = dt > 0 ? Math.max(0, (t.held - this.#lastHeld) / dt) : 0;
    const errors = Object.values(t.errors).reduce((a, b) => a + b, 0);
    this.#timeline.push({ t: at, held: t.held, rate: Math.round(rate), errors, errorsBy: t.errors, kernelBytes: this.#memory.kernelBytes, userBytes: this.#memory.userBytes });
    this.#lastHeld = t.held;
    this.#lastProgressAt = now;
  }

  /** PSS of the coordinator and every live worker. */
  #userBytes(): number {
    let user = pssBytes(process.pid);
    for (const w of [...this.#clients, ...(this.#sink?.workers ?? [])]) if (!w.exit) user += pssBytes(w.pid);
    return user;
  }

  async #hold(): Promise<void> {
    this.#phase = 'holding';
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, this.#o.holdS * 1000);
      const onSignal = (): void => {
        clearTimeout(t);
        resolve();
      };
      this.once('abort-hold', onSignal);
    });
  }

  /** Clients first (RST from the side that opened), then sinks, then the listeners. */
  async #closeAll(): Promise<void> {
    await this.#closeGroup(this.#clients);
    await this.#sink?.close(CLOSE_GRACE_MS);
    closeListeners(this.#listeners);
  }

  /**
   * Tells a group to close and waits until every process has exited: a
   * process that has exited has closed all its descriptors. One that does
   * not answer in CLOSE_GRACE_MS is killed, and still waited for (the kernel
   * closes its sockets on the way out).
   */
  async #closeGroup(group: WorkerHandle[]): Promise<void> {
    for (const w of group) if (!w.exit) w.send({ type: 'close' });
    await reap(group, CLOSE_GRACE_MS);
  }

  /** Sockets of the run still open while it closes: what the clients not yet closed hold, and the sink. */
  #leftToClose(): number {
    let n = this.#sink?.held ?? 0;
    for (const [w, s] of this.#stats) if (!this.#closedClients.has(w)) n += s.held;
    return n;
  }

  /** Sockets of this run still in the kernel's table: open ones, and TIME_WAIT. */
  #countRunSockets(): { left: number; timeWait: number } {
    const keys = new Set(this.#targets.map((t) => `${t.address}|${t.port}`));
    let left = 0;
    let timeWait = 0;
    scanProcNetTcp('/', (r) => {
      const mine = keys.has(`${r.remoteAddress}|${r.remotePort}`) || (r.state !== 10 && keys.has(`${r.localAddress}|${r.localPort}`));
      if (!mine) return;
      if (r.state === 6) timeWait++;
      else left++;
    });
    return { left, timeWait };
  }

  #machine(): Machine {
    const f = this.#facts;
    const range = factValue(f.portRange);
    return {
      kernel: factValue(f.kernelRelease),
      cpus: availableParallelism(),
      memoryBytes: factValue(f.memTotal),
      portRange: range ? `${range.lo}-${range.hi}` : null,
      nofile: factValue(f.nofile),
      node: process.version,
    };
  }

  /** Median and peak over the ramp's samples; a ramp shorter than one sample gets its average for both. */
  #rateSummary(held: number): ProbeResult['rate'] {
    const rampS = ((this.#peakAt || performance.now()) - this.#rampStart) / 1000;
    if (this.#rates.length < 2) {
      const avg = rampS > 0 && held > 0 ? Math.round(held / rampS) : null;
      return { median: avg, peak: avg, samples: this.#rates.map(Math.round) };
    }
    return { median: round(median(this.#rates)), peak: round(Math.max(...this.#rates)), samples: this.#rates.map(Math.round) };
  }

  #result(cleanup: { left: number; timeWait: number }, closeMs: number): ProbeResult {
    const t = this.#total();
    const o = this.#o;
    const stoppedBy = this.#stopReason ?? 'target';
    let limit: ProbeResult['limit'] = null;
    // A time bound that came after progress had stopped (no growth in its last second) with
    // failures is a limit too: the report names it rather than only the clock.
    const stalledAtTime = stoppedBy === 'time' && t.held < o.connections && this.#rampEndedAt - this.#lastGrowthAt >= TIME_STALL_MS;
    if (stoppedBy === 'limit' || stoppedBy === 'stall' || stalledAtTime) {
      const errno = this.#stopErrno ?? dominant(t.errors);
      if (errno) {
        const meaning = errnoMeaning(errno, o.strategy);
        limit = { id: meaning.constraint, errno, count: t.errors[errno] ?? 0, words: meaning.words };
      }
    }
    const ceiling = this.#limits.host;
    const predicted = ceiling.connections === null ? null : Math.min(o.connections, ceiling.connections);
    const held = this.#peak;
    const now = performance.now();
    const topOther = this.#others.cpu?.top;
    return {
      target: o.connections,
      held,
      predicted,
      ceiling,
      stoppedBy,
      limit,
      errors: t.errors,
      attempts: t.attempts,
      lost: t.lost,
      rate: this.#rateSummary(held),
      latency: { p50: capped(quantile(t.latency, 0.5), t.latencyMax), p99: capped(quantile(t.latency, 0.99), t.latencyMax), max: t.attempts ? t.latencyMax : null },
      latencyByOccupancy: occupancyCurve(t.byOccupancy),
      sourcePorts: sourcePortStats(this.#ports.values()),
      memory: {
        userBytes: this.#memory.userBytes,
        userBytesPerConnection: held ? Math.round(this.#memory.userBytes / held) : null,
        kernelBytes: this.#memory.kernelBytes,
        kernelBytesPerConnection: held ? Math.round(this.#memory.kernelBytes / held) : null,
      },
      cleanup,
      closeMs,
      others: {
        cpuShare: this.#others.cpu ? round3(this.#others.cpu.share) : null,
        top: topOther ? { pid: topOther.pid, name: topOther.name, cpuShare: round3(topOther.share) } : null,
        procEntryBytes: this.#others.procEntryBytes,
        procEntryBytesPerConnection: held && this.#others.procEntryBytes !== null ? Math.round(this.#others.procEntryBytes / held) : null,
      },
      destinations: this.#targets.map(fmtTarget),
      sources: o.from,
      strategy: o.strategy,
      workers: { clients: this.#clients.length, sinks: this.#sink?.workers.length ?? 0, died: this.#died },
      timeline: this.#timeline,
      heldPerWorker: this.#clients.filter((w) => this.#stats.has(w)).map((w) => this.#stats.get(w)?.held ?? 0),
      command: this.#o.command ?? [],
      machine: this.#machine(),
      rampMs: Math.round((this.#peakAt || now) - this.#rampStart),
      durationMs: Math.round(now - this.#started),
      limits: this.#limits,
    };
  }
}

/** A bucket's upper edge can pass the largest value seen; report no more than that. */
function capped(q: number | null, max: number): number | null {
  return q === null ? null : Math.min(q, max);
}

function factValue<T>(f: { known: boolean; value?: T }): T | null {
  return f.known ? (f.value as T) : null;
}

/** A share to three decimals (0.183 is 18.3%). */
function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function round(n: number | null): number | null {
  return n === null ? null : Math.round(n);
}

function dominant(errors: Record<string, number>): string | undefined {
  let best: string | undefined;
  for (const [k, v] of Object.entries(errors)) if (!best || v > errors[best]) best = k;
  return best;
}
