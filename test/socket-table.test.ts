import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { ffiAvailable } from '../dist/kernel/ffi.js';
import { filterBytecode, stateMask, matchesFilter } from '../dist/kernel/sock-diag.js';
import { scanSockets } from '../dist/kernel/socket-table.js';
import type { TcpRow } from '../dist/kernel/proc-net-tcp.js';
import { netnsUnavailable, runInNetns } from './support/netns.js';
import { diagRows, openPopulation, procRows, rowKey, ssRows, type NetnsTables, type Population } from './support/socket-table-scenario.js';

const HOST_A = fileURLToPath(new URL('../test/fixtures/host-a/', import.meta.url));
const sorted = (a: readonly string[]): string[] => [...a].sort();
const field = (key: string, i: number): string => key.split(' ')[i];
const LISTEN = 10;

describe('sock-diag request building', () => {
  it('asks the kernel for the states wanted, SYN_RECV with its request sockets', () => {
    assert.equal(stateMask(new Set([LISTEN])), 1 << 10);
    assert.equal(stateMask(new Set([1, 6])), (1 << 1) | (1 << 6));
    assert.equal(stateMask(new Set([3])), (1 << 3) | (1 << 12));
  });

  it('compiles port filters to inet_diag bytecode the way ss does', () => {
    assert.equal(filterBytecode({}), undefined);
    // S_EQ 7000 (miss: reject) — code, yes, no (LE u16), then the port op.
    assert.deepEqual([...filterBytecode({ localPort: 7000 })!], [11, 8, 12, 0, 0, 0, 0x58, 0x1b]);
    // S_EQ (miss: next alternative) | JMP to the end | D_EQ (miss: reject).
    assert.deepEqual([...filterBytecode({ port: 7000 })!], [11, 8, 12, 0, 0, 0, 0x58, 0x1b, 1, 4, 12, 0, 12, 8, 12, 0, 0, 0, 0x58, 0x1b]);
    assert.throws(() => filterBytecode({ port: 70000 }), { code: 'FT_INVALID_ARGUMENT' });
  });

  it('matchesFilter is the bytecode in JS', () => {
    const r: TcpRow = { family: 4, localAddress: '127.0.0.1', localPort: 1, remoteAddress: '127.0.0.1', remotePort: 2, state: 1, rxQueue: 0 };
    assert.equal(matchesFilter(r, { port: 2 }), true);
    assert.equal(matchesFilter(r, { port: 3 }), false);
    assert.equal(matchesFilter(r, { localPort: 1, remotePort: 2 }), true);
    assert.equal(matchesFilter(r, { localPort: 2 }), false);
  });
});

describe('scanSockets on a fixture root', () => {
  it('reads /proc under the root, filters in JS', () => {
    const rows: TcpRow[] = [];
    const r = scanSockets((row) => rows.push(row), { root: HOST_A, filter: { port: 7001 } });
    assert.equal(r.source, 'proc');
    assert.deepEqual(r.errors, []);
    assert.equal(r.rows, 3);
    assert.deepEqual(rows.map((x) => `${x.localAddress}:${x.localPort}`), ['::1:7001', '2001:db8::5:7001', '::1:47046']);
  });
});

describe('socket table readers agree on this host', { skip: ffiAvailable() ? false : 'FFI unavailable' }, () => {
  let pop: Population;
  let diag: string[];
  let proc: string[];
  let ss: string[];
  before(() => {
    pop = openPopulation({ bulk: 0, timeWait: false });
    // Only our sockets: one of our listener ports at one end, on loopback (other work may share the host's table).
    const ports = new Set(pop.ports.map(String));
    const ours = (k: string): boolean => (ports.has(field(k, 2)) || ports.has(field(k, 4))) && /^(127\.0\.0\.1|::1|::ffff:127\.0\.0\.1|::|0\.0\.0\.0)$/.test(field(k, 1));
    const d = diagRows();
    const p = procRows();
    assert.deepEqual(d.errors, []);
    assert.deepEqual(p.errors, []);
    diag = d.rows.filter(ours);
    proc = p.rows.filter(ours);
    ss = ssRows().filter(ours);
  });
  after(() => pop?.close());

  it('sock_diag reads exactly the sockets made', () => {
    assert.deepEqual(sorted(diag), sorted(pop.expected));
  });

  it('/proc/net/tcp and ss -Htan read the same multiset', () => {
    assert.deepEqual(sorted(proc), sorted(diag));
    assert.deepEqual(sorted(ss), sorted(diag));
  });

  it('the kernel-side state filter returns only LISTEN rows', () => {
    const l = diagRows({ states: new Set([LISTEN]) });
    assert.deepEqual(l.errors, []);
    assert.ok(l.rows.length >= 5);
    assert.ok(l.rows.every((k) => field(k, 5) === 'LISTEN'));
    for (const k of pop.expected.filter((x) => field(x, 5) === 'LISTEN')) assert.ok(l.rows.includes(k), k);
  });

  it('the kernel-side port filter returns the rows of one port', () => {
    const port = pop.ports[0];
    const f = diagRows({ filter: { port } });
    assert.deepEqual(f.errors, []);
    assert.deepEqual(sorted(f.rows), sorted(pop.expected.filter((k) => field(k, 2) === String(port) || field(k, 4) === String(port))));
  });

  it('scanSockets uses netlink, and /proc with FOURTUPLE_NO_SOCK_DIAG=1', () => {
    const port = pop.ports[0];
    const want = sorted(pop.expected.filter((k) => field(k, 2) === String(port) || field(k, 4) === String(port)));
    const a: string[] = [];
    const r = scanSockets((row) => a.push(rowKey(row)), { filter: { port } });
    assert.equal(r.source, 'netlink');
    assert.equal(r.rows, want.length);
    assert.deepEqual(sorted(a), want);
    process.env.FOURTUPLE_NO_SOCK_DIAG = '1';
    try {
      const b: string[] = [];
      const s = scanSockets((row) => b.push(rowKey(row)), { filter: { port }, states: new Set([1, LISTEN]) });
      assert.equal(s.source, 'proc');
      assert.equal(s.rows, want.length);
      assert.deepEqual(sorted(b), want);
    } finally {
      delete process.env.FOURTUPLE_NO_SOCK_DIAG;
    }
  });
});

describe('socket table readers agree in a namespace, TIME_WAIT included', { skip: netnsUnavailable() ?? (ffiAvailable() ? false : 'FFI unavailable') }, () => {
  let t: NetnsTables;
  before(() => {
    t = runInNetns<NetnsTables>('socket-table-scenario', { bulk: 300 });
  });

  it('the whole table, by all three readers, is exactly the population', () => {
    assert.deepEqual(t.diag.errors, []);
    assert.deepEqual(t.proc.errors, []);
    assert.ok(t.expected.some((k) => field(k, 5) === 'TIME_WAIT'));
    assert.equal(t.diag.count, t.expected.length);
    assert.deepEqual(sorted(t.diag.rows), sorted(t.expected));
    assert.deepEqual(sorted(t.proc.rows), sorted(t.expected));
    assert.deepEqual(sorted(t.ss), sorted(t.expected));
  });

  it('filters states and families in the kernel', () => {
    assert.deepEqual(sorted(t.listenOnly.rows), sorted(t.expected.filter((k) => field(k, 5) === 'LISTEN')));
    assert.deepEqual(t.timeWaitOnly.rows, t.expected.filter((k) => field(k, 5) === 'TIME_WAIT'));
    assert.deepEqual(sorted(t.v6Only.rows), sorted(t.expected.filter((k) => field(k, 0) === '6')));
  });

  it('filters ports in the kernel', () => {
    const p = String(t.ports[0]);
    assert.deepEqual(sorted(t.byPort.rows), sorted(t.expected.filter((k) => field(k, 2) === p || field(k, 4) === p)));
    assert.deepEqual(sorted(t.byLocalPort.rows), sorted(t.expected.filter((k) => field(k, 2) === p)));
    assert.deepEqual(sorted(t.byRemotePort.rows), sorted(t.expected.filter((k) => field(k, 4) === p)));
    assert.deepEqual(sorted(t.facadeByPortNoDiag.rows), sorted(t.byPort.rows));
    assert.equal(t.facadeByPortNoDiag.source, 'proc');
  });

  it('the BPF iterator reads the same table, field for field, and filters states in its program', (ctx) => {
    if (t.bpf.skip !== undefined) return ctx.skip(`no BPF iterator here: ${t.bpf.skip}`);
    assert.deepEqual(t.bpf.errors, []);
    assert.equal(t.bpf.count, t.expected.length);
    assert.deepEqual(sorted(t.bpf.rows), sorted(t.diag.rows));
    // Timewait sockets by their substate, closing states, unread bytes and accept queues as sock_diag has them.
    for (const state of ['TIME_WAIT', 'FIN_WAIT2', 'CLOSE_WAIT']) assert.ok(t.bpf.rows.some((k) => field(k, 5) === state), state);
    assert.ok(t.bpf.rows.some((k) => field(k, 5) === 'LISTEN' && field(k, 6) === '2'));
    assert.ok(t.bpf.rows.some((k) => field(k, 5) === 'ESTABLISHED' && field(k, 6) === '5'));
    assert.deepEqual(sorted(t.bpfEstablished.rows), sorted(t.expected.filter((k) => field(k, 5) === 'ESTABLISHED')));
    assert.deepEqual(sorted(t.bpfClosing.rows), sorted(t.expected.filter((k) => ['FIN_WAIT2', 'TIME_WAIT', 'CLOSE_WAIT'].includes(field(k, 5)))));
    // Without unread bytes (what the port-pressure scan asks): connections say 0, listeners keep their accept queue.
    const noUnread = t.expected.map((k) => (field(k, 5) === 'LISTEN' ? k : k.replace(/ \d+$/, ' 0')));
    assert.deepEqual(sorted(t.bpfNoUnread.rows), sorted(noUnread));
    assert.ok(t.bpfNoUnread.rows.some((k) => field(k, 5) === 'LISTEN' && field(k, 6) === '2'));
  });

  it('scanSockets picks the BPF iterator, netlink for listeners alone or under FOURTUPLE_NO_BPF=1, /proc under FOURTUPLE_NO_SOCK_DIAG=1', () => {
    const fastest = t.bpf.skip === undefined ? 'bpf' : 'netlink';
    assert.deepEqual(t.facade, { source: fastest, count: t.expected.length });
    assert.deepEqual(t.facadeNoBpf, { source: 'netlink', count: t.expected.length });
    assert.deepEqual(t.facadeListeners, { source: 'netlink', count: t.expected.filter((k) => field(k, 5) === 'LISTEN').length });
    assert.deepEqual(t.facadeNoDiag, { source: 'proc', count: t.expected.length });
  });
});
