/**
 * The Kubernetes manifests `fourtuple k8s` prints, the alert rules and the
 * dashboard that ship in deploy/: no cluster is reachable here, so what can
 * be checked is: every document against the API's schemas
 * (kubernetes-models), the Job's shards parsed by load's own option parser,
 * every PromQL expression by Prometheus's own grammar, and every metric they
 * name against a live scrape of the exporter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse } from 'yaml';
import { parser } from '@prometheus-io/lezer-promql';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Service } from 'kubernetes-models/v1/Service';
import { parseProbeArgs } from '../dist/cli/probe.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

function k8s(...args: string[]): { status: number | null; docs: Record<string, any>[]; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'k8s', ...args], { encoding: 'utf8' });
  const docs = r.status === 0 ? parseAllDocuments(r.stdout).map((d) => d.toJS() as Record<string, any>) : [];
  return { status: r.status, docs, stdout: r.stdout, stderr: r.stderr };
}

/** Validates against the Kubernetes API schema of its kind; throws naming what is wrong. */
function validate(doc: Record<string, any>): void {
  const kinds: Record<string, new (d: any) => { validate(): void }> = { Job, Deployment, DaemonSet, Service };
  const K = kinds[doc.kind];
  assert.ok(K, `unexpected kind ${doc.kind}`);
  new K(doc).validate();
}

test('k8s load: an Indexed Job of K shards, valid, whose pods run load with their own shard and one start time', () => {
  const r = k8s('load', '--shards', '3', '--to', '10.0.0.5:443', '--connections', '300000', '--duration', '120', '--image', 'registry.example/fourtuple:1', '--namespace', 'perf');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.docs.length, 1);
  const job = r.docs[0];
  validate(job);
  assert.equal(job.kind, 'Job');
  assert.equal(job.metadata.namespace, 'perf');
  assert.deepEqual([job.spec.completionMode, job.spec.completions, job.spec.parallelism], ['Indexed', 3, 3]);
  const c = job.spec.template.spec.containers[0];
  assert.equal(c.image, 'registry.example/fourtuple:1');
  assert.equal(c.args[0], 'load');
  const shard = c.args[c.args.indexOf('--shard') + 1];
  assert.equal(shard, '$(JOB_COMPLETION_INDEX)/3');
  const startAt = c.args[c.args.indexOf('--start-at') + 1];
  assert.ok(Date.parse(startAt) > Date.now(), startAt);
  assert.ok(c.args.includes('--json'));
  // What Kubernetes runs in pod 1, through load's own parser: a third of the target.
  const pod1 = c.args.slice(1).map((a: string) => a.replace('$(JOB_COMPLETION_INDEX)', '1'));
  const parsed = parseProbeArgs('load', pod1, 'elsewhere');
  assert.equal(parsed.options.connections, 100_000);
  assert.deepEqual(parsed.options.shard && [parsed.options.shard.index, parsed.options.shard.count], [1, 3]);
});

test('k8s sink and exporter: valid; the exporter on the host network with the iterator capabilities and scrape annotations', () => {
  const sink = k8s('sink', '--ports', '7000-7003', '--replicas', '2');
  assert.equal(sink.status, 0, sink.stderr);
  assert.deepEqual(sink.docs.map((d) => d.kind), ['Deployment', 'Service']);
  for (const d of sink.docs) validate(d);
  assert.equal(sink.docs[1].spec.ports.length, 4);
  assert.deepEqual(sink.docs[1].spec.selector, sink.docs[0].spec.selector.matchLabels);
  const ex = k8s('exporter', '--port', '9464');
  assert.equal(ex.status, 0, ex.stderr);
  validate(ex.docs[0]);
  const spec = ex.docs[0].spec.template.spec;
  assert.equal(spec.hostNetwork, true);
  assert.deepEqual(spec.containers[0].args, ['ports', '--prometheus', '0.0.0.0:9464', '--by', 'cgroup']);
  // The node's cgroup tree, read-only, where --by cgroup names the holders.
  assert.deepEqual(spec.containers[0].env, [{ name: 'FOURTUPLE_CGROUP_ROOT', value: '/host/sys/fs/cgroup' }]);
  assert.deepEqual(spec.containers[0].volumeMounts, [{ name: 'cgroup', mountPath: '/host/sys/fs/cgroup', readOnly: true }]);
  assert.deepEqual(spec.volumes, [{ name: 'cgroup', hostPath: { path: '/sys/fs/cgroup', type: 'Directory' } }]);
  assert.deepEqual(spec.containers[0].securityContext.capabilities.add.sort(), ['BPF', 'NET_ADMIN', 'PERFMON', 'SYS_RESOURCE']);
  assert.equal(spec.containers[0].securityContext.readOnlyRootFilesystem, true);
  assert.ok(spec.containers[0].resources.requests && spec.containers[0].resources.limits);
  assert.equal(ex.docs[0].spec.template.metadata.annotations['prometheus.io/port'], '9464');
});

test('k8s: bad input is one line and exit 2', () => {
  for (const args of [['load', '--to', '10.0.0.5:443'], ['load', '--shards', '3'], ['load', '--shards', '3', '--to', 'x:1', '--shard', '0/3'], ['nope'], ['sink', '--ports', '1-1000'], ['exporter', '--namespace', 'Bad_NS']]) {
    const r = k8s(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

/** Every PromQL expression of the shipped rules and dashboard. */
function expressions(): { where: string; expr: string }[] {
  const rules = parse(readFileSync(`${ROOT}/deploy/prometheus-rules.yaml`, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] };
  const dash = JSON.parse(readFileSync(`${ROOT}/deploy/grafana-dashboard.json`, 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
  return [
    ...rules.groups.flatMap((g) => g.rules.map((r) => ({ where: `rule ${r.alert}`, expr: r.expr }))),
    ...dash.panels.flatMap((p) => p.targets.map((t) => ({ where: `panel ${p.title}`, expr: t.expr }))),
  ];
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

test('the alert rules and the dashboard: every expression parses, and every metric they name is one the exporter serves', async () => {
  const exprs = expressions();
  assert.ok(exprs.length >= 3 + 6, `${exprs.length} expressions`);
  const named = new Set<string>();
  for (const { where, expr } of exprs) {
    const tree = parser.parse(expr);
    let error = false;
    tree.iterate({ enter: (n) => void (n.type.isError && (error = true)) });
    assert.equal(error, false, `${where}: ${expr} does not parse`);
    for (const m of expr.matchAll(/\b(fourtuple_[a-z_]+)/g)) named.add(m[1]);
  }
  assert.ok(named.size >= 6, [...named].join(' '));
  // A live scrape of the exporter: the metric families it serves.
  const port = await freePort();
  const child = spawn(process.execPath, [CLI, 'ports', '--prometheus', `127.0.0.1:${port}`, '--duration', '20'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    let body = '';
    for (let i = 0; i < 100 && body === ''; i++) {
      await new Promise((r) => setTimeout(r, 100));
      body = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '');
    }
    const served = new Set([...body.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]));
    for (const name of named) assert.ok(served.has(name), `${name} is named in deploy/ but the exporter does not serve it`);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
});
