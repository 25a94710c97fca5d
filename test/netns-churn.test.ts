/**
 * The churn ceiling against the real kernel, in private namespaces with a
 * small range: `limits --json` must give pool ÷ 60 s without tcp_tw_reuse
 * and pool ÷ tcp_tw_reuse_delay with it; connect() must allow what the
 * model says; and `ports --watch` must see a client's rate of new
 * connections beside that ceiling.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cliInNetns, netnsUnavailable, runInNetns } from './support/netns.js';
import type { ChurnClientArgs, ChurnClientResult } from './support/churn-client.js';

const skip = netnsUnavailable();
const RANGE_100 = 'sysctl -q -w net.ipv4.ip_local_port_range="40000 40099"';
// tcp_tw_reuse_delay is a sysctl from Linux 6.13; a namespace has the host's kernel.
const hasReuseDelay = existsSync('/proc/sys/net/ipv4/tcp_tw_reuse_delay');

interface ChurnDoc {
  portsPerDestination: number;
  churn: { perPool: number | null; timeWaitSeconds: number; twReuse: number | null; reuseDelayMs: number | null; detail: string; remedy: string };
}

function limits(setup: string[], to = '127.0.0.1:7000', extra: string[] = []): ChurnDoc {
  const r = cliInNetns([RANGE_100, ...setup], ['limits', '--json', '--to', to, ...extra]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as ChurnDoc;
}

describe('limits --json: the churn ceiling from the namespace kernel', () => {
  it('tcp_tw_reuse 0: 100 ports ÷ 60 s = 1.67 per second', { skip }, () => {
    const doc = limits(['sysctl -q -w net.ipv4.tcp_tw_reuse=0']);
    assert.equal(doc.portsPerDestination, 100);
    assert.deepEqual({ perPool: doc.churn.perPool, timeWaitSeconds: doc.churn.timeWaitSeconds, twReuse: doc.churn.twReuse }, { perPool: 1.67, timeWaitSeconds: 60, twReuse: 0 });
    assert.match(doc.churn.detail, /^100 ports ÷ 60 s in TIME_WAIT/);
    assert.match(doc.churn.remedy, /tcp_tw_reuse=1/);
  });

  it('tcp_tw_reuse 1: 100 ports ÷ the reuse delay', { skip }, () => {
    const doc = limits(['sysctl -q -w net.ipv4.tcp_tw_reuse=1']);
    assert.equal(doc.churn.twReuse, 1);
    assert.equal(doc.churn.reuseDelayMs, 1000);
    assert.equal(doc.churn.perPool, 100);
  });

  it('tcp_tw_reuse_delay 2500 (6.13+): 100 ports ÷ 2.5 s = 40 per second', { skip: skip ?? (hasReuseDelay ? undefined : 'no tcp_tw_reuse_delay before Linux 6.13') }, () => {
    const doc = limits(['sysctl -q -w net.ipv4.tcp_tw_reuse=1', 'sysctl -q -w net.ipv4.tcp_tw_reuse_delay=2500']);
    assert.equal(doc.churn.reuseDelayMs, 2500);
    assert.equal(doc.churn.perPool, 40);
  });

  it('tcp_tw_reuse 2: loopback destinations only', { skip }, () => {
    assert.equal(limits(['sysctl -q -w net.ipv4.tcp_tw_reuse=2']).churn.perPool, 100);
    // 10.9.0.1 on lo is local but not loopback for tcp_tw_reuse 2; limits only reads, it sends nothing.
    const remote = limits(['sysctl -q -w net.ipv4.tcp_tw_reuse=2', 'ip addr add 10.9.0.1/32 dev lo'], '10.9.0.1:7000');
    assert.equal(remote.churn.perPool, 1.67);
    assert.match(remote.churn.detail, /loopback only/);
  });

  it('--strategy bind: ÷ 60 s whatever tcp_tw_reuse says; the human report has the line', { skip }, () => {
    const doc = limits(['sysctl -q -w net.ipv4.tcp_tw_reuse=1'], '127.0.0.1:7000', ['--strategy', 'bind', '--from', '127.0.0.1']);
    assert.equal(doc.churn.perPool, 1.67);
    const r = cliInNetns([RANGE_100, 'sysctl -q -w net.ipv4.tcp_tw_reuse=0'], ['limits', '--to', '127.0.0.1:7000']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Churn: at most 1\.67 new connections per second per \(source, destination\) when this host closes first \(100 ports ÷ 60 s in TIME_WAIT/m);
  });
});

function churnRun(args: ChurnClientArgs): ChurnClientResult {
  return runInNetns<ChurnClientResult>('churn-client', args);
}

describe('connect() allows what the model says', () => {
  const sysctl = (reuse: string) => ({ ip_local_port_range: '40000 40099', tcp_tw_reuse: reuse });

  it('tcp_tw_reuse 0: 100 connections, then EADDRNOTAVAIL for the rest of the run (a port comes back after 60 s)', { skip }, () => {
    const r = churnRun({ host: '127.0.0.1', rate: 200, seconds: 2, sysctl: sysctl('0') });
    assert.equal(r.predicted, 100 / 60);
    assert.equal(r.connected, 100, JSON.stringify(r));
    assert.equal(r.errors.EADDRNOTAVAIL, r.sent - 100);
  });

  it('tcp_tw_reuse 1: about 100 per second (a TIME_WAIT is taken over after 1 s)', { skip }, () => {
    const r = churnRun({ host: '127.0.0.1', rate: 300, seconds: 3, sysctl: sysctl('1') });
    assert.equal(r.predicted, 100);
    // Each port serves once a second at most; a busy machine may fall behind the schedule, never ahead of the kernel.
    assert.ok(r.connected <= 3 * 100 + 5 && r.connected >= 0.6 * 3 * 100, JSON.stringify(r));
  });

  it('tcp_tw_reuse 2 toward a local address that is not loopback: as 0', { skip }, () => {
    const r = churnRun({ host: '10.9.0.1', rate: 200, seconds: 2, sysctl: sysctl('2'), ip: [['addr', 'add', '10.9.0.1/32', 'dev', 'lo']] });
    assert.equal(r.predicted, 100 / 60);
    assert.equal(r.connected, 100, JSON.stringify(r));
  });
});

interface WatchLine {
  destinations: { destination: string; port: number; newPerSecond: number | null; ceilingPerSecond: number | null; capacity: number }[];
  churn: { strategy: string; timeWaitSeconds: number; twReuse: number | null; reuseDelayMs: number | null };
}

describe('ports --watch: new connections per second beside the churn ceiling', () => {
  const client = (args: ChurnClientArgs): string => `${process.execPath} ${fileURLToPath(new URL('./support/churn-client.js', import.meta.url))} '${JSON.stringify(args)}'`;
  const RATE = 40;

  it(`a client at ${RATE}/s, closing first: NEW/S near ${RATE}, CEILING/S 1,000 ÷ 60 with tcp_tw_reuse 0`, { skip }, () => {
    // 1,000 ports: at 40/s the pool lasts 25 s, longer than the run.
    const r = cliInNetns(
      ['sysctl -q -w net.ipv4.ip_local_port_range="40000 40999"', 'sysctl -q -w net.ipv4.tcp_tw_reuse=0'],
      ['ports', '--watch', '0.5', '--duration', '5', '--json', '--to', '127.0.0.1:7000'],
      client({ host: '127.0.0.1', rate: RATE, seconds: 6.5 }),
    );
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as WatchLine);
    assert.ok(lines.length >= 6, `${lines.length} refreshes`);
    assert.deepEqual(lines[0].churn, { strategy: 'auto', timeWaitSeconds: 60, twReuse: 0, reuseDelayMs: lines[0].churn.reuseDelayMs });
    for (const d of lines[0].destinations) assert.equal(d.newPerSecond, null, 'no rate on the first refresh');
    // After the client has surely started (it needs a moment to load), every refresh sees the destination.
    const later = lines.slice(3).map((l) => l.destinations.find((d) => d.destination === '127.0.0.1' && d.port === 7000));
    const rates: number[] = [];
    for (const d of later) {
      assert.ok(d, 'the destination is in every later refresh');
      assert.equal(d.capacity, 1000);
      assert.equal(d.ceilingPerSecond, 16.67);
      assert.ok(d.newPerSecond !== null);
      rates.push(d.newPerSecond);
    }
    const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
    assert.ok(mean >= 0.5 * RATE && mean <= 1.5 * RATE, `mean NEW/S ${mean} over ${rates.join(', ')}`);
    const client_ = JSON.parse(r.during) as ChurnClientResult;
    assert.deepEqual(client_.errors, {}, 'the pool never ran out');
  });

  it('the text view: NEW/S and CEILING/S columns, and the sentence when a destination opens faster than its ceiling', { skip }, () => {
    const r = cliInNetns(
      [RANGE_100, 'sysctl -q -w net.ipv4.tcp_tw_reuse=1'],
      ['ports', '--watch', '0.5', '--duration', '2.5', '--to', '127.0.0.1:7000'],
      client({ host: '127.0.0.1', rate: 20, seconds: 3 }),
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^SOURCE\s+DESTINATION\s+USED\s+CAPACITY\s+HEADROOM\s+ESTAB\s+TIME_WAIT\s+TREND\s+NEW\/S\s+CEILING\/S(?:\s+FAILED)?\s+OTHER$/m);
    const rows = r.stdout.split('\n').filter((l) => /^127\.0\.0\.1\s+127\.0\.0\.1:7000\s/.test(l));
    assert.ok(rows.length >= 3, r.stdout);
    // tcp_tw_reuse 1: 100 ports ÷ 1 s.
    const cells = rows.map((l) => l.trim().split(/\s+/));
    for (const c of cells) assert.equal(c[9], '100', c.join(' '));
    assert.ok(cells.slice(1).some((c) => Number(c[8]) > 0), cells.map((c) => c[8]).join(', '));
    const past = cliInNetns(
      [RANGE_100, 'sysctl -q -w net.ipv4.tcp_tw_reuse=0'],
      ['ports', '--watch', '0.5', '--duration', '2', '--to', '127.0.0.1:7000'],
      client({ host: '127.0.0.1', rate: 20, seconds: 2.5 }),
    );
    assert.equal(past.status, 0, past.stderr);
    assert.match(past.stdout, /^127\.0\.0\.1:7000 from 127\.0\.0\.1 opens [\d.]+ new connections\/s, past its churn ceiling of 1\.67\/s/m);
  });
});

interface LoadChurnDoc {
  churn: { rate: number; connected: number; timeWaitLeft: number | null; failed: Record<string, number>; firstFailure: { atS: number; errno: string } | null; timeline: { t: number; connected: number; failed: number }[]; stoppedBy: string };
  model: { portsPerPool: number; pools: number; ceiling: number | null; exhaustionS: number | null };
}

/** `load --churn` against a server that closes as soon as the client does (so the TIME_WAIT is the client's). */
function loadChurn(setup: string[], rate: number, seconds: number, extra: string[] = []): LoadChurnDoc {
  // It ends by itself after the run, and holds no pipe of ours (or spawnSync would wait for it).
  const code = `require('net').createServer((s) => { s.on('end', () => s.end()); s.on('error', () => {}); s.resume(); }).listen(7000, '127.0.0.1'); setTimeout(() => process.exit(0), ${(seconds + 5) * 1000})`;
  const server = `${process.execPath} -e "${code}" < /dev/null > /dev/null 2>&1 & for i in $(seq 200); do ss -Htln | grep -q ':7000 ' && break; sleep 0.05; done`;
  const r = cliInNetns([RANGE_100, ...setup, server], ['load', '--json', '--churn', String(rate), '--to', '127.0.0.1:7000', '--duration', String(seconds), ...extra]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as LoadChurnDoc;
}

describe('load --churn: the ceiling proved', () => {
  it('above it (tcp_tw_reuse 0, 40/s): the 100 ports run out after 100 ÷ 40 = 2.5 s, with EADDRNOTAVAIL, as the model says', { skip }, () => {
    const d = loadChurn(['sysctl -q -w net.ipv4.tcp_tw_reuse=0'], 40, 4);
    assert.equal(d.model.ceiling !== null && Math.round(d.model.ceiling * 100) / 100, 1.67);
    assert.equal(d.model.exhaustionS, 2.5);
    // No TIME_WAIT ends within 60 s: exactly the pool keeps one, then the kernel refuses. (Counted by the kernel:
    // once in a full suite run a connection the client saw established ended without one, and its port came
    // back at once: 101 connected; the cause is not established.)
    assert.equal(d.churn.timeWaitLeft, 100);
    assert.ok(d.churn.connected >= 100 && d.churn.connected <= 102, `${d.churn.connected} connected`);
    assert.equal(d.churn.firstFailure?.errno, 'EADDRNOTAVAIL');
    // Paced by the clock, so a busy machine shifts it little; generous either way.
    assert.ok(d.churn.firstFailure.atS > 1.5 && d.churn.firstFailure.atS < 3.5, `first failure at ${d.churn.firstFailure.atS} s`);
  });

  it('above it (tcp_tw_reuse 1, 300/s): out after 100 ÷ 300 s, then about the ceiling of 100/s', { skip }, () => {
    const d = loadChurn(['sysctl -q -w net.ipv4.tcp_tw_reuse=1'], 300, 3);
    assert.equal(d.model.ceiling, 100);
    assert.equal(Math.round((d.model.exhaustionS ?? 0) * 1000), 333);
    assert.equal(d.churn.firstFailure?.errno, 'EADDRNOTAVAIL');
    assert.ok(d.churn.firstFailure.atS < 1, `first failure at ${d.churn.firstFailure.atS} s`);
    // Each port comes back a second after its close: at most 100 a second, and the pool turns over more than once.
    assert.ok(d.churn.connected > 150 && d.churn.connected <= 100 * 3 + 100, `${d.churn.connected} connected in 3 s`);
  });

  it('below it (tcp_tw_reuse 1, 40/s): clean to the time bound', { skip }, () => {
    const d = loadChurn(['sysctl -q -w net.ipv4.tcp_tw_reuse=1'], 40, 4);
    assert.equal(d.model.exhaustionS, null);
    assert.equal(d.churn.firstFailure, null);
    assert.deepEqual(d.churn.failed, {});
    assert.ok(d.churn.connected >= 150, `${d.churn.connected} connected in 4 s at 40/s`);
    assert.equal(d.churn.stoppedBy, 'time');
  });

  it('bad input: --churn with probe, with --connections, or not a rate: exit 2, one line', { skip }, () => {
    for (const args of [['probe', '--churn', '10'], ['load', '--churn', '10', '--to', '127.0.0.1:7000', '--connections', '5'], ['load', '--churn', '0', '--to', '127.0.0.1:7000'], ['load', '--churn', 'x', '--to', '127.0.0.1:7000']]) {
      const r = cliInNetns([], args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });
});
