/** The run planner and the coordinator's state machine: pure, tested without spawning anything. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readKernelFacts, type KernelFacts } from '../dist/kernel/facts.js';
import { planRun, shareOf, spreadSlots, FILL_TARGET } from '../dist/engine/plan.js';
import { canTransition, PhaseError, transition, type Phase, type PhaseEvent } from '../dist/engine/run-state.js';
import { Probe, PROBE_DEFAULTS } from '../dist/engine/probe.js';
import { InvalidArgumentError } from '../dist/errors.js';
import { parseEndpoints } from '../dist/model/address.js';

/** Facts of this host with the settings a test names. */
function facts(over: { somaxconn?: number; range?: [number, number]; reserved?: string }): KernelFacts {
  const f = readKernelFacts();
  return {
    ...f,
    somaxconn: { known: true, value: over.somaxconn ?? 4096, source: 'test' },
    portRange: { known: true, value: { lo: (over.range ?? [32768, 60999])[0], hi: (over.range ?? [32768, 60999])[1] }, source: 'test' },
    reservedPorts: { known: true, value: over.reserved ?? '', source: 'test' },
    listeners: { known: true, value: [], source: 'test' },
  } as KernelFacts;
}

const base = { strategy: 'auto' as const, from: [], targets: [], embeddedSink: true, nofileHard: 20_000, parallel: 2 };

test('queue sink: enough listeners for the queues (somaxconn + 1 each), none inherited by the clients', () => {
  const p = planRun({ ...base, facts: facts({}), connections: 2_000_000 });
  assert.equal(p.sink, 'queue');
  assert.equal(p.perListener, 4097);
  assert.equal(p.listen?.count, Math.ceil(2_000_000 / 4097)); // 489
  assert.equal(p.pace, false);
  // Two clients (--parallel), each handing its connections to holders 19,936 at a time.
  assert.equal(p.batch, 20_000 - 64);
  assert.equal(p.clients, 2);
  assert.equal(p.clientQuota, 1_000_000);
  // One client for a small target its own descriptors hold; from 10,000 on, --parallel share it.
  const small = planRun({ ...base, facts: facts({}), connections: 9_999 });
  assert.deepEqual([small.clients, small.clientQuota], [1, 9_999]);
  const split = planRun({ ...base, facts: facts({}), connections: 18_000 });
  assert.deepEqual([split.clients, split.clientQuota], [2, 9_000]);
  // The default listeners avoid the ephemeral range and reserved ports.
  assert.ok(p.listen?.avoid.has(32768) && p.listen.avoid.has(60999) && !p.listen.avoid.has(7000));
  const r = planRun({ ...base, facts: facts({ reserved: '7001-7003' }), connections: 10 });
  assert.ok(r.listen?.avoid.has(7002));
});

test('queue sink with a small somaxconn: one listener per somaxconn + 1 connections', () => {
  const p = planRun({ ...base, facts: facts({ somaxconn: 16 }), connections: 100 });
  assert.equal(p.perListener, 17);
  assert.equal(p.listen?.count, 6);
  assert.equal(p.backlog, 16);
});

test('the fill rule still applies when the queues need fewer ports: no pool past 45%', () => {
  const p = planRun({ ...base, facts: facts({ somaxconn: 65535, range: [40000, 40099] }), connections: 1000 });
  assert.equal(p.listen?.count, Math.ceil(1000 / (100 * FILL_TARGET)));
});

test('accept sink: the clients inherit the listeners to pace by their queues, out of their open-files limit', () => {
  const p = planRun({ ...base, facts: facts({}), connections: 100_000, sinkMode: 'accept' });
  assert.equal(p.sink, 'accept');
  assert.equal(p.perListener, null);
  assert.equal(p.pace, true);
  assert.equal(p.listen?.count, Math.ceil(100_000 / (28_232 * FILL_TARGET)));
  assert.equal(p.batch, 20_000 - 64 - (p.listen?.count ?? 0));
});

test('--to on the embedded sink: queue when the queues hold the target, accept when they do not (unless asked)', () => {
  const targets = [{ address: '127.0.0.1', port: 7000 }, { address: '127.0.0.1', port: 7001 }];
  assert.equal(planRun({ ...base, facts: facts({}), targets, connections: 8194 }).sink, 'queue');
  const over = planRun({ ...base, facts: facts({}), targets, connections: 8195 });
  assert.equal(over.sink, 'accept');
  assert.match(over.sinkWhy, /8,194, fewer than the target/);
  assert.equal(planRun({ ...base, facts: facts({}), targets, connections: 8195, sinkMode: 'queue' }).sink, 'queue');
  assert.equal(planRun({ ...base, facts: facts({}), targets, connections: 10, sinkMode: 'accept' }).sink, 'accept');
});

test('load: no sink, no listeners', () => {
  const p = planRun({ ...base, facts: facts({}), embeddedSink: false, targets: [{ address: '10.0.0.1', port: 80 }], connections: 50_000 });
  assert.equal(p.sink, 'none');
  assert.equal(p.listen, null);
  assert.equal(p.clients, 2);
  assert.equal(p.clientQuota, 25_000);
});

test('a plan that cannot work says why (the caller turns it into exit 2)', () => {
  assert.throws(() => planRun({ ...base, facts: facts({ somaxconn: 1 }), connections: 10_000_000 }), /listening ports/);
});

test('slots: spread evenly under each queue, and each client gets a contiguous share that never overfills one', () => {
  const per = spreadSlots(10_000, 3, 4097);
  assert.deepEqual(per, [3334, 3333, 3333]);
  assert.deepEqual(spreadSlots(100, 2, 17), [17, 17]);
  const a = shareOf(per, 3, 0, 4000);
  assert.deepEqual(a, { targets: [0, 1], caps: [3334, 666], quota: 4000 });
  const b = shareOf(per, 3, 4000, 6000);
  assert.deepEqual(b, { targets: [1, 2], caps: [2667, 3333], quota: 6000 });
  // Past the last slot: what is left.
  assert.deepEqual(shareOf(per, 3, 9000, 5000), { targets: [2], caps: [1000], quota: 1000 });
  assert.equal(shareOf(per, 3, 10_000, 5000).quota, 0);
  // Every slot is given exactly once, whatever the quota.
  for (const quota of [1, 7, 999, 4097, 10_000]) {
    const used = [0, 0, 0];
    for (let start = 0; start < 10_000; start += quota) {
      const s = shareOf(per, 3, start, quota);
      s.targets.forEach((t, i) => (used[t] += s.caps?.[i] ?? 0));
    }
    assert.deepEqual(used, per, `quota ${quota}`);
  }
  // Without caps: every target, round-robin.
  assert.deepEqual(shareOf(null, 3, 0, 50), { targets: [0, 1, 2], caps: null, quota: 50 });
});

test('the state machine: the legal path, and every other move rejected', () => {
  assert.equal(transition('starting', 'ramp'), 'ramping');
  assert.equal(transition('ramping', 'hold'), 'holding');
  assert.equal(transition('holding', 'close'), 'closing');
  assert.equal(transition('ramping', 'close'), 'closing');
  assert.equal(transition('starting', 'close'), 'closing');
  assert.equal(transition('closing', 'finish'), 'done');
  const phases: Phase[] = ['starting', 'ramping', 'holding', 'closing', 'done'];
  const events: PhaseEvent[] = ['ramp', 'hold', 'close', 'finish'];
  const legal = new Set(['starting:ramp', 'starting:close', 'ramping:hold', 'ramping:close', 'holding:close', 'closing:finish']);
  for (const p of phases) {
    for (const e of events) {
      assert.equal(canTransition(p, e), legal.has(`${p}:${e}`), `${p} --${e}-->`);
      if (!legal.has(`${p}:${e}`)) assert.throws(() => transition(p, e), PhaseError);
    }
  }
});

test('the Probe constructor checks its options as the CLI does: InvalidArgumentError naming the option', () => {
  const ok = { ...PROBE_DEFAULTS, connections: 10, durationS: 1, to: [], from: [], sink: true };
  assert.doesNotThrow(() => new Probe(ok));
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ connections: 0 }, /connections '0'/],
    [{ connections: 1.5 }, /connections '1.5'/],
    [{ durationS: -1 }, /durationS '-1'/],
    [{ concurrency: 0 }, /concurrency '0'/],
    [{ strategy: 'magic' }, /strategy 'magic'/],
    [{ close: 'slam' }, /close 'slam'/],
    [{ sinkMode: 'bucket' }, /sink 'bucket'/],
    [{ from: ['127.0.0.2'] }, /strategy auto cannot use source addresses/],
    [{ sink: false }, /--to is required/],
    [{ strategy: 'nopo', from: ['::2'], to: [parseEndpoints('127.0.0.1:7000')] }, /'::2'/],
  ];
  for (const [over, re] of bad) {
    assert.throws(() => new Probe({ ...ok, ...over } as never), (e: unknown) => e instanceof InvalidArgumentError && re.test((e as Error).message), JSON.stringify(over));
  }
});
