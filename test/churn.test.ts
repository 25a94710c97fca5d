import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { readKernelFacts, type KernelFacts } from '../dist/kernel/facts.js';
import { known, unknown } from '../dist/kernel/fact.js';
import { churnCeiling, churnSettings, destinationCeilings, ratePerSecond, TIME_WAIT_SECONDS, type Churn, type ChurnInput } from '../dist/model/churn.js';
import { PortPressure, STATE, type DestinationPressure, type PortPressureReport } from '../dist/model/port-pressure.js';
import { ScanHistory } from '../dist/model/scan-history.js';
import type { PortScan } from '../dist/engine/port-scan.js';
import { portsJson, renderWatch, type WatchChurn } from '../dist/report/ports.js';
import { computeLimits } from '../dist/model/limits.js';
import { parseEndpoints } from '../dist/model/address.js';
import { churnSentence, limitsJson, renderLimits } from '../dist/report/limits.js';

const HOST_A = fileURLToPath(new URL('../test/fixtures/host-a/', import.meta.url));

/*
 * host-a: Linux 6.1 (no tcp_tw_reuse_delay: 1 s), tcp_tw_reuse 2, no
 * tcp_timestamps file (taken as on), tcp_max_tw_buckets 262,144.
 * The default range 32768-60999 is 28,232 ports: 28,232 ÷ 60 = 470.53.
 */
const A: KernelFacts = readKernelFacts({ root: HOST_A, interfaces: [] });
const P = 28_232;

/** host-a with some facts replaced: numbers become known sysctl values. */
function facts(over: { reuse?: number; delay?: number | null; timestamps?: number; buckets?: number; autobind?: number; release?: string } = {}): KernelFacts {
  const sysctl = (n: number) => known(n, 'test');
  return {
    ...A,
    ...(over.reuse !== undefined ? { tcpTwReuse: sysctl(over.reuse) } : {}),
    ...(over.delay !== undefined ? { tcpTwReuseDelay: over.delay === null ? unknown<number>('cannot read', 'test') : sysctl(over.delay) } : {}),
    ...(over.timestamps !== undefined ? { tcpTimestamps: sysctl(over.timestamps) } : {}),
    ...(over.buckets !== undefined ? { tcpMaxTwBuckets: sysctl(over.buckets) } : {}),
    ...(over.autobind !== undefined ? { ipAutobindReuse: sysctl(over.autobind) } : {}),
    ...(over.release !== undefined ? { kernelRelease: known(over.release, 'test') } : {}),
  };
}

const emptyReport: PortPressureReport = {
  destinations: [],
  listeners: [],
  sources: [],
  totals: { sockets: 0, byState: {}, clientSide: 0, serverSide: 0, listening: 0, destinations: 0, fullSockets: 0, descriptors: null, memory: null },
  pools: { ephemeral: 100, explicit: null },
};

function churn(over: Partial<ChurnInput> = {}): Churn {
  return churnCeiling({ facts: A, strategy: 'auto', portsPerPool: P, loopback: false, ...over });
}

describe('churnCeiling: connect() picks the port (auto, nopo)', () => {
  it('tcp_tw_reuse 2 toward a remote destination: the pool ÷ 60 s', () => {
    const c = churn();
    assert.equal(c.perPool, P / 60);
    assert.equal(c.timeWaitSeconds, TIME_WAIT_SECONDS);
    assert.equal(c.twReuse, 2);
    assert.equal(c.reuseDelayMs, 1000, 'before 6.13 the delay is a fixed 1 s');
    assert.match(c.detail, /^28,232 ports ÷ 60 s in TIME_WAIT/);
    assert.match(c.detail, /tcp_tw_reuse 2: loopback only/);
    assert.match(c.detail, /a loopback one gets about 28,232\/s/);
    assert.match(c.detail, /server closes first/);
    assert.match(c.remedy, /tcp_tw_reuse=1/);
    assert.equal(ratePerSecond(c.perPool as number), '470');
  });

  it('tcp_tw_reuse 2 toward loopback: the pool ÷ the reuse delay', () => {
    const c = churn({ loopback: true });
    assert.equal(c.perPool, P);
    assert.match(c.detail, /older than the 1 s that kernels before 6\.13 wait/);
    assert.match(c.detail, /tcp_tw_reuse 2 and the destination is loopback/);
  });

  it('tcp_tw_reuse 1 takes TIME_WAIT over toward any destination, after tcp_tw_reuse_delay (6.13+)', () => {
    const c = churn({ facts: facts({ reuse: 1, delay: 2500, release: '6.18.0' }) });
    assert.equal(c.perPool, P / 2.5);
    assert.equal(c.twReuse, 1);
    assert.equal(c.reuseDelayMs, 2500);
    assert.match(c.detail, /÷ 2\.5 s/);
    assert.match(c.detail, /tcp_tw_reuse_delay 2,500 ms/);
    assert.equal(churn({ facts: facts({ reuse: 1, delay: 200 }), strategy: 'nopo', portsPerPool: 100 }).perPool, 500);
  });

  it('an unreadable tcp_tw_reuse_delay on 6.13+ is taken as the default 1,000 ms, and reported unknown', () => {
    const c = churn({ facts: facts({ reuse: 1, delay: null, release: '6.13.2' }), portsPerPool: 100 });
    assert.equal(c.reuseDelayMs, null);
    assert.equal(c.perPool, 100);
    assert.match(c.detail, /tcp_tw_reuse_delay unknown \(cannot read\), taken as the default 1,000 ms/);
  });

  it('tcp_tw_reuse 0: the pool ÷ 60 s, loopback or not', () => {
    for (const loopback of [false, true]) {
      const c = churn({ facts: facts({ reuse: 0 }), portsPerPool: 100, loopback });
      assert.equal(c.perPool, 100 / 60);
      assert.equal(c.twReuse, 0);
      assert.match(c.detail, /tcp_tw_reuse 0: connect\(\) never takes a TIME_WAIT 4-tuple over/);
      assert.match(c.remedy, /tcp_tw_reuse=1 \(then about 100\/s/);
    }
  });

  it('without TCP timestamps no TIME_WAIT is taken over', () => {
    const c = churn({ facts: facts({ reuse: 1, timestamps: 0 }), portsPerPool: 100 });
    assert.equal(c.perPool, 100 / 60);
    assert.match(c.detail, /tcp_timestamps is 0/);
    assert.match(c.remedy, /tcp_timestamps=1/);
  });
});

describe('churnCeiling: the port bound before connect()', () => {
  it('bind(address, 0) never hands out a TIME_WAIT port: ÷ 60 s whatever tcp_tw_reuse says', () => {
    for (const reuse of [0, 1, 2]) {
      const c = churn({ facts: facts({ reuse }), strategy: 'bind', portsPerPool: 100, loopback: true });
      assert.equal(c.perPool, 100 / 60, `tcp_tw_reuse ${reuse}`);
      assert.match(c.detail, /bind\(address, 0\) never hands out a port a TIME_WAIT socket holds/);
      assert.match(c.remedy, /--strategy nopo/);
    }
  });

  it('bind(address, 0) with ip_autobind_reuse 1 and SO_REUSEADDR: no ceiling from TIME_WAIT; without SO_REUSEADDR: ÷ 60 s', () => {
    const c = churn({ facts: facts({ autobind: 1, reuse: 0 }), strategy: 'bind', portsPerPool: 100 });
    assert.equal(c.perPool, null);
    assert.match(c.detail, /^no churn ceiling from TIME_WAIT: .*ip_autobind_reuse 1/);
    assert.equal(churn({ facts: facts({ autobind: 1 }), strategy: 'bind', portsPerPool: 100, reuseAddr: false }).perPool, 100 / 60);
    assert.equal(churn({ facts: facts({ autobind: 1, timestamps: 0 }), strategy: 'bind', portsPerPool: 100 }).perPool, 100 / 60);
  });

  it('explicit ports take TIME_WAIT over with timestamps: no ceiling; without them ÷ 60 s', () => {
    const c = churn({ facts: facts({ reuse: 0 }), strategy: 'explicit', portsPerPool: 64_507 });
    assert.equal(c.perPool, null);
    assert.match(c.detail, /bind\(address, port\) with SO_REUSEADDR binds over a TIME_WAIT/);
    assert.equal(churn({ facts: facts({ reuse: 0, timestamps: 0 }), strategy: 'explicit', portsPerPool: 100 }).perPool, 100 / 60);
  });
});

describe('churnCeiling: tcp_max_tw_buckets and unknowns', () => {
  it('fewer buckets than the pool: no ceiling, and the detail says why', () => {
    const c = churn({ facts: facts({ reuse: 0, buckets: 50 }), portsPerPool: 100 });
    assert.equal(c.perPool, null);
    assert.match(c.detail, /tcp_max_tw_buckets 50 is smaller than the pool of 100 ports/);
    assert.equal(churn({ facts: facts({ reuse: 0, buckets: 100 }), portsPerPool: 100 }).perPool, 100 / 60);
  });

  it('more pools than the buckets hold: the ceiling stands for one pool, and the detail names how many pools fit', () => {
    const c = churn({ facts: facts({ reuse: 0, buckets: 250 }), portsPerPool: 100, pools: 4 });
    assert.equal(c.perPool, 100 / 60);
    assert.match(c.detail, /tcp_max_tw_buckets 250 holds fewer than 4 pools × 100 ports: with more than 2 pools churning at once/);
    assert.doesNotMatch(churn({ facts: facts({ reuse: 0, buckets: 400 }), portsPerPool: 100, pools: 4 }).detail, /holds fewer/);
  });

  it('an unknown pool gives no number; an unknown tcp_tw_reuse is taken as the default 2 and reported null', () => {
    const none = churn({ portsPerPool: null });
    assert.equal(none.perPool, null);
    assert.match(none.detail, /^unknown: the ports per pool are unknown/);
    const c = churn({ facts: { ...A, tcpTwReuse: unknown('no such file', 'test') }, portsPerPool: 100, loopback: true });
    assert.equal(c.twReuse, null);
    assert.equal(c.perPool, 100);
    assert.match(c.detail, /tcp_tw_reuse unknown: no such file; taken as the default 2/);
  });
});

describe('churn in the limits report', () => {
  const l = computeLimits({ facts: A, strategy: 'auto', sources: [], destinations: [parseEndpoints('10.0.0.5:5432')], localAddresses: [] });

  it('the human line reads as the README says', () => {
    const c = churn({ portsPerPool: l.portsPerDestination });
    assert.equal(l.portsPerDestination, 28_227, 'host-a: the range minus 4 reserved and 1 listened on');
    assert.match(churnSentence(c, 'auto'), /^Churn: at most 470 new connections per second per \(source, destination\) when this host closes first \(28,227 ports ÷ 60 s in TIME_WAIT/);
    assert.match(churnSentence(churn({ strategy: 'bind', portsPerPool: 100, facts: facts({ reuse: 0 }) }), 'bind'), /per source address when/);
    assert.match(churnSentence(churn({ strategy: 'explicit' }), 'explicit'), /^Churn: no churn ceiling from TIME_WAIT/);
    const text = renderLimits(l, '10.0.0.5:5432', c);
    assert.match(text, /^Churn: at most 470 /m);
    assert.match(text, /^To churn faster: sysctl -w net\.ipv4\.tcp_tw_reuse=1/m);
    assert.doesNotMatch(renderLimits(l, '10.0.0.5:5432'), /Churn/);
  });

  it('--json: a top-level churn object, perPool to two decimals', () => {
    const doc = limitsJson(l, A, { sources: [], destinations: ['10.0.0.5:5432'] }, churn({ facts: facts({ reuse: 0 }), portsPerPool: 100 })) as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc.churn as object), ['perPool', 'timeWaitSeconds', 'twReuse', 'reuseDelayMs', 'detail', 'remedy']);
    assert.equal((doc.churn as Churn).perPool, 1.67);
    assert.equal((doc.churn as Churn).timeWaitSeconds, 60);
    assert.equal('churn' in (limitsJson(l, A, { sources: [], destinations: [] }) as object), false);
  });
});

describe('ScanHistory: new connections between two scans', () => {
  const RANGE = { lo: 40000, hi: 40099 };
  const pressureFacts = {
    portRange: known(RANGE, 't'),
    reservedPorts: known('', 't'),
    unprivilegedPortStart: known(1024, 't'),
    fileNr: known({ allocated: 10, free: 0, max: 1000 }, 't'),
    fileMax: known(1000, 't'),
    memAvailable: known(2 ** 30, 't'),
  };
  /** A scan of client sockets toward 127.0.0.1:7000 (and 10.0.0.1:443 for `other`): [local port, TIME_WAIT?]. */
  function scan(ports: [number, boolean][], other: number[] = []) {
    const p = new PortPressure({ range: RANGE, localPorts: true });
    for (const [port, tw] of ports) p.add({ family: 4, localAddress: '127.0.0.1', localPort: port, remoteAddress: '127.0.0.1', remotePort: 7000, state: tw ? STATE.TIME_WAIT : STATE.ESTABLISHED, rxQueue: 0 });
    for (const port of other) p.add({ family: 4, localAddress: '10.0.0.9', localPort: port, remoteAddress: '10.0.0.1', remotePort: 443, state: STATE.ESTABLISHED, rxQueue: 0 });
    return p.result(pressureFacts).destinations;
  }
  const A7000 = '127.0.0.1|127.0.0.1|7000';
  const B443 = '10.0.0.9|10.0.0.1|443';

  it('keeps every local port, live and TIME_WAIT apart, past the array growth', () => {
    const ports: [number, boolean][] = Array.from({ length: 37 }, (_, i) => [40000 + i, i % 3 === 0]);
    const [d] = scan(ports);
    assert.deepEqual([...d.localPorts.live].sort(), ports.filter(([, tw]) => !tw).map(([p]) => p));
    assert.deepEqual([...d.localPorts.timeWait].sort(), ports.filter(([, tw]) => tw).map(([p]) => p));
  });

  it('first scan: nothing; then ports not seen before, per second, and a TIME_WAIT taken over', () => {
    const h = new ScanHistory();
    const first = h.update(scan([[40000, false], [40001, true], [40002, true]], [40050]), 10_000);
    assert.equal(first.newPerSecond.size, 0);
    assert.equal(first.trend.size, 0);
    // Half a second later: 40000 closed (TIME_WAIT now: the same connection), 40001 taken over (live again: new),
    // 40002 still TIME_WAIT, 40003 and 40004 new; the other destination gained 40051.
    const next = h.update(scan([[40000, true], [40001, false], [40002, true], [40003, false], [40004, true]], [40050, 40051]), 10_500);
    assert.equal(next.newPerSecond.get(A7000), 3 / 0.5);
    assert.equal(next.trend.get(A7000), 2 / 0.5);
    assert.equal(next.newPerSecond.get(B443), 1 / 0.5);
    // A destination absent from the previous scan: all its sockets are new; one that is gone has no entry.
    const third = h.update(scan([], [40051, 40060]), 11_500);
    assert.equal(third.newPerSecond.get(B443), 1);
    assert.equal(third.newPerSecond.has(A7000), false);
    assert.equal(h.update(scan([[40000, false]]), 11_500).newPerSecond.size, 0, 'no time passed: no rate');
  });

  it('the watch view: NEW/S and CEILING/S columns, the JSON fields, and the line past the ceiling', () => {
    const h = new ScanHistory();
    const at = 1_000_000;
    const facts0 = facts({ reuse: 0 });
    const churnOf = (destinations: readonly DestinationPressure[], t: number): WatchChurn => ({
      strategy: null,
      newPerSecond: h.update(destinations, t).newPerSecond,
      ceilingOf: destinationCeilings(facts0, null, destinations.length),
      settings: churnSettings(facts0),
    });
    const before = scan([[40000, true]]);
    const c0 = churnOf(before, at);
    const mk = (destinations: readonly DestinationPressure[], t: number): PortScan => ({ report: { ...emptyReport, destinations }, scanMs: 1, source: 'proc', rows: destinations.length, errors: [], at: t });
    const firstView = renderWatch(mk(before, at), { top: 5, warn: null, rates: new Map(), churn: c0, intervalS: 1 });
    assert.match(firstView, /NEW\/S\s+CEILING\/S/);
    assert.match(firstView, /^127\.0\.0\.1\s+127\.0\.0\.1:7000\s.*\s-\s+1\.67\s+-$/m);
    const after = scan(Array.from({ length: 11 }, (_, i) => [40000 + i, true] as [number, boolean]));
    const c1 = churnOf(after, at + 1000);
    const view = renderWatch(mk(after, at + 1000), { top: 5, warn: null, rates: new Map(), churn: c1, intervalS: 1 });
    assert.match(view, /^127\.0\.0\.1:7000 from 127\.0\.0\.1 opens 10 new connections\/s, past its churn ceiling of 1\.67\/s/m);
    const doc = portsJson(mk(after, at + 1000), { top: null, warn: null, rates: new Map(), churn: c1 }) as { destinations: Record<string, unknown>[]; churn: object };
    assert.equal(doc.destinations[0].newPerSecond, 10);
    assert.equal(doc.destinations[0].ceilingPerSecond, 1.67);
    assert.deepEqual(doc.churn, { strategy: 'auto', timeWaitSeconds: 60, twReuse: 0, reuseDelayMs: 1000 });
  });
});
