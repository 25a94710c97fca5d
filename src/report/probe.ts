/** Renders a probe result for people, and the `--json` document. */
import type { ProbeProgress, ProbeResult } from '../engine/probe.js';
import { bytes, ms, num } from './format.js';
import { CONSTRAINT_WORDS } from './limits.js';

const STOP_WORDS: Record<ProbeResult['stoppedBy'], string> = {
  target: 'reached the target',
  time: 'hit the time bound',
  limit: 'hit a limit',
  stall: 'stopped making progress',
  signal: 'was interrupted',
  'worker-died': 'lost a worker',
};

/** The one-line live progress (stderr, TTY only). */
export function renderProgress(p: ProbeProgress, target: number): string {
  const pct = target ? ` (${Math.floor((100 * p.held) / target)}%)` : '';
  return `${p.phase.padEnd(8)} held ${num(p.held)}${pct}  accepted ${num(p.accepted)}  ${num(p.ratePerSec)}/s  errors ${num(p.errors)}  ${(p.elapsedMs / 1000).toFixed(1)} s`;
}

/** The human report. */
export function renderProbe(r: ProbeResult): string {
  const out: string[] = [];
  const beyond = r.held > 65_536 ? ` — more than 65,536, from one host` : '';
  out.push(`Held ${num(r.held)} concurrent TCP connections${beyond}; the run ${STOP_WORDS[r.stoppedBy]}.`);
  const binding = r.ceiling.binding ? `${CONSTRAINT_WORDS[r.ceiling.binding]} (${r.ceiling.binding})` : 'unknown';
  out.push(`Predicted: ${num(r.predicted)} of ${num(r.target)} asked (the model's ceiling for the host: ${num(r.ceiling.connections)}, bound by ${binding}).`);
  if (r.limit) {
    const id = r.limit.id ? `${r.limit.id}: ` : '';
    out.push(`Limit hit: ${id}${r.limit.errno} on ${num(r.limit.count)} attempt${r.limit.count === 1 ? '' : 's'} — ${r.limit.words}.`);
  }
  out.push('');
  out.push(`  destinations    ${summarize(r.destinations)}`);
  out.push(`  sources         ${r.sources.length ? summarize(r.sources) : 'chosen by the kernel'}; strategy ${r.strategy}`);
  out.push(`  ramp            ${(r.rampMs / 1000).toFixed(1)} s to the peak; connect rate median ${num(r.rate.median)}/s, peak ${num(r.rate.peak)}/s`);
  const ramp = r.timeline.filter((p) => p.t <= r.rampMs + 250);
  if (ramp.length > 2) {
    out.push(`  held over time  ${sparkline(ramp.map((p) => p.held))}`);
    out.push(`  rate over time  ${sparkline(ramp.map((p) => p.rate))}`);
  }
  out.push(`  connect latency p50 ${ms(r.latency.p50)}, p99 ${ms(r.latency.p99)}, max ${ms(r.latency.max)}`);
  if (r.latencyByOccupancy.length > 1) {
    out.push(`  by pool fill    ${r.latencyByOccupancy.map((o) => `${o.occupancy}: p50 ${ms(o.p50)} p99 ${ms(o.p99)}`).join('; ')}`);
  }
  if (r.sourcePorts.busiest) {
    out.push(`  source ports    ${num(r.sourcePorts.distinct)} distinct; busiest ${r.sourcePorts.busiest.port} carries ${num(r.sourcePorts.busiest.connections)} connection${r.sourcePorts.busiest.connections === 1 ? '' : 's'} (one per destination)`);
  }
  const errs = Object.entries(r.errors).sort((a, b) => b[1] - a[1]);
  out.push(`  attempts        ${num(r.attempts)}; failed: ${errs.length ? errs.map(([k, v]) => `${k} ${num(v)}`).join(', ') : 'none'}${r.lost ? `; ${num(r.lost)} held connections lost to resets` : ''}`);
  const perU = r.memory.userBytesPerConnection === null ? '-' : bytes(r.memory.userBytesPerConnection);
  const perK = r.memory.kernelBytesPerConnection === null ? '-' : bytes(r.memory.kernelBytesPerConnection);
  out.push(`  memory          user space ${bytes(r.memory.userBytes)} (${perU} per connection, ${r.workers.clients} client + ${r.workers.sinks} sink processes); kernel +${bytes(r.memory.kernelBytes)} (${perK} per connection)`);
  for (const d of r.workers.died) out.push(`  worker died     ${d.kind} pid ${d.pid} (${d.signal ?? `exit ${d.code}`}) holding ${num(d.held)}`);
  const clean = r.cleanup.left === 0 ? 'no socket of the run left open' : `${num(r.cleanup.left)} sockets of the run still open`;
  out.push(`  cleanup         ${clean}; TIME_WAIT added: ${num(r.cleanup.timeWait)}`);
  return out.join('\n');
}

function summarize(list: readonly string[]): string {
  if (list.length <= 4) return list.join(', ');
  return `${list.slice(0, 2).join(', ')}, ... ${list[list.length - 1]} (${num(list.length)})`;
}

/** The `--json` document; also the input of the HTML report (`fourtuple report RUN.json`). */
export function probeJson(r: ProbeResult): ProbeJson {
  const { limits, ...rest } = r;
  return { ...rest, constraints: limits.constraints.map((c) => ({ id: c.id, limit: c.limit, scope: c.scope, detail: c.detail, remedy: c.remedy })) };
}

/** What `probe --json` prints. */
export type ProbeJson = Omit<ProbeResult, 'limits'> & {
  readonly constraints: readonly { readonly id: string; readonly limit: number | null; readonly scope: string; readonly detail: string; readonly remedy: string }[];
};

const BARS = '▁▂▃▄▅▆▇█';

/** A one-line sparkline of `values` in at most `width` characters. */
export function sparkline(values: readonly number[], width = 60): string {
  if (values.length === 0) return '';
  const step = Math.max(1, Math.ceil(values.length / width));
  const points: number[] = [];
  for (let i = 0; i < values.length; i += step) points.push(Math.max(...values.slice(i, i + step)));
  const max = Math.max(...points);
  if (max <= 0) return BARS[0].repeat(points.length);
  return points.map((v) => BARS[Math.min(BARS.length - 1, Math.floor((v / max) * (BARS.length - 1)))]).join('');
}
