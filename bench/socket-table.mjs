#!/usr/bin/env node
// Reading the socket table, side by side in one run:
//   - `scanPorts`: what `fourtuple ports` does per scan (facts, LISTEN pass, the rest, PortPressure),
//     through the fastest reader it can use (the BPF iterator as root);
//   - netlink sock_diag with a trivial aggregation (sockets per remote address and port);
//   - the kernel's own share: the sock_diag dump, and the BPF iterator, with a row callback that does nothing;
//   - /proc/net/tcp with the trivial aggregation, and `ss -tan > /dev/null`.
// Run it inside a namespace that holds a big table, e.g. (build first: npm run build):
//
//   unshare -n sh -c 'ip link set lo up
//     echo "10000 65000" > /proc/sys/net/ipv4/ip_local_port_range
//     echo 65535 > /proc/sys/net/core/somaxconn
//     node dist/cli/main.js probe --connections 500000 --hold 600 --json > /tmp/probe.json & p=$!
//     node --expose-gc bench/socket-table.mjs --wait-for 1000000; kill -TERM $p; wait $p'
//
// Options: --wait-for N   wait until the table holds N sockets (and stops growing)
//          --runs R       rounds of the three readers (default 3)
//          --proc-runs R  rounds of the /proc reader (default: --runs; it is the slow one)
// Prints one line per measurement and a JSON summary last.
import { openSync, closeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { ALL_CONNECTION_STATES, scanSockDiag } from '../dist/kernel/sock-diag.js';
import { iteratorMask, scanTcpIterator, tcpIterator } from '../dist/kernel/bpf-iter.js';
import { scanProcNetTcp } from '../dist/kernel/proc-net-tcp.js';
import { scanPorts } from '../dist/engine/port-scan.js';

const { values } = parseArgs({ options: { 'wait-for': { type: 'string' }, runs: { type: 'string' }, 'proc-runs': { type: 'string' } } });
const runs = Number(values.runs ?? 3);
const procRuns = Number(values['proc-runs'] ?? runs);

const mib = (b) => Math.round(b / 1048576);
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const count = () => scanSockDiag(() => {}).rows;

// The first call loads koffi and libc: timed apart, then every measured scan is warm.
const tCold = process.hrtime.bigint();
count();
const coldMs = Number(process.hrtime.bigint() - tCold) / 1e6;

if (values['wait-for'] !== undefined) {
  const want = Number(values['wait-for']);
  const deadline = Date.now() + 600_000;
  let last = -1;
  for (;;) {
    const n = count();
    if (n >= want && n === last) break;
    if (Date.now() > deadline) throw new Error(`table never reached ${want} sockets (last ${n})`);
    last = n;
    sleep(2000);
  }
}

/** One scan + sockets per (remote address, remote port); returns the figures. */
function aggregate(name, scan) {
  const rssBefore = process.memoryUsage.rss();
  const t0 = process.hrtime.bigint();
  const byRemote = new Map();
  const r = scan((row) => {
    let ports = byRemote.get(row.remoteAddress);
    if (ports === undefined) byRemote.set(row.remoteAddress, (ports = new Map()));
    ports.set(row.remotePort, (ports.get(row.remotePort) ?? 0) + 1);
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  let groups = 0;
  for (const ports of byRemote.values()) groups += ports.size;
  return { name, ms, rows: r.rows, groups, errors: r.errors, rssBeforeMiB: mib(rssBefore), rssAfterMiB: mib(process.memoryUsage.rss()) };
}

const devNull = openSync('/dev/null', 'w');
function ss() {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('ss', ['-tan'], { stdio: ['ignore', devNull, 'inherit'] });
  if (r.status !== 0) throw new Error(`ss exited ${r.status}`);
  return { name: 'ss -tan > /dev/null', ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

function ports() {
  const rssBefore = process.memoryUsage.rss();
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const scan = scanPorts();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(c0);
  return {
    name: `scanPorts (${scan.source})`,
    source: scan.source,
    ms,
    rows: scan.rows,
    groups: scan.report.destinations.length,
    errors: [...scan.errors],
    rssBeforeMiB: mib(rssBefore),
    rssAfterMiB: mib(process.memoryUsage.rss()),
    userMs: cpu.user / 1000,
    systemMs: cpu.system / 1000,
  };
}

/** The kernel's own share: one scan through `scan` with a row callback that does nothing. */
function kernelOnly(name, scan) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const r = scan(() => {});
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(c0);
  return { name, ms, rows: r.rows, groups: 0, errors: r.errors, rssBeforeMiB: 0, rssAfterMiB: mib(process.memoryUsage.rss()), userMs: cpu.user / 1000, systemMs: cpu.system / 1000 };
}

// As scanPorts asks for it: no unread bytes of connections.
const iterator = tcpIterator(iteratorMask(ALL_CONNECTION_STATES), false);
if ('reason' in iterator) console.log(`no BPF iterator: ${iterator.reason}`);

const rssStart = process.memoryUsage.rss();
const results = { ports: [], netlink: [], kernel: [], bpfKernel: [], proc: [], ss: [] };
const show = (x) => {
  const cpu = x.userMs === undefined ? '' : `, CPU user ${x.userMs.toFixed(0)} ms system ${x.systemMs.toFixed(0)} ms`;
  const extra = x.rows === undefined ? '' : `  ${x.rows} rows, ${x.groups} groups, RSS ${x.rssBeforeMiB} -> ${x.rssAfterMiB} MiB${cpu}${x.errors.length ? `, errors: ${x.errors.join('; ')}` : ''}`;
  console.log(`${x.name.padEnd(24)} ${x.ms.toFixed(1).padStart(9)} ms${extra}`);
};
for (let i = 0; i < runs; i++) {
  let x = ports();
  results.ports.push(x);
  show(x);
  x = kernelOnly('dump, no-op rows', (onRow) => scanSockDiag(onRow));
  results.kernel.push(x);
  show(x);
  if ('link' in iterator) {
    x = kernelOnly('bpf iter, no-op rows', (onRow) => scanTcpIterator(iterator.link, onRow));
    results.bpfKernel.push(x);
    show(x);
  }
  x = aggregate('netlink sock_diag', (onRow) => scanSockDiag(onRow));
  results.netlink.push(x);
  show(x);
  if (i < procRuns) {
    x = aggregate('/proc/net/tcp', (onRow) => scanProcNetTcp('/', onRow));
    results.proc.push(x);
    show(x);
  }
  x = ss();
  results.ss.push(x);
  show(x);
}
closeSync(devNull);

// Memory: five more sock_diag scans in a row; RSS and heap should not climb
// (run with --expose-gc so the heap is measured after a full collection).
const gc = globalThis.gc ?? (() => {});
gc();
const heapBefore = process.memoryUsage().heapUsed;
const rssBefore = process.memoryUsage.rss();
const rssEach = [];
for (let i = 0; i < 5; i++) {
  scanPorts();
  rssEach.push(mib(process.memoryUsage.rss()));
}
gc();
const memory = {
  rssBeforeMiB: mib(rssBefore),
  rssAfterMiB: mib(process.memoryUsage.rss()),
  heapBeforeMiB: mib(heapBefore),
  heapAfterMiB: mib(process.memoryUsage().heapUsed),
  rssEachMiB: rssEach,
};
console.log(`5 more scanPorts: RSS ${memory.rssBeforeMiB} -> ${rssEach.join(' -> ')} MiB, heap after GC ${memory.heapBeforeMiB} -> ${memory.heapAfterMiB} MiB`);

const best = (a) => (a.length ? Math.min(...a.map((x) => x.ms)) : null);
const median = (a) => {
  if (!a.length) return null;
  const s = a.map((x) => x.ms).sort((p, q) => p - q);
  return s[(s.length - 1) >> 1];
};
const summary = {
  sockets: results.netlink[0]?.rows,
  firstCallMs: +coldMs.toFixed(1),
  portsMs: results.ports.map((x) => +x.ms.toFixed(1)),
  kernelOnlyMs: results.kernel.map((x) => +x.ms.toFixed(1)),
  kernelOnlySystemMs: results.kernel.map((x) => +x.systemMs.toFixed(0)),
  portsSource: results.ports[0]?.source,
  bpfKernelOnlyMs: results.bpfKernel.map((x) => +x.ms.toFixed(1)),
  bpfKernelOnlySystemMs: results.bpfKernel.map((x) => +x.systemMs.toFixed(0)),
  ssOverPorts: +(median(results.ss) / median(results.ports)).toFixed(2),
  netlinkMs: results.netlink.map((x) => +x.ms.toFixed(1)),
  procMs: results.proc.map((x) => +x.ms.toFixed(1)),
  ssMs: results.ss.map((x) => +x.ms.toFixed(1)),
  ssOverNetlink: +(median(results.ss) / median(results.netlink)).toFixed(2),
  procOverNetlink: results.proc.length ? +(median(results.proc) / median(results.netlink)).toFixed(2) : null,
  netlinkBestMs: best(results.netlink),
  memory,
  rssStartMiB: mib(rssStart),
  rssEndMiB: mib(process.memoryUsage.rss()),
  maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
};
console.log(JSON.stringify(summary));
