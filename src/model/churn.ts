/**
 * The churn ceiling: how many new connections per second one pool of source
 * ports sustains when this host closes first, so that every closed
 * connection keeps its 4-tuple in TIME_WAIT. Pure: no I/O.
 *
 * What the kernel does (Linux 6.x, measured in namespaces with a 100-port
 * range; see the README):
 * - TIME_WAIT lasts TCP_TIMEWAIT_LEN, 60 s, fixed (tcp_fin_timeout is
 *   FIN_WAIT2's timer, not TIME_WAIT's): a pool of P ports sustains P ÷ 60.
 * - connect() picking the port itself (no bind, or IP_BIND_ADDRESS_NO_PORT)
 *   takes a TIME_WAIT 4-tuple over when tcp_tw_reuse is 1, or 2 and either
 *   end is loopback, with TCP timestamps, once the TIME_WAIT is older than
 *   tcp_tw_reuse_delay ms (6.13+; 1 s before): P ÷ delay.
 * - A socket bound to its port before connect() takes a TIME_WAIT 4-tuple
 *   over whatever tcp_tw_reuse says (with timestamps), but bind(address, 0)
 *   never hands out a port a TIME_WAIT holds unless ip_autobind_reuse is 1
 *   and the socket has SO_REUSEADDR (then only once the range is used up).
 * - Past tcp_max_tw_buckets TIME_WAIT sockets the kernel keeps no more: a
 *   close beyond it frees its port at once.
 * - When the server closes first, the TIME_WAIT is on the server: the
 *   client's port is free at once.
 */
import type { KernelFacts } from '../kernel/facts.js';
import { isLoopback } from './address.js';
import { strategySpec, type Strategy } from './strategy.js';
import type { Limits } from './limits.js';

/** TCP_TIMEWAIT_LEN: seconds a TIME_WAIT socket holds its 4-tuple (a kernel constant). */
export const TIME_WAIT_SECONDS = 60;

/** tcp_tw_reuse_delay before it became a sysctl (6.13), and its default since. */
export const DEFAULT_TW_REUSE_DELAY_MS = 1000;

/** The facts the churn ceiling reads. */
export type ChurnFacts = Pick<KernelFacts, 'tcpTwReuse' | 'tcpTwReuseDelay' | 'tcpTimestamps' | 'tcpMaxTwBuckets' | 'ipAutobindReuse' | 'kernelRelease'>;

/** What the churn ceiling is asked. */
export interface ChurnInput {
  readonly facts: ChurnFacts;
  readonly strategy: Strategy;
  /** Source ports in one pool (per (source, destination), or per source address for strategy bind); null when unknown. */
  readonly portsPerPool: number | null;
  /** Every 4-tuple has a loopback end (127/8, ::1, ::ffff:127.x): what tcp_tw_reuse 2 asks. */
  readonly loopback: boolean;
  /** Pools that may churn at once (they share tcp_max_tw_buckets); default 1. */
  readonly pools?: number;
  /** SO_REUSEADDR before bind(address, 0) (strategy bind; default true, as the probe and libuv do). */
  readonly reuseAddr?: boolean;
}

/** The churn ceiling. */
export interface Churn {
  /** New connections per second one pool sustains when this host closes first; null when TIME_WAIT does not limit it (or the pool is unknown: the detail says which). */
  readonly perPool: number | null;
  readonly timeWaitSeconds: typeof TIME_WAIT_SECONDS;
  /** net.ipv4.tcp_tw_reuse, or null when unknown. */
  readonly twReuse: number | null;
  /** The age in ms past which tcp_tw_reuse takes a TIME_WAIT over (the sysctl, or 1,000 before 6.13); null when unknown. */
  readonly reuseDelayMs: number | null;
  readonly detail: string;
  readonly remedy: string;
}

const fmt = (n: number): string => n.toLocaleString('en-US');

/** A rate (or seconds) for people: `1.67`, `33.33`, `470` (whole, rounded down, from 100 on: the ceiling is "at most"). */
export function ratePerSecond(n: number): string {
  return n >= 100 ? fmt(Math.floor(n)) : String(Math.round(n * 100) / 100);
}

/** Kernel release below 6.13 (no tcp_tw_reuse_delay sysctl: the delay is 1 s); null when unknown. */
function before613(facts: ChurnFacts): boolean | null {
  const m = facts.kernelRelease.known ? /^(\d+)\.(\d+)/.exec(facts.kernelRelease.value) : null;
  return m ? Number(m[1]) * 1000 + Number(m[2]) < 6013 : null;
}

/** The delay the kernel applies, with how it was found. */
function reuseDelay(facts: ChurnFacts): { ms: number | null; assumed: number; words: string } {
  if (facts.tcpTwReuseDelay.known) return { ms: facts.tcpTwReuseDelay.value, assumed: facts.tcpTwReuseDelay.value, words: `tcp_tw_reuse_delay ${fmt(facts.tcpTwReuseDelay.value)} ms` };
  if (before613(facts)) return { ms: DEFAULT_TW_REUSE_DELAY_MS, assumed: DEFAULT_TW_REUSE_DELAY_MS, words: 'the 1 s that kernels before 6.13 wait' };
  return { ms: null, assumed: DEFAULT_TW_REUSE_DELAY_MS, words: `tcp_tw_reuse_delay unknown (${facts.tcpTwReuseDelay.reason}), taken as the default 1,000 ms` };
}

/** A delay in ms for people: `1 s`, `2.5 s`, `0.2 s`, `5 ms`. */
function delayWords(ms: number): string {
  return ms >= 100 ? `${ratePerSecond(ms / 1000)} s` : `${ms} ms`;
}

function reuseWords(reuse: number): string {
  return reuse === 1 ? 'on' : reuse === 2 ? 'loopback only' : reuse === 0 ? 'off' : 'unknown';
}

/** The kernel's TIME_WAIT settings as the ceiling reports them. */
export type ChurnSettings = Pick<Churn, 'timeWaitSeconds' | 'twReuse' | 'reuseDelayMs'>;

/** TIME_WAIT's length, tcp_tw_reuse and the reuse delay in force (1,000 ms before 6.13), null where unknown. */
export function churnSettings(facts: ChurnFacts): ChurnSettings {
  return { timeWaitSeconds: TIME_WAIT_SECONDS, twReuse: facts.tcpTwReuse.known ? facts.tcpTwReuse.value : null, reuseDelayMs: reuseDelay(facts).ms };
}

/**
 * New connections per second one pool of source ports sustains when this
 * host closes first, from the kernel facts and the way the source is chosen.
 */
export function churnCeiling(input: ChurnInput): Churn {
  const { facts, strategy, loopback } = input;
  const P = input.portsPerPool;
  const pools = Math.max(1, input.pools ?? 1);
  const settings = churnSettings(facts);
  const twReuse = settings.twReuse;
  const delay = reuseDelay(facts);
  const out = (perPool: number | null, detail: string, remedy: string): Churn => ({ perPool, ...settings, detail, remedy });
  const serverFirst = 'if the server closes first, the TIME_WAIT is its own and ports here come back at once';
  const tw = `${TIME_WAIT_SECONDS} s in TIME_WAIT`;
  if (P === null) return out(null, `unknown: the ports per pool are unknown (the ephemeral range could not be read); each port is held ${tw} after this host closes`, '');

  // The kernel's default is 2 and timestamps default on: an unreadable fact is taken as the default, and said so.
  const reuse = twReuse ?? 2;
  const reuseNote = twReuse === null ? ` (tcp_tw_reuse unknown: ${facts.tcpTwReuse.known ? '' : facts.tcpTwReuse.reason}; taken as the default 2)` : '';
  const timestamps = !facts.tcpTimestamps.known || facts.tcpTimestamps.value !== 0;
  const autobind = facts.ipAutobindReuse.known && facts.ipAutobindReuse.value === 1 && (input.reuseAddr ?? true);
  const reused = ratePerSecond((P * 1000) / Math.max(1, delay.assumed));
  const pool = `${fmt(P)} port${P === 1 ? '' : 's'}`;
  const fixed = '(TCP_TIMEWAIT_LEN, fixed: tcp_fin_timeout does not shorten it)';
  const moreSources = 'add destination ports or source addresses (each adds a pool)';

  let perPool: number | null;
  let detail: string;
  let remedy: string;
  if (strategy === 'explicit' || (strategy === 'bind' && autobind)) {
    const how =
      strategy === 'explicit'
        ? 'bind(address, port) with SO_REUSEADDR binds over a TIME_WAIT and connect() takes its 4-tuple over whatever tcp_tw_reuse says'
        : 'bind(address, 0) hands out ports TIME_WAIT holds once the range is used up (ip_autobind_reuse 1 with SO_REUSEADDR), and connect() takes their 4-tuples over whatever tcp_tw_reuse says (now and then EADDRNOTAVAIL, when it hands out a port a live connection to the same destination holds)';
    if (timestamps) return out(null, `no churn ceiling from TIME_WAIT: ${how}, since TCP timestamps are on`, '');
    perPool = P / TIME_WAIT_SECONDS;
    detail = `${pool} ÷ ${tw} ${fixed}: ${how} only with TCP timestamps, and tcp_timestamps is 0`;
    remedy = `sysctl -w net.ipv4.tcp_timestamps=1 (TIME_WAIT 4-tuples are then taken over at once); or let the server close first; or ${moreSources}`;
  } else if (strategy === 'bind') {
    perPool = P / TIME_WAIT_SECONDS;
    detail = `${pool} per source address, shared by every destination, ÷ ${tw} ${fixed}: bind(address, 0) never hands out a port a TIME_WAIT socket holds, whatever tcp_tw_reuse says (now ${reuse}: ${reuseWords(reuse)})`;
    remedy = `set IP_BIND_ADDRESS_NO_PORT before bind (--strategy nopo) with net.ipv4.tcp_tw_reuse=1, or net.ipv4.ip_autobind_reuse=1 with SO_REUSEADDR; or let the server close first; or add source addresses`;
  } else {
    const applies = reuse === 1 || (reuse === 2 && loopback);
    const how = strategy === 'nopo' ? 'connect() (IP_BIND_ADDRESS_NO_PORT) picks the port' : 'connect() picks the port';
    if (applies && timestamps) {
      perPool = (P * 1000) / Math.max(1, delay.assumed);
      const which = reuse === 2 ? 'tcp_tw_reuse 2 and the destination is loopback' : 'tcp_tw_reuse 1';
      detail = `${pool} ÷ ${delayWords(delay.assumed)}: ${how} and takes a TIME_WAIT 4-tuple over once it is older than ${delay.words} (${which}, TCP timestamps on)${reuseNote}`;
      remedy = `lower net.ipv4.tcp_tw_reuse_delay (6.13+; ms); or let the server close first; or ${moreSources}`;
    } else {
      perPool = P / TIME_WAIT_SECONDS;
      const why =
        applies
          ? `tcp_tw_reuse ${reuse} would let connect() take a TIME_WAIT 4-tuple over, but only with TCP timestamps, and tcp_timestamps is 0`
          : reuse === 2
            ? `tcp_tw_reuse 2: loopback only, and not every destination is loopback (a loopback one gets about ${reused}/s)`
            : `tcp_tw_reuse ${reuse}: connect() never takes a TIME_WAIT 4-tuple over`;
      detail = `${pool} ÷ ${tw} ${fixed}; ${why}${reuseNote}`;
      remedy = applies
        ? `sysctl -w net.ipv4.tcp_timestamps=1; or let the server close first; or ${moreSources}`
        : `sysctl -w net.ipv4.tcp_tw_reuse=1 (then about ${reused}/s: TIME_WAIT is taken over after ${delayWords(delay.assumed)}, with TCP timestamps${timestamps ? '' : ': also sysctl -w net.ipv4.tcp_timestamps=1'}); or let the server close first; or ${moreSources}`;
    }
  }

  const buckets = facts.tcpMaxTwBuckets.known ? facts.tcpMaxTwBuckets.value : null;
  if (buckets !== null && buckets < P) {
    return out(
      null,
      `no churn ceiling from TIME_WAIT: tcp_max_tw_buckets ${fmt(buckets)} is smaller than the pool of ${pool}, and past it the kernel keeps no more TIME_WAIT sockets (a close then frees its port at once, "time wait bucket table overflow"); otherwise ${detail}`,
      '',
    );
  }
  if (buckets !== null && pools > 1 && buckets < pools * P) {
    detail += `; tcp_max_tw_buckets ${fmt(buckets)} holds fewer than ${fmt(pools)} pools × ${pool}: with more than ${fmt(Math.floor(buckets / P))} pools churning at once, closes past it skip TIME_WAIT and free their ports at once`;
  }
  return out(perPool, `${detail}; ${serverFirst}`, remedy);
}

/** What a destination of the socket table needs for its ceiling. */
export interface ChurnDestination {
  readonly source: string;
  readonly destination: string;
  readonly capacity: number | null;
  readonly pool: 'ephemeral' | 'explicit';
}

/**
 * The churn ceiling of each destination of a scan: its capacity as the
 * pool, loopback when either end is (what tcp_tw_reuse 2 checks), `pools`
 * destinations sharing tcp_max_tw_buckets. `strategy` null: auto, or
 * explicit for a destination reached from ports outside the range. Answers
 * are shared between destinations alike, so a scan of many costs little.
 */
export function destinationCeilings(facts: ChurnFacts, strategy: Strategy | null, pools: number): (d: ChurnDestination) => Churn {
  const answers = new Map<string, Churn>();
  const loopbacks = new Map<string, boolean>();
  const loopback = (address: string): boolean => {
    let l = loopbacks.get(address);
    if (l === undefined) loopbacks.set(address, (l = isLoopback(address)));
    return l;
  };
  return (d) => {
    const s: Strategy = strategy ?? (d.pool === 'explicit' ? 'explicit' : 'auto');
    const either = loopback(d.destination) || loopback(d.source);
    const key = `${s}|${d.capacity}|${either}`;
    let c = answers.get(key);
    if (!c) answers.set(key, (c = churnCeiling({ facts, strategy: s, portsPerPool: d.capacity, loopback: either, pools })));
    return c;
  };
}

/**
 * The churn ceiling of the pools a `computeLimits` answer found: bind(address,
 * 0) has one pool per source address, the others one per (source,
 * destination); `loopback` when every destination is.
 */
export function churnOfLimits(limits: Pick<Limits, 'strategy' | 'sourceCount' | 'destinationCount' | 'portsPerDestination'>, facts: ChurnFacts, loopback: boolean, reuseAddr?: boolean): { churn: Churn; pools: number } {
  const pools = strategySpec(limits.strategy).portPickedBy === 'bind' ? limits.sourceCount : limits.sourceCount * limits.destinationCount;
  return { churn: churnCeiling({ facts, strategy: limits.strategy, portsPerPool: limits.portsPerDestination, loopback, pools, reuseAddr }), pools };
}
