import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../dist/errors.js';
import { parseReuseArgs } from '../dist/cli/reuse.js';
import { cliInNetns, netnsUnavailable } from './support/netns.js';

const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

// Generous: on a shared host other runs may hold a million sockets and every CPU.
function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return runEnv({}, ...args);
}

function runEnv(env: Record<string, string>, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Row {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  state: string;
}

interface ReuseDoc {
  source: { address: string; port: number };
  destinations: { address: string; port: number }[];
  connections: Row[];
  failures: unknown[];
  counterCase: { destination: { address: string; port: number }; bindErrno: string | null; errno: string; errnoValue: number; explanation: string };
  withoutReuseAddr: { errno: string; errnoValue: number; explanation: string };
  table: string;
  cleanup: { left: number };
}

/** `ss -Htan` lines with `address:port` at either end, read independently of src/ (filtered in the kernel: the host may hold a million sockets). */
function ssAt(address: string, port: number): string[] {
  const want = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
  return execFileSync('ss', ['-Htan', `( sport = :${port} or dport = :${port} )`], { encoding: 'utf8', maxBuffer: 64 << 20 })
    .split('\n')
    .filter((line) => {
      const f = line.trim().split(/\s+/);
      return f[3] === want || f[4] === want;
    });
}

/** Checks the whole experiment; returns the document. */
function checkRun(doc: ReuseDoc, k: number): void {
  assert.equal(doc.connections.length, k, JSON.stringify(doc.connections));
  assert.deepEqual(new Set(doc.connections.map((c) => `${c.localAddress}:${c.localPort}`)), new Set([`${doc.source.address}:${doc.source.port}`]));
  assert.equal(new Set(doc.connections.map((c) => `${c.remoteAddress}:${c.remotePort}`)).size, k);
  assert.ok(doc.connections.every((c) => c.state === 'ESTABLISHED'));
  assert.deepEqual(doc.failures, []);
  // Verified on Linux 6.18: bind() with SO_REUSEADDR succeeds, connect() to a used destination gives EADDRNOTAVAIL (99)...
  assert.equal(doc.counterCase.bindErrno, null);
  assert.equal(doc.counterCase.errno, 'EADDRNOTAVAIL');
  assert.equal(doc.counterCase.errnoValue, 99);
  assert.match(doc.counterCase.explanation, /already ESTABLISHED/);
  // ...and bind() without SO_REUSEADDR gives EADDRINUSE (98).
  assert.equal(doc.withoutReuseAddr.errno, 'EADDRINUSE');
  assert.equal(doc.withoutReuseAddr.errnoValue, 98);
  assert.equal(doc.cleanup.left, 0);
}

function json(...args: string[]): ReuseDoc {
  const r = run('reuse', ...args, '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  return JSON.parse(r.stdout) as ReuseDoc;
}

function hasIpv6Loopback(): boolean {
  try {
    return /^0{31}1 /m.test(readFileSync('/proc/net/if_inet6', 'utf8'));
  } catch {
    return false;
  }
}

describe('fourtuple reuse (loopback)', () => {
  it('default: 3 connections from one free source port, counter-case, no TIME_WAIT left', () => {
    const doc = json();
    checkRun(doc, 3);
    assert.equal(doc.table, 'sock_diag');
    assert.equal(doc.source.address, '127.0.0.1');
    assert.ok(doc.source.port >= 20_000);
    assert.deepEqual(ssAt(doc.source.address, doc.source.port), []);
  });

  it('the /proc/net/tcp reader agrees (FOURTUPLE_NO_SOCK_DIAG=1)', () => {
    const r = runEnv({ FOURTUPLE_NO_SOCK_DIAG: '1' }, 'reuse', '--json');
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as ReuseDoc;
    assert.equal(doc.table, 'proc');
    checkRun(doc, 3);
    assert.deepEqual(ssAt(doc.source.address, doc.source.port), []);
  });

  it('--count 5', () => {
    const doc = json('--count', '5');
    checkRun(doc, 5);
    assert.deepEqual(ssAt(doc.source.address, doc.source.port), []);
  });

  it('--to 127.0.0.1:7100-7103: exactly those four destinations', () => {
    const doc = json('--to', '127.0.0.1:7100-7103');
    checkRun(doc, 4);
    assert.deepEqual(doc.connections.map((c) => c.remotePort), [7100, 7101, 7102, 7103]);
    assert.deepEqual(ssAt(doc.source.address, doc.source.port), []);
  });

  it('--from 127.0.0.2 to two destination addresses', () => {
    const doc = json('--from', '127.0.0.2', '--to', '127.0.0.1:7100', '--to', '127.0.0.3:7100');
    checkRun(doc, 2);
    assert.equal(doc.source.address, '127.0.0.2');
    assert.deepEqual(doc.connections.map((c) => c.remoteAddress), ['127.0.0.1', '127.0.0.3']);
    assert.deepEqual(ssAt(doc.source.address, doc.source.port), []);
  });

  it('IPv6: [::1]', (t) => {
    if (!hasIpv6Loopback()) return t.skip('no ::1 here');
    const doc = json('--to', '[::1]:7100-7102');
    checkRun(doc, 3);
    assert.equal(doc.source.address, '::1');
    assert.deepEqual(ssAt(doc.source.address, doc.source.port), []);
  });

  it('human output: the sentence first, the rows, the errno and its reason', () => {
    const r = run('reuse', '--count', '2');
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.match(lines[0], /^One source port, 127\.0\.0\.1:\d+, carries 2 connections to 2 destinations at once: TCP needs only the 4-tuple to be unique\.$/);
    assert.equal(lines.filter((l) => /^127\.0\.0\.1:\d+\s+127\.0\.0\.1:\d+\s+ESTABLISHED$/.test(l)).length, 2);
    assert.match(r.stdout, /connect\(\) failed with EADDRNOTAVAIL \(errno 99\)/);
    assert.match(r.stdout, /Without SO_REUSEADDR: bind\(\) of 127\.0\.0\.1:\d+ fails with EADDRINUSE \(errno 98\)/);
  });
});

describe('fourtuple reuse: bad input', () => {
  const cases: [string[], string][] = [
    [['--count', '0'], "'0'"],
    [['--count', '1001'], "'1001'"],
    [['--count', 'many'], "'many'"],
    [['--from', '999.1.1.1'], "'999.1.1.1'"],
    [['--from', '127.0.0.1:70000'], "'70000'"],
    [['--from', '127.0.0.1-127.0.0.3'], "'127.0.0.1-127.0.0.3'"],
    [['--to', '127.0.0.1'], "'127.0.0.1'"],
    [['--to', '127.0.0.1:1-2000'], "'127.0.0.1:1-2000'"],
    [['--to', '[::1]:7100', '--from', '127.0.0.1'], "'127.0.0.1'"],
    [['--to', '127.0.0.1:7100-7101', '--count', '3'], "'3'"],
    [['--bogus'], "'--bogus'"],
    [['extra'], "'extra'"],
  ];
  for (const [args, named] of cases) {
    it(`${args.join(' ')}: exit 2, one line naming ${named}`, () => {
      const r = run('reuse', ...args);
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stdout, '');
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(lines[0].includes(named), lines[0]);
    });
  }
});

describe('parseReuseArgs', () => {
  it('defaults', () => {
    const o = parseReuseArgs([]);
    assert.deepEqual(o, { help: false, json: false, source: '127.0.0.1', port: undefined, destinations: undefined, count: 3 });
  });

  it('--from ADDR:PORT, --to expanded, --count takes the first K', () => {
    const o = parseReuseArgs(['--from', '127.0.0.1:20123', '--to', '127.0.0.1:7100-7199', '--count', '2']);
    assert.equal(o.port, 20123);
    assert.deepEqual(o.destinations, [{ address: '127.0.0.1', port: 7100 }, { address: '127.0.0.1', port: 7101 }]);
    assert.equal(o.count, 2);
  });

  it('IPv6 destinations default the source to ::1', () => {
    const o = parseReuseArgs(['--to', '[::1]:7100']);
    assert.equal(o.source, '::1');
    assert.equal(parseReuseArgs(['--from', '[::1]:20001']).port, 20001);
  });

  it('throws InvalidArgumentError', () => {
    assert.throws(() => parseReuseArgs(['--count', '0']), InvalidArgumentError);
    assert.throws(() => parseReuseArgs(['--from', '127.0.0.1:20000-20001']), InvalidArgumentError);
  });
});

describe('fourtuple reuse in a private network namespace', () => {
  it('the first free port from 20000 is 20000, and the kernel answers the same', (t) => {
    const why = netnsUnavailable();
    if (why) return t.skip(why);
    const r = cliInNetns([], ['reuse', '--json', '--count', '4']);
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as ReuseDoc;
    checkRun(doc, 4);
    assert.deepEqual(doc.source, { address: '127.0.0.1', port: 20000 });
    assert.deepEqual(doc.connections.map((c) => c.remotePort), [7100, 7101, 7102, 7103]);
  });
});
