/** Renders the limits model for people (a sentence, then every constraint) and for scripts (JSON). */
import type { KernelFacts } from '../kernel/facts.js';
import { type Churn, ratePerSecond } from '../model/churn.js';
import type { ConstraintId, Limits } from '../model/limits.js';
import { num } from './format.js';

/** How each constraint reads inside a sentence. */
export const CONSTRAINT_WORDS: Readonly<Record<ConstraintId, string>> = {
  'ephemeral-ports': 'the ephemeral port range',
  'bind-pool': 'the shared bind() port pool',
  'explicit-ports': 'the explicit source ports',
  'fd-process': 'its open-files limit',
  'fd-host': 'the system-wide file table',
  memory: 'kernel memory',
  conntrack: 'the conntrack table',
  'time-wait': 'TIME_WAIT buckets',
  backlog: 'the listen backlog',
  'nat-pool': "the NAT gateway's pool",
};

function bound(c: number | null, id: ConstraintId | null, what = ''): string {
  return c === null || id === null ? `an unknown number${what} (facts missing)` : `${num(c)}${what}, bound by ${CONSTRAINT_WORDS[id]} (${id})`;
}

/** The answer in one or two sentences. */
export function limitsSentence(l: Limits, target: string): string {
  const { process: p, host: h } = l;
  if (l.general) {
    const pool = l.portsPerDestination === null ? 'its' : num(l.portsPerDestination);
    return (
      `There is no host-wide limit of 65,536: every (source address, destination address, destination port) has its own ${pool} source ports (strategy ${l.strategy}). ` +
      `To one destination, one process can open ${bound(p.connections, p.binding)}; the host can hold ${bound(h.connections, h.binding)}.`
    );
  }
  return `One process can open ${bound(p.connections, p.binding, ` connections to ${target}`)}; the host can hold ${bound(h.connections, h.binding)}.`;
}

/** The churn ceiling in one sentence, naming the pool as the strategy draws its ports. */
export function churnSentence(c: Churn, strategy: Limits['strategy']): string {
  if (c.perPool === null) return `Churn: ${c.detail}.`;
  const per = strategy === 'bind' ? 'source address' : '(source, destination)';
  return `Churn: at most ${ratePerSecond(c.perPool)} new connections per second per ${per} when this host closes first (${c.detail}).`;
}

/** The human report: sentence, remedy, the churn ceiling when given, then the table of constraints. */
export function renderLimits(l: Limits, target: string, churn?: Churn): string {
  const out: string[] = [limitsSentence(l, target)];
  if (l.host.remedy) out.push(`To lift the host's ceiling: ${l.host.remedy}.`);
  if (l.serverEnd === 'queue') out.push("Both ends are on this host; the server's end waits in accept queues (the queue sink): one descriptor per connection.");
  else if (l.serverEnd === 'accept') out.push("Both ends are on this host; the server accepts every connection: two descriptors per connection (--sink queue: one).");
  if (l.process.binding !== l.host.binding && l.process.remedy) out.push(`To lift one process's: ${l.process.remedy}.`);
  if (churn) {
    out.push(churnSentence(churn, l.strategy));
    if (churn.remedy) out.push(`To churn faster: ${churn.remedy}.`);
  }
  out.push('');
  const idW = Math.max(...l.constraints.map((c) => c.id.length));
  const limW = Math.max(11, ...l.constraints.map((c) => num(c.limit).length));
  out.push(`${'CONSTRAINT'.padEnd(idW)}  ${'CONNECTIONS'.padStart(limW)}  SCOPE`);
  for (const c of l.constraints) {
    const marks: string[] = [];
    if (c.id === l.host.binding) marks.push('binds the host');
    if (c.id === l.process.binding) marks.push('binds one process');
    const scope = c.scope === 'process' ? 'process' : 'host';
    out.push(`${c.id.padEnd(idW)}  ${num(c.limit).padStart(limW)}  ${scope.padEnd(7)}${marks.length ? `  <- ${marks.join(', ')}` : ''}`);
    out.push(`    ${c.detail}`);
    if (c.remedy) out.push(`    lift: ${c.remedy}`);
  }
  return out.join('\n');
}

/** The `--json` document; `churn.perPool` is rounded to two decimals (100 ports ÷ 60 s: 1.67). */
export function limitsJson(l: Limits, facts: KernelFacts, target: { sources: readonly string[]; destinations: readonly string[] }, churn?: Churn): object {
  return {
    strategy: l.strategy,
    sources: target.sources,
    destinations: target.destinations,
    // The host's answer as a range: the kernel leaves the last ports of some pools to chance (the binding constraint's detail says why).
    predicted: l.host.connections,
    predictedMin: l.host.connectionsMin,
    process: { connections: l.process.connections, connectionsMin: l.process.connectionsMin, binding: l.process.binding, remedy: l.process.remedy },
    host: { connections: l.host.connections, connectionsMin: l.host.connectionsMin, binding: l.host.binding, remedy: l.host.remedy },
    portsPerDestination: l.portsPerDestination,
    destinationCount: l.destinationCount,
    sourceCount: l.sourceCount,
    socketsPerConnection: l.socketsPerConnection,
    descriptorsPerConnection: l.descriptorsPerConnection,
    serverEnd: l.serverEnd,
    constraints: l.constraints.map((c) => ({ id: c.id, limit: c.limit, limitMin: c.limitMin ?? c.limit, scope: c.scope, detail: c.detail, remedy: c.remedy })),
    ...(churn ? { churn: { ...churn, perPool: churn.perPool === null ? null : Math.round(churn.perPool * 100) / 100 } } : {}),
    facts,
  };
}
