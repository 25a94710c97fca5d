import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../dist/errors.js';
import { parseLimitsArgs } from '../dist/cli/limits.js';

const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface LimitsDoc {
  strategy: string;
  process: { connections: number | null; binding: string | null; remedy: string };
  host: { connections: number | null; binding: string | null; remedy: string };
  constraints: { id: string; limit: number | null; scope: string }[];
  facts: Record<string, unknown>;
  portsPerDestination: number | null;
  destinationCount: number;
  sourceCount: number;
}

function json(...args: string[]): LimitsDoc {
  const r = run(...args, '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  return JSON.parse(r.stdout) as LimitsDoc;
}

/** The ephemeral pool computed here, independently of src/: /proc/sys plus `ss` for listeners. */
function livePool(): number {
  const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const excluded = new Set<number>();
  for (const part of readFileSync('/proc/sys/net/ipv4/ip_local_reserved_ports', 'utf8').trim().split(',')) {
    if (part === '') continue;
    const [a, b = a] = part.split('-').map(Number);
    for (let p = a; p <= b; p++) excluded.add(p);
  }
  for (const line of execFileSync('ss', ['-Htln'], { encoding: 'utf8' }).split('\n')) {
    const local = line.trim().split(/\s+/)[3];
    if (local) excluded.add(Number(local.slice(local.lastIndexOf(':') + 1)));
  }
  let n = 0;
  for (let p = lo; p <= hi; p++) if (!excluded.has(p)) n++;
  return n;
}

function softNofile(): number {
  const m = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m && m[1] !== 'unlimited' ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
}

describe('fourtuple limits --json', () => {
  it('to one loopback destination: the live ephemeral pool', (t) => {
    const before = livePool();
    const doc = json('limits', '--to', '127.0.0.1:7000');
    const afterPool = livePool();
    assert.deepEqual(Object.keys(doc).filter((k) => ['process', 'host', 'constraints', 'facts'].includes(k)).sort(), ['constraints', 'facts', 'host', 'process']);
    assert.deepEqual(new Set(doc.constraints.map((c) => c.id)), new Set(['ephemeral-ports', 'fd-process', 'fd-host', 'memory', 'conntrack', 'time-wait', 'backlog']));
    assert.equal(doc.constraints.length, 7);
    assert.equal(doc.strategy, 'auto');
    assert.equal(doc.destinationCount, 1);
    const eph = doc.constraints.find((c) => c.id === 'ephemeral-ports')!;
    if (before !== afterPool) {
      t.skip(`listeners changed while the test ran (${before} then ${afterPool} free ports)`);
      return;
    }
    assert.equal(eph.limit, before);
    assert.equal(doc.portsPerDestination, before);
    // host.connections is the smallest host-scope limit
    const hostLimits = doc.constraints.filter((c) => c.scope === 'host' && c.limit !== null).map((c) => c.limit as number);
    assert.equal(doc.host.connections, Math.min(...hostLimits));
    if (doc.host.binding !== 'ephemeral-ports') {
      t.skip(`another host limit (${doc.host.binding}: ${doc.host.connections}) is below the port pool of ${before}`);
      return;
    }
    assert.equal(doc.host.connections, before);
    const soft = softNofile();
    const fd = doc.constraints.find((c) => c.id === 'fd-process')!;
    assert.ok(fd.limit !== null && fd.limit <= soft && fd.limit > soft - 1000, `fd-process ${fd.limit} vs soft ${soft}`);
    if (soft < before) {
      assert.equal(doc.process.binding, 'fd-process');
      assert.equal(doc.process.connections, fd.limit);
    } else {
      assert.equal(doc.process.binding, 'ephemeral-ports');
    }
  });

  it('to 1,000 ports: the port pool no longer binds the host', () => {
    // 1,000 pools of ~28,000 ports: more than memory holds on any host of today (root is not held to fs.file-max).
    const doc = json('limits', '--to', '127.0.0.1:7000-7999');
    assert.equal(doc.destinationCount, 1000);
    const eph = doc.constraints.find((c) => c.id === 'ephemeral-ports')!;
    assert.equal(eph.limit, (doc.portsPerDestination as number) * 1000);
    assert.notEqual(doc.host.binding, 'ephemeral-ports');
    assert.ok(doc.host.connections !== null && doc.host.connections < (eph.limit as number));
  });

  it('the churn ceiling: from the live tcp_tw_reuse, per pool of portsPerDestination', () => {
    const doc = json('limits', '--to', '127.0.0.1:7000') as LimitsDoc & { churn: { perPool: number | null; timeWaitSeconds: number; twReuse: number | null; reuseDelayMs: number | null; detail: string; remedy: string } };
    assert.deepEqual(Object.keys(doc.churn), ['perPool', 'timeWaitSeconds', 'twReuse', 'reuseDelayMs', 'detail', 'remedy']);
    assert.equal(doc.churn.timeWaitSeconds, 60);
    const reuse = Number(readFileSync('/proc/sys/net/ipv4/tcp_tw_reuse', 'utf8'));
    assert.equal(doc.churn.twReuse, reuse);
    const timestamps = Number(readFileSync('/proc/sys/net/ipv4/tcp_timestamps', 'utf8')) !== 0;
    const buckets = Number(readFileSync('/proc/sys/net/ipv4/tcp_max_tw_buckets', 'utf8'));
    const P = doc.portsPerDestination as number;
    // A loopback destination: tcp_tw_reuse 1 or 2 takes TIME_WAIT over after the delay, 0 never does.
    const expected = buckets < P ? null : reuse !== 0 && timestamps ? (P * 1000) / Math.max(1, doc.churn.reuseDelayMs ?? 1000) : P / 60;
    assert.equal(doc.churn.perPool, expected === null ? null : Math.round(expected * 100) / 100, doc.churn.detail);
    const text = run('limits', '--to', '127.0.0.1:7000').stdout;
    assert.match(text, /^Churn: /m);
  });

  it('--strategy bind --from 3 sources reports the shared bind pool', () => {
    const doc = json('limits', '--strategy', 'bind', '--from', '127.0.0.2-127.0.0.4', '--to', '127.0.0.1:7000-7099');
    assert.equal(doc.strategy, 'bind');
    assert.equal(doc.sourceCount, 3);
    const ids = doc.constraints.map((c) => c.id);
    assert.ok(ids.includes('bind-pool'));
    assert.ok(!ids.includes('ephemeral-ports'));
    const pool = doc.constraints.find((c) => c.id === 'bind-pool')!;
    assert.equal(pool.limit, (doc.portsPerDestination as number) * 3);
  });
});

describe('fourtuple limits (human)', () => {
  it('first line starts with the sentence', () => {
    const r = run('limits', '--to', '127.0.0.1:7000');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    const first = r.stdout.split('\n')[0];
    assert.ok(first.startsWith('One process can open'), first);
    assert.match(first, /connections to 127\.0\.0\.1:7000/);
    assert.match(r.stdout, /^ephemeral-ports\s/m);
  });

  it('--strategy bind --from names bind-pool', () => {
    const r = run('limits', '--strategy', 'bind', '--from', '127.0.0.2-127.0.0.4');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^bind-pool\s/m);
  });
});

describe('fourtuple bad input', () => {
  const cases: [string[], string][] = [
    [['limits', '--to', '127.0.0.1:99999'], '99999'],
    [['limits', '--to', '127.0.0.1:7000-6000'], '7000-6000'],
    [['limits', '--strategy', 'nope'], 'nope'],
    [['limits', '--frob'], '--frob'],
    [['limits', '--from', '127.0.0.0/40'], '127.0.0.0/40'],
    [['limits', '--to'], '--to'],
    [['nope'], 'nope'],
  ];
  for (const [args, bad] of cases) {
    it(`fourtuple ${args.join(' ')}`, () => {
      const r = run(...args);
      assert.equal(r.status, 2);
      assert.equal(r.stdout, '');
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(r.stderr.endsWith('\n'));
      assert.ok(lines[0].includes(`'${bad}'`), lines[0]);
      assert.ok(!r.stderr.includes('    at '), 'no stack trace');
    });
  }
});

describe('parseLimitsArgs', () => {
  it('parses without running', () => {
    const o = parseLimitsArgs(['--to', '127.0.0.1:7000-7099', '--to', '[::1]:80', '--from', '127.0.0.2-127.0.0.4', '--json']);
    assert.equal(o.json, true);
    assert.equal(o.help, false);
    assert.equal(o.input.strategy, 'nopo', '--from implies nopo');
    assert.deepEqual(o.input.sources, ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    assert.equal(o.input.destinations.length, 2);
    assert.equal(o.input.destinations[0].ports.size, 100);
    assert.deepEqual(o.input.destinations[1].addresses, ['::1']);
  });

  it('defaults and explicit strategy', () => {
    const d = parseLimitsArgs([]);
    assert.deepEqual({ json: d.json, help: d.help, strategy: d.input.strategy, sources: d.input.sources, n: d.input.destinations.length }, { json: false, help: false, strategy: 'auto', sources: [], n: 0 });
    assert.equal(parseLimitsArgs(['--strategy', 'bind', '--from', '127.0.0.2']).input.strategy, 'bind');
    assert.equal(parseLimitsArgs(['-h']).help, true);
    assert.deepEqual(parseLimitsArgs(['--from', '127.0.0.2', '--from', '127.0.0.2-127.0.0.3']).input.sources, ['127.0.0.2', '127.0.0.3']);
  });

  it('throws InvalidArgumentError on bad input', () => {
    for (const argv of [['--to', '127.0.0.1:99999'], ['--strategy', 'nope'], ['--frob'], ['--from', '127.0.0.0/40'], ['extra']]) {
      assert.throws(() => parseLimitsArgs(argv), (e: unknown) => e instanceof InvalidArgumentError && e.exitCode === 2, argv.join(' '));
    }
  });
});
