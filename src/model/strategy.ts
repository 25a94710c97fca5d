/**
 * How a client chooses the source of its connections: one object per
 * strategy, read by the model (which pool a connection draws from, the
 * constraint it yields, the kernel path that picks the port) and by the
 * engine (how a socket is prepared, which pool a failure empties), so the
 * two cannot drift apart.
 */
import type { ConstraintId } from './limits.js';

/** How a client chooses the source of its connections. */
export type Strategy = 'auto' | 'bind' | 'nopo' | 'explicit';

/** One strategy, as the model and the engine both use it. */
export interface StrategySpec {
  readonly id: Strategy;
  /** What it does, in one line. */
  readonly words: string;
  /** How the socket is prepared before connect(). */
  readonly socket: {
    /**
     * `none`: no bind(); `address`: bind(address, 0) with
     * IP_BIND_ADDRESS_NO_PORT, the port picked at connect(); `any-port`:
     * bind(address, 0), the port picked now; `own-port`: bind(address, port),
     * the program picks.
     */
    readonly bind: 'none' | 'address' | 'any-port' | 'own-port';
    /** SO_REUSEADDR: `always`, `default` (on unless the program says no: --reuseaddr no), `never`. */
    readonly reuseAddr: 'always' | 'default' | 'never';
  };
  /**
   * Which kernel path picks the source port: `connect` (__inet_hash_connect:
   * per destination, tcp_tw_reuse decides on TIME_WAIT 4-tuples), `bind`
   * (inet_csk_find_open_port: before the destination is known), `program`
   * (the port is given; a bound socket takes a TIME_WAIT 4-tuple over).
   */
  readonly portPickedBy: 'connect' | 'bind' | 'program';
  /** Source addresses: `none` (the kernel picks one per destination), `optional`, `required` (bind needs one; without, the wildcard). */
  readonly sources: 'none' | 'optional' | 'required';
  /** The constraint a used-up pool yields. */
  readonly constraint: Extract<ConstraintId, 'ephemeral-ports' | 'bind-pool' | 'explicit-ports'>;
  /**
   * The pool a connection from source index `s` to destination id `d` draws
   * from: connections with the same key share ports, so a full pool stops
   * exactly those.
   */
  poolKey(s: number, d: number): string;
}

const auto: StrategySpec = {
  id: 'auto',
  words: 'connect() without bind(): the kernel picks the source address and port per destination',
  socket: { bind: 'none', reuseAddr: 'never' },
  portPickedBy: 'connect',
  sources: 'none',
  constraint: 'ephemeral-ports',
  poolKey: (_s, d) => `t:${d}`,
};

const bind: StrategySpec = {
  id: 'bind',
  words: 'bind(address, 0) then connect(): the port is picked before the destination is known',
  socket: { bind: 'any-port', reuseAddr: 'default' },
  portPickedBy: 'bind',
  sources: 'required',
  constraint: 'bind-pool',
  poolKey: (s) => `s:${s}`,
};

const nopo: StrategySpec = {
  id: 'nopo',
  words: 'IP_BIND_ADDRESS_NO_PORT: bind the address, let connect() pick the port per destination',
  socket: { bind: 'address', reuseAddr: 'never' },
  portPickedBy: 'connect',
  sources: 'optional',
  constraint: 'ephemeral-ports',
  poolKey: (s, d) => `st:${s}:${d}`,
};

const explicit: StrategySpec = {
  id: 'explicit',
  words: 'bind(address, port) with SO_REUSEADDR: the program picks every source port itself',
  socket: { bind: 'own-port', reuseAddr: 'always' },
  portPickedBy: 'program',
  sources: 'optional',
  constraint: 'explicit-ports',
  poolKey: (s, d) => `st:${s}:${d}`,
};

/** Every strategy's spec. */
export const STRATEGY_SPECS: Readonly<Record<Strategy, StrategySpec>> = { auto, bind, nopo, explicit };

/** Every strategy, with what it does in one line. */
export const STRATEGIES: Readonly<Record<Strategy, string>> = {
  auto: auto.words,
  bind: bind.words,
  nopo: nopo.words,
  explicit: explicit.words,
};

/** True when `s` names a strategy. */
export function isStrategy(s: string): s is Strategy {
  return Object.hasOwn(STRATEGY_SPECS, s);
}

/** The spec of `s`. */
export function strategySpec(s: Strategy): StrategySpec {
  return STRATEGY_SPECS[s];
}

/** Whether a socket of strategy `s` sets SO_REUSEADDR, given what the program asked (`reuseAddr`, default yes). */
export function setsReuseAddr(s: Strategy, reuseAddr = true): boolean {
  const r = STRATEGY_SPECS[s].socket.reuseAddr;
  return r === 'always' || (r === 'default' && reuseAddr);
}
