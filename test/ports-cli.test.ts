/** `fourtuple ports`: option parsing, bad input (exit 2), and the renderers on a fixture table. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../dist/errors.js';
import { parsePortsArgs, statesOption } from '../dist/cli/ports.js';
import { scanPorts } from '../dist/engine/port-scan.js';
import { destinationKey, STATE } from '../dist/model/port-pressure.js';
import { duration, percent, portsJson, portsSentence, renderPorts, renderWatch } from '../dist/report/ports.js';

const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const HOST_A = fileURLToPath(new URL('../test/fixtures/host-a/', import.meta.url));

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('parsePortsArgs', () => {
  it('defaults: one scan, no filter, no threshold', () => {
    const a = parsePortsArgs([]);
    assert.deepEqual({ ...a, to: a.to.length }, { help: false, json: false, top: null, states: undefined, to: 0, warn: null, mode: { kind: 'once' }, durationS: null, strategy: null, byCgroup: false, pids: false, reconcileS: 60, bindFailures: false });
  });

  it('--by cgroup and --pids: who holds the ports; --pids implies --by cgroup and is refused with --prometheus', () => {
    assert.equal(parsePortsArgs(['--by', 'cgroup']).byCgroup, true);
    assert.deepEqual([parsePortsArgs(['--pids']).byCgroup, parsePortsArgs(['--pids']).pids], [true, true]);
    assert.equal(parsePortsArgs(['--prometheus', '9464', '--by', 'cgroup']).byCgroup, true);
    assert.throws(() => parsePortsArgs(['--by', 'pod']), (e: unknown) => e instanceof InvalidArgumentError && e.message === "invalid --by 'pod': expected cgroup");
    assert.equal(parsePortsArgs(['--prometheus', '9464', '--reconcile', '0']).reconcileS, 0);
    assert.equal(parsePortsArgs(['--watch', '--bind-failures']).bindFailures, true);
    assert.throws(() => parsePortsArgs(['--bind-failures']), (e: unknown) => e instanceof InvalidArgumentError && /--bind-failures applies to --watch and --prometheus/.test(e.message));
    assert.throws(() => parsePortsArgs(['--reconcile', '5']), (e: unknown) => e instanceof InvalidArgumentError && e.message === '--reconcile 5 applies to --prometheus only');
    assert.throws(() => parsePortsArgs(['--prometheus', '9464', '--pids']), (e: unknown) => e instanceof InvalidArgumentError && /--pids does not apply to --prometheus/.test(e.message));
  });

  it('--strategy: with --watch only, for its churn ceiling', () => {
    assert.equal(parsePortsArgs(['--watch', '--strategy', 'bind']).strategy, 'bind');
    assert.equal(parsePortsArgs(['--watch']).strategy, null);
    assert.throws(() => parsePortsArgs(['--strategy', 'bind']), (e: unknown) => e instanceof InvalidArgumentError && /--strategy bind applies to --watch only/.test(e.message));
    assert.throws(() => parsePortsArgs(['--watch', '--strategy', 'nope']), (e: unknown) => e instanceof InvalidArgumentError && /'nope'/.test(e.message));
  });

  it('--watch takes an optional interval', () => {
    assert.deepEqual(parsePortsArgs(['--watch']).mode, { kind: 'watch', intervalS: 2 });
    assert.deepEqual(parsePortsArgs(['--watch', '--json']).mode, { kind: 'watch', intervalS: 2 });
    assert.equal(parsePortsArgs(['--watch', '--json']).json, true);
    assert.deepEqual(parsePortsArgs(['--watch', '0.5', '--duration', '3']).mode, { kind: 'watch', intervalS: 0.5 });
    assert.equal(parsePortsArgs(['--watch=5', '--duration', '3']).durationS, 3);
  });

  it('--prometheus: ADDR:PORT, [v6]:PORT, or a port on loopback', () => {
    assert.deepEqual(parsePortsArgs(['--prometheus', '127.0.0.1:9464']).mode, { kind: 'prometheus', host: '127.0.0.1', port: 9464 });
    assert.deepEqual(parsePortsArgs(['--prometheus', '9464']).mode, { kind: 'prometheus', host: '127.0.0.1', port: 9464 });
    assert.deepEqual(parsePortsArgs(['--prometheus', '[::1]:0']).mode, { kind: 'prometheus', host: '::1', port: 0 });
    assert.deepEqual(parsePortsArgs(['--prometheus', '0.0.0.0:9464', '--top', '10']).mode, { kind: 'prometheus', host: '0.0.0.0', port: 9464 });
  });

  it('--state: names, aliases, comma lists; SYN_RECV includes request sockets', () => {
    assert.deepEqual([...(statesOption(['estab,time-wait']) ?? [])], [STATE.ESTABLISHED, STATE.TIME_WAIT]);
    assert.deepEqual([...(statesOption(['SYN_RECV', 'listen']) ?? [])], [STATE.SYN_RECV, STATE.NEW_SYN_RECV, STATE.LISTEN]);
  });

  it('--to, --top and --warn', () => {
    const a = parsePortsArgs(['--to', '127.0.0.1:7000-7001', '--to', '[::1]:80', '--top', '5', '--warn', '80']);
    assert.equal(a.to.length, 2);
    assert.equal(a.top, 5);
    assert.equal(a.warn, 80);
  });

  const bad: [string[], RegExp][] = [
    [['--top', '0'], /invalid --top '0'/],
    [['--top', 'x'], /invalid --top 'x'/],
    [['--warn', '101'], /invalid --warn '101'/],
    [['--warn', '-1'], /--warn/],
    [['--state', 'OPEN'], /unknown state 'OPEN' in --state/],
    [['--state', 'NEW_SYN_RECV'], /unknown state 'NEW_SYN_RECV'/],
    [['--to', '127.0.0.1'], /invalid --to '127\.0\.0\.1'/],
    [['--watch', '0'], /invalid --watch '0'/],
    [['--watch', '1', '--duration', 'soon'], /unexpected argument 'soon'|invalid --duration 'soon'/],
    [['--duration', '5'], /--duration 5 applies to --watch and --prometheus only/],
    [['--prometheus', 'localhost:9464'], /invalid --prometheus address 'localhost'/],
    [['--prometheus', '127.0.0.1:70000'], /invalid --prometheus '127\.0\.0\.1:70000'/],
    [['--prometheus', '9464', '--watch'], /cannot be combined/],
    [['--prometheus', '9464', '--json'], /--json does not apply to --prometheus/],
    [['--prometheus', '9464', '--warn', '50'], /--warn does not apply to --prometheus/],
    [['--bogus'], /unknown option '--bogus' for 'ports'/],
    [['extra'], /unexpected argument 'extra' for 'ports'/],
  ];
  for (const [argv, message] of bad) {
    it(`rejects ${argv.join(' ')}`, () => {
      assert.throws(() => parsePortsArgs(argv), (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message));
    });
  }
});

describe('the binary', () => {
  it('bad input exits 2 with one line naming the value, before scanning anything', () => {
    for (const argv of [['--top', '0'], ['--state', 'nope'], ['--prometheus', 'x:y'], ['--warn', 'lots']]) {
      const r = run('ports', ...argv);
      assert.equal(r.status, 2, `${argv.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
      assert.ok(r.stderr.includes(argv[1]), r.stderr);
    }
  });

  it('--help exits 0 and lists every option; the command is in the main usage', () => {
    const r = run('ports', '--help');
    assert.equal(r.status, 0);
    for (const o of ['--top', '--state', '--to', '--json', '--warn', '--watch', '--prometheus', '--duration']) assert.ok(r.stdout.includes(o), o);
    assert.match(run('--help').stdout, /^ {2}ports\s/m);
  });

  it('--prometheus on an address it cannot bind exits 2', () => {
    // 192.0.2.1 (TEST-NET-1) is not an address of this host: EADDRNOTAVAIL.
    const r = run('ports', '--prometheus', '192.0.2.1:9464', '--duration', '1');
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^fourtuple: cannot serve --prometheus 192\.0\.2\.1:9464: EADDRNOTAVAIL\n$/);
  });
});

describe('renderers on the host-a fixture (/proc path)', () => {
  const scan = scanPorts({ root: HOST_A });

  it('reads the fixture through /proc and counts its destinations', () => {
    assert.equal(scan.source, 'proc');
    const d = scan.report.destinations.find((x) => x.destination === '127.0.0.1' && x.port === 7000);
    assert.ok(d);
    // 28,232 in the range minus reserved 33001-33004 minus the listener on 33000.
    assert.deepEqual({ used: d.used, timeWait: d.timeWait, capacity: d.capacity }, { used: 2, timeWait: 1, capacity: 28_227 });
    const mapped = scan.report.destinations.find((x) => x.port === 7002);
    assert.deepEqual([mapped?.source, mapped?.destination, mapped?.used], ['127.0.0.1', '127.0.0.1', 1], 'v4-mapped addresses are shown as IPv4');
    const l7000 = scan.report.listeners.find((l) => l.port === 7000);
    assert.deepEqual([l7000?.acceptQueue, l7000?.accepted], [3, 0]);
  });

  it('human report: sentence, table, listeners, totals', () => {
    const text = renderPorts(scan, { top: 20, warn: null });
    const lines = text.split('\n');
    assert.match(lines[0], /^No destination is under pressure \(all use less than 50% of their ports\); the busiest is 127\.0\.0\.1:7000 from 127\.0\.0\.1: 2 of 28,227 ports used \(99\.9% headroom\)\.$/);
    assert.match(text, /^SOURCE\s+DESTINATION\s+USED\s+CAPACITY\s+HEADROOM\s+ESTAB\s+TIME_WAIT\s+OTHER$/m);
    assert.match(text, /^::1\s+\[::1\]:7001\s+1\s+28,227\s+99\.9%\s+0\s+1\s+-$/m);
    assert.match(text, /^Listeners/m);
    assert.match(text, /^Sockets: \d+ \(/m);
    assert.match(text, /^Scanned \d+ rows \(\/proc\/net\/tcp\) in [\d.]+ ms\.$/m);
    assert.doesNotMatch(text, /\x1b/);
  });

  it('--top limits rows and says how many are left; --warn highlights with ANSI on a terminal', () => {
    const text = renderPorts(scan, { top: 1, warn: 0.001, ansi: true });
    assert.match(text, /\.\.\. and \d+ more destination\(s\) \(--top 1\)/);
    assert.match(text, /\x1b\[7;31m127\.0\.0\.1\s+127\.0\.0\.1:7000 .*\x1b\[0m/);
    assert.match(text.split('\n')[0], /is the closest to running out/);
  });

  it('--json document', () => {
    const j = portsJson(scan, { top: null, warn: 50 }) as { destinations: { source: string; destination: string; port: number; used: number; capacity: number; timeWait: number; headroom: number; states: object }[]; warn: object; scanMs: number; listeners: unknown[]; totals: { sockets: number } };
    const d = j.destinations.find((x) => x.port === 7000);
    assert.deepEqual(
      { source: d?.source, destination: d?.destination, used: d?.used, capacity: d?.capacity, timeWait: d?.timeWait, headroom: d?.headroom, states: d?.states },
      { source: '127.0.0.1', destination: '127.0.0.1', used: 2, capacity: 28_227, timeWait: 1, headroom: 99.99, states: { ESTABLISHED: 1, TIME_WAIT: 1 } },
    );
    assert.deepEqual(j.warn, { percent: 50, over: 0 });
    assert.equal(typeof j.scanMs, 'number');
    assert.ok(j.listeners.length >= 5);
    assert.equal(j.totals.sockets, 11);
  });

  it('watch view: trend column and time until exhaustion at the recent rate', () => {
    const top = scan.report.destinations[0];
    const rates = new Map([[destinationKey(top), 1000]]);
    const text = renderWatch(scan, { top: 20, warn: null, rates, intervalS: 2 });
    assert.match(text.split('\n')[0], /; at \+1,000\/s it runs out in 28 s\.$/);
    assert.match(text, /TREND/);
    assert.match(text, /every 2 s; Ctrl-C to stop\.$/);
    assert.match(portsSentence(scan.report, { warn: null, rates: new Map() }), /; trend after the next scan\.$/);
    assert.match(portsSentence(scan.report, { warn: null, rates: new Map([[destinationKey(top), -3]]) }), /; not growing\.$/);
  });
});

describe('formatting', () => {
  it('percent never rounds headroom up', () => {
    assert.deepEqual([percent(40), percent(99.96), percent(50.41), percent(0.04), percent(null)], ['40%', '99.9%', '50.4%', '0%', '-']);
  });
  it('duration in two units', () => {
    assert.deepEqual([duration(45), duration(200), duration(7500), duration(Infinity)], ['45 s', '3 min 20 s', '2 h 5 min', 'never']);
  });
});
