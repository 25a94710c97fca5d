/**
 * Runs inside `unshare -n` (see netns.ts). Sets a tiny ephemeral range,
 * opens connections with plain `net` until the kernel refuses, and prints
 * what it observed beside what the model predicts from the facts it reads
 * in the same namespace.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { readKernelFacts } from '../../dist/kernel/facts.js';
import { computeLimits } from '../../dist/model/limits.js';
import { parseEndpoints } from '../../dist/model/address.js';
import type { Strategy } from '../../dist/model/strategy.js';

/** One step: open connections to `to` (with `localAddress` when given) until an error. */
export interface Step {
  to: string;
  port: number;
  localAddress?: string;
  /** Shell-free `ip` arguments run before the step. */
  ip?: string[];
}

/** Arguments of a scenario. */
export interface ScenarioArgs {
  range: [number, number];
  reserved?: string;
  listen: { address: string; port: number }[];
  steps: Step[];
  predict: { strategy: Strategy; to: string[]; from: string[] };
  /** Upper bound per step so a wrong model cannot run away. */
  cap: number;
}

/** What the scenario prints. */
export interface ScenarioResult {
  steps: { opened: number; error: string | null }[];
  predicted: { host: number | null; binding: string | null; perDestination: number | null };
}

function connectOnce(step: Step): Promise<net.Socket | string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: step.to, port: step.port, localAddress: step.localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2]) as ScenarioArgs;
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  writeFileSync('/proc/sys/net/ipv4/ip_local_port_range', `${args.range[0]} ${args.range[1]}`);
  if (args.reserved !== undefined) writeFileSync('/proc/sys/net/ipv4/ip_local_reserved_ports', args.reserved);
  const servers: net.Server[] = [];
  const accepted: net.Socket[] = [];
  for (const l of args.listen) {
    const srv = net.createServer((c) => accepted.push(c));
    await new Promise<void>((res) => srv.listen(l.port, l.address, res));
    servers.push(srv);
  }
  // The model sees this namespace's facts, listeners included.
  const limits = computeLimits({
    facts: readKernelFacts(),
    strategy: args.predict.strategy,
    sources: args.predict.from,
    destinations: args.predict.to.map((t) => parseEndpoints(t)),
  });
  const held: net.Socket[] = [];
  const steps: ScenarioResult['steps'] = [];
  for (const step of args.steps) {
    if (step.ip) execFileSync('ip', step.ip);
    let opened = 0;
    let error: string | null = null;
    while (opened < args.cap) {
      const r = await connectOnce(step);
      if (typeof r === 'string') {
        error = r;
        break;
      }
      held.push(r);
      opened++;
    }
    steps.push({ opened, error });
  }
  for (const s of [...held, ...accepted]) s.resetAndDestroy();
  for (const srv of servers) srv.close();
  const result: ScenarioResult = {
    steps,
    predicted: { host: limits.host.connections, binding: limits.host.binding, perDestination: limits.portsPerDestination },
  };
  process.stdout.write(JSON.stringify(result));
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error).stack ?? err));
  process.exit(1);
});
