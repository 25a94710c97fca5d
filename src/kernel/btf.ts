/**
 * Just enough of the kernel's BTF (/sys/kernel/btf/vmlinux) to build a BPF
 * program against the running kernel: type ids by kind and name, and the
 * byte offset and size of a struct member, found through anonymous unions
 * and structs as C finds them. The socket-table iterator (bpf-iter.ts) reads
 * its offsets from here instead of assuming one kernel's layout.
 *
 * Format: Documentation/bpf/btf.rst (a header, then the type section, each
 * type a 12-byte `struct btf_type` plus data depending on its kind, then
 * the string section). Type ids count from 1 in order of appearance.
 */
import { readFileSync } from 'node:fs';

const BTF_MAGIC = 0xeb9f;

/** BTF kinds (BTF_KIND_*). */
export const BtfKind = {
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

/** A struct member as BTF gives it: byte offset from the struct's start and byte size (bitfields are refused). */
export interface BtfMember {
  readonly offset: number;
  readonly size: number;
}

/** A parsed BTF blob: an index of its types, read lazily from the bytes. */
export class Btf {
  readonly #buf: Buffer;
  /** The same bytes as 32-bit words (every btf_type is 4-byte aligned). */
  readonly #u32: Uint32Array;
  readonly #found = new Map<string, number | undefined>();
  readonly #strStart: number;
  readonly #strEnd: number;
  /** Byte position of each type's `struct btf_type`, by id (index 0 unused: void). */
  readonly #at: Uint32Array;
  readonly #count: number;

  constructor(buf: Buffer) {
    if (buf.length < 24 || buf.readUInt16LE(0) !== BTF_MAGIC) throw new Error('not BTF (bad magic)');
    const hdrLen = buf.readUInt32LE(4);
    const typeOff = buf.readUInt32LE(8);
    const typeLen = buf.readUInt32LE(12);
    const strOff = buf.readUInt32LE(16);
    const strLen = buf.readUInt32LE(20);
    const typeStart = hdrLen + typeOff;
    const typeEnd = typeStart + typeLen;
    this.#strStart = hdrLen + strOff;
    this.#strEnd = this.#strStart + strLen;
    if (typeEnd > buf.length || this.#strEnd > buf.length) throw new Error('BTF sections run past the end');
    if (typeStart % 4 !== 0) throw new Error('BTF type section is not 4-byte aligned');
    if (buf.byteOffset % 4 !== 0) buf = Buffer.from(buf); // a copy starts its own, aligned memory
    this.#buf = buf;
    const u32 = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
    this.#u32 = u32;
    // Types vary in length: one pass records where each starts.
    let at = new Uint32Array(1 << 17);
    let id = 1;
    for (let p = typeStart; p < typeEnd; id++) {
      if (id >= at.length) {
        const bigger = new Uint32Array(at.length * 2);
        bigger.set(at);
        at = bigger;
      }
      at[id] = p;
      const info = u32[(p + 4) >>> 2];
      p += 12 + extraBytes((info >>> 24) & 0x1f, info & 0xffff);
    }
    this.#at = at;
    this.#count = id - 1;
  }

  /** The running kernel's BTF, read once. Throws when the kernel has none (CONFIG_DEBUG_INFO_BTF off). */
  static vmlinux(): Btf {
    // Parsed once per process: the iterator, the failure tracer and the kept counts all read it (about 5 MB to index).
    vmlinux ??= new Btf(readFileSync('/sys/kernel/btf/vmlinux'));
    return vmlinux;
  }

  get count(): number {
    return this.#count;
  }

  kind(id: number): number {
    return (this.#word(this.#at[id] + 4) >>> 24) & 0x1f;
  }

  name(id: number): string {
    return this.#string(this.#word(this.#at[id]));
  }

  /** The first type of `kind` named `name`, or undefined. */
  find(kind: number, name: string): number | undefined {
    const key = `${kind} ${name}`;
    if (this.#found.has(key)) return this.#found.get(key);
    const want = Buffer.from(`${name}\0`);
    const buf = this.#buf;
    const u32 = this.#u32;
    const at = this.#at;
    let hit: number | undefined;
    for (let id = 1; id <= this.#count; id++) {
      const w = at[id] >>> 2;
      if (((u32[w + 1] >>> 24) & 0x1f) !== kind) continue;
      const s = this.#strStart + u32[w];
      if (buf[s] === want[0] && buf.compare(want, 0, want.length, s, s + want.length) === 0) {
        hit = id;
        break;
      }
    }
    this.#found.set(key, hit);
    return hit;
  }

  /**
   * Offset and size of a member of struct or union `structName`, by a path
   * of member names (e.g. `['inet_conn', 'icsk_inet', 'sk', 'sk_ack_backlog']`);
   * each name is also looked for inside anonymous members, as C does.
   */
  member(structName: string, path: readonly string[]): BtfMember {
    let id = this.find(BtfKind.STRUCT, structName) ?? this.find(BtfKind.UNION, structName);
    if (id === undefined) throw new Error(`BTF has no struct ${structName}`);
    let offset = 0;
    let size = 0;
    for (const name of path) {
      const found = this.#findMember(id, name);
      if (found === undefined) throw new Error(`BTF: struct ${structName} has no member ${path.join('.')}`);
      offset += found.offset;
      id = this.#resolve(found.type);
      size = this.#size(id);
    }
    return { offset, size };
  }

  /**
   * The parameter names of function `name` (a BTF FUNC), in order: a tracing
   * program reads argument i at ctx[i] and, at fexit, the return value right
   * after the last one. Throws when the kernel's BTF has no such function.
   */
  funcParams(name: string): string[] {
    const id = this.find(BtfKind.FUNC, name);
    if (id === undefined) throw new Error(`BTF has no function ${name}`);
    const proto = this.#word(this.#at[id] + 8);
    if (this.kind(proto) !== BtfKind.FUNC_PROTO) throw new Error(`BTF: ${name} has no prototype`);
    const p = this.#at[proto];
    const vlen = this.#word(p + 4) & 0xffff;
    const out: string[] = [];
    for (let i = 0; i < vlen; i++) out.push(this.#string(this.#word(p + 12 + i * 8)));
    return out;
  }

  /** The byte offset of a member that must be `size` bytes (what a BPF program loads); throws otherwise. */
  offsetOf(structName: string, path: readonly string[], size: number): number {
    const r = this.member(structName, path);
    if (r.size !== size) throw new Error(`BTF: ${structName}.${path.join('.')} is ${r.size} bytes, not ${size}`);
    return r.offset;
  }

  /** A member of the struct/union `id` named `name`, also inside anonymous members: its type and byte offset. */
  #findMember(id: number, name: string): { type: number; offset: number } | undefined {
    const p = this.#at[id];
    const info = this.#word(p + 4);
    const kind = (info >>> 24) & 0x1f;
    if (kind !== BtfKind.STRUCT && kind !== BtfKind.UNION) return undefined;
    const kindFlag = info >>> 31;
    const vlen = info & 0xffff;
    for (let i = 0; i < vlen; i++) {
      const m = p + 12 + i * 12;
      const type = this.#word(m + 4);
      const raw = this.#word(m + 8);
      const bitfield = kindFlag ? raw >>> 24 : 0;
      const bits = kindFlag ? raw & 0xffffff : raw;
      const memberName = this.#string(this.#word(m));
      if (memberName === name) {
        if (bitfield !== 0 || bits % 8 !== 0) throw new Error(`BTF: member ${name} is a bitfield`);
        return { type, offset: bits / 8 };
      }
      if (memberName === '') {
        const inner = this.#findMember(this.#resolve(type), name);
        if (inner !== undefined) return { type: inner.type, offset: bits / 8 + inner.offset };
      }
    }
    return undefined;
  }

  /** Follows typedefs and qualifiers to the type they name. */
  #resolve(id: number): number {
    for (let hops = 0; hops < 32; hops++) {
      const k = this.kind(id);
      if (k !== BtfKind.TYPEDEF && k !== BtfKind.VOLATILE && k !== BtfKind.CONST && k !== BtfKind.RESTRICT && k !== BtfKind.TYPE_TAG) return id;
      id = this.#word(this.#at[id] + 8);
    }
    throw new Error('BTF: typedef chain too long');
  }

  /** Byte size of a resolved type. */
  #size(id: number): number {
    const p = this.#at[id];
    const k = this.kind(id);
    if (k === BtfKind.PTR) return 8;
    if (k === BtfKind.ARRAY) {
      return this.#size(this.#resolve(this.#word(p + 12))) * this.#word(p + 20);
    }
    return this.#word(p + 8);
  }

  /** The 32-bit word at byte `at` of the type section (4-byte aligned). */
  #word(at: number): number {
    return this.#u32[at >>> 2];
  }

  #string(off: number): string {
    const start = this.#strStart + off;
    if (start >= this.#strEnd) return '';
    const end = this.#buf.indexOf(0, start);
    return this.#buf.toString('latin1', start, end < 0 ? this.#strEnd : end);
  }
}

let vmlinux: Btf | undefined;

/** Bytes that follow a `struct btf_type` of this kind with `vlen` entries. */
function extraBytes(kind: number, vlen: number): number {
  switch (kind) {
    case BtfKind.INT:
    case BtfKind.VAR:
    case BtfKind.DECL_TAG:
      return 4;
    case BtfKind.ARRAY:
      return 12;
    case BtfKind.STRUCT:
    case BtfKind.UNION:
    case BtfKind.DATASEC:
    case BtfKind.ENUM64:
      return vlen * 12;
    case BtfKind.ENUM:
    case BtfKind.FUNC_PROTO:
      return vlen * 8;
    default:
      return 0;
  }
}
