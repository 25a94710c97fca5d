import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { featuresOf, readKernelFacts, type KernelFacts } from '../dist/kernel/facts.js';
import type { Fact } from '../dist/kernel/fact.js';

const HOST_A = fileURLToPath(new URL('../test/fixtures/host-a/', import.meta.url));
const HOST_MISSING = fileURLToPath(new URL('../test/fixtures/host-missing/', import.meta.url));

function value<T>(f: Fact<T>): T {
  assert.equal(f.known, true, f.known ? '' : `unexpectedly unknown: ${f.reason}`);
  return (f as { value: T }).value;
}

function reason(f: Fact<unknown>): string {
  assert.equal(f.known, false, `expected unknown, got ${JSON.stringify(f)}`);
  const r = (f as { reason: string }).reason;
  assert.equal(typeof r, 'string');
  assert.ok(r.length > 0);
  return r;
}

describe('readKernelFacts on host-a', () => {
  const lo = { interface: 'lo', address: '127.0.0.1', family: 4 as const, prefix: 8 };
  const f = readKernelFacts({ root: HOST_A, interfaces: [lo] });

  it('reads every sysctl', () => {
    assert.deepEqual(value(f.portRange), { lo: 32768, hi: 60999 });
    assert.equal(f.portRange.source, 'proc/sys/net/ipv4/ip_local_port_range');
    assert.equal(value(f.reservedPorts), '8080,33001-33004');
    assert.equal(value(f.unprivilegedPortStart), 1024);
    assert.equal(value(f.tcpTwReuse), 2);
    assert.equal(value(f.tcpFinTimeout), 60);
    assert.equal(value(f.tcpMaxTwBuckets), 262144);
    assert.equal(value(f.tcpMaxOrphans), 131072);
    assert.deepEqual(value(f.tcpMem), { min: 382185, pressure: 509583, max: 764370 });
    assert.equal(value(f.somaxconn), 4096);
    assert.equal(value(f.tcpMaxSynBacklog), 2048);
    assert.equal(value(f.tcpSyncookies), 1);
    assert.equal(value(f.fileMax), 1_000_000);
    assert.equal(value(f.nrOpen), 1_048_576);
    assert.deepEqual(value(f.fileNr), { allocated: 2080, free: 0, max: 1_000_000 });
    assert.equal(value(f.conntrackMax), 1_048_576);
    assert.equal(value(f.conntrackCount), 100);
  });

  it('reads the process limits and open descriptors', () => {
    assert.deepEqual(value(f.nofile), { soft: 1024, hard: 4096 });
    assert.equal(f.nofile.source, 'proc/self/limits');
    // fd/ holds the files 0, 1, 2, 3
    assert.equal(readdirSync(`${HOST_A}proc/self/fd`).length, 4);
    assert.equal(value(f.openFds), 4);
  });

  it('reads memory in bytes', () => {
    assert.equal(value(f.memAvailable), 8_192_000 * 1024);
    assert.equal(value(f.memTotal), 16_384_000 * 1024);
    assert.equal(f.memAvailable.source, 'proc/meminfo MemAvailable');
  });

  it('reads the release and its features', () => {
    assert.equal(value(f.kernelRelease), '6.1.0-test');
    assert.deepEqual(value(f.features), { bindAddressNoPort: true, evenOddSplit: true, localPortRangeOption: false });
  });

  it('takes the interfaces it is given', () => {
    assert.deepEqual(value(f.interfaces), [lo]);
    assert.equal(f.interfaces.source, 'given');
    const g = readKernelFacts({ root: HOST_A });
    assert.match(reason(g.interfaces), /live host/);
  });

  it('lists listeners of both families from the socket table', () => {
    assert.deepEqual(value(f.listeners), [
      { address: '127.0.0.1', port: 7000 },
      { address: '0.0.0.0', port: 33000 },
      { address: '::1', port: 7001 },
      { address: '::', port: 7002 },
      { address: '::ffff:127.0.0.1', port: 7003 },
    ]);
  });
});

describe('readKernelFacts on host-missing', () => {
  let f: KernelFacts;

  it('does not throw', () => {
    f = readKernelFacts({ root: HOST_MISSING });
  });

  it('missing files are unknown with the reason', () => {
    assert.match(reason(f.portRange), /ip_local_port_range: not present/);
    assert.match(reason(f.unprivilegedPortStart), /ip_unprivileged_port_start: not present/);
    assert.match(reason(f.tcpMaxOrphans), /not present/);
    assert.match(reason(f.tcpMaxSynBacklog), /not present/);
    assert.match(reason(f.tcpSyncookies), /not present/);
    assert.match(reason(f.nrOpen), /nr_open: not present/);
    assert.match(reason(f.openFds), /proc\/self\/fd: ENOENT/);
    assert.match(reason(f.listeners), /proc\/net\/tcp: ENOENT; proc\/net\/tcp6: ENOENT/);
  });

  it('no netfilter folder: conntrack is unknown, said as not loaded', () => {
    assert.match(reason(f.conntrackMax), /nf_conntrack is not loaded/);
    assert.match(reason(f.conntrackCount), /nf_conntrack_count: not present/);
  });

  it('malformed files are unknown, quoting what was read', () => {
    assert.match(reason(f.tcpMem), /tcp_mem: expected 3 integer\(s\), read 'garbage'/);
    assert.match(reason(f.fileMax), /file-max: expected 1 integer\(s\), read 'abc'/);
    assert.match(reason(f.fileNr), /file-nr: expected 3 integer\(s\), read '2080 0'/);
    assert.match(reason(f.tcpFinTimeout), /read 'sixty'/);
    assert.match(reason(f.nofile), /no 'Max open files' line/);
    assert.match(reason(f.memAvailable), /no MemAvailable line/);
    assert.equal(value(f.memTotal), 16_384_000 * 1024);
  });

  it('an empty sysctl file is unknown, not 0', () => {
    assert.equal(readFileSync(`${HOST_MISSING}proc/sys/net/ipv4/tcp_tw_reuse`, 'utf8'), '');
    assert.match(reason(f.tcpTwReuse), /tcp_tw_reuse/);
  });

  it('an unreadable release leaves features unknown', () => {
    assert.equal(value(f.kernelRelease), 'garbage');
    assert.match(reason(f.features), /'garbage'/);
  });

  it('files that are there are still read', () => {
    assert.equal(value(f.somaxconn), 128);
    assert.equal(value(f.tcpMaxTwBuckets), 262144);
    assert.equal(value(f.reservedPorts), '');
  });
});

describe('readKernelFacts on the live host', () => {
  it('agrees with /proc', () => {
    const f = readKernelFacts();
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    assert.deepEqual(value(f.portRange), { lo, hi });
    assert.equal(value(f.kernelRelease), readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim());
    const m = /^Max open files\s+(\d+)\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m) assert.deepEqual(value(f.nofile), { soft: Number(m[1]), hard: Number(m[2]) });
    assert.ok(value(f.interfaces).some((i) => i.address === '127.0.0.1'));
  });
});

describe('featuresOf', () => {
  const cases: [string, boolean, boolean, boolean][] = [
    ['4.1.0', false, false, false],
    ['4.2.0', true, false, false],
    ['4.5.7', true, false, false],
    ['4.6.0', true, true, false],
    ['5.15.0-91-generic', true, true, false],
    ['6.2.9', true, true, false],
    ['6.3.0', true, true, true],
    ['6.18.44-fc', true, true, true],
    ['10.0', true, true, true],
  ];
  for (const [release, bindAddressNoPort, evenOddSplit, localPortRangeOption] of cases) {
    it(release, () => {
      assert.deepEqual(value(featuresOf(release)), { bindAddressNoPort, evenOddSplit, localPortRangeOption });
    });
  }

  it('garbage is unknown with a reason naming it', () => {
    const f = featuresOf('garbage', 'proc/sys/kernel/osrelease');
    assert.match(reason(f), /'garbage'/);
    assert.equal(f.source, 'proc/sys/kernel/osrelease');
    assert.equal(featuresOf('').known, false);
  });
});
