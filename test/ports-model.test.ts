/** The port-pressure aggregator on hand-made socket-table rows: exact counts, capacity, headroom, client vs server side. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { known, unknown } from '../dist/kernel/fact.js';
import type { TcpRow } from '../dist/kernel/proc-net-tcp.js';
import { KERNEL_BYTES_PER_SOCKET } from '../dist/model/costs.js';
import { overThreshold, PortPressure, STATE, type PressureFacts } from '../dist/model/port-pressure.js';
import { destinationMatcher } from '../dist/engine/port-scan.js';
import { parseEndpoints } from '../dist/model/address.js';

const EST = STATE.ESTABLISHED;
const TW = STATE.TIME_WAIT;
const LISTEN = STATE.LISTEN;
const SYN_SENT = STATE.SYN_SENT;
const FIN_WAIT2 = 5;
const CLOSE_WAIT = 8;

function row(local: string, remote: string, state: number, rxQueue = 0): TcpRow {
  const split = (ep: string): [string, number] => {
    const i = ep.lastIndexOf(':');
    return [ep.slice(0, i).replace(/^\[|\]$/g, ''), Number(ep.slice(i + 1))];
  };
  const [la, lp] = split(local);
  const [ra, rp] = split(remote);
  return { family: la.includes(':') ? 6 : 4, localAddress: la, localPort: lp, remoteAddress: ra, remotePort: rp, state, rxQueue };
}

function facts(over: Partial<PressureFacts> = {}): PressureFacts {
  return {
    portRange: known({ lo: 40000, hi: 40099 }, 'test'),
    reservedPorts: known('', 'test'),
    unprivilegedPortStart: known(1024, 'test'),
    fileNr: known({ allocated: 1000, free: 0, max: 100_000 }, 'test'),
    fileMax: known(100_000, 'test'),
    memAvailable: known(2 ** 30, 'test'),
    ...over,
  };
}

const RANGE = { lo: 40000, hi: 40099 };

test('client vs server side: listeners (specific and wildcard, v4 and v6) claim their accepted sockets; the rest are destinations', () => {
  const p = new PortPressure({ range: RANGE });
  p.add(row('127.0.0.1:7000', '0.0.0.0:0', LISTEN, 3));
  p.add(row('0.0.0.0:8000', '0.0.0.0:0', LISTEN));
  p.add(row(':::9000', ':::0', LISTEN));
  // Client sides to 7000, server sides of the same connections.
  for (let i = 0; i < 5; i++) {
    p.add(row(`127.0.0.1:${40000 + i}`, '127.0.0.1:7000', EST));
    p.add(row('127.0.0.1:7000', `127.0.0.1:${40000 + i}`, EST));
  }
  p.add(row('127.0.0.1:7000', '127.0.0.1:40099', CLOSE_WAIT));
  // Accepted on the wildcard 0.0.0.0:8000 through another local address.
  p.add(row('10.0.0.1:8000', '10.0.0.2:55555', EST));
  // Accepted on the dual-stack :::9000, v4-mapped and native v6.
  p.add(row('::ffff:127.0.0.1:9000', '::ffff:127.0.0.1:40010', EST));
  p.add(row('::1:9000', '::1:40011', EST));
  // A socket on port 7000 of another address is not the 127.0.0.1:7000 listener's.
  p.add(row('127.0.0.2:7000', '10.9.9.9:443', EST));
  const r = p.result(facts());
  const dests = r.destinations.map((d) => `${d.source}>${d.destination}:${d.port}=${d.used}`);
  assert.deepEqual(dests, ['127.0.0.1>127.0.0.1:7000=5', '127.0.0.2>10.9.9.9:443=1']);
  const l = Object.fromEntries(r.listeners.map((x) => [`${x.address}:${x.port}`, [x.accepted, x.other, x.acceptQueue]]));
  assert.deepEqual(l, { '127.0.0.1:7000': [5, 1, 3], '0.0.0.0:8000': [1, 0, 0], ':::9000': [2, 0, 0] });
  assert.equal(r.totals.clientSide, 6);
  assert.equal(r.totals.serverSide, 9);
  assert.equal(r.totals.listening, 3);
});

test('exact used, TIME_WAIT, states, capacity and headroom per destination', () => {
  const p = new PortPressure({ range: RANGE });
  p.add(row('127.0.0.1:7000', '0.0.0.0:0', LISTEN));
  for (let i = 0; i < 50; i++) p.add(row(`127.0.0.1:${40000 + i}`, '127.0.0.1:7000', EST));
  for (let i = 50; i < 60; i++) p.add(row(`127.0.0.1:${40000 + i}`, '127.0.0.1:7000', TW));
  p.add(row('127.0.0.1:40060', '127.0.0.1:7000', SYN_SENT));
  p.add(row('127.0.0.1:40061', '127.0.0.1:7000', FIN_WAIT2));
  // The same source ports toward another destination port: its own pool.
  for (let i = 0; i < 30; i++) p.add(row(`127.0.0.1:${40000 + i}`, '127.0.0.1:7001', EST));
  const r = p.result(facts());
  const [a, b] = r.destinations;
  assert.deepEqual(
    { port: a.port, used: a.used, capacity: a.capacity, headroom: a.headroom, share: a.share, timeWait: a.timeWait, states: a.states, pool: a.pool },
    { port: 7000, used: 62, capacity: 100, headroom: 38, share: 62, timeWait: 10, states: { ESTABLISHED: 50, SYN_SENT: 1, FIN_WAIT2: 1, TIME_WAIT: 10 }, pool: 'ephemeral' },
  );
  assert.deepEqual({ port: b.port, used: b.used, headroom: b.headroom, timeWait: b.timeWait }, { port: 7001, used: 30, headroom: 70, timeWait: 0 });
  // bind(ip, 0) would share one pool: 62 distinct ports on 127.0.0.1.
  assert.deepEqual(r.sources, [{ source: '127.0.0.1', portsInUse: 62, capacity: 100, headroom: 38 }]);
  assert.deepEqual(r.pools, { ephemeral: 100, explicit: 65535 - 1024 + 1 - 1 });
  assert.deepEqual(overThreshold(r, 62).map((d) => d.port), [7000]);
  assert.deepEqual(overThreshold(r, 62.1), []);
});

test('reserved ports and listeners inside the range shrink the capacity by exactly their count', () => {
  const p = new PortPressure({ range: RANGE });
  p.add(row('0.0.0.0:40042', '0.0.0.0:0', LISTEN));
  p.add(row('127.0.0.1:40001', '127.0.0.1:7000', EST));
  const r = p.result(facts({ reservedPorts: known('40010-40019,40050', 'test') }));
  assert.equal(r.destinations[0].capacity, 100 - 11 - 1);
  assert.equal(r.sources[0].capacity, 88);
});

test('source ports outside the ephemeral range count against the explicit pool', () => {
  const p = new PortPressure({ range: RANGE });
  p.add(row('127.0.0.1:20000', '127.0.0.1:7100', EST));
  p.add(row('127.0.0.1:40000', '127.0.0.1:7100', EST));
  p.add(row('127.0.0.1:40001', '127.0.0.1:7101', EST));
  const r = p.result(facts());
  const d = r.destinations.find((x) => x.port === 7100);
  assert.ok(d);
  assert.deepEqual({ inRange: d.inRange, outOfRange: d.outOfRange, pool: d.pool, capacity: d.capacity }, { inRange: 1, outOfRange: 1, pool: 'explicit', capacity: 64512 });
  assert.equal(r.sources[0].portsInUse, 2, 'only ephemeral ports are in the bind() pool');
});

test('unknown range: capacity and headroom are null, every port counts as in range', () => {
  const p = new PortPressure({ range: null });
  p.add(row('127.0.0.1:40001', '127.0.0.1:7000', EST));
  const r = p.result(facts({ portRange: unknown('gone', 'test') }));
  assert.deepEqual([r.destinations[0].capacity, r.destinations[0].headroom, r.destinations[0].inRange], [null, null, 1]);
  assert.deepEqual(r.sources, []);
});

test('state filter: LISTEN rows still classify, only the chosen states are counted', () => {
  const p = new PortPressure({ range: RANGE, states: new Set([TW]) });
  p.add(row('127.0.0.1:7000', '0.0.0.0:0', LISTEN));
  p.add(row('127.0.0.1:40000', '127.0.0.1:7000', EST));
  p.add(row('127.0.0.1:40001', '127.0.0.1:7000', TW));
  p.add(row('127.0.0.1:7000', '127.0.0.1:40002', TW));
  const r = p.result(facts());
  assert.deepEqual(r.destinations.map((d) => [d.port, d.used, d.timeWait]), [[7000, 1, 1]]);
  assert.deepEqual(r.totals.byState, { TIME_WAIT: 2 });
  assert.equal(r.listeners[0].other, 1);
});

test('destination filter keeps matching destinations; the shared bind() pool still counts every destination', () => {
  const match = destinationMatcher([parseEndpoints('127.0.0.1:7000-7001')]);
  const p = new PortPressure({ range: RANGE, match });
  p.add(row('127.0.0.1:40000', '127.0.0.1:7000', EST));
  p.add(row('127.0.0.1:40001', '127.0.0.1:7002', EST));
  p.add(row('127.0.0.1:40002', '127.0.0.2:7000', EST));
  p.add(row('::ffff:127.0.0.1:40003', '::ffff:127.0.0.1:7001', EST));
  const r = p.result(facts());
  assert.deepEqual(r.destinations.map((d) => `${d.source}>${d.destination}:${d.port}`), ['127.0.0.1>127.0.0.1:7000', '127.0.0.1>127.0.0.1:7001']);
  assert.equal(r.sources[0].portsInUse, 4);
});

test('sorted by pressure: share first, then used', () => {
  const p = new PortPressure({ range: RANGE });
  for (let i = 0; i < 3; i++) p.add(row(`127.0.0.1:${40000 + i}`, '10.0.0.1:80', EST));
  for (let i = 0; i < 7; i++) p.add(row(`127.0.0.1:${40000 + i}`, '10.0.0.2:80', EST));
  for (let i = 0; i < 5; i++) p.add(row(`127.0.0.1:${20000 + i}`, '10.0.0.3:80', EST));
  const r = p.result(facts());
  assert.deepEqual(r.destinations.map((d) => d.destination), ['10.0.0.2', '10.0.0.1', '10.0.0.3']);
});

test('totals: by state, full sockets against descriptors and memory', () => {
  const p = new PortPressure({ range: RANGE });
  p.add(row('127.0.0.1:7000', '0.0.0.0:0', LISTEN));
  p.add(row('127.0.0.1:40000', '127.0.0.1:7000', EST));
  p.add(row('127.0.0.1:7000', '127.0.0.1:40000', EST));
  p.add(row('127.0.0.1:40001', '127.0.0.1:7000', TW));
  p.add(row('127.0.0.1:7000', '127.0.0.1:40002', STATE.SYN_RECV));
  const r = p.result(facts());
  assert.equal(r.totals.sockets, 5);
  assert.equal(r.totals.fullSockets, 3);
  assert.deepEqual(r.totals.descriptors, { sockets: 3, allocated: 1000, max: 100_000 });
  assert.deepEqual(r.totals.memory, { kernelBytes: 3 * KERNEL_BYTES_PER_SOCKET, available: 2 ** 30 });
  const none = new PortPressure({ range: RANGE }).result(facts({ fileNr: unknown('x', 't'), memAvailable: unknown('x', 't') }));
  assert.equal(none.totals.descriptors, null);
  assert.equal(none.totals.memory, null);
});

test('memory does not grow with sockets: 200,000 rows to one destination make one counter', () => {
  const p = new PortPressure({ range: { lo: 1024, hi: 65535 } });
  const r0 = row('127.0.0.1:40000', '10.0.0.1:80', EST);
  for (let i = 0; i < 200_000; i++) {
    r0.localPort = 1024 + (i % 64_000);
    r0.remotePort = 80 + (i % 2);
    p.add(r0);
  }
  const r = p.result(facts({ portRange: known({ lo: 1024, hi: 65535 }, 't') }));
  assert.equal(r.destinations.length, 2);
  assert.equal(r.destinations[0].used + r.destinations[1].used, 200_000);
  assert.equal(r.sources[0].portsInUse, 64_000);
});
