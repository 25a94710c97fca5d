/** `fourtuple limits`: the host's ceiling predicted from the live kernel. */
import { readKernelFacts } from '../kernel/facts.js';
import { computeLimits, type LimitsInput } from '../model/limits.js';
import { limitsJson, renderLimits } from '../report/limits.js';
import { describeEndpoints, endpointsOption, parseOptions, sourcesOption, strategyOption } from './args.js';

/** Usage text. */
export const LIMITS_HELP = `Usage: fourtuple limits [--to ADDR:PORTS ...] [--from ADDRS ...] [--strategy auto|bind|nopo|explicit] [--json]

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
  --json              print one JSON object
`;

const OPTIONS = {
  to: { type: 'string', multiple: true },
  from: { type: 'string', multiple: true },
  strategy: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Parsed `limits` options. */
export interface LimitsOptions {
  help: boolean;
  json: boolean;
  input: Omit<LimitsInput, 'facts' | 'localAddresses'>;
}

/** Parses argv without running anything (tests use it directly). */
export function parseLimitsArgs(argv: string[]): LimitsOptions {
  const { values } = parseOptions('limits', { args: argv, options: OPTIONS });
  const sources = sourcesOption(values.from);
  return {
    help: values.help ?? false,
    json: values.json ?? false,
    input: {
      destinations: endpointsOption(values.to),
      sources,
      strategy: strategyOption(values.strategy, sources.length > 0 ? 'nopo' : 'auto'),
    },
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
  const limits = computeLimits({ ...opts.input, facts, localAddresses });
  const target = opts.input.destinations.length ? describeEndpoints(opts.input.destinations) : 'one destination';
  if (opts.json) {
    out(JSON.stringify(limitsJson(limits, facts, { sources: opts.input.sources, destinations: opts.input.destinations.map((d) => describeEndpoints([d])) }), null, 2));
  } else {
    out(renderLimits(limits, target));
  }
  return 0;
}
