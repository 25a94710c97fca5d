/**
 * A client worker process: opens connections as bare descriptors through
 * raw syscalls (no JS socket object per connection), and reports
 * cumulative counters to the coordinator over IPC.
 *
 * One process may hold only its open-files limit of descriptors, and a
 * Node process costs about 0.15 s of CPU to start and 11 MB to keep. So a
 * worker does not hold what it opens: whenever its descriptors are nearly
 * all in use, it hands them to a holder, a `/bin/sh` that inherits them
 * (the sockets are made without close-on-exec), ignores the run's group
 * signals and waits on a pipe from the worker; the worker then closes its
 * own copies and goes on. A holder costs a fork and an exec and about a
 * megabyte. It ends when the worker kills it (closing) or when the pipe
 * closes because the worker is gone, so no holder outlives its worker;
 * either way the kernel closes its sockets, with RST (SO_LINGER 0).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as ffi from '../kernel/ffi.js';
import { errnoMeaning } from '../model/errno.js';
import { setsReuseAddr, strategySpec, type StrategySpec } from '../model/strategy.js';
import { prepareSocket } from './socket-prep.js';
import { parsePorts } from '../model/address.js';
import { bucketOf, newHistogram } from './histogram.js';
import type { ClientConfig, ClientStats, ToWorker } from './protocol.js';
import { fmtTarget } from './listeners.js';
import { ignoreGroupSignals, raiseNofile, send } from './worker-common.js';

/** One (source, target) pair the worker round-robins over. */
interface Combo {
  /** Position in the worker's combo list, carried through the poll slots. */
  readonly id: number;
  readonly source: number;
  readonly target: number;
  readonly key: string;
  alive: boolean;
  held: number;
  /** Explicit strategy: next index into this worker's share of ports. */
  cursor: number;
}

/** Why a worker's ramp ends. */
type Outcome = { reason: 'quota' | 'limit' | 'stopped' | 'nothing-left'; errno?: string };

const SLICE_MS = 20;
const LAUNCH_BATCH = 32;
const REPORT_MS = 100;
/**
 * Backoff from a destination that answers with a hard error (refused,
 * unreachable, reset at connect): the first retry after this long, doubling
 * up to BACKOFF_MAX_MS, with one attempt in flight at a time until one
 * succeeds. A refusing or unreachable destination gets a few attempts per
 * second from each client, not a SYN storm.
 */
const BACKOFF_MIN_MS = 10;
const BACKOFF_MAX_MS = 1000;
/** The holder: ignores the signals a terminal or a service manager sends the whole group, and waits until its stdin closes. */
const HOLDER_SCRIPT = 'trap "" INT TERM HUP QUIT; read _';

/** A holder process and the connections it holds. */
interface Holder {
  readonly child: ChildProcess;
  readonly connections: number;
  exited: boolean;
}

class ClientWorker {
  readonly #c: ClientConfig;
  readonly #fds: Int32Array;
  #held = 0;
  #attempts = 0;
  #lost = 0;
  readonly #errors: Record<string, number> = {};
  readonly #latency = newHistogram();
  #latencyMax = 0;
  readonly #byOcc = Array.from({ length: 10 }, () => newHistogram());
  // In-flight connects: poll slots (fd -1: free), and per slot its start time and combo. poll(2) walks
  // every slot on each call, but on loopback nearly every connect has completed by the next call, and an
  // epoll set costs two more syscalls per connect: 1M took 2-3 s more CPU with epoll here (bench/RESULTS.md).
  readonly #pending: ffi.PollSet;
  readonly #pendStart: Float64Array;
  readonly #pendCombo: Int32Array;
  readonly #freeSlots: Int32Array;
  #freeCount = 0;
  #lastExpire = 0;
  readonly #combos: Combo[];
  #live: Combo[];
  #rr = 0;
  readonly #targetAddrs: Buffer[];
  readonly #sourceAddrs: Buffer[];
  readonly #explicitPorts: Uint16Array;
  readonly #sourceHeld: Int32Array;
  #tokens = 0;
  #lastRefill = performance.now();
  #lastReport = 0;
  #state: 'ramp' | 'hold' | 'closing' = 'ramp';
  #stopRequested = false;
  readonly #quota: number;
  #connected = 0;
  #hardError: ClientStats['hardError'] = null;
  /** Per target: connections held or in flight, and the cap on them (Infinity without caps). */
  readonly #used: Int32Array;
  readonly #cap: Float64Array;
  /** Per target: the current backoff (0: none), when the next attempt may start, and attempts in flight. */
  readonly #backoff: Float64Array;
  readonly #retryAt: Float64Array;
  readonly #inFlight: Int32Array;
  /** With caps: the first combo that may still have room (the ones before it are full). */
  #fillFrom = 0;
  /** The last launch found every live pool capped or backing off. */
  #starved = false;

  /** Descriptors this process may hold at once: what it opens before handing them to a holder. */
  readonly #batch: number;
  /** Connections handed to holders. */
  #handed = 0;
  readonly #holders: Holder[] = [];

  /** How this strategy prepares a socket and which pool a connection draws from (shared with the model). */
  readonly #spec: StrategySpec;
  readonly #reuseAddr: boolean;

  constructor(config: ClientConfig, quota: number, batch: number, nofileSoft: number) {
    this.#c = config;
    this.#spec = strategySpec(config.strategy);
    this.#reuseAddr = setsReuseAddr(config.strategy, config.reuseAddr);
    // poll(2) refuses more slots than RLIMIT_NOFILE (EINVAL), and more could never be in flight anyway.
    const slots = Math.max(1, Math.min(config.concurrency, nofileSoft));
    this.#batch = Math.max(1, batch);
    const targets = config.targets.length;
    this.#used = new Int32Array(targets);
    this.#cap = Float64Array.from(config.caps ?? config.targets.map(() => Infinity));
    this.#backoff = new Float64Array(targets);
    this.#retryAt = new Float64Array(targets);
    this.#inFlight = new Int32Array(targets);
    this.#quota = config.caps ? Math.min(quota, config.caps.reduce((a, b) => a + b, 0)) : quota;
    this.#fds = new Int32Array(Math.min(this.#quota, this.#batch));
    this.#pending = new ffi.PollSet(slots);
    this.#pendStart = new Float64Array(slots);
    this.#pendCombo = new Int32Array(slots);
    this.#freeSlots = Int32Array.from({ length: slots }, (_, i) => slots - 1 - i);
    this.#freeCount = slots;
    this.#targetAddrs = config.targets.map((t) => ffi.sockaddr(t.address, t.port));
    const family = config.targets[0]?.address.includes(':') ? '::' : '0.0.0.0';
    const sources = config.sources.length ? config.sources : [family];
    this.#sourceAddrs = sources.map((s) => ffi.sockaddr(s, 0));
    this.#sourceHeld = new Int32Array(sources.length);
    // Each worker takes every workers-th port of the explicit pool, so workers never race for one port.
    const all = this.#spec.socket.bind === 'own-port' && config.explicitPorts ? [...parsePorts(config.explicitPorts, 'explicit pool')] : [];
    this.#explicitPorts = Uint16Array.from(all.filter((_, i) => i % config.workers === config.index % config.workers));
    const excluded = new Set(config.excluded);
    this.#combos = [];
    // Without a source address of its own, a connection's pool is its destination's.
    const perTarget = this.#spec.sources === 'none';
    for (let s = 0; s < (perTarget ? 1 : sources.length); s++) {
      for (let t = 0; t < config.targets.length; t++) {
        const key = this.#keyOf(s, t);
        this.#combos.push({ id: this.#combos.length, source: s, target: t, key, alive: !excluded.has(key), held: 0, cursor: 0 });
      }
    }
    this.#live = this.#combos.filter((c) => c.alive);
  }

  /** The pool a combo draws from, named by the run's target index so every worker names it alike. */
  #keyOf(s: number, t: number): string {
    return this.#spec.poolKey(s, this.#c.targetIds[t] ?? t);
  }

  /** Drops every combo whose pool `key` is full. */
  exclude(key: string): void {
    for (const c of this.#combos) if (c.key === key) c.alive = false;
    this.#live = this.#combos.filter((c) => c.alive);
    this.#fillFrom = 0;
  }

  /** Connects in flight: the slots in use. */
  get #pendCount(): number {
    return this.#pending.capacity - this.#freeCount;
  }

  /** The run's ramp is over: stop opening, settle what is in flight, and say what is held. */
  stop(): void {
    this.#stopRequested = true;
    if (this.#state === 'hold') send({ type: 'checked', stats: this.stats() });
  }

  stats(): ClientStats {
    return {
      held: this.#held + this.#handed,
      attempts: this.#attempts,
      pending: this.#pendCount,
      errors: { ...this.#errors },
      lost: this.#lost,
      connected: this.#connected,
      hardError: this.#hardError,
      latency: this.#latency,
      latencyMax: this.#latencyMax,
      byOccupancy: this.#byOcc,
    };
  }

  start(): void {
    this.#tick();
  }

  #tick = (): void => {
    if (this.#state !== 'ramp') return;
    const end = performance.now() + SLICE_MS;
    let outcome: Outcome | undefined;
    while (!outcome) {
      const now = performance.now();
      if (now >= end) break;
      if (this.#stopRequested) outcome = { reason: 'stopped' };
      else outcome = this.#launch(now);
      if (this.#pendCount > 0) {
        const n = this.#pending.poll(this.#pending.capacity, outcome || this.#launchBlocked() ? 2 : 0);
        if (n > 0) this.#harvest(performance.now());
        this.#expire(performance.now());
      } else if (!outcome && this.#launchBlocked()) {
        break;
      }
      if (outcome && this.#pendCount > 0 && outcome.reason !== 'stopped') outcome = undefined;
    }
    const now = performance.now();
    if (now - this.#lastReport >= REPORT_MS || outcome) {
      this.#lastReport = now;
      send({ type: 'progress', stats: this.stats() });
    }
    if (outcome) {
      this.#abandonPending();
      this.#state = 'hold';
      send({ type: 'done', reason: outcome.reason, errno: outcome.errno, stats: this.stats() });
      if (this.#stopRequested) send({ type: 'checked', stats: this.stats() });
      return;
    }
    if (this.#launchBlocked() && this.#pendCount === 0) setTimeout(this.#tick, 1);
    else setImmediate(this.#tick);
  };

  /** True when nothing can be launched right now (rate cap, concurrency, caps or backoff, or the sink's accept queue). */
  #launchBlocked(): boolean {
    return this.#starved || this.#freeCount === 0 || (this.#c.rate > 0 && this.#tokens < 1) || this.#sinkBehind();
  }

  #probe = 0;

  /**
   * True while the sink's accept queue is more than half full: connecting
   * faster would overflow it and the kernel would drop SYNs (1 s retransmits).
   * Samples one listener per call, in turn.
   */
  #sinkBehind(): boolean {
    const n = this.#c.listeners;
    if (n === 0) return false;
    const q = ffi.listenQueue(3 + (this.#probe++ % n));
    return q > this.#c.backlog / 2;
  }

  /** Starts connects until concurrency, quota, rate or the pools say stop; returns why the ramp ends, if it does. */
  #launch(now: number): { reason: 'quota' | 'limit' | 'nothing-left'; errno?: string } | undefined {
    if (this.#sinkBehind()) return undefined;
    if (this.#c.rate > 0) {
      this.#tokens = Math.min(this.#c.rate / 10 + 1, this.#tokens + ((now - this.#lastRefill) * this.#c.rate) / 1000);
      this.#lastRefill = now;
    }
    // Small batches between polls: a connect's latency should not include launching hundreds of others.
    for (let batch = 0; batch < LAUNCH_BATCH && this.#freeCount > 0; batch++) {
      if (this.#handed + this.#held + this.#pendCount >= this.#quota) return this.#pendCount === 0 ? { reason: 'quota' } : undefined;
      if (this.#held + this.#pendCount >= this.#batch) {
        // Descriptors all in use: once what is in flight has settled, a holder takes them.
        if (this.#pendCount > 0) return undefined;
        const failed = this.#handOver();
        if (failed) return failed;
      }
      if (this.#live.length === 0) return { reason: 'nothing-left', errno: this.#lastPoolErrno };
      if (this.#c.rate > 0 && this.#tokens < 1) return undefined;
      const combo = this.#nextCombo(now);
      this.#starved = combo === undefined;
      if (combo === undefined) return undefined;
      if (this.#c.rate > 0) this.#tokens--;
      const r = this.#attempt(combo, now);
      if (r) return r;
    }
    return undefined;
  }

  /**
   * The next live combo whose target is under its cap and not backing off;
   * undefined when there is none now. With caps (the queue sink) the targets
   * are filled one after the other, as the C reference does: the listener,
   * its queue and its port pool stay in the cache. Without, round-robin, so
   * a real server's ports share the load.
   */
  #nextCombo(now: number): Combo | undefined {
    const live = this.#live;
    if (this.#c.caps !== null) {
      // Skip the targets already full with nothing in flight (combos are in target order): they stay full.
      while (this.#fillFrom < live.length && this.#filled(live[this.#fillFrom].target)) this.#fillFrom++;
      this.#rr = this.#fillFrom;
    }
    for (let tries = 0; tries < live.length; tries++) {
      const combo = live[this.#rr++ % live.length];
      const t = combo.target;
      if (this.#used[t] >= this.#cap[t]) continue;
      // Backing off: wait for the retry time, and then one attempt at a time until one succeeds.
      if (this.#backoff[t] > 0 && (now < this.#retryAt[t] || this.#inFlight[t] > 0)) continue;
      return combo;
    }
    return undefined;
  }

  /** Target t holds its cap with nothing in flight to it: it stays full. */
  #filled(t: number): boolean {
    return this.#used[t] - this.#inFlight[t] >= this.#cap[t];
  }

  #lastPoolErrno = 'EADDRNOTAVAIL';

  /** One connect; returns an outcome only when a limit stops this worker. */
  #attempt(combo: Combo, now: number): { reason: 'limit'; errno: string } | undefined {
    const c = this.#c;
    const target = this.#targetAddrs[combo.target];
    // Not close-on-exec: a holder inherits it (see the top of this file).
    const fd = ffi.socket(target.length === 16 ? 4 : 6, true, false);
    this.#attempts++;
    if (fd < 0) return this.#fail(combo, -1, fd);
    if (c.close === 'rst') ffi.setLinger0(fd);
    const how = this.#spec.socket.bind;
    let r = prepareSocket(fd, this.#spec, this.#reuseAddr, this.#sourceAddrs[combo.source]);
    if (how === 'own-port') {
      const src = this.#sourceAddrs[combo.source];
      for (;;) {
        if (combo.cursor >= this.#explicitPorts.length) {
          ffi.close(fd);
          this.#attempts--;
          this.#poolFull(combo, 'EADDRNOTAVAIL', false);
          return undefined;
        }
        ffi.setSockaddrPort(src, this.#explicitPorts[combo.cursor++]);
        r = ffi.bind(fd, src);
        // A listener or a socket without SO_REUSEADDR owns this port: skip it.
        if (r === -ffi.EADDRINUSE) continue;
        break;
      }
    }
    if (r >= 0) r = ffi.connect(fd, target);
    if (r === 0 || r === -ffi.EINPROGRESS) {
      this.#used[combo.target]++;
      this.#inFlight[combo.target]++;
      const slot = this.#freeSlots[--this.#freeCount];
      this.#pendStart[slot] = now;
      this.#pendCombo[slot] = combo.id;
      this.#pending.set(slot, fd, ffi.POLLOUT);
      return undefined;
    }
    // Explicit: the 4-tuple from this port is taken; the next port may do.
    if (how === 'own-port' && r === -ffi.EADDRNOTAVAIL) {
      ffi.close(fd);
      this.#attempts--;
      return undefined;
    }
    return this.#fail(combo, fd, r);
  }

  #fail(combo: Combo, fd: number, negErrno: number): { reason: 'limit'; errno: string } | undefined {
    if (fd >= 0) ffi.close(fd);
    const name = ffi.errnoName(negErrno);
    this.#errors[name] = (this.#errors[name] ?? 0) + 1;
    const meaning = errnoMeaning(name, this.#c.strategy);
    if (meaning.backoff) this.#backOff(combo.target, name);
    if (meaning.effect === 'pool') this.#poolFull(combo, name, true);
    else if (meaning.effect === 'stop') return { reason: 'limit', errno: name };
    return undefined;
  }

  /** A hard error from target t: wait twice as long as last time before the next attempt (BACKOFF_MIN_MS..BACKOFF_MAX_MS). */
  #backOff(t: number, errno: string): void {
    this.#backoff[t] = Math.min(BACKOFF_MAX_MS, this.#backoff[t] > 0 ? this.#backoff[t] * 2 : BACKOFF_MIN_MS);
    this.#retryAt[t] = performance.now() + this.#backoff[t];
    this.#hardError = { errno, destination: fmtTarget(this.#c.targets[t]) };
  }

  /** A connect to target t ended: it no longer counts in flight, nor (unless held) against the cap. */
  #settled(t: number, held: boolean): void {
    this.#inFlight[t]--;
    if (!held) this.#used[t]--;
    // A slot freed under a cap, or a backoff ended: launching may go on.
    this.#starved = false;
  }

  #poolFull(combo: Combo, errno: string, announce: boolean): void {
    this.#lastPoolErrno = errno;
    this.exclude(combo.key);
    if (announce) send({ type: 'exhausted', key: combo.key, errno });
  }

  /** The connects the last poll reported: held, or failed. */
  #harvest(now: number): void {
    for (let slot = 0; slot < this.#pending.capacity; slot++) {
      const re = this.#pending.revents(slot);
      if (re) this.#done(slot, re, now);
    }
  }

  /** One connect ended (`re`: its poll events). */
  #done(slot: number, re: number, now: number): void {
    const fd = this.#pending.fd(slot);
    if (fd < 0) return;
    const combo = this.#combos[this.#pendCombo[slot]];
    // A failed connect always sets POLLERR (tcp_poll reports sk_err): only then is SO_ERROR worth a syscall.
    const bad = re & (ffi.POLLERR | ffi.POLLHUP);
    const err = bad ? ffi.socketError(fd) : 0;
    const start = this.#pendStart[slot];
    this.#removePending(slot);
    this.#settled(combo.target, !bad);
    if (bad) {
      this.#fail(combo, fd, -(err || ffi.ECONNRESET));
      return;
    }
    this.#backoff[combo.target] = 0;
    this.#connected++;
    this.#fds[this.#held++] = fd;
    combo.held++;
    this.#sourceHeld[combo.source]++;
    const ms = now - start;
    const b = bucketOf(ms);
    this.#latency[b]++;
    if (ms > this.#latencyMax) this.#latencyMax = ms;
    const occ = this.#occupancy(combo);
    this.#byOcc[Math.min(9, Math.max(0, Math.floor(occ * 10)))][b]++;
  }

  /** How full the pool this connection drew from was, 0..1 (other workers counted as of this worker's start). */
  #occupancy(combo: Combo): number {
    const c = this.#c;
    if (c.poolSize <= 0) return 0;
    if (this.#spec.portPickedBy === 'bind') return this.#sourceHeld[combo.source] / c.poolSize;
    if (this.#spec.portPickedBy === 'program') return combo.cursor / Math.max(1, this.#explicitPorts.length);
    const sources = this.#spec.sources === 'none' ? 1 : Math.max(1, c.sources.length);
    return ((c.heldPerTarget[combo.target] ?? 0) / sources + combo.held) / c.poolSize;
  }

  /** Frees a slot (the kernel skips a negative fd). */
  #removePending(slot: number): void {
    this.#pending.set(slot, -1, 0);
    this.#freeSlots[this.#freeCount++] = slot;
  }

  /** Connects older than the timeout fail with ETIMEDOUT; checked every 10 ms at most. */
  #expire(now: number): void {
    if (now - this.#lastExpire < 10) return;
    this.#lastExpire = now;
    for (let slot = 0; slot < this.#pending.capacity; slot++) {
      const fd = this.#pending.fd(slot);
      if (fd < 0 || now - this.#pendStart[slot] < this.#c.connectTimeoutMs) continue;
      const combo = this.#combos[this.#pendCombo[slot]];
      this.#removePending(slot);
      this.#settled(combo.target, false);
      this.#fail(combo, fd, -ffi.ETIMEDOUT);
    }
  }

  #abandonPending(): void {
    for (let slot = 0; slot < this.#pending.capacity; slot++) {
      const fd = this.#pending.fd(slot);
      if (fd < 0) continue;
      const target = this.#combos[this.#pendCombo[slot]].target;
      this.#removePending(slot);
      ffi.close(fd);
      this.#settled(target, false);
    }
  }

  /**
   * Hands every descriptor this process holds to a new holder process, which
   * inherits them at fork (spawn forks and execs before it returns), then
   * closes its own copies. An outcome when no holder can be started (the
   * process table or memory is full): that is where this worker stops.
   */
  #handOver(): { reason: 'limit'; errno: string } | undefined {
    if (this.#held === 0) return undefined;
    // One pipe for all this worker's holders: they read its end as stdin; the worker keeps the other (close-on-exec, so no holder has it).
    if (this.#lifeline === undefined) {
      const p = ffi.pipe();
      if (typeof p === 'number') return { reason: 'limit', errno: ffi.errnoName(p) };
      this.#lifeline = p;
    }
    let child: ChildProcess;
    let spawnError: string | undefined;
    try {
      child = spawn('/bin/sh', ['-c', HOLDER_SCRIPT], { stdio: [this.#lifeline[0], 'ignore', 'ignore'] });
    } catch (err) {
      return { reason: 'limit', errno: (err as NodeJS.ErrnoException).code ?? 'EAGAIN' };
    }
    child.on('error', (err: NodeJS.ErrnoException) => (spawnError = err.code));
    if (child.pid === undefined) {
      // spawn reports its errno (EAGAIN, ENOMEM, EMFILE) on the next tick; the name in the report is the generic one.
      return { reason: 'limit', errno: spawnError ?? 'EAGAIN' };
    }
    const holder: Holder = { child, connections: this.#held, exited: false };
    child.on('exit', () => {
      holder.exited = true;
      this.#onHolderExit(holder);
    });
    this.#holders.push(holder);
    for (let i = 0; i < this.#held; i++) ffi.close(this.#fds[i]);
    this.#handed += this.#held;
    this.#held = 0;
    send({ type: 'holder', pid: child.pid, connections: holder.connections });
    return undefined;
  }

  /** A holder gone before closing (killed from outside): its connections are lost. */
  #onHolderExit(h: Holder): void {
    if (this.#state === 'closing') return this.#closedOne?.();
    this.#handed -= h.connections;
    this.#lost += h.connections;
    send({ type: 'progress', stats: this.stats() });
  }

  #closedOne: (() => void) | undefined;
  /** The pipe whose read end every holder waits on: when this process is gone, its write end closes and they all end. */
  #lifeline: [number, number] | undefined;

  /**
   * Closes every connection (RST when close is 'rst': SO_LINGER 0 was set at
   * creation): its own descriptors, then every holder, killed; resolves once
   * every holder has exited, that is, once the kernel has closed its sockets.
   */
  async closeAll(): Promise<number> {
    this.#state = 'closing';
    this.#abandonPending();
    const n = this.#held + this.#handed;
    for (let i = 0; i < this.#held; i++) ffi.close(this.#fds[i]);
    this.#held = 0;
    const live = this.#holders.filter((h) => !h.exited);
    await new Promise<void>((resolve) => {
      let left = live.length;
      if (left === 0) return resolve();
      this.#closedOne = () => {
        if (--left === 0) resolve();
      };
      for (const h of live) h.child.kill('SIGKILL');
    });
    this.#handed = 0;
    return n;
  }

  get closing(): boolean {
    return this.#state === 'closing';
  }

  /** Kills every holder at once (the coordinator is gone). */
  killHolders(): void {
    for (const h of this.#holders) if (!h.exited) h.child.kill('SIGKILL');
  }
}

let worker: ClientWorker | undefined;
ignoreGroupSignals();

process.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'start': {
      const config = msg.config as ClientConfig;
      const nofile = raiseNofile(config.nofile);
      // Keep room for the descriptors node itself holds (stdio, IPC, epoll, ...). A forced low
      // limit (config.nofile) is left to bite, as it would in a misconfigured process: EMFILE.
      const batch = config.nofile === undefined ? Math.max(1, nofile.soft - 64 - config.listeners) : config.quota;
      worker = new ClientWorker(config, config.quota, batch, nofile.soft);
      send({ type: 'ready', pid: process.pid, nofile });
      worker.start();
      break;
    }
    case 'exclude':
      worker?.exclude(msg.key);
      break;
    case 'stop':
      worker?.stop();
      break;
    case 'close':
      void (worker?.closeAll() ?? Promise.resolve(0)).then((closed) => {
        send({ type: 'closed', closed });
        process.disconnect?.();
        process.exit(0);
      });
      break;
  }
});
// The coordinator gone means nobody will ever tell us to close: do it now.
process.on('disconnect', () => {
  if (worker?.closing) return;
  worker?.killHolders();
  process.exit(0);
});
