/**
 * The real `fourtuple probe` binary on loopback: its report, its cleanup,
 * and how it behaves when interrupted or when one of its processes dies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

interface Report {
  held: number;
  predicted: number;
  target: number;
  stoppedBy: string;
  limit: unknown;
  lost: number;
  rate: { median: number; peak: number };
  latency: { p50: number; p99: number; max: number };
  memory: { userBytesPerConnection: number; kernelBytesPerConnection: number };
  cleanup: { left: number; timeWait: number };
  closeMs: number;
  destinations: string[];
  workers: { clients: number; sinks: number; died: { kind: string; pid: number; signal: string | null; held: number }[] };
}

/** Which of `pids` are still alive. */
function alive(pids: Iterable<number>): number[] {
  return [...pids].filter((p) => {
    try {
      process.kill(p, 0);
      return true;
    } catch {
      return false;
    }
  });
}

/** Sockets in the kernel table to or from any of `endpoints`. */
function socketsOf(endpoints: string[]): number {
  const out = execFileSync('ss', ['-Htan'], { encoding: 'utf8' });
  return out.split('\n').filter((line) => endpoints.some((e) => line.includes(` ${e} `) || line.endsWith(` ${e}`))).length;
}

function children(pid: number, pattern: string): number[] {
  const r = spawnSync('pgrep', ['-P', String(pid), '-f', pattern], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/**
 * Runs probe in the background; resolves with its exit status, output, when
 * it ended, and the PIDs of every worker process seen while it ran (so the
 * test can check that exactly those are gone, whatever else runs on the host).
 */
function runProbe(args: string[], during?: (pid: number) => void | Promise<void>): Promise<{ status: number | null; stdout: string; stderr: string; endedAt: number; workers: Set<number> }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'probe', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const workers = new Set<number>();
    const watch = setInterval(() => {
      for (const p of children(child.pid as number, 'worker')) workers.add(p);
    }, 100);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (status) => {
      clearInterval(watch);
      resolve({ status, stdout, stderr, endedAt: Date.now(), workers });
    });
    if (during) void during(child.pid as number);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('probe --connections 2000 --json: holds 2,000, reports them and leaves no socket behind', async () => {
  const r = await runProbe(['--connections', '2000', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'no progress decoration off a TTY');
  const j = JSON.parse(r.stdout) as Report;
  assert.equal(j.held, 2000);
  assert.equal(j.target, 2000);
  assert.equal(j.predicted, 2000);
  assert.equal(j.stoppedBy, 'target');
  assert.equal(j.limit, null);
  assert.ok(j.rate.median > 0 && j.rate.peak >= j.rate.median);
  assert.ok(j.latency.p50 > 0 && j.latency.p50 <= j.latency.p99 && j.latency.p99 <= j.latency.max);
  assert.ok(j.memory.userBytesPerConnection > 0);
  assert.deepEqual(j.cleanup, { left: 0, timeWait: 0 });
  assert.ok(Number.isInteger(j.closeMs) && j.closeMs >= 0 && j.closeMs < 30_000, `closeMs ${j.closeMs}`);
  assert.ok(j.destinations.length >= 1);
  assert.equal(socketsOf(j.destinations), 0, 'the kernel table holds nothing of the run');
  assert.deepEqual(alive(r.workers), []);
});

test('probe human report says how many were held and that nothing is left', async () => {
  const r = await runProbe(['--connections', '1500']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Held 1,500 concurrent TCP connections; the run reached the target\./);
  assert.match(r.stdout, /Predicted: 1,500 of 1,500/);
  assert.match(r.stdout, /cleanup\s+no socket of the run left open; TIME_WAIT added: 0; closing took \d+\.\d s/);
});

test('--rate caps the whole run, also when one client process is enough (4,000 at 2,000/s: about 2 s)', async () => {
  const r = await runProbe(['--connections', '4000', '--rate', '2000', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as Report & { rampMs: number; workers: { clients: number } };
  assert.equal(j.held, 4000);
  assert.equal(j.workers.clients, 1);
  // Not faster than the cap allows (less a first burst), and not a third of it, as when the cap was split three ways.
  assert.ok(j.rampMs >= 1700 && j.rampMs < 4000, `ramp ${j.rampMs} ms`);
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`${signal} ends a run and leaves nothing behind`, async () => {
    let sentAt = 0;
    const r = await runProbe(['--connections', '60000', '--rate', '5000', '--json'], async (pid) => {
      await sleep(2500);
      sentAt = Date.now();
      process.kill(pid, signal);
    });
    // A guard against a hang, not a benchmark (closing time is bench/sigint.sh's): generous for a busy machine.
    assert.ok(r.endedAt - sentAt < 30_000, `ended ${r.endedAt - sentAt} ms after ${signal}`);
    assert.equal(r.status, signal === 'SIGINT' ? 130 : 143, r.stderr);
    const j = JSON.parse(r.stdout) as Report;
    assert.equal(j.stoppedBy, 'signal');
    assert.ok(j.held > 0 && j.held < 60000);
    assert.equal(j.cleanup.left, 0);
    assert.equal(socketsOf(j.destinations), 0);
    assert.deepEqual(alive(r.workers), []);
  });
}

test('a client worker killed with SIGKILL is reported with what it held; the run goes on to the target', async () => {
  let killed = 0;
  const r = await runProbe(['--connections', '8000', '--rate', '2000', '--json'], async (pid) => {
    for (let i = 0; i < 50 && killed === 0; i++) {
      await sleep(100);
      const [w] = children(pid, 'client-worker');
      if (w && i >= 15) {
        process.kill(w, 'SIGKILL');
        killed = w;
      }
    }
  });
  assert.ok(killed > 0, 'found a client worker to kill');
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as Report;
  assert.equal(j.workers.died.length, 1);
  assert.equal(j.workers.died[0].pid, killed);
  assert.equal(j.workers.died[0].signal, 'SIGKILL');
  assert.ok(j.workers.died[0].held > 0, `held ${j.workers.died[0].held}`);
  assert.equal(j.stoppedBy, 'target');
  assert.equal(j.held, 8000);
  assert.equal(j.cleanup.left, 0);
  assert.equal(j.cleanup.timeWait, 0, 'a dead worker closes with RST too (SO_LINGER 0 set at creation)');
  assert.deepEqual(alive(r.workers), []);
});

test('a sink worker that dies is reported as resets (lost connections), not a hang', async () => {
  let killed = 0;
  const r = await runProbe(['--sink', 'accept', '--connections', '3000', '--hold', '5', '--json'], async (pid) => {
    await sleep(2500);
    const sinks = children(pid, 'sink-worker');
    // The sink holding the most connections.
    const byFds = sinks.map((p) => [p, Number(execFileSync('sh', ['-c', `ls /proc/${p}/fd | wc -l`], { encoding: 'utf8' }))]);
    byFds.sort((a, b) => b[1] - a[1]);
    killed = byFds[0][0];
    process.kill(killed, 'SIGKILL');
  });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as Report;
  assert.ok(killed > 0);
  assert.equal(j.workers.died.length, 1);
  assert.equal(j.workers.died[0].kind, 'sink');
  assert.ok(j.lost > 0, `lost ${j.lost}`);
  assert.equal(j.cleanup.left, 0);
  assert.deepEqual(alive(r.workers), []);
});

test('bad input exits 2 with one line naming the value, and starts nothing', async () => {
  const cases: [string[], string][] = [
    [['--connections', '0'], "'0'"],
    [['--connections', 'lots'], "'lots'"],
    [['--close', 'slam'], "'slam'"],
    [['--to', '127.0.0.1:0'], "'0'"],
    [['--strategy', 'auto', '--from', '127.0.0.2'], '127.0.0.2'],
    [['--rate', '-5'], '-5'],
    [['--nope'], '--nope'],
    [['--report', '/nonexistent/dir/r.html'], '/nonexistent/dir/r.html'],
  ];
  for (const [args, needle] of cases) {
    const r = await runProbe(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.ok(lines[0].includes(needle), `${lines[0]} names ${needle}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.equal(r.workers.size, 0, 'no worker was started');
  }
});
