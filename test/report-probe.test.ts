/**
 * The probe report's helpers: endpoints merged into ranges, the pace of each
 * tenth of the ramp, the sparkline, and the lines of the human report that
 * use them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeEndpoints, rampPace, renderProgress, sparkline } from '../dist/report/probe.js';

test('mergeEndpoints: one entry per address, its ports as ranges, in order of first appearance', () => {
  const ports = Array.from({ length: 79 }, (_, i) => `127.0.0.1:${7000 + i}`);
  assert.deepEqual(mergeEndpoints(ports), ['127.0.0.1:7000-7078']);
  assert.deepEqual(mergeEndpoints(['10.0.0.2:80', '[::1]:7001', '10.0.0.2:443', '[::1]:7000', '10.0.0.2:81']), ['10.0.0.2:80-81,443', '[::1]:7000-7001']);
  // Anything that is not ADDRESS:PORT stays as it is (source addresses, say).
  assert.deepEqual(mergeEndpoints(['127.0.0.2', '127.0.0.3']), ['127.0.0.2', '127.0.0.3']);
  assert.deepEqual(mergeEndpoints([]), []);
});

/** A timeline sampled every 250 ms where held grows at `rates[i]` per second during second i. */
function timeline(rates: number[]): { t: number; held: number }[] {
  const out: { t: number; held: number }[] = [];
  let held = 0;
  for (let s = 0; s < rates.length; s++) {
    for (let q = 1; q <= 4; q++) {
      held += rates[s] / 4;
      out.push({ t: s * 1000 + q * 250, held });
    }
  }
  return out;
}

test('rampPace: each tenth of the peak with the rate it came at, interpolated between samples', () => {
  // 10,000/s for 5 s, then 2,500/s for 20 s: 100,000 held in 25 s.
  const rates = [...Array(5).fill(10_000), ...Array(20).fill(2_500)];
  const tl = timeline(rates);
  const steps = rampPace({ timeline: tl as never, held: 100_000, rampMs: 25_000 });
  assert.ok(steps);
  assert.equal(steps.length, 10);
  assert.deepEqual(
    steps.map((s) => [s.from, s.to, Math.round(s.rate)]),
    [
      [0, 10_000, 10_000],
      [10_000, 20_000, 10_000],
      [20_000, 30_000, 10_000],
      [30_000, 40_000, 10_000],
      [40_000, 50_000, 10_000],
      [50_000, 60_000, 2_500],
      [60_000, 70_000, 2_500],
      [70_000, 80_000, 2_500],
      [80_000, 90_000, 2_500],
      [90_000, 100_000, 2_500],
    ],
  );
  assert.equal(Math.round(steps.reduce((ms, s) => ms + s.ms, 0)), 25_000);
});

test('rampPace: null for a ramp too small or too short to split', () => {
  assert.equal(rampPace({ timeline: timeline([500]) as never, held: 500, rampMs: 1000 }), null);
  assert.equal(rampPace({ timeline: timeline([50_000]).slice(0, 3) as never, held: 37_500, rampMs: 750 }), null);
});

test('sparkline: the shape in block characters, at most the width asked', () => {
  assert.equal(sparkline([0, 1, 2, 3, 4, 5, 6, 7]), '▁▂▃▄▅▆▇█');
  assert.equal(sparkline([0, 0, 0]), '▁▁▁');
  assert.equal(sparkline(Array.from({ length: 600 }, (_, i) => i), 60).length, 60);
  assert.equal(sparkline([]), '');
});

test('renderProgress: held against the target while ramping, sockets left while closing', () => {
  const base = { elapsedMs: 12_345, held: 50_000, accepted: 49_000, ratePerSec: 20_000, errors: 3 };
  assert.equal(renderProgress({ ...base, phase: 'ramping' }, 100_000), 'ramping  held 50,000 (50%)  accepted 49,000  20,000/s  errors 3  12.3 s');
  assert.equal(renderProgress({ ...base, phase: 'closing', leftToClose: 61_000 }, 100_000), 'closing  61,000 sockets left to close  12.3 s');
});

test('the headline never says "reached the target" below it (a sink worker killed after the ramp), and names the signal', async () => {
  const { stopWords } = await import('../dist/report/probe.js');
  assert.equal(stopWords({ stoppedBy: 'target', held: 5000, target: 5000 }), 'reached the target');
  assert.equal(stopWords({ stoppedBy: 'target', held: 4294, target: 5000 }), 'ended at 4,294 of the 5,000 asked');
  assert.equal(stopWords({ stoppedBy: 'signal', held: 10, target: 5000, interrupted: 'SIGTERM' }), 'was interrupted (SIGTERM)');
});
