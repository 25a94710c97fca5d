/**
 * Port pressure as Prometheus metrics (prom-client). Every gauge fills
 * itself in collect() from `snapshot()`, which the caller makes scan at most
 * once per scrape; the number of destination series is capped at `top` plus
 * one aggregated `other`.
 */
import { Gauge, Registry } from 'prom-client';
import type { PortScan } from '../engine/port-scan.js';
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

/** A registry whose gauges read `snapshot()` on collect; `top` caps destinations and listeners. */
export function portsRegistry(snapshot: () => PortScan, top: number): Registry {
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
  return registry;
}
