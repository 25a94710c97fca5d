import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../dist/errors.js';
import { MAX_ADDRESSES, formatIp, isLoopback, normalizeAddress, parseAddresses, parseEndpoints, parseIp, parsePorts } from '../dist/model/address.js';

/** Asserts `fn` throws an InvalidArgumentError (code, exit 2) whose message names `value`. */
function rejects(fn: () => unknown, value: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
    assert.equal(err.code, 'FT_INVALID_ARGUMENT');
    assert.equal(err.exitCode, 2);
    assert.ok(err.message.includes(value), `message '${err.message}' should name '${value}'`);
    assert.ok(!err.message.includes('\n'), 'one line');
    return true;
  });
}

describe('parseIp / formatIp', () => {
  it('parses IPv4 to its integer and back', () => {
    assert.deepEqual(parseIp('127.0.0.1'), { family: 4, n: 0x7f000001n });
    assert.deepEqual(parseIp('255.255.255.255'), { family: 4, n: 0xffffffffn });
    assert.deepEqual(parseIp('0.0.0.0'), { family: 4, n: 0n });
    for (const a of ['127.0.0.1', '10.1.2.3', '0.0.0.0', '255.255.255.255', '192.168.100.200']) {
      assert.equal(formatIp(parseIp(a)!), a);
    }
  });

  it('rejects malformed IPv4', () => {
    for (const bad of ['1.2.3', '256.1.1.1', '1.2.3.4.5', '01.2.3.4', '1.2.3.-4', '', 'abc', '1.2.3.4 ']) {
      assert.equal(parseIp(bad), undefined, bad);
    }
  });

  it('compresses IPv6 per RFC 5952', () => {
    const cases: [string, string][] = [
      ['::', '::'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['::1', '::1'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['fe80::1', 'fe80::1'],
      ['FE80:0:0:0:0:0:0:1', 'fe80::1'],
      ['2001:0db8::0001', '2001:db8::1'],
      // longest run wins; on a tie the first one
      ['2001:db8:0:0:1:0:0:0', '2001:db8:0:0:1::'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      // a single zero group is not compressed
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
      ['1::', '1::'],
    ];
    for (const [input, canonical] of cases) {
      const ip = parseIp(input);
      assert.ok(ip, input);
      assert.equal(ip.family, 6);
      assert.equal(formatIp(ip), canonical, input);
      assert.deepEqual(parseIp(canonical), ip, `round trip of ${input}`);
    }
    assert.equal(parseIp('::1')!.n, 1n);
    assert.equal(parseIp('fe80::1')!.n, (0xfe80n << 112n) | 1n);
  });

  it('parses IPv4-mapped IPv6 to the mapped integer', () => {
    const ip = parseIp('::ffff:127.0.0.1');
    assert.deepEqual(ip, { family: 6, n: (0xffffn << 32n) | 0x7f000001n });
    assert.deepEqual(parseIp('::ffff:7f00:1'), ip);
    assert.deepEqual(parseIp(formatIp(ip!)), ip, 'round trip keeps the value');
  });

  it('prints IPv4-mapped IPv6 in mixed notation (RFC 5952 section 5), as the socket table does', () => {
    assert.equal(formatIp(parseIp('::ffff:127.0.0.1')!), '::ffff:127.0.0.1');
    assert.equal(formatIp(parseIp('::ffff:7f00:1')!), '::ffff:127.0.0.1');
  });

  it('rejects malformed IPv6', () => {
    for (const bad of ['1:2:3:4:5:6:7:8:9', '1::2::3', '::1::', '1::2:3:4:5:6:7:8', '12345::1', 'g::1', ':::', '1:2:3:4:5:6:7', '::ffff:1.2.3', '::ffff:256.0.0.1']) {
      assert.equal(parseIp(bad), undefined, bad);
    }
  });

  it('normalizeAddress canonicalizes or names the bad value', () => {
    assert.equal(normalizeAddress('FE80:0::01'), 'fe80::1');
    rejects(() => normalizeAddress('1.2.3'), '1.2.3');
  });
});

describe('parseAddresses', () => {
  it('expands a list', () => {
    assert.deepEqual(parseAddresses('127.0.0.1,127.0.0.3, ::1'), ['127.0.0.1', '127.0.0.3', '::1']);
  });

  it('expands a range, ends included', () => {
    const a = parseAddresses('127.0.0.2-127.0.0.9');
    assert.equal(a.length, 8);
    assert.deepEqual(a, ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7', '127.0.0.8', '127.0.0.9']);
    assert.deepEqual(parseAddresses('127.0.0.255-127.0.1.1'), ['127.0.0.255', '127.0.1.0', '127.0.1.1']);
    assert.deepEqual(parseAddresses('::1-::3'), ['::1', '::2', '::3']);
    assert.deepEqual(parseAddresses('127.0.0.5-127.0.0.5'), ['127.0.0.5']);
  });

  it('expands a CIDR block, network and broadcast included', () => {
    const a = parseAddresses('127.0.1.0/28');
    assert.equal(a.length, 16);
    assert.equal(a[0], '127.0.1.0');
    assert.equal(a[15], '127.0.1.15');
    assert.deepEqual(parseAddresses('127.0.1.5/28'), a, 'host bits are masked');
    assert.deepEqual(parseAddresses('10.0.0.7/32'), ['10.0.0.7']);
    assert.deepEqual(parseAddresses('fe80::/126'), ['fe80::', 'fe80::1', 'fe80::2', 'fe80::3']);
  });

  it('drops duplicates, keeping first-seen order', () => {
    assert.deepEqual(parseAddresses('127.0.0.2,127.0.0.1-127.0.0.3,127.0.0.2/32'), ['127.0.0.2', '127.0.0.1', '127.0.0.3']);
  });

  it('accepts exactly MAX_ADDRESSES and rejects more', () => {
    assert.equal(MAX_ADDRESSES, 65_536);
    assert.equal(parseAddresses('10.0.0.0/16').length, 65_536);
    rejects(() => parseAddresses('10.0.0.0/15'), '10.0.0.0/15');
    rejects(() => parseAddresses('10.0.0.0/16,10.1.0.0'), '10.0.0.0/16,10.1.0.0');
    rejects(() => parseAddresses('10.0.0.0-10.1.0.0'), '10.0.0.0-10.1.0.0');
    rejects(() => parseAddresses('::/64'), '::/64');
  });

  it('rejects bad addresses naming them', () => {
    rejects(() => parseAddresses('1.2.3'), '1.2.3');
    rejects(() => parseAddresses('256.1.1.1'), '256.1.1.1');
    rejects(() => parseAddresses('10.0.0.0/33'), '10.0.0.0/33');
    rejects(() => parseAddresses('::/129'), '::/129');
    rejects(() => parseAddresses('10.0.0.0/'), '10.0.0.0/');
    rejects(() => parseAddresses('127.0.0.9-127.0.0.2'), '127.0.0.9-127.0.0.2');
    rejects(() => parseAddresses('127.0.0.1-::1'), '127.0.0.1-::1');
    rejects(() => parseAddresses('127.0.0.1,,127.0.0.2'), 'address');
  });

  it('rejects the empty string', () => {
    rejects(() => parseAddresses(''), 'empty');
    rejects(() => parseAddresses('  '), 'empty');
  });
});

describe('parsePorts', () => {
  it('parses a single port', () => {
    const p = parsePorts('7000');
    assert.equal(p.size, 1);
    assert.ok(p.has(7000));
    assert.equal(p.toString(), '7000');
  });

  it('parses a range, ends included', () => {
    const p = parsePorts('7000-7039');
    assert.equal(p.size, 40);
    assert.ok(p.has(7000) && p.has(7039) && !p.has(6999) && !p.has(7040));
    assert.equal(parsePorts('1-65535').size, 65535);
  });

  it('parses a list and merges overlapping and adjacent parts', () => {
    const p = parsePorts('7010-7020,80, 7000-7012,7021,443');
    assert.equal(p.toString(), '80,443,7000-7021');
    assert.equal(p.size, 24);
    assert.equal(parsePorts('80,80,80').size, 1);
  });

  it('rejects bad ports naming them', () => {
    rejects(() => parsePorts('99999'), '99999');
    rejects(() => parsePorts('0'), "'0'");
    rejects(() => parsePorts('65536'), '65536');
    rejects(() => parsePorts('7000-6000'), '7000-6000');
    rejects(() => parsePorts('7000-70000'), '70000');
    rejects(() => parsePorts('abc'), 'abc');
    rejects(() => parsePorts('1.2.3'), '1.2.3');
    rejects(() => parsePorts('-5'), '-5');
    rejects(() => parsePorts('80,x'), "'x'");
    rejects(() => parsePorts(''), 'empty');
  });
});

describe('parseEndpoints', () => {
  it('parses an address with a port range', () => {
    const e = parseEndpoints('127.0.0.1:7000-7039');
    assert.deepEqual(e.addresses, ['127.0.0.1']);
    assert.equal(e.ports.size, 40);
    assert.equal(e.ports.toString(), '7000-7039');
  });

  it('parses a bracketed IPv6 endpoint', () => {
    const e = parseEndpoints('[::1]:7000');
    assert.deepEqual(e.addresses, ['::1']);
    assert.equal(e.ports.toString(), '7000');
    const f = parseEndpoints('[fe80:0::1-fe80::2]:80,443');
    assert.deepEqual(f.addresses, ['fe80::1', 'fe80::2']);
    assert.equal(f.ports.toString(), '80,443');
  });

  it('parses an address range with one port', () => {
    const e = parseEndpoints('127.0.0.2-127.0.0.3:80');
    assert.deepEqual(e.addresses, ['127.0.0.2', '127.0.0.3']);
    assert.equal(e.ports.toString(), '80');
  });

  it('rejects bad endpoints naming the bad value', () => {
    rejects(() => parseEndpoints('127.0.0.1:99999'), '99999');
    rejects(() => parseEndpoints('127.0.0.1:0'), "'0'");
    rejects(() => parseEndpoints('127.0.0.1:7000-6000'), '7000-6000');
    rejects(() => parseEndpoints('127.0.0.1:abc'), 'abc');
    rejects(() => parseEndpoints('1.2.3:80'), '1.2.3');
    rejects(() => parseEndpoints('256.1.1.1:80'), '256.1.1.1');
    rejects(() => parseEndpoints('10.0.0.0/33:80'), '10.0.0.0/33');
    rejects(() => parseEndpoints('127.0.0.9-127.0.0.2:80'), '127.0.0.9-127.0.0.2');
    rejects(() => parseEndpoints('::1:7000'), '::1:7000');
    rejects(() => parseEndpoints('[::1]7000'), '[::1]7000');
    rejects(() => parseEndpoints('127.0.0.1'), '127.0.0.1');
    rejects(() => parseEndpoints(''), "''");
  });
});

describe('isLoopback', () => {
  it('is true for 127/8, ::1 and IPv4-mapped loopback', () => {
    for (const a of ['127.0.0.1', '127.0.0.0', '127.255.255.255', '127.1.2.3', '::1', '::ffff:127.0.0.1', '::ffff:127.9.9.9', '0:0:0:0:0:0:0:1']) {
      assert.equal(isLoopback(a), true, a);
    }
  });

  it('is false for everything else', () => {
    for (const a of ['126.255.255.255', '128.0.0.0', '10.0.0.1', '0.0.0.0', '::', '::2', 'fe80::1', '::ffff:10.0.0.1', '::127.0.0.1', 'localhost', '']) {
      assert.equal(isLoopback(a), false, a);
    }
  });
});
