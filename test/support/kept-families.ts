/**
 * Runs inside `unshare -n` (see netns.ts): the kernel-kept counts over both
 * families on one dual-stack listener. 10 IPv6 connections to [::1]:7000
 * exist before the counts start (seeded); then 7 from IPv6 sockets to the
 * v4-mapped ::ffff:127.0.0.1 and 5 from IPv4 sockets to 127.0.0.1 (one
 * destination: they share its ports), and 3 of the first 10 are reset.
 */
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { KeptPorts, type ReconcileResult } from '../../dist/engine/kept-ports.js';
import { scanPorts, type PortScan } from '../../dist/engine/port-scan.js';

export interface KeptFamiliesResult {
  kept: string[];
  scanned: string[];
  result: ReconcileResult;
  drift: number;
}

const used = (scan: PortScan): string[] => scan.report.destinations.map((d) => `${d.source}|${d.destination}|${d.port}=${d.used}`).sort();
const connect = (host: string): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const s = net.connect(7000, host, () => resolve(s));
    s.on('error', reject);
  });

spawnSync('ip', ['link', 'set', 'lo', 'up']);
const server = net.createServer((s) => s.on('error', () => undefined)).listen(7000, '::');
await new Promise((r) => server.once('listening', r));
const before: net.Socket[] = [];
for (let i = 0; i < 10; i++) before.push(await connect('::1'));
const opened = KeptPorts.open();
if ('reason' in opened) throw new Error(opened.reason);
const after: net.Socket[] = [];
for (let i = 0; i < 7; i++) after.push(await connect('::ffff:127.0.0.1'));
for (let i = 0; i < 5; i++) after.push(await connect('127.0.0.1'));
for (const s of before.slice(0, 3)) s.resetAndDestroy();
await new Promise((r) => setTimeout(r, 200));
const kept = used(opened.kept.snapshot());
const scanned = used(scanPorts());
const result = opened.kept.reconcile();
const out: KeptFamiliesResult = { kept, scanned, result, drift: opened.kept.snapshot().kept.lastDrift };
opened.kept.close();
for (const s of [...before, ...after]) s.resetAndDestroy();
server.close();
process.stdout.write(JSON.stringify(out));
process.exit(0);
