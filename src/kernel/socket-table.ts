/**
 * The socket table, from the fastest source that works: netlink sock_diag
 * through the FFI, else /proc/net/tcp (also the reader for fixture trees,
 * through `root`). FOURTUPLE_NO_SOCK_DIAG=1 forces the /proc path.
 */
import { ffiAvailable } from './ffi.js';
import { scanProcNetTcp, type TcpRow } from './proc-net-tcp.js';
import { matchesFilter, scanSockDiag, type SockDiagFilter } from './sock-diag.js';

/** Where the rows came from. */
export type SocketTableSource = 'netlink' | 'proc';

/** Options of scanSockets. */
export interface ScanSocketsOptions {
  /** TCP_STATES indexes to keep (the kernel filters them on the netlink path); all when omitted. */
  readonly states?: ReadonlySet<number>;
  /** Root of /proc; anything but `/` (a fixture tree) reads /proc/net/tcp under it. Default `/`. */
  readonly root?: string;
  /** Port filter, in the kernel on the netlink path, in JS on the /proc path. */
  readonly filter?: SockDiagFilter;
}

/** Result of scanSockets. */
export interface ScanSocketsResult {
  /** Rows delivered to onRow. */
  rows: number;
  /** Failures of the source used, one line each; rows delivered before a failure stay delivered. */
  errors: string[];
  source: SocketTableSource;
  /** Why netlink was tried and not used, when the /proc path ran after it. */
  fallbackReason?: string;
}

/** Calls `onRow` for every TCP socket of the table that passes `states` and `filter`. Never throws for an unreadable table. */
export function scanSockets(onRow: (row: TcpRow) => void, options: ScanSocketsOptions = {}): ScanSocketsResult {
  const root = options.root ?? '/';
  const { states, filter } = options;
  let fallbackReason: string | undefined;
  if (root === '/' && process.env.FOURTUPLE_NO_SOCK_DIAG !== '1' && ffiAvailable()) {
    const r = scanSockDiag(onRow, { states, filter });
    // Only a netlink that failed before delivering anything is replaced: mixing sources would duplicate rows.
    if (r.rows > 0 || r.errors.length === 0) return { rows: r.rows, errors: r.errors, source: 'netlink' };
    fallbackReason = r.errors.join('; ');
  }
  let rows = 0;
  const sink = filter
    ? (row: TcpRow): void => {
        if (matchesFilter(row, filter)) {
          rows++;
          onRow(row);
        }
      }
    : onRow;
  const r = scanProcNetTcp(root, sink, states);
  const result: ScanSocketsResult = { rows: filter ? rows : r.rows, errors: r.errors, source: 'proc' };
  if (fallbackReason !== undefined) result.fallbackReason = fallbackReason;
  return result;
}
