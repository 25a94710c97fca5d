/**
 * probe against the real kernel in private namespaces with tiny port ranges:
 * every strategy holds exactly what the model predicts and names the
 * constraint that stopped it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AS_NOBODY, cliInNetns, netnsUnavailable } from './support/netns.js';

const skip = netnsUnavailable();
const RANGE = 'echo "40000 40099" > /proc/sys/net/ipv4/ip_local_port_range';

interface Report {
  held: number;
  predicted: number;
  stoppedBy: string;
  limit: { id: string; errno: string; count: number } | null;
  cleanup: { left: number; timeWait: number };
  sourcePorts: { distinct: number; busiest: { port: number; connections: number } | null };
  workers: { clients: number; sinks: number };
}

function probe(setup: string[], args: string[], prefix: readonly string[] = []): Report {
  const r = cliInNetns(setup, ['probe', '--json', '--duration', '20', ...args], undefined, 120_000, prefix);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Report;
}

test('auto: one destination holds exactly the 100-port range, then EADDRNOTAVAIL (ephemeral-ports)', { skip }, () => {
  const r = probe([RANGE], ['--to', '127.0.0.1:7000', '--connections', '500']);
  assert.equal(r.held, 100);
  assert.equal(r.predicted, 100);
  assert.equal(r.stoppedBy, 'limit');
  assert.equal(r.limit?.id, 'ephemeral-ports');
  assert.equal(r.limit?.errno, 'EADDRNOTAVAIL');
  assert.ok((r.limit?.count ?? 0) >= 1);
  assert.equal(r.cleanup.left, 0);
  assert.equal(r.cleanup.timeWait, 0);
});

test('auto: three destination ports hold three pools; one source port serves all three', { skip }, () => {
  const r = probe([RANGE], ['--to', '127.0.0.1:7000-7002', '--connections', '1000']);
  assert.equal(r.held, 300);
  assert.equal(r.predicted, 300);
  assert.equal(r.limit?.id, 'ephemeral-ports');
  assert.equal(r.sourcePorts.distinct, 100);
  assert.equal(r.sourcePorts.busiest?.connections, 3);
});

test('bind: two source addresses share one pool each across destinations (bind-pool, EADDRINUSE)', { skip }, () => {
  const r = probe([RANGE], ['--strategy', 'bind', '--from', '127.0.0.2-127.0.0.3', '--to', '127.0.0.1:7000-7002', '--connections', '1000']);
  assert.equal(r.held, 200);
  assert.equal(r.predicted, 200);
  assert.equal(r.limit?.id, 'bind-pool');
  assert.equal(r.limit?.errno, 'EADDRINUSE');
});

test('nopo: IP_BIND_ADDRESS_NO_PORT gives each (source, destination) its own pool', { skip }, () => {
  const r = probe([RANGE], ['--strategy', 'nopo', '--from', '127.0.0.2-127.0.0.3', '--to', '127.0.0.1:7000-7001', '--connections', '1000']);
  assert.equal(r.held, 400);
  assert.equal(r.predicted, 400);
  assert.equal(r.limit?.id, 'ephemeral-ports');
  assert.equal(r.limit?.errno, 'EADDRNOTAVAIL');
});

test('explicit: own source ports go past the ephemeral range, up to the unprivileged ports left; reserved ones count', { skip }, () => {
  // Without CAP_NET_BIND_SERVICE a program may bind from ip_unprivileged_port_start (65000) up: 536 ports, far more
  // than the 100 ephemeral ones; reserved ports only keep the kernel's own choices away, so they stay in. The wildcard
  // source conflicts with the sink's listener on 65000: 535.
  const setup = ['echo "65100 65199" > /proc/sys/net/ipv4/ip_local_port_range', 'echo 65000 > /proc/sys/net/ipv4/ip_unprivileged_port_start', 'echo 65300-65399 > /proc/sys/net/ipv4/ip_local_reserved_ports'];
  const r = probe(setup, ['--strategy', 'explicit', '--to', '127.0.0.1:65000', '--connections', '2000'], AS_NOBODY);
  assert.equal(r.held, 535);
  assert.equal(r.predicted, 535);
  assert.equal(r.limit?.id, 'explicit-ports');
  assert.equal(r.cleanup.left, 0);
  // As root (CAP_NET_BIND_SERVICE) the ports below 65000 are there too: the target is reached.
  const root = probe(setup, ['--strategy', 'explicit', '--to', '127.0.0.1:65000', '--connections', '2000']);
  assert.equal(root.held, 2000);
  assert.equal(root.stoppedBy, 'target');
});

test('explicit: reaches a target beyond the ephemeral range and stops there', { skip }, () => {
  const r = probe([RANGE], ['--strategy', 'explicit', '--to', '127.0.0.1:7000', '--connections', '300']);
  assert.equal(r.held, 300);
  assert.equal(r.stoppedBy, 'target');
  assert.equal(r.limit, null);
});

test('a worker with a low open-files limit is reported as fd-process / EMFILE', { skip }, () => {
  const r = probe([], ['--to', '127.0.0.1:7000', '--connections', '1000', '--worker-nofile', '200']);
  assert.equal(r.stoppedBy, 'limit');
  assert.equal(r.limit?.id, 'fd-process');
  assert.equal(r.limit?.errno, 'EMFILE');
  assert.ok(r.held > 50 && r.held < 200, `held ${r.held}`);
  assert.equal(r.cleanup.left, 0);
});

test('IPv6 on ::1: auto holds exactly the range (the IPv4 sysctl sets both families), nopo one pool per source, explicit past the range', { skip }, () => {
  const v6 = [RANGE, 'ip -6 addr add ::2/128 dev lo', 'ip -6 addr add ::3/128 dev lo'];
  const auto = probe(v6, ['--to', '[::1]:7000', '--connections', '500']);
  assert.equal(auto.held, 100);
  assert.equal(auto.predicted, 100);
  assert.equal(auto.limit?.id, 'ephemeral-ports');
  assert.equal(auto.limit?.errno, 'EADDRNOTAVAIL');
  assert.deepEqual(auto.cleanup, { left: 0, timeWait: 0 });
  const nopo = probe(v6, ['--strategy', 'nopo', '--from', '::2-::3', '--to', '[::1]:7000-7001', '--connections', '1000']);
  assert.equal(nopo.held, 400);
  assert.equal(nopo.predicted, 400);
  assert.equal(nopo.limit?.id, 'ephemeral-ports');
  const explicit = probe(v6, ['--strategy', 'explicit', '--to', '[::1]:7000', '--connections', '300']);
  assert.equal(explicit.held, 300);
  assert.equal(explicit.stoppedBy, 'target');
  assert.deepEqual(explicit.cleanup, { left: 0, timeWait: 0 });
});

interface QueueReport extends Report {
  sink: { mode: string; listeners: number };
  destinations: string[];
  constraints: { id: string; limit: number | null; detail: string }[];
}

test('queue sink with somaxconn 16: every listener holds exactly 17 in its accept queue, as the kernel counts and the model predicts', { skip }, () => {
  const somaxconn = 'echo 16 > /proc/sys/net/core/somaxconn';
  // While the probe holds, the kernel's own count of each listener's queue (ss: Recv-Q of a LISTEN socket).
  const during = `sleep 3; ss -Hltn 'sport >= :7000 and sport <= :7100' | awk '{print $2}' | sort | uniq -c `;
  const r = cliInNetns([somaxconn], ['probe', '--json', '--duration', '20', '--connections', '100', '--hold', '6'], during);
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as QueueReport;
  assert.equal(j.sink.mode, 'queue');
  assert.equal(j.sink.listeners, 6); // ceil(100 / 17)
  assert.equal(j.held, 100);
  assert.equal(j.predicted, 100);
  assert.equal(j.workers.sinks, 0);
  assert.equal(j.stoppedBy, 'target');
  // 100 over 6 queues of 17: 17 17 17 17 16 16.
  assert.deepEqual(r.during.trim().split('\n').map((l) => l.trim()).sort(), ['2 16', '4 17']);
  assert.equal(j.cleanup.left, 0);
  assert.equal(j.cleanup.timeWait, 0);
});

test('queue sink on named ports: their queues are the limit (backlog), predicted exactly', { skip }, () => {
  const somaxconn = 'echo 16 > /proc/sys/net/core/somaxconn';
  const j = JSON.parse(cliInNetns([somaxconn], ['probe', '--json', '--duration', '20', '--sink', 'queue', '--to', '127.0.0.1:7000-7002', '--connections', '100']).stdout) as QueueReport;
  assert.equal(j.sink.mode, 'queue');
  assert.equal(j.held, 51);
  assert.equal(j.predicted, 51);
  assert.equal(j.stoppedBy, 'limit');
  assert.equal((j.limit as { id: string } | null)?.id, 'backlog');
  const backlog = j.constraints.find((c) => c.id === 'backlog');
  assert.equal(backlog?.limit, 51);
  assert.equal(j.cleanup.left, 0);
  // Without --sink, the same ports get the accepting sink, which holds the whole target.
  const a = JSON.parse(cliInNetns([somaxconn], ['probe', '--json', '--duration', '20', '--to', '127.0.0.1:7000-7002', '--connections', '100']).stdout) as QueueReport;
  assert.equal(a.sink.mode, 'accept');
  assert.equal(a.held, 100);
});
