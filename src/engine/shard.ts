/**
 * Shards: one run split over K processes or hosts, each started from the
 * same command line plus its index (`--shard I/K`). The split is
 * deterministic, so no coordinator is needed:
 *
 * - the target: shard I takes ⌊N/K⌋, plus one when I < N mod K, so the
 *   shares add up to N exactly;
 * - the destinations (address × port, in the order --to names them): with
 *   at least K of them, shard I takes every K-th from the I-th; with fewer,
 *   every shard uses them all (each host has its own 4-tuple space).
 *
 * Every shard's report carries the run id (a hash of the command line
 * without --shard, or --run-id), its index and K, so `fourtuple merge` can
 * refuse reports of different runs and name a missing shard. Pure.
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';

/** One shard of a run. */
export interface Shard {
  readonly index: number;
  readonly count: number;
  readonly runId: string;
}

/** Parses `I/K` (0 ≤ I < K ≤ 10,000). */
export function parseShard(text: string): { index: number; count: number } {
  const m = /^(\d{1,5})\/(\d{1,5})$/.exec(text);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!(count >= 1 && count <= 10_000 && index >= 0 && index < count)) throw new InvalidArgumentError(`invalid --shard '${text}': expected I/K with 0 <= I < K <= 10000, e.g. 0/3`);
  return { index, count };
}

/** Shard `index`'s share of `total`: the shares of 0..count-1 add up to total. */
export function shardShare(total: number, index: number, count: number): number {
  return Math.floor(total / count) + (index < total % count ? 1 : 0);
}

/** Shard `index`'s destinations: every count-th from the index-th when there are at least count, else all. */
export function shardItems<T>(items: readonly T[], index: number, count: number): T[] {
  if (items.length < count) return [...items];
  return items.filter((_, i) => i % count === index);
}

/** Flags that differ between the shards of one run, left out of its id. */
const PER_SHARD = new Set(['--shard', '--run-id']);

/** The run id of a command line: the same for every shard started from it (12 hex digits). */
export function runIdOf(argv: readonly string[]): string {
  const kept: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const [flag] = argv[i].split('=', 1);
    if (PER_SHARD.has(flag)) {
      if (!argv[i].includes('=')) i++;
      continue;
    }
    kept.push(argv[i]);
  }
  return createHash('sha256').update(kept.join('\0')).digest('hex').slice(0, 12);
}

/** `--start-at`: an RFC 3339 time, or `+S` seconds from now; Unix milliseconds. */
export function parseStartAt(text: string, now = Date.now()): number {
  const rel = /^\+(\d+(?:\.\d+)?)$/.exec(text);
  if (rel) {
    const s = Number(rel[1]);
    if (s > 86_400) throw new InvalidArgumentError(`invalid --start-at '${text}': at most +86400 seconds`);
    return now + s * 1000;
  }
  const t = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(text) ? Date.parse(text) : NaN;
  if (!Number.isFinite(t)) throw new InvalidArgumentError(`invalid --start-at '${text}': expected an RFC 3339 time (2026-12-02T10:00:00Z) or +S seconds`);
  if (t > now + 86_400_000) throw new InvalidArgumentError(`invalid --start-at '${text}': more than a day from now`);
  return t;
}
