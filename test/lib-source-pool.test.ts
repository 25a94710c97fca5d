// The allocator on its own: no socket is opened here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SourcePool, InvalidArgumentError, PoolExhaustedError, PortSet, connect, connector } from '../dist/index.js';

const SOURCES = '127.0.0.2-127.0.0.4';

test('nopo: round-robin per destination, every source once before any twice', () => {
  const pool = new SourcePool({ sources: SOURCES, strategy: 'nopo' });
  assert.deepEqual(pool.sources, ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
  const picks = Array.from({ length: 6 }, () => pool.lease('127.0.0.1', 7000));
  const counts = new Map<string, number>();
  for (const l of picks) {
    assert.ok(l);
    assert.equal(l.port, 0);
    assert.equal(l.destination, '127.0.0.1:7000');
    counts.set(l.source, (counts.get(l.source) ?? 0) + 1);
  }
  assert.deepEqual([...counts.values()], [2, 2, 2]);
  assert.equal(pool.open, 6);
  for (const l of picks) pool.release(l!);
  assert.equal(pool.open, 0);
  assert.deepEqual(pool.usage(), []);
});

test('full pools are skipped; all full gives undefined and a PoolExhaustedError naming destination and sources', () => {
  const pool = new SourcePool({ sources: SOURCES, strategy: 'nopo', retryFullAfterMs: 60_000 });
  const held = [];
  for (let i = 0; i < 3; i++) {
    const l = pool.lease('127.0.0.1', 7000)!;
    pool.reject(l, 'full');
  }
  assert.equal(pool.lease('127.0.0.1', 7000), undefined);
  // Another destination is untouched.
  held.push(pool.lease('127.0.0.1', 7001)!);
  assert.ok(held[0]);
  const err = pool.exhausted('127.0.0.1', 7000);
  assert.ok(err instanceof PoolExhaustedError);
  assert.equal((err as PoolExhaustedError).code, 'FT_POOL_EXHAUSTED');
  assert.equal((err as PoolExhaustedError).destination, '127.0.0.1:7000');
  assert.match(err.message, /127\.0\.0\.2, 127\.0\.0\.3, 127\.0\.0\.4/);
  assert.equal(pool.usage().filter((u) => u.full).length, 3);
});

test('releasing a connection reopens its full pool at once; the retry delay reopens the others', async () => {
  const pool = new SourcePool({ sources: SOURCES, strategy: 'nopo', retryFullAfterMs: 30 });
  const a = pool.lease('127.0.0.1', 7000)!;
  const others = [pool.lease('127.0.0.1', 7000)!, pool.lease('127.0.0.1', 7000)!];
  for (const l of others) pool.reject(l, 'full');
  const b = pool.lease('127.0.0.1', 7000)!;
  pool.reject(b, 'full');
  assert.equal(b.source, a.source);
  assert.equal(pool.lease('127.0.0.1', 7000), undefined);
  pool.release(a);
  assert.equal(pool.lease('127.0.0.1', 7000)?.source, a.source);
  await new Promise((r) => setTimeout(r, 40));
  assert.ok(pool.lease('127.0.0.1', 7000));
});

test('explicit: its own ports per (source, destination), the same ports for every destination, released ports last', () => {
  const pool = new SourcePool({ sources: '127.0.0.2', strategy: 'explicit', ports: '20000-20002' });
  const d1 = [0, 1, 2].map(() => pool.lease('127.0.0.1', 7000)!);
  assert.deepEqual(d1.map((l) => l.port), [20000, 20001, 20002]);
  assert.equal(pool.lease('127.0.0.1', 7000), undefined);
  assert.deepEqual([0, 1, 2].map(() => pool.lease('127.0.0.1', 7001)!.port), [20000, 20001, 20002]);
  pool.release(d1[1]);
  pool.release(d1[0]);
  assert.equal(pool.lease('127.0.0.1', 7000)?.port, 20001);
  assert.equal(pool.lease('127.0.0.1', 7000)?.port, 20000);
  // A taken port is set aside, not handed out again while others are free.
  const p = new SourcePool({ sources: '127.0.0.2', strategy: 'explicit', ports: new PortSet([{ lo: 30000, hi: 30001 }]) });
  const t = p.lease('127.0.0.1', 7000)!;
  p.reject(t, 'taken');
  assert.equal(p.lease('127.0.0.1', 7000)?.port, 30001);
  assert.equal(p.lease('127.0.0.1', 7000), undefined);
});

test('state of idle destinations is forgotten after forgetIdleAfterMs; open, resting or full ones are kept until then', async () => {
  const pool = new SourcePool({ sources: '127.0.0.2-127.0.0.3', strategy: 'explicit', ports: '20000-20009', forgetIdleAfterMs: 60 });
  // 1,000 destinations, one connection each, all closed: their ports rest (explicit), so their state stays for now.
  for (let i = 0; i < 1000; i++) pool.release(pool.lease('10.0.0.1', 1000 + i)!);
  const held = pool.lease('10.0.0.2', 80)!;
  const full = pool.lease('10.0.0.3', 80)!;
  pool.reject(full, 'full');
  assert.equal(pool.tracked, 1002);
  await new Promise((r) => setTimeout(r, 80));
  // A new destination sweeps: the idle ones go; the open one stays, and so does the full one (its retry delay, 1 s, is not over).
  pool.release(pool.lease('10.0.0.4', 80)!);
  assert.equal(pool.tracked, 3, 'the open destination, the full one (still within its retry delay) and the new one');
  assert.deepEqual(
    pool.usage().map((u) => [u.destination, u.open, u.full]),
    [
      ['10.0.0.2:80', 1, false],
      ['10.0.0.3:80', 0, true],
    ],
  );
  // A forgotten explicit destination starts again from the first port.
  assert.equal(pool.lease('10.0.0.1', 1000)?.port, 20000);
  pool.release(held);
  assert.equal(pool.open, 1);
  // nopo destinations keep no state once idle, without waiting.
  const nopo = new SourcePool({ sources: '127.0.0.2', strategy: 'nopo' });
  for (let i = 0; i < 100; i++) nopo.release(nopo.lease('10.0.0.1', 1000 + i)!);
  assert.equal(nopo.tracked, 0);
});

test('explicit default pool comes from the model and skips the ephemeral range first', () => {
  const pool = new SourcePool({ sources: '127.0.0.2', strategy: 'explicit' });
  const l = pool.lease('127.0.0.1', 7000)!;
  assert.ok(l.port >= 1 && l.port < 65536);
});

test('families: an IPv6 destination only gets IPv6 sources; none is a clear error', () => {
  const pool = new SourcePool({ sources: ['127.0.0.2', '::1'], strategy: 'nopo' });
  assert.equal(pool.lookupFamily, 0);
  assert.equal(pool.lease('::1', 7000)?.source, '::1');
  assert.equal(pool.lease('::1', 7000)?.destination, '[::1]:7000');
  const v4 = new SourcePool({ sources: '127.0.0.2', strategy: 'nopo' });
  assert.equal(v4.lease('::1', 7000), undefined);
  assert.ok(v4.exhausted('::1', 7000) instanceof InvalidArgumentError);
});

test('options are validated where they enter, naming the option', () => {
  assert.throws(() => new SourcePool({ sources: [] }), (e: Error) => e instanceof InvalidArgumentError && /sources/.test(e.message));
  assert.throws(() => new SourcePool({ sources: '127.0.0.300' }), /sources/);
  assert.throws(() => new SourcePool({ sources: SOURCES, strategy: 'bind' as never }), /strategy 'bind'/);
  assert.throws(() => new SourcePool({ sources: SOURCES, strategy: 'nopo', ports: '20000-20010' }), /ports: only with strategy explicit/);
  assert.throws(() => new SourcePool({ sources: SOURCES, retryFullAfterMs: -1 }), /retryFullAfterMs/);
  assert.throws(() => new SourcePool({ sources: SOURCES, forgetIdleAfterMs: Number.NaN }), /forgetIdleAfterMs NaN/);
  assert.throws(() => connect({ port: 7000 }), /sources/);
  assert.throws(() => connect({ port: 7000, sources: SOURCES, localAddress: '127.0.0.9' } as never), /localAddress/);
  assert.throws(() => connector({ sources: SOURCES, timeout: -5 }), /timeout/);
});
