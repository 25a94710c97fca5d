/**
 * The run planner: from kernel facts and a run's options, which sink, how
 * many listeners, how many connections per listener and per client process.
 * Pure: no I/O, so every decision is unit-tested without spawning anything.
 */
import type { KernelFacts } from '../kernel/facts.js';
import { familyOf, parsePorts } from '../model/address.js';
import { explicitPool, ephemeralPool } from '../model/limits.js';
import { strategySpec } from '../model/strategy.js';
import { PortSet } from '../model/port-set.js';
import type { Strategy } from '../model/strategy.js';
import type { Target } from './protocol.js';

/**
 * How the embedded sink holds the server's end. `queue`: listeners that
 * never accept, so each connection waits, complete, in an accept queue and
 * owns no descriptor (somaxconn + 1 per listener); `accept`: worker
 * processes accept and hold a descriptor per connection.
 */
export type SinkMode = 'queue' | 'accept';

/** Largest share of a port pool the default destinations are planned to fill (past half, connect() walks the used even ports first). */
export const FILL_TARGET = 0.45;
/** Descriptors a worker keeps for node itself (stdio, IPC, epoll, ...). */
export const FD_RESERVE = 64;
/** Listening sockets the embedded sink opens at most (the coordinator holds them; with the accept sink every worker inherits them too). */
export const MAX_SINK_LISTENERS = 8192;
/** Listeners the accept sink may open: each of its workers, and each client, inherits them all out of its open-files limit. */
export const MAX_ACCEPT_LISTENERS = 2048;
/** Destinations a load run round-robins over at most. */
export const MAX_TARGETS = 65_536;
/** From this many connections on, the target is split over --parallel clients even when one could hold it all: connects are CPU-bound, and there is more than one core. */
export const SPLIT_FROM = 10_000;
/** The first port tried for the default listeners. */
export const DEFAULT_LISTEN_FROM = 7000;

/** What the planner is told. */
export interface PlanInput {
  readonly facts: KernelFacts;
  readonly connections: number;
  readonly strategy: Strategy;
  readonly from: readonly string[];
  /** Destinations named with --to, expanded; empty: the probe chooses loopback ports. */
  readonly targets: readonly Target[];
  /** probe (an embedded sink) or load (an existing server). */
  readonly embeddedSink: boolean;
  /** The sink asked for; undefined: queue when its queues can hold the target, else accept. */
  readonly sinkMode?: SinkMode;
  /** The process's hard open-files limit (every worker raises its soft limit to it). */
  readonly nofileHard: number;
  /** Client processes ramping at once (--parallel). */
  readonly parallel: number;
}

/** Default listeners the coordinator opens: `count` free ports on `address`, from `from` up, none in `avoid`. */
export interface ListenPlan {
  readonly address: string;
  readonly count: number;
  readonly from: number;
  readonly avoid: PortSet;
}

/** What a run will do. */
export interface RunPlan {
  readonly sink: SinkMode | 'none';
  /** Why this sink, in words for the report. */
  readonly sinkWhy: string;
  /** listen() backlog: somaxconn (the kernel caps it there anyway). */
  readonly backlog: number;
  /** Connections one listener's accept queue holds (queue sink): backlog + 1; null otherwise. */
  readonly perListener: number | null;
  /** Listeners to open on free ports; null when --to names them. */
  readonly listen: ListenPlan | null;
  /** Connections one client process opens at most (it hands them to holder processes as its descriptors fill). */
  readonly clientQuota: number;
  /** Client processes: --parallel, or one for a small target (below SPLIT_FROM) that its own descriptors hold. */
  readonly clients: number;
  /** Descriptors a client holds before it hands them to a holder. */
  readonly batch: number;
  /** Whether clients inherit the listeners to pace by their accept queues (accept sink only). */
  readonly pace: boolean;
}

/** Plans a run; throws RangeError with a user-facing message for a plan that cannot work (the caller wraps it). */
export function planRun(input: PlanInput): RunPlan {
  const { facts, connections } = input;
  const backlog = facts.somaxconn.known ? Math.max(1, facts.somaxconn.value) : 4096;
  const perQueue = backlog + 1;
  let sink: RunPlan['sink'] = 'none';
  let sinkWhy = 'an existing server (load)';
  let listen: ListenPlan | null = null;
  let listenerCount = input.targets.length;
  if (input.embeddedSink) {
    if (input.targets.length === 0) {
      // The probe picks its ports: enough for both the pools' fill and, with the queue sink, the queues.
      sink = input.sinkMode ?? 'queue';
      const fill = Math.ceil(connections / (portsPerListener(input) * FILL_TARGET));
      const queues = sink === 'queue' ? Math.ceil(connections / perQueue) : 1;
      listenerCount = Math.max(1, fill, queues);
      const max = sink === 'queue' ? MAX_SINK_LISTENERS : MAX_ACCEPT_LISTENERS;
      if (listenerCount > max) throw new RangeError(`--connections ${connections} needs ${listenerCount} listening ports for the ${sink} sink: at most ${max}`);
      listen = { address: input.from[0] && familyOf(input.from[0]) === 6 ? '::1' : '127.0.0.1', count: listenerCount, from: DEFAULT_LISTEN_FROM, avoid: avoidedPorts(facts) };
      sinkWhy = sink === 'queue' ? `${listenerCount} listener${listenerCount === 1 ? '' : 's'} that never accept: ${perQueue.toLocaleString('en-US')} connections wait in each accept queue (somaxconn ${backlog.toLocaleString('en-US')} + 1), no descriptor on the server side` : 'worker processes accept every connection and hold its descriptor';
    } else {
      const fits = input.targets.length * perQueue >= connections;
      if (input.sinkMode === 'queue' || (input.sinkMode === undefined && fits)) {
        sink = 'queue';
        sinkWhy = fits
          ? `the ${input.targets.length} listeners never accept: connections wait in their accept queues (${perQueue.toLocaleString('en-US')} each)`
          : `the ${input.targets.length} listeners never accept, and their accept queues hold ${(input.targets.length * perQueue).toLocaleString('en-US')} at most (somaxconn ${backlog.toLocaleString('en-US')} + 1 each)`;
      } else {
        sink = 'accept';
        sinkWhy = input.sinkMode === 'accept' ? 'worker processes accept every connection (--sink accept)' : `worker processes accept every connection: the accept queues of ${input.targets.length} listener${input.targets.length === 1 ? '' : 's'} hold ${(input.targets.length * perQueue).toLocaleString('en-US')}, fewer than the target`;
      }
      const max = sink === 'queue' ? MAX_SINK_LISTENERS : MAX_ACCEPT_LISTENERS;
      if (input.targets.length > max) throw new RangeError(`--to names ${input.targets.length.toLocaleString('en-US')} destinations: at most ${max.toLocaleString('en-US')} for the embedded ${sink} sink`);
    }
  } else if (input.targets.length > MAX_TARGETS) {
    throw new RangeError(`--to names ${input.targets.length.toLocaleString('en-US')} destinations: at most ${MAX_TARGETS.toLocaleString('en-US')}`);
  }
  const pace = sink === 'accept';
  const inherited = pace ? listenerCount : 0;
  const batch = Math.max(1, input.nofileHard - FD_RESERVE - inherited);
  const clients = Math.max(1, Math.min(input.parallel, connections >= SPLIT_FROM ? input.parallel : Math.ceil(connections / batch)));
  return {
    sink,
    sinkWhy,
    backlog,
    perListener: sink === 'queue' ? perQueue : null,
    listen,
    clientQuota: Math.ceil(connections / clients),
    clients,
    batch,
    pace,
  };
}

/** Connections one destination port can carry for this strategy and these sources. */
function portsPerListener(input: PlanInput): number {
  const spec = strategySpec(input.strategy);
  if (spec.portPickedBy === 'bind') return Number.MAX_SAFE_INTEGER; // one pool per source whatever the destinations
  const pool = spec.portPickedBy === 'program' ? explicitPool(input.facts).size : (ephemeralPool(input.facts)?.size ?? 28_232);
  return Math.max(1, pool) * Math.max(1, input.from.length);
}

/** Ports the default listeners avoid: the ephemeral range (connect() would skip them) and reserved ports. */
function avoidedPorts(facts: KernelFacts): PortSet {
  const range = facts.portRange.known ? facts.portRange.value : { lo: 32768, hi: 60999 };
  let reserved = new PortSet();
  if (facts.reservedPorts.known && facts.reservedPorts.value) {
    try {
      reserved = parsePorts(facts.reservedPorts.value, 'ip_local_reserved_ports');
    } catch {
      // An unreadable list avoids nothing more.
    }
  }
  return PortSet.range(range.lo, range.hi).union(reserved);
}

/** One client's share of the targets: the global target indices it connects to and how many to each. */
export interface Share {
  readonly targets: readonly number[];
  /** Connections to each of `targets` at most; null: no per-target cap (round-robin until the quota). */
  readonly caps: readonly number[] | null;
  readonly quota: number;
}

/**
 * Splits the run's connections into per-target slots (target t holds
 * `perTarget[t]`, in order) and gives one client the `quota` slots from
 * `start`: so no queue is ever asked for more than it holds, whatever the
 * number of clients. Without per-target caps (accept sink, load), every
 * client round-robins over every target.
 */
export function shareOf(perTarget: readonly number[] | null, targetCount: number, start: number, quota: number): Share {
  if (perTarget === null) return { targets: Array.from({ length: targetCount }, (_, i) => i), caps: null, quota };
  const targets: number[] = [];
  const caps: number[] = [];
  let base = 0;
  let left = quota;
  for (let t = 0; t < perTarget.length && left > 0; t++) {
    const lo = Math.max(base, start);
    const hi = Math.min(base + perTarget[t], start + quota);
    if (hi > lo) {
      targets.push(t);
      caps.push(hi - lo);
      left -= hi - lo;
    }
    base += perTarget[t];
  }
  return { targets, caps, quota: quota - left };
}

/** Spreads `connections` evenly over `count` targets holding at most `cap` each: target t gets its slots in order. */
export function spreadSlots(connections: number, count: number, cap: number): number[] {
  const out: number[] = [];
  let left = Math.min(connections, count * cap);
  for (let t = 0; t < count; t++) {
    const n = Math.min(cap, Math.ceil(left / (count - t)));
    out.push(n);
    left -= n;
  }
  return out;
}
