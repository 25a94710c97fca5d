/**
 * Failed connect() and bind() calls, as the failure tracer counts them
 * (kernel/failure-tracer.ts), made readable: per destination, over a recent
 * window, in one line beside the destination's pool and churn. Pure: no I/O.
 */
import type { FailureCount, FailureSnapshot } from '../kernel/failure-tracer.js';
import { formatEndpoint } from './address.js';
import { destinationKey } from './port-pressure.js';

/** The watch view's window: "312 EADDRNOTAVAIL in the last 10 s". */
export const FAILURE_WINDOW_S = 10;

/** Identifies one count across snapshots. */
export function failureKey(c: FailureCount): string {
  return `${c.call}|${c.source}|${c.destination ?? ''}|${c.port}|${c.errno}`;
}

/** connect() failures of one destination (source, destination, port) by errno, for joining with its port pressure. */
export function failuresByDestination(counts: readonly FailureCount[]): Map<string, { total: number; byErrno: Record<string, number> }> {
  const out = new Map<string, { total: number; byErrno: Record<string, number> }>();
  for (const c of counts) {
    if (c.call !== 'connect' || c.destination === null) continue;
    const key = destinationKey({ source: c.source, destination: c.destination, port: c.port });
    let e = out.get(key);
    if (!e) out.set(key, (e = { total: 0, byErrno: {} }));
    e.total += c.count;
    e.byErrno[c.errno] = (e.byErrno[c.errno] ?? 0) + c.count;
  }
  return out;
}

/** What a window of snapshots tells. */
export interface FailureWindowView {
  /** Failures within the window (counts that grew), most first. */
  readonly recent: readonly FailureCount[];
  /** The window's real length in seconds (shorter until the tracer has run that long). */
  readonly seconds: number;
  /** Overflowed failures within the window. */
  readonly overflow: number;
}

/**
 * Keeps the snapshots of the last `windowS` seconds and tells what they
 * added: the base is the newest snapshot at least `windowS` old, or the
 * tracer's start (every count zero) until it has run that long.
 */
export class FailureWindow {
  readonly #windowMs: number;
  readonly #snapshots: FailureSnapshot[];

  /** `started`: when the tracer attached (epoch ms). */
  constructor(started: number, windowS = FAILURE_WINDOW_S) {
    this.#windowMs = windowS * 1000;
    this.#snapshots = [{ at: started, counts: [], overflow: 0 }];
  }

  push(snapshot: FailureSnapshot): FailureWindowView {
    const all = this.#snapshots;
    all.push(snapshot);
    while (all.length > 2 && snapshot.at - all[1].at >= this.#windowMs) all.shift();
    const base = all[0];
    const before = new Map<string, number>();
    for (const c of base.counts) before.set(failureKey(c), c.count);
    const recent: FailureCount[] = [];
    for (const c of snapshot.counts) {
      const n = c.count - (before.get(failureKey(c)) ?? 0);
      if (n > 0) recent.push({ ...c, count: n });
    }
    recent.sort((a, b) => b.count - a.count);
    return { recent, seconds: (snapshot.at - base.at) / 1000, overflow: snapshot.overflow - base.overflow };
  }
}

/** `127.0.0.1 → 10.0.0.5:443`, or `bind 127.0.0.1:0` for bind(). */
export function failureWhere(c: FailureCount): string {
  return c.call === 'connect' && c.destination !== null ? `${c.source} → ${formatEndpoint(c.destination, c.port)}` : `bind ${formatEndpoint(c.source, c.port)}`;
}

/** `127.0.0.1 → 10.0.0.5:443: 312 EADDRNOTAVAIL in the last 10 s`, or `... since the tracer started` when `seconds` is null. */
export function failureLine(c: FailureCount, seconds: number | null): string {
  const when = seconds === null ? 'since the tracer started' : `in the last ${Math.max(1, Math.round(seconds))} s`;
  return `${failureWhere(c)}: ${c.count.toLocaleString('en-US')} ${c.errno} ${when}`;
}
