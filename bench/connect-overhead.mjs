#!/usr/bin/env node
// Connections per second of fourtuple's `connect` against plain `net.connect`
// with `localAddress`, both choosing among the same 3 source addresses, on
// loopback inside a private network namespace (`unshare -n`, wide port range),
// with the accepting side in a second process. Each connection is opened and,
// on 'connect', closed with resetAndDestroy (RST: no TIME_WAIT).
// Usage (build first: npm run build):
//   node bench/connect-overhead.mjs [--connections 10000] [--rounds 7] [--concurrency 64]
// Prints one line per round and a summary; needs root for unshare -n.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const self = fileURLToPath(import.meta.url);
const HOST = '127.0.0.1';
const PORT = 7000;
const SOURCES = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '11' },
    concurrency: { type: 'string', default: '64' },
    role: { type: 'string', default: 'outer' },
  },
});

if (values.role === 'sink') {
  const srv = net.createServer((c) => c.on('error', () => {}));
  srv.listen({ host: HOST, port: PORT, backlog: 4096 }, () => process.stdout.write('ready\n'));
  process.on('disconnect', () => process.exit(0));
} else if (values.role === 'outer') {
  // Re-run inside a fresh namespace; it dies with the child, with everything in it.
  // Client on CPU 0, sink on CPU 1 (when there are two): where the scheduler puts them otherwise moves the figures by 30%.
  const pin = availableParallelism() >= 2 && spawnSync('taskset', ['-V']).status === 0 ? ['taskset', '-c', '0'] : [];
  const r = spawnSync('unshare', ['-n', ...pin, process.execPath, self, ...process.argv.slice(2), '--role', 'client'], {
    stdio: 'inherit',
    env: { ...process.env, FOURTUPLE_BENCH_PIN: pin.length ? '1' : '' },
  });
  process.exit(r.status ?? 1);
} else {
  await client();
}

async function client() {
  const { connect, SourcePool } = await import('../dist/index.js');
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  writeFileSync('/proc/sys/net/ipv4/ip_local_port_range', '10000 65535');
  const pinned = process.env.FOURTUPLE_BENCH_PIN === '1'; // decided outside: pinned to CPU 0, this process sees one CPU
  const sinkCmd = pinned ? ['taskset', ['-c', '1', process.execPath, self, '--role', 'sink']] : [process.execPath, [self, '--role', 'sink']];
  const sink = spawn(sinkCmd[0], sinkCmd[1], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  await new Promise((res) => sink.stdout.once('data', res));

  const total = Number(values.connections);
  const rounds = Number(values.rounds);
  const concurrency = Number(values.concurrency);
  const pool = new SourcePool({ sources: SOURCES });
  let rr = 0;
  const variants = {
    plain: () => net.connect({ host: HOST, port: PORT, localAddress: SOURCES[rr++ % 3] }),
    fourtuple: () => connect({ host: HOST, port: PORT, pool }),
  };

  function round(open) {
    return new Promise((resolve, reject) => {
      let started = 0;
      let done = 0;
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      const next = () => {
        if (started === total) return;
        started++;
        const s = open();
        s.once('connect', () => {
          s.resetAndDestroy();
          if (++done === total) {
            const c = process.cpuUsage(c0);
            resolve({ secs: Number(process.hrtime.bigint() - t0) / 1e9, cpuUs: (c.user + c.system) / total });
          }
          else next();
        });
        s.once('error', reject);
      };
      for (let i = 0; i < concurrency; i++) next();
    });
  }

  const rates = { plain: [], fourtuple: [] };
  const cpu = { plain: [], fourtuple: [] };
  const ratios = [];
  // Warm-up (JIT, slab caches), not counted.
  for (const open of Object.values(variants)) await round(open);
  for (let r = 1; r <= rounds; r++) {
    // Alternate the order so drift (caches, CPU frequency) hits both alike.
    const order = r % 2 ? ['plain', 'fourtuple'] : ['fourtuple', 'plain'];
    const line = [];
    for (const name of order) {
      const { secs, cpuUs } = await round(variants[name]);
      rates[name].push(total / secs);
      cpu[name].push(cpuUs);
      line.push(`${name} ${Math.round(total / secs).toLocaleString('en-US')}/s (${cpuUs.toFixed(1)} µs CPU each)`);
    }
    ratios.push(rates.fourtuple.at(-1) / rates.plain.at(-1));
    console.log(`round ${r}: ${line.join(', ')}`);
  }
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const p = median(rates.plain);
  const f = median(rates.fourtuple);
  const fmt = (n) => Math.round(n).toLocaleString('en-US');
  console.log(
    `median of ${rounds} rounds × ${fmt(total)} connections (concurrency ${concurrency}): ` +
      `plain net.connect+localAddress ${fmt(p)}/s (${median(cpu.plain).toFixed(1)} µs CPU each), ` +
      `fourtuple connect (${pool.strategy}) ${fmt(f)}/s (${median(cpu.fourtuple).toFixed(1)} µs CPU each); ` +
      `overhead ${((1 - f / p) * 100).toFixed(1)}% (median of the per-round ratios: ${((1 - median(ratios)) * 100).toFixed(1)}%)`,
  );
  sink.disconnect();
}
