/**
 * Shards and merge: the deterministic split, exact merged percentiles from
 * the shards' histograms, the refusals, and three load shards against one
 * sink in a namespace holding exactly the target between them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bucketOf, newHistogram, quantile } from '../dist/engine/histogram.js';
import { parseShard, parseStartAt, runIdOf, shardItems, shardShare } from '../dist/engine/shard.js';
import { isMergedReport, mergeReports, renderMergedHtml, type ShardReport } from '../dist/report/merge.js';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { cliInNetns, netnsUnavailable } from './support/netns.js';
import { rng } from './support/sweep-config.js';
import { parseSinkArgs } from '../dist/cli/sink.js';

const skip = netnsUnavailable();


function shard(i: number, k: number, samples: number[], over: Partial<ShardReport> = {}): ShardReport {
  const h = newHistogram();
  for (const ms of samples) h[bucketOf(ms)]++;
  return {
    target: 100, held: 100, predicted: 100, attempts: samples.length, connected: samples.length, lost: 0, errors: {}, stoppedBy: 'target', limit: null,
    latency: { max: Math.max(...samples) }, latencyHistogram: h, run: { id: 'abc', shard: i, shards: k }, rampStartUnixMs: 1_000_000 + i * 10, timeline: [{ t: 500, held: 50 }, { t: 1500, held: 100 }],
    ...over,
  };
}

test('the split: shares add up to the target, destinations go round, the run id ignores --shard', () => {
  for (const [n, k] of [[10, 3], [1, 1], [1_000_000, 7], [5, 5]]) {
    const shares = Array.from({ length: k }, (_, i) => shardShare(n, i, k));
    assert.equal(shares.reduce((a, b) => a + b, 0), n);
    assert.ok(Math.max(...shares) - Math.min(...shares) <= 1);
  }
  assert.deepEqual(shardItems(['a', 'b', 'c', 'd', 'e'], 1, 2), ['b', 'd']);
  assert.deepEqual(shardItems(['a', 'b'], 2, 3), ['a', 'b'], 'fewer destinations than shards: every shard uses them all');
  assert.equal(runIdOf(['load', '--to', 'x', '--shard', '0/3']), runIdOf(['load', '--to', 'x', '--shard=2/3']));
  assert.notEqual(runIdOf(['load', '--to', 'x']), runIdOf(['load', '--to', 'y']));
  assert.deepEqual(parseShard('2/3'), { index: 2, count: 3 });
  for (const bad of ['3/3', '-1/3', 'a/b', '1', '0/0']) assert.throws(() => parseShard(bad), /invalid --shard/);
  assert.equal(parseStartAt('+2.5', 1000), 3500);
  assert.equal(parseStartAt('2026-12-02T10:00:00Z', Date.parse('2026-12-02T09:00:00Z')), Date.parse('2026-12-02T10:00:00Z'));
  assert.throws(() => parseStartAt('tomorrow'), /invalid --start-at/);
});

test('merged percentiles are those of all the samples together, exactly (random data)', () => {
  const r = rng(42);
  for (let round = 0; round < 20; round++) {
    const k = 1 + Math.floor(r() * 5);
    const parts = Array.from({ length: k }, () => Array.from({ length: 1 + Math.floor(r() * 2000) }, () => 0.01 * 10 ** (r() * 4)));
    const m = mergeReports(parts.map((s, i) => ({ file: `s${i}.json`, doc: shard(i, k, s) })));
    const all = newHistogram();
    for (const ms of parts.flat()) all[bucketOf(ms)]++;
    const max = Math.max(...parts.flat());
    assert.equal(m.latency.p50, Math.min(quantile(all, 0.5) as number, max));
    assert.equal(m.latency.p99, Math.min(quantile(all, 0.99) as number, max));
    assert.equal(m.latency.max, max);
    assert.equal(m.held, 100 * k);
    assert.equal(m.connected, parts.flat().length);
  }
});

test('merge refuses a missing shard, a shard twice, a foreign run and a report without a shard, naming them', () => {
  const s = [0.5, 1, 2];
  assert.throws(() => mergeReports([{ file: 'a.json', doc: shard(0, 3, s) }, { file: 'c.json', doc: shard(2, 3, s) }]), /missing shard 1/);
  assert.throws(() => mergeReports([{ file: 'a.json', doc: shard(0, 2, s) }, { file: 'b.json', doc: shard(0, 2, s) }]), /shard 0 is given twice: a.json and b.json/);
  assert.throws(() => mergeReports([{ file: 'a.json', doc: shard(0, 2, s) }, { file: 'x.json', doc: shard(1, 2, s, { run: { id: 'other', shard: 1, shards: 2 } }) }]), /x.json is shard 1\/2 of run other, not of run abc/);
  assert.throws(() => mergeReports([{ file: 'plain.json', doc: shard(0, 1, s, { run: null }) }]), /plain.json is not a shard/);
  // The limit of the whole: the one most shards hit, when the run fell short.
  const short = mergeReports([0, 1, 2].map((i) => ({ file: `${i}`, doc: shard(i, 3, s, i < 2 ? { held: 80, limit: { id: 'ephemeral-ports', errno: 'EADDRNOTAVAIL' }, stoppedBy: 'limit' } : {}) })));
  assert.equal(short.limit, 'ephemeral-ports');
  assert.equal(short.held, 260);
  // Timelines line up on Unix time (the shards' ramps 10 ms apart): nothing at 0, 50 each at 1 s, 100 each at 2 s.
  assert.deepEqual(short.timeline.slice(0, 3).map((p) => p.held), [0, 150, 300]);
});

test('three load shards against one sink hold exactly the target between them; merge sums them', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ft-shards-'));
  try {
    const cli = `${process.execPath} ${new URL('../dist/cli/main.js', import.meta.url).pathname}`;
    const load = (i: number): string => `${cli} load --json --shard ${i}/3 --connections 900 --to 127.0.0.1:7000-7002 --start-at +1 --duration 20 > ${dir}/s${i}.json 2> ${dir}/e${i}.txt &`;
    const setup = [
      `${cli} sink --listen 127.0.0.1:7000-7002 --duration 60 < /dev/null > /dev/null 2>&1 & sink=$!`,
      'for i in $(seq 200); do [ "$(ss -Htln | wc -l)" -ge 3 ] && break; sleep 0.05; done',
      load(0),
      load(1),
      load(2),
      'wait %2 %3 %4',
      'kill $sink; wait $sink || true',
    ];
    const r = cliInNetns(setup, ['merge', '--json', `${dir}/s0.json`, `${dir}/s1.json`, `${dir}/s2.json`]);
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(r.stdout) as { held: number; target: number; shards: { shard: number; held: number; target: number }[]; limit: string | null };
    assert.equal(m.target, 900);
    assert.equal(m.held, 900);
    assert.deepEqual(m.shards.map((s) => [s.shard, s.target, s.held]), [[0, 300, 300], [1, 300, 300], [2, 300, 300]]);
    assert.equal(m.limit, null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('merge: bad input is one line and exit 2', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ft-merge-'));
  try {
    writeFileSync(join(dir, 'bad.json'), 'not json');
    for (const args of [['merge'], ['merge', join(dir, 'missing.json')], ['merge', join(dir, 'bad.json')]]) {
      const r = cliInNetns([], args);
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the merged report as a page: merge --report and report of a saved merge give the same self-contained file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ft-merge-html-'));
  try {
    const cli = new URL('../dist/cli/main.js', import.meta.url).pathname;
    const files = [0, 1, 2].map((i) => {
      const f = join(dir, `s${i}.json`);
      writeFileSync(f, JSON.stringify(shard(i, 3, [0.2, 0.4, 1 + i], i === 1 ? { held: 70, limit: { id: 'ephemeral-ports', errno: 'EADDRNOTAVAIL' }, stoppedBy: 'limit' } : {})));
      return f;
    });
    const m = spawnSync(process.execPath, [cli, 'merge', '--json', '--report', join(dir, 'a.html'), ...files], { encoding: 'utf8' });
    assert.equal(m.status, 0, m.stderr);
    writeFileSync(join(dir, 'merged.json'), m.stdout);
    const doc = JSON.parse(m.stdout) as unknown;
    assert.ok(isMergedReport(doc));
    const r = spawnSync(process.execPath, [cli, 'report', join(dir, 'merged.json'), '-o', join(dir, 'b.html')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const a = readFileSync(join(dir, 'a.html'), 'utf8');
    assert.equal(readFileSync(join(dir, 'b.html'), 'utf8'), a);
    assert.equal(a, renderMergedHtml(doc as Parameters<typeof renderMergedHtml>[0]));
    // A row and a bar per shard, the whole run's headline, nothing fetched.
    assert.equal((a.match(/<tr><td class="n">/g) ?? []).length, 3);
    assert.equal((a.match(/>shard \d<\/text>/g) ?? []).length, 3);
    assert.match(a, /3 shards held 270 of 300/);
    assert.match(a, /ephemeral-ports/);
    assert.doesNotMatch(a, /src="http|href="http/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sink --shard I/K: every K-th listen pair and its share of --max, tagged with the run', () => {
  const a = parseSinkArgs(['--listen', '127.0.0.1:7000-7005', '--shard', '1/3', '--max', '10']);
  assert.deepEqual(a.listen.map((l) => l.port), [7001, 7004]);
  assert.equal(a.max, 3);
  assert.deepEqual(a.shard && [a.shard.index, a.shard.count], [1, 3]);
  assert.equal(a.shard?.runId, parseSinkArgs(['--listen', '127.0.0.1:7000-7005', '--shard', '2/3', '--max', '10']).shard?.runId);
  // Fewer pairs than shards: each shard listens on them all.
  assert.equal(parseSinkArgs(['--listen', '127.0.0.1:7000', '--shard', '2/3']).listen.length, 1);
  assert.throws(() => parseSinkArgs(['--listen', '127.0.0.1:7000', '--run-id', 'x']), /--run-id goes with --shard/);
});
