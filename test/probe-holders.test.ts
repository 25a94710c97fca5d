/**
 * The clients' holders: under a small open-files limit a client hands its
 * connections to holder processes (/bin/sh inheriting them) many times over.
 * They hold what the report says, ignore the group's signals, end with their
 * client, and nothing of them is left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
/** Lowering a limit needs no privilege: 1,000 descriptors make a client hand over every 936 connections. */
const NOFILE = 1000;
const TARGET = 12_000;

interface Report {
  held: number;
  lost: number;
  stoppedBy: string;
  interrupted: string | null;
  cleanup: { left: number; timeWait: number };
  destinations: string[];
  workers: { clients: number; holders: number; died: { kind: string; pid: number; held: number }[] };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Direct children of `pid`. */
function childrenOf(pid: number): number[] {
  const r = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** Socket descriptors a process holds. */
function socketFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
      try {
        return /^socket:/.test(readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        return false;
      }
    }).length;
  } catch {
    return 0;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Established connections toward `ports` on 127.0.0.1, the clients' ends, from the kernel's table. */
function established(ports: Set<number>): number {
  const out = execFileSync('ss', ['-Htn', 'state', 'established'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  let n = 0;
  for (const line of out.split('\n')) {
    const m = /\s127\.0\.0\.1:(\d+)\s*$/.exec(line);
    if (m && ports.has(Number(m[1]))) n++;
  }
  return n;
}

interface Tree {
  clients: number[];
  /** Sockets the clients hold themselves (not yet handed over). */
  inClients: number;
  holders: Map<number, number>;
}

/** The run's clients (the coordinator's node children) and their holders, with the sockets each holder holds. */
function tree(coordinator: number): Tree {
  const clients = childrenOf(coordinator).filter((p) => cmdline(p).includes('client-worker'));
  const holders = new Map<number, number>();
  for (const c of clients) for (const h of childrenOf(c)) if (cmdline(h).includes('read _')) holders.set(h, socketFds(h));
  return { clients, inClients: clients.reduce((n, c) => n + socketFds(c), 0), holders };
}

/**
 * Runs probe under the low limit with a long hold; `during` gets the
 * coordinator's pid once the kernel holds the whole target.
 */
async function run(args: string[], during: (pid: number, seen: Tree) => Promise<void>): Promise<{ status: number | null; report: Report; stderr: string; seen: Tree }> {
  const child = spawn('prlimit', [`--nofile=${NOFILE}:${NOFILE}`, process.execPath, CLI, 'probe', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const pid = child.pid as number;
  let seen: Tree = { clients: [], inClients: 0, holders: new Map() };
  const everyHolder = new Set<number>();
  try {
    // The default listeners start at 7000; wait until the clients' ends of the whole target are established.
    const ports = new Set(Array.from({ length: 100 }, (_, i) => 7000 + i));
    for (let i = 0; i < 600; i++) {
      seen = tree(pid);
      for (const h of seen.holders.keys()) everyHolder.add(h);
      if (established(ports) >= TARGET && seen.holders.size > 0) break;
      await sleep(100);
    }
    await sleep(300);
    seen = tree(pid);
    for (const h of seen.holders.keys()) everyHolder.add(h);
    await during(pid, seen);
    const status = await exited;
    for (let i = 0; i < 100 && [...everyHolder].some(alive); i++) await sleep(100);
    assert.deepEqual([...everyHolder].filter(alive), [], 'no holder outlives the run');
    return { status, report: JSON.parse(stdout) as Report, stderr, seen };
  } finally {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // ended
    }
    for (const h of everyHolder) if (alive(h)) process.kill(h, 'SIGKILL');
  }
}

test(`under a ${NOFILE}-descriptor limit, ${TARGET.toLocaleString('en-US')} connections live in holder processes that hold exactly them`, { timeout: 120_000 }, async () => {
  const r = await run(['--connections', String(TARGET), '--hold', '2'], async () => {});
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.report.held, TARGET);
  assert.equal(r.report.stoppedBy, 'target');
  // Each client hands over every 936 (1,000 less its own reserve): 6,000 each makes at least 6 holders.
  assert.ok(r.seen.holders.size >= 12, `${r.seen.holders.size} holders`);
  assert.equal(r.report.workers.holders, r.seen.holders.size);
  let inHolders = 0;
  for (const n of r.seen.holders.values()) {
    assert.ok(n > 0 && n < NOFILE, `a holder with ${n} sockets`);
    inHolders += n;
  }
  assert.ok(inHolders <= TARGET && inHolders >= TARGET - 2 * NOFILE, `${inHolders} in holders`);
  // Holders and clients together: every connection of the run, each in exactly one process (a client
  // also has a few sockets of its own: its IPC channel to the coordinator).
  const all = inHolders + r.seen.inClients;
  assert.ok(all >= TARGET && all <= TARGET + 4 * r.seen.clients.length, `${inHolders} in holders + ${r.seen.inClients} in clients`);
  assert.deepEqual(r.report.cleanup, { left: 0, timeWait: 0 });
});

test('Ctrl-C (SIGINT to the group) reaches the holders too: they ignore it, the run closes them, exit 130', { timeout: 120_000 }, async () => {
  const r = await run(['--connections', String(TARGET), '--hold', '60'], async (pid) => {
    process.kill(-pid, 'SIGINT');
  });
  assert.equal(r.status, 130, r.stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.equal(r.report.stoppedBy, 'signal');
  assert.equal(r.report.held, TARGET, 'every holder still held its connections when the signal came');
  assert.equal(r.report.lost, 0);
  assert.deepEqual(r.report.cleanup, { left: 0, timeWait: 0 });
});

test("a client killed with SIGKILL takes its holders' connections with it: reported as lost, nothing left", { timeout: 120_000 }, async () => {
  let victim = 0;
  let itsHolders = 0;
  const r = await run(['--connections', String(TARGET), '--hold', '8'], async (pid, seen) => {
    victim = seen.clients[0];
    itsHolders = childrenOf(victim).filter((h) => cmdline(h).includes('read _')).length;
    process.kill(victim, 'SIGKILL');
  });
  assert.ok(victim > 0 && itsHolders > 0, `killed ${victim} with ${itsHolders} holders`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.report.workers.died.length, 1);
  assert.equal(r.report.workers.died[0].pid, victim);
  // Its half of the target, in its holders and its own descriptors, was reset with it.
  assert.ok(r.report.lost >= TARGET / 2 - 1, `lost ${r.report.lost}`);
  assert.deepEqual(r.report.cleanup, { left: 0, timeWait: 0 });
});
