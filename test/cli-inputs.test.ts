/**
 * Bad input outside the engine, as a new user types it: one line naming the
 * value, exit 2, in a moment, and nothing started; a closed pipe ends a
 * command quietly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function refused(args: string[], needle: string): void {
  const r = cli(args);
  assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.ok(lines[0].includes(needle), `${lines[0]} names ${needle}`);
}

test('a source address this host does not have: exit 2 naming it, for probe, load and limits alike', () => {
  // 192.0.2.0/24 is TEST-NET-1, on no host.
  refused(['probe', '--from', '192.0.2.7', '-n', '100'], "'192.0.2.7'");
  refused(['load', '--to', '127.0.0.1:7000', '--from', '192.0.2.7', '-n', '100'], "'192.0.2.7'");
  refused(['limits', '--to', '127.0.0.1:7000', '--from', '192.0.2.7'], "'192.0.2.7'");
  // A loopback source is this host's: limits answers.
  assert.equal(cli(['limits', '--to', '127.0.0.1:7000', '--from', '127.0.0.2', '--json']).status, 0);
});

test('an address range times a port range is counted before it is expanded: refused at once', () => {
  const started = Date.now();
  refused(['sink', '--listen', '10.0.0.0/16:1-65535'], '4,294,901,760');
  refused(['sink', '--listen', '127.0.0.0/24:1-65535'], '16,776,960');
  // Generous for a busy machine: the old code took 27 s for the second and never answered the first.
  assert.ok(Date.now() - started < 20_000, `${Date.now() - started} ms`);
});

test('an output that cannot be written is refused before the run, naming it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ft-out-'));
  try {
    refused(['probe', '-n', '10', '--report', dir], 'is a directory');
    refused(['probe', '-n', '10', '--report', '/proc/ft-report.html'], '/proc/ft-report.html');
    refused(['report', join(dir, 'run.json'), '-o', dir], 'is a directory');
    // The check (an open for append) leaves nothing behind: a later option's error stops the run after it.
    refused(['probe', '-n', '10', '--report', join(dir, 'r.html'), '--sink', 'bucket'], "'bucket'");
    assert.equal(existsSync(join(dir, 'r.html')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ports --watch | head -1 ends, quietly, when head closes the pipe', () => {
  const r = spawnSync('sh', ['-c', `'${process.execPath}' '${CLI}' ports --watch 0.2 | head -1`], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.signal, null, 'ended before the timeout');
  assert.equal(r.status, 0);
  assert.equal(r.stderr, '');
  assert.equal(r.stdout.trim().split('\n').length, 1);
});

test('limits follows the same --from and --strategy rules as probe', () => {
  refused(['limits', '--to', '127.0.0.1:7000', '--from', '127.0.0.2', '--strategy', 'auto'], '--strategy auto');
  refused(['probe', '--to', '127.0.0.1:7000', '--from', '127.0.0.2', '--strategy', 'auto'], '--strategy auto');
  refused(['limits', '--to', '127.0.0.1:7000', '--from', '::1'], "'::1'");
  refused(['probe', '--to', '127.0.0.1:7000', '--from', '::1'], "'::1'");
});

test('a destination named twice is named as a duplicate, not as EADDRINUSE', () => {
  refused(['probe', '--to', '127.0.0.1:7800', '--to', '127.0.0.1:7800', '-n', '10'], '127.0.0.1:7800 is named twice');
  refused(['load', '--to', '127.0.0.1:7800-7801', '--to', '127.0.0.1:7801', '-n', '10'], '127.0.0.1:7801 is named twice');
});

test('fourtuple and fourtuple lab without a subcommand: usage on stderr, exit 2; asked for, usage on stdout, exit 0', () => {
  for (const args of [[], ['lab']]) {
    const r = cli(args);
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^Usage: fourtuple/);
  }
  const h = cli(['--help']);
  assert.equal(h.status, 0);
  assert.match(h.stdout, /^Usage: fourtuple/);
});

test('limits --help lists every --nat preset it accepts', async () => {
  const { NAT_PRESETS } = await import('../dist/model/nat.js');
  const help = cli(['limits', '--help']).stdout;
  for (const name of Object.keys(NAT_PRESETS)) assert.match(help, new RegExp(`--nat [a-z|]*\\b${name}\\b`), name);
});

test("the library's entry points throw the documented errors for bad input, never a bare TypeError", async () => {
  const api = await import('../dist/index.js');
  const cases: [string, () => unknown][] = [
    ['parsePorts(123)', () => api.parsePorts(123 as unknown as string)],
    ['parseAddresses(null)', () => api.parseAddresses(null as unknown as string)],
    ['parseEndpoints({})', () => api.parseEndpoints({} as unknown as string)],
    ['computeLimits({})', () => api.computeLimits({} as never)],
    ["computeLimits(strategy 'x')", () => api.computeLimits({ facts: api.readKernelFacts(), strategy: 'x' as never, sources: [], destinations: [] })],
    ["scanPorts({ to: 'x' })", () => api.scanPorts({ to: 'x' as never })],
    ['new Probe({ connections: NaN })', () => new api.Probe({ connections: NaN } as never)],
  ];
  for (const [name, f] of cases) {
    assert.throws(f, (e: unknown) => e instanceof api.InvalidArgumentError && (e as { code: string }).code === 'FT_INVALID_ARGUMENT', name);
  }
});

test("an option's --name=value form is checked like --name value (inside lab run -- too)", () => {
  refused(['lab', 'run', '--', 'load', '--from', '10.77.1.10'], "'lab run' sets --from itself");
  refused(['lab', 'run', '--', 'load', '--from=10.77.1.10'], "'lab run' sets --from itself");
  refused(['lab', 'run', '--', 'load', '--shard', '0/2'], "'lab run' sets --shard itself");
  refused(['probe', '--connections=0'], "'0'");
});
