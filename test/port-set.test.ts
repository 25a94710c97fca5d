import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PortSet } from '../dist/model/port-set.js';

const ranges = (s: PortSet): [number, number][] => s.ranges.map((r) => [r.lo, r.hi]);

describe('PortSet', () => {
  it('normalizes unsorted, overlapping and adjacent ranges', () => {
    const s = new PortSet([
      { lo: 10, hi: 20 },
      { lo: 21, hi: 25 },
      { lo: 1, hi: 5 },
      { lo: 3, hi: 8 },
      { lo: 30, hi: 29 },
      { lo: 12, hi: 14 },
    ]);
    assert.deepEqual(ranges(s), [
      [1, 8],
      [10, 25],
    ]);
    assert.equal(s.size, 8 + 16);
    assert.equal(PortSet.of(3, 1, 2, 2, 5).toString(), '1-3,5');
  });

  it('size counts ports, inclusive at both ends', () => {
    assert.equal(new PortSet().size, 0);
    assert.equal(PortSet.range(5, 4).size, 0);
    assert.ok(PortSet.range(5, 4).isEmpty);
    assert.equal(PortSet.range(7000, 7000).size, 1);
    assert.equal(PortSet.range(32768, 60999).size, 28232);
    assert.equal(PortSet.range(1, 65535).size, 65535);
    assert.equal(PortSet.of(80, 443, 8080).size, 3);
  });

  it('has is exact at range boundaries', () => {
    const s = new PortSet([
      { lo: 100, hi: 200 },
      { lo: 300, hi: 300 },
    ]);
    for (const p of [100, 150, 200, 300]) assert.equal(s.has(p), true, String(p));
    for (const p of [0, 99, 201, 299, 301, 65535]) assert.equal(s.has(p), false, String(p));
    assert.equal(new PortSet().has(1), false);
  });

  it('union merges', () => {
    const u = PortSet.range(1, 10).union(PortSet.range(11, 20)).union(PortSet.of(30));
    assert.deepEqual(ranges(u), [
      [1, 20],
      [30, 30],
    ]);
    assert.equal(u.size, 21);
    assert.equal(PortSet.range(5, 9).union(new PortSet()).toString(), '5-9');
  });

  it('intersect keeps only common ports', () => {
    const a = new PortSet([
      { lo: 1, hi: 10 },
      { lo: 20, hi: 30 },
    ]);
    assert.deepEqual(ranges(a.intersect(PortSet.range(5, 25))), [
      [5, 10],
      [20, 25],
    ]);
    assert.ok(a.intersect(PortSet.range(11, 19)).isEmpty);
    assert.deepEqual(ranges(a.intersect(PortSet.of(1, 10, 20, 30, 31))), [
      [1, 1],
      [10, 10],
      [20, 20],
      [30, 30],
    ]);
    assert.equal(a.intersect(a).toString(), a.toString());
    assert.ok(a.intersect(new PortSet()).isEmpty);
  });

  describe('subtract', () => {
    const base = PortSet.range(100, 200);

    it('touching both ends', () => {
      const d = base.subtract(new PortSet([
        { lo: 50, hi: 100 },
        { lo: 200, hi: 250 },
      ]));
      assert.deepEqual(ranges(d), [[101, 199]]);
      assert.equal(d.size, 99);
      assert.deepEqual(ranges(base.subtract(PortSet.of(100, 200))), [[101, 199]]);
    });

    it('in the middle splits the range', () => {
      assert.deepEqual(ranges(base.subtract(PortSet.of(150))), [
        [100, 149],
        [151, 200],
      ]);
      assert.deepEqual(ranges(base.subtract(PortSet.of(120, 121, 180))), [
        [100, 119],
        [122, 179],
        [181, 200],
      ]);
    });

    it('disjoint sets change nothing', () => {
      assert.deepEqual(ranges(base.subtract(PortSet.range(1, 99))), [[100, 200]]);
      assert.deepEqual(ranges(base.subtract(PortSet.range(201, 65535))), [[100, 200]]);
      assert.deepEqual(ranges(base.subtract(new PortSet())), [[100, 200]]);
    });

    it('everything leaves nothing', () => {
      assert.ok(base.subtract(PortSet.range(1, 65535)).isEmpty);
      assert.ok(base.subtract(base).isEmpty);
      assert.equal(base.subtract(PortSet.range(100, 200)).size, 0);
    });

    it('one range spanning several', () => {
      const a = new PortSet([
        { lo: 10, hi: 20 },
        { lo: 30, hi: 40 },
        { lo: 50, hi: 60 },
      ]);
      assert.deepEqual(ranges(a.subtract(PortSet.range(15, 35))), [
        [10, 14],
        [36, 40],
        [50, 60],
      ]);
      assert.deepEqual(ranges(a.subtract(new PortSet([{ lo: 5, hi: 6 }, { lo: 15, hi: 16 }, { lo: 55, hi: 70 }]))), [
        [10, 14],
        [17, 20],
        [30, 40],
        [50, 54],
      ]);
    });

    it('the ephemeral range minus reserved ports', () => {
      const pool = PortSet.range(32768, 60999).subtract(new PortSet([{ lo: 8080, hi: 8080 }, { lo: 33001, hi: 33004 }])).subtract(PortSet.of(33000, 7000));
      assert.equal(pool.size, 28232 - 5);
      assert.equal(pool.toString(), '32768-32999,33005-60999');
    });
  });

  it('toString and toJSON use the kernel notation', () => {
    const s = new PortSet([
      { lo: 8080, hi: 8080 },
      { lo: 7000, hi: 7039 },
      { lo: 9000, hi: 9001 },
    ]);
    assert.equal(s.toString(), '7000-7039,8080,9000-9001');
    assert.equal(JSON.stringify({ s }), '{"s":"7000-7039,8080,9000-9001"}');
    assert.equal(new PortSet().toString(), '');
  });

  it('iterates every port in ascending order', () => {
    assert.deepEqual([...new PortSet([{ lo: 10, hi: 12 }, { lo: 1, hi: 2 }])], [1, 2, 10, 11, 12]);
  });
});
