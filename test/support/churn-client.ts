/**
 * Runs inside `unshare -n` (see netns.ts): a server on `host`:7000 and a
 * client that opens `rate` connections per second to it for `seconds`, each
 * closed by the client first (FIN; the server answers with its own), so
 * every one leaves its 4-tuple in TIME_WAIT on the client's side. Prints
 * what connect() allowed, with the model's churn ceiling from the facts of
 * the same namespace. `sysctl` entries are written first (net.ipv4 names).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { readKernelFacts } from '../../dist/kernel/facts.js';
import { churnCeiling } from '../../dist/model/churn.js';
import { isLoopback } from '../../dist/model/address.js';
import { ephemeralPool } from '../../dist/model/limits.js';

/** Arguments of a churn run. */
export interface ChurnClientArgs {
  host: string;
  rate: number;
  seconds: number;
  /** net.ipv4 sysctls to set first (name → value), e.g. { tcp_tw_reuse: '1' }. */
  sysctl?: Record<string, string>;
  /** Shell-free `ip` argument lists run first (e.g. an address on lo). */
  ip?: string[][];
}

/** What the run prints. */
export interface ChurnClientResult {
  sent: number;
  connected: number;
  /** Failures by error code. */
  errors: Record<string, number>;
  /** Connections per whole second of the run. */
  perSecond: number[];
  /** The model's ceiling per pool for strategy auto in this namespace. */
  predicted: number | null;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2]) as ChurnClientArgs;
  if (args.sysctl || args.ip) execFileSync('ip', ['link', 'set', 'lo', 'up']);
  for (const ip of args.ip ?? []) execFileSync('ip', ip);
  for (const [name, value] of Object.entries(args.sysctl ?? {})) writeFileSync(`/proc/sys/net/ipv4/${name}`, value);
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.on('end', () => s.end());
  });
  await new Promise<void>((resolve) => server.listen(7000, args.host, resolve));
  const facts = readKernelFacts();
  const predicted = churnCeiling({ facts, strategy: 'auto', portsPerPool: ephemeralPool(facts)?.size ?? null, loopback: isLoopback(args.host) }).perPool;
  const result: ChurnClientResult = { sent: 0, connected: 0, errors: {}, perSecond: new Array<number>(Math.ceil(args.seconds)).fill(0), predicted };
  const start = Date.now();
  const open = (): void => {
    const s = net.connect({ host: args.host, port: 7000 });
    s.once('connect', () => {
      result.connected++;
      result.perSecond[Math.min(result.perSecond.length - 1, Math.floor((Date.now() - start) / 1000))]++;
      s.end();
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? err.message;
      result.errors[code] = (result.errors[code] ?? 0) + 1;
    });
    s.on('close', () => s.destroy());
  };
  // Catch up on the schedule every few ms: the rate holds on a busy machine even when timers fire late.
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = Date.now() - start;
      const due = Math.min(Math.floor((elapsed / 1000) * args.rate), Math.floor(args.seconds * args.rate));
      while (result.sent < due) {
        open();
        result.sent++;
      }
      if (elapsed >= args.seconds * 1000) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  server.close();
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error).stack ?? err));
  process.exit(1);
});
