/**
 * The coordinator: plans the run (plan.ts), opens the embedded sink's
 * listeners, ramps client workers (scheduler.ts) up to the target, a time
 * bound, a limit or a signal, measures at the peak (sampler.ts), holds,
 * closes everything and checks that nothing is left, then builds the result
 * (result.ts). Its phases are an explicit state machine (run-state.ts).
 * Emits 'progress'; run() resolves with the result.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { readKernelFacts, readOccupants, type KernelFacts } from '../kernel/facts.js';
import * as ffi from '../kernel/ffi.js';
import { TCP_ESTABLISHED, TCP_LISTEN, TCP_TIME_WAIT } from '../kernel/linux.js';
import { scanProcNetTcp } from '../kernel/proc-net-tcp.js';
import { scanSockets } from '../kernel/socket-table.js';
import { FfiUnavailableError, InvalidArgumentError } from '../errors.js';
import { familyOf } from '../model/address.js';
import { computeLimits, ephemeralPool, explicitStart, type Limits } from '../model/limits.js';
import { explicitPorts, occupantFilter } from '../model/pool.js';
import { strategySpec } from '../model/strategy.js';
import { PortSet } from '../model/port-set.js';
import { closeListeners, fmtTarget, ListenError, openFreeListeners, openListener, type Listener } from './listeners.js';
import { validateProbeOptions, type ProbeOptions } from './options.js';
import { planRun, spreadSlots, MAX_SINK_LISTENERS, MAX_TARGETS, type RunPlan } from './plan.js';
import type { Target } from './protocol.js';
import { buildResult, type DeadWorker, type Machine, type ProbeResult, type StopReason } from './result.js';
import { canTransition, transition, type Phase, type PhaseEvent } from './run-state.js';
import { Sampler, SAMPLE_MS } from './sampler.js';
import { ClientScheduler, killPid, type ClientOutcome } from './scheduler.js';
import { holdCheckInterval } from './worker-common.js';
import { SinkPool } from './sink-pool.js';
import { reap, type WorkerHandle } from './worker-pool.js';

export { defaultDuration, PROBE_DEFAULTS, validateProbeOptions, type ProbeOptions } from './options.js';
export type { DeadWorker, Machine, ProbeResult, StopReason } from './result.js';
export type { Sample } from './sampler.js';
export type { Phase } from './run-state.js';

/** A live snapshot for the progress line. */
export interface ProbeProgress {
  readonly elapsedMs: number;
  readonly held: number;
  /** The server's end: connections the sink holds (accepted, or waiting in the queue sink's accept queues). */
  readonly accepted: number;
  readonly ratePerSec: number;
  readonly errors: number;
  readonly phase: Phase;
  /** While closing: sockets of the run still open, both ends counted (the workers report as each one finishes). */
  readonly leftToClose?: number;
}

/** No growth for this long while clients ramp: the run has stopped on a limit. */
const STALL_MS = 5000;
/** How long to wait for the clients' count of what they hold once the ramp is over: this much... */
const CHECK_WAIT_MS = 2000;
/** ...plus this per connection held (one poll of 20,000 descriptors takes about 7 ms here). */
const CHECK_WAIT_US_PER_CONNECTION = 2;
/** How long a worker may take to close its descriptors before it is killed... */
const CLOSE_GRACE_MS = 1500;
/** ...plus this per connection it held (the kernel closes about one per 10 µs per core here: bench/RESULTS.md). */
const CLOSE_US_PER_CONNECTION = 40;

/** One probe (or load) run. */
export class Probe extends EventEmitter {
  readonly #o: ProbeOptions;
  #phase: Phase = 'starting';
  #facts!: KernelFacts;
  #limits!: Limits;
  #plan!: RunPlan;
  #targets: Target[] = [];
  #perTarget: number[] | null = null;
  #listeners: Listener[] = [];
  #clients: ClientScheduler | undefined;
  #sink: SinkPool | undefined;
  readonly #sampler = new Sampler();
  readonly #died: DeadWorker[] = [];
  readonly #abort = new AbortController();
  #interrupted: string | null = null;
  #stopReason: StopReason | undefined;
  #stopErrno: string | undefined;
  #started = 0;
  /** When the ramp began, Unix milliseconds: the shards of a run line up their timelines on it. */
  #rampStartUnixMs = 0;
  #rampEndedAt = 0;
  #rampEnded: (() => void) | undefined;
  #onCounted: (() => void) | undefined;
  #ticker: NodeJS.Timeout | undefined;
  /** Source ports of the held connections, as [port, count, ...] pairs, from the kernel's table after the ramp. */
  #portPairs: number[] = [];
  /** Connections the clients opened that the kernel's table no longer had when the ramp ended. */
  #lostHolding = 0;
  /** Why held is the clients' count rather than the kernel's, when it is. */
  #unverified: string | null = null;
  /** Connections lost since the peak (while holding), as the kernel's table says. */
  #lostSincePeak = 0;

  /** Checks the options (InvalidArgumentError naming the bad one); nothing starts until run(). */
  constructor(options: ProbeOptions) {
    super();
    validateProbeOptions(options);
    this.#o = options;
  }

  /** Where the run is. */
  get phase(): Phase {
    return this.#phase;
  }

  /**
   * Ends the run now (SIGINT, SIGTERM, SIGHUP): the ramp or the hold stops,
   * the clients count what they hold, and the run closes everything and
   * resolves, saying it was interrupted.
   */
  abort(signal = 'SIGINT'): void {
    this.#interrupted ??= signal;
    this.#endRamp('signal');
    this.#abort.abort();
  }

  /**
   * Kills every worker at once and closes the listeners (a second Ctrl-C):
   * the kernel closes their sockets with RST, since SO_LINGER 0 was set on
   * each at creation. run() will not resolve with a useful result after it.
   */
  kill(): void {
    this.#clients?.kill();
    for (const w of this.#sink?.workers ?? []) if (!w.exit) w.child.kill('SIGKILL');
    closeListeners(this.#listeners);
  }

  /** --start-at: waits (a signal ends the wait) until the run's shards all ramp together. */
  async #waitForStart(): Promise<void> {
    const at = this.#o.startAt;
    if (at === undefined) return;
    const ms = at - Date.now();
    if (ms <= 0 || this.#abort.signal.aborted) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      const stop = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.#abort.signal.addEventListener('abort', stop, { once: true });
    });
  }

  /** Runs to the end; always closes what it opened. */
  async run(): Promise<ProbeResult> {
    if (!ffi.ffiAvailable()) throw new FfiUnavailableError(ffi.ffiUnavailableReason() ?? 'unknown reason');
    this.#started = performance.now();
    this.#facts = readKernelFacts();
    try {
      this.#planRun();
      this.#makeClients();
      const timeWaitBefore = this.#countRunSockets().timeWait;
      this.#sampler.baseline();
      await this.#startSinks();
      await this.#waitForStart();
      this.#rampStartUnixMs = Date.now();
      this.#move('ramp');
      await this.#ramp();
      await this.#countHeld();
      const peak = this.#kernelCount(true);
      // What the clients opened that the kernel no longer holds: reset or closed by the peer during the ramp.
      this.#lostHolding = Math.max(0, (this.#clients?.held ?? 0) - peak.held);
      this.#sampler.measurePeak(performance.now(), { ...this.#totals(), held: peak.held }, true, this.#pids(), this.#rampEndedAt);
      if (this.#o.holdS > 0 && !this.#abort.signal.aborted) {
        this.#move('hold');
        await this.#hold(peak.ms);
        // What is held as the hold ends (its time, or a signal): the kernel's count now.
        this.#lostSincePeak = Math.max(0, this.#sampler.peak - this.#kernelCount(false).held);
      }
      this.#move('close');
      this.#emitProgress();
      const closeStart = performance.now();
      await this.#closeAll();
      const after = this.#countRunSockets();
      const closeMs = Math.round(performance.now() - closeStart);
      this.#move('finish');
      return this.#result({ left: after.left, timeWait: Math.max(0, after.timeWait - timeWaitBefore) }, closeMs);
    } finally {
      clearInterval(this.#ticker);
      closeListeners(this.#listeners);
      await reap([...(this.#clients?.workers ?? []), ...(this.#sink?.workers ?? [])], CLOSE_GRACE_MS);
      await this.#reapHolders();
      if (canTransition(this.#phase, 'close')) this.#move('close');
      if (this.#phase === 'closing') this.#move('finish');
    }
  }

  #move(event: PhaseEvent): void {
    this.#phase = transition(this.#phase, event);
  }

  /** Destinations, sink and listeners, workers: the plan, then the listeners it asks for. */
  #planRun(): void {
    const o = this.#o;
    const nofile = ffi.getNofileLimit();
    // Count before expanding: a range of addresses times a range of ports can be huge.
    const count = o.to.reduce((n, e) => n + e.addresses.length * e.ports.size, 0);
    const max = o.sink ? MAX_SINK_LISTENERS : MAX_TARGETS;
    if (count > max) throw new InvalidArgumentError(`--to names ${count.toLocaleString('en-US')} destinations: at most ${max.toLocaleString('en-US')}${o.sink ? ' for the embedded sink' : ''}`);
    const named: Target[] = [];
    const seen = new Set<string>();
    for (const e of o.to) {
      for (const address of e.addresses) {
        for (const port of e.ports) {
          const t = { address, port };
          const key = fmtTarget(t);
          if (seen.has(key)) throw new InvalidArgumentError(`${key} is named twice in --to`);
          seen.add(key);
          named.push(t);
        }
      }
    }
    try {
      this.#plan = planRun({ facts: this.#facts, connections: o.connections, strategy: o.strategy, from: o.from, targets: named, embeddedSink: o.sink, sinkMode: o.sinkMode, nofileHard: nofile.hard, parallel: o.parallel });
    } catch (err) {
      if (err instanceof RangeError) throw new InvalidArgumentError(err.message);
      throw err;
    }
    const plan = this.#plan;
    const rst = o.close === 'rst';
    if (plan.listen) {
      const { address, count: n, from, avoid } = plan.listen;
      this.#listeners = openFreeListeners(address, n, from, (p) => avoid.has(p), plan.backlog, rst);
    } else if (o.sink) {
      for (const t of named) {
        const l = openListener(t, plan.backlog, rst);
        if (l instanceof ListenError) {
          closeListeners(this.#listeners);
          const hint = l.errno === 'EADDRNOTAVAIL' ? ' (the embedded sink listens on this host; use fourtuple load for a remote server)' : l.errno === 'EADDRINUSE' ? ' (already in use; use fourtuple load to connect to the server there)' : '';
          throw new InvalidArgumentError(`cannot listen on ${fmtTarget(t)} in --to: ${l.errno}${hint}`);
        }
        this.#listeners.push(l);
      }
    }
    this.#targets = this.#listeners.length ? this.#listeners.map(({ address, port }) => ({ address, port })) : named;
    this.#perTarget = plan.perListener === null ? null : spreadSlots(o.connections, this.#targets.length, plan.perListener);
    const fam = familyOf(this.#targets[0].address);
    for (const s of o.from) {
      if (familyOf(s) !== fam) throw new InvalidArgumentError(`source address '${s}' in --from is not of the destinations' family (IPv${fam})`);
    }
    this.#limits = this.#model();
  }

  #model(): Limits {
    const byAddr = new Map<string, number[]>();
    for (const t of this.#targets) byAddr.set(t.address, [...(byAddr.get(t.address) ?? []), t.port]);
    const destinations = [...byAddr].map(([a, ports]) => ({ addresses: [a], ports: PortSet.of(...ports) }));
    const localAddresses = this.#facts.interfaces.known ? this.#facts.interfaces.value.map((i) => i.address) : [];
    const queue = this.#plan.sink === 'queue' ? { perListener: this.#plan.perListener ?? 0, listeners: this.#plan.listen ? null : this.#targets.length } : undefined;
    // The facts were read before the probe opened its listeners, which sit below the ephemeral range anyway.
    const occupants = readOccupants(occupantFilter(this.#o.strategy, this.#o.from, destinations));
    return computeLimits({ facts: this.#facts, strategy: this.#o.strategy, reuseAddr: this.#o.reuseAddr !== false, sources: this.#o.from, destinations, localAddresses, acceptQueue: queue, occupants });
  }

  /** The client scheduler for the plan; its first clients are spawned at once, to boot while the coordinator prepares. */
  #makeClients(): void {
    const o = this.#o;
    const pool = ephemeralPool(this.#facts)?.size ?? 0;
    // Every port bind() may take: the workers skip the ones it refuses (a listener on the same address), as the model counts them.
    const explicit = strategySpec(o.strategy).portPickedBy === 'program' ? explicitPorts(explicitStart(this.#facts)) : null;
    this.#clients = new ClientScheduler(
      {
        connections: o.connections,
        strategy: o.strategy,
        reuseAddr: o.reuseAddr !== false,
        from: o.from,
        targets: this.#targets,
        perTarget: this.#perTarget,
        parallel: o.parallel,
        concurrency: o.concurrency,
        rate: o.rate,
        connectTimeoutMs: o.connectTimeoutMs,
        close: o.close,
        explicitPorts: explicit ? explicit.toString() : '',
        poolSize: explicit ? explicit.size : pool,
        clientQuota: this.#plan.clientQuota,
        plannedClients: this.#plan.clients,
        paceFds: this.#plan.pace ? this.#listeners.map((l) => l.fd) : [],
        backlog: this.#plan.backlog,
        workerNofile: o.workerNofile,
        onWorkerDeath: o.onWorkerDeath,
      },
      {
        progress: () => this.#checkTarget(),
        done: (_w, reason, errno) => this.#onClientDone(reason, errno),
        died: (w, held) => this.#onClientDied(w, held),
        checked: () => this.#onCounted?.(),
        extend: (slots) => this.#extend(slots),
      },
    );
    this.#clients.prespawn();
  }

  /** The accept sink's workers; the queue sink has none (its listeners are the coordinator's). */
  async #startSinks(): Promise<void> {
    if (this.#plan.sink !== 'accept') return;
    const pool = new SinkPool({ listeners: this.#listeners, capacity: this.#o.connections, close: this.#o.close });
    this.#sink = pool;
    pool.on('died', (w: WorkerHandle, held: number) => {
      if (this.#phase === 'closing' || this.#phase === 'done') return;
      this.#died.push({ kind: 'sink', pid: w.pid, signal: w.exit?.signal ?? null, code: w.exit?.code ?? null, held });
    });
    await pool.start();
  }

  #ramp(): Promise<void> {
    const o = this.#o;
    const now = performance.now();
    this.#sampler.begin(now);
    const done = new Promise<void>((resolve) => (this.#rampEnded = resolve));
    if (this.#stopReason) this.#rampEnded?.();
    const deadline = now + o.durationS * 1000;
    this.#ticker = setInterval(() => {
      const t = performance.now();
      this.#tick(t);
      if (this.#phase !== 'ramping') return;
      if (t >= deadline) this.#endRamp('time');
      else if (t - this.#sampler.lastGrowthAt > STALL_MS && (this.#clients?.active ?? 0) > 0) this.#endRamp('stall');
    }, SAMPLE_MS);
    if (!this.#stopReason) this.#clients?.start();
    return done;
  }

  /**
   * The queue sink's slots of a dead client are spoiled (the reset
   * connections wait in the accept queues until the listener closes): open
   * listeners for as many more, appended to the destinations.
   */
  #extend(slots: number): void {
    const plan = this.#plan;
    if (!plan.listen || !plan.perListener || !this.#perTarget) return;
    const last = this.#listeners[this.#listeners.length - 1]?.port ?? plan.listen.from;
    const n = Math.ceil(slots / plan.perListener);
    try {
      const more = openFreeListeners(plan.listen.address, n, last + 1, (p) => plan.listen?.avoid.has(p) ?? false, plan.backlog, this.#o.close === 'rst');
      this.#listeners.push(...more);
      this.#targets.push(...more.map(({ address, port }) => ({ address, port })));
      this.#perTarget.push(...spreadSlots(slots, more.length, plan.perListener));
    } catch {
      // No free port left: the dead client's share is not handed on; the run ends below its target.
    }
  }

  #onClientDone(reason: ClientOutcome, errno: string | undefined): void {
    if (this.#phase !== 'ramping') return;
    if (reason === 'limit') return this.#endRamp('limit', errno);
    // A client that tried every port of its own ends its share; one the kernel refused ends the run.
    if (reason === 'nothing-left' && strategySpec(this.#o.strategy).portPickedBy !== 'program') return this.#endRamp('limit', errno);
    if (this.#checkTarget()) return;
    this.#clients?.next();
    if ((this.#clients?.active ?? 0) === 0) this.#endRamp(reason === 'nothing-left' || this.#clients?.unassigned ? 'limit' : 'target', errno);
  }

  #onClientDied(w: WorkerHandle, held: number): void {
    if (this.#phase === 'closing' || this.#phase === 'done') return;
    this.#died.push({ kind: 'client', pid: w.pid, signal: w.exit?.signal ?? null, code: w.exit?.code ?? null, held });
    if (this.#phase !== 'ramping') return;
    if (this.#o.onWorkerDeath === 'stop') this.#endRamp('worker-died');
    else this.#clients?.next();
  }

  #checkTarget(): boolean {
    if (this.#phase !== 'ramping' || !this.#clients) return false;
    if (this.#clients.held >= this.#o.connections) {
      this.#endRamp('target');
      return true;
    }
    return false;
  }

  #endRamp(reason: StopReason, errno?: string): void {
    if (this.#stopReason) return;
    this.#stopReason = reason;
    this.#stopErrno = errno;
    this.#rampEndedAt = performance.now();
    this.#clients?.stop();
    this.#rampEnded?.();
  }

  #totals() {
    return this.#clients?.totals() ?? ClientScheduler.empty();
  }

  #tick(now: number): void {
    if (this.#phase === 'closing') {
      this.#emitProgress();
      return;
    }
    const ramping = this.#phase === 'ramping';
    // While holding, what is held is the kernel's count at the peak less what its table has lost since.
    const t = ramping ? this.#totals() : { ...this.#totals(), held: Math.max(0, this.#sampler.peak - this.#lostSincePeak) };
    const { rate, errors } = this.#sampler.sample(now, t, ramping, () => this.#pids());
    this.#emitProgress(t.held, rate, errors);
  }

  /** The server's end now: the accept sink's count, or what waits in the queue sink's accept queues (from the kernel). */
  #serverHeld(): number {
    if (this.#sink) return this.#sink.held;
    if (this.#plan?.sink !== 'queue') return 0;
    let n = 0;
    for (const l of this.#listeners) n += Math.max(0, ffi.listenQueue(l.fd));
    return n;
  }

  #emitProgress(held = this.#clients?.held ?? 0, rate = 0, errors = 0): void {
    const closing = this.#phase === 'closing' ? { leftToClose: (this.#clients?.leftToClose() ?? 0) + this.#serverHeld() } : {};
    const p: ProbeProgress = { elapsedMs: performance.now() - this.#started, held, accepted: this.#serverHeld(), ratePerSec: rate, errors, phase: this.#phase, ...closing };
    this.emit('progress', p);
  }

  /**
   * Waits until every started client still alive has polled what it holds
   * ('checked'), or CHECK_WAIT_MS plus a little per connection has passed.
   */
  async #countHeld(): Promise<void> {
    const clients = this.#clients;
    if (!clients || clients.allCounted()) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CHECK_WAIT_MS + (clients.held * CHECK_WAIT_US_PER_CONNECTION) / 1000);
      this.#onCounted = () => {
        if (!clients.allCounted()) return;
        clearTimeout(timer);
        resolve();
      };
    });
    this.#onCounted = undefined;
  }

  /**
   * The hold: its time, or until a signal. Meanwhile the kernel's table says
   * whether connections were lost (a peer reset or closed them): every 2 s,
   * or spaced by the scan's cost (`scanMs`) to stay within 2% of a core.
   */
  async #hold(scanMs: number): Promise<void> {
    const signal = this.#abort.signal;
    if (signal.aborted) return;
    let check: NodeJS.Timeout | undefined;
    const schedule = (ms: number): void => {
      check = setTimeout(() => {
        const now = this.#kernelCount(false);
        this.#lostSincePeak = Math.max(0, this.#sampler.peak - now.held);
        schedule(now.ms);
      }, holdCheckInterval(ms, 1));
    };
    schedule(scanMs);
    await new Promise<void>((resolve) => {
      const onAbort = (): void => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, this.#o.holdS * 1000);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    clearTimeout(check);
  }

  /**
   * The kernel's count of the run's connections: established sockets toward
   * the destinations (the clients' ends), at most what the clients say they
   * opened (for load, other programs of this host may talk to the same
   * server). With `ports`, their source ports too.
   */
  #kernelCount(ports: boolean): { held: number; ms: number } {
    const started = performance.now();
    const byPort = new Map<number, Set<string>>();
    for (const t of this.#targets) {
      let set = byPort.get(t.port);
      if (!set) byPort.set(t.port, (set = new Set()));
      set.add(t.address);
    }
    const count = ports ? new Uint32Array(65536) : null;
    let held = 0;
    const scan = scanSockets(
      (r) => {
        const addrs = byPort.get(r.remotePort);
        if (addrs === undefined || !addrs.has(r.remoteAddress)) return;
        held++;
        if (count) count[r.localPort]++;
      },
      { states: new Set([TCP_ESTABLISHED]), unreadBytes: false },
    );
    // A table that could not be read at all (ENFILE past fs.file-max, say): the clients' own count stands, and the report says so.
    if (scan.rows === 0 && scan.errors.length > 0) {
      this.#unverified = `the kernel's socket table could not be read (${scan.errors.join('; ')}): held is what the clients opened`;
      return { held: this.#clients?.held ?? 0, ms: performance.now() - started };
    }
    if (count) {
      const pairs: number[] = [];
      for (let p = 0; p < 65536; p++) if (count[p]) pairs.push(p, count[p]);
      this.#portPairs = pairs;
    }
    return { held: Math.min(held, this.#clients?.held ?? held), ms: performance.now() - started };
  }

  /** Holders are the clients' children and end with them; any still alive now (a client killed) is killed by PID and waited for. */
  async #reapHolders(): Promise<void> {
    const pids = this.#clients?.holderPids() ?? [];
    const deadline = performance.now() + 60_000;
    for (;;) {
      const alive = pids.filter(isAlive);
      if (alive.length === 0 || performance.now() > deadline) return;
      for (const pid of alive) killPid(pid);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Everything at once, so the kernel's teardown runs on every core: the
   * clients and the accept sink's workers are told to close (their holders
   * die, each in its own process), and meanwhile the coordinator closes the
   * listeners, which resets what waits in their queues. Resolves when every
   * process of the run has exited.
   */
  async #closeAll(): Promise<void> {
    const clients = this.#clients?.close(CLOSE_GRACE_MS, CLOSE_US_PER_CONNECTION);
    const sinks = this.#sink?.close(CLOSE_GRACE_MS);
    // Let the 'close' messages go out before the listeners' teardown holds this thread.
    await new Promise((r) => setImmediate(r));
    closeListeners(this.#listeners);
    await clients;
    await sinks;
  }

  /** PIDs of the coordinator and every live worker and holder. */
  #pids(): number[] {
    const out = [process.pid, ...(this.#clients?.pids() ?? [])];
    for (const w of this.#sink?.workers ?? []) if (!w.exit) out.push(w.pid);
    return out;
  }

  /** Sockets of this run still in the kernel's table: open ones, and TIME_WAIT. */
  #countRunSockets(): { left: number; timeWait: number } {
    const keys = new Set(this.#targets.map((t) => `${t.address}|${t.port}`));
    let left = 0;
    let timeWait = 0;
    scanProcNetTcp('/', (r) => {
      const mine = keys.has(`${r.remoteAddress}|${r.remotePort}`) || (r.state !== TCP_LISTEN && keys.has(`${r.localAddress}|${r.localPort}`));
      if (!mine) return;
      if (r.state === TCP_TIME_WAIT) timeWait++;
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

  #result(cleanup: { left: number; timeWait: number }, closeMs: number): ProbeResult {
    const s = this.#sampler;
    const now = performance.now();
    const clients = this.#clients;
    return buildResult({
      target: this.#o.connections,
      strategy: this.#o.strategy,
      sources: this.#o.from,
      destinations: this.#targets.map(fmtTarget),
      limits: this.#limits,
      stoppedBy: this.#stopReason,
      stopErrno: this.#stopErrno,
      interrupted: this.#interrupted,
      rampEndedAt: this.#rampEndedAt,
      lastGrowthAt: s.lastGrowthAt,
      totals: { ...this.#totals(), lost: this.#totals().lost + this.#lostHolding + this.#lostSincePeak },
      peak: s.peak,
      peakAt: s.peakAt,
      rampStart: s.rampStart,
      startedAt: this.#started,
      now,
      rate: s.rateSummary(s.peak, now),
      memory: s.memory,
      others: s.others,
      ports: [this.#portPairs],
      cleanup,
      closeMs,
      sink: { mode: this.#plan.sink, why: this.#plan.sinkWhy, listeners: this.#o.sink ? this.#targets.length : 0 },
      workers: { clients: clients?.workers.length ?? 0, holders: clients?.holderPids().length ?? 0, sinks: this.#sink?.workers.length ?? 0, died: this.#died },
      timeline: s.timeline,
      heldPerWorker: clients?.heldPerWorker() ?? [],
      heldBy: this.#unverified === null ? { source: 'kernel' } : { source: 'clients', why: this.#unverified },
      run: this.#o.shard ? { id: this.#o.shard.runId, shard: this.#o.shard.index, shards: this.#o.shard.count } : null,
      rampStartUnixMs: this.#rampStartUnixMs,
      command: this.#o.command ?? [],
      machine: this.#machine(),
    });
  }
}

/** Whether a process is alive and not a zombie (a zombie holds no descriptors). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function factValue<T>(f: { known: boolean; value?: T }): T | null {
  return f.known ? (f.value as T) : null;
}
