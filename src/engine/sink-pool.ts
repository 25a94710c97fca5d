/**
 * The sink's worker processes: each accepts from the shared listeners until
 * it holds its share of the open-files limit, then the next one starts. Only
 * a few accept at once, so a connection wakes a few processes, not every sink
 * of a million-connection run; one spare is spawned ahead so its start-up
 * overlaps the others' work.
 */
import { EventEmitter } from 'node:events';
import * as ffi from '../kernel/ffi.js';
import { EngineError } from '../errors.js';
import type { Listener } from './listeners.js';
import { FD_RESERVE } from './plan.js';
import type { FromWorker, SinkConfig } from './protocol.js';
import { reap, spawnWorker, type WorkerHandle } from './worker-pool.js';

/** Sink workers accepting at the same time. */
const ACTIVE_SINKS = 2;

/** What a sink pool is asked to do. */
export interface SinkPoolOptions {
  readonly listeners: readonly Listener[];
  /** Connections the pool should be able to hold (more workers start only up to this). */
  readonly capacity: number;
  readonly close: 'rst' | 'fin';
  /**
   * Accept at most this many connections over all workers, then stop
   * accepting: the listen queue fills and further SYNs are dropped, as at a
   * server at its own capacity. No cap when omitted.
   */
  readonly limit?: number;
  /** Workers close what the peer closed and accept again up to their share (see SinkConfig.watchHeld). */
  readonly watchHeld?: boolean;
}

/**
 * Emits 'died' (worker, heldBeforeDeath) when a sink worker exits before
 * close(), and 'accepted' (total) as counts arrive.
 */
export class SinkPool extends EventEmitter {
  readonly #o: SinkPoolOptions;
  readonly workers: WorkerHandle[] = [];
  readonly #held = new Map<WorkerHandle, number>();
  readonly #full = new Set<WorkerHandle>();
  #quota = 0;
  #started = 0;
  /** Connections promised to the workers started so far (their quotas). */
  #assigned = 0;
  readonly #quotaOf = new Map<WorkerHandle, number>();
  #spare: WorkerHandle | undefined;
  #closing = false;
  readonly #errors = new Map<WorkerHandle, Readonly<Record<string, number>>>();
  #peak = 0;

  constructor(options: SinkPoolOptions) {
    super();
    this.#o = options;
  }

  /** Connections each worker holds at most. */
  get quota(): number {
    return this.#quota;
  }

  /** Connections held by every sink worker now. */
  get held(): number {
    let n = 0;
    for (const v of this.#held.values()) n += v;
    return n;
  }

  /** The most connections held at once so far. */
  get peak(): number {
    return this.#peak;
  }

  /** accept() failures by errno (EMFILE, ENFILE, ...), summed over the workers' last reports. */
  get errors(): Record<string, number> {
    const sum: Record<string, number> = {};
    for (const e of this.#errors.values()) for (const [k, v] of Object.entries(e)) sum[k] = (sum[k] ?? 0) + v;
    return sum;
  }

  /** Starts the first workers and resolves when they accept. */
  async start(): Promise<void> {
    const nofile = ffi.getNofileLimit();
    this.#quota = Math.max(1, nofile.hard - FD_RESERVE - this.#o.listeners.length);
    const first: WorkerHandle[] = [];
    for (let i = 0; i < ACTIVE_SINKS; i++) {
      const w = this.#activate();
      if (w) first.push(w);
    }
    await Promise.all(first.map(whenReady));
  }

  #spawn(): WorkerHandle {
    const w = spawnWorker('sink', this.workers.length, this.#onMessage, this.#onExit, this.#o.listeners.map((l) => l.fd));
    this.workers.push(w);
    return w;
  }

  /** Starts the next worker accepting; undefined when the limit is already promised to the running ones. */
  #activate(): WorkerHandle | undefined {
    const left = this.#o.limit === undefined ? this.#quota : Math.min(this.#quota, this.#o.limit - this.#assigned);
    if (left <= 0) return undefined;
    const w = this.#spare ?? this.#spawn();
    this.#spare = undefined;
    this.#started++;
    this.#assigned += left;
    this.#quotaOf.set(w, left);
    const config: SinkConfig = { kind: 'sink', index: w.index, listeners: this.#o.listeners.length, quota: left, close: this.#o.close, watchHeld: this.#o.watchHeld };
    w.send({ type: 'start', config });
    const more = this.#o.limit === undefined || this.#assigned < this.#o.limit;
    if (more && this.#started * this.#quota < this.#o.capacity + this.#quota) this.#spare = this.#spawn();
    return w;
  }

  #onMessage = (w: WorkerHandle, m: FromWorker): void => {
    // Closed: it holds nothing now (`held` counts down while the run closes).
    if (m.type === 'closed') this.#held.set(w, 0);
    if (m.type !== 'accepted') return;
    this.#held.set(w, m.held);
    this.#errors.set(w, m.errors);
    this.#peak = Math.max(this.#peak, this.held);
    if (m.full && !this.#full.has(w)) {
      this.#full.add(w);
      if (!this.#closing) this.#activate();
    }
    this.emit('accepted', this.held);
  };

  #onExit = (w: WorkerHandle): void => {
    const held = this.#held.get(w) ?? 0;
    // Its connections are gone with it, closing or not.
    this.#held.set(w, 0);
    if (this.#closing) return;
    if (w === this.#spare) {
      this.#spare = undefined;
      return;
    }
    this.emit('died', w, held);
    // Its connections are gone with it: its share of the limit goes to the next worker.
    this.#assigned -= this.#quotaOf.get(w) ?? 0;
    // An accepting worker is gone: let another take its place.
    if (!this.#full.has(w)) this.#activate();
  };

  /** Closes every held connection (RST unless 'fin') and waits for every worker to exit. */
  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    for (const w of this.workers) if (!w.exit) w.send({ type: 'close' });
    await reap(this.workers, graceMs);
  }
}

/** Resolves on a worker's 'ready', rejects if it exits first. */
export function whenReady(w: WorkerHandle): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: FromWorker): void => {
      if (m.type === 'ready') {
        w.child.off('message', onMsg);
        resolve();
      }
    };
    w.child.on('message', onMsg);
    w.child.once('exit', (code, signal) => reject(new EngineError(`${w.kind} worker ${w.pid} exited at start (${signal ?? `code ${code}`})`)));
  });
}
