/**
 * The failure counts made readable (model/failures.ts, report/ports.ts):
 * the watch view's window over successive snapshots, the join with each
 * destination's pool, and the one line that puts failures, pool and churn
 * side by side.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FailureWindow, failureLine, failuresByDestination } from '../dist/model/failures.js';
import type { FailureCount, FailureSnapshot } from '../dist/kernel/failure-tracer.js';
import { PortPressure } from '../dist/model/port-pressure.js';
import { renderPorts } from '../dist/report/ports.js';
import type { PortScan } from '../dist/engine/port-scan.js';

const c = (count: number, over: Partial<FailureCount> = {}): FailureCount => ({
  call: 'connect',
  family: 4,
  source: '127.0.0.1',
  destination: '10.0.0.5',
  port: 443,
  errno: 'EADDRNOTAVAIL',
  count,
  ...over,
});
const snap = (at: number, counts: FailureCount[], overflow = 0): FailureSnapshot => ({ at, counts, overflow });

test('the window counts from the tracer start until it has run 10 s, then from the newest snapshot at least 10 s old', () => {
  const w = new FailureWindow(1_000);
  let v = w.push(snap(3_000, [c(5)]));
  assert.equal(v.seconds, 2);
  assert.deepEqual(v.recent.map((x) => x.count), [5]);
  v = w.push(snap(9_000, [c(12)]));
  assert.equal(v.seconds, 8);
  assert.deepEqual(v.recent.map((x) => x.count), [12]);
  // At 14 s the snapshot of 3 s is 11 s old, the newest that old: it is the base.
  v = w.push(snap(14_000, [c(20)]));
  assert.equal(v.seconds, 11);
  assert.deepEqual(v.recent.map((x) => x.count), [15]);
  // Nothing new: nothing recent.
  v = w.push(snap(30_000, [c(20)]));
  assert.deepEqual(v.recent, []);
  // A new key and the overflow, counted from the base.
  v = w.push(snap(31_000, [c(20), c(3, { errno: 'ECONNREFUSED' })], 7));
  assert.deepEqual(v.recent.map((x) => [x.errno, x.count]), [['ECONNREFUSED', 3]]);
  assert.equal(v.overflow, 7);
});

test('failures join their destination by (source, destination, port); bind failures have none', () => {
  const m = failuresByDestination([c(5), c(2, { errno: 'ECONNREFUSED' }), c(9, { call: 'bind', destination: null, port: 0, errno: 'EADDRINUSE' })]);
  assert.deepEqual([...m.entries()], [['127.0.0.1|10.0.0.5|443', { total: 7, byErrno: { EADDRNOTAVAIL: 5, ECONNREFUSED: 2 } }]]);
});

test('one line per failure: where, how many, which errno, over what time', () => {
  assert.equal(failureLine(c(312), 10), '127.0.0.1 → 10.0.0.5:443: 312 EADDRNOTAVAIL in the last 10 s');
  assert.equal(failureLine(c(1_312, { family: 6, source: '::1', destination: '::1' }), null), '::1 → [::1]:443: 1,312 EADDRNOTAVAIL since the tracer started');
  assert.equal(failureLine(c(4, { call: 'bind', destination: null, port: 0, errno: 'EADDRINUSE' }), 10.4), 'bind 127.0.0.1:0: 4 EADDRINUSE in the last 10 s');
});

test('the report: a FAILED column, and the failing destination with its pool and churn on one line', () => {
  const agg = new PortPressure({ range: { lo: 40000, hi: 40099 } });
  for (let i = 0; i < 100; i++) agg.add({ family: 4, localAddress: '127.0.0.1', localPort: 40000 + i, remoteAddress: '10.0.0.5', remotePort: 443, state: i < 40 ? 6 : 1, rxQueue: 0 });
  const known = <T>(value: T) => ({ known: true as const, value, source: 'test' });
  const report = agg.result({
    portRange: known({ lo: 40000, hi: 40099 }),
    reservedPorts: known(''),
    unprivilegedPortStart: known(1024),
    fileNr: known({ allocated: 1, free: 0, max: 10 }),
    fileMax: known(10),
    memAvailable: known(1 << 30),
  });
  const scan: PortScan = { report, scanMs: 1, source: 'proc', rows: 100, errors: [], at: 0 };
  const text = renderPorts(scan, {
    top: 20,
    warn: null,
    failures: { counted: true, seconds: 10, counts: [c(312), c(4, { call: 'bind', destination: null, port: 0, errno: 'EADDRINUSE' })], overflow: 0 },
    churn: {
      strategy: null,
      newPerSecond: new Map([['127.0.0.1|10.0.0.5|443', 31.2]]),
      ceilingOf: () => ({ perPool: 1.67 }) as never,
      settings: {} as never,
    },
  });
  assert.match(text, /^SOURCE .* FAILED\s+OTHER$/m);
  assert.match(text, /127\.0\.0\.1 → 10\.0\.0\.5:443: 312 EADDRNOTAVAIL in the last 10 s; 100 of 100 ports used, 31\.2 new\/s against a churn ceiling of 1\.67\/s/);
  assert.match(text, /bind 127\.0\.0\.1:0: 4 EADDRINUSE in the last 10 s: bind\(address, 0\) found no free ephemeral port on the address/);
  const missing = renderPorts(scan, { top: 20, warn: null, failures: { counted: false, reason: 'BPF_MAP_CREATE: EPERM' } });
  assert.match(missing, /Failed connect\(\) and bind\(\) calls: not counted \(BPF_MAP_CREATE: EPERM\)\./);
  assert.doesNotMatch(missing, /FAILED/);
});
