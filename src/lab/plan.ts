/**
 * A lab topology as data: the namespaces, links, addresses, routes and the
 * gateway's nftables table, planned from the options without touching the
 * host, so bad options fail before anything exists.
 *
 * Addressing plan (every name starts with `ft-`):
 *   client k (1..K)  namespace ft-c<k>, link ft-c<k>-e, addresses 10.77.<k>.10 ..
 *                    10.77.<k>.(9+M), default route via 10.77.<k>.1
 *   gateway          namespace ft-gw, link ft-g<k> (10.77.<k>.1/24) to each client,
 *                    link ft-gw-pub with 10.78.0.1 .. 10.78.0.G; forwards (ip_forward=1
 *                    in its namespace only); with --nat, nftables table `ip ft_lab`
 *                    snats TCP from 10.77.0.0/16 to 10.78.0.1-10.78.0.G:LO-HI
 *   server           namespace ft-srv, link ft-srv-e, addresses 10.78.0.100 ..
 *                    10.78.0.(99+S), route to 10.77.0.0/16 via 10.78.0.1
 */
import { InvalidArgumentError } from '../errors.js';

/** The prefix of every namespace and link the lab creates; the only names it ever deletes. */
export const PREFIX = 'ft-';
/** The gateway's nftables table (nft names cannot hold '-'). */
export const NFT_TABLE = 'ft_lab';
export const GATEWAY_NS = 'ft-gw';
export const SERVER_NS = 'ft-srv';
/** The gateway's public link, the one the snat rule matches. */
export const GATEWAY_PUBLIC_LINK = 'ft-gw-pub';
export const SERVER_LINK = 'ft-srv-e';

/** Limits on the options, from the addressing plan. */
export const LAB_BOUNDS = { clients: 50, clientAddresses: 200, gatewayAddresses: 90, serverAddresses: 100 } as const;

/** What `lab up` builds. */
export interface LabSpec {
  readonly clients: number;
  readonly clientAddresses: number;
  readonly nat: boolean;
  readonly gatewayAddresses: number;
  /** The gateway's source-port range for NAT. */
  readonly gatewayPorts: { readonly lo: number; readonly hi: number };
  readonly serverAddresses: number;
  /** ip_local_port_range inside each client namespace; undefined: the kernel's default. */
  readonly clientPorts?: { readonly lo: number; readonly hi: number };
}

/** Defaults of `lab up`. */
export const LAB_DEFAULTS: LabSpec = {
  clients: 2,
  clientAddresses: 1,
  nat: false,
  gatewayAddresses: 1,
  gatewayPorts: { lo: 1024, hi: 65535 },
  serverAddresses: 1,
};

/**
 * The build's last step writes this as the alias of the gateway's loopback
 * (it goes with the namespace): a lab without it was interrupted half way.
 */
export const LAB_COMPLETE = 'fourtuple-lab-complete';

/** One command of the build: argv, and text for its stdin. */
export interface Step {
  readonly argv: readonly string[];
  readonly input?: string;
}

/** Namespace of client `k` (1-based). */
export const clientNs = (k: number): string => `ft-c${k}`;
/** Client `k`'s link inside its namespace. */
export const clientLink = (k: number): string => `ft-c${k}-e`;
/** The gateway's link towards client `k`. */
export const gatewayLink = (k: number): string => `ft-g${k}`;
/** Addresses of client `k`. */
export const clientAddresses = (k: number, m: number): string[] => Array.from({ length: m }, (_, i) => `10.77.${k}.${10 + i}`);
/** The gateway's public addresses. */
export const gatewayAddresses = (g: number): string[] => Array.from({ length: g }, (_, i) => `10.78.0.${1 + i}`);
/** The server's addresses. */
export const serverAddresses = (s: number): string[] => Array.from({ length: s }, (_, i) => `10.78.0.${100 + i}`);

/** Checks a spec against the addressing plan; throws InvalidArgumentError naming the option. */
export function validateSpec(spec: LabSpec): LabSpec {
  const within = (name: string, v: number, max: number): void => {
    if (!Number.isSafeInteger(v) || v < 1 || v > max) throw new InvalidArgumentError(`invalid ${name} '${v}': expected a whole number from 1 to ${max}`);
  };
  within('--clients', spec.clients, LAB_BOUNDS.clients);
  within('--client-addresses', spec.clientAddresses, LAB_BOUNDS.clientAddresses);
  within('--gateway-addresses', spec.gatewayAddresses, LAB_BOUNDS.gatewayAddresses);
  within('--server-addresses', spec.serverAddresses, LAB_BOUNDS.serverAddresses);
  if (spec.gatewayPorts.lo < 1024) throw new InvalidArgumentError(`invalid --gateway-ports '${spec.gatewayPorts.lo}-${spec.gatewayPorts.hi}': expected ports from 1024 to 65535`);
  if (spec.clientPorts && (spec.clientPorts.lo < 1024 || spec.clientPorts.hi - spec.clientPorts.lo < 1)) {
    throw new InvalidArgumentError(`invalid --client-ports '${spec.clientPorts.lo}-${spec.clientPorts.hi}': expected LO-HI from 1024 to 65535 with LO < HI (the kernel wants two ports at least)`);
  }
  return spec;
}

/** The nftables script of the gateway: one snat rule for TCP from the client side to the public side. */
export function nftScript(spec: LabSpec): string {
  const addrs = gatewayAddresses(spec.gatewayAddresses);
  const to = addrs.length === 1 ? addrs[0] : `${addrs[0]}-${addrs[addrs.length - 1]}`;
  return [
    `table ip ${NFT_TABLE} {`,
    '  chain post {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    oifname "${GATEWAY_PUBLIC_LINK}" ip saddr 10.77.0.0/16 meta l4proto tcp snat ip to ${to}:${spec.gatewayPorts.lo}-${spec.gatewayPorts.hi}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Every namespace a spec creates, in creation order. */
export function namespacesOf(spec: LabSpec): string[] {
  return [GATEWAY_NS, SERVER_NS, ...Array.from({ length: spec.clients }, (_, i) => clientNs(i + 1))];
}

/** The build, step by step; run in order, any failure undoes everything. */
export function planSteps(spec: LabSpec): Step[] {
  const steps: Step[] = [];
  const ip = (...argv: string[]): void => void steps.push({ argv: ['ip', ...argv] });
  const inNs = (ns: string, ...argv: string[]): void => void steps.push({ argv: ['ip', 'netns', 'exec', ns, ...argv] });
  for (const ns of namespacesOf(spec)) {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  // Public side: gateway <-> server.
  ip('link', 'add', GATEWAY_PUBLIC_LINK, 'netns', GATEWAY_NS, 'type', 'veth', 'peer', 'name', SERVER_LINK, 'netns', SERVER_NS);
  for (const a of gatewayAddresses(spec.gatewayAddresses)) ip('-n', GATEWAY_NS, 'addr', 'add', `${a}/24`, 'dev', GATEWAY_PUBLIC_LINK);
  for (const a of serverAddresses(spec.serverAddresses)) ip('-n', SERVER_NS, 'addr', 'add', `${a}/24`, 'dev', SERVER_LINK);
  ip('-n', GATEWAY_NS, 'link', 'set', GATEWAY_PUBLIC_LINK, 'up');
  ip('-n', SERVER_NS, 'link', 'set', SERVER_LINK, 'up');
  ip('-n', SERVER_NS, 'route', 'add', '10.77.0.0/16', 'via', '10.78.0.1');
  // Client side: one link per client.
  for (let k = 1; k <= spec.clients; k++) {
    const ns = clientNs(k);
    ip('link', 'add', gatewayLink(k), 'netns', GATEWAY_NS, 'type', 'veth', 'peer', 'name', clientLink(k), 'netns', ns);
    ip('-n', GATEWAY_NS, 'addr', 'add', `10.77.${k}.1/24`, 'dev', gatewayLink(k));
    for (const a of clientAddresses(k, spec.clientAddresses)) ip('-n', ns, 'addr', 'add', `${a}/24`, 'dev', clientLink(k));
    ip('-n', GATEWAY_NS, 'link', 'set', gatewayLink(k), 'up');
    ip('-n', ns, 'link', 'set', clientLink(k), 'up');
    ip('-n', ns, 'route', 'add', 'default', 'via', `10.77.${k}.1`);
    if (spec.clientPorts) inNs(ns, 'sysctl', '-qw', `net.ipv4.ip_local_port_range=${spec.clientPorts.lo} ${spec.clientPorts.hi}`);
  }
  inNs(GATEWAY_NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  if (spec.nat) steps.push({ argv: ['ip', 'netns', 'exec', GATEWAY_NS, 'nft', '-f', '-'], input: nftScript(spec) });
  ip('-n', GATEWAY_NS, 'link', 'set', 'lo', 'alias', LAB_COMPLETE);
  return steps;
}
