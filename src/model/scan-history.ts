/**
 * What changed per destination between two successive scans of the socket
 * table (the watch view): the trend of its used ports, and its new
 * connections per second. Pure: no I/O.
 *
 * New connections. Toward one destination (source, destination address,
 * destination port) the local port names a socket, so a socket is new when
 * the previous scan saw no socket on its port, or saw that port in
 * TIME_WAIT and it is now in another state (a TIME_WAIT never comes back:
 * connect() took its 4-tuple over). What this misses: a connection that
 * opens and is gone again between two scans (the server closed first, or
 * its TIME_WAIT was taken over again), and one that takes a TIME_WAIT over
 * and is in TIME_WAIT again by the next scan. When this host closes first
 * and does not take TIME_WAIT over, every connection stays 60 s in
 * TIME_WAIT, longer than any refresh, and is counted.
 *
 * Memory: the previous scan's used count and port arrays per destination
 * (two bytes per socket, kept by reference) and one 64 KiB scratch table.
 */
import { destinationKey, type DestinationPressure, type LocalPorts } from './port-pressure.js';

const SEEN_LIVE = 1;
const SEEN_TIME_WAIT = 2;

/** Per destinationKey, per second since the previous scan. */
export interface ScanChanges {
  /** Change of `used`. */
  readonly trend: Map<string, number>;
  /** Sockets on ports the previous scan did not see toward that destination. */
  readonly newPerSecond: Map<string, number>;
}

interface Seen {
  readonly used: number;
  readonly ports: LocalPorts;
}

/** Remembers the last scan and tells what changed since. */
export class ScanHistory {
  #previous: Map<string, Seen> | undefined;
  #previousAt = 0;
  /** Per port, what the previous scan saw toward the destination at hand; zeroed after each destination. */
  readonly #seen = new Uint8Array(65536);

  /**
   * What changed since the previous call, for every destination of this
   * scan (`at`: its time in ms); both maps are empty on the first call (no
   * previous scan) or when no time has passed.
   */
  update(destinations: readonly DestinationPressure[], at: number): ScanChanges {
    const changes: ScanChanges = { trend: new Map(), newPerSecond: new Map() };
    const current = new Map<string, Seen>();
    for (const d of destinations) current.set(destinationKey(d), { used: d.used, ports: d.localPorts });
    const previous = this.#previous;
    const seconds = (at - this.#previousAt) / 1000;
    this.#previous = current;
    this.#previousAt = at;
    if (!previous || seconds <= 0) return changes;
    for (const [key, now] of current) {
      const before = previous.get(key);
      changes.trend.set(key, (now.used - (before?.used ?? 0)) / seconds);
      changes.newPerSecond.set(key, this.#fresh(before?.ports, now.ports) / seconds);
    }
    return changes;
  }

  /** Sockets of `now` that `before` did not have. */
  #fresh(before: LocalPorts | undefined, now: LocalPorts): number {
    if (!before) return now.live.length + now.timeWait.length;
    const seen = this.#seen;
    for (const p of before.live) seen[p] = SEEN_LIVE;
    for (const p of before.timeWait) seen[p] = SEEN_TIME_WAIT;
    let fresh = 0;
    for (const p of now.live) if (seen[p] !== SEEN_LIVE) fresh++;
    for (const p of now.timeWait) if (seen[p] === 0) fresh++;
    for (const p of before.live) seen[p] = 0;
    for (const p of before.timeWait) seen[p] = 0;
    return fresh;
  }
}
