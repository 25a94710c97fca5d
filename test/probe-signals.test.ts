/**
 * How `fourtuple probe` and `fourtuple load` end when they are told to stop
 * (signals as a terminal or a supervisor delivers them) or when the
 * destination cannot be reached: the exit code, a report of what was really
 * held, no stack trace, and nothing left behind in the kernel's table or the
 * process table.
 *
 * Every run is spawned with `detached: true`, so it leads its own process
 * group (pgid = its pid), as a foreground job does under a shell: Ctrl-C is
 * then `kill(-pgid, SIGINT)`, which reaches the coordinator and every worker
 * at once.
 *
 * What belongs to a run is found from the run itself, so that other programs
 * on the host (even another probe on neighbouring ports) do not disturb the
 * checks: its processes are its process group and the coordinator's
 * descendants; its destinations are the listening sockets those processes
 * own (and the report's `destinations`); the connections it holds are the
 * established sockets whose peer is one of those destinations (the client
 * side of each connection, counted once).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { netnsUnavailable } from './support/netns.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `promise`'s value, or null if it takes longer than `ms` (the timer does not outlive the wait). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((r) => (timer = setTimeout(() => r(null), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Generous bounds: these must hold on a loaded 2-core machine as on a 64-core one. */
const SECOND = 1000;
/** How long a run may take to listen, or to hold its target, before the test gives up (generous: beside another program holding half a million connections, startup and ramp take many times longer). */
const HOLD_WAIT_MS = 90 * SECOND;
/** How long a run may take to end after a signal (or after its time bound) before the test gives up. */
const EXIT_WAIT_MS = 60 * SECOND;
/** How long sockets and processes of an ended run may take to disappear. */
const DRAIN_MS = 15 * SECOND;

/** The part of the `--json` document these tests read. */
interface Report {
  held: number;
  target: number;
  stoppedBy: string;
  attempts: number;
  errors: Record<string, number>;
  cleanup: { left: number; timeWait: number };
  destinations: string[];
  workers: { clients: number; sinks: number };
}

// ---------------------------------------------------------------------------
// The process table

interface Proc {
  pid: number;
  ppid: number;
  pgrp: number;
  state: string;
  /** Start time in clock ticks since boot: with the pid, names a process even if the pid is reused. */
  start: string;
}

function procStat(pid: number): Proc | null {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the command name, which may itself contain spaces and parentheses.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return { pid, state: f[0], ppid: Number(f[1]), pgrp: Number(f[2]), start: f[19] };
}

function allProcs(): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = procStat(Number(name));
    if (p) out.push(p);
  }
  return out;
}

/** Alive: the same process (pid and start time) still exists and is not a zombie. */
function isAlive(pid: number, start: string): boolean {
  const p = procStat(pid);
  return p !== null && p.start === start && p.state !== 'Z';
}

// ---------------------------------------------------------------------------
// The kernel's socket table, through ss

interface SockRow {
  state: string;
  local: string;
  peer: string;
  /** The socket's inode (with -e): 0 when no process holds it (TIME_WAIT, orphaned closes). */
  ino: number;
  line: string;
}

function ss(args: string[]): SockRow[] {
  const out = execFileSync('ss', ['-Hn', ...args], { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 });
  const rows: SockRow[] = [];
  for (const line of out.split('\n')) {
    if (!line.trim()) continue;
    const f = line.trim().split(/\s+/);
    // With `state X` ss leaves the State column out.
    const hasState = !/^\d+$/.test(f[0]);
    const [state, , , local, peer] = hasState ? f : ['', ...f];
    rows.push({ state, local, peer, ino: Number(/\bino:(\d+)/.exec(line)?.[1] ?? 0), line });
  }
  return rows;
}

function portOf(endpoint: string): number {
  return Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));
}

/**
 * Inodes of the sockets the processes `pids` hold, from their /proc/PID/fd.
 * (Not `ss -p`: that reads every descriptor of every process on the host,
 * seconds of CPU per call beside another program holding a few hundred
 * thousand connections.)
 */
function socketInodes(pids: Iterable<number>): Set<number> {
  const out = new Set<number>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) out.add(Number(m[1]));
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return out;
}

/** Whether an endpoint is one of `endpoints`; a wildcard address (0.0.0.0, [::], *) there stands for any address on its port. */
function matcher(endpoints: Set<string>): (endpoint: string) => boolean {
  const anyAddress = new Set([...endpoints].filter((e) => /^(0\.0\.0\.0|\[::\]|\*):\d+$/.test(e)).map(portOf));
  return (e) => endpoints.has(e) || anyAddress.has(portOf(e));
}

/** An ss filter for sockets with any of `ports` at either end. */
function portFilter(ports: Iterable<number>): string {
  const terms = [...new Set(ports)].flatMap((p) => [`sport = :${p}`, `dport = :${p}`]);
  return `( ${terms.join(' or ')} )`;
}

// ---------------------------------------------------------------------------
// A run of the CLI

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() when the process exited. */
  at: number;
}

/**
 * One CLI run in its own process group, watched every 200 ms: the processes
 * it started, and (with `listens`) the destinations its sink listens on.
 */
class Run {
  readonly child: ChildProcess;
  readonly pgid: number;
  stdout = '';
  stderr = '';
  exit: Exit | null = null;
  /** Every process of the run seen so far: pid -> start time. */
  readonly procs = new Map<number, string>();
  /** Listening endpoints (ADDR:PORT) held by processes of the run. */
  readonly listening = new Set<string>();
  readonly #exited: Promise<Exit>;
  readonly #closed: Promise<void>;
  readonly #timer: NodeJS.Timeout;
  #listenersSettled: boolean;

  constructor(argv: string[], opts: { prefix?: string[]; listens?: boolean } = {}) {
    const [cmd, ...args] = [...(opts.prefix ?? []), process.execPath, CLI, ...argv];
    this.child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.pgid = this.child.pid as number;
    this.child.stdout!.on('data', (d) => (this.stdout += d));
    this.child.stderr!.on('data', (d) => (this.stderr += d));
    this.#exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal, at: Date.now() };
        resolve(this.exit);
      }),
    );
    this.#closed = new Promise((resolve) => this.child.on('close', () => resolve()));
    this.#listenersSettled = !opts.listens;
    this.#timer = setInterval(() => this.scan(), 200);
    this.scan();
  }

  /** Records the run's processes (its group and the coordinator's descendants) and, until they settle, its listeners. */
  scan(): void {
    const procs = allProcs();
    const children = new Map<number, Proc[]>();
    for (const p of procs) {
      if (!children.has(p.ppid)) children.set(p.ppid, []);
      children.get(p.ppid)!.push(p);
    }
    const mine: Proc[] = procs.filter((p) => p.pgrp === this.pgid && p.state !== 'Z');
    // Descendants only while the coordinator lives (after its exit its pid may be reused).
    const queue = this.exit === null ? procs.filter((p) => p.pid === this.pgid) : [];
    while (queue.length) {
      const p = queue.pop()!;
      mine.push(p);
      queue.push(...(children.get(p.pid) ?? []));
    }
    for (const p of mine) if (p.state !== 'Z' && !this.procs.has(p.pid)) this.procs.set(p.pid, p.start);
    if (this.#listenersSettled || this.exit) return;
    // Listeners appear before the ramp; once two scans agree, the set is the run's.
    const before = this.listening.size;
    const listeners = ss(['-tle']);
    if (listeners.length === 0) return;
    const ours = socketInodes(this.procs.keys());
    for (const r of listeners) if (ours.has(r.ino)) this.listening.add(r.local);
    if (this.listening.size > 0 && this.listening.size === before) this.#listenersSettled = true;
  }

  /** Waits for the process to exit (at most `ms`); then for its output to be complete (at most 2 s more). */
  async ended(ms = EXIT_WAIT_MS): Promise<Exit> {
    const exit = await within(this.#exited, ms);
    assert.ok(exit, `still running ${ms / 1000} s later; stderr: ${this.stderr.slice(-2000)}`);
    await within(this.#closed, 2000);
    return exit;
  }

  /** The run's destinations once it listens on them (at most `ms`). */
  async destinations(ms = HOLD_WAIT_MS): Promise<Set<string>> {
    const deadline = Date.now() + ms;
    while (!this.#listenersSettled) {
      assert.equal(this.exit, null, `exited before listening: ${this.stderr.slice(-2000)}`);
      assert.ok(Date.now() < deadline, `no listener of the run seen within ${ms / 1000} s (seen so far: ${[...this.listening].join(' ') || 'none'}; processes: ${[...this.procs.keys()].join(' ')}); stderr: ${this.stderr.slice(-2000)}`);
      await sleep(50);
    }
    return this.listening;
  }

  /** Connections held now, as the kernel has them: established sockets whose peer is one of the run's destinations. */
  held(): number {
    const ports = [...this.listening].map(portOf);
    if (ports.length === 0) return 0;
    const lo = Math.min(...ports);
    const hi = Math.max(...ports);
    const toRun = matcher(this.listening);
    return ss(['-t', 'state', 'established', `( dport >= :${lo} and dport <= :${hi} )`]).filter((r) => toRun(r.peer)).length;
  }

  /** Processes of the run still alive (not zombies). */
  alive(): number[] {
    this.scanGroupOnly();
    return [...this.procs].filter(([pid, start]) => isAlive(pid, start)).map(([pid]) => pid);
  }

  /** After the exit: any process still in the group, even one never seen while it ran. */
  scanGroupOnly(): void {
    for (const p of allProcs()) if (p.pgrp === this.pgid && p.state !== 'Z' && !this.procs.has(p.pid)) this.procs.set(p.pid, p.start);
  }

  /**
   * Sockets to or from `endpoints` that belong to the run: held by one of its
   * live processes, or by no process (TIME_WAIT, orphaned closes). A socket
   * some other program holds is not the run's.
   */
  leftovers(endpoints: Set<string>): string[] {
    if (endpoints.size === 0) return [];
    const ofRun = matcher(endpoints);
    const rows = ss(['-tae', portFilter([...endpoints].map(portOf))]).filter((r) => ofRun(r.local) || ofRun(r.peer));
    if (rows.length === 0) return [];
    const held = socketInodes(this.alive());
    return rows
      .filter((r) => r.ino === 0 || held.has(r.ino))
      .map((r) => r.line);
  }

  /** Polls until nothing of the run is left (at most DRAIN_MS), then asserts it. */
  async assertNothingLeft(endpoints: Set<string>): Promise<void> {
    const deadline = Date.now() + DRAIN_MS;
    let sockets = this.leftovers(endpoints);
    let procs = this.alive();
    while ((sockets.length || procs.length) && Date.now() < deadline) {
      await sleep(250);
      sockets = this.leftovers(endpoints);
      procs = this.alive();
    }
    assert.deepEqual(procs, [], `processes of the run alive ${DRAIN_MS / 1000} s after it ended`);
    assert.equal(sockets.length, 0, `sockets of the run left ${DRAIN_MS / 1000} s after it ended (${sockets.length}):\n${sockets.slice(0, 10).join('\n')}`);
  }

  /** Kills whatever of the run is still alive (group, then each process it started, by pid) and waits for its sockets to go. */
  async dispose(): Promise<void> {
    clearInterval(this.#timer);
    if (this.exit === null) {
      try {
        process.kill(-this.pgid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    for (const pid of this.alive()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await within(this.#exited, 5000);
    const deadline = Date.now() + DRAIN_MS;
    while (this.leftovers(this.listening).length && Date.now() < deadline) await sleep(250);
  }
}

/** Runs `body` with a run of the CLI; kills and drains whatever is left of it afterwards, pass or fail. */
async function withRun(argv: string[], opts: { prefix?: string[]; listens?: boolean }, body: (run: Run) => Promise<void>): Promise<void> {
  const run = new Run(argv, opts);
  try {
    await body(run);
  } finally {
    await run.dispose();
  }
}

// ---------------------------------------------------------------------------
// Checks

function assertExitCode(run: Run, exit: Exit, code: number): void {
  assert.deepEqual(
    { code: exit.code, signal: exit.signal },
    { code, signal: null },
    `expected exit code ${code}; stderr:\n${run.stderr.slice(-3000)}`,
  );
}

function assertNoCrash(stderr: string): void {
  assert.doesNotMatch(stderr, /^\s+at /m, `a stack trace on stderr:\n${stderr.slice(-3000)}`);
  assert.doesNotMatch(stderr, /TypeError/, stderr.slice(-3000));
  assert.doesNotMatch(stderr, /internal error/i, stderr.slice(-3000));
  assert.doesNotMatch(stderr, /node:internal/, stderr.slice(-3000));
}

function parseReport(run: Run): Report {
  try {
    return JSON.parse(run.stdout) as Report;
  } catch (err) {
    assert.fail(`stdout is not one JSON document (${(err as Error).message}):\n${run.stdout.slice(0, 2000)}\nstderr:\n${run.stderr.slice(-2000)}`);
  }
}

/** Endpoints to check for leftovers: those seen listening and those the report names. */
function endpointsOf(run: Run, report?: Report): Set<string> {
  const set = new Set(run.listening);
  for (const d of report?.destinations ?? []) set.add(d);
  return set;
}

/**
 * Waits until the kernel holds the run's target and keeps holding it (two
 * counts half a second apart), and returns the count taken last, just before
 * the caller sends its signal.
 */
async function heldSteady(run: Run, target: number): Promise<number> {
  await run.destinations();
  const deadline = Date.now() + HOLD_WAIT_MS;
  let previous = -1;
  for (;;) {
    assert.equal(run.exit, null, `exited before holding ${target}: ${run.stderr.slice(-2000)}`);
    const n = run.held();
    if (n === target && previous === target) return n;
    assert.ok(Date.now() < deadline, `held ${n}, never steady at ${target} within ${HOLD_WAIT_MS / 1000} s`);
    previous = n;
    await sleep(500);
  }
}

const HOLD_ARGS = ['probe', '--connections', '20000', '--hold', '30', '--json'];
const HOLD_TARGET = 20000;

/**
 * The hold scenario shared by the signal tests: hold 20,000, measure them,
 * signal, and check the exit code, the absence of a crash, the report (when
 * one is required) and that nothing is left.
 */
async function signalDuringHold(send: (run: Run) => unknown, code: number, opts: { report: 'required' | 'if-any'; withinMs?: number }): Promise<void> {
  await withRun(HOLD_ARGS, { listens: true }, async (run) => {
    const measured = await heldSteady(run, HOLD_TARGET);
    const sentAt = Date.now();
    await send(run);
    const exit = await run.ended();
    if (opts.withinMs !== undefined) assert.ok(exit.at - sentAt < opts.withinMs, `ended ${exit.at - sentAt} ms after the first signal`);
    assertExitCode(run, exit, code);
    assertNoCrash(run.stderr);
    let report: Report | undefined;
    if (opts.report === 'required' || run.stdout.trim() !== '') {
      report = parseReport(run);
      assert.equal(report.stoppedBy, 'signal');
      assert.equal(report.target, HOLD_TARGET);
      assert.equal(report.held, measured, `the report's held against the kernel's count just before the signal`);
      assert.equal(report.cleanup.left, 0);
    }
    await run.assertNothingLeft(endpointsOf(run, report));
  });
}

// ---------------------------------------------------------------------------
// 1. Ctrl-C: SIGINT to the whole process group

const RAMP_ARGS = ['probe', '--connections', '60000', '--rate', '20000'];
const RAMP_TARGET = 60000;
/** Signal once the kernel holds more than this many of the run's connections. */
const RAMP_SIGNAL_AT = 5000;

/**
 * Starts the 60,000-connection ramp (3 s at 20,000/s), sends Ctrl-C to the
 * group as soon as the kernel holds more than 5,000, and returns that count.
 */
async function ctrlCDuringRamp(run: Run): Promise<number> {
  await run.destinations();
  const deadline = Date.now() + HOLD_WAIT_MS;
  for (;;) {
    assert.equal(run.exit, null, `exited during the ramp before the signal: ${run.stderr.slice(-2000)}`);
    const n = run.held();
    if (n > RAMP_SIGNAL_AT) {
      assert.ok(n < RAMP_TARGET, `the ramp was over (${n}) before the signal: --rate not applied?`);
      process.kill(-run.pgid, 'SIGINT');
      return n;
    }
    assert.ok(Date.now() < deadline, `held ${n}, never above ${RAMP_SIGNAL_AT} within ${HOLD_WAIT_MS / 1000} s`);
    await sleep(50);
  }
}

test('Ctrl-C (SIGINT to the group) during the ramp, --json: exit 130, a report of what was held, nothing left', { timeout: 180_000 }, async () => {
  await withRun([...RAMP_ARGS, '--json'], { listens: true }, async (run) => {
    const before = await ctrlCDuringRamp(run);
    const exit = await run.ended();
    assertExitCode(run, exit, 130);
    assertNoCrash(run.stderr);
    const j = parseReport(run);
    assert.equal(j.stoppedBy, 'signal');
    assert.equal(j.target, RAMP_TARGET);
    assert.ok(j.held < RAMP_TARGET, `held ${j.held}`);
    // What the kernel held before the signal was held by the run too, save the
    // connects still in flight in the clients when it came (at most 512 each).
    assert.ok(j.held >= before - 512 * Math.max(1, j.workers.clients), `held ${j.held}, the kernel counted ${before} before the signal`);
    assert.equal(j.cleanup.left, 0);
    await run.assertNothingLeft(endpointsOf(run, j));
  });
});

test('Ctrl-C (SIGINT to the group) during the ramp, human report: exit 130, says interrupted, nothing left', { timeout: 180_000 }, async () => {
  await withRun(RAMP_ARGS, { listens: true }, async (run) => {
    await ctrlCDuringRamp(run);
    const exit = await run.ended();
    assertExitCode(run, exit, 130);
    assertNoCrash(run.stderr);
    const m = /^Held ([\d,]+) concurrent TCP connections/m.exec(run.stdout);
    assert.ok(m, `a human report on stdout:\n${run.stdout.slice(0, 2000)}`);
    const held = Number(m[1].replace(/,/g, ''));
    assert.ok(held < RAMP_TARGET, `held ${held}`);
    assert.match(run.stdout, /interrupted/);
    assert.doesNotMatch(run.stdout, /reached the target/, 'an interrupted run short of its target did not reach it');
    await run.assertNothingLeft(endpointsOf(run));
  });
});

test('Ctrl-C (SIGINT to the group) during the hold: exit 130, held is what the kernel held, nothing left', { timeout: 180_000 }, async () => {
  await signalDuringHold((run) => process.kill(-run.pgid, 'SIGINT'), 130, { report: 'required' });
});

test('Ctrl-C twice (SIGINT to the group, again 100 ms later) during the hold: ends within 10 s, exit 130, no stack trace', { timeout: 180_000 }, async () => {
  await signalDuringHold(
    async (run) => {
      process.kill(-run.pgid, 'SIGINT');
      await sleep(100);
      try {
        process.kill(-run.pgid, 'SIGINT');
      } catch {
        /* the whole group had already exited: nothing to interrupt twice */
      }
    },
    130,
    // A second Ctrl-C kills the workers and exits at once, without waiting to check the table: no report then, one line saying why.
    { report: 'if-any', withinMs: 10_000 },
  );
});

// ---------------------------------------------------------------------------
// 2. A supervisor's signals: to the coordinator alone, and SIGHUP to the group

test('SIGTERM to the coordinator alone during the hold: exit 143, held is what the kernel held, nothing left', { timeout: 180_000 }, async () => {
  await signalDuringHold((run) => process.kill(run.pgid, 'SIGTERM'), 143, { report: 'required' });
});

test('SIGINT to the coordinator alone during the hold: exit 130, held is what the kernel held, nothing left', { timeout: 180_000 }, async () => {
  await signalDuringHold((run) => process.kill(run.pgid, 'SIGINT'), 130, { report: 'required' });
});

test('SIGHUP to the group during the hold: the run ends cleanly, exit 129, nothing left', { timeout: 180_000 }, async () => {
  // A report is not required (the terminal may be gone), but one that is printed must be right.
  await signalDuringHold((run) => process.kill(-run.pgid, 'SIGHUP'), 129, { report: 'if-any' });
});

// ---------------------------------------------------------------------------
// 3. and 4. Destinations that cannot be reached: exit 1, one line naming the errno and the destination, bounded attempts

/** Attempts allowed over a 2 s run: a few hundred per second at most. */
const MAX_ATTEMPTS = 2000;

/** A port on 127.0.0.1 nobody listens on, below the ephemeral range (so no connect can meet itself) and outside 7000-7999 (probe's own). */
async function closedPort(): Promise<number> {
  const [lo] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const top = Math.max(9000, Math.min(lo, 65536) - 1);
  const listening = new Set(ss(['-tl']).map((r) => portOf(r.local)));
  for (let i = 0; i < 100; i++) {
    const port = 8000 + Math.floor(Math.random() * (top - 8000));
    if (listening.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port found');
}

/** The checks shared by the refused and the unreachable destination. */
function assertUnreachable(run: Run, exit: Exit, errno: string, destination: string): Report {
  assertExitCode(run, exit, 1);
  assertNoCrash(run.stderr);
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr:\n${run.stderr.slice(-3000)}`);
  assert.ok(lines[0].includes(errno), `'${lines[0]}' names ${errno}`);
  assert.ok(lines[0].includes(destination), `'${lines[0]}' names ${destination}`);
  const j = parseReport(run);
  assert.ok(j.attempts >= 1, `attempts ${j.attempts}`);
  assert.ok(j.attempts <= MAX_ATTEMPTS, `attempts ${j.attempts}: a destination that cannot be reached is not hammered`);
  assert.equal(j.held, 0);
  return j;
}

test('load to a port nobody listens on: exit 1, one line naming ECONNREFUSED and the destination, bounded attempts', { timeout: 120_000 }, async () => {
  const port = await closedPort();
  const destination = `127.0.0.1:${port}`;
  await withRun(['load', '--to', destination, '--connections', '10', '--duration', '2', '--json'], {}, async (run) => {
    const exit = await run.ended();
    const j = assertUnreachable(run, exit, 'ECONNREFUSED', destination);
    assert.ok((j.errors.ECONNREFUSED ?? 0) >= 1, `errors ${JSON.stringify(j.errors)}`);
    await run.assertNothingLeft(new Set([destination]));
  });
});

const noNetns = netnsUnavailable();

test('load to an unreachable network (private namespace, no route): exit 1, one line naming ENETUNREACH and the destination, bounded attempts', { timeout: 120_000, skip: noNetns }, async () => {
  const destination = '10.1.2.3:80';
  // unshare -n execs the CLI in a namespace where loopback is down and no route exists; its sockets die with it.
  await withRun(['load', '--to', destination, '--connections', '10', '--duration', '2', '--json'], { prefix: ['unshare', '-n'] }, async (run) => {
    const exit = await run.ended();
    const j = assertUnreachable(run, exit, 'ENETUNREACH', destination);
    assert.ok((j.errors.ENETUNREACH ?? 0) >= 1, `errors ${JSON.stringify(j.errors)}`);
    await run.assertNothingLeft(new Set());
  });
});
