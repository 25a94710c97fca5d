/**
 * The failure tracer against the real kernel, in a private namespace with a
 * 100-port range and plain Node clients (support/failures-scenario.ts):
 * exact counts of EADDRNOTAVAIL (connect) and EADDRINUSE (bind), in the
 * exporter and in `ports --json`, nothing counted from another namespace,
 * nothing left after the exporter stops, and, without privileges, the
 * counts reported missing with the reason while the rest works.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsUnavailable, runInNetns } from './support/netns.js';
import { parseExposition, type Sample } from './support/exposition.js';
import type { FailuresScenarioResult } from './support/failures-scenario.js';
import { failureTracer, MAX_KEYS as FAILURE_MAX_KEYS } from '../dist/kernel/failure-tracer.js';

const skip = netnsUnavailable();
/** Why the tracer cannot attach here (a kernel without the tracepoints, no BTF), or undefined. */
function tracerUnavailable(): string | undefined {
  if (skip) return skip;
  const t = failureTracer();
  if ('reason' in t) return `no failure tracer here: ${t.reason}`;
  t.tracer.close();
  return undefined;
}
const noTracer = tracerUnavailable();

function samples(body: string, name: string): Sample[] {
  const family = parseExposition(body).get(name);
  return family?.samples ?? [];
}

function counter(body: string, name: string, labels: Record<string, string>): number | undefined {
  return samples(body, name).find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

/** Refused connects of the overflow step, one port each: more than the map's keys. */
const REFUSED_PORTS = FAILURE_MAX_KEYS + 104;
const CONNECT = { source: '127.0.0.1', destination: '127.0.0.1', port: '7000', errno: 'EADDRNOTAVAIL' };

describe('failure tracer, as root', { skip: noTracer }, () => {
  let r: FailuresScenarioResult;
  before(() => {
    r = runInNetns<FailuresScenarioResult>('failures-scenario', { exporterAsNobody: false, refusedPorts: REFUSED_PORTS }, 120_000);
  });

  test('the client saw 100 connected and 50 EADDRNOTAVAIL; the exporter counted exactly 50', () => {
    assert.deepEqual(r.first, { connected: 100, failed: { 'EADDRNOTAVAIL connect': 50 } });
    assert.match(r.exporterBanner, /failed connect\(\) and bind\(\) calls counted from now/);
    assert.equal(counter(r.scrape1, 'fourtuple_failure_tracer_attached', {}), 1);
    assert.equal(counter(r.scrape1, 'fourtuple_connect_failures_total', CONNECT), 50);
    assert.equal(samples(r.scrape1, 'fourtuple_connect_failures_total').length, 1, r.scrape1);
    assert.equal(counter(r.scrape1, 'fourtuple_failure_overflow_total', {}), 0);
  });

  test('ports --json reads the running tracer: the same 50, on the destination too', () => {
    const j = JSON.parse(r.portsJson) as {
      failures: { counted: boolean; counts: { call: string; source: string; destination: string; port: number; errno: string; count: number }[] };
      destinations: { destination: string; port: number; used: number; failures: { total: number; byErrno: Record<string, number> } }[];
    };
    assert.equal(j.failures.counted, true);
    assert.deepEqual(
      j.failures.counts.map((c) => [c.call, c.source, c.destination, c.port, c.errno, c.count]),
      [['connect', '127.0.0.1', '127.0.0.1', 7000, 'EADDRNOTAVAIL', 50]],
    );
    const d = j.destinations.find((x) => x.destination === '127.0.0.1' && x.port === 7000);
    assert.ok(d, r.portsJson);
    assert.equal(d.used, 100);
    assert.deepEqual(d.failures, { total: 50, byErrno: { EADDRNOTAVAIL: 50 } });
    assert.match(r.portsText, /127\.0\.0\.1 → 127\.0\.0\.1:7000: 50 EADDRNOTAVAIL since the tracer started; 100 of 100 ports used/);
  });

  test('as nobody, ports --json still reports the table and says why the failures are not there', () => {
    assert.equal(r.portsJsonNobody.status, 0, r.portsJsonNobody.stderr);
    const j = JSON.parse(r.portsJsonNobody.stdout) as { failures: { counted: boolean; reason: string }; destinations: { port: number; used: number }[] };
    assert.deepEqual(j.failures, { counted: false, reason: "reading another process's tracer needs root (CAP_SYS_ADMIN)" });
    assert.equal(j.destinations.find((d) => d.port === 7000)?.used, 100);
  });

  test('failures in another namespace are not counted; the counter keeps counting', () => {
    assert.deepEqual(r.nested, { connected: 100, failed: { 'EADDRNOTAVAIL connect': 50 } });
    assert.deepEqual(r.second, { connected: 100, failed: { 'EADDRNOTAVAIL connect': 50 } });
    assert.equal(counter(r.scrape2, 'fourtuple_connect_failures_total', CONNECT), 100);
  });

  test('ports --watch attaches a tracer of its own: the second client\'s 50 in its window, on the destination too', () => {
    const j = JSON.parse(r.watchLast) as {
      failures: { counted: boolean; seconds: number; counts: { destination: string; port: number; errno: string; count: number }[] };
      destinations: { destination: string; port: number; failures: { total: number } }[];
    };
    assert.equal(j.failures.counted, true);
    assert.ok(j.failures.seconds > 0 && j.failures.seconds <= 10, String(j.failures.seconds));
    assert.deepEqual(
      j.failures.counts.map((c) => [c.destination, c.port, c.errno, c.count]),
      [['127.0.0.1', 7000, 'EADDRNOTAVAIL', 50]],
    );
    assert.equal(j.destinations.find((d) => d.port === 7000)?.failures.total, 50);
  });

  test('bind(127.0.0.2, 0) before connect: each EADDRINUSE the client saw, counted on the bind path', () => {
    // libuv reports a failed bind() at the connect() that follows (syscall 'connect').
    const bindFails = r.bind.failed['EADDRINUSE connect'] ?? r.bind.failed['EADDRINUSE bind'];
    assert.ok(bindFails > 0, JSON.stringify(r.bind));
    assert.equal(Object.keys(r.bind.failed).length, 1, JSON.stringify(r.bind));
    assert.equal(r.bind.connected + bindFails, 150, JSON.stringify(r.bind));
    assert.equal(counter(r.scrape3, 'fourtuple_bind_failures_total', { source: '127.0.0.2', port: '0', errno: 'EADDRINUSE' }), bindFails);
    // The connect counter did not move: bind() failed before any connect().
    assert.equal(counter(r.scrape3, 'fourtuple_connect_failures_total', CONNECT), 100);
  });

  test('over IPv6: [::1]\'s own pool, its 50 EADDRNOTAVAIL counted under ::1', () => {
    assert.deepEqual(r.v6, { connected: 100, failed: { 'EADDRNOTAVAIL connect': 50 } });
    assert.equal(counter(r.scrapeV6, 'fourtuple_connect_failures_total', { source: '::1', destination: '::1', port: '7000', errno: 'EADDRNOTAVAIL' }), 50);
    assert.equal(counter(r.scrapeV6, 'fourtuple_connect_failures_total', CONNECT), 100);
  });

  test('the map stays bounded: past its 4,096 keys, failures go to the overflow count, and the exporter caps its series', () => {
    assert.equal(r.refused, REFUSED_PORTS);
    const connect = samples(r.scrape4, 'fourtuple_connect_failures_total');
    const bindSeries = samples(r.scrape4, 'fourtuple_bind_failures_total');
    // Keys before: connect to 127.0.0.1:7000 and to [::1]:7000, bind on 127.0.0.2; the rest of the map took one refused port each.
    const placed = FAILURE_MAX_KEYS - 3;
    assert.equal(counter(r.scrape4, 'fourtuple_failure_overflow_total', {}), REFUSED_PORTS - placed);
    // Top 50 series plus `other` per errno: ECONNREFUSED (the two EADDRNOTAVAIL series are among the top).
    assert.equal(connect.length, 51, JSON.stringify(connect.map((s) => s.labels)));
    assert.equal(connect.reduce((n, s) => n + s.value, 0), 100 + 50 + placed);
    assert.equal(counter(r.scrape4, 'fourtuple_connect_failures_total', CONNECT), 100);
    assert.equal(counter(r.scrape4, 'fourtuple_connect_failures_total', { source: 'other', errno: 'ECONNREFUSED' }), placed - 48);
    assert.equal(bindSeries.length, 1);
  });

  test('after the exporter stops, its map and programs are gone', () => {
    assert.equal(r.exporterStatus, 0);
    assert.match(r.afterStop, /no failure tracer runs in this network namespace/);
  });
});

describe('failure tracer, exporter as nobody', { skip }, () => {
  let r: FailuresScenarioResult;
  before(() => {
    r = runInNetns<FailuresScenarioResult>('failures-scenario', { exporterAsNobody: true, refusedPorts: 0 }, 120_000);
  });

  test('the exporter says why failures are not counted, exports attached 0, and the rest works', () => {
    assert.match(r.exporterBanner, /failed calls not counted: BPF_MAP_CREATE: EPERM \(needs CAP_BPF and CAP_PERFMON, or root\)/);
    assert.equal(counter(r.scrape1, 'fourtuple_failure_tracer_attached', {}), 0);
    assert.deepEqual(samples(r.scrape1, 'fourtuple_connect_failures_total'), []);
    assert.equal(counter(r.scrape1, 'fourtuple_destination_ports_used', { source: '127.0.0.1', destination: '127.0.0.1', port: '7000' }), 100);
    assert.equal(r.exporterStatus, 0);
  });

  test('with no tracer running, ports --json as root says so', () => {
    const j = JSON.parse(r.portsJson) as { failures: { counted: boolean; reason: string } };
    assert.equal(j.failures.counted, false);
    assert.match(j.failures.reason, /no failure tracer runs in this network namespace/);
  });
});
