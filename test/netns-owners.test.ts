/**
 * Who holds the ports, against the real kernel: two plain Node clients in
 * two child cgroups of the cgroup v2 tree (support/owners-scenario.ts) hold
 * connections to one destination of a namespace with a 100-port range;
 * `ports --by cgroup`, `ports --pids` and the exporter must attribute each
 * one's sockets exactly, and TIME_WAIT sockets to no one.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsUnavailable, runInNetns } from './support/netns.js';
import { parseExposition } from './support/exposition.js';
import type { OwnersScenarioResult } from './support/owners-scenario.js';
import { cgroup2Mount, describeCgroup, cgroupLabel } from '../dist/kernel/owners.js';
import { iteratorMask, tcpIterator } from '../dist/kernel/bpf-iter.js';
import { ALL_CONNECTION_STATES } from '../dist/kernel/sock-diag.js';

const root = cgroup2Mount();
function unavailable(): string | undefined {
  const netns = netnsUnavailable();
  if (netns) return netns;
  if (root === null) return 'no cgroup v2 tree is mounted';
  const it = tcpIterator(iteratorMask(ALL_CONNECTION_STATES), false, 'cgroup+inode');
  if ('reason' in it) return `no BPF iterator with owners here: ${it.reason}`;
  return undefined;
}
const skip = unavailable();

interface Holder {
  id: number;
  path: string | null;
  sockets: number;
}
interface Dest {
  destination: string;
  port: number;
  used: number;
  timeWait: number;
  holders: Holder[];
  processes?: { pid: number; comm: string; sockets: number }[];
}

function dest7000(json: string): Dest {
  const j = JSON.parse(json) as { destinations: Dest[] };
  const d = j.destinations.find((x) => x.destination === '127.0.0.1' && x.port === 7000);
  assert.ok(d, json);
  return d;
}

describe('ports --by cgroup and --pids', { skip }, () => {
  let r: OwnersScenarioResult;
  before(() => {
    r = runInNetns<OwnersScenarioResult>('owners-scenario', { cgroupRoot: root }, 120_000);
  });

  test('each cgroup holds exactly its client\'s sockets; TIME_WAIT belongs to no one', () => {
    const d = dest7000(r.byCgroup);
    assert.equal(d.used, 50);
    assert.equal(d.timeWait, 5);
    assert.deepEqual(
      d.holders.map((h) => [h.path, h.sockets]),
      [
        [r.a.path, 25],
        [r.b.path, 20],
        [null, 5],
      ],
    );
    assert.equal(d.holders.at(-1)?.id, 0);
  });

  test('--pids names the two clients with their counts', () => {
    const d = dest7000(r.pids);
    assert.deepEqual(
      d.processes?.map((p) => [p.pid, p.comm, p.sockets]),
      [
        [r.a.pid, 'node', 25],
        [r.b.pid, 'node', 20],
      ],
    );
    const j = JSON.parse(r.pids) as { owners: { known: boolean; pids: { ms: number; processes: number; descriptors: number } } };
    assert.equal(j.owners.known, true);
    assert.ok(j.owners.pids.descriptors >= 45, JSON.stringify(j.owners));
  });

  test('the text report: a row per cgroup, the processes, what reading /proc cost', () => {
    assert.match(r.text, /^Who holds the ports/m);
    assert.match(r.text, new RegExp(`127\\.0\\.0\\.1:7000\\s+${r.a.path.replace(/[/-]/g, '.')}\\s+-\\s+25\\s+50%`));
    assert.match(r.text, new RegExp(`^\\s+${r.b.path.replace(/[/-]/g, '.')}\\s+-\\s+20\\s+40%`, 'm'));
    assert.match(r.text, /\(no owner: TIME_WAIT\)\s+-\s+5\s+10%/);
    assert.match(r.text, new RegExp(`127\\.0\\.0\\.1 → 127\\.0\\.0\\.1:7000: node\\[${r.a.pid}\\] 25, node\\[${r.b.pid}\\] 20`));
    assert.match(r.text, /^Processes \([\d,]+ descriptors of [\d,]+ processes read in [\d.]+ ms\):/m);
  });

  test('the exporter\'s cgroup series agree', () => {
    const f = parseExposition(r.scrape).get('fourtuple_destination_cgroup_sockets');
    assert.ok(f, r.scrape);
    const of = (cgroup: string): number | undefined => f.samples.find((s) => s.labels.port === '7000' && s.labels.cgroup === cgroup)?.value;
    assert.equal(of(r.a.path), 25);
    assert.equal(of(r.b.path), 20);
    assert.equal(of('none'), 5);
    assert.equal(f.samples.filter((s) => s.labels.port === '7000').length, 3);
  });

  test('as nobody: the table, and why the owners are not known', () => {
    assert.equal(r.nobody.status, 0, r.nobody.stderr);
    const j = JSON.parse(r.nobody.stdout) as { owners: { known: boolean; reason: string }; destinations: Dest[] };
    assert.equal(j.owners.known, false);
    assert.match(j.owners.reason, /BPF iterator only \(root, with BTF\); this scan used netlink/);
    assert.equal(dest7000(r.nobody.stdout).used, 50);
    assert.equal(dest7000(r.nobody.stdout).holders, undefined);
  });
});

test('every iterator variant loads where the plain one does: with cgroups, with cgroups and inodes', (ctx) => {
  const plain = tcpIterator(iteratorMask(ALL_CONNECTION_STATES), false);
  if ('reason' in plain) return ctx.skip(`no BPF iterator here: ${plain.reason}`);
  for (const owners of ['cgroup', 'cgroup+inode'] as const) {
    for (const unread of [false, true]) {
      const it = tcpIterator(iteratorMask(ALL_CONNECTION_STATES), unread, owners);
      assert.ok('link' in it, `${owners}, unread ${unread}: ${'reason' in it ? it.reason : ''}`);
    }
  }
});

test('a cgroup path names its systemd unit, or its Kubernetes pod and container', () => {
  assert.deepEqual(describeCgroup(7, '/system.slice/nginx.service'), { id: 7, path: '/system.slice/nginx.service', unit: 'nginx.service' });
  const cid = 'ab'.repeat(32);
  assert.deepEqual(describeCgroup(8, `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_0000_4000_8000_123456789abc.slice/cri-containerd-${cid}.scope`), {
    id: 8,
    path: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_0000_4000_8000_123456789abc.slice/cri-containerd-${cid}.scope`,
    pod: '1b2c3d4e-0000-4000-8000-123456789abc',
    container: cid,
  });
  assert.deepEqual(describeCgroup(9, `/kubepods/besteffort/pod1b2c3d4e-0000-4000-8000-123456789abc/${cid}`).pod, '1b2c3d4e-0000-4000-8000-123456789abc');
  assert.equal(describeCgroup(9, `/kubepods/besteffort/pod1b2c3d4e-0000-4000-8000-123456789abc/${cid}`).container, cid);
  assert.equal(describeCgroup(10, '/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope').unit, 'app-foo.scope');
  assert.equal(cgroupLabel({ id: 0, path: null }), '(no owner: TIME_WAIT)');
  assert.equal(cgroupLabel({ id: 5, path: null }), 'cgroup 5 (gone)');
});
