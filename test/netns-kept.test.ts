/**
 * The kernel-kept counts against the real kernel (support/kept-scenario.ts):
 * a probe ramps to 100,000 connections in a namespace; counts followed from
 * before the probe and counts seeded at its peak must both equal a full
 * scan's, per destination, at the peak and after the probe closed (drift
 * 0), and their maps must be gone after they close.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsUnavailable, runInNetns } from './support/netns.js';
import type { KeptCheck, KeptScenarioResult } from './support/kept-scenario.js';
import type { KeptFamiliesResult } from './support/kept-families.js';
import { stateCounter } from '../dist/kernel/state-counts.js';

const N = 100_000;

function unavailable(): string | undefined {
  const netns = netnsUnavailable();
  if (netns) return netns;
  const c = stateCounter(() => []);
  if ('reason' in c) return `no kernel-kept counts here: ${c.reason}`;
  c.counter.close();
  return undefined;
}
const skip = unavailable();

function exact(c: KeptCheck, what: string): void {
  assert.equal(c.result, 'exact', `${what}: ${JSON.stringify({ ...c, kept: c.kept.length, scanned: c.scanned.length })}`);
  assert.equal(c.drift, 0, what);
  assert.deepEqual(c.kept, c.scanned, what);
}

describe('kernel-kept counts', { skip }, () => {
  let r: KeptScenarioResult;
  before(() => {
    r = runInNetns<KeptScenarioResult>('kept-scenario', { connections: N }, 180_000);
  });

  test(`at the peak of ${N.toLocaleString('en-US')}: the followed and the seeded counts equal the full scan, drift 0`, () => {
    assert.equal(r.probeHeld, N);
    exact(r.peakEarly, 'followed, at the peak');
    exact(r.peakSeeded, 'seeded, at the peak');
    assert.ok(r.peakMidRamp, 'seeded halfway through the ramp');
    exact(r.peakMidRamp, 'seeded halfway through the ramp, at the peak');
    assert.equal(r.peakEarly.kept.reduce((n, [, u]) => n + u, 0), N);
  });

  test('a reconciliation during the ramp skips the destinations that moved and counts no drift', () => {
    assert.ok(r.ramping, 'the ramp was seen');
    assert.equal(r.ramping.drift, 0, JSON.stringify(r.ramping));
    assert.ok(r.ramping.skipped > 0 || r.ramping.result === 'exact', JSON.stringify(r.ramping));
  });

  test('after the probe closed: no client socket left, counts and scan agree, drift 0', () => {
    exact(r.afterEarly, 'followed, after');
    exact(r.afterSeeded, 'seeded, after');
    assert.deepEqual(r.afterEarly.kept, []);
  });

  test('closing the counters frees their maps', () => {
    assert.equal(r.mapsLeft, 0);
  });
});

test('both families on a dual-stack listener: an IPv4 and a v4-mapped IPv6 socket to 127.0.0.1 are one destination; counts equal the scan, drift 0', { skip }, () => {
  const r = runInNetns<KeptFamiliesResult>('kept-families', {}, 60_000);
  assert.deepEqual(r.scanned, ['127.0.0.1|127.0.0.1|7000=12', '::1|::1|7000=7']);
  assert.deepEqual(r.kept, r.scanned);
  assert.equal(r.result, 'exact');
  assert.equal(r.drift, 0);
});
