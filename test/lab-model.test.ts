/** The NAT part of the model and the lab's option checks, without namespaces. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { natCeiling, natConstraint, parsePortRange } from '../dist/model/nat.js';
import { nftScript, planSteps, LAB_DEFAULTS } from '../dist/lab/plan.js';
import { verdict } from '../dist/lab/run.js';
import { conntrackByDestination, ConntrackPeaks } from '../dist/lab/conntrack.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

test('the NAT pool is addresses × ports per destination', () => {
  assert.equal(natCeiling({ addresses: 2, portsPerAddress: 200, source: 'given' }, 1), 400);
  assert.equal(natCeiling({ addresses: 1, portsPerAddress: 200, source: 'given' }, 3), 600);
  assert.equal(natConstraint({ addresses: 1, portsPerAddress: 64512, source: 'given' }, 1).id, 'nat-pool');
  assert.deepEqual(parsePortRange('20000-20199', '--x'), { lo: 20000, hi: 20199 });
  assert.throws(() => parsePortRange('300-100', '--x'), /invalid --x '300-100'/);
});

test('limits --nat-addresses/--nat-ports adds nat-pool and binds on it; --nat presets', () => {
  const r = spawnSync(process.execPath, [CLI, 'limits', '--json', '--to', '10.1.2.3:80', '--nat-addresses', '2', '--nat-ports', '20000-20199'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { constraints: { id: string; limit: number }[] };
  assert.equal(j.constraints.find((c) => c.id === 'nat-pool')?.limit, 400);
  const aws = JSON.parse(spawnSync(process.execPath, [CLI, 'limits', '--json', '--nat', 'aws'], { encoding: 'utf8' }).stdout) as { constraints: { id: string; limit: number }[] };
  assert.equal(aws.constraints.find((c) => c.id === 'nat-pool')?.limit, 55_000);
  const gcp = JSON.parse(spawnSync(process.execPath, [CLI, 'limits', '--json', '--nat', 'gcp', '--nat-addresses', '2'], { encoding: 'utf8' }).stdout) as { constraints: { id: string; limit: number; detail: string }[] };
  const pool = gcp.constraints.find((c) => c.id === 'nat-pool');
  assert.equal(pool?.limit, 2 * 64_512);
  assert.match(pool?.detail ?? '', /cloud\.google\.com\/nat\/docs\/ports-and-addresses/);
  const bad = spawnSync(process.execPath, [CLI, 'limits', '--nat', 'oracle'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr.trim(), /^fourtuple: unknown --nat 'oracle': expected one of aws, azure, gcp$/);
});

test('the plan: only ft- names, one snat rule with the address range and ports', () => {
  const spec = { ...LAB_DEFAULTS, nat: true, gatewayAddresses: 2, gatewayPorts: { lo: 20000, hi: 20199 } };
  assert.match(nftScript(spec), /snat ip to 10\.78\.0\.1-10\.78\.0\.2:20000-20199/);
  for (const s of planSteps(spec)) {
    const i = s.argv.indexOf('add');
    if (s.argv[1] === 'netns' && s.argv[2] === 'add') assert.match(s.argv[3], /^ft-/);
    if (s.argv[1] === 'link' && i === 2) assert.match(s.argv[3], /^ft-/);
  }
});

test('verdict: NAT pool first, then client ports, then the server', () => {
  const base = { targetTotal: 2000, conntrack: { peak: 200, max: 262144 }, clientLimitIds: [null, null] };
  assert.equal(verdict({ ...base, held: 200, natCeiling: 200, errors: { ETIMEDOUT: 5 } }).id, 'nat-pool');
  assert.equal(verdict({ ...base, held: 400, natCeiling: null, errors: { EADDRNOTAVAIL: 5 }, clientLimitIds: ['ephemeral-ports', null] }).id, 'ephemeral-ports');
  assert.equal(verdict({ ...base, held: 10, natCeiling: null, errors: { ETIMEDOUT: 5 } }).id, 'backlog');
  assert.equal(verdict({ ...base, held: 262144, natCeiling: 1e6, conntrack: { peak: 262144, max: 262144 }, errors: {} }).id, 'conntrack');
});

test('verdict: clients counting more than the NAT pool maps at once are told why', () => {
  const base = { targetTotal: 2000, conntrack: { peak: 400, max: 262144 }, clientLimitIds: [null, null], natCeiling: 400, errors: { ETIMEDOUT: 971 } };
  const over = verdict({ ...base, held: 628 });
  assert.equal(over.id, 'nat-pool');
  assert.match(over.words, /exhausted \(400 of 400\)/);
  assert.match(over.words, /the clients count 628, more than the 400 the pool maps at once/);
  assert.doesNotMatch(verdict({ ...base, held: 400 }).words, /more than/);
});

test('verdict: a NAT pool 90% or more used when the time bound came, with timeouts, is the NAT pool', () => {
  const base = { targetTotal: 2000, conntrack: { peak: 760, max: 262144 }, clientLimitIds: [null, null], natCeiling: 800, natPerDestination: 400 };
  const near = verdict({ ...base, held: 760, errors: { ETIMEDOUT: 342 }, natUse: [{ destination: '10.78.0.100:7000', natted: 380 }] });
  assert.equal(near.id, 'nat-pool');
  assert.equal(near.where, 'gateway');
  assert.match(near.words, /10\.78\.0\.100:7000 was 95% used \(380 of 400\)/);
  // Half full and timing out: not the pool (the server side, here).
  assert.equal(verdict({ ...base, held: 400, errors: { ETIMEDOUT: 10 }, natUse: [{ destination: '10.78.0.100:7000', natted: 200 }] }).id, 'backlog');
  // Nearly full but no timeouts: the clients' own bound.
  assert.equal(verdict({ ...base, held: 760, errors: { EADDRNOTAVAIL: 3 }, clientLimitIds: ['ephemeral-ports', null], natUse: [{ destination: '10.78.0.100:7000', natted: 380 }] }).id, 'ephemeral-ports');
});

test('conntrack table by destination: entries, the source-NATed ones and their public addresses', () => {
  const table = [
    'ipv4     2 tcp      6 117 ESTABLISHED src=10.77.1.10 dst=10.78.0.100 sport=40001 dport=7000 src=10.78.0.100 dst=10.78.0.1 sport=7000 dport=20013 [ASSURED] mark=0 zone=0 use=2',
    'ipv4     2 tcp      6 117 ESTABLISHED src=10.77.2.11 dst=10.78.0.100 sport=40001 dport=7000 src=10.78.0.100 dst=10.78.0.2 sport=7000 dport=20013 [ASSURED] mark=0 zone=0 use=2',
    'ipv4     2 tcp      6 110 SYN_SENT src=10.77.1.12 dst=10.78.0.100 sport=40002 dport=7001 src=10.78.0.100 dst=10.78.0.1 sport=7001 dport=20100 mark=0 zone=0 use=2',
    // Not NATed: the reply goes back to the original source.
    'ipv4     2 tcp      6 117 ESTABLISHED src=10.77.1.10 dst=10.78.0.100 sport=40003 dport=7000 src=10.78.0.100 dst=10.77.1.10 sport=7000 dport=40003 [ASSURED] mark=0 zone=0 use=2',
    'ipv4     2 udp      17 20 src=10.77.1.10 dst=10.78.0.100 sport=5000 dport=53 src=10.78.0.100 dst=10.78.0.1 sport=53 dport=5000 mark=0 zone=0 use=2',
    'ipv6     10 tcp      6 117 ESTABLISHED src=fd00::2 dst=fd00::100 sport=40001 dport=443 src=fd00::100 dst=fd00::1 sport=443 dport=20001 [ASSURED] mark=0 zone=0 use=2',
    '',
  ].join('\n');
  assert.deepEqual(conntrackByDestination(table), [
    { destination: '10.78.0.100:7000', entries: 3, natted: 2, addresses: ['10.78.0.1', '10.78.0.2'] },
    { destination: '10.78.0.100:7001', entries: 1, natted: 1, addresses: ['10.78.0.1'] },
    { destination: '[fd00::100]:443', entries: 1, natted: 1, addresses: ['fd00::1'] },
  ]);
  const peaks = new ConntrackPeaks();
  peaks.add([{ destination: 'a:1', entries: 5, natted: 5, addresses: ['x'] }]);
  peaks.add([{ destination: 'a:1', entries: 3, natted: 3, addresses: ['x'] }, { destination: 'b:2', entries: 1, natted: 0, addresses: [] }]);
  assert.deepEqual(peaks.peaks.map((p) => [p.destination, p.natted]), [['a:1', 5], ['b:2', 0]]);
});

test('verdict: a target met is the verdict, whatever failed on the way', () => {
  const v = verdict({ held: 400, targetTotal: 400, natCeiling: null, conntrack: { peak: 400, max: 262144 }, errors: { EADDRNOTAVAIL: 3 }, clientLimitIds: [null, null] });
  assert.equal(v.id, null);
  assert.match(v.words, /reached its target/);
  // Below the target, the same errors are the verdict.
  assert.equal(verdict({ held: 390, targetTotal: 400, natCeiling: null, conntrack: { peak: 390, max: 262144 }, errors: { EADDRNOTAVAIL: 3 }, clientLimitIds: [null, null] }).id, 'ephemeral-ports');
});

test('limits --hosts K: K hosts of this shape each bring their own pools; a NAT in front is one for all', () => {
  const run = (...args: string[]): { status: number | null; doc: { host: { connections: number }; portsPerDestination: number; fleet?: { hosts: number; connections: number; binding: string } } | null; stderr: string } => {
    const r = spawnSync(process.execPath, [CLI, 'limits', '--json', '--to', '10.0.0.5:443', ...args], { encoding: 'utf8' });
    return { status: r.status, doc: r.status === 0 ? JSON.parse(r.stdout) : null, stderr: r.stderr };
  };
  const one = run();
  assert.equal(one.status, 0, one.stderr);
  const pool = one.doc?.portsPerDestination as number;
  // Three hosts: three times one host's pool toward the destination.
  const three = run('--hosts', '3');
  assert.deepEqual([three.doc?.fleet?.hosts, three.doc?.fleet?.connections, three.doc?.fleet?.binding], [3, 3 * pool, 'ephemeral-ports']);
  assert.equal(three.doc?.host.connections, one.doc?.host.connections, 'the per-host answer is unchanged');
  // Behind a gateway with 2 addresses × 1,000 ports: 2,000 toward the destination, whatever the number of hosts.
  const natted = run('--hosts', '5', '--nat-addresses', '2', '--nat-ports', '20000-20999');
  assert.deepEqual([natted.doc?.fleet?.connections, natted.doc?.fleet?.binding], [2000, 'nat-pool']);
  // Toward this host, more client hosts is another question: refused.
  const local = spawnSync(process.execPath, [CLI, 'limits', '--to', '127.0.0.1:7000', '--hosts', '2'], { encoding: 'utf8' });
  assert.equal(local.status, 2);
  assert.match(local.stderr, /--hosts 2 models client hosts toward remote destinations/);
});
