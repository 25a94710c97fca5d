/**
 * Port pressure from the kernel-kept counts (kernel/state-counts.ts), so a
 * scrape reads a map instead of walking the socket table: the exporter's
 * path when it may attach BPF programs.
 *
 * A full scan still runs, once at the start and then every `reconcileS`
 * seconds (and only then), for what the counts do not keep: TIME_WAIT (no
 * traced event makes or ends one), listeners and their accepted sockets,
 * the source-address pools, the pool of each destination (ports inside or
 * outside the ephemeral range), and, with byCgroup, who holds the sockets.
 * Those parts of a snapshot are as old as that scan (`kept.reconciledAt`).
 *
 * Reconciliation. The scan counts every client-side socket by state; the
 * counts must say the same for every state but TIME_WAIT. For each
 * destination none of whose sockets changed while the scan ran (its change
 * count is the same before and after), any difference is drift: it is added
 * up, reported, and corrected from then on (an offset per destination and
 * state, applied on read). A destination whose sockets changed meanwhile is
 * skipped this time rather than reporting the race as drift; a
 * reconciliation that could compare none is `busy`.
 */
import { performance } from 'node:perf_hooks';
import { TCP_LISTEN, TCP_STATES, TCP_TIME_WAIT } from '../kernel/linux.js';
import { stateCounter, type DestinationStates, type KeptCounts, type StateCounter } from '../kernel/state-counts.js';
import { scanSockets } from '../kernel/socket-table.js';
import { PortPressure, destinationKey, type DestinationPressure, type StateName } from '../model/port-pressure.js';
import { destinationMatcher, readPressureFacts, scanPorts, type PortScan, type PortScanOptions } from './port-scan.js';

/** What a reconciliation found. */
export type ReconcileResult = 'exact' | 'drift' | 'busy';

/** The kept counts' bookkeeping, in every snapshot they made. */
export interface KeptInfo {
  /** When the last full scan ran (epoch ms): TIME_WAIT, listeners, source pools and owners are as of then. */
  readonly reconciledAt: number;
  /** How long it took. */
  readonly reconcileMs: number;
  /** Reconciliations by result. */
  readonly reconciliations: Readonly<Record<ReconcileResult, number>>;
  /** Sockets the counts had wrong (before correction) at the last reconciliation, and over all of them. */
  readonly lastDrift: number;
  readonly driftTotal: number;
  /** Destinations the last reconciliation compared, and those it skipped because their sockets changed during the scan. */
  readonly compared: number;
  readonly skipped: number;
  /** Sockets and destinations the bounded maps could not take (then not counted). */
  readonly socketsOverflow: number;
  readonly destinationsOverflow: number;
  /** Time to read the counts for this snapshot. */
  readonly readMs: number;
}

/** A scan made from the kept counts. */
export interface KeptScan extends PortScan {
  readonly kept: KeptInfo;
}

const NON_TW = Array.from({ length: TCP_STATES.length }, (_, s) => s).filter((s) => s !== TCP_TIME_WAIT && s !== TCP_LISTEN && s > 0);

/** Keeps the counts and reconciles them; see the module comment. */
export class KeptPorts {
  readonly #counter: StateCounter;
  readonly #options: PortScanOptions;
  #last: PortScan;
  #reconcileMs = 0;
  readonly #offsets = new Map<string, Int32Array>();
  readonly #results: Record<ReconcileResult, number> = { exact: 0, drift: 0, busy: 0 };
  #lastDrift = 0;
  #driftTotal = 0;
  #compared = 0;
  #skipped = 0;

  private constructor(counter: StateCounter, options: PortScanOptions, first: PortScan, firstMs: number) {
    this.#counter = counter;
    this.#options = options;
    this.#last = first;
    this.#reconcileMs = firstMs;
  }

  /** Scans once (for the listeners), attaches and seeds the counter, and reconciles once; or why it cannot. */
  static open(options: PortScanOptions = {}): { kept: KeptPorts } | { reason: string } {
    const t0 = performance.now();
    const first = scanPorts(reconcileOptions(options));
    if (first.source !== 'bpf') return { reason: `the kernel-kept counts need the BPF iterator to seed and check them; this scan used ${first.source}` };
    const c = stateCounter(() => listenersNow(options), first.report.totals.clientSide);
    if ('reason' in c) return { reason: c.reason };
    const kept = new KeptPorts(c.counter, options, first, performance.now() - t0);
    for (const d of c.counter.seedCorrections) kept.#offsets.set(destinationKey(d), Int32Array.from(d.states));
    kept.reconcile();
    return { kept };
  }

  /**
   * One full scan, compared with the counts for every destination whose
   * sockets did not change while it ran (its change count is the same
   * before and after); the scan's other figures are kept for snapshots.
   */
  reconcile(): ReconcileResult {
    const t0 = performance.now();
    const before = changesByKey(this.#counter.read());
    const scan = scanPorts(reconcileOptions(this.#options));
    const after = this.#counter.read();
    this.#last = scan;
    this.#counter.setListeners(scan.report.listeners.map((l) => ({ address: l.address, port: l.port })));
    this.#reconcileMs = performance.now() - t0;
    const scanned = new Map<string, DestinationPressure>();
    for (const d of scan.report.destinations) scanned.set(destinationKey(d), d);
    const raw = mergeByKey(after);
    let drift = 0;
    let compared = 0;
    let skipped = 0;
    const idle: DestinationStates[] = [];
    for (const key of new Set([...scanned.keys(), ...raw.keys()])) {
      const r = raw.get(key);
      // Moved during the scan (or appeared, or went): the scan may have seen it before or after; compare next time.
      if ((r?.changes ?? 0) !== (before.get(key) ?? 0)) {
        skipped++;
        continue;
      }
      compared++;
      const s = scanned.get(key);
      const old = this.#offsets.get(key);
      const offset = new Int32Array(TCP_STATES.length);
      let any = false;
      for (const st of NON_TW) {
        const want = s ? (s.states[TCP_STATES[st] as StateName] ?? 0) : 0;
        const have = r ? r.states[st] : 0;
        // What snapshots reported was have + the old offset: the drift is how far that was from the scan.
        drift += Math.abs(want - have - (old?.[st] ?? 0));
        if (want !== have) {
          offset[st] = want - have;
          any = true;
        }
      }
      if (any) this.#offsets.set(key, offset);
      else this.#offsets.delete(key);
      // A destination with nothing left, quiet through the scan: its map entry goes, so the bounded map holds live ones.
      if (r && !any && !s && r.states.every((n) => n === 0)) idle.push(r);
    }
    this.#counter.forget(idle);
    this.#lastDrift = drift;
    this.#driftTotal += drift;
    this.#compared = compared;
    this.#skipped = skipped;
    const result = compared === 0 && skipped > 0 ? 'busy' : drift === 0 ? 'exact' : 'drift';
    this.#results[result]++;
    return result;
  }

  /** Port pressure now: client-side states from the counts, the rest from the last reconciliation. */
  snapshot(): KeptScan {
    const t0 = performance.now();
    const counts: KeptCounts = this.#counter.read();
    const last = this.#last;
    const facts = readPressureFacts();
    const agg = new PortPressure({ range: facts.portRange.known ? facts.portRange.value : null, states: this.#options.states, match: destinationMatcher(this.#options.to) });
    // The listeners, as rows, so capacity leaves their ports out.
    for (const l of last.report.listeners) {
      for (let i = 0; i < l.sockets; i++) {
        agg.add({ family: l.family, localAddress: l.address, localPort: l.port, remoteAddress: l.family === 4 ? '0.0.0.0' : '::', remotePort: 0, state: TCP_LISTEN, rxQueue: i === 0 ? l.acceptQueue : 0 });
      }
    }
    const lastByKey = new Map<string, DestinationPressure>();
    for (const d of last.report.destinations) lastByKey.set(destinationKey(d), d);
    const seen = new Set<string>();
    const states = new Int32Array(TCP_STATES.length);
    for (const [key, d] of mergeByKey(counts)) {
      seen.add(key);
      const offset = this.#offsets.get(key);
      for (let s = 0; s < states.length; s++) states[s] = Math.max(0, d.states[s] + (offset ? offset[s] : 0));
      this.#addWithTimeWait(agg, d, states, lastByKey.get(key));
    }
    // Destinations the counts no longer hold, with TIME_WAIT (or a correction) left from the last scan.
    for (const [key, d] of lastByKey) {
      if (seen.has(key)) continue;
      const offset = this.#offsets.get(key);
      states.fill(0);
      if (offset) for (let s = 0; s < states.length; s++) states[s] = Math.max(0, offset[s]);
      this.#addWithTimeWait(agg, d, states, d);
    }
    const fresh = agg.result(facts);
    // Who holds each destination's sockets, as of the last scan.
    const report = last.owners ? { ...fresh, destinations: fresh.destinations.map((d) => ({ ...d, cgroups: lastByKey.get(destinationKey(d))?.cgroups ?? [] })) } : fresh;
    // What only a scan knows, as of the last one.
    const byState: Partial<Record<StateName, number>> = { ...last.report.totals.byState };
    const clientNow = sumStates(report.destinations);
    const clientThen = sumStates(last.report.destinations);
    for (const name of new Set([...Object.keys(clientNow), ...Object.keys(clientThen)]) as Set<StateName>) {
      const v = (byState[name] ?? 0) + (clientNow[name] ?? 0) - (clientThen[name] ?? 0);
      if (v > 0) byState[name] = v;
      else delete byState[name];
    }
    const sockets = Object.values(byState).reduce((n, v) => n + (v ?? 0), 0);
    const readMs = counts.ms;
    return {
      report: { ...report, listeners: last.report.listeners, sources: last.report.sources, totals: { ...last.report.totals, ...report.totals, byState, sockets, serverSide: last.report.totals.serverSide, listening: last.report.totals.listening } },
      scanMs: performance.now() - t0,
      source: last.source,
      rows: 0,
      errors: last.errors,
      at: Date.now(),
      ...(last.owners ? { owners: last.owners } : {}),
      kept: {
        reconciledAt: last.at,
        reconcileMs: this.#reconcileMs,
        reconciliations: { ...this.#results },
        lastDrift: this.#lastDrift,
        driftTotal: this.#driftTotal,
        compared: this.#compared,
        skipped: this.#skipped,
        socketsOverflow: counts.socketsOverflow,
        destinationsOverflow: counts.destinationsOverflow,
        readMs,
      },
    };
  }

  /** Adds a destination: `states` (TIME_WAIT taken from the last scan's `then`), in the pool the last scan saw it use. */
  #addWithTimeWait(agg: PortPressure, d: { source: string; destination: string; port: number }, states: Int32Array, then: DestinationPressure | undefined): void {
    states[TCP_TIME_WAIT] = then?.timeWait ?? 0;
    let total = 0;
    for (const n of states) total += n;
    if (total === 0) return;
    const explicit = then !== undefined && then.outOfRange > 0;
    agg.addCounts(d, states, explicit ? 0 : total, explicit ? total : 0);
  }

  /** Detaches the counter. */
  close(): void {
    this.#counter.close();
  }
}

/** The reconciling scan: every destination and state (filters apply to snapshots), with owners when asked. */
function reconcileOptions(o: PortScanOptions): PortScanOptions {
  return { root: o.root, byCgroup: o.byCgroup };
}

/** The namespace's listeners now: a listeners-only scan (sock_diag finds them without walking the connections). */
function listenersNow(o: PortScanOptions): { address: string; port: number }[] {
  const out: { address: string; port: number }[] = [];
  scanSockets((row) => out.push({ address: row.localAddress, port: row.localPort }), { states: new Set([TCP_LISTEN]), root: o.root });
  return out;
}

function sumStates(ds: readonly DestinationPressure[]): Partial<Record<StateName, number>> {
  const out: Partial<Record<StateName, number>> = {};
  for (const d of ds) for (const [k, v] of Object.entries(d.states) as [StateName, number][]) out[k] = (out[k] ?? 0) + v;
  return out;
}

function changesByKey(k: KeptCounts): Map<string, number> {
  const out = new Map<string, number>();
  for (const [key, d] of mergeByKey(k)) out.set(key, d.changes);
  return out;
}

/**
 * The counts by destination as the scan names them: an IPv4 socket and an
 * IPv6 one to the same v4-mapped address are two entries of the map (the
 * family is in the key) but one destination, as they share its ports.
 */
function mergeByKey(k: KeptCounts): Map<string, DestinationStates & { states: number[] }> {
  const out = new Map<string, DestinationStates & { states: number[] }>();
  for (const d of k.destinations) {
    const key = destinationKey(d);
    const have = out.get(key);
    if (!have) out.set(key, { ...d, states: [...d.states] });
    else {
      for (let s = 0; s < have.states.length; s++) have.states[s] += d.states[s] ?? 0;
      out.set(key, { ...have, changes: have.changes + d.changes, keys: [...have.keys, ...d.keys] });
    }
  }
  return out;
}

/** Whether the scan came from the kept counts. */
export function isKept(scan: PortScan): scan is KeptScan {
  return 'kept' in scan;
}
