/**
 * Other programs on the host during a probe: parsing /proc/PID/stat and
 * /proc/slabinfo, the CPU shares between two snapshots, the report's line,
 * and a real run beside a process that burns a core.
 */
import { test } from 'node:test';
import { availableParallelism } from 'node:os';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { othersCpu, parseProcStat, procEntryBytes, type CpuSnapshot, type ProcStat } from '../dist/engine/others.js';
import { othersLine } from '../dist/report/probe.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

test('parseProcStat: the name may hold spaces and parentheses; ticks are utime + stime; kernel threads by flag', () => {
  const user = '1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 120 0 0 0 250 50 0 0 20 0 1 0 100 1000 10';
  assert.deepEqual(parseProcStat(user), { name: 'my (odd) prog', ticks: 300, kernelThread: false });
  const kthread = '14 (ksoftirqd/0) S 2 0 0 0 -1 69238848 0 0 0 0 0 3600 0 0 20 0 1 0 3 0 0';
  assert.deepEqual(parseProcStat(kthread), { name: 'ksoftirqd/0', ticks: 3600, kernelThread: true });
  assert.equal(parseProcStat('garbage'), null);
});

const snap = (total: number, procs: [number, ProcStat][]): CpuSnapshot => ({ total, procs: new Map(procs) });
const p = (name: string, ticks: number, kernelThread = false): ProcStat => ({ name, ticks, kernelThread });

test('othersCpu: shares of all CPU time, without the run and kernel threads; a new process counts from zero', () => {
  const a = snap(1000, [[1, p('agent', 500)], [10, p('node', 100)], [14, p('ksoftirqd/0', 50, true)], [30, p('old', 7)]]);
  const b = snap(2000, [[1, p('agent', 680)], [10, p('node', 900)], [14, p('ksoftirqd/0', 250, true)], [20, p('cron', 20)], [30, p('reused', 5)]]);
  const r = othersCpu(a, b, new Set([10]));
  // agent 180 + cron 20 (new) + pid 30 under another name 5 (counted from zero) over 1000 ticks.
  assert.ok(r);
  assert.equal(r.share, 0.205);
  assert.deepEqual(r.top, { pid: 1, name: 'agent', share: 0.18 });
  assert.equal(othersCpu(a, a, new Set()), null, 'no time passed');
  assert.deepEqual(othersCpu(a, snap(1100, [[10, p('node', 150)]]), new Set([10])), { share: 0, top: null });
});

test('procEntryBytes: /proc inodes and their dentries from slabinfo, null without it', () => {
  const root = mkdtempSync(join(tmpdir(), 'ft-slab-'));
  try {
    assert.equal(procEntryBytes(`${root}/`), null);
    mkdirSync(join(root, 'proc'));
    writeFileSync(
      join(root, 'proc/slabinfo'),
      [
        'slabinfo - version: 2.1',
        '# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>',
        'proc_inode_cache  602876 603000    696   23    4 : tunables    0    0    0 : slabdata  26217  26217      0',
        'dentry           1261617 1261700    192   21    1 : tunables    0    0    0 : slabdata  60081  60081      0',
      ].join('\n'),
    );
    assert.equal(procEntryBytes(`${root}/`), 602876 * (696 + 192));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('othersLine: only what is notable, and nothing for results saved before it was measured', () => {
  const memory = { userBytes: 0, userBytesPerConnection: 1000, kernelBytes: 0, kernelBytesPerConnection: 9600, availableDropBytes: null, availableDropBytesPerConnection: null };
  const busy = { cpuShare: 0.183, top: { pid: 1, name: 'agent', cpuShare: 0.17 }, procEntryBytes: 1.7e9, procEntryBytesPerConnection: 1720 };
  assert.equal(othersLine({ memory, others: busy }), "took 18% of the CPU during the ramp (most: agent, pid 1, 17%); the /proc/PID/fd entries cached by one listing this run's descriptors took 1.7 KiB per connection of the kernel's 9.4 KiB");
  assert.equal(othersLine({ memory, others: { ...busy, cpuShare: 0.02 } }), "the /proc/PID/fd entries cached by one listing this run's descriptors took 1.7 KiB per connection of the kernel's 9.4 KiB");
  assert.equal(othersLine({ memory, others: { cpuShare: 0.01, top: null, procEntryBytes: 0, procEntryBytesPerConnection: 0 } }), null);
  assert.equal(othersLine({ memory } as Parameters<typeof othersLine>[0]), null);
});

test('a probe beside a process burning a core names it, with its share of the CPU during the ramp', () => {
  const burner = spawn(process.execPath, ['-e', 'const end = Date.now() + 30000; while (Date.now() < end);'], { stdio: 'ignore' });
  try {
    // Paced so the ramp lasts about two seconds.
    const r = spawnSync(process.execPath, [CLI, 'probe', '--connections', '4000', '--rate', '2000', '--json'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { held: number; others: { cpuShare: number; top: { pid: number; name: string; cpuShare: number } | null } };
    assert.equal(j.held, 4000);
    const top = j.others.top;
    // On any machine: a process burning a core gets at least a quarter of one core's worth while the
    // run shares the machine with it, so the top other program takes at least that much. It is our
    // burner unless something else on the host burns as hard (a busy CI machine).
    const cores = availableParallelism();
    assert.ok(top !== null && top.cpuShare >= 0.25 / cores && top.cpuShare <= 1, JSON.stringify(j.others));
    assert.ok(j.others.cpuShare >= top.cpuShare);
  } finally {
    burner.kill('SIGKILL');
  }
});
