import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import * as ffi from '../dist/kernel/ffi.js';
import * as linux from '../dist/kernel/linux.js';
import { TCP_STATES as PROC_TCP_STATES, scanProcNetTcp, type TcpRow } from '../dist/kernel/proc-net-tcp.js';
import { formatEndpoint } from '../dist/model/address.js';

const HOST_A = fileURLToPath(new URL('../test/fixtures/host-a/', import.meta.url));

/** The named constants of linux.ts whose names match `re`, as [name, value]. */
function constantsMatching(re: RegExp): [string, number][] {
  const out: [string, number][] = [];
  for (const [name, value] of Object.entries(linux)) if (re.test(name) && typeof value === 'number') out.push([name, value]);
  return out;
}

describe('formatEndpoint', () => {
  it('writes IPv4 as ADDRESS:PORT', () => {
    assert.equal(formatEndpoint('127.0.0.1', 7000), '127.0.0.1:7000');
    assert.equal(formatEndpoint('10.78.0.100', 0), '10.78.0.100:0');
  });

  it('brackets IPv6, scoped and IPv4-mapped addresses too', () => {
    assert.equal(formatEndpoint('::1', 7000), '[::1]:7000');
    assert.equal(formatEndpoint('fd00::1', 443), '[fd00::1]:443');
    assert.equal(formatEndpoint('fe80::1%lo', 80), '[fe80::1%lo]:80');
    assert.equal(formatEndpoint('::ffff:127.0.0.1', 7000), '[::ffff:127.0.0.1]:7000');
  });

  it('takes port ranges and lists as strings', () => {
    assert.equal(formatEndpoint('127.0.0.1', '7000-7039'), '127.0.0.1:7000-7039');
    assert.equal(formatEndpoint('::1', '7000-7039,8000'), '[::1]:7000-7039,8000');
    assert.equal(formatEndpoint('127.0.0.2-127.0.0.9', '7000'), '127.0.0.2-127.0.0.9:7000');
  });
});

/** The errno constants callers read as ffi.EADDRNOTAVAIL and so on. */
const FFI_ERRNOS = ['EAGAIN', 'EINPROGRESS', 'EADDRNOTAVAIL', 'EADDRINUSE', 'EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'ECONNREFUSED', 'ETIMEDOUT', 'ECONNRESET', 'EINTR'];

describe('linux.ts errno values', () => {
  const errnos = constantsMatching(/^E[A-Z0-9]+$/);

  it('defines the errno values the code uses', () => {
    const names = errnos.map(([name]) => name);
    for (const name of [...FFI_ERRNOS, 'EINVAL']) {
      assert.ok(names.includes(name), `${name} is missing`);
    }
  });

  it("equal node's os.constants.errno for this platform", () => {
    const node = osConstants.errno as Record<string, number>;
    for (const [name, value] of errnos) assert.equal(value, node[name], name);
  });

  it('are what ffi.ts exports under the same names', () => {
    const exported = ffi as unknown as Record<string, unknown>;
    for (const name of FFI_ERRNOS) {
      assert.equal(exported[name], (linux as unknown as Record<string, unknown>)[name], name);
    }
    assert.equal(ffi.errnoName, linux.errnoName);
  });

  it('name errno numbers, positive or negated', () => {
    assert.equal(linux.errnoName(linux.EADDRNOTAVAIL), 'EADDRNOTAVAIL');
    assert.equal(linux.errnoName(-linux.EADDRINUSE), 'EADDRINUSE');
    assert.equal(linux.errnoName(-linux.EAGAIN), 'EAGAIN');
    assert.equal(linux.errnoName(linux.EOPNOTSUPP), 'EOPNOTSUPP');
    assert.equal(linux.errnoName(-4242), 'E4242');
  });
});

describe('linux.ts TCP states', () => {
  const states = constantsMatching(/^TCP_[A-Z0-9_]+$/);

  it('name each state as the table of /proc/net/tcp codes does', () => {
    assert.equal(states.length, 12);
    assert.deepEqual(states.map(([, v]) => v).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    for (const [name, value] of states) assert.equal(linux.TCP_STATES[value], name.slice('TCP_'.length), name);
    assert.equal(linux.TCP_STATES.length, 13);
  });

  it("is the table proc-net-tcp.ts's parser uses", () => {
    assert.equal(PROC_TCP_STATES, linux.TCP_STATES);
  });

  it('match the st column of a /proc/net/tcp fixture', () => {
    // host-a: LISTEN 127.0.0.1:7000, ESTABLISHED 127.0.0.1:40000 -> :7000, TIME_WAIT 127.0.0.1:40001 -> :7000 (st 0A, 01, 06).
    const rows: TcpRow[] = [];
    scanProcNetTcp(HOST_A, (r) => rows.push(r));
    const at = (port: number): number | undefined => rows.find((r) => r.family === 4 && r.localAddress === '127.0.0.1' && r.localPort === port)?.state;
    assert.equal(at(7000), linux.TCP_LISTEN);
    assert.equal(at(40000), linux.TCP_ESTABLISHED);
    assert.equal(at(40001), linux.TCP_TIME_WAIT);
  });
  // proc-net-tcp.test.ts checks the table against the running kernel (through ss) on a live connection.
});

describe('linux.ts address families', () => {
  it('are the sa_family values the kernel writes in getsockname', (t) => {
    if (!ffi.ffiAvailable()) {
      t.skip(`no FFI: ${ffi.ffiUnavailableReason()}`);
      return;
    }
    // parseSockaddr decodes the kernel's sockaddr by AF_INET/AF_INET6 and throws on any other family.
    for (const family of [4, 6] as const) {
      const fd = ffi.socket(family, false);
      assert.ok(fd >= 0, `socket(IPv${family}): ${ffi.errnoName(fd)}`);
      try {
        const name = ffi.getsockname(fd);
        assert.ok(typeof name !== 'number', `getsockname: ${ffi.errnoName(name as number)}`);
        assert.equal(name.family, family);
      } finally {
        ffi.close(fd);
      }
    }
  });
});
