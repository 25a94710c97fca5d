import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TCP_STATES, decodeAddress, scanProcNetTcp, type TcpRow } from '../dist/kernel/proc-net-tcp.js';

const HOST_A = fileURLToPath(new URL('../test/fixtures/host-a/', import.meta.url));

function scan(root: string, states?: ReadonlySet<number>): { rows: TcpRow[]; count: number; errors: string[] } {
  const rows: TcpRow[] = [];
  const { rows: count, errors } = scanProcNetTcp(root, (r) => rows.push(r), states);
  return { rows, count, errors };
}

const row = (family: 4 | 6, la: string, lp: number, ra: string, rp: number, state: number, rxQueue = 0): TcpRow => ({
  family,
  localAddress: la,
  localPort: lp,
  remoteAddress: ra,
  remotePort: rp,
  state,
  rxQueue,
});

describe('decodeAddress', () => {
  it('decodes little-endian words', () => {
    assert.equal(decodeAddress('0100007F'), '127.0.0.1');
    assert.equal(decodeAddress('00000000'), '0.0.0.0');
    assert.equal(decodeAddress('0302010A'), '10.1.2.3');
    assert.equal(decodeAddress('00000000000000000000000001000000'), '::1');
    assert.equal(decodeAddress('00000000000000000000000000000000'), '::');
    assert.equal(decodeAddress('000080FE000000000000000001000000'), 'fe80::1');
    assert.equal(decodeAddress('B80D0120000000000000000005000000'), '2001:db8::5');
    assert.equal(decodeAddress('0000000000000000FFFF00000100007F'), '::ffff:127.0.0.1');
  });
});

describe('scanProcNetTcp on a fixture tree', () => {
  // host-a/proc/net/tcp:  LISTEN 127.0.0.1:7000 (accept queue 3), LISTEN 0.0.0.0:33000,
  //   ESTABLISHED 127.0.0.1:40000 -> 127.0.0.1:7000, ESTABLISHED 10.1.2.3:7000 -> 10.9.8.7:51234 (64 bytes queued),
  //   TIME_WAIT 127.0.0.1:40001 -> 127.0.0.1:7000
  // host-a/proc/net/tcp6: LISTEN [::1]:7001, LISTEN [::]:7002, LISTEN [::ffff:127.0.0.1]:7003,
  //   ESTABLISHED [::ffff:127.0.0.1]:45000 -> [::ffff:127.0.0.1]:7002, ESTABLISHED [2001:db8::5]:7001 -> [2001:db8::9]:54321,
  //   TIME_WAIT [::1]:47046 -> [::1]:7001
  const all = [
    row(4, '127.0.0.1', 7000, '0.0.0.0', 0, 10, 3),
    row(4, '0.0.0.0', 33000, '0.0.0.0', 0, 10),
    row(4, '127.0.0.1', 40000, '127.0.0.1', 7000, 1),
    row(4, '10.1.2.3', 7000, '10.9.8.7', 51234, 1, 64),
    row(4, '127.0.0.1', 40001, '127.0.0.1', 7000, 6),
    row(6, '::1', 7001, '::', 0, 10),
    row(6, '::', 7002, '::', 0, 10),
    row(6, '::ffff:127.0.0.1', 7003, '::', 0, 10),
    row(6, '::ffff:127.0.0.1', 45000, '::ffff:127.0.0.1', 7002, 1),
    row(6, '2001:db8::5', 7001, '2001:db8::9', 54321, 1),
    row(6, '::1', 47046, '::1', 7001, 6),
  ];

  it('decodes every row of both files, headers skipped', () => {
    const { rows, count, errors } = scan(HOST_A);
    assert.deepEqual(errors, []);
    assert.equal(count, 11);
    assert.deepEqual(rows, all);
  });

  it('filters by state', () => {
    const listen = scan(HOST_A, new Set([10]));
    assert.equal(listen.count, 5);
    assert.deepEqual(listen.rows, all.filter((r) => r.state === 10));
    const tw = scan(HOST_A, new Set([6]));
    assert.deepEqual(
      tw.rows.map((r) => `${r.localAddress}:${r.localPort}`),
      ['127.0.0.1:40001', '::1:47046'],
    );
    const est = scan(HOST_A, new Set([1]));
    assert.equal(est.count, 4);
    assert.equal(scan(HOST_A, new Set([2, 3])).count, 0);
  });

  it('names the states the kernel uses', () => {
    assert.equal(TCP_STATES[1], 'ESTABLISHED');
    assert.equal(TCP_STATES[6], 'TIME_WAIT');
    assert.equal(TCP_STATES[10], 'LISTEN');
    assert.equal(TCP_STATES[12], 'NEW_SYN_RECV');
  });

  it('reports missing files without throwing', () => {
    const { rows, count, errors } = scan(join(HOST_A, 'does-not-exist'));
    assert.equal(count, 0);
    assert.equal(rows.length, 0);
    assert.deepEqual(errors, ['proc/net/tcp: ENOENT', 'proc/net/tcp6: ENOENT']);
  });
});

describe('scanProcNetTcp streaming', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fourtuple-tcp-'));
    mkdirSync(join(dir, 'proc/net'), { recursive: true });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads tables larger than its 1 MiB buffer, lines split across chunks, no final newline', () => {
    const header = readFileSync(join(HOST_A, 'proc/net/tcp'), 'latin1').split('\n')[0];
    const lines = [header];
    const n = 20_000; // 150 bytes a line: about 3 MB
    for (let i = 0; i < n; i++) {
      const port = 1 + (i % 65535);
      const hex = port.toString(16).toUpperCase().padStart(4, '0');
      lines.push(`${String(i).padStart(4)}: 0100007F:${hex} 0200007F:1B58 01 00000000:00000000 00:00000000 00000000     0        0 ${i} 1 0000000000000000 20 0 0 10 -1`.padEnd(149));
    }
    writeFileSync(join(dir, 'proc/net/tcp'), lines.join('\n')); // no trailing newline
    writeFileSync(join(dir, 'proc/net/tcp6'), readFileSync(join(HOST_A, 'proc/net/tcp6'), 'latin1').split('\n')[0] + '\n');
    let rows = 0;
    let sum = 0;
    let bad = 0;
    const { rows: count, errors } = scanProcNetTcp(dir, (r) => {
      if (r.localAddress !== '127.0.0.1' || r.remoteAddress !== '127.0.0.2' || r.remotePort !== 7000 || r.state !== 1) bad++;
      if (r.localPort !== 1 + (rows % 65535)) bad++;
      rows++;
      sum += r.localPort;
    });
    assert.deepEqual(errors, []);
    assert.equal(count, n);
    assert.equal(rows, n);
    assert.equal(bad, 0);
    assert.equal(sum, (n * (n + 1)) / 2);
  });
});

describe('scanProcNetTcp on the live host agrees with ss', () => {
  let server: Server;
  let client: Socket;
  let accepted: Socket | undefined;
  let port: number;

  before(async () => {
    server = createServer((s) => {
      accepted = s;
      s.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    client = connect(port, '127.0.0.1');
    client.on('error', () => {});
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    while (!accepted) await new Promise((r) => setTimeout(r, 5));
  });

  after(async () => {
    // RST, not FIN: leave no TIME_WAIT behind.
    client.resetAndDestroy();
    accepted?.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('sees the listener and both ends of the connection exactly as ss does', () => {
    const ssName: Record<string, string> = { ESTABLISHED: 'ESTAB', LISTEN: 'LISTEN' };
    const mine = (la: string, lp: number, ra: string, rp: number): boolean => (la === '127.0.0.1' && lp === port) || (ra === '127.0.0.1' && rp === port);
    const fromProc = scan('/')
      .rows.filter((r) => r.family === 4 && mine(r.localAddress, r.localPort, r.remoteAddress, r.remotePort))
      .map((r) => `${ssName[TCP_STATES[r.state]] ?? TCP_STATES[r.state]} ${r.localAddress}:${r.localPort} ${r.remoteAddress}:${r.remotePort}`)
      .sort();
    const fromSs = execFileSync('ss', ['-Htan4'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.trim().split(/\s+/))
      .map(([state, , , local, peer]) => {
        const split = (ep: string): [string, number] => {
          const i = ep.lastIndexOf(':');
          const p = ep.slice(i + 1);
          return [ep.slice(0, i), p === '*' ? 0 : Number(p)];
        };
        const [la, lp] = split(local);
        const [ra, rp] = split(peer);
        return { state, la, lp, ra, rp };
      })
      .filter((s) => mine(s.la, s.lp, s.ra, s.rp))
      .map((s) => `${s.state} ${s.la}:${s.lp} ${s.ra}:${s.rp}`)
      .sort();
    const cport = client.localPort as number;
    assert.deepEqual(fromProc, [
      `ESTAB 127.0.0.1:${cport} 127.0.0.1:${port}`,
      `ESTAB 127.0.0.1:${port} 127.0.0.1:${cport}`,
      `LISTEN 127.0.0.1:${port} 0.0.0.0:0`,
    ].sort());
    assert.deepEqual(fromProc, fromSs);
  });

  it('finds the listener with the LISTEN filter and the connection with ESTABLISHED', () => {
    const listen = scan('/', new Set([10])).rows;
    assert.ok(listen.some((r) => r.localAddress === '127.0.0.1' && r.localPort === port && r.state === 10));
    assert.ok(listen.every((r) => r.state === 10));
    const est = scan('/', new Set([1])).rows.filter((r) => r.localPort === client.localPort && r.remotePort === port);
    assert.equal(est.length, 1);
  });
});
