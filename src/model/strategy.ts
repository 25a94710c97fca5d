/** How a client chooses the source of its connections. */
export type Strategy = 'auto' | 'bind' | 'nopo' | 'explicit';

/** Every strategy, with what it does in one line. */
export const STRATEGIES: Readonly<Record<Strategy, string>> = {
  auto: 'connect() without bind(): the kernel picks the source address and port per destination',
  bind: 'bind(address, 0) then connect(): the port is picked before the destination is known',
  nopo: 'IP_BIND_ADDRESS_NO_PORT: bind the address, let connect() pick the port per destination',
  explicit: 'bind(address, port) with SO_REUSEADDR: the program picks every source port itself',
};

/** True when `s` names a strategy. */
export function isStrategy(s: string): s is Strategy {
  return Object.hasOwn(STRATEGIES, s);
}
