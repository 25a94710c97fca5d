/** How a client socket is prepared before connect(), as its strategy's spec says: shared by the probe's client workers and `load --churn`. */
import * as ffi from '../kernel/ffi.js';
import type { StrategySpec } from '../model/strategy.js';

/**
 * SO_REUSEADDR when asked, then the strategy's bind: none, the address with
 * IP_BIND_ADDRESS_NO_PORT, or the address with port 0. An own port
 * (`own-port`) is left to the caller, which picks it. Returns 0 or -errno.
 */
export function prepareSocket(fd: number, spec: StrategySpec, reuseAddr: boolean, source: Buffer): number {
  if (reuseAddr) ffi.setReuseAddr(fd, true);
  switch (spec.socket.bind) {
    case 'address':
      ffi.setBindAddressNoPort(fd);
      return ffi.bind(fd, source);
    case 'any-port':
      return ffi.bind(fd, source);
    default:
      return 0;
  }
}
