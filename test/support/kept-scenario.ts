/**
 * Runs inside `unshare -n` (see netns.ts): the kernel-kept counts against
 * a probe that ramps to `connections`, holds and closes.
 *  1. `early` attaches before the probe starts: it follows every socket the
 *     probe opens through the tracepoint.
 *  2. At the peak: both a full scan and `early`'s counts; then `seeded`
 *     attaches, its counts seeded from the table by the iterator.
 *  3. After the probe closed everything: the same again.
 * Each time: the reconciliation's result and drift, and per destination the
 * sockets used as the counts and as the scan say.
 */
import { spawn, spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KeptPorts, type ReconcileResult } from '../../dist/engine/kept-ports.js';
import { scanPorts, type PortScan } from '../../dist/engine/port-scan.js';
import { findMaps } from '../../dist/kernel/bpf.js';
import { close } from '../../dist/kernel/ffi.js';
import { countsMapName } from '../../dist/kernel/state-counts.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface KeptScenarioArgs {
  readonly connections: number;
}

/** Used sockets per destination (`source|destination|port`), sorted. */
type Used = [string, number][];

export interface KeptCheck {
  readonly result: ReconcileResult;
  readonly drift: number;
  readonly kept: Used;
  readonly scanned: Used;
  readonly keptMs: number;
  readonly scanMs: number;
}

export interface KeptScenarioResult {
  readonly probeHeld: number;
  /** A reconciliation during the ramp. */
  readonly ramping: { result: ReconcileResult; drift: number; compared: number; skipped: number } | undefined;
  readonly peakEarly: KeptCheck;
  /** Seeded halfway through the ramp, checked at the peak. */
  readonly peakMidRamp: KeptCheck | undefined;
  readonly peakSeeded: KeptCheck;
  readonly afterEarly: KeptCheck;
  readonly afterSeeded: KeptCheck;
  readonly mapsLeft: number;
}

function used(scan: PortScan): Used {
  return scan.report.destinations.filter((d) => d.used > 0).map((d): [string, number] => [`${d.source}|${d.destination}|${d.port}`, d.used]).sort((a, b) => a[0].localeCompare(b[0]));
}

function check(k: KeptPorts): KeptCheck {
  const result = k.reconcile();
  const snap = k.snapshot();
  const scan = scanPorts();
  return { result, drift: snap.kept.lastDrift, kept: used(snap), scanned: used(scan), keptMs: snap.scanMs, scanMs: scan.scanMs };
}

function open(): KeptPorts {
  const o = KeptPorts.open();
  if ('reason' in o) throw new Error(`kept counts: ${o.reason}`);
  return o.kept;
}

async function main(args: KeptScenarioArgs): Promise<KeptScenarioResult> {
  spawnSync('ip', ['link', 'set', 'lo', 'up']);
  const early = open();
  const probe = spawn(process.execPath, [CLI, 'probe', '--connections', String(args.connections), '--hold', '8', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  probe.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((r) => probe.on('exit', r));
  // The peak: the counts say every connection is established (60 s at most). Once on the way, a
  // reconciliation while sockets change: the destinations that moved are skipped, not counted as drift.
  const t0 = Date.now();
  let ramping: KeptScenarioResult['ramping'] | undefined;
  let midRamp: KeptPorts | undefined;
  for (;;) {
    const total = early.snapshot().report.destinations.reduce((n, d) => n + (d.states.ESTABLISHED ?? 0), 0);
    if (total >= args.connections) break;
    if (!ramping && total >= args.connections / 4) {
      const result = early.reconcile();
      const k = early.snapshot().kept;
      ramping = { result, drift: k.lastDrift, compared: k.compared, skipped: k.skipped };
    }
    // Seeded while sockets open: the seed and the tracepoint must not count one twice or miss one.
    if (!midRamp && total >= args.connections / 2) midRamp = open();
    if (Date.now() - t0 > 60_000) throw new Error(`the counts reached ${total} of ${args.connections} in 60 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const peakEarly = check(early);
  const peakMidRamp = midRamp ? check(midRamp) : undefined;
  midRamp?.close();
  const seeded = open();
  const peakSeeded = check(seeded);
  await exited;
  const probeHeld = (JSON.parse(out) as { held: number }).held;
  const afterEarly = check(early);
  const afterSeeded = check(seeded);
  early.close();
  seeded.close();
  // The kernel frees the maps after an RCU grace period: 5 s at most.
  const name = countsMapName(statSync('/proc/self/ns/net').ino);
  let mapsLeft = 0;
  for (const t = Date.now(); Date.now() - t < 5000; ) {
    const fds = findMaps(name);
    mapsLeft = fds.length;
    for (const fd of fds) close(fd);
    if (mapsLeft === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { probeHeld, ramping, peakEarly, peakMidRamp, peakSeeded, afterEarly, afterSeeded, mapsLeft };
}

const result = await main(JSON.parse(process.argv[2]) as KeptScenarioArgs);
process.stdout.write(JSON.stringify(result));
process.exit(0);
