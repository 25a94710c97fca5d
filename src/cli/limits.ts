/** `fourtuple limits`: the host's ceiling predicted from the live kernel. */
import { readKernelFacts, readOccupants } from '../kernel/facts.js';
import { occupantFilter } from '../model/pool.js';
import { computeLimits, type Limits, type LimitsInput } from '../model/limits.js';
import { type Churn, churnOfLimits } from '../model/churn.js';
import { isLoopback } from '../model/address.js';
import type { KernelFacts } from '../kernel/facts.js';
import { limitsJson, renderLimits } from '../report/limits.js';
import { checkSources, reuseAddrOption, describeEndpoints, endpointsOption, intOption, parseOptions, localSourcesOption, strategyOption } from './args.js';
import { InvalidArgumentError } from '../errors.js';
import { fleetAnswer, isNatPreset, NAT_PRESETS, parsePortRange, withNat, type NatGateway } from '../model/nat.js';
import type { Answer } from '../model/limits.js';

/** Usage text. */
export const LIMITS_HELP = `Usage: fourtuple limits [--to ADDR:PORTS ...] [--from ADDRS ...] [--strategy auto|bind|nopo|explicit] [--sink accept|queue] [--json]

Predicts how many concurrent TCP connections one process and this host can
hold, from the live kernel: every constraint, the binding one, and the change
that lifts it. Without --to it explains the general case (one destination).

  --to ADDR:PORTS     destination(s): 127.0.0.1:7000, 127.0.0.1:7000-7099, [::1]:7000,
                      127.0.0.2-127.0.0.9:80 (repeatable)
  --from ADDRS        source address(es): 127.0.0.2, 127.0.0.2-127.0.0.40, 127.0.1.0/28
                      (repeatable; implies --strategy nopo unless given)
  --strategy S        auto (connect without bind, default), bind (bind(ip,0) then
                      connect), nopo (IP_BIND_ADDRESS_NO_PORT), explicit (own source
                      ports with SO_REUSEADDR)
  --sink accept|queue when the destinations are on this host, how their server holds its end:
                      accept (a server that accepts: a descriptor per connection, the default)
                      or queue (probe's queue sink: none, somaxconn + 1 per destination port)
  --nat-addresses G   behind a source-NAT gateway with G public addresses: adds the nat-pool
                      constraint, G × ports per destination shared by every host behind it
  --nat-ports LO-HI   the gateway's port range per address (default 1024-65535)
  --nat aws|azure|gcp a cloud NAT gateway's documented connections per address and destination
                      (aws 55,000; azure 50,000; gcp 64,512, of which one VM gets its allocation,
                      64 ports by default); --nat-addresses G multiplies it
  --reuseaddr yes|no  with --strategy bind: whether the program sets SO_REUSEADDR before bind(ip, 0)
                      (default yes); it decides whether ip_autobind_reuse can share ports
  --hosts K           K client hosts of this shape toward the same (remote) destinations: each has
                      its own pools, descriptors and memory, a NAT gateway (--nat*) is one for all;
                      what they hold together ('fleet' in --json), as a sharded probe would
  --json              print one JSON object
`;

const OPTIONS = {
  to: { type: 'string', multiple: true },
  from: { type: 'string', multiple: true },
  strategy: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  'nat-addresses': { type: 'string' },
  hosts: { type: 'string' },
  'nat-ports': { type: 'string' },
  nat: { type: 'string' },
  sink: { type: 'string' },
  reuseaddr: { type: 'string' },
} as const;

/** Parsed `limits` options. */
export interface LimitsOptions {
  help: boolean;
  json: boolean;
  input: Omit<LimitsInput, 'facts' | 'localAddresses'>;
  /** A source-NAT gateway in front of this host, when --nat* was given. */
  nat?: NatGateway;
  /** --hosts K: K client hosts of this shape (each its own pools; the NAT shared). */
  hosts?: number;
}

/** The NAT gateway described by --nat, --nat-addresses and --nat-ports, if any. */
function natOption(v: { nat?: string; 'nat-addresses'?: string; 'nat-ports'?: string }): NatGateway | undefined {
  if (v.nat === undefined && v['nat-addresses'] === undefined && v['nat-ports'] === undefined) return undefined;
  const addresses = intOption('--nat-addresses', v['nat-addresses'], 1, 1, 65_536);
  if (v.nat !== undefined) {
    if (!isNatPreset(v.nat)) throw new InvalidArgumentError(`unknown --nat '${v.nat}': expected one of ${Object.keys(NAT_PRESETS).join(', ')}`);
    if (v['nat-ports'] !== undefined) throw new InvalidArgumentError(`--nat-ports cannot be combined with --nat ${v.nat}: the preset fixes the connections per address`);
    return { addresses, portsPerAddress: NAT_PRESETS[v.nat].perAddress, source: NAT_PRESETS[v.nat].source, preset: v.nat };
  }
  const r = parsePortRange(v['nat-ports'] ?? '1024-65535', '--nat-ports');
  return { addresses, portsPerAddress: r.hi - r.lo + 1, source: 'given' };
}

/** Parses argv without running anything (tests use it directly). */
export function parseLimitsArgs(argv: string[]): LimitsOptions {
  const { values } = parseOptions('limits', { args: argv, options: OPTIONS });
  const sources = localSourcesOption(values.from);
  const sink = values.sink ?? 'accept';
  if (sink !== 'accept' && sink !== 'queue') throw new InvalidArgumentError(`invalid --sink '${sink}': expected accept or queue`);
  const destinations = endpointsOption(values.to);
  const strategy = strategyOption(values.strategy, sources.length > 0 ? 'nopo' : 'auto');
  checkSources(strategy, sources, destinations, values.from);
  const reuseAddr = reuseAddrOption(values.reuseaddr, strategy);
  const listeners = destinations.reduce((n, d) => n + d.addresses.length * d.ports.size, 0);
  return {
    help: values.help ?? false,
    json: values.json ?? false,
    input: {
      destinations,
      sources,
      // The queue sink on the named ports: somaxconn + 1 connections wait in each accept queue.
      ...(sink === 'queue' ? { acceptQueue: { perListener: -1, listeners: Math.max(1, listeners) } } : {}),
      strategy,
      reuseAddr,
    },
    nat: natOption(values),
    hosts: values.hosts === undefined ? undefined : intOption('--hosts', values.hosts, 1, 1, 100_000),
  };
}

/** Runs the command; returns the exit code. */
export function runLimits(argv: string[], out: (s: string) => void): number {
  const opts = parseLimitsArgs(argv);
  if (opts.help) {
    out(LIMITS_HELP);
    return 0;
  }
  const facts = readKernelFacts();
  const localAddresses = facts.interfaces.known ? facts.interfaces.value.map((i) => i.address) : [];
  const queue = opts.input.acceptQueue && { ...opts.input.acceptQueue, perListener: (facts.somaxconn.known ? facts.somaxconn.value : 4096) + 1 };
  const occupants = readOccupants(occupantFilter(opts.input.strategy, opts.input.sources, opts.input.destinations));
  const base = computeLimits({ ...opts.input, acceptQueue: queue, facts, localAddresses, occupants });
  const limits = opts.nat ? withNat(base, opts.nat) : base;
  const target = opts.input.destinations.length ? describeEndpoints(opts.input.destinations) : 'one destination';
  const churn = churnOf(limits, facts, opts.input);
  if (opts.hosts !== undefined && limits.serverEnd !== null) throw new InvalidArgumentError(`--hosts ${opts.hosts} models client hosts toward remote destinations: --to ${target} is on this host`);
  const fleet = opts.hosts === undefined ? undefined : { hosts: opts.hosts, ...fleetAnswer(limits, opts.hosts) };
  if (opts.json) {
    const doc = limitsJson(limits, facts, { sources: opts.input.sources, destinations: opts.input.destinations.map((d) => describeEndpoints([d])) }, churn);
    out(JSON.stringify(fleet ? { ...doc, fleet } : doc, null, 2));
  } else {
    out(renderLimits(limits, target, churn) + (fleet ? `\n\n${fleetSentence(fleet)}` : ''));
  }
  return 0;
}

/**
 * The churn ceiling of the pools `limits` found: loopback when every
 * destination is (the general case is a remote one); bind(address, 0) has a
 * pool per source address, the others one per (source, destination).
 */
function churnOf(limits: Limits, facts: KernelFacts, input: LimitsOptions['input']): Churn {
  const loopback = input.destinations.length > 0 && input.destinations.every((d) => d.addresses.every(isLoopback));
  return churnOfLimits(limits, facts, loopback, input.reuseAddr).churn;
}

/** What K hosts hold together, in one sentence. */
function fleetSentence(f: Answer & { hosts: number }): string {
  const n = (v: number | null): string => (v === null ? 'an unknown number of' : v.toLocaleString('en-US'));
  return `${f.hosts.toLocaleString('en-US')} client hosts of this shape, each with its own pools: ${n(f.connections)} connections together, bound by ${f.binding ?? 'nothing known'}${f.remedy ? `; to lift it: ${f.remedy}` : ''}.`;
}
