/** Renders a probe result for people, and the `--json` document. */
import type { ProbeProgress, ProbeResult } from '../engine/probe.js';
import { bytes, ms, num } from './format.js';
import { CONSTRAINT_WORDS } from './limits.js';
import { PortSet } from '../model/port-set.js';

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
  if (p.phase === 'closing' && p.leftToClose !== undefined) {
    return `closing  ${num(p.leftToClose)} sockets left to close  ${(p.elapsedMs / 1000).toFixed(1)} s`;
  }
  const pct = target ? ` (${Math.floor((100 * p.held) / target)}%)` : '';
  return `${p.phase.padEnd(8)} held ${num(p.held)}${pct}  accepted ${num(p.accepted)}  ${num(p.ratePerSec)}/s  errors ${num(p.errors)}  ${(p.elapsedMs / 1000).toFixed(1)} s`;
}

/** How the run ended, in words: never 'reached the target' below it. */
export function stopWords(r: Pick<ProbeResult, 'stoppedBy' | 'held' | 'target'> & { interrupted?: string | null }): string {
  if (r.stoppedBy === 'signal') return r.interrupted ? `was interrupted (${r.interrupted})` : STOP_WORDS.signal;
  if (r.stoppedBy === 'target' && r.held < r.target) return `ended at ${num(r.held)} of the ${num(r.target)} asked`;
  return STOP_WORDS[r.stoppedBy];
}

/** The human report. */
export function renderProbe(r: ProbeResult): string {
  const out: string[] = [];
  const beyond = r.held > 65_536 ? ` — more than 65,536, from one host` : '';
  out.push(`Held ${num(r.held)} concurrent TCP connections${beyond}; the run ${stopWords(r)}.`);
  const binding = r.ceiling.binding ? `${CONSTRAINT_WORDS[r.ceiling.binding]} (${r.ceiling.binding})` : 'unknown';
  const range = r.predictedMin !== null && r.predicted !== null && r.predictedMin < r.predicted ? `${num(r.predictedMin)}–${num(r.predicted)} (the kernel leaves the last ports to chance)` : num(r.predicted);
  out.push(`Predicted: ${range} of ${num(r.target)} asked (the model's ceiling for the host: ${num(r.ceiling.connections)}, bound by ${binding}).`);
  if (r.heldBy?.source === 'clients') out.push(`Note: ${r.heldBy.why}.`);
  if (r.limit) {
    const id = r.limit.id ? `${r.limit.id}: ` : '';
    out.push(`Limit hit: ${id}${r.limit.errno} on ${num(r.limit.count)} attempt${r.limit.count === 1 ? '' : 's'} — ${r.limit.words}.`);
  }
  if (r.failure) out.push(`No connection succeeded: ${r.failure.errno} from ${r.failure.destination} — ${r.failure.words}.`);
  out.push('');
  out.push(`  destinations    ${summarize(r.destinations)}`);
  if (r.sink && r.sink.mode !== 'none') out.push(`  sink            ${r.sink.mode}: ${r.sink.why}`);
  out.push(`  sources         ${r.sources.length ? summarize(r.sources) : 'chosen by the kernel'}; strategy ${r.strategy}`);
  out.push(`  ramp            ${(r.rampMs / 1000).toFixed(1)} s to the peak; connect rate median ${num(r.rate.median)}/s, peak ${num(r.rate.peak)}/s`);
  const tenths = rampPace(r);
  if (tenths) out.push(`  pace by tenths  ${tenths.map((t) => compact(t.rate)).join(' ')} /s (each tenth of the peak, first to last)`);
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
  const drop = r.memory.availableDropBytesPerConnection;
  const all = typeof drop === 'number' ? `; MemAvailable -${bytes(r.memory.availableDropBytes ?? 0)} (${bytes(drop)} per connection, everything)` : '';
  out.push(`  memory          user space ${bytes(r.memory.userBytes)} (${perU} per connection, ${r.workers.clients} client${r.workers.holders ? ` + ${r.workers.holders} holder` : ''} + ${r.workers.sinks} sink processes); kernel +${bytes(r.memory.kernelBytes)} (${perK} per connection)${all}`);
  const others = othersLine(r);
  if (others) out.push(`  other programs  ${others}`);
  for (const d of r.workers.died) out.push(`  worker died     ${d.kind} pid ${d.pid} (${d.signal ?? `exit ${d.code}`}) holding ${num(d.held)}`);
  const clean = r.cleanup.left === 0 ? 'no socket of the run left open' : `${num(r.cleanup.left)} sockets of the run still open`;
  const took = closingTook(r);
  out.push(`  cleanup         ${clean}; TIME_WAIT added: ${num(r.cleanup.timeWait)}${took ? `; ${took}` : ''}`);
  return out.join('\n');
}

/** 'closing took N s'; null for results saved by versions that did not measure it. */
export function closingTook(r: Pick<ProbeResult, 'closeMs'>): string | null {
  return typeof r.closeMs === 'number' ? `closing took ${(r.closeMs / 1000).toFixed(1)} s` : null;
}

/** Shares below these are not worth a line: other programs' CPU during the ramp, and their /proc entries' part of the kernel's memory. */
const OTHERS_CPU_NOTABLE = 0.05;
const PROC_ENTRIES_NOTABLE = 0.05;

/**
 * What other programs cost the run, when it is notable: their CPU during
 * the ramp and the /proc/PID/fd entries one cached for the run's
 * descriptors. Null otherwise, and for results saved before it was measured.
 */
export function othersLine(r: Pick<ProbeResult, 'others' | 'memory'>): string | null {
  const o = r.others as ProbeResult['others'] | undefined;
  if (!o) return null;
  const parts: string[] = [];
  if (o.cpuShare !== null && o.cpuShare >= OTHERS_CPU_NOTABLE) {
    const top = o.top ? ` (most: ${o.top.name}, pid ${o.top.pid}, ${pct(o.top.cpuShare)})` : '';
    parts.push(`took ${pct(o.cpuShare)} of the CPU during the ramp${top}`);
  }
  const per = o.procEntryBytesPerConnection;
  const kernel = r.memory.kernelBytesPerConnection;
  if (per !== null && kernel && per / kernel >= PROC_ENTRIES_NOTABLE) {
    parts.push(`the /proc/PID/fd entries cached by one listing this run's descriptors took ${bytes(per)} per connection of the kernel's ${bytes(kernel)}`);
  }
  return parts.length ? parts.join('; ') : null;
}

function pct(share: number): string {
  return `${Math.round(share * 100)}%`;
}

function summarize(list: readonly string[]): string {
  const merged = mergeEndpoints(list);
  const count = list.length > merged.length ? ` (${num(list.length)})` : '';
  if (merged.length <= 4) return merged.join(', ') + count;
  return `${merged.slice(0, 2).join(', ')}, ... ${merged[merged.length - 1]} (${num(list.length)})`;
}

/**
 * `127.0.0.1:7000`, `127.0.0.1:7001`, ... → `127.0.0.1:7000-7078`: endpoints
 * grouped by address, their ports as ranges; entries that are not
 * ADDRESS:PORT (or [V6]:PORT) are kept as they are. Order of first appearance.
 */
export function mergeEndpoints(list: readonly string[]): string[] {
  const byAddress = new Map<string, number[]>();
  const out: (string | { address: string })[] = [];
  for (const e of list) {
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(e);
    if (!m) {
      out.push(e);
      continue;
    }
    let ports = byAddress.get(m[1]);
    if (!ports) {
      byAddress.set(m[1], (ports = []));
      out.push({ address: m[1] });
    }
    ports.push(Number(m[2]));
  }
  return out.map((x) => (typeof x === 'string' ? x : `${x.address}:${PortSet.of(...(byAddress.get(x.address) ?? [])).toString()}`));
}

/** One tenth of the ramp: held went from `from` to `to` in `ms`. */
export interface PaceStep {
  readonly from: number;
  readonly to: number;
  readonly ms: number;
  /** Connections per second over this tenth. */
  readonly rate: number;
}

/**
 * How fast each tenth of the peak was reached, from the timeline (times
 * interpolated between samples): where the ramp slowed, at a glance. Null for
 * a ramp too short or too small to split.
 */
export function rampPace(r: Pick<ProbeResult, 'timeline' | 'held' | 'rampMs'>): PaceStep[] | null {
  const tl = r.timeline.filter((p) => p.t <= r.rampMs + 250);
  if (r.held < 1000 || tl.length < 10) return null;
  const steps: PaceStep[] = [];
  let prevT = 0;
  let prevHeld = 0;
  let i = 0;
  for (let k = 1; k <= 10; k++) {
    const goal = (r.held * k) / 10;
    while (i < tl.length && tl[i].held < goal) i++;
    if (i >= tl.length) return steps.length >= 2 ? steps : null;
    const a = i > 0 ? tl[i - 1] : { t: 0, held: 0 };
    const b = tl[i];
    const t = b.held === a.held ? b.t : a.t + ((goal - a.held) / (b.held - a.held)) * (b.t - a.t);
    const ms = Math.max(1, t - prevT);
    steps.push({ from: Math.round(prevHeld), to: Math.round(goal), ms, rate: ((goal - prevHeld) * 1000) / ms });
    prevT = t;
    prevHeld = goal;
  }
  return steps;
}

/** 33,412 → `33k`, 950 → `950`. */
function compact(n: number): string {
  if (n >= 10_000) return `${Math.round(n / 1000)}k`;
  if (n >= 1000) return `${(n / 1000).toFixed(1)}k`;
  return String(Math.round(n));
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
