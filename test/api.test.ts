/**
 * The package as a library: what `import ... from 'fourtuple'` gives, each
 * part used without the CLI (the model and the facts, the socket table and
 * its aggregation, the probe engine), its type declarations, and the errors
 * table in docs/errors.md covering every code the source raises.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/main.js');

// The package's own name resolves to its exports (Node's self-reference), as it does for a user.
const api = await import('fourtuple' as string);

test('the package entry exports the model, the facts, the socket table, the aggregation, the probe engine, connect and the errors', () => {
  const functions = ['readKernelFacts', 'computeLimits', 'ephemeralPool', 'explicitPool', 'parseEndpoints', 'parseAddresses', 'parsePorts', 'scanSockets', 'scanProcNetTcp', 'scanPorts', 'readPressureFacts', 'overThreshold', 'connect', 'connector', 'createConnection', 'errnoMeaning'];
  const classes = ['PortSet', 'PortPressure', 'Probe', 'SourcePool', 'FourtupleError', 'InvalidArgumentError', 'PoolExhaustedError', 'ConnectTimeoutError', 'UnsupportedError', 'FfiUnavailableError', 'EngineError'];
  for (const name of [...functions, ...classes]) assert.equal(typeof api[name], 'function', `${name} is exported`);
  // index.d.ts names most exports itself; `export * from` pulls in the rest (the errors).
  const index = readFileSync(join(ROOT, 'dist/index.d.ts'), 'utf8');
  const starred = [...index.matchAll(/export \* from '\.\/(.+?)\.js'/g)].map((m) => readFileSync(join(ROOT, 'dist', `${m[1]}.d.ts`), 'utf8'));
  const dts = [index, ...starred].join('\n');
  for (const name of [...functions, ...classes, 'KernelFacts', 'Limits', 'TcpRow', 'PortPressureReport', 'ProbeResult', 'ConnectOptions']) {
    assert.match(dts, new RegExp(`\\b${name}\\b`), `${name} is declared by dist/index.d.ts`);
  }
});

test('limits through the API: the same ceiling as `fourtuple limits --json`', () => {
  const facts = api.readKernelFacts();
  const limits = api.computeLimits({ facts, strategy: 'auto', sources: [], destinations: [api.parseEndpoints('10.0.5.9:5432-5433')] });
  const cli = JSON.parse(execFileSync(process.execPath, [CLI, 'limits', '--to', '10.0.5.9:5432-5433', '--json'], { encoding: 'utf8' })) as { host: { connections: number; binding: string } };
  assert.deepEqual({ connections: limits.host.connections, binding: limits.host.binding }, { connections: cli.host.connections, binding: cli.host.binding });
  assert.equal(limits.portsPerDestination, api.ephemeralPool(facts)?.size);
  assert.equal(limits.destinationCount, 2);
});

test('the probe engine through the API: 300 held on loopback, progress events, nothing left', async () => {
  let progress = 0;
  const closing: number[] = [];
  const probe = new api.Probe({ ...api.PROBE_DEFAULTS, connections: 300, durationS: 30, to: [], from: [], sink: true });
  probe.on('progress', (p: { phase: string; leftToClose?: number }) => {
    progress++;
    if (p.phase === 'closing') closing.push(p.leftToClose ?? -1);
    else assert.equal(p.leftToClose, undefined);
  });
  const r = await probe.run();
  assert.equal(r.held, 300);
  assert.equal(r.stoppedBy, 'target');
  assert.deepEqual(r.cleanup, { left: 0, timeWait: 0 });
  assert.ok(progress > 0, 'progress was emitted');
  // Closing says how many sockets are left: at first the clients' 300 and what the sink had reported accepting.
  assert.ok(closing.length > 0 && closing[0] >= 300 && closing[0] <= 600, `closing progress ${closing.join(', ')}`);
  for (let i = 1; i < closing.length; i++) assert.ok(closing[i] <= closing[i - 1], 'left to close never grows');
});

test('the socket table and its aggregation through the API see a listener and its connection', async () => {
  const net = await import('node:net');
  const server = net.createServer((s) => s.on('error', () => {}));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const client = net.connect(port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  try {
    const rows: { localPort: number; remotePort: number; state: number }[] = [];
    const r = api.scanSockets((row: { localPort: number; remotePort: number; state: number }) => rows.push(row), { filter: { port } });
    assert.equal(r.rows, 3, 'the listener, the client end and the accepted end');
    assert.deepEqual(rows.map((x) => api.TCP_STATES[x.state]).sort(), ['ESTABLISHED', 'ESTABLISHED', 'LISTEN']);
    const scan = api.scanPorts({ to: [api.parseEndpoints(`127.0.0.1:${port}`)] });
    assert.equal(scan.report.destinations.length, 1);
    assert.equal(scan.report.destinations[0].used, 1);
    assert.equal(scan.report.listeners.find((l: { port: number }) => l.port === port)?.accepted, 1);
  } finally {
    client.resetAndDestroy();
    await new Promise((r) => server.close(r));
  }
});

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/**
 * Where the source may throw a plain Error, and why it never reaches a user
 * as "internal error": everything else raises a FourtupleError subclass.
 */
const PLAIN_ERRORS: Readonly<Record<string, string>> = {
  'src/kernel/btf.ts': 'BTF parsing: tcpIterator() catches it and the scan falls back to sock_diag, naming the reason',
  'src/kernel/bpf-iter.ts': 'program assembly and load: tcpIterator() catches it, as for btf.ts',
  'src/kernel/bpf.ts': 'an unknown label while assembling: a programming error, caught by tcpIterator() and failureTracer() as any load failure',
  'src/kernel/state-counts.ts': 'layout and seeding failures inside StateCounter.open(), which rethrows them as UnsupportedError',
  'src/kernel/failure-tracer.ts': 'layout and load failures inside FailureTracer.open(), which rethrows them as UnsupportedError; read() after close(): a programming error',
  'src/kernel/ffi.ts': 'getrlimit(RLIMIT_NOFILE), which cannot fail for this process',
  'src/lib/connect.ts': "errno errors shaped as Node's own net errors (code, errno, syscall), for library callers",
  'src/cli/metrics-server.ts': 'start() called twice: a programming error of the caller',
};

test('only the listed files throw a plain Error, and nothing throws a bare FourtupleError', () => {
  for (const f of sourceFiles(join(ROOT, 'src'))) {
    const rel = relative(ROOT, f);
    const text = readFileSync(f, 'utf8');
    if (/new Error\(/.test(text)) assert.ok(Object.hasOwn(PLAIN_ERRORS, rel), `${rel} throws a plain Error: use a FourtupleError subclass (docs/errors.md) or list it in PLAIN_ERRORS with why`);
    if (rel !== 'src/errors.ts') assert.doesNotMatch(text, /new FourtupleError\(/, `${rel}: raise a subclass with a documented code`);
  }
  for (const rel of Object.keys(PLAIN_ERRORS)) assert.match(readFileSync(join(ROOT, rel), 'utf8'), /new Error\(/, `${rel} is listed but throws no plain Error any more`);
});

test('docs/errors.md lists every error code the source raises, and every exported error class', () => {
  const doc = readFileSync(join(ROOT, 'docs/errors.md'), 'utf8');
  const codes = new Set<string>();
  for (const f of sourceFiles(join(ROOT, 'src'))) for (const m of readFileSync(f, 'utf8').matchAll(/'(FT_[A-Z_]+)'/g)) codes.add(m[1]);
  assert.ok(codes.size >= 6, [...codes].join(' '));
  for (const code of codes) assert.match(doc, new RegExp(`\`${code}\``), `${code} is in docs/errors.md`);
  for (const name of Object.keys(api)) {
    const v = api[name];
    if (typeof v === 'function' && v.prototype instanceof api.FourtupleError) assert.match(doc, new RegExp(`\`${name}\``), `${name} is in docs/errors.md`);
  }
});
