/**
 * Runs a script inside a private network namespace (`unshare -n`): its own
 * loopback, sockets and net.* sysctls, so tests can set a 100-port range
 * without touching the host. The namespace dies with the child.
 */
import { spawnSync } from 'node:child_process';
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
