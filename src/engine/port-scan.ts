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
import type { Endpoints } from '../model/address.js';
import { PortPressure, STATE, type PortPressureReport, type PressureFacts } from '../model/port-pressure.js';
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
}

/** The socket table's reader: the one place to change for another source. */
function readTable(root: string, onRow: (row: TcpRow) => void, states: ReadonlySet<number>): { rows: number; errors: string[]; source: SocketTableSource } {
  // The aggregation reads rxQueue of listeners only (their accept queue).
  return scanSockets(onRow, { states, root, unreadBytes: false });
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
  const agg = new PortPressure({ range: facts.portRange.known ? facts.portRange.value : null, states: options.states, match: destinationMatcher(options.to), localPorts: options.localPorts });
  const onRow = (row: TcpRow): void => agg.add(row);
  const first = readTable(root, onRow, LISTEN_ONLY);
  const rest = new Set(options.states ?? ALL_STATES);
  rest.delete(STATE.LISTEN);
  const second = rest.size ? readTable(root, onRow, rest) : { rows: 0, errors: [], source: first.source };
  const errors = [...new Set([...first.errors, ...second.errors])];
  const rows = first.rows + second.rows;
  if (rows === 0 && errors.length >= 2) throw new UnsupportedError(`cannot read the socket table: ${errors.join('; ')}`);
  const report = agg.result(facts);
  return { report, scanMs: performance.now() - start, source: second.source, rows, errors, at: Date.now() };
}
