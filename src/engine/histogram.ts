/**
 * A log-bucketed latency histogram in a plain number array, so workers can
 * send it over IPC and the aggregator can add them. Pure.
 */

/** Buckets per decade: about 12% resolution. */
const PER_DECADE = 20;
/** The first bucket starts at 1 microsecond. */
const MIN_MS = 0.001;
/** 1 µs to 1,000 s. */
export const BUCKETS = 9 * PER_DECADE;

/** A fresh, empty histogram. */
export function newHistogram(): number[] {
  return new Array<number>(BUCKETS).fill(0);
}

/** Bucket of a latency in milliseconds. */
export function bucketOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  const b = Math.floor(Math.log10(ms / MIN_MS) * PER_DECADE);
  return b >= BUCKETS ? BUCKETS - 1 : b;
}

/** Upper edge of a bucket in milliseconds. */
export function bucketUpper(b: number): number {
  return MIN_MS * 10 ** ((b + 1) / PER_DECADE);
}

/** Adds `from` into `into`. */
export function addHistogram(into: number[], from: readonly number[]): void {
  for (let i = 0; i < from.length; i++) into[i] += from[i];
}

/** The q-quantile (0..1) in milliseconds, as the upper edge of its bucket; null when empty. */
export function quantile(h: readonly number[], q: number): number | null {
  let total = 0;
  for (const c of h) total += c;
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < h.length; i++) {
    seen += h[i];
    if (seen >= rank) return bucketUpper(i);
  }
  return bucketUpper(h.length - 1);
}
