/**
 * The library's connect against the real kernel: in private namespaces with a
 * 100-port range, three source addresses and two destinations, plain
 * `localAddress` stops at 100 per source address across destinations, while
 * fourtuple's connect gets 100 per (source, destination).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsUnavailable, runInNetns } from './support/netns.js';
import type { LibScenarioArgs } from './support/lib-connect-scenario.js';

const skip = netnsUnavailable();
const RANGE: [number, number] = [40000, 40099];
const N = 100;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function run(mode: LibScenarioArgs['mode']): any {
  return runInNetns('lib-connect-scenario', { mode, range: RANGE } satisfies LibScenarioArgs, 120_000);
}

test('plain net.connect with localAddress round-robin over 3 sources: exactly 300 across both destinations, then EADDRINUSE', { skip }, () => {
  const r = run('plain');
  assert.equal(r.opened, 3 * N);
  assert.equal(r.error, 'EADDRINUSE');
  assert.deepEqual(r.perDestination, { 7000: 150, 7001: 150 });
});

test('connect: 300 to one destination and 300 more to a second, held at once; the 601st fails with FT_POOL_EXHAUSTED, promptly', { skip }, () => {
  const r = run('nopo');
  assert.equal(r.opened, 6 * N);
  assert.deepEqual(r.failed, []);
  assert.equal(r.accepted, 6 * N);
  // Round-robin per destination: every (source, destination) pool holds exactly its 100.
  for (const src of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) {
    for (const port of [7000, 7001]) assert.equal(r.perPair[`${src}>${port}`], N, `${src} to ${port}`);
  }
  assert.equal(r.extra.code, 'FT_POOL_EXHAUSTED');
  assert.match(r.extra.message, /127\.0\.0\.1:7000/);
  assert.match(r.extra.message, /127\.0\.0\.2, 127\.0\.0\.3, 127\.0\.0\.4/);
  assert.ok(r.extra.ms < 1000, `601st took ${r.extra.ms} ms`);
  // Known full: the next one fails without asking the kernel again.
  assert.equal(r.again.code, 'FT_POOL_EXHAUSTED');
  assert.ok(r.again.ms < 200, `602nd took ${r.again.ms} ms`);
  // Closing one of its connections reopens that (source, destination) pool at once.
  assert.deepEqual(r.reopened, { ok: true, source: '127.0.0.3' });
  // A pool with no state learns from connect()'s EADDRNOTAVAIL on every source, and still fails cleanly.
  assert.equal(r.fresh.code, 'FT_POOL_EXHAUSTED');
  assert.ok(r.fresh.ms < 1000);
});

test('undici through connector: 500 requests held open at once, past the plain limit of 300; http.Agent createConnection works', { skip }, () => {
  const r = run('undici');
  assert.deepEqual(r.results, { '200 ok': 500 });
  assert.equal(r.heldAtOnce, 500);
  assert.equal(r.distinctConnections, 500);
  assert.equal(r.viaHttp.length, 6);
  const sources = new Set<string>();
  for (const line of r.viaHttp as string[]) {
    const [status, source] = line.split(' ');
    assert.equal(status, '200');
    sources.add(source);
  }
  assert.deepEqual([...sources].sort(), ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
});

test('explicit: one source address past the 100-port range, the same source ports carrying both destinations', { skip }, () => {
  const r = run('explicit');
  assert.equal(r.strategy, 'explicit');
  assert.deepEqual(r.failed, []);
  assert.deepEqual(r.opened, { 7000: 250, 7001: 250 });
  assert.deepEqual(r.distinct, { 7000: 250, 7001: 250 });
  // Ports outside the ephemeral range come first.
  assert.equal(r.inRange, 0);
  assert.equal(r.shared, 250);
  assert.deepEqual(r.sources, { '127.0.0.2': 500 });
});

test('explicit with its own ports: a listened-on port is skipped, then FT_POOL_EXHAUSTED', { skip }, () => {
  const r = run('explicit-ports');
  assert.equal(r.opened, 3 * 49);
  assert.ok(r.failed.every((c: string) => c === 'FT_POOL_EXHAUSTED'), JSON.stringify(r.failed));
  assert.equal(r.failed.length, 3);
  assert.equal(r.usedListenerPort, false);
  assert.equal(r.outside, 0);
  assert.equal(r.next.code, 'FT_POOL_EXHAUSTED');
  assert.match(r.next.message, /127\.0\.0\.1:7000/);
});
