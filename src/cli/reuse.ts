/** `fourtuple reuse`: one source port carrying several connections, shown from the kernel's socket table. */
import { InvalidArgumentError } from '../errors.js';
import { familyOf, normalizeAddress, parseEndpoints, parseIp } from '../model/address.js';
import type { Target } from '../engine/protocol.js';
import { formatTarget, pickFreePorts, runReuse, unpickablePorts, type ReuseResult } from '../engine/reuse.js';
import { table } from '../report/format.js';
import { endpointsOption, intOption, parseOptions } from './args.js';

/** Usage text. */
export const REUSE_HELP = `Usage: fourtuple reuse [--from ADDR:PORT | --from ADDR] [--to ADDR:PORTS ...] [--count K] [--json]

The original question's experiment: K sockets bound to the same source address
and port (SO_REUSEADDR) connect to K different destinations, and the kernel's
socket table shows K ESTABLISHED connections on one local port. Then the
counter-case: one more socket on that port connecting to a destination already
used, and a bind without SO_REUSEADDR, with the errno the kernel gives. All
sockets are closed with RST, leaving no TIME_WAIT.

  --from ADDR[:PORT]  the shared source (default 127.0.0.1, or ::1 for IPv6
                      destinations, on the first free port from 20000 outside
                      the ephemeral range)
  --to ADDR:PORTS     destinations instead of the default (127.0.0.1 ports from
                      7100 up); loopback ones get a listener (repeatable)
  --count K           connections, 1-1,000 (default 3; with --to: the first K
                      destinations, default all of them)
  --json              print one JSON object
`;

const OPTIONS = {
  from: { type: 'string' },
  to: { type: 'string', multiple: true },
  count: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Most connections one run opens. */
export const MAX_COUNT = 1000;
/** First default destination port. */
export const DEFAULT_DESTINATION_PORT = 7100;

/** Parsed `reuse` options. */
export interface ReuseCliOptions {
  help: boolean;
  json: boolean;
  source: string;
  /** Undefined: pick a free one. */
  port: number | undefined;
  /** Explicit destinations from --to; undefined: `count` free loopback ports from 7100. */
  destinations: Target[] | undefined;
  count: number;
}

function sourceOption(value: string): { address: string; port: number | undefined } {
  if (value.startsWith('[') || (value.includes(':') && !parseIp(value))) {
    const e = parseEndpoints(value, '--from');
    if (e.addresses.length !== 1 || e.ports.size !== 1) throw new InvalidArgumentError(`invalid --from '${value}': expected one address and at most one port, like 127.0.0.1:20000`);
    return { address: e.addresses[0], port: e.ports.ranges[0].lo };
  }
  return { address: normalizeAddress(value, '--from'), port: undefined };
}

/** Parses argv without opening anything (tests use it directly). */
export function parseReuseArgs(argv: string[]): ReuseCliOptions {
  const { values, positionals } = parseOptions('reuse', { args: argv, options: OPTIONS, allowPositionals: true });
  if (positionals.length > 0) throw new InvalidArgumentError(`unexpected argument '${positionals[0]}' for 'reuse': see 'fourtuple reuse --help'`);
  const given = values.count === undefined ? undefined : intOption('--count', values.count, 3, 1, MAX_COUNT);
  let destinations: Target[] | undefined;
  if (values.to !== undefined) {
    const limit = given ?? MAX_COUNT;
    const seen = new Set<string>();
    destinations = [];
    // Expanded lazily: 127.0.0.0/8:1-65535 must not allocate a billion targets to refuse them.
    expand: for (const e of endpointsOption(values.to)) {
      for (const address of e.addresses) {
        for (const r of e.ports.ranges) {
          for (let port = r.lo; port <= r.hi; port++) {
            const t = { address, port };
            const key = formatTarget(t);
            if (seen.has(key)) continue;
            seen.add(key);
            if (destinations.length === limit) {
              if (given === undefined) throw new InvalidArgumentError(`--to ${values.to.map((v) => `'${v}'`).join(' ')} gives more than ${MAX_COUNT.toLocaleString('en-US')} destinations: expected at most ${MAX_COUNT.toLocaleString('en-US')} (or take the first K with --count)`);
              break expand;
            }
            destinations.push(t);
          }
        }
      }
    }
    if (given !== undefined && destinations.length < given) {
      throw new InvalidArgumentError(`invalid --count '${values.count}': --to gives only ${destinations.length} destination(s)`);
    }
    const families = new Set(destinations.map((d) => familyOf(d.address)));
    if (families.size > 1) throw new InvalidArgumentError(`--to mixes IPv4 and IPv6 destinations: one source port serves one family`);
  }
  const toFamily = destinations?.length ? familyOf(destinations[0].address) : undefined;
  const { address: source, port } = values.from === undefined ? { address: toFamily === 6 ? '::1' : '127.0.0.1', port: undefined } : sourceOption(values.from);
  if (toFamily !== undefined && toFamily !== familyOf(source)) {
    throw new InvalidArgumentError(`--from '${values.from}' is IPv${familyOf(source)} but --to is IPv${toFamily}: expected one family`);
  }
  if (port !== undefined && destinations?.some((d) => d.address === source && d.port === port)) {
    throw new InvalidArgumentError(`--from '${values.from}' is also a destination in --to: a socket cannot connect to itself here`);
  }
  return {
    help: values.help ?? false,
    json: values.json ?? false,
    source,
    port,
    destinations,
    count: destinations?.length ?? given ?? 3,
  };
}

/** The JSON document of a run. */
export function reuseJson(r: ReuseResult): object {
  return {
    source: r.source,
    destinations: r.destinations,
    connections: r.connections,
    table: r.table,
    failures: r.failures,
    counterCase: r.counterCase && {
      destination: r.counterCase.destination,
      bindErrno: r.counterCase.bindErrno,
      errno: r.counterCase.errno,
      errnoValue: r.counterCase.errnoValue,
      explanation: r.counterCase.explanation,
    },
    withoutReuseAddr: r.withoutReuseAddr && { errno: r.withoutReuseAddr.errno, errnoValue: r.withoutReuseAddr.errnoValue, explanation: r.withoutReuseAddr.explanation },
    cleanup: { left: r.cleanup.left, rows: r.cleanup.rows },
  };
}

function established(r: ReuseResult): number {
  return r.connections.filter((c) => c.state === 'ESTABLISHED').length;
}

/** The human report: the sentence, the kernel's rows, the counter-case, the cleanup. */
export function renderReuse(r: ReuseResult): string {
  const src = formatTarget(r.source);
  const k = r.destinations.length;
  const est = established(r);
  const remotes = new Set(r.connections.filter((c) => c.state === 'ESTABLISHED').map((c) => formatTarget({ address: c.remoteAddress, port: c.remotePort }))).size;
  const lines: string[] = [];
  lines.push(
    est === k
      ? `One source port, ${src}, carries ${k} connection${k === 1 ? '' : 's'} to ${remotes} destination${remotes === 1 ? '' : 's'} at once: TCP needs only the 4-tuple to be unique.`
      : `Only ${est} of ${k} connections from the one source port ${src} were established; the others failed (below).`,
  );
  const from = r.table === 'sock_diag' ? 'netlink sock_diag, filtered by port in the kernel' : `/proc/net/tcp${r.source.address.includes(':') ? '6' : ''}`;
  lines.push('', `The kernel's socket table (${from}), sockets with local ${src}:`);
  const fmt = (a: string, p: number): string => formatTarget({ address: a, port: p });
  lines.push(table(['local', 'remote', 'state'], r.connections.map((c) => [fmt(c.localAddress, c.localPort), fmt(c.remoteAddress, c.remotePort), c.state])));
  if (r.failures.length > 0) {
    lines.push('', 'Failed connects:');
    for (const f of r.failures) lines.push(`  ${formatTarget(f.destination)}: ${f.errno}`);
  }
  const cc = r.counterCase;
  if (cc) {
    const bind = cc.bindErrno === null ? 'bind() succeeded' : `bind() failed with ${cc.bindErrno}`;
    const answer = cc.errno === null ? 'connect() succeeded' : `connect() failed with ${cc.errno} (errno ${cc.errnoValue})`;
    lines.push('', `Counter-case: one more socket with SO_REUSEADDR on ${src} (${bind}) connecting to ${formatTarget(cc.destination)}, already used: ${cc.bindErrno === null ? answer : 'no connect'}: ${cc.explanation}.`);
  }
  const w = r.withoutReuseAddr;
  if (w) {
    lines.push(`Without SO_REUSEADDR: bind() of ${src} ${w.errno === null ? 'succeeds' : `fails with ${w.errno} (errno ${w.errnoValue})`}: ${w.explanation}.`);
  }
  lines.push('', r.cleanup.left === 0 ? `Cleanup: every socket closed with RST (SO_LINGER 0); nothing is left on ${src}, no TIME_WAIT.` : `Cleanup: ${r.cleanup.left} socket(s) still on ${src}: ${r.cleanup.rows.map((c) => `${fmt(c.localAddress, c.localPort)} ${fmt(c.remoteAddress, c.remotePort)} ${c.state}`).join('; ')}.`);
  return lines.join('\n');
}

/** Runs the command; returns the exit code (1 when not every connection was established or something was left). */
export function runReuseCommand(argv: string[], out: (s: string) => void): number {
  const opts = parseReuseArgs(argv);
  if (opts.help) {
    out(REUSE_HELP);
    return 0;
  }
  let destinations = opts.destinations;
  if (destinations === undefined) {
    const address = familyOf(opts.source) === 6 ? '::1' : '127.0.0.1';
    const avoid = unpickablePorts();
    const ports = pickFreePorts(address, opts.count, DEFAULT_DESTINATION_PORT, (p) => avoid(p) || (address === opts.source && p === opts.port));
    destinations = ports.map((port) => ({ address, port }));
  }
  const result = runReuse({ source: opts.source, port: opts.port, destinations, counterCase: true });
  out(opts.json ? JSON.stringify(reuseJson(result), null, 2) : renderReuse(result));
  return established(result) === destinations.length && result.cleanup.left === 0 ? 0 : 1;
}
