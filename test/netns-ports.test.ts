/**
 * `fourtuple ports` against the real kernel: in a private namespace with a
 * 100-port range, 60 connections to 127.0.0.1:7000 (10 of them closed
 * client-first, so in TIME_WAIT) and 30 to 127.0.0.1:7001. The aggregator,
 * the CLI (--json, --warn, netlink vs /proc, --watch) and the exporter must
 * all count exactly that.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsUnavailable, runInNetns } from './support/netns.js';
import type { PortsScenarioArgs, PortsScenarioResult } from './support/ports-scenario.js';
import { parseExposition } from './support/exposition.js';
import { iteratorMask, tcpIterator } from '../dist/kernel/bpf-iter.js';
import { ALL_CONNECTION_STATES } from '../dist/kernel/sock-diag.js';

const skip = netnsUnavailable();
const ARGS: PortsScenarioArgs = {
  range: [40000, 40099],
  listen: [
    { address: '127.0.0.1', port: 7000 },
    { address: '127.0.0.1', port: 7001 },
  ],
  open: [
    { to: '127.0.0.1', port: 7000, count: 60 },
    { to: '127.0.0.1', port: 7001, count: 30 },
  ],
  finClose: { port: 7000, count: 10 },
  cli: [
    { args: ['ports', '--json'] },
    { args: ['ports', '--json'], env: { FOURTUPLE_NO_SOCK_DIAG: '1' } },
    { args: ['ports', '--warn', '60'] },
    { args: ['ports', '--warn', '60.5', '--json'] },
    { args: ['ports'] },
    { args: ['ports', '--to', '127.0.0.1:7001', '--state', 'established', '--json'] },
  ],
  background: [
    // Read-only runs side by side. Fixed exporter ports outside the 100-port range: a listener inside it would shrink every pool by one.
    [
      { args: ['ports', '--prometheus', '127.0.0.1:9464', '--duration', '2'], fetch: true },
      { args: ['ports', '--watch', '0.2', '--duration', '2', '--to', '127.0.0.1:7000-7001', '--warn', '50'] },
      { args: ['ports', '--watch', '0.2'], signal: 'SIGINT', signalAfterMs: 300 },
    ],
    // Alone: its server-side TIME_WAIT after the stop would show in the others' totals.
    [{ args: ['ports', '--prometheus', '9465'], fetch: true, signal: 'SIGTERM', signalAfterMs: 100 }],
  ],
};

let r: PortsScenarioResult;
before(() => {
  if (!skip) r = runInNetns<PortsScenarioResult>('ports-scenario', ARGS);
});

interface JsonDest {
  source: string;
  destination: string;
  port: number;
  used: number;
  capacity: number;
  timeWait: number;
  headroom: number;
  states: Record<string, number>;
}

function dest(list: readonly JsonDest[], port: number): JsonDest {
  const d = list.find((x) => x.destination === '127.0.0.1' && x.port === port);
  assert.ok(d, `destination 127.0.0.1:${port} in ${JSON.stringify(list)}`);
  return d;
}

test('the namespace holds the population the test built', { skip }, () => {
  assert.deepEqual(r.states, { LISTEN: 2, ESTABLISHED: 2 * 80, TIME_WAIT: 10 });
});

test('aggregator on the real table: exact used, capacity and headroom per destination', { skip }, () => {
  const { report } = r.scan;
  assert.equal(report.destinations.length, 2, 'the accepted sides are not destinations');
  const [a, b] = report.destinations;
  assert.deepEqual(
    { source: a.source, port: a.port, used: a.used, capacity: a.capacity, headroom: a.headroom, timeWait: a.timeWait, states: a.states, inRange: a.inRange },
    { source: '127.0.0.1', port: 7000, used: 60, capacity: 100, headroom: 40, timeWait: 10, states: { ESTABLISHED: 50, TIME_WAIT: 10 }, inRange: 60 },
  );
  assert.deepEqual(
    { source: b.source, port: b.port, used: b.used, capacity: b.capacity, headroom: b.headroom, timeWait: b.timeWait, states: b.states },
    { source: '127.0.0.1', port: 7001, used: 30, capacity: 100, headroom: 70, timeWait: 0, states: { ESTABLISHED: 30 } },
  );
  const listeners = report.listeners.map((l) => ({ port: l.port, accepted: l.accepted, other: l.other, sockets: l.sockets, acceptQueue: l.acceptQueue }));
  assert.deepEqual(listeners, [
    { port: 7000, accepted: 50, other: 0, sockets: 1, acceptQueue: 0 },
    { port: 7001, accepted: 30, other: 0, sockets: 1, acceptQueue: 0 },
  ]);
  assert.equal(report.totals.clientSide, 90);
  assert.equal(report.totals.serverSide, 80);
  assert.deepEqual(report.totals.byState, { ESTABLISHED: 160, TIME_WAIT: 10, LISTEN: 2 });
  assert.equal(report.totals.fullSockets, 162);
  assert.deepEqual(report.sources, [{ source: '127.0.0.1', portsInUse: r.distinctClientPorts, capacity: 100, headroom: 100 - r.distinctClientPorts }]);
});

test('ports --json: the same counts, the same from netlink and from /proc', { skip }, () => {
  const [netlink, proc] = r.cli;
  assert.equal(netlink.status, 0, netlink.stderr);
  assert.equal(proc.status, 0, proc.stderr);
  const j = JSON.parse(netlink.stdout) as { destinations: JsonDest[]; source: string; scanMs: number; totals: { sockets: number } };
  const p = JSON.parse(proc.stdout) as typeof j;
  assert.equal(p.source, 'proc');
  const a = dest(j.destinations, 7000);
  assert.deepEqual({ used: a.used, capacity: a.capacity, timeWait: a.timeWait, headroom: a.headroom }, { used: 60, capacity: 100, timeWait: 10, headroom: 40 });
  assert.deepEqual(a.states, { ESTABLISHED: 50, TIME_WAIT: 10 });
  const b = dest(j.destinations, 7001);
  assert.deepEqual({ used: b.used, headroom: b.headroom, timeWait: b.timeWait }, { used: 30, headroom: 70, timeWait: 0 });
  assert.ok(j.scanMs >= 0);
  assert.deepEqual(
    p.destinations.map((d) => [d.port, d.used, d.timeWait]),
    j.destinations.map((d) => [d.port, d.used, d.timeWait]),
  );
  assert.equal(p.totals.sockets, j.totals.sockets);
});

test('ports --warn: exit 3 at or past the threshold, 0 below it', { skip }, () => {
  const atThreshold = r.cli[2];
  assert.equal(atThreshold.status, 3, atThreshold.stderr);
  assert.match(atThreshold.stdout, /^127\.0\.0\.1:7000 from 127\.0\.0\.1 is the closest to running out: 60 of 100 ports used \(40% headroom\)\./);
  assert.match(atThreshold.stdout, /<- over 60%/);
  const below = r.cli[3];
  assert.equal(below.status, 0, below.stderr);
  assert.deepEqual((JSON.parse(below.stdout) as { warn: unknown }).warn, { percent: 60.5, over: 0 });
});

test('ports (human): sentence, table by pressure, listeners, totals, scan time', { skip }, () => {
  const out = r.cli[4];
  assert.equal(out.status, 0, out.stderr);
  const lines = out.stdout.split('\n');
  assert.equal(lines[0], '127.0.0.1:7000 from 127.0.0.1 is the closest to running out: 60 of 100 ports used (40% headroom).');
  const rows = lines.filter((l) => /^127\.0\.0\.1\s+127\.0\.0\.1:700[01]\s/.test(l));
  assert.equal(rows.length, 2);
  assert.match(rows[0], /^127\.0\.0\.1\s+127\.0\.0\.1:7000\s+60\s+100\s+40%\s+50\s+10\s+-$/);
  assert.match(rows[1], /^127\.0\.0\.1\s+127\.0\.0\.1:7001\s+30\s+100\s+70%\s+30\s+0\s+-$/);
  assert.match(out.stdout, /^127\.0\.0\.1:7000\s+50\s+0\s+0/m);
  assert.match(out.stdout, /^Sockets: 172 \(ESTABLISHED 160, TIME_WAIT 10, LISTEN 2\)/m);
  // The BPF iterator where this host allows it (root with BTF), else sock_diag.
  const reader = 'link' in tcpIterator(iteratorMask(ALL_CONNECTION_STATES), false) ? 'BPF iterator' : 'netlink sock_diag';
  assert.match(out.stdout, new RegExp(`^Scanned \\d+ rows \\(${reader}\\) in [\\d.]+ ms\\.$`, 'm'));
});

test('ports --to and --state filter destinations and states', { skip }, () => {
  const out = r.cli[5];
  assert.equal(out.status, 0, out.stderr);
  const j = JSON.parse(out.stdout) as { destinations: JsonDest[]; totals: { byState: Record<string, number> } };
  assert.deepEqual(j.destinations.map((d) => [d.port, d.used]), [[7001, 30]]);
  assert.deepEqual(j.totals.byState, { ESTABLISHED: 160 });
});

test('exporter: serves valid exposition text with exact gauges, stops after --duration', { skip }, () => {
  const e = r.background[0];
  assert.equal(e.status, 0, e.stderr);
  assert.match(e.stdout, /^Serving Prometheus metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/);
  assert.match(e.stdout, /Stopped \(duration over\) after 1 scrape\(s\)\./);
  assert.ok(e.fetched, e.stderr);
  assert.equal(e.fetched.status, 200);
  assert.match(e.fetched.contentType ?? '', /^text\/plain; version=0\.0\.4/);
  const families = parseExposition(e.fetched.body);
  const sample = (name: string, labels: Record<string, string>): number | undefined =>
    families.get(name)?.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
  const d7000 = { source: '127.0.0.1', destination: '127.0.0.1', port: '7000' };
  const d7001 = { ...d7000, port: '7001' };
  assert.equal(sample('fourtuple_destination_ports_used', d7000), 60);
  assert.equal(sample('fourtuple_destination_ports_capacity', d7000), 100);
  assert.equal(sample('fourtuple_destination_time_wait', d7000), 10);
  assert.equal(sample('fourtuple_destination_headroom_ratio', d7000), 0.4);
  assert.equal(sample('fourtuple_destination_ports_used', d7001), 30);
  assert.equal(sample('fourtuple_destination_headroom_ratio', d7001), 0.7);
  assert.equal(sample('fourtuple_sockets', { state: 'TIME_WAIT' }), 10);
  assert.equal(sample('fourtuple_listener_accepted', { address: '127.0.0.1', port: '7000' }), 50);
  assert.ok((sample('fourtuple_scan_duration_seconds', {}) ?? -1) >= 0);
  for (const f of families.values()) assert.equal(f.type, f.name.endsWith('_total') ? 'counter' : 'gauge', f.name);
});

test('exporter: SIGTERM closes the server and exits 0', { skip }, () => {
  const e = r.background[3];
  assert.equal(e.status, 0, e.stderr);
  assert.equal(e.fetched?.status, 200);
  assert.match(e.stdout, /Stopped \(signal\) after 1 scrape\(s\)\./);
  assert.ok(e.exitMs < 2000, `exited ${e.exitMs} ms after SIGTERM`);
});

test('--watch off a TTY: one block per refresh with the trend, bounded by --duration', { skip }, () => {
  const w = r.background[1];
  assert.equal(w.status, 0, w.stderr);
  assert.doesNotMatch(w.stdout, /\x1b\[/, 'no ANSI off a TTY');
  const blocks = w.stdout.split(/\n(?=127\.0\.0\.1:7000 from)/);
  assert.ok(blocks.length >= 2 && blocks.length <= 11, `${blocks.length} blocks`);
  assert.match(blocks[0], /; trend after the next scan\./);
  assert.match(blocks[1], /^127\.0\.0\.1:7000 from 127\.0\.0\.1 is the closest to running out: 60 of 100 ports used \(40% headroom\); not growing\./);
  assert.match(blocks[1], /TREND/);
  assert.match(blocks[1], /127\.0\.0\.1:7000 .* 0\/s .*<- over 50%/);
  assert.match(blocks[1], /every 0\.2 s; Ctrl-C to stop\./);
});

test('--watch exits 0 promptly on SIGINT', { skip }, () => {
  const w = r.background[2];
  assert.equal(w.status, 0, w.stderr);
  assert.ok(w.exitMs < 2000, `exited ${w.exitMs} ms after SIGINT`);
  assert.match(w.stdout, /closest to running out/);
});
