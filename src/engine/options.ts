/** A probe run's options, their defaults, and the one check they pass where they enter the engine. */
import { InvalidArgumentError } from '../errors.js';
import { type Endpoints, familyOf } from '../model/address.js';
import { isStrategy, type Strategy, strategySpec } from '../model/strategy.js';
import type { SinkMode } from './plan.js';
import type { Shard } from './shard.js';

/** Options of a run. */
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
  /** SO_REUSEADDR before bind(ip, 0) (strategy bind); default true. */
  readonly reuseAddr?: boolean;
  /** Connects in flight at once, over all active workers. */
  readonly concurrency: number;
  /** Connects per second over all workers; 0: no cap. */
  readonly rate: number;
  readonly close: 'rst' | 'fin';
  /** Run the embedded sink (probe) or connect to an existing server (load). */
  readonly sink: boolean;
  /**
   * How the embedded sink holds the server's end: `queue` (listeners that
   * never accept; no descriptor per connection) or `accept`. Undefined:
   * queue when the accept queues can hold the target, else accept.
   */
  readonly sinkMode?: SinkMode;
  /** Client workers ramping at the same time. */
  readonly parallel: number;
  /** Soft open-files limit for client workers instead of the hard one (tests of fd-process). */
  readonly workerNofile?: number;
  /** A client worker that dies: go on without it, or end the run. */
  readonly onWorkerDeath: 'continue' | 'stop';
  /** Give up on one connect after this long. */
  readonly connectTimeoutMs: number;
  /** One shard of a larger run (--shard I/K): its report is tagged so `fourtuple merge` can put the shards together. */
  readonly shard?: Shard;
  /** Unix milliseconds to wait for before the ramp (--start-at), so the shards of a run ramp together. */
  readonly startAt?: number;
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
  parallel: 2,
  onWorkerDeath: 'continue' as const,
  connectTimeoutMs: 3000,
};

/** Default time bound for a target: generous for this machine's ~30k/s, and at least a minute. */
export function defaultDuration(connections: number): number {
  return Math.max(60, Math.ceil(connections / 5000));
}

function int(name: string, v: number, lo: number, hi: number): void {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new InvalidArgumentError(`invalid ${name} '${v}': expected an integer from ${lo} to ${hi}`);
}

function num(name: string, v: number, lo: number, hi: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) throw new InvalidArgumentError(`invalid ${name} '${v}': expected a number from ${lo} to ${hi}`);
}

/**
 * Checks a run's options as the CLI does, so a library user gets the same
 * InvalidArgumentError naming the option and the value.
 */
export function validateProbeOptions(o: ProbeOptions): void {
  int('connections', o.connections, 1, 10_000_000);
  num('durationS', o.durationS, 0.1, 86_400);
  num('holdS', o.holdS, 0, 86_400);
  int('concurrency', o.concurrency, 1, 100_000);
  int('rate', o.rate, 0, 10_000_000);
  int('parallel', o.parallel, 1, 64);
  num('connectTimeoutMs', o.connectTimeoutMs, 1, 3_600_000);
  if (o.workerNofile !== undefined) int('workerNofile', o.workerNofile, 0, 1 << 30);
  if (!isStrategy(o.strategy)) throw new InvalidArgumentError(`invalid strategy '${String(o.strategy)}': expected auto, bind, nopo or explicit`);
  if (o.close !== 'rst' && o.close !== 'fin') throw new InvalidArgumentError(`invalid close '${String(o.close)}': expected rst or fin`);
  if (o.onWorkerDeath !== 'continue' && o.onWorkerDeath !== 'stop') throw new InvalidArgumentError(`invalid onWorkerDeath '${String(o.onWorkerDeath)}': expected continue or stop`);
  if (o.sinkMode !== undefined && o.sinkMode !== 'queue' && o.sinkMode !== 'accept') throw new InvalidArgumentError(`invalid sink '${String(o.sinkMode)}': expected queue or accept`);
  if (!o.sink && o.sinkMode !== undefined) throw new InvalidArgumentError(`--sink ${o.sinkMode} is for probe: load connects to an existing server`);
  if (!o.sink && o.to.length === 0) throw new InvalidArgumentError('--to is required: the server to connect to');
  if (strategySpec(o.strategy).sources === 'none' && o.from.length) throw new InvalidArgumentError(`strategy auto cannot use source addresses (${o.from.join(',')}): connect() without bind() lets the kernel choose the source; use nopo, bind or explicit`);
  if (o.reuseAddr === false && strategySpec(o.strategy).socket.reuseAddr !== 'default') throw new InvalidArgumentError(`reuseAddr false is for strategy bind: ${o.strategy} ${o.strategy === 'explicit' ? 'needs SO_REUSEADDR' : 'never binds a port itself'}`);
  const fam = o.to[0]?.addresses[0] !== undefined ? familyOf(o.to[0].addresses[0]) : o.from[0] !== undefined ? familyOf(o.from[0]) : 4;
  for (const s of o.from) {
    if (familyOf(s) !== fam) throw new InvalidArgumentError(`source address '${s}' in --from is not of the destinations' family (IPv${fam})`);
  }
}
