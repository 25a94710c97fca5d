/**
 * The model against the real kernel: in a private namespace with a 100-port
 * range, the model's numbers must be exactly what connect() allows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsUnavailable, runInNetns } from './support/netns.js';
import type { ScenarioArgs, ScenarioResult } from './support/port-scenario.js';

const skip = netnsUnavailable();
const RANGE: [number, number] = [40000, 40099];
const N = 100;
const LISTEN = [
  { address: '127.0.0.1', port: 7000 },
  { address: '127.0.0.1', port: 7001 },
];

function run(args: Omit<ScenarioArgs, 'range' | 'listen' | 'cap'> & Partial<ScenarioArgs>): ScenarioResult {
  return runInNetns<ScenarioResult>('port-scenario', { range: RANGE, listen: LISTEN, cap: 3 * N, ...args });
}

test('auto: exactly N per destination, then EADDRNOTAVAIL; a second destination port and a second source address each get their own N', { skip }, () => {
  const r = run({
    steps: [
      { to: '127.0.0.1', port: 7000 },
      { to: '127.0.0.1', port: 7001 },
      // Make routing pick 127.0.0.2 as the source for 127.0.0.1: connect() still binds nothing itself.
      { to: '127.0.0.1', port: 7000, ip: ['route', 'replace', 'local', '127.0.0.1', 'dev', 'lo', 'src', '127.0.0.2', 'table', 'local'] },
    ],
    predict: { strategy: 'auto', to: ['127.0.0.1:7000'], from: [] },
  });
  assert.equal(r.predicted.perDestination, N);
  assert.equal(r.predicted.host, N);
  assert.equal(r.predicted.binding, 'ephemeral-ports');
  for (const s of r.steps) assert.deepEqual(s, { opened: N, error: 'EADDRNOTAVAIL' });
});

test('auto: the model multiplies by destination ports exactly as the kernel does', { skip }, () => {
  const r = run({
    steps: [
      { to: '127.0.0.1', port: 7000 },
      { to: '127.0.0.1', port: 7001 },
    ],
    predict: { strategy: 'auto', to: ['127.0.0.1:7000-7001'], from: [] },
  });
  assert.equal(r.predicted.host, r.steps[0].opened + r.steps[1].opened);
  assert.equal(r.predicted.host, 2 * N);
});

test('bind: all destinations share one pool of N per source address', { skip }, () => {
  const r = run({
    steps: [
      { to: '127.0.0.1', port: 7000, localAddress: '127.0.0.2' },
      { to: '127.0.0.1', port: 7001, localAddress: '127.0.0.2' },
      { to: '127.0.0.1', port: 7001, localAddress: '127.0.0.3' },
    ],
    predict: { strategy: 'bind', to: ['127.0.0.1:7000-7001'], from: ['127.0.0.2', '127.0.0.3'] },
  });
  // The first destination takes the whole pool of 127.0.0.2; the second finds it empty.
  assert.equal(r.steps[0].opened, N);
  assert.equal(r.steps[0].error, 'EADDRINUSE');
  assert.equal(r.steps[1].opened, 0);
  assert.equal(r.steps[1].error, 'EADDRINUSE');
  // A second source address brings its own pool.
  assert.deepEqual(r.steps[2], { opened: N, error: 'EADDRINUSE' });
  assert.equal(r.predicted.binding, 'bind-pool');
  assert.equal(r.predicted.host, r.steps.reduce((a, s) => a + s.opened, 0));
});

test('reserved ports shrink the pool by exactly their count', { skip }, () => {
  const r = run({
    reserved: '40010-40019,40050',
    steps: [{ to: '127.0.0.1', port: 7000 }],
    predict: { strategy: 'auto', to: ['127.0.0.1:7000'], from: [] },
  });
  assert.equal(r.predicted.perDestination, N - 11);
  assert.deepEqual(r.steps[0], { opened: N - 11, error: 'EADDRNOTAVAIL' });
});

test('a listener inside the range takes its port out of the pool', { skip }, () => {
  const r = run({
    listen: [...LISTEN, { address: '127.0.0.1', port: 40042 }],
    steps: [{ to: '127.0.0.1', port: 7000 }],
    predict: { strategy: 'auto', to: ['127.0.0.1:7000'], from: [] },
  });
  assert.equal(r.predicted.perDestination, N - 1);
  assert.deepEqual(r.steps[0], { opened: N - 1, error: 'EADDRNOTAVAIL' });
});
