/** What client and sink workers share: IPC sending and the open-files limit. */
import * as ffi from '../kernel/ffi.js';
import type { FromWorker } from './protocol.js';

/** Sends one message to the coordinator (a no-op once it is gone). */
export function send(msg: FromWorker): void {
  if (process.connected) process.send?.(msg);
}

/**
 * Raises the soft open-files limit to the hard one (or sets `soft` when a
 * test asks for a low one); returns the limits in force.
 */
export function raiseNofile(soft?: number): { soft: number; hard: number } {
  const cur = ffi.getNofileLimit();
  ffi.setNofileLimit(soft ?? cur.hard, cur.hard);
  return ffi.getNofileLimit();
}
