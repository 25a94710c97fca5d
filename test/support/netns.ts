/**
 * Runs a script inside a private network namespace (`unshare -n`): its own
 * loopback, sockets and net.* sysctls, so tests can set a 100-port range
 * without touching the host. The namespace dies with the child.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Why namespace tests cannot run here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for unshare -n';
  const r = spawnSync('unshare', ['-n', 'true'], { encoding: 'utf8' });
  if (r.error) return `unshare not runnable: ${r.error.message}`;
  if (r.status !== 0) return `unshare -n failed: ${r.stderr.trim()}`;
  return undefined;
}

/** Runs `support/<script>.js` in a new namespace with `args`; returns its stdout parsed as JSON. */
export function runInNetns<T>(script: string, args: object, timeoutMs = 60_000): T {
  const path = fileURLToPath(new URL(`./${script}.js`, import.meta.url));
  const r = spawnSync('unshare', ['-n', process.execPath, path, JSON.stringify(args)], { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${script} in netns failed (status ${r.status}, signal ${r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Result of a command run in a namespace. */
export interface NetnsRun {
  status: number | null;
  stdout: string;
  stderr: string;
  /** What the `during` script printed (empty without one). */
  during: string;
}

/** Runs a command as nobody (65534), without capabilities. */
export const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/**
 * Runs the fourtuple CLI in a new namespace after `setup` shell lines (run
 * by sh, e.g. sysctl writes); loopback is brought up first. `prefix` runs
 * it through another command (AS_NOBODY: as an unprivileged user).
 */
export function cliInNetns(setup: string[], args: string[], during?: string, timeoutMs = 120_000, prefix: readonly string[] = []): NetnsRun {
  const cli = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
  const quoted = [...prefix, process.execPath, cli, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const dir = during === undefined ? undefined : mkdtempSync(join(tmpdir(), 'ft-netns-'));
  // `during` runs beside the CLI in the same namespace (e.g. reading the kernel's table while it holds); its output goes to a file.
  const run = dir === undefined ? [`exec ${quoted}`] : [`( ${during} ) > '${dir}/during' 2>&1 &`, 'd=$!', `${quoted}`, 'rc=$?', 'wait $d', 'exit $rc'];
  const script = ['set -e', 'ip link set lo up', ...setup, 'set +e', ...run].join('\n');
  try {
    const r = spawnSync('unshare', ['-n', 'sh', '-c', script], { encoding: 'utf8', timeout: timeoutMs });
    const out = dir === undefined ? '' : readFileSync(join(dir, 'during'), 'utf8');
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, during: out };
  } finally {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}
