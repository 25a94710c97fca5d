/**
 * The socket table, from the fastest source that works: a BPF iterator
 * (bpf-iter.ts: root with BTF; about 35% less kernel time than sock_diag at
 * a million sockets) for scans that take connections, netlink sock_diag
 * through the FFI for the rest (a listeners-only scan, a port filter, no
 * CAP_BPF), else /proc/net/tcp (also the reader for fixture trees, through
 * `root`). FOURTUPLE_NO_BPF=1 skips the iterator; FOURTUPLE_NO_SOCK_DIAG=1
 * forces the /proc path.
 */
import { ffiAvailable } from './ffi.js';
import { TCP_LISTEN } from './linux.js';
import { iteratorMask, scanTcpIterator, tcpIterator, type OwnerFields } from './bpf-iter.js';
import { scanProcNetTcp, type TcpRow } from './proc-net-tcp.js';
import { ALL_CONNECTION_STATES, matchesFilter, scanSockDiag, stateMask, type SockDiagFilter } from './sock-diag.js';

/** Where the rows came from. */
export type SocketTableSource = 'bpf' | 'netlink' | 'proc';

const LISTEN_BIT = 1 << TCP_LISTEN;

/** Options of scanSockets. */
export interface ScanSocketsOptions {
  /** TCP_STATES indexes to keep (the kernel filters them on the netlink path); all when omitted. */
  readonly states?: ReadonlySet<number>;
  /** Root of /proc; anything but `/` (a fixture tree) reads /proc/net/tcp under it. Default `/`. */
  readonly root?: string;
  /** Port filter, in the kernel on the netlink path, in JS on the /proc path. */
  readonly filter?: SockDiagFilter;
  /**
   * false: the caller does not need a connection's unread bytes, so the BPF
   * iterator may leave rxQueue 0 for connections (listeners keep their
   * accept queue). Other sources fill it anyway. Default true.
   */
  readonly unreadBytes?: boolean;
  /**
   * 'cgroup': rows carry `cgroup`; 'cgroup+inode': and `inode` (who holds each socket). Only the
   * BPF iterator reads them; other sources leave them out, and the result
   * says why in `ownersMissing`.
   */
  readonly owners?: OwnerFields;
}

/** Result of scanSockets. */
export interface ScanSocketsResult {
  /** Rows delivered to onRow. */
  rows: number;
  /** Failures of the source used, one line each; rows delivered before a failure stay delivered. */
  errors: string[];
  source: SocketTableSource;
  /** Why a faster source was not used, when one was tried (the BPF iterator, netlink). */
  fallbackReason?: string;
  /** Asked for owners but the rows have none: why. */
  ownersMissing?: string;
}

/** Calls `onRow` for every TCP socket of the table that passes `states` and `filter`. Never throws for an unreadable table. */
export function scanSockets(onRow: (row: TcpRow) => void, options: ScanSocketsOptions = {}): ScanSocketsResult {
  const root = options.root ?? '/';
  const { states, filter } = options;
  const passedOver: string[] = [];
  const result = (source: SocketTableSource, rows: number, errors: string[]): ScanSocketsResult => {
    const r: ScanSocketsResult = passedOver.length ? { rows, errors, source, fallbackReason: passedOver.join('; ') } : { rows, errors, source };
    if (options.owners && source !== 'bpf') r.ownersMissing = `who holds each socket is read by the BPF iterator only (root, with BTF); this scan used ${source}${passedOver.length ? ` (${passedOver.join('; ')})` : ''}`;
    return r;
  };
  // A faster source is passed over only when it failed before delivering anything: mixing sources would duplicate rows.
  const usable = (r: { rows: number; errors: string[] }): boolean => r.rows > 0 || r.errors.length === 0;
  if (root === '/' && process.env.FOURTUPLE_NO_SOCK_DIAG !== '1' && ffiAvailable()) {
    // The iterator walks every hash table whatever the states asked: not worth it for listeners alone,
    // which sock_diag finds without walking the connections.
    const mask = states ? stateMask(states) : ALL_CONNECTION_STATES;
    if (filter === undefined && (mask & ~LISTEN_BIT) !== 0) {
      const owners = options.owners;
      const it = tcpIterator(iteratorMask(mask), options.unreadBytes !== false, owners);
      const r = 'link' in it ? scanTcpIterator(it.link, onRow, owners) : { rows: 0, errors: [it.reason] };
      if (usable(r)) return result('bpf', r.rows, r.errors);
      passedOver.push(...r.errors);
    }
    const r = scanSockDiag(onRow, { states, filter });
    if (usable(r)) return result('netlink', r.rows, r.errors);
    passedOver.push(...r.errors);
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
  return result('proc', filter ? rows : r.rows, r.errors);
}
