/** `fourtuple lab up|status|down|run`: several hosts and a NAT gateway in network namespaces. */
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../errors.js';
import { LAB_DEFAULTS, validateSpec, type LabSpec } from '../lab/plan.js';
import { labRun, type LabRunPlan, type LabRunResult } from '../lab/run.js';
import { labDown, labStatus, labUp, type LabStatus } from '../lab/topology.js';
import { parsePortRange } from '../model/nat.js';
import { formatEndpoint } from '../model/address.js';
import { ms, num } from '../report/format.js';
import { intOption, parseOptions } from './args.js';
import { parseProbeArgs } from './probe.js';

/** Usage text. */
export const LAB_HELP = `Usage: fourtuple lab up [--clients K] [--client-addresses M] [--client-ports LO-HI]
                     [--nat] [--gateway-addresses G] [--gateway-ports LO-HI] [--server-addresses S]
       fourtuple lab status [--json]
       fourtuple lab run [--json] [--server-max N] [--server-backlog B] -- [load] [--connections N] [--duration S] [--to ADDR:PORTS] ...
       fourtuple lab down [--json]

Builds small real networks in network namespaces (root): K client hosts with M
addresses each, a gateway that routes them (and with --nat source-NATs them to
G public addresses and the port range LO-HI, with connection tracking), and a
server with S addresses. Every namespace and link is named ft-...

  up        --clients K (default ${LAB_DEFAULTS.clients}), --client-addresses M (default ${LAB_DEFAULTS.clientAddresses}),
            --client-ports LO-HI (ip_local_port_range inside the clients; default: the kernel's),
            --nat, --gateway-addresses G (default 1), --gateway-ports LO-HI (default 1024-65535),
            --server-addresses S (default 1)
            clients 10.77.<k>.10.., gateway 10.77.<k>.1 and 10.78.0.1..G, server 10.78.0.100..
  status    what exists: namespaces, addresses, the NAT rule, conntrack entries, processes
  run       a sink in the server namespace on the --to ports (default 10.78.0.100:7000),
            'load' in every client namespace from all its addresses (--connections is per
            client; --duration defaults to 10 s), then held connections against the model
            (client ports and the NAT pool) and the constraint that stopped the run;
            --server-max N and --server-backlog B make the server accept at most N (its sink's
            --max, --backlog): a server at its capacity
  down      ends the lab's processes and removes every ft- namespace and link (idempotent)
`;

const UP_OPTIONS = {
  clients: { type: 'string' },
  'client-addresses': { type: 'string' },
  'client-ports': { type: 'string' },
  nat: { type: 'boolean' },
  'gateway-addresses': { type: 'string' },
  'gateway-ports': { type: 'string' },
  'server-addresses': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Parses `lab up` options into a checked spec; throws InvalidArgumentError before anything is built. */
export function parseLabUpArgs(argv: string[]): LabSpec {
  const { values: v } = parseOptions('lab up', { args: argv, options: UP_OPTIONS });
  if (!v.nat && (v['gateway-addresses'] !== undefined || v['gateway-ports'] !== undefined)) {
    throw new InvalidArgumentError('--gateway-addresses and --gateway-ports describe the NAT pool: they need --nat');
  }
  return validateSpec({
    clients: intOption('--clients', v.clients, LAB_DEFAULTS.clients, 1, 50),
    clientAddresses: intOption('--client-addresses', v['client-addresses'], LAB_DEFAULTS.clientAddresses, 1, 200),
    clientPorts: v['client-ports'] === undefined ? undefined : parsePortRange(v['client-ports'], '--client-ports'),
    nat: v.nat ?? false,
    gatewayAddresses: intOption('--gateway-addresses', v['gateway-addresses'], LAB_DEFAULTS.gatewayAddresses, 1, 90),
    gatewayPorts: v['gateway-ports'] === undefined ? LAB_DEFAULTS.gatewayPorts : parsePortRange(v['gateway-ports'], '--gateway-ports'),
    serverAddresses: intOption('--server-addresses', v['server-addresses'], LAB_DEFAULTS.serverAddresses, 1, 100),
  });
}

/** Default time bound of one `lab run`, seconds. */
export const LAB_RUN_DURATION = 10;

/** Parses `lab run [--json] -- [load|probe] ARGS` into a plan (validated by load's own parser). */
export function parseLabRunArgs(argv: string[]): { json: boolean; plan: LabRunPlan } {
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  let rest = dash < 0 ? [] : argv.slice(dash + 1);
  const { values: v } = parseOptions('lab run', { args: own, options: { json: { type: 'boolean' }, 'server-max': { type: 'string' }, 'server-backlog': { type: 'string' } } as const });
  const sinkArgs = [
    ...(v['server-max'] === undefined ? [] : ['--max', String(intOption('--server-max', v['server-max'], 0, 1, 10_000_000))]),
    ...(v['server-backlog'] === undefined ? [] : ['--backlog', String(intOption('--server-backlog', v['server-backlog'], 0, 1, 65_535))]),
  ];
  if (rest[0] === 'load' || rest[0] === 'probe') rest = rest.slice(1);
  // --from=X is --from X: both are refused alike.
  if (rest.some((a) => a === '--from' || a.startsWith('--from='))) throw new InvalidArgumentError("'lab run' sets --from itself: every client uses all its addresses");
  const shardFlag = rest.find((a) => /^--(shard|run-id|start-at)(=|$)/.test(a));
  if (shardFlag) throw new InvalidArgumentError(`'lab run' sets ${shardFlag.split('=')[0]} itself: its clients are the shards of one run`);
  const hasTo = rest.some((a) => a === '--to' || a.startsWith('--to='));
  const hasDuration = rest.some((a) => a === '--duration' || a.startsWith('--duration='));
  const base = [...(hasTo ? [] : ['--to', '10.78.0.100:7000']), ...(hasDuration ? [] : ['--duration', String(LAB_RUN_DURATION)]), ...rest];
  const parsed = parseProbeArgs('load', [...base, '--from', '10.77.1.10'], 'elsewhere');
  const o = parsed.options;
  const listen = o.to.flatMap((e) => e.addresses.map((a) => formatEndpoint(a, e.ports.toString())));
  const sockets = o.to.reduce((a, e) => a + e.addresses.length * e.ports.size, 0);
  return {
    json: v.json ?? false,
    plan: {
      node: process.execPath,
      cli: fileURLToPath(new URL('./main.js', import.meta.url)),
      listen,
      sinkArgs,
      listenSockets: sockets,
      sinkDurationS: Math.ceil(o.durationS + o.holdS + 30),
      clientArgs: (addresses, s) => ['load', '--json', ...base, ...addresses.flatMap((a) => ['--from', a]), '--shard', `${s.index}/${s.count}`, '--run-id', s.runId, '--start-at', s.startAt],
      destinations: sockets,
      target: o.connections,
    },
  };
}

/** Renders `lab status`. */
export function renderStatus(s: LabStatus): string {
  if (!s.clients.length && !s.gateway && !s.server && !s.other.length && !s.hostLinks.length) return 'No lab: no ft- namespace or link exists.';
  const lines = [s.up ? 'Lab is up.' : 'Lab is incomplete (run fourtuple lab down).'];
  for (const c of s.clients) lines.push(`  ${c.namespace.padEnd(7)} client   ${c.addresses.join(', ')}  ports ${c.portRange ?? '?'}${c.pids.length ? `  ${c.pids.length} processes` : ''}`);
  if (s.gateway) {
    const g = s.gateway;
    const nat = g.nat ? `snat to ${g.nat.addresses.join(', ')} ports ${g.nat.ports.lo}-${g.nat.ports.hi} (${num(g.nat.addresses.length * (g.nat.ports.hi - g.nat.ports.lo + 1))} per destination)` : 'no NAT (routing only)';
    lines.push(`  ${g.namespace.padEnd(7)} gateway  ${g.addresses.join(', ')}  ${nat}  forwarding ${g.forwarding ? 'on' : 'off'}  conntrack ${g.conntrackCount ?? 'n/a'}`);
  }
  if (s.server) lines.push(`  ${s.server.namespace.padEnd(7)} server   ${s.server.addresses.join(', ')}${s.server.pids.length ? `  ${s.server.pids.length} processes` : ''}`);
  for (const o of s.other) lines.push(`  ${o} (unknown role)`);
  for (const l of s.hostLinks) lines.push(`  link ${l} left in the host namespace`);
  return lines.join('\n');
}

/** Renders `lab run`. */
export function renderRun(r: LabRunResult): string {
  const lines = [
    `Held ${num(r.held)} connections through the lab (the server: ${r.serverEstablished === null ? '?' : num(r.serverEstablished)} established at once, ${r.serverPeak === null ? '?' : num(r.serverPeak)} of them accepted); model ${r.predicted === null ? '?' : num(r.predicted)} (target ${num(r.target)}, clients ${r.model.clients === null ? '?' : num(r.model.clients)}, NAT pool ${r.model.natPool === null ? 'none' : num(r.model.natPool)}).`,
    ...(r.run ? [`The clients ran as the ${r.run.shards} shards of run ${r.run.id} (merged): connect latency p50 ${ms(r.run.latency.p50)}, p99 ${ms(r.run.latency.p99)}.`] : []),
    `Stopped by: ${r.stoppedBy.id ?? 'nothing'}${r.stoppedBy.where ? ` (${r.stoppedBy.where})` : ''}: ${r.stoppedBy.words}.`,
  ];
  if (r.nat) {
    lines.push(`Gateway NAT: ${r.nat.addresses.join(', ')} ports ${r.nat.ports.lo}-${r.nat.ports.hi}: ${num(r.nat.perDestination)} per destination, ${num(r.nat.ceiling)} over ${r.listen.join(', ')}.`);
    for (const u of r.nat.use) lines.push(`  pool toward ${u.destination}: ${num(u.natted)} of ${num(r.nat.perDestination)} (${u.percent}%) at the peak, on ${u.addresses.join(', ')}`);
  }
  lines.push(`Gateway conntrack: peak ${r.conntrack.peak ?? 'n/a'} of nf_conntrack_max ${r.conntrack.max ?? 'n/a'}.`);
  for (const c of r.clients) {
    lines.push(
      c.report
        ? `  ${c.namespace.padEnd(7)} held ${num(c.report.held).padStart(7)}  model ${c.report.ceiling.connections === null ? '?' : num(c.report.ceiling.connections)}  errors ${JSON.stringify(c.report.errors)}`
        : `  ${c.namespace.padEnd(7)} failed: ${c.failure}`,
    );
  }
  return lines.join('\n');
}

/** Runs `lab`; returns the exit code. */
export async function runLab(argv: string[], out: (s: string) => void): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined) {
    process.stderr.write(LAB_HELP);
    return 2;
  }
  if (sub === '--help' || sub === '-h') {
    out(LAB_HELP);
    return 0;
  }
  switch (sub) {
    case 'up': {
      if (rest.includes('--help') || rest.includes('-h')) {
        out(LAB_HELP);
        return 0;
      }
      const spec = parseLabUpArgs(rest);
      const json = rest.includes('--json');
      const r = await labUp(spec);
      const s = labStatus();
      out(json ? JSON.stringify({ spec, steps: r.steps, status: s }, null, 2) : `Built the lab in ${r.steps} steps.\n${renderStatus(s)}`);
      return 0;
    }
    case 'status': {
      const { values: v } = parseOptions('lab status', { args: rest, options: { json: { type: 'boolean' } } as const });
      const s = labStatus();
      out(v.json ? JSON.stringify(s, null, 2) : renderStatus(s));
      return 0;
    }
    case 'down': {
      const { values: v } = parseOptions('lab down', { args: rest, options: { json: { type: 'boolean' } } as const });
      const r = await labDown();
      out(v.json ? JSON.stringify(r, null, 2) : r.namespaces.length || r.links.length ? `Removed ${r.namespaces.join(', ') || 'no namespace'}${r.links.length ? ` and links ${r.links.join(', ')}` : ''}; ended ${r.killed.length} processes.` : 'Nothing to remove: no ft- namespace or link.');
      return 0;
    }
    case 'run': {
      const { json, plan } = parseLabRunArgs(rest);
      // SIGINT, SIGTERM, SIGHUP: the clients end their runs and report, the sink and the sampler stop, and so does this.
      const abort = new AbortController();
      let signalled: NodeJS.Signals | null = null;
      const onSignal = (sig: NodeJS.Signals): void => {
        signalled ??= sig;
        abort.abort();
      };
      const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
      for (const sg of signals) process.on(sg, onSignal);
      try {
        const r = await labRun(plan, abort.signal);
        out(json ? JSON.stringify({ ...r, interrupted: signalled }, null, 2) : renderRun(r) + (signalled ? `\nInterrupted by ${signalled}: the clients closed and reported.` : ''));
        return signalled ? ({ SIGHUP: 129, SIGINT: 130, SIGTERM: 143 } as const)[signalled] : 0;
      } finally {
        for (const sg of signals) process.off(sg, onSignal);
      }
    }
    default:
      throw new InvalidArgumentError(`unknown lab command '${sub}': expected up, status, run or down`);
  }
}
