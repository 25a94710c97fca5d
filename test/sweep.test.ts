/**
 * The differential sweep on a fixed seed set: for each configuration, in a
 * fresh network namespace, what `limits --json` predicts must be what
 * `probe` then holds (inside the predicted range where the kernel leaves the
 * last ports to chance), and the constraint it names must be the one hit.
 * bench/sweep.sh runs the same with a thousand seeds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsUnavailable } from './support/netns.js';
import { configFor } from './support/sweep-config.js';
import { describe, sweep } from './support/sweep.js';

const skip = netnsUnavailable();
const SEEDS = Array.from({ length: 48 }, (_, i) => i + 1);

test('the generator covers what the sweep promises', () => {
  const cs = SEEDS.map(configFor);
  const has = (f: (c: (typeof cs)[number]) => boolean): boolean => cs.some(f);
  const size = (c: (typeof cs)[number]): number => c.range[1] - c.range[0] + 1;
  for (const s of ['auto', 'bind', 'nopo', 'explicit'] as const) assert.ok(has((c) => c.strategy === s), `strategy ${s}`);
  for (const w of ['root', 'caps', 'user'] as const) assert.ok(has((c) => c.who === w), `who ${w}`);
  for (const f of ['v4', 'v6', 'mapped'] as const) assert.ok(has((c) => c.family === f), `family ${f}`);
  for (const t of [0, 1, 2]) assert.ok(has((c) => c.twReuse === t && c.timeWait > 0), `tcp_tw_reuse ${t} with TIME_WAIT present`);
  assert.ok(has((c) => size(c) === 1) && has((c) => size(c) > 100), 'range sizes from 1 to over 100');
  assert.ok(has((c) => size(c) % 2 === 1 && size(c) > 3) && has((c) => size(c) % 2 === 0), 'odd and even sizes');
  assert.ok(has((c) => c.range[0] % 2 === 1) && has((c) => c.range[0] % 2 === 0), 'odd and even lower bounds');
  assert.ok(has((c) => c.reserved === `${c.range[0]}-${c.range[1]}`), 'the whole range reserved');
  assert.ok(has((c) => c.listeners.length > 0), 'listeners inside the range');
  assert.ok(has((c) => c.strategy === 'bind' && !c.reuseAddr) && has((c) => c.strategy === 'bind' && c.autobindReuse === 1 && c.reuseAddr), 'bind with and without SO_REUSEADDR, with ip_autobind_reuse');
  assert.ok(has((c) => c.sources.length === 3) && has((c) => c.destinations.length === 3), 'three sources, three destinations');
  assert.ok(cs.filter((c) => c.churn).length >= 4, 'churn cases: load --churn past the pools');
  // The same seed always gives the same configuration.
  assert.deepEqual(configFor(7), configFor(7));
});

test('the model agrees with the kernel on 48 seeded configurations', { skip, timeout: 180_000 }, async () => {
  const verdicts = await sweep(SEEDS, 2);
  const bad = verdicts.filter((v) => v.problems.length > 0);
  assert.equal(bad.length, 0, bad.map((v) => `seed ${v.seed}: ${v.problems.join('; ')}\n  ${describe(v.config)}`).join('\n'));
  // The sweep tested limits, not only agreed: most configurations ran out of ports below the probe's target.
  const limited = verdicts.filter((v) => v.held !== null && v.limitHit !== null);
  assert.ok(limited.length >= SEEDS.length / 2, `only ${limited.length} configurations hit a limit`);
});
