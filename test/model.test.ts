import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { readKernelFacts, type KernelFacts } from '../dist/kernel/facts.js';
import { known } from '../dist/kernel/fact.js';
import { parseEndpoints } from '../dist/model/address.js';
import { KERNEL_BYTES_PER_SOCKET } from '../dist/model/costs.js';
import { computeLimits, ephemeralPool, explicitPool, type Constraint, type Limits, type LimitsInput } from '../dist/model/limits.js';
import { limitsSentence, renderLimits } from '../dist/report/limits.js';

const HOST_A = fileURLToPath(new URL('../test/fixtures/host-a/', import.meta.url));
const HOST_MISSING = fileURLToPath(new URL('../test/fixtures/host-missing/', import.meta.url));

/*
 * host-a, by hand:
 *   ip_local_port_range 32768-60999          = 28,232 ports
 *   reserved 8080,33001-33004: inside range  = 4 (33001..33004)
 *   listeners 7000, 33000, 7001, 7002, 7003: inside range = 1 (33000)
 *   ephemeral pool                            = 28,232 - 4 - 1 = 28,227
 *   explicit pool: 1024..65535                = 64,512; reserved ports stay in (they only keep
 *                  the kernel's own choices away); minus listeners 5 (7000-7003, 33000) = 64,507
 *   nofile 1024 soft / 4096 hard, 4 fds open  -> fd-process 1,020
 *   file-max 1,000,000, file-nr 2,080         -> free 997,920; fd-host 997,920 (1 socket) or 498,960 (2)
 *   MemAvailable 8,192,000 kB = 8,388,608,000 B; the tests fix the per-socket cost at 4,800 B
 *   (the measured constant may change; the arithmetic here must not)
 *       / 4,800 (1 socket)  = 1,747,626.67 -> 1,747,626
 *       / 9,600 (2 sockets) =   873,813.33 ->   873,813
 *   nf_conntrack_max 1,048,576, count 100     -> conntrack 1,048,476
 */
const POOL = 28_227;
const EXPLICIT = 64_507;
const FD_PROCESS = 1_020;
const FD_HOST_1 = 997_920;
const FD_HOST_2 = 498_960;
const MEM_1 = 1_747_626;
const MEM_2 = 873_813;
const CONNTRACK = 1_048_476;
const PER_SOCKET = 4800;

const lo = { interface: 'lo', address: '127.0.0.1', family: 4 as const, prefix: 8 };
const A: KernelFacts = readKernelFacts({ root: HOST_A, interfaces: [lo] });

function limits(over: Partial<LimitsInput> & { to?: string[] }): Limits {
  const { to, ...rest } = over;
  return computeLimits({
    facts: A,
    strategy: 'auto',
    sources: [],
    destinations: (to ?? []).map((t) => parseEndpoints(t)),
    localAddresses: ['127.0.0.1'],
    kernelBytesPerSocket: PER_SOCKET,
    ...rest,
  });
}

function c(l: Limits, id: string): Constraint {
  const found = l.constraints.find((x) => x.id === id);
  assert.ok(found, `constraint ${id} missing`);
  return found;
}

describe('computeLimits', () => {
  it('fixture facts are what the comments above assume', () => {
    assert.equal(ephemeralPool(A)!.size, POOL);
    assert.equal(explicitPool(A).size, EXPLICIT);
    // The default cost is the measured one, in the 3-5 KB the kernel's objects add up to.
    assert.ok(KERNEL_BYTES_PER_SOCKET > 3000 && KERNEL_BYTES_PER_SOCKET < 5000);
  });

  it('auto to one loopback destination', () => {
    const l = limits({ to: ['127.0.0.1:7000'] });
    assert.deepEqual(
      l.constraints.map((x) => x.id),
      ['ephemeral-ports', 'fd-process', 'fd-host', 'memory', 'conntrack', 'time-wait', 'backlog'],
    );
    assert.equal(l.general, false);
    assert.equal(l.destinationCount, 1);
    assert.equal(l.sourceCount, 1);
    assert.equal(l.socketsPerConnection, 2);
    assert.equal(l.portsPerDestination, POOL);
    assert.equal(c(l, 'ephemeral-ports').limit, POOL);
    assert.equal(c(l, 'fd-process').limit, FD_PROCESS);
    assert.equal(c(l, 'fd-process').scope, 'process');
    assert.equal(c(l, 'fd-host').limit, FD_HOST_2);
    assert.equal(c(l, 'memory').limit, MEM_2);
    assert.equal(c(l, 'conntrack').limit, CONNTRACK);
    assert.equal(c(l, 'time-wait').limit, null);
    assert.equal(c(l, 'backlog').limit, null);
    assert.deepEqual({ ...l.host, remedy: undefined }, { connections: POOL, connectionsMin: POOL, binding: 'ephemeral-ports', remedy: undefined });
    assert.equal(l.host.remedy, c(l, 'ephemeral-ports').remedy);
    // soft 1,020 free descriptors < 28,227 ports
    assert.equal(l.process.connections, FD_PROCESS);
    assert.equal(l.process.binding, 'fd-process');
    assert.match(l.process.remedy, /ulimit -n 4096/);
    assert.match(c(l, 'fd-process').remedy, /gives 4,092/);
    assert.match(c(l, 'ephemeral-ports').detail, /28,227 ephemeral ports \(28,232 in 32768-60999, minus 5 reserved or listened on\)/);
    assert.match(c(l, 'time-wait').detail, /262,144/);
    assert.match(c(l, 'time-wait').detail, /loopback only/);
    assert.match(c(l, 'backlog').detail, /somaxconn 4,096/);
  });

  it('100 destination ports multiply the port limit; the file table then binds', () => {
    const l = limits({ to: ['127.0.0.1:7000-7099'] });
    assert.equal(l.destinationCount, 100);
    assert.equal(c(l, 'ephemeral-ports').limit, POOL * 100); // 2,822,700
    // host: min(2,822,700 ports, 498,960 fd-host, 873,813 memory, 1,048,476 conntrack)
    assert.equal(l.host.connections, FD_HOST_2);
    assert.equal(l.host.binding, 'fd-host');
    assert.equal(l.process.binding, 'fd-process');
  });

  it('with a larger file table, memory binds', () => {
    const facts = { ...A, fileMax: known(10_000_000, 'test') };
    const l = limits({ facts, to: ['127.0.0.1:7000-7099'] });
    assert.equal(c(l, 'fd-host').limit, 4_998_960); // (10,000,000 - 2,080) / 2
    assert.equal(l.host.connections, MEM_2);
    assert.equal(l.host.binding, 'memory');
  });

  it('kernel bytes per socket can be given', () => {
    const l = limits({ to: ['127.0.0.1:7000'], kernelBytesPerSocket: 10_000 });
    assert.equal(c(l, 'memory').limit, 419_430); // 8,388,608,000 / 20,000
  });

  it('two destination addresses × 100 ports count 200 destinations', () => {
    const l = limits({ to: ['127.0.0.2-127.0.0.3:7000-7099'] });
    assert.equal(l.destinationCount, 200);
    assert.equal(c(l, 'ephemeral-ports').limit, POOL * 200);
    const m = limits({ to: ['127.0.0.1:7000', '127.0.0.1:8000-8001'] });
    assert.equal(m.destinationCount, 3);
    assert.equal(c(m, 'ephemeral-ports').limit, POOL * 3);
  });

  it('bind with 3 sources: one shared pool per source, whatever the destinations', () => {
    const sources = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
    for (const to of [['127.0.0.1:7000'], ['127.0.0.1:7000-7099'], []]) {
      const l = limits({ strategy: 'bind', sources, to });
      assert.equal(l.constraints[0].id, 'bind-pool');
      assert.equal(l.constraints[0].limit, POOL * 3, `to ${to.join(',') || 'general'}`); // 84,681
      assert.equal(l.sourceCount, 3);
      assert.equal(l.portsPerDestination, POOL);
      assert.equal(l.host.binding, 'bind-pool');
      assert.equal(l.host.connections, 84_681);
    }
  });

  it('nopo: sources × destinations', () => {
    const sources = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
    const one = limits({ strategy: 'nopo', sources, to: ['127.0.0.1:7000'] });
    assert.equal(c(one, 'ephemeral-ports').limit, 84_681); // 28,227 × 3
    assert.equal(one.host.binding, 'ephemeral-ports');
    const many = limits({ strategy: 'nopo', sources, to: ['127.0.0.1:7000-7099'] });
    assert.equal(c(many, 'ephemeral-ports').limit, 8_468_100); // 28,227 × 3 × 100
    assert.equal(many.host.binding, 'fd-host');
    assert.match(c(many, 'ephemeral-ports').detail, /IP_BIND_ADDRESS_NO_PORT/);
  });

  it('explicit: unprivileged ports, reserved ones included, minus the ports listened on at the source address', () => {
    const l = limits({ strategy: 'explicit', to: ['127.0.0.1:7000'] });
    assert.equal(l.constraints[0].id, 'explicit-ports');
    assert.equal(l.constraints[0].limit, EXPLICIT); // 65535 - 1024 + 1 - 5 listeners
    assert.equal(l.portsPerDestination, EXPLICIT);
    const m = limits({ strategy: 'explicit', sources: ['127.0.0.2', '127.0.0.3', '127.0.0.4'], to: ['127.0.0.1:7000-7001'] });
    // From 127.0.0.2-4 only the wildcard listeners (0.0.0.0:33000, [::]:7002) refuse a bind: the ones on 127.0.0.1, ::1 and ::ffff:127.0.0.1 do not.
    assert.equal(m.constraints[0].limit, (64_512 - 2) * 3 * 2);
    const zero = computeLimits({ facts: { ...A, unprivilegedPortStart: known(0, 'test') }, strategy: 'explicit', sources: [], destinations: [] });
    assert.equal(zero.constraints[0].limit, 65_535 - 5); // port 0 is never a source port; reserved ports stay in
    const high = computeLimits({ facts: { ...A, unprivilegedPortStart: known(40_000, 'test') }, strategy: 'explicit', sources: [], destinations: [] });
    assert.equal(high.constraints[0].limit, 65_535 - 40_000 + 1); // no reserved or listened port is >= 40000
  });

  it('reserved ports and listeners inside the range shrink the pool by exactly their count', () => {
    const none = { ...A, reservedPorts: known('', 'test'), listeners: known([] as { address: string; port: number }[], 'test') };
    const pool = (f: KernelFacts): number | null => computeLimits({ facts: f, strategy: 'auto', sources: [], destinations: [parseEndpoints('127.0.0.1:7000')] }).constraints[0].limit;
    assert.equal(pool(none), 28_232);
    const reserved = { ...none, reservedPorts: known('40000-40009', 'test') };
    assert.equal(pool(reserved), 28_222);
    const listener = { ...reserved, listeners: known([{ address: '127.0.0.1', port: 50_000 }], 'test') };
    assert.equal(pool(listener), 28_221);
    const outside = { ...listener, listeners: known([{ address: '127.0.0.1', port: 50_000 }, { address: '0.0.0.0', port: 80 }, { address: '::', port: 61_000 }], 'test') };
    assert.equal(pool(outside), 28_221);
    const both = { ...outside, listeners: known([{ address: '127.0.0.1', port: 50_000 }, { address: '::1', port: 40_005 }, { address: '::', port: 50_000 }], 'test') };
    assert.equal(pool(both), 28_221, 'a listened reserved port and two listeners on one port count once');
    const reservedOutside = { ...none, reservedPorts: known('1000,8080,61000-61010', 'test') };
    assert.equal(pool(reservedOutside), 28_232);
    const edges = { ...none, reservedPorts: known('32768,60999', 'test') };
    assert.equal(pool(edges), 28_230);
  });

  it('a remote destination costs one socket; a local address two', () => {
    const remote = limits({ to: ['10.9.8.7:80'] });
    assert.equal(remote.socketsPerConnection, 1);
    assert.equal(c(remote, 'fd-host').limit, FD_HOST_1);
    assert.equal(c(remote, 'memory').limit, MEM_1);
    const local = limits({ to: ['10.9.8.7:80'], localAddresses: ['127.0.0.1', '10.9.8.7'] });
    assert.equal(local.socketsPerConnection, 2);
    assert.equal(c(local, 'fd-host').limit, FD_HOST_2);
    assert.equal(limits({ to: ['[::1]:80'] }).socketsPerConnection, 2);
    assert.equal(limits({ to: ['[::ffff:127.0.0.1]:80'] }).socketsPerConnection, 2);
    assert.equal(limits({ to: ['10.9.8.7:80', '127.0.0.1:80'] }).socketsPerConnection, 2);
  });

  it('conntrack: active is a finite limit, inactive is none', () => {
    const active = limits({ to: ['127.0.0.1:7000'] });
    assert.equal(c(active, 'conntrack').limit, CONNTRACK);
    const inactive = limits({ facts: { ...A, conntrackCount: known(0, 'test') }, to: ['127.0.0.1:7000'] });
    assert.equal(c(inactive, 'conntrack').limit, null);
    assert.match(c(inactive, 'conntrack').detail, /tracking nothing/);
    const full = limits({ facts: { ...A, conntrackCount: known(1_048_000, 'test') }, to: ['127.0.0.1:7000'] });
    assert.equal(c(full, 'conntrack').limit, 576);
    assert.equal(full.host.binding, 'conntrack');
    assert.equal(full.host.connections, 576);
    assert.equal(full.process.binding, 'conntrack', '576 < 1,020 descriptors');
    assert.match(full.host.remedy, /nf_conntrack_max=4194304/);
  });

  it('fd-process when soft equals hard points at the hard limit and fs.nr_open', () => {
    const l = limits({ facts: { ...A, nofile: known({ soft: 4096, hard: 4096 }, 'test') }, to: ['127.0.0.1:7000'] });
    assert.equal(c(l, 'fd-process').limit, 4092);
    assert.match(c(l, 'fd-process').remedy, /LimitNOFILE=1048576/);
  });

  it('the general case: no destinations', () => {
    const l = limits({});
    assert.equal(l.general, true);
    assert.equal(l.destinationCount, 1);
    assert.equal(l.socketsPerConnection, 1);
    assert.equal(c(l, 'ephemeral-ports').limit, POOL);
    assert.equal(c(l, 'fd-host').limit, FD_HOST_1);
    assert.equal(c(l, 'memory').limit, MEM_1);
    assert.equal(l.host.connections, POOL);
    assert.equal(l.host.binding, 'ephemeral-ports');
    assert.equal(l.process.connections, FD_PROCESS);
    assert.match(limitsSentence(l, 'one destination'), /^There is no host-wide limit of 65,536: every .* has its own 28,227 source ports/);
  });

  it('who is asking: CAP_SYS_ADMIN goes past fs.file-max, CAP_NET_BIND_SERVICE binds low ports; remedies say what the process lacks', () => {
    const caps = (c: { netBindService: boolean; sysAdmin: boolean; sysResource: boolean; netAdmin: boolean }): KernelFacts => ({ ...A, capabilities: known(c, 'test') });
    const none = { netBindService: false, sysAdmin: false, sysResource: false, netAdmin: false };
    const root = { netBindService: true, sysAdmin: true, sysResource: true, netAdmin: true };
    const user = limits({ facts: caps(none), to: ['127.0.0.1:7000-7099'] });
    assert.equal(c(user, 'fd-host').limit, FD_HOST_2);
    assert.match(c(user, 'fd-host').remedy, /needs root: CAP_SYS_ADMIN/);
    assert.match(c(user, 'ephemeral-ports').remedy, /needs root: CAP_NET_ADMIN/);
    const admin = limits({ facts: caps(root), to: ['127.0.0.1:7000-7099'] });
    // alloc_empty_file() holds only unprivileged processes to fs.file-max.
    assert.equal(c(admin, 'fd-host').limit, null);
    assert.match(c(admin, 'fd-host').detail, /CAP_SYS_ADMIN/);
    assert.notEqual(admin.host.binding, 'fd-host');
    assert.doesNotMatch(c(admin, 'ephemeral-ports').remedy, /needs root/);
    // No capability exempts a process from memory or conntrack; the detail says so.
    assert.match(c(admin, 'memory').detail, /no capability exempts/);
    // Explicit ports: from 1 with CAP_NET_BIND_SERVICE, from ip_unprivileged_port_start (1024) without.
    const low = limits({ facts: caps({ ...none, netBindService: true }), strategy: 'explicit', to: ['127.0.0.1:7000'] });
    assert.equal(low.constraints[0].limit, 65_535 - 5); // every port but the 5 listened on
    const high = limits({ facts: caps(none), strategy: 'explicit', to: ['127.0.0.1:7000'] });
    assert.equal(high.constraints[0].limit, EXPLICIT);
    assert.match(high.constraints[0].detail, /needs CAP_NET_BIND_SERVICE/);
  });

  it('unknown facts give null limits without throwing', () => {
    const facts = readKernelFacts({ root: HOST_MISSING, interfaces: [] });
    let l!: Limits;
    assert.doesNotThrow(() => {
      l = computeLimits({ facts, strategy: 'auto', sources: [], destinations: [parseEndpoints('127.0.0.1:7000')] });
    });
    for (const x of l.constraints) assert.equal(x.limit, null, x.id);
    assert.equal(l.portsPerDestination, null);
    assert.deepEqual(l.host, { connections: null, connectionsMin: null, binding: null, remedy: '' });
    assert.deepEqual(l.process, { connections: null, connectionsMin: null, binding: null, remedy: '' });
    assert.match(c(l, 'ephemeral-ports').detail, /ip_local_port_range/);
    assert.match(c(l, 'fd-process').detail, /Max open files/);
    const bind = computeLimits({ facts, strategy: 'bind', sources: ['127.0.0.2'], destinations: [] });
    assert.equal(bind.constraints[0].id, 'bind-pool');
    assert.equal(bind.constraints[0].limit, null);
    const text = renderLimits(l, '127.0.0.1:7000');
    assert.match(text.split('\n')[0], /^One process can open an unknown number/);
  });
});
