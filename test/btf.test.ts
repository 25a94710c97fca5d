/**
 * The BTF reader the BPF iterator takes its offsets from: a hand-built blob
 * (members inside anonymous unions, typedefs, a bitfield), and the running
 * kernel's own BTF where it has one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { Btf, BtfKind } from '../dist/kernel/btf.js';

/** A BTF blob: `int`, typedef t_int, an anonymous union {int a; t_int b;}, struct outer {int c; union; int bf:3;}. */
function blob(): Buffer {
  const names = ['', 'int', 't_int', 'a', 'b', 'outer', 'c', 'bf'];
  const at = new Map<string, number>();
  let strings = '';
  for (const n of names) {
    at.set(n, strings.length);
    strings += `${n}\0`;
  }
  const words: number[] = [];
  const type = (name: string, kind: number, vlen: number, sizeOrType: number, kindFlag = 0): void => {
    words.push(at.get(name)!, ((kindFlag << 31) | (kind << 24) | vlen) >>> 0, sizeOrType);
  };
  type('int', BtfKind.INT, 0, 4); // id 1
  words.push(32); // encoding: 32 bits
  type('t_int', BtfKind.TYPEDEF, 0, 1); // id 2
  type('', BtfKind.UNION, 2, 4); // id 3
  words.push(at.get('a')!, 1, 0, at.get('b')!, 2, 0);
  type('outer', BtfKind.STRUCT, 3, 12, 1); // id 4, bitfield offsets
  words.push(at.get('c')!, 1, 0, 0, 3, 32, at.get('bf')!, 1, ((3 << 24) | 64) >>> 0);
  const types = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => types.writeUInt32LE(w, i * 4));
  const str = Buffer.from(strings, 'latin1');
  const hdr = Buffer.alloc(24);
  hdr.writeUInt16LE(0xeb9f, 0);
  hdr[2] = 1;
  hdr.writeUInt32LE(24, 4);
  hdr.writeUInt32LE(0, 8);
  hdr.writeUInt32LE(types.length, 12);
  hdr.writeUInt32LE(types.length, 16);
  hdr.writeUInt32LE(str.length, 20);
  return Buffer.concat([hdr, types, str]);
}

test('BTF: types by kind and name, members through anonymous unions and typedefs', () => {
  const btf = new Btf(blob());
  assert.equal(btf.count, 4);
  assert.equal(btf.find(BtfKind.STRUCT, 'outer'), 4);
  assert.equal(btf.find(BtfKind.TYPEDEF, 't_int'), 2);
  assert.equal(btf.find(BtfKind.STRUCT, 'int'), undefined);
  assert.equal(btf.find(BtfKind.STRUCT, 'nope'), undefined);
  assert.equal(btf.name(4), 'outer');
  assert.deepEqual(btf.member('outer', ['c']), { offset: 0, size: 4 });
  assert.deepEqual(btf.member('outer', ['a']), { offset: 4, size: 4 });
  assert.deepEqual(btf.member('outer', ['b']), { offset: 4, size: 4 });
});

test('BTF: a bitfield, a missing member or struct, and a blob that is not BTF are refused', () => {
  const btf = new Btf(blob());
  assert.throws(() => btf.member('outer', ['bf']), /bitfield/);
  assert.throws(() => btf.member('outer', ['zz']), /no member zz/);
  assert.throws(() => btf.member('nope', ['c']), /no struct nope/);
  assert.throws(() => new Btf(Buffer.alloc(32)), /bad magic/);
  const cut = blob().subarray(0, 40);
  assert.throws(() => new Btf(cut), /past the end/);
});

const vmlinux = '/sys/kernel/btf/vmlinux';
test("the running kernel's BTF has what the socket iterator reads", { skip: existsSync(vmlinux) ? false : `${vmlinux} is absent (kernel built without BTF)` }, () => {
  const btf = Btf.vmlinux();
  assert.ok(btf.count > 1000);
  assert.ok(btf.find(BtfKind.FUNC, 'bpf_iter_tcp') !== undefined);
  assert.equal(btf.member('sock_common', ['skc_family']).size, 2);
  assert.equal(btf.member('sock_common', ['skc_v6_daddr']).size, 16);
  // struct sock begins with its sock_common: the two agree on where the state is.
  assert.equal(btf.member('sock', ['__sk_common', 'skc_state']).offset, btf.member('sock_common', ['skc_state']).offset);
  assert.equal(btf.member('tcp_sock', ['inet_conn', 'icsk_inet', 'sk', 'sk_ack_backlog']).size, 4);
});
