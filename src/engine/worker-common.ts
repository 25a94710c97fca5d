/** What client and sink workers share: IPC sending, the open-files limit, the pace of held-connection checks. */
import * as ffi from '../kernel/ffi.js';
import type { FromWorker } from './protocol.js';

/** Sends one message to the coordinator (a no-op once it is gone, even if the channel closes mid-call). */
export function send(msg: FromWorker): void {
  if (!process.connected) return;
  try {
    process.send?.(msg);
  } catch {
    // The coordinator is gone; 'disconnect' closes everything.
  }
}

/**
 * A worker never dies of a signal meant for the run: Ctrl-C sends SIGINT to
 * the whole process group, a closed terminal SIGHUP, a service manager
 * SIGTERM to the whole group. The coordinator gets them too and tells the
 * workers to close; if it dies instead, 'disconnect' does the same.
 */
export function ignoreGroupSignals(): void {
  const ignore = (): void => {};
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, ignore);
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

/** A client checks the connections it holds for resets this often at most. */
export const HOLD_CHECK_MS = 2000;
/** Share of one core that all clients' checks together may take while holding. */
export const HOLD_CHECK_SHARE = 0.02;
/** A client checks at least this often, however dear its checks. */
export const HOLD_CHECK_MAX_MS = 60_000;

/**
 * How long a client waits between two checks of what it holds: every 2 s,
 * or less often when `clients` checks of `sweepMs` each would take more than
 * HOLD_CHECK_SHARE of a core (polling a descriptor costs about as much as a
 * connect, and at a million 51 clients polling every 2 s took a fifth of a
 * core while idle).
 */
export function holdCheckInterval(sweepMs: number, clients: number): number {
  const spaced = (Math.max(0, sweepMs) * Math.max(1, clients)) / HOLD_CHECK_SHARE;
  return Math.round(Math.min(HOLD_CHECK_MAX_MS, Math.max(HOLD_CHECK_MS, spaced)));
}
