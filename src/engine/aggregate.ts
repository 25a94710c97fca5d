/** Pure merging of worker counters into run totals. */
import { addHistogram, newHistogram, quantile } from './histogram.js';
import type { ClientStats } from './protocol.js';

/** Totals over every client worker. */
export interface Totals {
  held: number;
  attempts: number;
  pending: number;
  lost: number;
  connected: number;
  /** A hard failure (refused, unreachable) and its destination, from the last worker that saw one. */
  hardError: ClientStats['hardError'];
  errors: Record<string, number>;
  latency: number[];
  latencyMax: number;
  byOccupancy: number[][];
}

/** Sums the latest stats of every worker. */
export function sumStats(all: Iterable<ClientStats>): Totals {
  const t: Totals = { held: 0, attempts: 0, pending: 0, lost: 0, connected: 0, hardError: null, errors: {}, latency: newHistogram(), latencyMax: 0, byOccupancy: Array.from({ length: 10 }, () => newHistogram()) };
  for (const s of all) {
    t.held += s.held;
    t.attempts += s.attempts;
    t.pending += s.pending;
    t.lost += s.lost;
    t.connected += s.connected ?? 0;
    if (s.hardError) t.hardError = s.hardError;
    for (const [k, v] of Object.entries(s.errors)) t.errors[k] = (t.errors[k] ?? 0) + v;
    addHistogram(t.latency, s.latency);
    t.latencyMax = Math.max(t.latencyMax, s.latencyMax);
    s.byOccupancy.forEach((h, i) => addHistogram(t.byOccupancy[i], h));
  }
  return t;
}

/** Median of numbers (null when empty). */
export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** p50/p99 per occupancy tenth, skipping empty ones. */
export function occupancyCurve(byOcc: readonly (readonly number[])[]): { occupancy: string; connections: number; p50: number | null; p99: number | null }[] {
  const out = [];
  for (let i = 0; i < byOcc.length; i++) {
    const n = byOcc[i].reduce((a, b) => a + b, 0);
    if (n === 0) continue;
    out.push({ occupancy: `${i * 10}-${i * 10 + 10}%`, connections: n, p50: quantile(byOcc[i], 0.5), p99: quantile(byOcc[i], 0.99) });
  }
  return out;
}

/** Busiest source port and the number of distinct ones, from [port, count, ...] pairs of every worker. */
export function sourcePortStats(pairsPerWorker: Iterable<readonly number[]>): { distinct: number; busiest: { port: number; connections: number } | null } {
  const counts = new Map<number, number>();
  for (const pairs of pairsPerWorker) {
    for (let i = 0; i < pairs.length; i += 2) counts.set(pairs[i], (counts.get(pairs[i]) ?? 0) + pairs[i + 1]);
  }
  let busiest: { port: number; connections: number } | null = null;
  for (const [port, n] of counts) if (!busiest || n > busiest.connections) busiest = { port, connections: n };
  return { distinct: counts.size, busiest };
}
