/**
 * `fourtuple load --churn R`: short-lived connections at R per second
 * against an existing server, each closed by this side first, beside the
 * model's churn ceiling and the time at which it says the pools run out.
 */
import { readKernelFacts, readOccupants } from '../kernel/facts.js';
import { churnOfLimits, ratePerSecond } from '../model/churn.js';
import { formatEndpoint, isLoopback } from '../model/address.js';
import { computeLimits, explicitStart } from '../model/limits.js';
import { occupantFilter } from '../model/pool.js';
import { runChurn, type ChurnResult } from '../engine/churn.js';
import type { ProbeOptions } from '../engine/options.js';
import type { Target } from '../engine/protocol.js';
import { expandEndpoints } from './args.js';
import { num } from '../report/format.js';

/** Destinations a churn run spreads over, at most (each is a pool or part of one). */
const MAX_CHURN_TARGETS = 4096;

/** What the model expects of a churn run. */
export interface ChurnModel {
  /** Ports in one pool, and how many pools the run spreads over. */
  readonly portsPerPool: number | null;
  readonly pools: number;
  /** New connections per second all the pools sustain; null when TIME_WAIT does not limit them. */
  readonly ceiling: number | null;
  readonly perPool: number | null;
  /**
   * Seconds until the pools run out at this rate; null at or below the
   * ceiling. A closed port comes back only after a fixed time (60 s in
   * TIME_WAIT, or the reuse delay), and above the ceiling the pools are used
   * up before that: all their ports ÷ the rate, not ÷ (rate − ceiling).
   */
  readonly exhaustionS: number | null;
  readonly detail: string;
  readonly remedy: string;
}

/** The run's report. */
export interface ChurnReport {
  readonly command: readonly string[];
  readonly strategy: string;
  readonly destinations: readonly string[];
  readonly sources: readonly string[];
  readonly churn: ChurnResult;
  readonly model: ChurnModel;
}


/** The model's churn ceiling for this run's pools. */
export function churnModel(o: ProbeOptions, rate: number, targets: readonly Target[]): ChurnModel {
  const facts = readKernelFacts();
  const localAddresses = facts.interfaces.known ? facts.interfaces.value.map((i) => i.address) : [];
  const reuseAddr = o.reuseAddr !== false;
  const limits = computeLimits({ facts, strategy: o.strategy, reuseAddr, sources: o.from, destinations: o.to, localAddresses, occupants: readOccupants(occupantFilter(o.strategy, o.from, o.to)) });
  const ports = limits.portsPerDestination;
  const { churn: c, pools } = churnOfLimits(limits, facts, targets.every((t) => isLoopback(t.address)), reuseAddr);
  const ceiling = c.perPool === null ? null : c.perPool * pools;
  const exhaustionS = ceiling !== null && ports !== null && rate > ceiling ? (ports * pools) / rate : null;
  return { portsPerPool: ports, pools, ceiling, perPool: c.perPool, exhaustionS, detail: c.detail, remedy: c.remedy };
}

/** Runs `load --churn`; returns the report (the caller prints it). */
export async function churnRun(o: ProbeOptions, rate: number, signal: AbortSignal, onProgress?: (s: string) => void): Promise<ChurnReport> {
  // Counted before they are expanded: --churn spreads over a few thousand destinations at most.
  const targets = expandEndpoints(o.to, MAX_CHURN_TARGETS, '--to');
  const model = churnModel(o, rate, targets);
  const churn = await runChurn({
    rate,
    durationS: o.durationS,
    to: targets,
    from: o.from,
    strategy: o.strategy,
    reuseAddr: o.reuseAddr !== false,
    explicitStart: explicitStart(readKernelFacts()),
    connectTimeoutMs: o.connectTimeoutMs,
    signal,
    onProgress: onProgress && ((p) => onProgress(`churn ${p.elapsedS.toFixed(0)} s: ${p.connected.toLocaleString('en-US')} connected and closed, ${p.failed.toLocaleString('en-US')} failed`)),
  });
  return { command: o.command ?? [], strategy: o.strategy, destinations: targets.map((t) => formatEndpoint(t.address, t.port)), sources: [...o.from], churn, model };
}

const MAX_IN_FLIGHT_WORDS = '1,024 connects were in flight at once (a slow or silent destination), so the rate fell short';

/** The report for people. */
export function renderChurn(r: ChurnReport): string {
  const c = r.churn;
  const failed = Object.entries(c.failed);
  const failures = failed.reduce((a, [, n]) => a + n, 0);
  const to = r.destinations.length === 1 ? r.destinations[0] : `${num(r.destinations.length)} destinations`;
  const lines = [
    `Churned ${num(c.rate)} new connections/s toward ${to} for ${c.durationS.toFixed(1)} s (strategy ${r.strategy}), each closed by this side first: ${num(c.connected)} connected and closed, ${num(failures)} failed${failed.length ? ` (${failed.map(([k, n]) => `${k} ${num(n)}`).join(', ')})` : ''}.`,
    ...(c.skipped ? [`${num(c.skipped)} connects were not started on time: ${MAX_IN_FLIGHT_WORDS}.`] : []),
    ...(c.timeWaitLeft === null ? [] : [`${num(c.timeWaitLeft)} of them keep their 4-tuple here in TIME_WAIT (60 s)${c.timeWaitLeft < c.connected ? `; ${num(c.connected - c.timeWaitLeft)} ended without one (reset, or closed by the server first) and gave their port back at once` : ''}.`]),
    c.firstFailure ? `First failure at ${c.firstFailure.atS.toFixed(2)} s: ${c.firstFailure.errno} toward ${c.firstFailure.destination}.` : `No connect failed${c.stoppedBy === 'signal' ? ' before the signal' : ' up to the time bound'}.`,
  ];
  const m = r.model;
  const pools = `${m.portsPerPool === null ? '?' : num(m.portsPerPool)} ports in each of ${num(m.pools)} pool${m.pools === 1 ? '' : 's'}`;
  if (m.ceiling === null) lines.push(`Model: ${pools}; ${m.detail}.`);
  else {
    const all = m.portsPerPool === null ? '?' : num(m.portsPerPool * m.pools);
    const when =
      m.exhaustionS === null
        ? 'below it, ports come back as fast as they are used'
        : `at ${num(c.rate)}/s the ${all} ports run out after ${all} ÷ ${num(c.rate)} = ${m.exhaustionS.toFixed(2)} s, before the first of them comes back`;
    lines.push(`Model: ${pools}, a ceiling of ${ratePerSecond(m.ceiling)} new connections/s in all (${m.detail}); ${when}.`);
  }
  if (m.remedy && (c.firstFailure || m.exhaustionS !== null)) lines.push(`To lift it: ${m.remedy}.`);
  return lines.join('\n');
}
