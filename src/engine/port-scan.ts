/**
 * One scan of the kernel's socket table aggregated into port pressure per
 * destination: the facts the capacity needs, then two passes over the table
 * (LISTEN rows, then the rest) streamed into a PortPressure. Nothing per
 * socket is kept.
 */
import { performance } from 'node:perf_hooks';
import { InvalidArgumentError, UnsupportedError } from '../errors.js';
import { known } from '../kernel/fact.js';
import type { TcpRow } from '../kernel/proc-net-tcp.js';
import { readCapabilities, readInt, readInts, readMeminfo, readText } from '../kernel/procfs.js';
import { scanSockets, type SocketTableSource } from '../kernel/socket-table.js';
import type { OwnerFields } from '../kernel/bpf-iter.js';
import type { Endpoints } from '../model/address.js';
import { PortPressure, STATE, destinationKey, type PortPressureReport, type PressureFacts } from '../model/port-pressure.js';
import { cgroupPaths, describeCgroup, socketHolders, type CgroupInfo } from '../kernel/owners.js';
import { PortSet } from '../model/port-set.js';

/** What to scan. */
export interface PortScanOptions {
  /** Root folder holding proc/ (default `/`; anything else reads /proc/net/tcp under it). */
  readonly root?: string;
  /** Count only these states (TCP_STATES indexes); all when omitted. */
  readonly states?: ReadonlySet<number>;
  /** Keep only these destinations; all when empty or omitted. */
  readonly to?: readonly Endpoints[];
  /** Keep each destination's local ports, for a view that compares scans (ports --watch). */
  readonly localPorts?: boolean;
  /** Count each destination's sockets by the cgroup that holds them (BPF iterator only). */
  readonly byCgroup?: boolean;
  /** Name the processes holding each destination's sockets (BPF iterator for the inodes, then every /proc/PID/fd link: costly). */
  readonly pids?: boolean;
}

/** A process and how many of a destination's sockets it holds. */
export interface ProcessHold {
  readonly pid: number;
  readonly comm: string;
  readonly sockets: number;
}

/** Who holds the sockets, when asked (byCgroup, pids). */
export interface ScanOwners {
  /** The cgroups seen, by id (0: no owner, TIME_WAIT and request sockets). */
  readonly cgroups: ReadonlyMap<number, CgroupInfo>;
  /** Why who holds the sockets is not known: the scan did not use the BPF iterator. */
  readonly missing?: string;
  /** With pids: per destinationKey, the processes holding its sockets, most first; and what reading /proc cost. */
  readonly processes?: {
    readonly byDestination: ReadonlyMap<string, readonly ProcessHold[]>;
    readonly ms: number;
    readonly processes: number;
    readonly descriptors: number;
  };
}

/** A finished scan. */
export interface PortScan {
  readonly report: PortPressureReport;
  /** Wall time of the facts, both passes and the aggregation. */
  readonly scanMs: number;
  readonly source: SocketTableSource;
  /** Rows read, over both passes. */
  readonly rows: number;
  /** Read failures that did not stop the scan (one family unreadable, say). */
  readonly errors: readonly string[];
  /** When the scan finished (epoch ms). */
  readonly at: number;
  /** With byCgroup or pids. */
  readonly owners?: ScanOwners;
}

/** The socket table's reader: the one place to change for another source. */
function readTable(root: string, onRow: (row: TcpRow) => void, states: ReadonlySet<number>, owners?: OwnerFields): { rows: number; errors: string[]; source: SocketTableSource; ownersMissing?: string } {
  // The aggregation reads rxQueue of listeners only (their accept queue).
  return scanSockets(onRow, { states, root, unreadBytes: false, owners });
}

/** The few facts capacity, descriptors and memory need: cheap files only (the listeners come from the scan). */
export function readPressureFacts(root = '/'): PressureFacts {
  const sys = (p: string): string => `proc/sys/${p}`;
  const range = readInts(root, sys('net/ipv4/ip_local_port_range'), 2);
  const reserved = readText(root, sys('net/ipv4/ip_local_reserved_ports'));
  const fileNr = readInts(root, sys('fs/file-nr'), 3);
  return {
    portRange: range.known ? known({ lo: range.value[0], hi: range.value[1] }, range.source) : range,
    reservedPorts: reserved.known ? known(reserved.value.trim(), reserved.source) : reserved,
    unprivilegedPortStart: readInt(root, sys('net/ipv4/ip_unprivileged_port_start')),
    capabilities: readCapabilities(root),
    fileNr: fileNr.known ? known({ allocated: fileNr.value[0], free: fileNr.value[1], max: fileNr.value[2] }, fileNr.source) : fileNr,
    fileMax: readInt(root, sys('fs/file-max')),
    memAvailable: readMeminfo(root, 'MemAvailable'),
  };
}

const ALL_STATES = new Set(Array.from({ length: 13 }, (_, i) => i));
const LISTEN_ONLY: ReadonlySet<number> = new Set([STATE.LISTEN]);

/** A matcher for `--to` destinations; undefined for all. */
export function destinationMatcher(to: readonly Endpoints[] | undefined): ((address: string, port: number) => boolean) | undefined {
  if (!to || to.length === 0) return undefined;
  const sets = to.map((e) => ({ addresses: new Set(e.addresses), ports: e.ports }));
  return (address, port) => sets.some((s) => s.addresses.has(address) && s.ports.has(port));
}

/**
 * Scans the table once. Listeners are read first (a cheap pass on netlink,
 * where the kernel filters by state) so that every socket can be told client
 * from server side whatever order the reader delivers rows in.
 */
export function scanPorts(options: PortScanOptions = {}): PortScan {
  const to: unknown = options.to;
  if (to !== undefined && (!Array.isArray(to) || to.some((d) => typeof d !== 'object' || d === null || !Array.isArray((d as Endpoints).addresses) || !((d as Endpoints).ports instanceof PortSet)))) {
    throw new InvalidArgumentError('scanPorts: to: expected an array of parseEndpoints() results');
  }
  const root = options.root ?? '/';
  const start = performance.now();
  const facts = readPressureFacts(root);
  const owners = options.byCgroup === true || options.pids === true;
  const agg = new PortPressure({
    range: facts.portRange.known ? facts.portRange.value : null,
    states: options.states,
    match: destinationMatcher(options.to),
    localPorts: options.localPorts,
    cgroups: owners,
    inodes: options.pids === true,
  });
  const onRow = (row: TcpRow): void => agg.add(row);
  const first = readTable(root, onRow, LISTEN_ONLY);
  const rest = new Set(options.states ?? ALL_STATES);
  rest.delete(STATE.LISTEN);
  const second = rest.size ? readTable(root, onRow, rest, owners ? (options.pids ? 'cgroup+inode' : 'cgroup') : undefined) : { rows: 0, errors: [], source: first.source };
  const errors = [...new Set([...first.errors, ...second.errors])];
  const rows = first.rows + second.rows;
  if (rows === 0 && errors.length >= 2) throw new UnsupportedError(`cannot read the socket table: ${errors.join('; ')}`);
  const report = agg.result(facts);
  const scanOwners = owners ? ownersOf(report, options.pids === true, 'ownersMissing' in second ? second.ownersMissing : undefined) : undefined;
  return { report, scanMs: performance.now() - start, source: second.source, rows, errors, at: Date.now(), ...(scanOwners ? { owners: scanOwners } : {}) };
}

/** Names the cgroups the destinations' sockets are in and, with `pids`, their processes. */
function ownersOf(report: PortPressureReport, pids: boolean, missing: string | undefined): ScanOwners {
  if (missing !== undefined) return { cgroups: new Map(), missing };
  const ids = new Set<number>();
  for (const d of report.destinations) for (const c of d.cgroups ?? []) ids.add(c.id);
  const paths = cgroupPaths(ids);
  const cgroups = new Map<number, CgroupInfo>();
  for (const id of ids) cgroups.set(id, id === 0 ? { id, path: null } : describeCgroup(id, paths.get(id) ?? null));
  if (!pids) return { cgroups };
  const want = new Set<number>();
  for (const d of report.destinations) for (const i of d.inodes ?? []) want.add(i);
  const holders = socketHolders(want);
  const byDestination = new Map<string, ProcessHold[]>();
  for (const d of report.destinations) {
    const counts = new Map<number, { pid: number; comm: string; sockets: number }>();
    for (const i of d.inodes ?? []) {
      const p = holders.byInode.get(i);
      if (!p) continue;
      const c = counts.get(p.pid);
      if (c) c.sockets++;
      else counts.set(p.pid, { pid: p.pid, comm: p.comm, sockets: 1 });
    }
    byDestination.set(destinationKey(d), [...counts.values()].sort((a, b) => b.sockets - a.sockets || a.pid - b.pid));
  }
  return { cgroups, processes: { byDestination, ms: holders.ms, processes: holders.processes, descriptors: holders.descriptors } };
}
