/**
 * `fourtuple merge`: the shards of one run (`probe`/`load --shard I/K
 * --json` reports) as one report. Counts add; latency percentiles come from
 * the shards' histograms added bucket by bucket (the same fixed buckets
 * everywhere), so they are exact, not an average of percentiles; the
 * timelines line up on each shard's ramp start (Unix time). Pure.
 */
import { InvalidArgumentError } from '../errors.js';
import { addHistogram, newHistogram, quantile } from '../engine/histogram.js';
import { esc, ms, num } from './format.js';

/** What merge reads of a shard's report. */
export interface ShardReport {
  readonly target: number;
  readonly held: number;
  readonly predicted: number | null;
  readonly attempts: number;
  readonly connected: number;
  readonly lost: number;
  readonly errors: Readonly<Record<string, number>>;
  readonly stoppedBy: string;
  readonly limit: { readonly id: string | null; readonly errno: string } | null;
  readonly latency: { readonly max: number | null };
  readonly latencyHistogram: readonly number[];
  readonly run: { readonly id: string; readonly shard: number; readonly shards: number } | null;
  readonly rampStartUnixMs: number;
  readonly timeline: readonly { readonly t: number; readonly held: number }[];
}

/** One shard's row. */
export interface ShardRow {
  readonly shard: number;
  readonly file: string;
  readonly target: number;
  readonly held: number;
  readonly stoppedBy: string;
  readonly limit: string | null;
  readonly errors: Readonly<Record<string, number>>;
}

/** The merged run: target, held, attempts, connected, lost and errors are the shards' sums; predicted too (null when one had none). */
export interface MergedReport extends Pick<ShardReport, 'target' | 'held' | 'predicted' | 'attempts' | 'connected' | 'lost' | 'errors'> {
  readonly run: { readonly id: string; readonly shards: number };
  readonly latency: { readonly p50: number | null; readonly p99: number | null; readonly max: number | null };
  readonly latencyHistogram: readonly number[];
  /** What bound the run as a whole: null when every shard reached its share, else the limit most shards hit. */
  readonly limit: string | null;
  /** Held by all shards together, one point a second from the first ramp start. */
  readonly timeline: readonly { readonly t: number; readonly held: number }[];
  readonly shards: readonly ShardRow[];
}

const fail = (why: string): never => {
  throw new InvalidArgumentError(`merge: ${why}`);
};

/** Checks the reports are all the shards of one run, each once. */
function checkShards(reports: readonly { file: string; doc: ShardReport }[]): { id: string; shards: number } {
  if (reports.length === 0) fail('no report given');
  for (const { file, doc } of reports) {
    if (!doc || typeof doc !== 'object' || !Array.isArray(doc.latencyHistogram) || typeof doc.held !== 'number') fail(`${file} is not a probe or load --json report of this version`);
    if (!doc.run) fail(`${file} is not a shard: run it with --shard I/K`);
  }
  const first = reports[0];
  const { id, shards } = first.doc.run as NonNullable<ShardReport['run']>;
  const seen = new Map<number, string>();
  for (const { file, doc } of reports) {
    const r = doc.run as NonNullable<ShardReport['run']>;
    if (r.id !== id || r.shards !== shards) fail(`${file} is shard ${r.shard}/${r.shards} of run ${r.id}, not of run ${id} (${first.file}, ${shards} shards)`);
    const other = seen.get(r.shard);
    if (other !== undefined) fail(`shard ${r.shard} is given twice: ${other} and ${file}`);
    seen.set(r.shard, file);
  }
  const missing = Array.from({ length: shards }, (_, i) => i).filter((i) => !seen.has(i));
  if (missing.length) fail(`run ${id} has ${shards} shards; missing ${missing.length === 1 ? 'shard' : 'shards'} ${missing.join(', ')}`);
  return { id, shards };
}

/** The sum of the shards' timelines, a point a second from the earliest ramp start. */
function mergeTimelines(docs: readonly ShardReport[]): { t: number; held: number }[] {
  const zero = Math.min(...docs.map((d) => d.rampStartUnixMs));
  const end = Math.max(...docs.map((d) => d.rampStartUnixMs + (d.timeline.at(-1)?.t ?? 0)));
  const out: { t: number; held: number }[] = [];
  for (let t = 0; zero + t <= end + 1000; t += 1000) {
    let held = 0;
    for (const d of docs) {
      // The shard's last sample at or before this instant (none before its ramp began).
      const at = zero + t - d.rampStartUnixMs;
      let last = 0;
      for (const s of d.timeline) {
        if (s.t > at) break;
        last = s.held;
      }
      held += last;
    }
    out.push({ t, held });
  }
  return out;
}

/** Merges the shards of one run; InvalidArgumentError naming what does not fit. */
export function mergeReports(reports: readonly { file: string; doc: ShardReport }[]): MergedReport {
  const run = checkShards(reports);
  const sorted = [...reports].sort((a, b) => (a.doc.run?.shard ?? 0) - (b.doc.run?.shard ?? 0));
  const docs = sorted.map((r) => r.doc);
  const sum = (f: (d: ShardReport) => number): number => docs.reduce((a, d) => a + f(d), 0);
  const errors: Record<string, number> = {};
  for (const d of docs) for (const [k, n] of Object.entries(d.errors)) errors[k] = (errors[k] ?? 0) + n;
  const hist = newHistogram();
  for (const d of docs) addHistogram(hist, d.latencyHistogram);
  const max = docs.reduce<number | null>((m, d) => (d.latency.max === null ? m : Math.max(m ?? 0, d.latency.max)), null);
  const capped = (v: number | null): number | null => (v === null || max === null ? v : Math.min(v, max));
  const target = sum((d) => d.target);
  const held = sum((d) => d.held);
  const limits = new Map<string, number>();
  for (const d of docs) if (d.limit?.id && d.held < d.target) limits.set(d.limit.id, (limits.get(d.limit.id) ?? 0) + 1);
  const limit = held >= target ? null : ([...limits].sort((a, b) => b[1] - a[1])[0]?.[0] ?? null);
  return {
    run,
    target,
    held,
    predicted: docs.some((d) => d.predicted === null) ? null : sum((d) => d.predicted as number),
    attempts: sum((d) => d.attempts),
    connected: sum((d) => d.connected),
    lost: sum((d) => d.lost),
    errors,
    latency: { p50: capped(quantile(hist, 0.5)), p99: capped(quantile(hist, 0.99)), max },
    latencyHistogram: hist,
    limit,
    timeline: mergeTimelines(docs),
    shards: sorted.map(({ file, doc }) => ({ shard: doc.run?.shard ?? 0, file, target: doc.target, held: doc.held, stoppedBy: doc.stoppedBy, limit: doc.limit?.id ?? null, errors: doc.errors })),
  };
}


/** The merged report for people. */
export function renderMerged(m: MergedReport): string {
  const lines = [
    `Run ${m.run.id}: ${m.run.shards} shards held ${num(m.held)} of ${num(m.target)} (predicted ${num(m.predicted)})${m.limit ? `; bound by ${m.limit}` : m.held >= m.target ? '; every shard reached its share' : ''}.`,
    `Connect latency p50 ${ms(m.latency.p50)}, p99 ${ms(m.latency.p99)}, max ${ms(m.latency.max)} over ${num(m.connected)} connects (${num(m.attempts)} attempts${Object.keys(m.errors).length ? `; ${Object.entries(m.errors).map(([k, n]) => `${k} ${num(n)}`).join(', ')}` : ''}).`,
    '',
    'SHARD  HELD / TARGET  STOPPED BY  LIMIT             FILE',
  ];
  for (const s of m.shards) lines.push(`${String(s.shard).padStart(5)}  ${`${num(s.held)} / ${num(s.target)}`.padStart(13)}  ${s.stoppedBy.padEnd(10)}  ${(s.limit ?? '-').padEnd(16)}  ${s.file}`);
  return lines.join('\n');
}


/** Whether a saved document is a merged report (`fourtuple merge --json`). */
export function isMergedReport(doc: unknown): doc is MergedReport {
  const d = doc as MergedReport | null;
  return typeof d === 'object' && d !== null && Array.isArray(d.shards) && typeof d.run?.shards === 'number' && typeof d.held === 'number' && Array.isArray(d.timeline);
}

/** An inline SVG line of (t ms, held) points, 0 at the bottom. */
function timelineSvg(points: readonly { t: number; held: number }[], w = 720, h = 200): string {
  if (points.length === 0) return '<p>No timeline.</p>';
  const maxT = Math.max(1, ...points.map((p) => p.t));
  const maxH = Math.max(1, ...points.map((p) => p.held));
  const xy = points.map((p) => `${((p.t / maxT) * (w - 60) + 50).toFixed(1)},${(h - 20 - (p.held / maxH) * (h - 40)).toFixed(1)}`).join(' ');
  return `<svg role="img" aria-label="held over time, all shards" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">
<line x1="50" y1="${h - 20}" x2="${w - 10}" y2="${h - 20}" stroke="#999"/><line x1="50" y1="20" x2="50" y2="${h - 20}" stroke="#999"/>
<text x="45" y="24" text-anchor="end" font-size="11">${esc(num(maxH))}</text><text x="45" y="${h - 20}" text-anchor="end" font-size="11">0</text>
<text x="${w - 10}" y="${h - 5}" text-anchor="end" font-size="11">${esc((maxT / 1000).toFixed(0))} s</text>
<polyline fill="none" stroke="#2a6fdb" stroke-width="2" points="${xy}"/></svg>`;
}

/** One bar per shard: what it held against its share of the target. */
function shardBars(m: MergedReport, w = 720): string {
  const rowH = 22;
  const max = Math.max(1, ...m.shards.map((s) => Math.max(s.held, s.target)));
  const bars = m.shards
    .map((s, i) => {
      const y = 10 + i * rowH;
      const target = ((s.target / max) * (w - 200)).toFixed(1);
      const held = ((s.held / max) * (w - 200)).toFixed(1);
      return `<text x="60" y="${y + 14}" text-anchor="end" font-size="12">shard ${s.shard}</text><rect x="70" y="${y}" width="${target}" height="16" fill="#e5e9f0"/><rect x="70" y="${y}" width="${held}" height="16" fill="${s.held >= s.target ? '#2e9e5b' : '#d9822b'}"/><text x="${70 + Number(target) + 6}" y="${y + 13}" font-size="12">${esc(`${num(s.held)} / ${num(s.target)}`)}${s.limit ? ` ${esc(s.limit)}` : ''}</text>`;
    })
    .join('\n');
  return `<svg role="img" aria-label="held per shard" width="${w}" height="${m.shards.length * rowH + 20}">${bars}</svg>`;
}

/** The merged report as one self-contained page: no script, nothing fetched; the merged JSON is embedded. */
export function renderMergedHtml(m: MergedReport): string {
  const rows = m.shards
    .map((s) => `<tr><td class="n">${s.shard}</td><td class="n">${esc(num(s.held))}</td><td class="n">${esc(num(s.target))}</td><td>${esc(s.stoppedBy)}</td><td>${esc(s.limit ?? '-')}</td><td>${esc(Object.entries(s.errors).map(([k, n]) => `${k} ${num(n)}`).join(', ') || '-')}</td><td>${esc(s.file)}</td></tr>`)
    .join('\n');
  const [headline, latency] = renderMerged(m).split('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fourtuple: run ${esc(m.run.id)}, ${m.run.shards} shards</title>
<style>body{font:14px/1.45 system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left}td.n{text-align:right}</style>
</head>
<body>
<h1>Run ${esc(m.run.id)}: ${m.run.shards} shards</h1>
<p>${esc(headline)}</p>
<p>${esc(latency)}</p>
<h2>Held, all shards together</h2>
${timelineSvg(m.timeline)}
<h2>Per shard</h2>
${shardBars(m)}
<table><thead><tr><th>shard</th><th>held</th><th>target</th><th>stopped by</th><th>limit</th><th>errors</th><th>report</th></tr></thead><tbody>
${rows}
</tbody></table>
<script type="application/json" id="run">${JSON.stringify(m).replace(/</g, '\\u003c')}</script>
</body>
</html>
`;
}
