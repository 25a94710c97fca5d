/** Renders port pressure: the one-shot report, the watch view and the `--json` document. Renderers return strings. */
import type { PortScan } from '../engine/port-scan.js';
import { destinationKey, type DestinationPressure, type PortPressureReport } from '../model/port-pressure.js';
import { KERNEL_BYTES_PER_SOCKET } from '../model/costs.js';
import { formatEndpoint } from '../model/address.js';
import { type Churn, type ChurnSettings, ratePerSecond } from '../model/churn.js';
import type { Strategy } from '../model/strategy.js';
import { bytes, ms, num, table } from './format.js';
import type { FailureCount } from '../kernel/failure-tracer.js';
import { failureLine, failuresByDestination } from '../model/failures.js';
import { cgroupLabel, type CgroupInfo } from '../kernel/owners.js';
import type { ScanOwners } from '../engine/port-scan.js';

/** Share of a pool past which a destination is "under pressure" when --warn is not given: connect() slows down past half full. */
export const DEFAULT_PRESSURE_PERCENT = 50;

/** How to render. */
export interface PortsRenderOptions {
  /** Rows per table. */
  readonly top: number;
  /** --warn percent, or null. */
  readonly warn: number | null;
  /** ANSI highlighting of rows past --warn (a terminal); otherwise rows are marked in words. */
  readonly ansi?: boolean;
  /** Change of `used` per second since the last scan, by destinationKey (the watch view). */
  readonly rates?: ReadonlyMap<string, number>;
  /** New connections per second since the last scan and the churn ceiling, by destinationKey (the watch view). */
  readonly churn?: WatchChurn;
  /** Failed connect() and bind() calls the failure tracer counted; absent: not asked for. */
  readonly failures?: FailuresView;
}

/** What the failure tracer counted, as a view shows it. */
export type FailuresView =
  | {
      readonly counted: true;
      /** Over the last `seconds` (the watch view), or since the tracer started (null: one-shot, read from a running tracer). */
      readonly seconds: number | null;
      /** Most first. */
      readonly counts: readonly FailureCount[];
      readonly overflow: number;
    }
  | { readonly counted: false; readonly reason: string };

/** The watch view's churn: new connections per second (empty on the first refresh) beside each destination's ceiling. */
export interface WatchChurn {
  /** --strategy, or null: auto (explicit for ports outside the range). */
  readonly strategy: Strategy | null;
  readonly newPerSecond: ReadonlyMap<string, number>;
  /** The churn ceiling of a destination. */
  readonly ceilingOf: (d: DestinationPressure) => Churn;
  /** The kernel's TIME_WAIT settings the ceilings read. */
  readonly settings: ChurnSettings;
}

/** Percent for people, never rounded up (99.96% headroom is not 100%). */
export function percent(p: number | null): string {
  if (p === null) return '-';
  const v = Math.floor(p * 10) / 10;
  return `${Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1)}%`;
}

/** `127.0.0.1:7000`, `[::1]:7000`. */
export function endpoint(address: string, port: number): string {
  return formatEndpoint(address, port);
}

/** Seconds in the largest two units: `45 s`, `3 min 20 s`, `2 h 5 min`. */
export function duration(s: number): string {
  if (!Number.isFinite(s)) return 'never';
  const t = Math.max(0, Math.round(s));
  if (t < 60) return `${t} s`;
  if (t < 3600) return `${Math.floor(t / 60)} min${t % 60 ? ` ${t % 60} s` : ''}`;
  if (t < 86_400) return `${Math.floor(t / 3600)} h${Math.floor((t % 3600) / 60) ? ` ${Math.floor((t % 3600) / 60)} min` : ''}`;
  return `${(t / 86_400).toFixed(1)} days`;
}

function rate(r: number | undefined): string {
  if (r === undefined) return '';
  if (r === 0) return '0/s';
  const a = Math.abs(r);
  return `${r > 0 ? '+' : '-'}${a >= 100 ? num(a) : a.toFixed(1)}/s`;
}

function usedOf(d: DestinationPressure): string {
  return d.capacity === null ? `${num(d.used)} ports used (capacity unknown: the ephemeral range could not be read)` : `${num(d.used)} of ${num(d.capacity)} ports used (${percent(d.headroom)} headroom)`;
}

/** Seconds until `d` runs out at `perSecond`; null when it is not growing or its capacity is unknown. */
export function secondsToExhaustion(d: DestinationPressure, perSecond: number | undefined): number | null {
  if (d.capacity === null || perSecond === undefined || perSecond <= 0) return null;
  return Math.max(0, d.capacity - d.used) / perSecond;
}

/** The first line: which destination is closest to running out, or that none is under pressure; with `churn`, a second line when one churns past its ceiling or reuses a full pool. */
export function portsSentence(report: PortPressureReport, options: Pick<PortsRenderOptions, 'warn' | 'rates' | 'churn'>): string {
  const top = report.destinations[0];
  if (!top) return `No destination holds a source port: no client-side TCP socket among the ${num(report.totals.sockets)} counted.`;
  const threshold = options.warn ?? DEFAULT_PRESSURE_PERCENT;
  const who = `${endpoint(top.destination, top.port)} from ${top.source}`;
  let s =
    top.share === null || top.share >= threshold
      ? `${who} is the closest to running out: ${usedOf(top)}`
      : `No destination is under pressure (all use less than ${threshold}% of their ports); the busiest is ${who}: ${usedOf(top)}`;
  if (options.rates) {
    const r = options.rates.get(destinationKey(top));
    const eta = secondsToExhaustion(top, r);
    s += eta === null ? (r === undefined ? '; trend after the next scan' : '; not growing') : `; at ${rate(r)} it runs out in ${duration(eta)}`;
    let sooner: { d: DestinationPressure; eta: number } | undefined;
    for (const d of report.destinations) {
      const e = secondsToExhaustion(d, options.rates.get(destinationKey(d)));
      if (e !== null && (eta === null || e < eta) && (!sooner || e < sooner.eta)) sooner = { d, eta: e };
    }
    if (sooner && sooner.d !== top) s += `; ${endpoint(sooner.d.destination, sooner.d.port)} from ${sooner.d.source} runs out sooner, in ${duration(sooner.eta)}`;
  }
  const churn = options.churn && churnLine(report, options.churn);
  return churn ? `${s}.\n${churn}` : `${s}.`;
}

/**
 * The churn line of the watch view: the destination opening new connections
 * furthest past its churn ceiling; else one whose every port is held with
 * TIME_WAIT among them, where new connections reuse ports between two scans
 * (NEW/S cannot see those); undefined when neither.
 */
function churnLine(report: PortPressureReport, churn: WatchChurn): string | undefined {
  let worst: { d: DestinationPressure; rate: number; ceiling: number } | undefined;
  let full: DestinationPressure | undefined;
  for (const d of report.destinations) {
    const rate = churn.newPerSecond.get(destinationKey(d));
    const ceiling = churn.ceilingOf(d).perPool;
    if (rate === undefined || ceiling === null) continue;
    if (rate > ceiling && (!worst || rate / ceiling > worst.rate / worst.ceiling)) worst = { d, rate, ceiling };
    if (!full && d.capacity !== null && d.used >= d.capacity && d.timeWait > 0) full = d;
  }
  const who = (d: DestinationPressure): string => `${endpoint(d.destination, d.port)} from ${d.source}`;
  if (worst) {
    const { d, rate, ceiling } = worst;
    const remedy = churn.ceilingOf(d).remedy;
    return (
      `${who(d)} opens ${ratePerSecond(rate)} new connections/s, past its churn ceiling of ${ratePerSecond(ceiling)}/s: ` +
      `if this host closes them first, TIME_WAIT will hold all its ports${remedy ? `; to churn faster: ${remedy}` : ''}.`
    );
  }
  if (!full) return undefined;
  const ceiling = churn.ceilingOf(full).perPool as number;
  return (
    `${who(full)} has every port held, ${num(full.timeWait)} in TIME_WAIT: new connections get a port only as TIME_WAIT frees or yields one, ` +
    `${ratePerSecond(ceiling)}/s at most, and NEW/S misses a port reused between two scans.`
  );
}

function ceilingCell(d: DestinationPressure, c: Churn): string {
  if (d.capacity === null) return '-';
  return c.perPool === null ? 'none' : ratePerSecond(c.perPool);
}

function otherStates(d: DestinationPressure): string {
  const parts: string[] = [];
  for (const [name, n] of Object.entries(d.states)) {
    if (name !== 'ESTABLISHED' && name !== 'TIME_WAIT' && n) parts.push(`${name} ${num(n)}`);
  }
  return parts.join(', ') || '-';
}

function over(d: DestinationPressure, warn: number | null): boolean {
  return warn !== null && d.share !== null && d.share >= warn;
}

function destinationsTable(report: PortPressureReport, o: PortsRenderOptions): string[] {
  const shown = report.destinations.slice(0, o.top);
  const withTrend = o.rates !== undefined;
  const churn = o.churn;
  const failed = o.failures?.counted ? failuresByDestination(o.failures.counts) : undefined;
  const header = ['SOURCE', 'DESTINATION', 'USED', 'CAPACITY', 'HEADROOM', 'ESTAB', 'TIME_WAIT', ...(withTrend ? ['TREND'] : []), ...(churn ? ['NEW/S', 'CEILING/S'] : []), ...(failed ? ['FAILED'] : []), 'OTHER'];
  const rows = shown.map((d) => [
    d.source,
    endpoint(d.destination, d.port),
    num(d.used),
    d.capacity === null ? '-' : `${num(d.capacity)}${d.pool === 'explicit' ? '*' : ''}`,
    percent(d.headroom),
    num(d.states.ESTABLISHED ?? 0),
    num(d.timeWait),
    ...(withTrend ? [rate(o.rates?.get(destinationKey(d))) || '-'] : []),
    ...(churn ? newAndCeiling(d, churn) : []),
    ...(failed ? [num(failed.get(destinationKey(d))?.total ?? 0)] : []),
    otherStates(d),
  ]);
  const extra = (withTrend ? 1 : 0) + (churn ? 2 : 0) + (failed ? 1 : 0);
  const right = new Set([2, 3, 4, 5, 6, ...Array.from({ length: extra }, (_, i) => 7 + i)]);
  const lines = table(header, rows, right).split('\n');
  const out = [lines[0]];
  shown.forEach((d, i) => {
    const line = lines[i + 1];
    if (!over(d, o.warn)) out.push(line);
    else out.push(o.ansi ? `\x1b[7;31m${line}\x1b[0m` : `${line}  <- over ${o.warn}%`);
  });
  if (report.destinations.length > shown.length) out.push(`... and ${num(report.destinations.length - shown.length)} more destination(s) (--top ${o.top})`);
  if (shown.some((d) => d.pool === 'explicit')) {
    out.push(`* source ports outside the ephemeral range: bound explicitly, so the capacity is every unprivileged port not reserved or listened on (${num(report.pools.explicit)})`);
  }
  return out;
}

function newAndCeiling(d: DestinationPressure, churn: WatchChurn): [string, string] {
  const key = destinationKey(d);
  const n = churn.newPerSecond.get(key);
  return [n === undefined ? '-' : ratePerSecond(n), ceilingCell(d, churn.ceilingOf(d))];
}

/**
 * The failures section: one line per failing destination (or bind address),
 * with, for a destination the table knows, its pool and its churn beside the
 * failures, so that cause and effect read on one line.
 */
function failureLines(report: PortPressureReport, o: PortsRenderOptions): string[] {
  const f = o.failures;
  if (!f) return [];
  if (!f.counted) return [`Failed connect() and bind() calls: not counted (${f.reason}).`];
  const span = f.seconds === null ? 'since the failure tracer started' : `in the last ${Math.max(1, Math.round(f.seconds))} s`;
  if (f.counts.length === 0) return [`Failed connect() and bind() calls: none ${span}${f.overflow ? ` but ${num(f.overflow)} the tracer's full map could not place` : ''}.`];
  const byKey = new Map(report.destinations.map((d) => [destinationKey(d), d]));
  const shown = f.counts.slice(0, o.top);
  const out = ['Failed connect() and bind() calls (counted in the kernel as they happen):'];
  for (const c of shown) {
    let line = `  ${failureLine(c, f.seconds)}`;
    const d = c.destination === null ? undefined : byKey.get(destinationKey({ source: c.source, destination: c.destination, port: c.port }));
    if (d) {
      line += `; ${d.capacity === null ? `${num(d.used)} ports used` : `${num(d.used)} of ${num(d.capacity)} ports used`}`;
      const n = o.churn?.newPerSecond.get(destinationKey(d));
      const ceiling = o.churn?.ceilingOf(d).perPool;
      if (n !== undefined) line += `, ${ratePerSecond(n)} new/s${ceiling === undefined || ceiling === null ? '' : ` against a churn ceiling of ${ratePerSecond(ceiling)}/s`}`;
    } else if (c.call === 'bind' && c.port === 0) {
      line += ': bind(address, 0) found no free ephemeral port on the address';
    }
    out.push(line);
  }
  if (f.counts.length > shown.length) out.push(`  ... and ${num(f.counts.length - shown.length)} more`);
  if (f.overflow) out.push(`  and ${num(f.overflow)} more the tracer's map (full) could not place`);
  return out;
}

/** Cgroups shown per destination before "N more". */
const HOLDERS_SHOWN = 5;

/** Who holds each destination's ports: its sockets per cgroup and, with --pids, per process. */
function ownersLines(report: PortPressureReport, owners: ScanOwners, top: number): string[] {
  if (owners.missing !== undefined) return [`Who holds the ports: not known (${owners.missing}).`];
  const shown = report.destinations.slice(0, top);
  const rows: string[][] = [];
  const procs: string[] = [];
  for (const d of shown) {
    const holders = d.cgroups ?? [];
    holders.slice(0, HOLDERS_SHOWN).forEach((h, i) => {
      const info = owners.cgroups.get(h.id) ?? { id: h.id, path: null };
      rows.push([i === 0 ? d.source : '', i === 0 ? endpoint(d.destination, d.port) : '', cgroupLabel(info), workload(info), num(h.sockets), percent(d.used ? (100 * h.sockets) / d.used : null)]);
    });
    if (holders.length > HOLDERS_SHOWN) rows.push(['', '', `... and ${num(holders.length - HOLDERS_SHOWN)} more cgroup(s)`, '', '', '']);
    const p = owners.processes?.byDestination.get(destinationKey(d));
    if (p && p.length) procs.push(`  ${d.source} → ${endpoint(d.destination, d.port)}: ${p.slice(0, HOLDERS_SHOWN).map((x) => `${x.comm}[${x.pid}] ${num(x.sockets)}`).join(', ')}${p.length > HOLDERS_SHOWN ? `, and ${num(p.length - HOLDERS_SHOWN)} more` : ''}`);
  }
  const out = ['Who holds the ports (sockets per control group; TIME_WAIT sockets belong to no process):', ...table(['SOURCE', 'DESTINATION', 'CGROUP', 'WORKLOAD', 'SOCKETS', 'SHARE'], rows, new Set([4, 5])).split('\n')];
  if (owners.processes) {
    const c = owners.processes;
    out.push('', `Processes (${num(c.descriptors)} descriptors of ${num(c.processes)} processes read in ${ms(c.ms)}):`, ...(procs.length ? procs : ['  none of these sockets is held by a process this user can read']));
  }
  return out;
}

/** The unit, or the pod and container, a cgroup names; '-' when none. */
function workload(c: CgroupInfo): string {
  if (c.pod) return c.container ? `pod ${c.pod.slice(0, 8)}, container ${c.container.slice(0, 12)}` : `pod ${c.pod.slice(0, 8)}`;
  return c.unit ?? '-';
}

function listenersTable(report: PortPressureReport, top: number): string[] {
  const shown = report.listeners.slice(0, top);
  const rows = shown.map((l) => [endpoint(l.address, l.port), num(l.accepted), num(l.acceptQueue), num(l.other), l.sockets > 1 ? `${l.sockets} sockets (SO_REUSEPORT)` : '']);
  const out = ['Listeners (the accepting side has no port limit):', ...table(['LISTENER', 'ACCEPTED', 'ACCEPT QUEUE', 'OTHER', ''], rows, new Set([1, 2, 3])).split('\n')];
  if (report.listeners.length > shown.length) out.push(`... and ${num(report.listeners.length - shown.length)} more listener(s)`);
  return out;
}

function sourcesTable(report: PortPressureReport, top: number): string[] {
  const shown = report.sources.slice(0, top);
  const rows = shown.map((s) => [s.source, num(s.portsInUse), num(s.capacity), percent(s.headroom)]);
  return [
    'Source addresses (bind(address, 0) before connect() draws from one pool per address, shared by all destinations):',
    ...table(['SOURCE', 'PORTS IN USE', 'CAPACITY', 'HEADROOM'], rows, new Set([1, 2, 3])).split('\n'),
  ];
}

function totalsLines(scan: PortScan): string[] {
  const t = scan.report.totals;
  const states = Object.entries(t.byState)
    .sort((a, b) => (b[1] ?? 0) - (a[1] ?? 0))
    .map(([k, v]) => `${k} ${num(v)}`)
    .join(', ');
  const out = [
    `Sockets: ${num(t.sockets)}${states ? ` (${states})` : ''}; ${num(t.clientSide)} client side toward ${num(t.destinations)} destination(s), ${num(t.serverSide)} accepted, ${num(t.listening)} listening.`,
  ];
  if (t.descriptors) {
    const d = t.descriptors;
    out.push(`Descriptors: sockets hold at most ${num(d.sockets)} (TIME_WAIT and SYN_RECV hold none); the host has ${num(d.allocated)} of fs.file-max ${num(d.max)} allocated${d.max > 0 ? ` (${percent((100 * d.allocated) / d.max)})` : ''}.`);
  }
  if (t.memory) {
    const m = t.memory;
    out.push(`Kernel memory: about ${bytes(m.kernelBytes)} for ${num(t.fullSockets)} socket${t.fullSockets === 1 ? '' : 's'} at ${bytes(KERNEL_BYTES_PER_SOCKET)} each; ${bytes(m.available)} available.`);
  }
  const from = { bpf: 'BPF iterator', netlink: 'netlink sock_diag', proc: '/proc/net/tcp' }[scan.source];
  out.push(`Scanned ${num(scan.rows)} row${scan.rows === 1 ? '' : 's'} (${from}) in ${ms(scan.scanMs)}.${scan.errors.length ? ` Not read: ${scan.errors.join('; ')}.` : ''}`);
  return out;
}

/** The human report: sentence, destinations by pressure, listeners, source pools, totals, scan time. */
export function renderPorts(scan: PortScan, options: PortsRenderOptions): string {
  const r = scan.report;
  const out = [portsSentence(r, options)];
  if (r.destinations.length) out.push('', ...destinationsTable(r, options));
  if (options.failures) out.push('', ...failureLines(r, options));
  if (scan.owners) out.push('', ...ownersLines(r, scan.owners, options.top));
  if (r.listeners.length) out.push('', ...listenersTable(r, options.top));
  if (r.sources.length) out.push('', ...sourcesTable(r, options.top));
  out.push('', ...totalsLines(scan));
  return out.join('\n');
}

/** One refresh of the watch view (the caller clears the screen on a terminal). */
export function renderWatch(scan: PortScan, options: PortsRenderOptions & { readonly intervalS: number }): string {
  const when = new Date(scan.at).toISOString().slice(11, 19);
  return `${renderPorts(scan, options)}\n${when} UTC, every ${options.intervalS} s; Ctrl-C to stop.`;
}

function round(n: number | null, digits = 2): number | null {
  return n === null ? null : Math.round(n * 10 ** digits) / 10 ** digits;
}

/** The `--json` document. `top` null: every destination and listener. */
export function portsJson(scan: PortScan, options: { top: number | null; warn: number | null; rates?: ReadonlyMap<string, number>; churn?: WatchChurn; failures?: FailuresView }): object {
  const r = scan.report;
  const top = options.top ?? Number.MAX_SAFE_INTEGER;
  const failed = options.failures?.counted ? failuresByDestination(options.failures.counts) : undefined;
  const destinations = r.destinations.slice(0, top).map((d) => ({
    source: d.source,
    destination: d.destination,
    port: d.port,
    family: d.family,
    used: d.used,
    capacity: d.capacity,
    pool: d.pool,
    timeWait: d.timeWait,
    headroom: round(d.headroom),
    share: round(d.share),
    inRange: d.inRange,
    outOfRange: d.outOfRange,
    states: d.states,
    ...(options.rates ? { trend: round(options.rates.get(destinationKey(d)) ?? null) } : {}),
    ...(options.churn ? churnFields(d, options.churn) : {}),
    ...(failed ? { failures: failed.get(destinationKey(d)) ?? { total: 0, byErrno: {} } } : {}),
    ...(scan.owners && scan.owners.missing === undefined ? ownersFields(d, scan.owners) : {}),
  }));
  return {
    destinations,
    omitted: Math.max(0, r.destinations.length - destinations.length),
    listeners: r.listeners.slice(0, top),
    sources: r.sources.map((s) => ({ ...s, headroom: round(s.headroom) })),
    totals: r.totals,
    pools: r.pools,
    ...(options.warn !== null ? { warn: { percent: options.warn, over: r.destinations.filter((d) => over(d, options.warn)).length } } : {}),
    ...(options.churn ? { churn: churnSummary(options.churn) } : {}),
    ...(options.failures ? { failures: options.failures } : {}),
    ...(scan.owners ? { owners: ownersSummary(scan.owners) } : {}),
    scanMs: round(scan.scanMs, 3),
    source: scan.source,
    rows: scan.rows,
    errors: scan.errors,
  };
}

/** A destination's `newPerSecond` (null on the first refresh) and `ceilingPerSecond` (null: TIME_WAIT sets none, or unknown). */
function churnFields(d: DestinationPressure, churn: WatchChurn): { newPerSecond: number | null; ceilingPerSecond: number | null } {
  return { newPerSecond: round(churn.newPerSecond.get(destinationKey(d)) ?? null), ceilingPerSecond: round(churn.ceilingOf(d).perPool) };
}

/** A destination's `holders` (per cgroup; `cgroup` 0 and `path` null: no owner, TIME_WAIT) and, with --pids, `processes`. */
function ownersFields(d: DestinationPressure, owners: ScanOwners): object {
  const holders = (d.cgroups ?? []).map((h) => ({ ...(owners.cgroups.get(h.id) ?? { id: h.id, path: null }), sockets: h.sockets }));
  const processes = owners.processes?.byDestination.get(destinationKey(d));
  return { holders, ...(processes ? { processes } : {}) };
}

/** Whether owners are known, and what naming the processes cost. */
function ownersSummary(owners: ScanOwners): object {
  if (owners.missing !== undefined) return { known: false, reason: owners.missing };
  const p = owners.processes;
  return { known: true, ...(p ? { pids: { ms: round(p.ms, 1), processes: p.processes, descriptors: p.descriptors } } : {}) };
}

/** What the ceilings assumed: the strategy and the kernel's TIME_WAIT settings. */
function churnSummary(churn: WatchChurn): object {
  return { strategy: churn.strategy ?? 'auto', ...churn.settings };
}
