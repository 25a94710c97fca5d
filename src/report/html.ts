/**
 * The self-contained HTML report of a probe: uPlot and its stylesheet are
 * inlined, the run's JSON is embedded, and nothing is fetched when the file
 * is opened. The page is a pure function of the JSON, so a report written
 * live and one made later from the saved `--json` are the same bytes.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { CONSTRAINT_WORDS } from './limits.js';
import { closingTook, mergeEndpoints, othersLine, rampPace, type ProbeJson } from './probe.js';
import { esc, num } from './format.js';
import type { ConstraintId } from '../model/limits.js';

const require = createRequire(import.meta.url);

function asset(path: string): string {
  return readFileSync(require.resolve(path), 'utf8');
}

/** JSON safe inside a <script> element. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c');
}

/** The whole page. */
export function renderHtml(r: ProbeJson): string {
  const others = othersLine(r);
  const took = closingTook(r);
  const bindingWords = r.ceiling.binding ? `${CONSTRAINT_WORDS[r.ceiling.binding as ConstraintId]} (${r.ceiling.binding})` : 'unknown';
  const limit = r.limit ? `${r.limit.id ?? 'no constraint'}: ${r.limit.errno} on ${num(r.limit.count)} attempt${r.limit.count === 1 ? "" : "s"} — ${r.limit.words}` : `none: the run ${r.stoppedBy === 'target' ? 'reached its target' : `ended by ${r.stoppedBy}`}`;
  const rows = r.constraints
    .map((c) => `<tr${c.id === r.ceiling.binding ? ' class="binding"' : ''}><td>${esc(c.id)}</td><td class="n">${esc(num(c.limit))}</td><td>${esc(c.scope)}</td><td>${esc(c.detail)}</td><td>${esc(c.remedy)}</td></tr>`)
    .join('\n');
  const tenths = rampPace(r);
  const pace = tenths
    ? `<p>Pace: the first tenth of the peak came at ${esc(num(Math.round(tenths[0].rate)))}/s, the last at ${esc(num(Math.round(tenths[tenths.length - 1].rate)))}/s; by tenths: ${esc(tenths.map((t) => num(Math.round(t.rate))).join(', '))} per second.${slowest(tenths)}</p>`
    : '';
  const m = r.machine;
  const facts = [
    ['kernel', m.kernel ?? '-'],
    ['CPUs', String(m.cpus)],
    ['memory', m.memoryBytes ? `${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB` : '-'],
    ['ephemeral range', m.portRange ?? '-'],
    ['open files (soft/hard)', m.nofile ? `${m.nofile.soft}/${m.nofile.hard}` : '-'],
    ['node', m.node],
    ['strategy', r.strategy],
    ['destinations', `${mergeEndpoints(r.destinations).join(', ')} (${num(r.destinations.length)})`],
    ['sources', r.sources.length ? mergeEndpoints(r.sources).join(', ') : 'chosen by the kernel'],
  ]
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`)
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>fourtuple probe: ${esc(num(r.held))} connections held</title>
<style>${asset('uplot/dist/uPlot.min.css')}</style>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #1a1a1a; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 16px; margin-top: 28px; }
.headline { font-size: 16px; } .muted { color: #666; }
table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
td.n { text-align: right; white-space: nowrap; } tr.binding { background: #fff4d6; }
.chart { margin: 8px 0 20px; } code { background: #f3f3f3; padding: 2px 4px; }
</style>
</head>
<body>
<h1>${esc(num(r.held))} concurrent TCP connections held${r.held > 65536 ? ' — more than 65,536, from one host' : ''}</h1>
<p class="headline">Predicted ${esc(num(r.predicted))} of ${esc(num(r.target))} asked; the model's ceiling for the host is ${esc(num(r.ceiling.connections))}, bound by ${esc(bindingWords)}.</p>
<p>Limit hit: ${esc(limit)}.${r.ceiling.remedy ? ` To lift the ceiling: ${esc(r.ceiling.remedy)}.` : ''}</p>
<p class="muted">Ramp ${esc((r.rampMs / 1000).toFixed(1))} s; connect rate median ${esc(num(r.rate.median))}/s, peak ${esc(num(r.rate.peak))}/s; latency p50 ${esc(r.latency.p50?.toFixed(2) ?? '-')} ms, p99 ${esc(r.latency.p99?.toFixed(2) ?? '-')} ms; user space ${esc(num(r.memory.userBytesPerConnection))} B and kernel ${esc(num(r.memory.kernelBytesPerConnection))} B per connection; cleanup: ${esc(r.cleanup.left)} sockets left, ${esc(r.cleanup.timeWait)} TIME_WAIT added${took ? `, ${esc(took)}` : ''}.${others ? ` Other programs: ${esc(others)}.` : ''}</p>

${pace}
<h2>Held connections and connect rate over time</h2><div class="chart" id="held"></div>
<h2>Failed attempts over time, by errno</h2><div class="chart" id="errors"></div>
<h2>Connect latency against port-pool occupancy</h2><div class="chart" id="latency"></div>
<h2>Connections per client process</h2><div class="chart" id="workers"></div>
<h2>Memory against connections</h2><div class="chart" id="memory"></div>

<h2>Every constraint (fourtuple limits)</h2>
<table><tr><th>constraint</th><th>connections</th><th>scope</th><th>detail</th><th>remedy</th></tr>
${rows}
</table>

<h2>Reproduce</h2>
<p><code>${esc(r.command.length ? r.command.join(' ') : 'fourtuple probe')}</code></p>
<table>${facts}</table>

<script>${asset('uplot/dist/uPlot.iife.min.js')}</script>
<script id="run" type="application/json">${scriptJson(r)}</script>
<script>${CHARTS}</script>
</body>
</html>
`;
}

/** Where the ramp was slowest, when it slowed to under half its first pace. */
function slowest(tenths: readonly { from: number; to: number; rate: number }[]): string {
  let worst = 0;
  for (let i = 1; i < tenths.length; i++) if (tenths[i].rate < tenths[worst].rate) worst = i;
  const w = tenths[worst];
  if (worst === 0 || w.rate * 2 > tenths[0].rate) return '';
  return ` Slowest from ${num(w.from)} to ${num(w.to)} held, at ${num(Math.round(w.rate))}/s: ${(tenths[0].rate / w.rate).toFixed(1)}× slower than the start.`;
}

/** Builds the charts from the embedded run; exposes them as window.fourtupleCharts for tests. */
const CHARTS = String.raw`
(function () {
  var run = JSON.parse(document.getElementById('run').textContent);
  var W = Math.min(1060, document.body.clientWidth || 1060);
  var charts = {};
  var colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
  function make(id, opts, data) {
    opts.width = W; opts.height = opts.height || 260;
    // Room for the widest tick label (1,000,000) beside the axis title, and for the last x label.
    opts.padding = [12, 36, 0, 0];
    opts.axes.forEach(function (a, i) { if (i > 0) a.size = a.size || 84; });
    charts[id] = new uPlot(opts, data, document.getElementById(id));
  }
  var tl = run.timeline;
  var secs = tl.map(function (p) { return p.t / 1000; });
  // The rate's samples are a quarter of a second apart and jumpy; the 1 s average shows the trend.
  // The ramp's first point (t = 0) has no rate.
  var rates = tl.map(function (p, i) { return i === 0 && p.t === 0 ? null : p.rate; });
  var smooth = rates.map(function (v, i) {
    if (v === null) return null;
    var sum = 0, n = 0;
    for (var j = Math.max(0, i - 2); j <= Math.min(tl.length - 1, i + 2); j++) if (rates[j] !== null) { sum += rates[j]; n++; }
    return Math.round(sum / n);
  });
  make('held', {
    scales: { x: { time: false }, held: { range: function (u, min, max) { return [0, max * 1.05 || 1]; } }, rate: { range: function (u, min, max) { return [0, max * 1.05 || 1]; } } },
    axes: [{ label: 'seconds' }, { label: 'held', scale: 'held' }, { label: 'per second', scale: 'rate', side: 1, grid: { show: false } }],
    series: [{ label: 's' }, { label: 'held', scale: 'held', stroke: colors[0], width: 2 },
      { label: 'connects/s (1 s average)', scale: 'rate', stroke: colors[1], width: 2 },
      { label: 'connects/s (each sample)', scale: 'rate', stroke: colors[1] + '44', width: 1 }],
  }, [secs, tl.map(function (p) { return p.held; }), smooth, rates]);

  var errnos = {};
  tl.forEach(function (p) { Object.keys(p.errorsBy || {}).forEach(function (k) { errnos[k] = true; }); });
  var names = Object.keys(errnos).sort();
  var stacked = []; var acc = tl.map(function () { return 0; });
  names.forEach(function (k) {
    acc = tl.map(function (p, i) { return acc[i] + ((p.errorsBy || {})[k] || 0); });
    stacked.push(acc.slice());
  });
  var errSeries = [{ label: 's' }].concat(names.map(function (k, i) { return { label: k + ' (stacked, cumulative)', stroke: colors[i % colors.length], fill: colors[i % colors.length] + '55' }; }));
  if (names.length === 0) { errSeries.push({ label: 'no failed attempts', stroke: colors[2] }); stacked.push(tl.map(function () { return 0; })); }
  make('errors', { scales: { x: { time: false } }, axes: [{ label: 'seconds' }, { label: 'attempts' }], series: errSeries }, [secs].concat(stacked.reverse()));

  var occ = run.latencyByOccupancy;
  make('latency', {
    scales: { x: { time: false } },
    axes: [{ label: 'pool occupancy, %' }, { label: 'ms' }],
    series: [{ label: 'occupancy %' }, { label: 'p50 ms', stroke: colors[0], width: 2, points: { show: true } }, { label: 'p99 ms', stroke: colors[1], width: 2, points: { show: true } }],
  }, [occ.map(function (o) { return parseInt(o.occupancy, 10) + 5; }), occ.map(function (o) { return o.p50; }), occ.map(function (o) { return o.p99; })]);

  var spread = run.heldPerWorker;
  make('workers', {
    scales: { x: { time: false, range: function () { return [0.5, spread.length + 0.5]; } }, y: { range: function (u, min, max) { return [0, max * 1.05 || 1]; } } },
    axes: [{ label: 'client process (start order)' }, { label: 'held' }],
    series: [{ label: 'process' }, { label: 'held', stroke: colors[0], fill: colors[0] + '88', paths: uPlot.paths.bars({ size: [0.8, 60] }), points: { show: false } }],
  }, [spread.map(function (_, i) { return i + 1; }), spread]);

  var mem = tl.filter(function (p) { return p.held > 0 && p.t <= run.rampMs + 250; });
  var user = mem.map(function (p) { return p.userBytes === null ? null : p.userBytes / 1048576; });
  // The peak's measurement closes the user-space series even when the ramp was shorter than one sample.
  if (user.length) user[user.length - 1] = run.memory.userBytes / 1048576;
  make('memory', {
    scales: { x: { time: false } },
    axes: [{ label: 'held connections' }, { label: 'MiB' }],
    series: [{ label: 'held' }, { label: 'kernel MiB', stroke: colors[1], width: 2 }, { label: 'user space MiB (PSS, sampled)', stroke: colors[0], width: 2, spanGaps: true, points: { show: true } }],
  }, [mem.map(function (p) { return p.held; }), mem.map(function (p) { return p.kernelBytes / 1048576; }), user]);
  window.fourtupleCharts = charts;
})();
`;
