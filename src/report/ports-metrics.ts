/**
 * Port pressure as Prometheus metrics (prom-client). Every gauge fills
 * itself in collect() from `snapshot()`, which the caller makes scan at most
 * once per scrape; the number of destination series is capped at `top` plus
 * one aggregated `other`.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { PortScan } from '../engine/port-scan.js';
import { isKept, type KeptInfo } from '../engine/kept-ports.js';
import type { FailureCount, FailureSnapshot } from '../kernel/failure-tracer.js';
import type { DestinationPressure } from '../model/port-pressure.js';

/** Label value of the series that aggregates the destinations past the cap. */
export const OTHER = 'other';

type DestLabels = 'source' | 'destination' | 'port';

/**
 * Wraps a synchronous scan so that it runs at most once per event-loop turn:
 * a scrape calls every collect() in the same turn, so each scrape scans once
 * whatever the order of the gauges.
 */
export function oncePerTurn<T>(scan: () => T): () => T {
  let cached: { value: T } | undefined;
  return () => {
    if (!cached) {
      cached = { value: scan() };
      setImmediate(() => (cached = undefined));
    }
    return cached.value;
  };
}

/**
 * A registry whose gauges read `snapshot()` on collect; `top` caps
 * destinations and listeners, and the failure series. `failures()` gives
 * what the failure tracer counted since it attached, or why it could not.
 */
export function portsRegistry(snapshot: () => PortScan, top: number, failures?: () => FailureSnapshot | { reason: string }): Registry {
  const registry = new Registry();
  const registers = [registry];
  const destLabels: DestLabels[] = ['source', 'destination', 'port'];

  /** The top destinations and, past the cap, one sum labelled `other`. */
  const capped = (): { labels: Record<DestLabels, string>; used: number; capacity: number | null; timeWait: number }[] => {
    const all = snapshot().report.destinations;
    const out = all.slice(0, top).map((d: DestinationPressure) => ({
      labels: { source: d.source, destination: d.destination, port: String(d.port) },
      used: d.used,
      capacity: d.capacity,
      timeWait: d.timeWait,
    }));
    const rest = all.slice(top);
    if (rest.length) {
      let used = 0;
      let capacity: number | null = 0;
      let timeWait = 0;
      for (const d of rest) {
        used += d.used;
        timeWait += d.timeWait;
        capacity = capacity === null || d.capacity === null ? null : capacity + d.capacity;
      }
      out.push({ labels: { source: OTHER, destination: OTHER, port: OTHER }, used, capacity, timeWait });
    }
    return out;
  };

  new Gauge({
    name: 'fourtuple_scan_duration_seconds',
    help: 'Time the last scan of the socket table and its aggregation took.',
    registers,
    collect() {
      this.set(snapshot().scanMs / 1000);
    },
  });
  new Gauge({
    name: 'fourtuple_destinations',
    help: 'Destinations (source, destination address, destination port) with client-side sockets, before the cardinality cap.',
    registers,
    collect() {
      this.set(snapshot().report.destinations.length);
    },
  });
  new Gauge({
    name: 'fourtuple_destination_ports_used',
    help: 'Source ports held toward the destination: client-side sockets in every state but LISTEN, TIME_WAIT included.',
    labelNames: destLabels,
    registers,
    collect() {
      this.reset();
      for (const d of capped()) this.set(d.labels, d.used);
    },
  });
  new Gauge({
    name: 'fourtuple_destination_ports_capacity',
    help: 'Source ports the kernel may use toward the destination (its ephemeral pool, or the explicit pool for explicitly bound ports).',
    labelNames: destLabels,
    registers,
    collect() {
      this.reset();
      for (const d of capped()) if (d.capacity !== null) this.set(d.labels, d.capacity);
    },
  });
  new Gauge({
    name: 'fourtuple_destination_time_wait',
    help: 'Client-side sockets toward the destination in TIME_WAIT (each still holds its 4-tuple).',
    labelNames: destLabels,
    registers,
    collect() {
      this.reset();
      for (const d of capped()) this.set(d.labels, d.timeWait);
    },
  });
  new Gauge({
    name: 'fourtuple_destination_headroom_ratio',
    help: 'Share of the destination pool still free: (capacity - used) / capacity.',
    labelNames: destLabels,
    registers,
    collect() {
      this.reset();
      for (const d of capped()) if (d.capacity) this.set(d.labels, (d.capacity - d.used) / d.capacity);
    },
  });
  new Gauge({
    name: 'fourtuple_sockets',
    help: 'TCP sockets in the table by state.',
    labelNames: ['state'],
    registers,
    collect() {
      this.reset();
      for (const [state, n] of Object.entries(snapshot().report.totals.byState)) this.set({ state }, n ?? 0);
    },
  });
  new Gauge({
    name: 'fourtuple_listener_accepted',
    help: 'ESTABLISHED sockets accepted on the listener (top listeners only).',
    labelNames: ['address', 'port'],
    registers,
    collect() {
      this.reset();
      for (const l of snapshot().report.listeners.slice(0, top)) this.set({ address: l.address, port: String(l.port) }, l.accepted);
    },
  });
  new Gauge({
    name: 'fourtuple_listener_accept_queue',
    help: 'Connections waiting in the listener accept queue (top listeners only).',
    labelNames: ['address', 'port'],
    registers,
    collect() {
      this.reset();
      for (const l of snapshot().report.listeners.slice(0, top)) this.set({ address: l.address, port: String(l.port) }, l.acceptQueue);
    },
  });
  new Gauge({
    name: 'fourtuple_source_ports_in_use',
    help: 'Distinct ephemeral ports in use on the source address: the pool bind(address, 0) shares across all destinations.',
    labelNames: ['source'],
    registers,
    collect() {
      this.reset();
      for (const s of snapshot().report.sources.slice(0, top)) this.set({ source: s.source }, s.portsInUse);
    },
  });
  if (failures) failureMetrics(registers, failures, top);
  keptMetrics(registers, snapshot);
  new Gauge({
    name: 'fourtuple_destination_cgroup_sockets',
    help:
      'Client-side sockets toward the destination held by each control group (cgroup v2 path; "none": TIME_WAIT and request sockets, which no process holds), with --by cgroup: ' +
      `top destinations, ${CGROUPS_PER_DESTINATION} cgroups each plus one cgroup="other".`,
    labelNames: [...destLabels, 'cgroup'],
    registers,
    collect() {
      this.reset();
      const scan = snapshot();
      const owners = scan.owners;
      if (!owners || owners.missing !== undefined) return;
      for (const d of scan.report.destinations.slice(0, top)) {
        const labels = { source: d.source, destination: d.destination, port: String(d.port) };
        const holders = d.cgroups ?? [];
        for (const h of holders.slice(0, CGROUPS_PER_DESTINATION)) this.set({ ...labels, cgroup: cgroupValue(owners.cgroups.get(h.id)?.path ?? null, h.id) }, h.sockets);
        const rest = holders.slice(CGROUPS_PER_DESTINATION).reduce((n, h) => n + h.sockets, 0);
        if (rest) this.set({ ...labels, cgroup: OTHER }, rest);
      }
    },
  });
  return registry;
}

/** How the kernel-kept counts are doing (nothing when the scrape scanned the table). */
function keptMetrics(registers: Registry[], snapshot: () => PortScan): void {
  const kept = (): ReturnType<typeof keptOf> => keptOf(snapshot());
  new Gauge({
    name: 'fourtuple_kept_counts',
    help: 'Whether scrapes read counts the kernel keeps (1) or scan the socket table (0).',
    registers,
    collect() {
      this.set(kept() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'fourtuple_kept_counts_drift_sockets',
    help: 'Sockets the kernel-kept counts had wrong at the last full scan that could compare them (0: exact); corrected from then on.',
    registers,
    collect() {
      const k = kept();
      if (k) this.set(k.lastDrift);
    },
  });
  new Counter({
    name: 'fourtuple_kept_counts_drift_sockets_total',
    help: 'Sockets the kernel-kept counts had wrong, added over every full scan that compared them.',
    registers,
    collect() {
      this.reset();
      const k = kept();
      if (k) this.inc(k.driftTotal);
    },
  });
  new Counter({
    name: 'fourtuple_kept_counts_reconciliations_total',
    help: 'Full scans that checked the kernel-kept counts, by result: exact, drift (corrected), busy (every destination changed during the scan: none compared).',
    labelNames: ['result'],
    registers,
    collect() {
      this.reset();
      const k = kept();
      if (k) for (const [result, n] of Object.entries(k.reconciliations)) this.inc({ result }, n);
    },
  });
  new Gauge({
    name: 'fourtuple_kept_counts_destinations_compared',
    help: 'Destinations the last full scan compared with the kernel-kept counts (skipped="true": their sockets changed during the scan, compared next time).',
    labelNames: ['skipped'],
    registers,
    collect() {
      this.reset();
      const k = kept();
      if (!k) return;
      this.set({ skipped: 'false' }, k.compared);
      this.set({ skipped: 'true' }, k.skipped);
    },
  });
  new Gauge({
    name: 'fourtuple_kept_counts_reconciled_timestamp_seconds',
    help: 'When the last full scan ran: TIME_WAIT, listeners, source pools and cgroups are as of then.',
    registers,
    collect() {
      const k = kept();
      if (k) this.set(k.reconciledAt / 1000);
    },
  });
  new Gauge({
    name: 'fourtuple_kept_counts_reconcile_duration_seconds',
    help: 'How long the last full scan took.',
    registers,
    collect() {
      const k = kept();
      if (k) this.set(k.reconcileMs / 1000);
    },
  });
  new Counter({
    name: 'fourtuple_kept_counts_overflow_total',
    help: 'Sockets (map="sockets") or destinations (map="destinations") the bounded maps could not take, and so did not count.',
    labelNames: ['map'],
    registers,
    collect() {
      this.reset();
      const k = kept();
      if (!k) return;
      this.inc({ map: 'sockets' }, k.socketsOverflow);
      this.inc({ map: 'destinations' }, k.destinationsOverflow);
    },
  });
}

function keptOf(scan: PortScan): KeptInfo | undefined {
  return isKept(scan) ? scan.kept : undefined;
}

/** Cgroup series per destination before one cgroup="other". */
export const CGROUPS_PER_DESTINATION = 10;

/** The `cgroup` label: the path; `none` for sockets no process holds; `id:N` for a cgroup removed before it was named. */
function cgroupValue(path: string | null, id: number): string {
  if (id === 0) return 'none';
  return path ?? `id:${id}`;
}

/** Top `top` counts of one call, by count, and the rest summed into one series labelled `other`. */
function cappedFailures(all: readonly FailureCount[], call: 'connect' | 'bind', top: number): { counts: FailureCount[]; other: Map<string, number> } {
  const mine = all.filter((c) => c.call === call);
  const other = new Map<string, number>();
  for (const c of mine.slice(top)) other.set(c.errno, (other.get(c.errno) ?? 0) + c.count);
  return { counts: mine.slice(0, top), other };
}

function failureMetrics(registers: Registry[], failures: () => FailureSnapshot | { reason: string }, top: number): void {
  const counts = (): readonly FailureCount[] => {
    const f = failures();
    return 'counts' in f ? f.counts : [];
  };
  new Gauge({
    name: 'fourtuple_failure_tracer_attached',
    help: 'Whether failed connect() and bind() calls are counted (1) or not (0: no privileges, or a kernel without the tracepoints; the exporter printed why).',
    registers,
    collect() {
      this.set('counts' in failures() ? 1 : 0);
    },
  });
  new Counter({
    name: 'fourtuple_connect_failures_total',
    help: 'connect() calls that failed toward the destination since the exporter started, by errno: EADDRNOTAVAIL (no source port left), or the error of the handshake (ECONNREFUSED, ETIMEDOUT, ...).',
    labelNames: ['source', 'destination', 'port', 'errno'],
    registers,
    collect() {
      this.reset();
      const { counts: shown, other } = cappedFailures(counts(), 'connect', top);
      for (const c of shown) this.inc({ source: c.source, destination: c.destination ?? '', port: String(c.port), errno: c.errno }, c.count);
      for (const [errno, n] of other) this.inc({ source: OTHER, destination: OTHER, port: OTHER, errno }, n);
    },
  });
  new Counter({
    name: 'fourtuple_bind_failures_total',
    help: 'bind() calls that failed on the address since the exporter started, by port asked for (0: any ephemeral port) and errno (EADDRINUSE: taken, or none free).',
    labelNames: ['source', 'port', 'errno'],
    registers,
    collect() {
      this.reset();
      const { counts: shown, other } = cappedFailures(counts(), 'bind', top);
      for (const c of shown) this.inc({ source: c.source, port: String(c.port), errno: c.errno }, c.count);
      for (const [errno, n] of other) this.inc({ source: OTHER, port: OTHER, errno }, n);
    },
  });
  new Counter({
    name: 'fourtuple_failure_overflow_total',
    help: "Failed calls the tracer's map, full, could not place by key (counted here instead).",
    registers,
    collect() {
      this.reset();
      const f = failures();
      if ('overflow' in f) this.inc(f.overflow);
    },
  });
}
