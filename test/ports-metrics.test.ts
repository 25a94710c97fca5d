/** The exporter's registry: exposition format (checked by a strict parser), cardinality cap, one scan per scrape. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { known } from '../dist/kernel/fact.js';
import type { PortScan } from '../dist/engine/port-scan.js';
import { PortPressure, STATE } from '../dist/model/port-pressure.js';
import { oncePerTurn, OTHER, portsRegistry } from '../dist/report/ports-metrics.js';
import { parseExposition, type Family } from './support/exposition.js';

function scanOf(perDestination: number[]): PortScan {
  const p = new PortPressure({ range: { lo: 40000, hi: 40099 } });
  p.add({ family: 4, localAddress: '127.0.0.1', localPort: 7000, remoteAddress: '0.0.0.0', remotePort: 0, state: STATE.LISTEN, rxQueue: 2 });
  perDestination.forEach((n, i) => {
    for (let k = 0; k < n; k++) {
      p.add({ family: 4, localAddress: '127.0.0.1', localPort: 40000 + k, remoteAddress: `10.0.0.${i + 1}`, remotePort: 443, state: k % 4 === 0 ? STATE.TIME_WAIT : STATE.ESTABLISHED, rxQueue: 0 });
    }
  });
  const report = p.result({
    portRange: known({ lo: 40000, hi: 40099 }, 't'),
    reservedPorts: known('', 't'),
    unprivilegedPortStart: known(1024, 't'),
    fileNr: known({ allocated: 10, free: 0, max: 1000 }, 't'),
    fileMax: known(1000, 't'),
    memAvailable: known(2 ** 30, 't'),
  });
  return { report, scanMs: 12.5, source: 'proc', rows: 1, errors: [], at: Date.now() };
}

function sample(families: Map<string, Family>, name: string, labels: Record<string, string>): number | undefined {
  return families.get(name)?.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

describe('portsRegistry', () => {
  it('serves valid exposition text: every family typed once, before its samples', async () => {
    const text = await portsRegistry(() => scanOf([40, 10]), 50).metrics();
    const families = parseExposition(text);
    for (const name of [
      'fourtuple_destination_ports_used',
      'fourtuple_destination_ports_capacity',
      'fourtuple_destination_time_wait',
      'fourtuple_destination_headroom_ratio',
      'fourtuple_sockets',
      'fourtuple_scan_duration_seconds',
    ]) {
      assert.equal(families.get(name)?.type, 'gauge', name);
      assert.ok(families.get(name)?.help, name);
    }
    const d1 = { source: '127.0.0.1', destination: '10.0.0.1', port: '443' };
    assert.equal(sample(families, 'fourtuple_destination_ports_used', d1), 40);
    assert.equal(sample(families, 'fourtuple_destination_ports_capacity', d1), 100);
    assert.equal(sample(families, 'fourtuple_destination_time_wait', d1), 10);
    assert.equal(sample(families, 'fourtuple_destination_headroom_ratio', d1), 0.6);
    assert.equal(sample(families, 'fourtuple_sockets', { state: 'ESTABLISHED' }), 30 + 7);
    assert.equal(sample(families, 'fourtuple_sockets', { state: 'LISTEN' }), 1);
    assert.equal(sample(families, 'fourtuple_scan_duration_seconds', {}), 0.0125);
    assert.equal(sample(families, 'fourtuple_listener_accept_queue', { address: '127.0.0.1', port: '7000' }), 2);
    assert.equal(sample(families, 'fourtuple_source_ports_in_use', { source: '127.0.0.1' }), 40);
  });

  it('caps destination series at top N plus one aggregated "other"', async () => {
    const families = parseExposition(await portsRegistry(() => scanOf([50, 40, 30, 20, 10]), 2).metrics());
    const used = families.get('fourtuple_destination_ports_used')?.samples ?? [];
    assert.deepEqual(
      used.map((s) => [s.labels.destination, s.value]),
      [['10.0.0.1', 50], ['10.0.0.2', 40], [OTHER, 60]],
    );
    const other = { source: OTHER, destination: OTHER, port: OTHER };
    assert.equal(sample(families, 'fourtuple_destination_ports_capacity', other), 300);
    assert.equal(sample(families, 'fourtuple_destination_headroom_ratio', other), 0.8);
    assert.equal(sample(families, 'fourtuple_destination_time_wait', other), 8 + 5 + 3);
    assert.equal(sample(families, 'fourtuple_destinations', {}), 5);
  });

  it('scans once per scrape, whatever the number of gauges', async () => {
    let scans = 0;
    const registry = portsRegistry(
      oncePerTurn(() => {
        scans++;
        return scanOf([scans]);
      }),
      50,
    );
    const first = parseExposition(await registry.metrics());
    assert.equal(scans, 1);
    await new Promise((r) => setImmediate(r));
    const second = parseExposition(await registry.metrics());
    assert.equal(scans, 2);
    assert.equal(sample(first, 'fourtuple_destination_ports_used', { destination: '10.0.0.1' }), 1);
    assert.equal(sample(second, 'fourtuple_destination_ports_used', { destination: '10.0.0.1' }), 2);
  });
});

describe('the exposition parser rejects what Prometheus rejects', () => {
  const ok = '# HELP a_b help with \\\\ and \\n\n# TYPE a_b gauge\na_b{x="q\\"uote",y="back\\\\slash"} 1.5e3\na_b{x="2"} +Inf 1700000000000\n';
  it('accepts a valid exposition', () => {
    const f = parseExposition(ok).get('a_b');
    assert.deepEqual(f?.samples.map((s) => [s.labels, s.value]), [[{ x: 'q"uote', y: 'back\\slash' }, 1500], [{ x: '2' }, Infinity]]);
  });
  const bad: [string, string][] = [
    ['bad metric name', '1abc 1\n'],
    ['bad label name', 'a{1x="v"} 1\n'],
    ['unquoted label value', 'a{x=v} 1\n'],
    ['bad escape', 'a{x="\\t"} 1\n'],
    ['unterminated label value', 'a{x="v} 1\n'],
    ['value not a float', 'a 1,5\n'],
    ['TYPE after samples', 'a 1\n# TYPE a gauge\n'],
    ['TYPE twice', '# TYPE a gauge\n# TYPE a gauge\na 1\n'],
    ['unknown type', '# TYPE a meter\na 1\n'],
    ['duplicate series', 'a{x="1"} 1\na{x="1"} 2\n'],
    ['no final newline', 'a 1'],
  ];
  for (const [what, text] of bad) {
    it(`rejects: ${what}`, () => assert.throws(() => parseExposition(text)));
  }
});
