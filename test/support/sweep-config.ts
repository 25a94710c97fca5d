/**
 * The differential sweep's configurations: a seeded generator of kernel
 * settings, sockets already present, destinations, sources, strategy and
 * who is asking. Pure: the same seed gives the same configuration anywhere,
 * so a disagreement found by a soak is reproduced by its seed alone.
 */

import { formatEndpoint } from '../../dist/model/address.js';

/** The probe's target in every configuration: above every pool the generator makes, except root's explicit one. */
export const CAP = 3000;

/** Who runs `limits` and `probe`. */
export type Who = 'root' | 'caps' | 'user';

/** One configuration of the sweep. */
export interface SweepConfig {
  readonly seed: number;
  readonly family: 'v4' | 'v6' | 'mapped';
  /** net.ipv4.ip_local_port_range. */
  readonly range: readonly [number, number];
  /** net.ipv4.ip_local_reserved_ports ('' for none). */
  readonly reserved: string;
  /** net.ipv4.ip_unprivileged_port_start. */
  readonly unprivilegedPortStart: number;
  readonly autobindReuse: 0 | 1;
  /** SO_REUSEADDR on the client's sockets (bind strategy; explicit always sets it). */
  readonly reuseAddr: boolean;
  /** net.ipv4.tcp_tw_reuse. */
  readonly twReuse: 0 | 1 | 2;
  /** TIME_WAIT sockets made toward the first destination before the run (this host closes first). */
  readonly timeWait: number;
  /** Listeners besides the destinations (the ones inside the range take a port out of the pool). */
  readonly listeners: readonly { readonly address: string; readonly port: number }[];
  /** --from addresses (empty: the kernel picks). */
  readonly sources: readonly string[];
  /** --to values. */
  readonly destinations: readonly string[];
  readonly strategy: 'auto' | 'bind' | 'nopo' | 'explicit';
  readonly who: Who;
  /** Addresses to add to lo before the run (v6 ones; 127/8 is on lo already). */
  readonly addresses: readonly string[];
  /**
   * After the probe, `load --churn` at the rate that uses the pools up in
   * 1.5 s against a server that closes when the client does: with
   * tcp_tw_reuse 0 no port comes back within the run, so exactly the pools
   * connect, then EADDRNOTAVAIL, when the model says.
   */
  readonly churn: boolean;
}

/** mulberry32: a small, well-mixed 32-bit generator; enough for picking configurations. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}


/** The configuration of `seed`. */
export function configFor(seed: number): SweepConfig {
  const r = rng(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];

  const family = pick(['v4', 'v4', 'v4', 'v6', 'mapped'] as const);
  const strategy = pick(['auto', 'auto', 'bind', 'nopo', 'explicit'] as const);
  // Sizes 1 to a few hundred, small ones often (edges of the kernel's loops), odd and even bounds alike.
  const size = pick([1, 2, 3, 4, 5, int(6, 40), int(6, 40), int(41, 120), int(121, 300)]);
  // Explicit ports are every unprivileged port, so the sweep raises ip_unprivileged_port_start near
  // the top; the kernel keeps it at or below the range's start, so the range goes above it.
  // The destinations' ports are above it too, or an unprivileged sink could not listen on them.
  const explicit = strategy === 'explicit';
  const unprivilegedPortStart = explicit ? int(65000, 65535 - size - 20) : pick([1024, 1024, int(1, 1023)]);
  const lo = explicit ? int(unprivilegedPortStart + 10, 65535 - size + 1) : int(20000, 60000);
  const portBase = explicit ? unprivilegedPortStart : 7000;
  const hi = lo + size - 1;
  const range: [number, number] = [lo, hi];

  const reservedKind = pick(['none', 'none', 'single', 'span', 'low-edge', 'high-edge', 'whole', 'outside'] as const);
  const inRange = (): number => int(lo, hi);
  let reserved = '';
  switch (reservedKind) {
    case 'single':
      reserved = String(inRange());
      break;
    case 'span': {
      const a = inRange();
      reserved = `${a}-${Math.min(hi, a + int(0, Math.max(0, Math.floor(size / 3))))}`;
      break;
    }
    case 'low-edge':
      reserved = `${lo - int(0, 5)}-${lo + int(0, Math.floor(size / 4))}`;
      break;
    case 'high-edge':
      reserved = `${hi - int(0, Math.floor(size / 4))}-${hi + int(0, 5)}`;
      break;
    case 'whole':
      reserved = `${lo}-${hi}`;
      break;
    case 'outside':
      reserved = hi + 20 <= 65535 ? `${hi + 10}-${hi + 20}` : `${lo - 20}-${lo - 10}`;
      break;
  }
  // The kernel takes ports up to 65535 only.
  reserved = reserved.replace(/\d+/g, (p) => String(Math.min(65535, Number(p))));

  const who = pick(['root', 'root', 'caps', 'user'] as const);

  const dstAddrs = family === 'v4' ? ['127.0.0.1', '127.0.0.2', '127.0.0.3'] : family === 'v6' ? ['fd00::1', 'fd00::2', 'fd00::3'] : ['::ffff:127.0.0.1', '::ffff:127.0.0.2', '::ffff:127.0.0.3'];
  const srcAddrs = family === 'v4' ? ['127.0.1.1', '127.0.1.2', '127.0.1.3'] : family === 'v6' ? ['fd00::11', 'fd00::12', 'fd00::13'] : ['::ffff:127.0.1.1', '::ffff:127.0.1.2', '::ffff:127.0.1.3'];
  const nDst = pick([1, 1, 2, 3]);
  const destinations: string[] = [];
  if (nDst > 1 && r() < 0.5) {
    // Several ports of one address.
    const p = explicit ? portBase : int(7000, 7100);
    destinations.push(formatEndpoint(dstAddrs[0], `${p}-${p + nDst - 1}`));
  } else {
    for (let i = 0; i < nDst; i++) destinations.push(formatEndpoint(dstAddrs[i], portBase + i));
  }
  // auto lets the kernel pick the source; the others bind one (bind, explicit) or may (nopo).
  const nSrc = strategy === 'auto' ? 0 : strategy === 'nopo' ? pick([0, 1, 2, 3]) : pick([1, 1, 2, 3]);
  const sources = srcAddrs.slice(0, nSrc);

  const listeners: { address: string; port: number }[] = [];
  const nListen = pick([0, 0, 1, 2]);
  for (let i = 0; i < nListen && size > 1; i++) {
    const l = { address: r() < 0.5 ? dstAddrs[0] : srcAddrs[2], port: inRange() };
    if (!listeners.some((x) => x.address === l.address && x.port === l.port)) listeners.push(l);
  }

  const twReuse = pick([0, 1, 2] as const);
  const timeWait = r() < 0.3 ? int(1, Math.max(1, Math.floor(size / 2))) : 0;
  const addresses = family === 'v6' ? [...dstAddrs, ...srcAddrs] : [];
  const autobindReuse = pick([0, 1] as const);
  const reuseAddr = r() < 0.7 || strategy !== 'bind';
  // Drawn last, so every other setting of a seed is what it was before churn cases existed.
  const churn = (strategy === 'auto' || strategy === 'nopo') && twReuse === 0 && timeWait === 0 && r() < 0.6;
  return {
    seed,
    family,
    range,
    reserved,
    unprivilegedPortStart,
    autobindReuse,
    reuseAddr,
    twReuse,
    timeWait,
    listeners,
    sources,
    destinations,
    strategy,
    who,
    addresses,
    churn,
  };
}
