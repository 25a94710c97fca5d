/**
 * The ceiling model: from kernel facts, sources, destinations and a
 * strategy, every limit on concurrent connections, the binding one for one
 * process and for the host, and the change that lifts it. Pure: no I/O.
 */
import type { KernelFacts, Listener } from '../kernel/facts.js';
import type { Capabilities } from '../kernel/procfs.js';
import type { Fact } from '../kernel/fact.js';
import { type Endpoints, isLoopback, parsePorts } from './address.js';
import { KERNEL_BYTES_PER_QUEUED_SOCKET, KERNEL_BYTES_PER_SOCKET } from './costs.js';
import { PortSet } from './port-set.js';
import { isStrategy, type Strategy, strategySpec } from './strategy.js';
import { type Occupant, poolCapacity } from './pool.js';
import { InvalidArgumentError } from '../errors.js';

/** Stable identifiers of the constraints, shared with probe reports. */
export type ConstraintId =
  | 'ephemeral-ports'
  | 'bind-pool'
  | 'explicit-ports'
  | 'fd-process'
  | 'fd-host'
  | 'memory'
  | 'conntrack'
  | 'time-wait'
  | 'backlog'
  | 'nat-pool';

/** One limit on concurrent connections. */
export interface Constraint {
  readonly id: ConstraintId;
  /** Connections it allows; null when it does not cap held connections or is unknown. */
  readonly limit: number | null;
  /**
   * Connections it allows at least, where the kernel leaves the last few to
   * chance (the detail says why); equal to limit, or absent, otherwise.
   */
  readonly limitMin?: number | null;
  /** `process`: applies to one process; `host`: to all processes together. */
  readonly scope: 'process' | 'host';
  readonly detail: string;
  readonly remedy: string;
}

/** The answer for one process or for the host. */
export interface Answer {
  readonly connections: number | null;
  /** At least this many: below `connections` only where the kernel leaves the last ports to chance. */
  readonly connectionsMin: number | null;
  readonly binding: ConstraintId | null;
  readonly remedy: string;
}

/** What the model is asked. */
export interface LimitsInput {
  readonly facts: KernelFacts;
  readonly strategy: Strategy;
  /** Source addresses; empty: the kernel chooses one per destination. */
  readonly sources: readonly string[];
  /** Destinations; empty: the general case, one remote destination. */
  readonly destinations: readonly Endpoints[];
  /** Addresses of this host besides loopback (a destination there has both ends here). */
  readonly localAddresses?: readonly string[];
  readonly kernelBytesPerSocket?: number;
  /**
   * The server's end waits in accept queues that nobody accepts from (the
   * probe's queue sink): no descriptor on that side, a socket without a
   * file, and `perListener` connections per listener at most. `listeners`
   * null: the probe opens as many listeners as the target needs.
   */
  readonly acceptQueue?: { readonly perListener: number; readonly listeners: number | null };
  /** SO_REUSEADDR on the client's sockets before bind (strategy bind; default true, as the probe does). */
  readonly reuseAddr?: boolean;
  /** Sockets holding source ports now (TIME_WAIT ones included): their 4-tuples or ports are not free. */
  readonly occupants?: readonly Occupant[];
}

/** The model's answer. */
export interface Limits {
  readonly strategy: Strategy;
  readonly general: boolean;
  readonly process: Answer;
  readonly host: Answer;
  readonly constraints: readonly Constraint[];
  /** Source ports available to one (source, destination address, destination port). */
  readonly portsPerDestination: number | null;
  /** Number of (destination address, destination port) pairs. */
  readonly destinationCount: number;
  /** Number of source addresses (1 when the kernel chooses). */
  readonly sourceCount: number;
  /** Sockets each connection costs on this host (2 when both ends are here). */
  readonly socketsPerConnection: 1 | 2;
  /** Descriptors each connection costs on this host (1 with the queue sink: the server's end has none). */
  readonly descriptorsPerConnection: 1 | 2;
  /** How the server's end is held when it is on this host: accepted (a descriptor) or waiting in an accept queue; null when it is elsewhere. */
  readonly serverEnd: 'accept' | 'queue' | null;
}

const fmt = (n: number): string => n.toLocaleString('en-US');

/** The ephemeral ports connect() and bind(0) may pick: the range minus reserved ports and ports bound by listeners. */
export function ephemeralPool(facts: KernelFacts): PortSet | null {
  if (!facts.portRange.known) return null;
  const { lo, hi } = facts.portRange.value;
  return PortSet.range(lo, hi).subtract(reservedSet(facts)).subtract(listenerPorts(facts));
}

/** The ports a library picks by default: from ip_unprivileged_port_start, not reserved, not listened on (what explicitPool allows, less what other programs count on). */
export function politeExplicitPool(facts: KernelFacts): PortSet {
  const start = facts.unprivilegedPortStart.known ? Math.max(1, facts.unprivilegedPortStart.value) : 1024;
  return PortSet.range(start, 65535).subtract(reservedSet(facts)).subtract(listenerPorts(facts));
}

/**
 * Ports a program may bind explicitly toward any destination: from 1 with
 * CAP_NET_BIND_SERVICE (else from ip_unprivileged_port_start), not listened
 * on. Reserved ports stay in: they only keep the kernel's own choices away.
 */
export function explicitPool(facts: KernelFacts): PortSet {
  return PortSet.range(explicitStart(facts), 65535).subtract(listenerPorts(facts));
}

function reservedSet(facts: KernelFacts): PortSet {
  if (!facts.reservedPorts.known || facts.reservedPorts.value === '') return new PortSet();
  try {
    return parsePorts(facts.reservedPorts.value, 'ip_local_reserved_ports');
  } catch {
    return new PortSet();
  }
}

function listenerPorts(facts: KernelFacts): PortSet {
  return facts.listeners.known ? PortSet.of(...facts.listeners.value.map((l) => l.port)) : new PortSet();
}

function why(f: Fact<unknown>): string {
  return f.known ? '' : f.reason;
}

/** A library caller's input, checked where it enters: InvalidArgumentError naming what is wrong, never a TypeError. */
function checkLimitsInput(input: LimitsInput): void {
  const bad = (what: string): never => {
    throw new InvalidArgumentError(`computeLimits: ${what}`);
  };
  if (typeof input !== 'object' || input === null) bad('expected an object { facts, strategy, sources, destinations }');
  if (typeof input.facts !== 'object' || input.facts === null || !('portRange' in input.facts)) bad('facts: expected readKernelFacts() output');
  if (!isStrategy(input.strategy as string)) bad(`invalid strategy '${String(input.strategy)}': expected auto, bind, nopo or explicit`);
  if (!Array.isArray(input.sources) || input.sources.some((x) => typeof x !== 'string')) bad('sources: expected an array of addresses (strings)');
  if (!Array.isArray(input.destinations) || input.destinations.some((d) => typeof d !== 'object' || d === null || !Array.isArray(d.addresses) || !(d.ports instanceof PortSet))) bad('destinations: expected an array of parseEndpoints() results');
}

/** Computes every constraint and the binding ones. */
export function computeLimits(input: LimitsInput): Limits {
  checkLimitsInput(input);
  const { facts, strategy } = input;
  const general = input.destinations.length === 0;
  const local = new Set(input.localAddresses ?? []);
  let destinationCount = 0;
  let anyLocal = false;
  for (const d of input.destinations) {
    destinationCount += d.addresses.length * d.ports.size;
    if (d.addresses.some((a) => isLoopback(a) || local.has(a))) anyLocal = true;
  }
  if (general) destinationCount = 1;
  const sourceCount = Math.max(1, input.sources.length);
  const sockets: 1 | 2 = anyLocal ? 2 : 1;
  const queue = anyLocal ? input.acceptQueue : undefined;
  const descriptors: 1 | 2 = queue ? 1 : sockets;
  const perSocket = input.kernelBytesPerSocket ?? KERNEL_BYTES_PER_SOCKET;
  // The server's end in an accept queue is a socket without a file, inode or dentry.
  const perConnection = perSocket + (sockets === 2 ? (queue ? KERNEL_BYTES_PER_QUEUED_SOCKET : perSocket) : 0);
  const constraints: Constraint[] = [];

  const ports = portConstraint(input, sourceCount, destinationCount, general);
  constraints.push(ports.constraint);
  constraints.push(fdProcess(facts), fdHost(facts, descriptors, sockets), memory(facts, sockets, perConnection, perSocket, queue !== undefined), conntrack(facts), timeWait(facts), backlog(facts, queue));

  const pick = (scopes: ReadonlySet<string>): Answer => {
    let best: Constraint | undefined;
    let least = Infinity;
    for (const c of constraints) {
      if (c.limit === null || !scopes.has(c.scope)) continue;
      if (!best || c.limit < (best.limit as number)) best = c;
      least = Math.min(least, c.limitMin ?? c.limit);
    }
    if (!best) return { connections: null, connectionsMin: null, binding: null, remedy: '' };
    return { connections: best.limit, connectionsMin: least, binding: best.id, remedy: best.remedy };
  };
  return {
    strategy,
    general,
    process: pick(new Set(['process', 'host'])),
    host: pick(new Set(['host'])),
    constraints,
    portsPerDestination: ports.perDestination,
    destinationCount,
    sourceCount,
    socketsPerConnection: sockets,
    descriptorsPerConnection: descriptors,
    serverEnd: sockets === 2 ? (queue ? 'queue' : 'accept') : null,
  };
}

/** Destination (address, port) pairs that take part in a pool's ports, counted before expanding any. */
const MAX_DESTINATION_LISTENERS = 100_000;

/**
 * The listeners as they will be during the run: a destination on this host
 * has a server listening on it (the probe's sink, or the program's own),
 * which takes its port as any listener does, whether it runs yet or not.
 */
function withDestinationListeners(listeners: readonly Listener[], input: LimitsInput, within: { lo: number; hi: number }): readonly Listener[] {
  const local = new Set(input.localAddresses ?? []);
  const seen = new Set(listeners.map((l) => `${l.address}|${l.port}`));
  const out = [...listeners];
  // connect() passes over a listened port whatever the address: one address per port says as much.
  const portOnly = strategySpec(input.strategy).portPickedBy === 'connect';
  for (const d of input.destinations) {
    const ports = d.ports.intersect(PortSet.range(within.lo, within.hi));
    const locals = d.addresses.filter((a) => isLoopback(a) || local.has(a));
    const addresses = portOnly ? locals.slice(0, 1) : locals;
    // Past the cap (bind or explicit to a huge local range), the listeners are left out of the count: a larger prediction, never a smaller one.
    if (ports.isEmpty || addresses.length === 0 || ports.size * addresses.length > MAX_DESTINATION_LISTENERS) continue;
    for (const address of addresses) {
      for (const port of ports) {
        const key = `${address}|${port}`;
        if (seen.has(key)) continue;
        seen.add(key);
        out.push({ address, port });
      }
    }
  }
  return out;
}

/** The first port an explicit bind() may use: 1 with CAP_NET_BIND_SERVICE, else ip_unprivileged_port_start. */
export function explicitStart(facts: KernelFacts): number {
  if (facts.capabilities?.known && facts.capabilities.value.netBindService) return 1;
  return facts.unprivilegedPortStart.known ? Math.max(1, facts.unprivilegedPortStart.value) : 1024;
}

function portConstraint(input: LimitsInput, sources: number, dests: number, general: boolean): { constraint: Constraint; perDestination: number | null } {
  const { facts, strategy } = input;
  const srcWords = sources === 1 ? 'one source address' : `${fmt(sources)} source addresses`;
  const dstWords = general ? 'one destination (address, port)' : dests === 1 ? 'one destination' : `${fmt(dests)} destinations (address × port)`;
  const spec = strategySpec(strategy);
  const id: ConstraintId = spec.constraint;
  if (!facts.portRange.known && strategy !== 'explicit') {
    return { perDestination: null, constraint: { id, limit: null, limitMin: null, scope: 'host', detail: `ephemeral range unknown: ${why(facts.portRange)}`, remedy: '' } };
  }
  const range = facts.portRange.known ? facts.portRange.value : { lo: 1, hi: 0 };
  const start = explicitStart(facts);
  const pool = poolCapacity({
    strategy,
    range,
    reserved: reservedSet(facts),
    listeners: withDestinationListeners(facts.listeners.known ? facts.listeners.value : [], input, strategy === 'explicit' ? { lo: start, hi: 65535 } : range),
    occupants: input.occupants ?? [],
    reuseAddr: input.reuseAddr ?? true,
    autobindReuse: facts.ipAutobindReuse.known && facts.ipAutobindReuse.value === 1,
    twReuse: facts.tcpTwReuse.known ? facts.tcpTwReuse.value : 0,
    timestamps: !facts.tcpTimestamps.known || facts.tcpTimestamps.value !== 0,
    parityScan: facts.features.known ? facts.features.value.evenOddSplit : true,
    explicitStart: start,
    sources: input.sources,
    destinations: input.destinations,
  });
  const notes = pool.notes.length ? ` (${pool.notes.join('; ')})` : '';
  const per = pool.perPool;
  const c = (detail: string, remedy: string): { constraint: Constraint; perDestination: number } => ({
    perDestination: per,
    constraint: { id, limit: pool.max, limitMin: pool.min, scope: 'host', detail: detail + notes, remedy },
  });
  if (strategy === 'explicit') {
    const who = start === 1 ? 'from 1 (this process has CAP_NET_BIND_SERVICE)' : `from ip_unprivileged_port_start ${fmt(start)} (below it needs CAP_NET_BIND_SERVICE)`;
    return c(
      `bind(address, port) with SO_REUSEADDR may use every port ${who} that no listener on the source address holds, reserved ones included, for each destination: ${fmt(per)} × ${srcWords} × ${dstWords}`,
      'add source addresses (--from) or destination ports: each one adds another ' + fmt(per),
    );
  }
  const rangeSize = range.hi - range.lo + 1;
  const eph = ephemeralPool(facts)?.size ?? rangeSize;
  const minus = rangeSize === eph ? '' : ` (${fmt(rangeSize)} in ${range.lo}-${range.hi}, minus ${fmt(rangeSize - eph)} reserved or listened on)`;
  const widen = `sysctl -w net.ipv4.ip_local_port_range="1024 65535"${needs(facts, 'netAdmin')}`;
  if (strategy === 'bind') {
    const relax = facts.ipAutobindReuse.known && facts.ipAutobindReuse.value === 1 && (input.reuseAddr ?? true);
    return c(
      relax
        ? `bind(address, 0) picks the port before the destination is known: one pool of ${fmt(per)} ports per source address for all destinations, which net.ipv4.ip_autobind_reuse = 1 with SO_REUSEADDR stretches once it is used up`
        : `bind(address, 0) picks the port before the destination is known, so all destinations share one pool of up to ${fmt(per)} ports${minus} per source address: ${fmt(per)} × ${srcWords}`,
      `set IP_BIND_ADDRESS_NO_PORT before bind (--strategy nopo): each destination then gets its own pool; or add source addresses`,
    );
  }
  const how = strategy === 'nopo' ? 'with IP_BIND_ADDRESS_NO_PORT, connect() picks' : 'connect() picks';
  return c(
    `${how} a source port per (source address, destination address, destination port) from ${fmt(eph)} ephemeral ports${minus}: up to ${fmt(per)} × ${srcWords} × ${dstWords}`,
    `add destination ports or source addresses (--from with --strategy nopo): each adds ${fmt(per)}; or widen the range: ${widen} (keep server ports out of it with net.ipv4.ip_local_reserved_ports)`,
  );
}

function fdProcess(facts: KernelFacts): Constraint {
  if (!facts.nofile.known) return { id: 'fd-process', limit: null, scope: 'process', detail: `open-files limit unknown: ${facts.nofile.reason}`, remedy: '' };
  const { soft, hard } = facts.nofile.value;
  const used = facts.openFds.known ? facts.openFds.value : 0;
  const nrOpen = facts.nrOpen.known ? facts.nrOpen.value : null;
  const raise = can(facts, 'sysResource');
  let remedy: string;
  if (soft < hard) remedy = `ulimit -n ${hard} (the hard limit) gives ${fmt(hard - used)}; beyond that, several processes`;
  else if (nrOpen !== null && hard < nrOpen) remedy = `raise the hard limit: LimitNOFILE=${nrOpen} in the systemd unit or 'nofile' in /etc/security/limits.conf (up to fs.nr_open = ${fmt(nrOpen)})${raise === false ? ', which this process cannot do itself (no CAP_SYS_RESOURCE)' : ''}; or spread the connections over several processes`;
  else remedy = `spread the connections over several processes (each gets ${fmt(soft)}), or raise fs.nr_open and the hard limit${needs(facts, 'sysAdmin')}`;
  return {
    id: 'fd-process',
    limit: Math.max(0, soft - used),
    scope: 'process',
    detail: `one descriptor per connection; open-files limit ${fmt(soft)} (soft) / ${fmt(hard)} (hard), ${used} already open${nrOpen !== null ? `, fs.nr_open ${fmt(nrOpen)}` : ''}`,
    remedy,
  };
}

/** Whether this process has a capability: null when unknown. */
function can(facts: KernelFacts, cap: keyof Capabilities): boolean | null {
  return facts.capabilities?.known ? facts.capabilities.value[cap] : null;
}

/** ' (needs root: CAP_X)' when this process lacks what a remedy needs. */
function needs(facts: KernelFacts, cap: keyof Capabilities): string {
  const name = { sysAdmin: 'CAP_SYS_ADMIN', sysResource: 'CAP_SYS_RESOURCE', netAdmin: 'CAP_NET_ADMIN', netBindService: 'CAP_NET_BIND_SERVICE' }[cap];
  return can(facts, cap) === false ? ` (needs root: ${name}, which this process lacks)` : '';
}

function fdHost(facts: KernelFacts, descriptors: 1 | 2, sockets: 1 | 2): Constraint {
  if (!facts.fileMax.known) return { id: 'fd-host', limit: null, scope: 'host', detail: `fs.file-max unknown: ${facts.fileMax.reason}`, remedy: '' };
  // alloc_empty_file() refuses past fs.file-max only a process without CAP_SYS_ADMIN.
  if (can(facts, 'sysAdmin')) {
    return {
      id: 'fd-host',
      limit: null,
      scope: 'host',
      detail: `does not apply to this process: it has CAP_SYS_ADMIN, which the kernel lets open files past fs.file-max ${fmt(facts.fileMax.value)} (an unprivileged process stops there with ENFILE)`,
      remedy: '',
    };
  }
  const max = facts.fileMax.value;
  const inUse = facts.fileNr.known ? facts.fileNr.value.allocated : 0;
  const free = Math.max(0, max - inUse);
  const both =
    descriptors === 2 ? ', two per connection because both ends are on this host' : sockets === 2 ? ", one per connection: the server's end waits in an accept queue and has no descriptor" : '';
  return {
    id: 'fd-host',
    limit: Math.floor(free / descriptors),
    scope: 'host',
    detail: `system-wide file table fs.file-max ${fmt(max)}, ${fmt(inUse)} in use${both}`,
    remedy: `sysctl -w fs.file-max=${Math.max(max * 2, 2_097_152)}${needs(facts, 'sysAdmin')}, or run as root: CAP_SYS_ADMIN is not held to it`,
  };
}

function memory(facts: KernelFacts, sockets: 1 | 2, perConn: number, perSocket: number, queued: boolean): Constraint {
  if (!facts.memAvailable.known) return { id: 'memory', limit: null, scope: 'host', detail: `available memory unknown: ${facts.memAvailable.reason}`, remedy: '' };
  const avail = facts.memAvailable.value;
  const what = sockets === 2 ? (queued ? '2 sockets, the server\'s waiting in an accept queue without a file' : '2 sockets') : '1 socket';
  const tcpMax = facts.tcpMem.known ? ` tcp_mem (max ${fmt(facts.tcpMem.value.max)} pages) counts buffered data, which idle connections do not hold.` : '';
  return {
    id: 'memory',
    limit: Math.floor(avail / perConn),
    scope: 'host',
    detail: `${(avail / 2 ** 30).toFixed(1)} GiB available at about ${(perConn / 1024).toFixed(1)} KiB of kernel memory per idle connection (${what}); the program's own memory per connection comes on top; no capability exempts a process.${tcpMax}`,
    remedy: `more memory, or fewer bytes per connection in the program; each idle socket costs about ${(perSocket / 1024).toFixed(1)} KiB of kernel slab`,
  };
}

function conntrack(facts: KernelFacts): Constraint {
  const remedy = facts.conntrackMax.known ? `sysctl -w net.netfilter.nf_conntrack_max=${facts.conntrackMax.value * 4}, or exempt this traffic from tracking (nftables 'notrack')${needs(facts, 'netAdmin')}` : '';
  if (!facts.conntrackMax.known) return { id: 'conntrack', limit: null, scope: 'host', detail: facts.conntrackMax.reason, remedy };
  const max = facts.conntrackMax.value;
  const count = facts.conntrackCount.known ? facts.conntrackCount.value : 0;
  if (count === 0) {
    return { id: 'conntrack', limit: null, scope: 'host', detail: `nf_conntrack loaded but tracking nothing now (no rule uses it); if a rule did, one entry per connection up to nf_conntrack_max ${fmt(max)}`, remedy };
  }
  return { id: 'conntrack', limit: Math.max(0, max - count), scope: 'host', detail: `connection tracking is active: ${fmt(count)} of nf_conntrack_max ${fmt(max)} entries used, one more per connection; no capability exempts a process`, remedy };
}

function timeWait(facts: KernelFacts): Constraint {
  const buckets = facts.tcpMaxTwBuckets.known ? fmt(facts.tcpMaxTwBuckets.value) : 'unknown';
  const reuse = facts.tcpTwReuse.known ? facts.tcpTwReuse.value : null;
  const reuseWords = reuse === 1 ? 'on' : reuse === 2 ? 'loopback only' : reuse === 0 ? 'off' : 'unknown';
  return {
    id: 'time-wait',
    limit: null,
    scope: 'host',
    detail: `not a cap on held connections: the side that closes first keeps the 4-tuple in TIME_WAIT for 60 s (at most ${buckets} such sockets, tcp_max_tw_buckets); connect() may take one over when tcp_tw_reuse allows (now ${reuse ?? '?'}: ${reuseWords})`,
    remedy: 'close with RST (SO_LINGER 0) or let the server close first; on clients, sysctl -w net.ipv4.tcp_tw_reuse=1',
  };
}

function backlog(facts: KernelFacts, queue: LimitsInput['acceptQueue']): Constraint {
  const smc = facts.somaxconn.known ? fmt(facts.somaxconn.value) : 'unknown';
  const syn = facts.tcpMaxSynBacklog.known ? fmt(facts.tcpMaxSynBacklog.value) : 'unknown';
  const cookies = facts.tcpSyncookies.known ? facts.tcpSyncookies.value : '?';
  if (queue) {
    const fixed = queue.listeners !== null;
    return {
      id: 'backlog',
      limit: fixed ? (queue.listeners as number) * queue.perListener : null,
      scope: 'host',
      detail: fixed
        ? `the sink never accepts: each of ${fmt(queue.listeners as number)} listener${queue.listeners === 1 ? '' : 's'} holds ${fmt(queue.perListener)} connections in its accept queue (somaxconn ${smc} + 1), no more`
        : `the sink never accepts: each listener holds ${fmt(queue.perListener)} connections in its accept queue (somaxconn ${smc} + 1), and the probe opens as many listeners as the target needs`,
      remedy: fixed ? `more listening ports, sysctl -w net.core.somaxconn=65535${needs(facts, 'netAdmin')}, or --sink accept` : '',
    };
  }
  return {
    id: 'backlog',
    limit: null,
    scope: 'host',
    detail: `not a cap on held connections: the accepting side queues at most somaxconn ${smc} completed connections per listener (SYN queue ${syn}, syncookies ${cookies}); a faster ramp than its accept() rate gets timeouts; listen() caps every process's backlog at somaxconn, privileged or not`,
    remedy: `sysctl -w net.core.somaxconn=65535${needs(facts, 'netAdmin')} and listen() with a larger backlog, or accept faster`,
  };
}
