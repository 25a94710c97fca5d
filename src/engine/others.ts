/**
 * Other programs on the host during a run: the CPU they took while the run
 * ramped, and the /proc/PID/fd entries a program that lists descriptors
 * (monitoring and security agents do) made the kernel cache for the run's
 * descriptors. Both slow a run down and add to its kernel memory without
 * being the run's own cost, so the report names them.
 */
import { readFileSync, readdirSync } from 'node:fs';

/** The kernel-thread flag of /proc/PID/stat's flags field (PF_KTHREAD). */
const PF_KTHREAD = 0x0020_0000;

/** One process as /proc/PID/stat shows it. */
export interface ProcStat {
  readonly name: string;
  /** utime + stime, in clock ticks. */
  readonly ticks: number;
  readonly kernelThread: boolean;
}

/** Parses /proc/PID/stat; null when malformed. The name sits in parentheses and may hold spaces and parentheses. */
export function parseProcStat(text: string): ProcStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  // Fields from the state (field 3) on: flags is field 9, utime 14, stime 15.
  const f = text.slice(close + 2).trim().split(/\s+/);
  const flags = Number(f[6]);
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  if (![flags, utime, stime].every(Number.isFinite)) return null;
  return { name: text.slice(open + 1, close), ticks: utime + stime, kernelThread: (flags & PF_KTHREAD) !== 0 };
}

/** Every process's CPU ticks and the machine's total ticks (every CPU, idle included) at one moment. */
export interface CpuSnapshot {
  readonly total: number;
  readonly procs: ReadonlyMap<number, ProcStat>;
}

/** Reads /proc/stat and every /proc/PID/stat under `root`; null when /proc/stat cannot be read. */
export function cpuSnapshot(root = '/'): CpuSnapshot | null {
  let total: number;
  try {
    const line = /^cpu\s+(.*)$/m.exec(readFileSync(`${root}proc/stat`, 'utf8'));
    if (!line) return null;
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    total = line[1].trim().split(/\s+/).slice(0, 8).map(Number).reduce((a, b) => a + b, 0);
  } catch {
    return null;
  }
  const procs = new Map<number, ProcStat>();
  let entries: string[];
  try {
    entries = readdirSync(`${root}proc`);
  } catch {
    return null;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const s = parseProcStat(readFileSync(`${root}proc/${e}/stat`, 'utf8'));
      if (s) procs.set(Number(e), s);
    } catch {
      // Gone since the listing.
    }
  }
  return { total, procs };
}

/** What the other programs took between two snapshots: shares of all the CPU time there was. */
export interface OthersCpu {
  /** CPU time of user-space processes outside the run, over all CPU time (every core) between the snapshots. */
  readonly share: number;
  /** The one that took the most, when any took some. */
  readonly top: { readonly pid: number; readonly name: string; readonly share: number } | null;
}

/**
 * CPU taken between `a` and `b` by user-space processes that are not in
 * `ours` (kernel threads, such as those doing the network's soft
 * interrupts for the run, are left out). A process started after `a`
 * counts from zero; one gone before `b` cannot be counted.
 */
export function othersCpu(a: CpuSnapshot, b: CpuSnapshot, ours: ReadonlySet<number>): OthersCpu | null {
  const span = b.total - a.total;
  if (!(span > 0)) return null;
  let sum = 0;
  let top: { pid: number; name: string; ticks: number } | null = null;
  for (const [pid, s] of b.procs) {
    if (ours.has(pid) || s.kernelThread) continue;
    const before = a.procs.get(pid);
    const d = s.ticks - (before && before.name === s.name ? before.ticks : 0);
    if (d <= 0) continue;
    sum += d;
    if (!top || d > top.ticks) top = { pid, name: s.name, ticks: d };
  }
  return { share: sum / span, top: top && { pid: top.pid, name: top.name, share: top.ticks / span } };
}

/**
 * Bytes of the kernel's cached /proc inodes and their dentries (from
 * /proc/slabinfo, readable by root only); null when unreadable. Listing
 * /proc/PID/fd caches one of each per descriptor listed.
 */
export function procEntryBytes(root = '/'): number | null {
  let text: string;
  try {
    text = readFileSync(`${root}proc/slabinfo`, 'utf8');
  } catch {
    return null;
  }
  const cache = (name: string): { objects: number; size: number } | null => {
    const m = new RegExp(`^${name}\\s+(\\d+)\\s+\\d+\\s+(\\d+)`, 'm').exec(text);
    return m ? { objects: Number(m[1]), size: Number(m[2]) } : null;
  };
  const inodes = cache('proc_inode_cache');
  const dentry = cache('dentry');
  if (!inodes || !dentry) return null;
  return inodes.objects * (inodes.size + dentry.size);
}
