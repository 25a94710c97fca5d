/**
 * The NAT gateway's ceiling: everyone behind a source-NAT gateway shares one
 * pool of (public address, port) per destination (address, port, protocol).
 * Pure: no I/O.
 */
import { InvalidArgumentError } from '../errors.js';
import type { Answer, Constraint, Limits } from './limits.js';

/** A source-NAT gateway: how many public addresses, and the ports it maps to on each. */
export interface NatGateway {
  readonly addresses: number;
  /** Ports used per address (a LO-HI range gives HI-LO+1). */
  readonly portsPerAddress: number;
  /** Where the figure comes from: 'given', or a cloud preset. */
  readonly source: string;
  /** Preset name, when one was used. */
  readonly preset?: NatPresetName;
}

/** Cloud presets: connections per public address to one destination, each from the provider's own documentation. */
export const NAT_PRESETS = {
  aws: {
    perAddress: 55_000,
    words: 'AWS NAT gateway: 55,000 simultaneous connections to each unique destination per IPv4 address (up to 8 addresses)',
    source: 'https://repost.aws/knowledge-center/vpc-resolve-port-allocation-errors',
  },
  azure: {
    perAddress: 50_000,
    words: 'Azure NAT gateway: up to 50,000 concurrent connections per public IP address to the same destination endpoint (64,512 SNAT ports per address)',
    source: 'https://learn.microsoft.com/azure/nat-gateway/nat-gateway-resource (Performance; SNAT port reuse)',
  },
  gcp: {
    perAddress: 64_512,
    words:
      'Google Cloud NAT: 64,512 TCP source ports per NAT IP address (1024-65535), each reusable for different destinations (address, port, protocol); ' +
      'one VM gets only the ports allocated to it (minimum ports per VM, 64 by default), so it alone reaches that many connections to one destination',
    source: 'https://cloud.google.com/nat/docs/ports-and-addresses (Ports; Port reservation)',
  },
} as const;

/** Names of the cloud presets. */
export type NatPresetName = keyof typeof NAT_PRESETS;

/** Whether `name` is a preset. */
export function isNatPreset(name: string): name is NatPresetName {
  return Object.hasOwn(NAT_PRESETS, name);
}

/** The constraint id of the NAT pool. */
export const NAT_POOL = 'nat-pool' as const;

/** Connections the gateway allows in total over `destinations` distinct (address, port) destinations. */
export function natCeiling(nat: NatGateway, destinations: number): number {
  return nat.addresses * nat.portsPerAddress * Math.max(1, destinations);
}

const fmt = (n: number): string => n.toLocaleString('en-US');

/** The `nat-pool` constraint for a gateway and a number of destinations. */
export function natConstraint(nat: NatGateway, destinations: number): Constraint {
  const dests = Math.max(1, destinations);
  const per = nat.addresses * nat.portsPerAddress;
  const preset = nat.preset ? `${NAT_PRESETS[nat.preset].words} (${NAT_PRESETS[nat.preset].source}); ` : '';
  return {
    id: NAT_POOL,
    limit: natCeiling(nat, dests),
    scope: 'host',
    detail:
      `${preset}a source-NAT gateway maps every connection behind it to one of ${fmt(nat.addresses)} public address${nat.addresses === 1 ? '' : 'es'} × ${fmt(nat.portsPerAddress)} ports per destination, ` +
      `shared by every host behind it: ${fmt(per)} per destination × ${fmt(dests)} destination${dests === 1 ? '' : 's'}. ` +
      `Linux (nftables/iptables snat to an address range) picks the address by a hash of (source, destination) and never falls back to another one, so the sum is reached only when sources spread over the addresses`,
    remedy: `add public addresses to the gateway (each adds ${fmt(nat.portsPerAddress)} per destination), widen its port range, or spread the traffic over more destination addresses or ports`,
  };
}

/** `limits` with the NAT gateway's constraint added and the binding answers recomputed. */
export function withNat(limits: Limits, nat: NatGateway): Limits {
  const c = natConstraint(nat, limits.destinationCount);
  const lift = (a: Limits['host']): Limits['host'] =>
    a.connections === null || (c.limit as number) < a.connections
      ? { connections: c.limit, connectionsMin: Math.min(c.limit as number, a.connectionsMin ?? Infinity), binding: c.id, remedy: c.remedy }
      : { ...a, connectionsMin: a.connectionsMin === null ? null : Math.min(a.connectionsMin, c.limit as number) };
  return { ...limits, constraints: [...limits.constraints, c], host: lift(limits.host), process: lift(limits.process) };
}

/** Parses `LO-HI` (or one port) as a range of ports from 1 to 65535; `what` names the option in errors. */
export function parsePortRange(text: string, what: string): { lo: number; hi: number } {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!(lo >= 1 && hi <= 65535 && lo <= hi)) throw new InvalidArgumentError(`invalid ${what} '${text}': expected LO-HI, ports from 1 to 65535 with LO <= HI`);
  return { lo, hi };
}

/**
 * K client hosts of this shape toward the same destinations: each has its
 * own ports, descriptors, memory and conntrack (every host-wide constraint
 * but the NAT pool, times K); a NAT gateway in front of them is one pool for
 * all (its constraint counts once).
 */
export function fleetAnswer(limits: Limits, hosts: number): Answer {
  let best: { c: Constraint; limit: number } | undefined;
  let least = Infinity;
  for (const c of limits.constraints) {
    if (c.limit === null || c.scope !== 'host') continue;
    const k = c.id === NAT_POOL ? 1 : hosts;
    const limit = c.limit * k;
    if (!best || limit < best.limit) best = { c, limit };
    least = Math.min(least, (c.limitMin ?? c.limit) * k);
  }
  if (!best) return { connections: null, connectionsMin: null, binding: null, remedy: '' };
  const remedy = best.c.id === NAT_POOL ? best.c.remedy : `more client hosts (each adds its own), or on each: ${best.c.remedy}`;
  return { connections: best.limit, connectionsMin: least, binding: best.c.id, remedy };
}
