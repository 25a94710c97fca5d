/**
 * The strategy specs: the one description of each strategy that the model,
 * the errno meanings and the engine all read, so what they say agrees.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errnoMeaning } from '../dist/model/errno.js';
import { isStrategy, setsReuseAddr, STRATEGIES, STRATEGY_SPECS, strategySpec, type Strategy } from '../dist/model/strategy.js';

const ALL: Strategy[] = ['auto', 'bind', 'nopo', 'explicit'];

test('every strategy has a spec, and the spec names itself', () => {
  assert.deepEqual(Object.keys(STRATEGY_SPECS).sort(), [...ALL].sort());
  for (const s of ALL) {
    assert.equal(strategySpec(s).id, s);
    assert.equal(STRATEGIES[s], strategySpec(s).words);
    assert.ok(isStrategy(s));
  }
  assert.equal(isStrategy('toString'), false);
  assert.equal(isStrategy('random'), false);
});

test('pools: auto draws per destination, bind per source, nopo and explicit per (source, destination)', () => {
  const key = (s: Strategy, src: number, dst: number): string => strategySpec(s).poolKey(src, dst);
  // auto: the source is the kernel's, so two "sources" share a destination's pool.
  assert.equal(key('auto', 0, 3), key('auto', 1, 3));
  assert.notEqual(key('auto', 0, 3), key('auto', 0, 4));
  // bind: one pool per source address whatever the destination.
  assert.equal(key('bind', 2, 0), key('bind', 2, 9));
  assert.notEqual(key('bind', 1, 0), key('bind', 2, 0));
  for (const s of ['nopo', 'explicit'] as const) {
    assert.notEqual(key(s, 0, 1), key(s, 1, 1));
    assert.notEqual(key(s, 0, 1), key(s, 0, 2));
  }
});

test('socket preparation: which bind, and SO_REUSEADDR as each needs it', () => {
  assert.deepEqual(ALL.map((s) => strategySpec(s).socket.bind), ['none', 'any-port', 'address', 'own-port']);
  assert.deepEqual(ALL.map((s) => setsReuseAddr(s)), [false, true, false, true]);
  // Only bind may go without it (--reuseaddr no); explicit needs it to reuse a port toward several destinations.
  assert.deepEqual(ALL.map((s) => setsReuseAddr(s, false)), [false, false, false, true]);
  assert.deepEqual(ALL.map((s) => strategySpec(s).portPickedBy), ['connect', 'bind', 'connect', 'program']);
  assert.deepEqual(ALL.map((s) => strategySpec(s).sources), ['none', 'required', 'optional', 'optional']);
});

test("a used-up pool names the spec's constraint, whichever errno the kernel gives", () => {
  for (const s of ALL) {
    const spec = strategySpec(s);
    const exhausted = errnoMeaning('EADDRNOTAVAIL', s);
    assert.equal(exhausted.constraint, spec.constraint);
    assert.equal(exhausted.effect, 'pool');
    const inUse = errnoMeaning('EADDRINUSE', s);
    assert.equal(inUse.constraint, spec.portPickedBy === 'program' ? 'explicit-ports' : 'bind-pool');
  }
});
