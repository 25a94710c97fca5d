/** The NAT part of the model and the lab's option checks, without namespaces. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { natCeiling, natConstraint, parsePortRange } from '../dist/model/nat.js';
import { nftScript, planSteps, LAB_DEFAULTS } from '../dist/lab/plan.js';
import { verdict } from '../dist/lab/run.js';

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
  assert.equal(spawnSync(process.execPath, [CLI, 'limits', '--nat', 'gcp'], { encoding: 'utf8' }).status, 2);
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
