/**
 * How often a client checks the connections it holds: every 2 s while that
 * is cheap, spaced so that all clients' checks together stay within their
 * share of one core when they are not, and never rarer than once a minute.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HOLD_CHECK_MAX_MS, HOLD_CHECK_MS, HOLD_CHECK_SHARE, holdCheckInterval } from '../dist/engine/worker-common.js';

test('cheap checks run every 2 s', () => {
  assert.equal(holdCheckInterval(0, 1), HOLD_CHECK_MS);
  // 3,000 connections in one client: about 0.3 ms a sweep.
  assert.equal(holdCheckInterval(0.3, 1), HOLD_CHECK_MS);
  // Ten clients whose sweeps together take exactly the budget at 2 s.
  assert.equal(holdCheckInterval((HOLD_CHECK_MS * HOLD_CHECK_SHARE) / 10, 10), HOLD_CHECK_MS);
});

test('dear checks are spaced so that all clients together keep to the budget', () => {
  // A million: 51 clients, each sweeping ~20,000 descriptors in 8 ms.
  const wait = holdCheckInterval(8, 51);
  assert.equal(wait, Math.round((8 * 51) / HOLD_CHECK_SHARE));
  assert.ok(wait > HOLD_CHECK_MS && wait < HOLD_CHECK_MAX_MS, String(wait));
  // Their share of one core at that pace.
  assert.ok(Math.abs((8 * 51) / wait - HOLD_CHECK_SHARE) < 1e-4);
  // Twice the clients, twice the wait.
  assert.equal(holdCheckInterval(8, 102), 2 * wait);
});

test('never rarer than once a minute; no clients or a negative time count as one client and no cost', () => {
  assert.equal(holdCheckInterval(1000, 100), HOLD_CHECK_MAX_MS);
  assert.equal(holdCheckInterval(0.01, 0), HOLD_CHECK_MS);
  assert.equal(holdCheckInterval(-5, 3), HOLD_CHECK_MS);
});
