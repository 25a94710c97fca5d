/**
 * The gateway's connection tracking table, per destination: how much of
 * each destination's NAT pool (public address, port) is in use. Parsed from
 * /proc/net/nf_conntrack, whose lines read
 *
 *   ipv4 2 tcp 6 117 ESTABLISHED src=10.77.1.10 dst=10.78.0.100 sport=40001 dport=7000
 *     src=10.78.0.100 dst=10.78.0.1 sport=7000 dport=20013 [ASSURED] mark=0 zone=0 use=2
 *
 * (one line): the original direction first, then the reply direction. An
 * entry is source-NATed when the reply's destination is not the original
 * source: that (address, port) is then taken from the destination's pool.
 */
import { formatEndpoint } from '../model/address.js';

/** One destination's entries in one reading of the table. */
export interface ConntrackDestination {
  /** `ADDRESS:PORT` (IPv6 in brackets). */
  readonly destination: string;
  /** TCP entries toward it, any state. */
  readonly entries: number;
  /** Of those, source-NATed: each holds one (public address, port) of the pool. */
  readonly natted: number;
  /** Public addresses the NATed entries use. */
  readonly addresses: readonly string[];
}

function field(line: string, key: string, from: number): { value: string; end: number } | null {
  const at = line.indexOf(` ${key}=`, from);
  if (at < 0) return null;
  const start = at + key.length + 2;
  let end = line.indexOf(' ', start);
  if (end < 0) end = line.length;
  return { value: line.slice(start, end), end };
}

/** Groups a reading of /proc/net/nf_conntrack by original destination; TCP only. Pure. */
export function conntrackByDestination(text: string): ConntrackDestination[] {
  const by = new Map<string, { entries: number; natted: number; addresses: Set<string> }>();
  for (const line of text.split('\n')) {
    if (!/^ipv[46]\s+\d+\s+tcp\s/.test(line)) continue;
    const src = field(line, 'src', 0);
    const dst = src && field(line, 'dst', src.end);
    const dport = dst && field(line, 'dport', dst.end);
    const replyDst = dport && field(line, 'dst', field(line, 'src', dport.end)?.end ?? dport.end);
    if (!src || !dst || !dport || !replyDst) continue;
    const key = formatEndpoint(dst.value, dport.value);
    let d = by.get(key);
    if (!d) by.set(key, (d = { entries: 0, natted: 0, addresses: new Set() }));
    d.entries++;
    if (replyDst.value !== src.value) {
      d.natted++;
      d.addresses.add(replyDst.value);
    }
  }
  return [...by].map(([destination, d]) => ({ destination, entries: d.entries, natted: d.natted, addresses: [...d.addresses].sort() })).sort(byUse);
}

/** The fullest first, then by name (code point order). */
function byUse(a: ConntrackDestination, b: ConntrackDestination): number {
  return b.natted - a.natted || b.entries - a.entries || (a.destination < b.destination ? -1 : a.destination > b.destination ? 1 : 0);
}

/** Highest reading per destination over several readings. */
export class ConntrackPeaks {
  readonly #peaks = new Map<string, ConntrackDestination>();

  add(reading: readonly ConntrackDestination[]): void {
    for (const d of reading) {
      const p = this.#peaks.get(d.destination);
      if (!p || d.natted > p.natted || (d.natted === p.natted && d.entries > p.entries)) this.#peaks.set(d.destination, d);
    }
  }

  get peaks(): ConntrackDestination[] {
    return [...this.#peaks.values()].sort(byUse);
  }
}
