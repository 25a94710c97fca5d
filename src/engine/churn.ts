/**
 * `load --churn R`: short-lived connections at R per second, each closed by
 * this side first (FIN), so each leaves its 4-tuple in TIME_WAIT here, as a
 * client that opens a connection per request does. It runs to its time bound
 * and says when the first connect failed and why: a rate above the pools'
 * churn ceiling runs out of ports after pool ÷ R seconds (no closed port
 * comes back before its TIME_WAIT, or the reuse delay, is over).
 *
 * One process is enough: a rate this loop keeps up with (thousands per
 * second) holds few descriptors at once. Sockets are prepared as the
 * strategy's spec says, as the probe's client workers do.
 */
import * as ffi from '../kernel/ffi.js';
import { formatEndpoint } from '../model/address.js';
import { explicitPorts } from '../model/pool.js';
import { setsReuseAddr, strategySpec, type Strategy } from '../model/strategy.js';
import type { Target } from './protocol.js';
import { prepareSocket } from './socket-prep.js';
import { InvalidArgumentError } from '../errors.js';
import { scanSockets } from '../kernel/socket-table.js';
import { TCP_TIME_WAIT } from '../kernel/linux.js';

/** What a churn run is asked to do. */
export interface ChurnOptions {
  /** New connections per second, over every pool. */
  readonly rate: number;
  readonly durationS: number;
  readonly to: readonly Target[];
  readonly from: readonly string[];
  readonly strategy: Strategy;
  readonly reuseAddr: boolean;
  /** First port an explicit bind may use (strategy explicit). */
  readonly explicitStart: number;
  readonly connectTimeoutMs: number;
  readonly signal?: AbortSignal;
  /** Called about every second with the counts so far. */
  readonly onProgress?: (p: ChurnProgress) => void;
}

/** Counts so far. */
export interface ChurnProgress {
  readonly elapsedS: number;
  readonly connected: number;
  readonly failed: number;
}

/** One second of the run. */
export interface ChurnSecond {
  /** Seconds since the start, at the end of this second. */
  readonly t: number;
  readonly connected: number;
  readonly failed: number;
}

/** What a churn run did. */
export interface ChurnResult {
  readonly rate: number;
  readonly durationS: number;
  readonly attempts: number;
  /** Connected and closed (FIN first) at once. */
  readonly connected: number;
  readonly failed: Readonly<Record<string, number>>;
  /** The first connect that failed: when (seconds since the start), why and toward what; null when none did. */
  readonly firstFailure: { readonly atS: number; readonly errno: string; readonly destination: string } | null;
  readonly timeline: readonly ChurnSecond[];
  /**
   * TIME_WAIT sockets toward the destinations when the run ended, by the
   * kernel's count: the 4-tuples this side still keeps (null when the table
   * could not be read). Below `connected` when some connections ended
   * without one (reset, or closed by the server first).
   */
  readonly timeWaitLeft: number | null;
  /** Connects not started on time because every slot was in flight (a slow or silent destination): the rate fell short by these. */
  readonly skipped: number;
  readonly stoppedBy: 'time' | 'signal';
}

/** Connects in flight at once, at most: a rate needs few unless the destination is slow. */
const MAX_IN_FLIGHT = 1024;

interface Pool {
  readonly source: number;
  readonly target: number;
  /** Explicit: the next index into the port list. */
  cursor: number;
}

/** Runs to the time bound (or the signal); never throws for a failed connect. */
export async function runChurn(o: ChurnOptions): Promise<ChurnResult> {
  if (!(o.rate > 0) || o.to.length === 0) throw new InvalidArgumentError(`runChurn: expected a rate above 0 and at least one destination (rate ${o.rate}, ${o.to.length} destinations)`);
  const spec = strategySpec(o.strategy);
  const reuse = setsReuseAddr(o.strategy, o.reuseAddr);
  const family = o.to[0].address.includes(':') ? 6 : 4;
  const targets = o.to.map((t) => ffi.sockaddr(t.address, t.port));
  const sources = (o.from.length ? o.from : [family === 6 ? '::' : '0.0.0.0']).map((s) => ffi.sockaddr(s, 0));
  const ports = spec.socket.bind === 'own-port' ? [...explicitPorts(o.explicitStart)] : [];
  const pools: Pool[] = [];
  for (let s = 0; s < (spec.sources === 'none' ? 1 : sources.length); s++) for (let t = 0; t < targets.length; t++) pools.push({ source: s, target: t, cursor: 0 });

  const set = new ffi.PollSet(MAX_IN_FLIGHT);
  const started = new Float64Array(MAX_IN_FLIGHT);
  const poolOf = new Int32Array(MAX_IN_FLIGHT);
  const free: number[] = Array.from({ length: MAX_IN_FLIGHT }, (_, i) => MAX_IN_FLIGHT - 1 - i);
  const failed: Record<string, number> = {};
  const timeline: ChurnSecond[] = [];
  let firstFailure: ChurnResult['firstFailure'] = null;
  let attempts = 0;
  let connected = 0;
  let secConnected = 0;
  let secFailed = 0;
  let next = 0;
  const t0 = performance.now();
  const elapsed = (): number => (performance.now() - t0) / 1000;

  const fail = (pool: Pool, negErrno: number): void => {
    const errno = ffi.errnoName(negErrno);
    failed[errno] = (failed[errno] ?? 0) + 1;
    secFailed++;
    if (!firstFailure) firstFailure = { atS: elapsed(), errno, destination: formatEndpoint(o.to[pool.target].address, o.to[pool.target].port) };
  };

  /** Binds an explicit port: the pool's next one that bind() takes (a port another socket holds is passed over). */
  const bindOwn = (fd: number, pool: Pool): number => {
    let r = -ffi.EADDRNOTAVAIL;
    for (let tries = 0; tries < ports.length; tries++) {
      ffi.setSockaddrPort(sources[pool.source], ports[pool.cursor++ % ports.length]);
      r = ffi.bind(fd, sources[pool.source]);
      if (r !== -ffi.EADDRINUSE) break;
    }
    return r;
  };

  /** Prepares one socket as the strategy says and starts its connect; a failure at once is counted. */
  const launch = (index: number): void => {
    const pool = pools[index];
    attempts++;
    const fd = ffi.socket(family, true);
    if (fd < 0) return fail(pool, fd);
    let r = prepareSocket(fd, spec, reuse, sources[pool.source]);
    // A bound socket takes a TIME_WAIT 4-tuple over, so own ports are used in turn.
    if (spec.socket.bind === 'own-port') r = bindOwn(fd, pool);
    if (r >= 0) r = ffi.connect(fd, targets[pool.target]);
    if (r === 0 || r === -ffi.EINPROGRESS) {
      const slot = free.pop() as number;
      started[slot] = performance.now();
      poolOf[slot] = index;
      set.set(slot, fd, ffi.POLLOUT);
      return;
    }
    ffi.close(fd);
    fail(pool, r);
  };

  const settle = (slot: number, negErrno: number): void => {
    const fd = set.fd(slot);
    set.set(slot, -1, 0);
    free.push(slot);
    if (negErrno === 0) {
      connected++;
      secConnected++;
      // Closed by this side first: FIN, and the 4-tuple stays here in TIME_WAIT.
      ffi.close(fd);
      return;
    }
    ffi.close(fd);
    fail(pools[poolOf[slot]], negErrno);
  };

  let stoppedBy: ChurnResult['stoppedBy'] = 'time';
  let skipped = 0;
  let lastYield = performance.now();
  while (true) {
    const now = elapsed();
    if (o.signal?.aborted) {
      stoppedBy = 'signal';
      break;
    }
    if (now >= o.durationS) break;
    // Due by now at this rate, less what was launched (and skipped): the loop catches up after a slow turn.
    let due = Math.floor(o.rate * now) + 1 - attempts - skipped;
    while (due > 0 && free.length > 0) {
      launch(next++ % pools.length);
      due--;
    }
    // Every slot in flight: what is due now is skipped, not saved up for a burst when the destination answers again.
    if (due > 0) skipped += due;
    const wait = free.length === 0 ? 5 : Math.max(0, Math.min(5, (((attempts + skipped) / o.rate - now) * 1000) | 0));
    set.poll(MAX_IN_FLIGHT, wait);
    const at = performance.now();
    for (let slot = 0; slot < MAX_IN_FLIGHT; slot++) {
      if (set.fd(slot) < 0) continue;
      const re = set.revents(slot);
      if (re) settle(slot, re & (ffi.POLLERR | ffi.POLLHUP) ? -(ffi.socketError(set.fd(slot)) || ffi.ECONNRESET) : 0);
      else if (at - started[slot] > o.connectTimeoutMs) settle(slot, -ffi.ETIMEDOUT);
    }
    while (elapsed() >= timeline.length + 1) {
      timeline.push({ t: timeline.length + 1, connected: secConnected, failed: secFailed });
      secConnected = 0;
      secFailed = 0;
      o.onProgress?.({ elapsedS: elapsed(), connected, failed: Object.values(failed).reduce((a, b) => a + b, 0) });
    }
    // Let signals and timers in now and then.
    if (performance.now() - lastYield > 20) {
      await new Promise((res) => setImmediate(res));
      lastYield = performance.now();
    }
  }
  for (let slot = 0; slot < MAX_IN_FLIGHT; slot++) {
    const fd = set.fd(slot);
    if (fd < 0) continue;
    ffi.setLinger0(fd);
    ffi.close(fd);
  }
  if (secConnected || secFailed) timeline.push({ t: Math.round(elapsed() * 1000) / 1000, connected: secConnected, failed: secFailed });
  const durationS = elapsed();
  return { rate: o.rate, durationS, attempts, connected, failed, firstFailure, timeline, timeWaitLeft: timeWaitToward(o.to), skipped, stoppedBy };
}

/** TIME_WAIT sockets toward these destinations now, by the kernel's count; null when the table cannot be read. */
function timeWaitToward(to: readonly Target[]): number | null {
  const keys = new Set(to.map((t) => `${t.address}|${t.port}`));
  let n = 0;
  const r = scanSockets(
    (row) => {
      if (keys.has(`${row.remoteAddress}|${row.remotePort}`)) n++;
    },
    { states: new Set([TCP_TIME_WAIT]), unreadBytes: false },
  );
  return r.rows === 0 && r.errors.length > 0 ? null : n;
}
