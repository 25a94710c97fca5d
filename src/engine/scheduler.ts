/**
 * The client workers of a run: starts them `parallel` at a time (with one
 * spare spawned ahead, so its start-up overlaps the others' ramp), gives
 * each its share of the target and of the destinations, relays full pools
 * between them, and keeps their latest counters.
 */
import type { Strategy } from '../model/strategy.js';
import { sumStats, type Totals } from './aggregate.js';
import { shareOf } from './plan.js';
import type { ClientConfig, ClientStats, FromWorker, Target } from './protocol.js';
import { reap, spawnWorker, type WorkerHandle } from './worker-pool.js';

/** Why one client's ramp ended. */
export type ClientOutcome = 'quota' | 'limit' | 'stopped' | 'nothing-left';

/** What the scheduler is told once. */
export interface SchedulerOptions {
  readonly connections: number;
  readonly strategy: Strategy;
  readonly reuseAddr: boolean;
  readonly from: readonly string[];
  /** The run's destinations; grows when the queue sink adds listeners (see `extend`). */
  readonly targets: Target[];
  /** Slots per target (the queue sink's accept queues), in order; null: no per-target cap. */
  readonly perTarget: number[] | null;
  readonly parallel: number;
  readonly concurrency: number;
  readonly rate: number;
  readonly connectTimeoutMs: number;
  readonly close: 'rst' | 'fin';
  readonly explicitPorts: string;
  readonly poolSize: number;
  readonly clientQuota: number;
  readonly plannedClients: number;
  /** Listening sockets the clients inherit to pace by their accept queues (accept sink); empty otherwise. */
  readonly paceFds: readonly number[];
  readonly backlog: number;
  readonly workerNofile?: number;
  /** A client dying: go on (hand its share to a new one) or end the run. */
  readonly onWorkerDeath: 'continue' | 'stop';
}

/** What the scheduler tells the coordinator. */
export interface SchedulerEvents {
  /** New counters arrived. */
  progress(): void;
  /** A client ended its ramp. */
  done(w: WorkerHandle, reason: ClientOutcome, errno: string | undefined): void;
  /** A client that was ramping or holding died. */
  died(w: WorkerHandle, held: number): void;
  /** A client has counted what it holds (after 'stop' or 'count'). */
  checked(): void;
  /**
   * The queue sink's slots of a dead client are spoiled (reset connections
   * stay in the accept queues): the coordinator opens listeners for
   * `slots` more connections and appends them to targets and perTarget.
   */
  extend(slots: number): void;
}

/** Starts, steers and counts the client workers. */
export class ClientScheduler {
  readonly #o: SchedulerOptions;
  readonly #on: SchedulerEvents;
  readonly workers: WorkerHandle[] = [];
  readonly #stats = new Map<WorkerHandle, ClientStats>();
  /** Holder processes each client reported (see client-worker.ts), by client. */
  readonly #holders = new Map<WorkerHandle, number[]>();
  readonly #quotaOf = new Map<WorkerHandle, number>();
  readonly #done = new Set<WorkerHandle>();
  readonly #checked = new Set<WorkerHandle>();
  readonly #closed = new Set<WorkerHandle>();
  readonly #excluded = new Map<string, string>();
  /** Clients spawned ahead of their start, so their boot overlaps other work. */
  readonly #spares: WorkerHandle[] = [];
  /** Connections promised to started clients (less the shares of dead ones). */
  #assigned = 0;
  /** Next free slot of the per-target slots (never goes back: a dead client's slots are spoiled). */
  #nextSlot = 0;
  #active = 0;
  #held = 0;
  #open = true;
  #closing = false;

  constructor(options: SchedulerOptions, events: SchedulerEvents) {
    this.#o = options;
    this.#on = events;
  }

  /** Connections held now, over every client. */
  get held(): number {
    return this.#held;
  }

  /** Clients ramping now. */
  get active(): number {
    return this.#active;
  }

  /** Whether the plan has connections left to hand out. */
  get unassigned(): boolean {
    return this.#assigned < this.#o.connections;
  }

  /** Totals of a run that started no client. */
  static empty(): Totals {
    return sumStats([]);
  }

  /** Every client's latest counters, summed. */
  totals(): Totals {
    return sumStats(this.#stats.values());
  }

  /** PIDs of every client and holder process still alive. */
  pids(): number[] {
    const out: number[] = [];
    for (const w of this.workers) {
      if (w.exit) continue;
      out.push(w.pid, ...(this.#holders.get(w) ?? []));
    }
    return out;
  }

  /** Holder processes reported by every client, dead or alive (the coordinator makes sure none outlives the run). */
  holderPids(): number[] {
    return [...this.#holders.values()].flat();
  }

  /** Connections each started client holds, in start order. */
  heldPerWorker(): number[] {
    return this.workers.filter((w) => this.#stats.has(w)).map((w) => this.#stats.get(w)?.held ?? 0);
  }

  /** Spawns the clients the plan needs now, before the ramp, so their start-up (a Node process, about 0.15 s) overlaps the coordinator's. */
  prespawn(): void {
    const n = Math.min(this.#o.parallel, this.#o.plannedClients);
    while (this.#spares.length < n) this.#spares.push(this.#spawn());
  }

  /** Starts the first `parallel` clients. */
  start(): void {
    for (let i = 0; i < this.#o.parallel; i++) this.next();
  }

  /** Starts the next client if the plan has a share left and starting is still allowed. */
  next(): void {
    const o = this.#o;
    if (!this.#open || this.#assigned >= o.connections) return;
    const want = Math.min(o.clientQuota, o.connections - this.#assigned);
    const share = shareOf(o.perTarget, o.targets.length, this.#nextSlot, want);
    if (share.quota <= 0) return;
    this.#nextSlot += share.quota;
    this.#assigned += share.quota;
    const w = this.#spares.shift() ?? this.#spawn();
    this.#quotaOf.set(w, share.quota);
    this.#active++;
    const perTarget = Math.round(this.#held / Math.max(1, o.targets.length));
    // --concurrency and --rate are for the whole run: shared by the clients that ramp at once.
    const ramping = Math.max(1, Math.min(o.parallel, o.plannedClients));
    const config: ClientConfig = {
      kind: 'client',
      index: w.index,
      workers: Math.max(o.plannedClients, 1),
      strategy: o.strategy,
      reuseAddr: o.reuseAddr,
      sources: o.from,
      targets: share.targets.map((t) => o.targets[t]),
      targetIds: share.targets,
      caps: share.caps,
      quota: share.quota,
      concurrency: Math.max(1, Math.ceil(o.concurrency / ramping)),
      rate: o.rate > 0 ? o.rate / ramping : 0,
      connectTimeoutMs: o.connectTimeoutMs,
      close: o.close,
      explicitPorts: o.explicitPorts,
      poolSize: o.poolSize,
      heldPerTarget: share.targets.map(() => perTarget),
      listeners: o.paceFds.length,
      backlog: o.backlog,
      nofile: o.workerNofile,
      excluded: [...this.#excluded.keys()],
    };
    w.send({ type: 'start', config });
    // Spawn the next one now, so its start-up overlaps this one's ramp.
    if (this.#assigned < o.connections && this.#spares.length === 0) this.#spares.push(this.#spawn());
  }

  /** No client starts from now on (the ramp has ended); each is told to stop and count what it holds. */
  stop(): void {
    this.#open = false;
    const live = this.workers.filter((c) => !c.exit);
    for (const c of live) c.send({ type: 'stop', clients: live.length });
  }

  /** Whether every started client still alive has counted what it holds since the last stop or recount. */
  allCounted(): boolean {
    return this.workers.every((w) => w.exit || !this.#quotaOf.has(w) || this.#checked.has(w));
  }

  /** Sockets the clients not yet closed still hold (while closing). */
  leftToClose(): number {
    let n = 0;
    for (const [w, s] of this.#stats) if (!this.#closed.has(w)) n += s.held;
    return n;
  }

  /**
   * Tells every client to close and waits until each has exited: a client
   * exits once its holders have, that is once the kernel has closed their
   * sockets. One that takes longer than `graceMs` plus `usPerConnection` for
   * each connection it held is killed (its holders then end too: their pipe
   * closes).
   */
  async close(graceMs: number, usPerConnection: number): Promise<void> {
    this.#closing = true;
    this.#open = false;
    for (const w of this.workers) if (!w.exit) w.send({ type: 'close' });
    let most = 0;
    for (const s of this.#stats.values()) most = Math.max(most, s.held);
    await reap(this.workers, graceMs + (most * usPerConnection) / 1000);
  }

  /** Kills every client and holder at once (a second Ctrl-C): the kernel closes their sockets, with RST (SO_LINGER 0 was set at creation). */
  kill(): void {
    this.#closing = true;
    this.#open = false;
    for (const pid of this.holderPids()) killPid(pid);
    for (const w of this.workers) if (!w.exit) w.child.kill('SIGKILL');
  }

  #spawn(): WorkerHandle {
    const w = spawnWorker('client', this.workers.length, this.#onMessage, this.#onExit, this.#o.paceFds);
    this.workers.push(w);
    return w;
  }

  #setStats(w: WorkerHandle, stats: ClientStats): void {
    this.#held += stats.held - (this.#stats.get(w)?.held ?? 0);
    this.#stats.set(w, stats);
  }

  #onMessage = (w: WorkerHandle, m: FromWorker): void => {
    switch (m.type) {
      case 'progress':
        this.#setStats(w, m.stats);
        this.#on.progress();
        break;
      case 'exhausted':
        if (!this.#excluded.has(m.key)) {
          this.#excluded.set(m.key, m.errno);
          for (const c of this.workers) if (c !== w && !c.exit) c.send({ type: 'exclude', key: m.key });
        }
        break;
      case 'holder':
        this.#holders.set(w, [...(this.#holders.get(w) ?? []), m.pid]);
        break;
      case 'checked':
        this.#setStats(w, m.stats);
        this.#checked.add(w);
        this.#on.checked();
        break;
      case 'closed':
        this.#closed.add(w);
        break;
      case 'done':
        this.#setStats(w, m.stats);
        this.#done.add(w);
        this.#active--;
        this.#on.done(w, m.reason, m.errno);
        break;
      default:
        break;
    }
  };

  #onExit = (w: WorkerHandle): void => {
    // Gone while closing, said so or not: the kernel closed what it held on the way out.
    if (this.#closing) {
      this.#closed.add(w);
      this.#on.checked();
      return;
    }
    if (this.#spares.includes(w)) {
      this.#spares.splice(this.#spares.indexOf(w), 1);
      return;
    }
    // Its holders end with it (their pipe closed); make sure, by PID.
    for (const pid of this.#holders.get(w) ?? []) killPid(pid);
    const s = this.#stats.get(w);
    const held = s?.held ?? 0;
    // Its descriptors died with it; it holds nothing now.
    if (s) this.#setStats(w, { ...s, held: 0, pending: 0, lost: s.lost + s.held });
    const wasActive = this.#quotaOf.has(w) && !this.#done.has(w);
    if (wasActive) this.#active--;
    if (this.#quotaOf.has(w)) {
      // Its share goes to a new client; the queue sink's slots it used are spoiled (reset connections wait in the queues).
      const quota = this.#quotaOf.get(w) ?? 0;
      this.#quotaOf.delete(w);
      if (this.#open && this.#o.onWorkerDeath === 'continue') {
        this.#assigned -= quota;
        if (this.#o.perTarget) this.#on.extend(quota);
      }
    }
    // A client gone while the others count what they hold: no answer will come from it.
    this.#on.checked();
    this.#on.died(w, held);
  };
}

/** SIGKILL to a process of the run, by PID; one already gone is fine. */
export function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}
