/**
 * Readers for /proc files. Each takes a root folder (`/` on a live host, a
 * fixture tree in tests) and never throws: a missing or malformed file
 * becomes an unknown Fact with the reason.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Fact, known, unknown } from './fact.js';

/** Reads a whole file under `root`; the reason in words when it cannot. */
export function readText(root: string, path: string): Fact<string> {
  const full = join(root, path);
  try {
    return known(readFileSync(full, 'utf8'), path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'not present on this kernel or namespace' : e.code === 'EACCES' ? 'permission denied' : (e.code ?? e.message);
    return unknown(`${path}: ${why}`, path);
  }
}

/** Reads a file of whitespace-separated integers. */
export function readInts(root: string, path: string, count: number): Fact<number[]> {
  const text = readText(root, path);
  if (!text.known) return text;
  const parts = text.value.trim().split(/\s+/);
  const nums = parts.map(Number);
  if (parts.length < count || parts.slice(0, count).some((p) => !/^-?\d+$/.test(p))) {
    return unknown(`${path}: expected ${count} integer(s), read '${text.value.trim().slice(0, 60)}'`, path);
  }
  return known(nums.slice(0, count), path);
}

/** Reads a file holding one integer. */
export function readInt(root: string, path: string): Fact<number> {
  const f = readInts(root, path, 1);
  return f.known ? known(f.value[0], path) : f;
}

/** Reads `/proc/meminfo` field `key` in bytes. */
export function readMeminfo(root: string, key: string): Fact<number> {
  const path = 'proc/meminfo';
  const text = readText(root, path);
  if (!text.known) return text;
  const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text.value);
  return m ? known(Number(m[1]) * 1024, `${path} ${key}`) : unknown(`${path}: no ${key} line`, path);
}

/** Soft and hard RLIMIT_NOFILE of a process, from /proc/PID/limits. */
export function readNofile(root: string, pid: string | number = 'self'): Fact<{ soft: number; hard: number }> {
  const path = `proc/${pid}/limits`;
  const text = readText(root, path);
  if (!text.known) return text;
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text.value);
  if (!m) return unknown(`${path}: no 'Max open files' line`, path);
  const num = (s: string): number => (s === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(s));
  return known({ soft: num(m[1]), hard: num(m[2]) }, path);
}

/** Number of descriptors a process has open, from /proc/PID/fd. */
export function readOpenFds(root: string, pid: string | number = 'self'): Fact<number> {
  const path = `proc/${pid}/fd`;
  try {
    return known(readdirSync(join(root, path)).length, path);
  } catch (err) {
    return unknown(`${path}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`, path);
  }
}

/** The capabilities the model asks about, from a process's effective set. */
export interface Capabilities {
  /** CAP_NET_BIND_SERVICE: bind ports below ip_unprivileged_port_start. */
  readonly netBindService: boolean;
  /** CAP_SYS_ADMIN: open files past fs.file-max; write sysctls. */
  readonly sysAdmin: boolean;
  /** CAP_SYS_RESOURCE: raise the open-files hard limit up to fs.nr_open. */
  readonly sysResource: boolean;
  /** CAP_NET_ADMIN: network configuration (addresses, routes, nftables). */
  readonly netAdmin: boolean;
}

const CAP_NET_BIND_SERVICE = 10n;
const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;
const CAP_SYS_RESOURCE = 24n;

/** The effective capabilities of `pid` (CapEff in /proc/PID/status). */
export function readCapabilities(root: string, pid: string | number = 'self'): Fact<Capabilities> {
  const path = `proc/${pid}/status`;
  const text = readText(root, path);
  if (!text.known) return text;
  const m = /^CapEff:\s*([0-9a-f]+)$/im.exec(text.value);
  if (!m) return unknown(`${path}: no CapEff line`, path);
  const eff = BigInt(`0x${m[1]}`);
  const has = (bit: bigint): boolean => ((eff >> bit) & 1n) === 1n;
  // fs.file-max and the open-files hard limit are checked with capable(), in the host's user namespace:
  // capabilities held only inside a container's own user namespace (a uid_map other than the identity) do not count there.
  const map = readText(root, `proc/${pid}/uid_map`);
  const initial = !map.known || /^\s*0\s+0\s+4294967295\s*$/.test(map.value);
  return known(
    { netBindService: has(CAP_NET_BIND_SERVICE), sysAdmin: initial && has(CAP_SYS_ADMIN), sysResource: initial && has(CAP_SYS_RESOURCE), netAdmin: has(CAP_NET_ADMIN) },
    `${path} CapEff${initial ? '' : ', in a user namespace of its own'}`,
  );
}
