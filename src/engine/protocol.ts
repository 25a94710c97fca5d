/**
 * Messages between the coordinator and its worker processes, as
 * discriminated unions. Workers report cumulative counters, so a lost or
 * late message never double-counts.
 */
import type { Strategy } from '../model/strategy.js';

/** One destination a client connects to. */
export interface Target {
  readonly address: string;
  readonly port: number;
}

/** What a client worker is told at start. */
export interface ClientConfig {
  readonly kind: 'client';
  readonly index: number;
  /** Workers in the plan (explicit strategy: this worker takes every index % workers == index source port). */
  readonly workers: number;
  readonly strategy: Strategy;
  /** SO_REUSEADDR before bind(ip, 0) (strategy bind). */
  readonly reuseAddr: boolean;
  readonly sources: readonly string[];
  /** The destinations this worker connects to (its share of the run's). */
  readonly targets: readonly Target[];
  /** Their indices among the run's destinations: pool keys use these, so every worker names a pool alike. */
  readonly targetIds: readonly number[];
  /**
   * Connections to each of `targets` at most (held and in flight), so no
   * accept queue of the queue sink is asked for more than it holds; null:
   * round-robin until the quota.
   */
  readonly caps: readonly number[] | null;
  /** Connections this worker opens at most (its share of the run). */
  readonly quota: number;
  /** Connects in flight at once. */
  readonly concurrency: number;
  /** Connects per second for this worker; 0: no cap. */
  readonly rate: number;
  /** Give up on one connect after this long. */
  readonly connectTimeoutMs: number;
  /** `rst`: SO_LINGER 0 on every socket, so any close (even the process dying) sends RST and leaves no TIME_WAIT. */
  readonly close: 'rst' | 'fin';
  /** Ports of the explicit pool (strategy explicit), as `lo-hi,...`. */
  readonly explicitPorts: string;
  /** Size of one ephemeral pool, to place each connect on the latency-against-occupancy curve. */
  readonly poolSize: number;
  /** Connections already held per target when this worker starts (occupancy baseline). */
  readonly heldPerTarget: readonly number[];
  /** Soft RLIMIT_NOFILE to set instead of raising to the hard limit (tests of fd-process). */
  readonly nofile?: number;
  /** Listening sockets of the embedded sink inherited as fds 3.. (0 for load): their accept queues pace the ramp. */
  readonly listeners: number;
  /** Their backlog: launching pauses while a queue is more than half full, so no SYN is dropped. */
  readonly backlog: number;
  /** Pool keys already known to be full (see FromWorker 'exhausted'). */
  readonly excluded: readonly string[];
}

/** What a sink worker is told at start; its listening sockets arrive as fds 3.. in `listeners` order. */
export interface SinkConfig {
  readonly kind: 'sink';
  readonly index: number;
  readonly listeners: number;
  /** Connections this worker holds at most at once. */
  readonly quota: number;
  readonly close: 'rst' | 'fin';
  /**
   * Watch what it holds: close the connections the peer closed or reset, and
   * accept again up to its quota (the standalone sink, a server that outlives
   * its clients). The probe's sink does not: its run counts from the kernel.
   */
  readonly watchHeld?: boolean;
}

/** Coordinator → worker. */
export type ToWorker =
  | { readonly type: 'start'; readonly config: ClientConfig | SinkConfig }
  | { readonly type: 'exclude'; readonly key: string }
  /** The ramp is over; `clients` workers hold connections and check them, each at its share of the checks' budget. */
  | { readonly type: 'stop'; readonly clients: number }
  /** Poll every held connection now and answer 'checked' (the count the report gives, e.g. when a signal ends the hold). */
  | { readonly type: 'count' }
  | { readonly type: 'close' };

/** Counters a client worker reports, cumulative since its start. */
export interface ClientStats {
  /** Connections held now: in the worker's own descriptors and in its holders'. */
  readonly held: number;
  readonly attempts: number;
  readonly pending: number;
  /** Failed attempts per errno name. */
  readonly errors: Readonly<Record<string, number>>;
  /** Held connections later lost to a reset or hang-up from the peer. */
  readonly lost: number;
  /** Connects that ever succeeded (held now or not). */
  readonly connected: number;
  /** The last hard failure (refused, unreachable, reset at connect) and its destination, for a run where nothing connects. */
  readonly hardError: { readonly errno: string; readonly destination: string } | null;
  /** Latency histogram counts (see histogram.ts), and the maximum in ms. */
  readonly latency: readonly number[];
  readonly latencyMax: number;
  /** One latency histogram per tenth of pool occupancy at the time of the connect (0-10%, ..., 90-100%). */
  readonly byOccupancy: readonly (readonly number[])[];
}

/** Worker → coordinator. */
export type FromWorker =
  | { readonly type: 'ready'; readonly pid: number; readonly nofile: { soft: number; hard: number } }
  | { readonly type: 'progress'; readonly stats: ClientStats }
  /** A sink's count; `full` once it holds its quota and stops accepting (sent at once, not at the next tick). */
  | { readonly type: 'accepted'; readonly held: number; readonly full: boolean; readonly errors: Readonly<Record<string, number>> }
  /** A pool is exhausted: `key` names it (`t:3` target, `s:1` source, `st:1:3` source and target). */
  | { readonly type: 'exhausted'; readonly key: string; readonly errno: string }
  /** This worker can open no more: its quota is met, or a limit stops it. */
  | { readonly type: 'done'; readonly reason: 'quota' | 'limit' | 'stopped' | 'nothing-left'; readonly errno?: string; readonly stats: ClientStats }
  /** Source ports in use, as flat [port, count, port, count, ...] pairs. */
  | { readonly type: 'ports'; readonly pairs: readonly number[] }
  /** The run's ramp is over and this client has just polled every connection it holds: its counts now. */
  | { readonly type: 'checked'; readonly stats: ClientStats }
  /** A holder process took over `connections` of this worker's connections (see client-worker.ts). */
  | { readonly type: 'holder'; readonly pid: number; readonly connections: number }
  | { readonly type: 'closed'; readonly closed: number };
