/** Memory readings for the probe report: user space per process (PSS) and the kernel's slab and socket pages. */
import { readFileSync } from 'node:fs';

/** Proportional set size of a process in bytes (shared pages divided among their users), or 0 if gone. */
export function pssBytes(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Kernel memory that grows with sockets: slab (both kinds) plus TCP buffer pages from /proc/net/sockstat. */
export function kernelSocketBytes(): number {
  let total = 0;
  try {
    const mi = readFileSync('/proc/meminfo', 'utf8');
    for (const key of ['SReclaimable', 'SUnreclaim']) {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(mi);
      if (m) total += Number(m[1]) * 1024;
    }
    const ss = readFileSync('/proc/net/sockstat', 'utf8');
    const m = /^TCP:.*\bmem (\d+)/m.exec(ss);
    if (m) total += Number(m[1]) * 4096;
  } catch {
    // Unknown stays 0: the report says so.
  }
  return total;
}

/** MemAvailable from /proc/meminfo in bytes (everything the run costs the host, user and kernel), or null. */
export function memAvailableBytes(): number | null {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}
