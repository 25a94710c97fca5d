/** Pure arithmetic on sets of TCP ports kept as sorted, disjoint, inclusive ranges. */

/** An inclusive range of ports, `lo <= hi`. */
export interface PortRange {
  readonly lo: number;
  readonly hi: number;
}

/** An immutable set of ports. Ranges are sorted, disjoint and not adjacent. */
export class PortSet {
  readonly ranges: readonly PortRange[];

  constructor(ranges: Iterable<PortRange> = []) {
    this.ranges = normalize([...ranges]);
  }

  /** The set `lo..hi` (empty when `hi < lo`). */
  static range(lo: number, hi: number): PortSet {
    return new PortSet(hi < lo ? [] : [{ lo, hi }]);
  }

  /** The set of the given ports. */
  static of(...ports: number[]): PortSet {
    return new PortSet(ports.map((p) => ({ lo: p, hi: p })));
  }

  /** Number of ports in the set. */
  get size(): number {
    let n = 0;
    for (const r of this.ranges) n += r.hi - r.lo + 1;
    return n;
  }

  get isEmpty(): boolean {
    return this.ranges.length === 0;
  }

  has(port: number): boolean {
    for (const r of this.ranges) {
      if (port < r.lo) return false;
      if (port <= r.hi) return true;
    }
    return false;
  }

  union(other: PortSet): PortSet {
    return new PortSet([...this.ranges, ...other.ranges]);
  }

  intersect(other: PortSet): PortSet {
    const out: PortRange[] = [];
    let i = 0;
    let j = 0;
    const a = this.ranges;
    const b = other.ranges;
    while (i < a.length && j < b.length) {
      const lo = Math.max(a[i].lo, b[j].lo);
      const hi = Math.min(a[i].hi, b[j].hi);
      if (lo <= hi) out.push({ lo, hi });
      if (a[i].hi < b[j].hi) i++;
      else j++;
    }
    return new PortSet(out);
  }

  subtract(other: PortSet): PortSet {
    const out: PortRange[] = [];
    for (const r of this.ranges) {
      let lo = r.lo;
      for (const s of other.ranges) {
        if (s.hi < lo) continue;
        if (s.lo > r.hi) break;
        if (s.lo > lo) out.push({ lo, hi: s.lo - 1 });
        lo = s.hi + 1;
        if (lo > r.hi) break;
      }
      if (lo <= r.hi) out.push({ lo, hi: r.hi });
    }
    return new PortSet(out);
  }

  /** Every port in ascending order. */
  *[Symbol.iterator](): IterableIterator<number> {
    for (const r of this.ranges) for (let p = r.lo; p <= r.hi; p++) yield p;
  }

  /** `7000-7039,8080` (the kernel's and the CLI's notation). */
  toString(): string {
    return this.ranges.map((r) => (r.lo === r.hi ? `${r.lo}` : `${r.lo}-${r.hi}`)).join(',');
  }

  toJSON(): string {
    return this.toString();
  }
}

function normalize(ranges: PortRange[]): PortRange[] {
  const sorted = ranges.filter((r) => r.lo <= r.hi).sort((x, y) => x.lo - y.lo);
  const out: { lo: number; hi: number }[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.lo <= last.hi + 1) last.hi = Math.max(last.hi, r.hi);
    else out.push({ lo: r.lo, hi: r.hi });
  }
  return out;
}
