/**
 * Everything the model needs to know about this host, for the current
 * network namespace and process, read in one pass. Readers take a root
 * folder so tests can point them at fixture trees; nothing here throws.
 */
import { networkInterfaces } from 'node:os';
import { type Fact, known, unknown } from './fact.js';
import { type Capabilities, readCapabilities, readInt, readInts, readMeminfo, readNofile, readOpenFds, readText } from './procfs.js';
import { TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_STATES } from './linux.js';
import { scanSockets } from './socket-table.js';
import { scanProcNetTcp } from './proc-net-tcp.js';

/** An address configured on an interface. */
export interface InterfaceAddress {
  readonly interface: string;
  readonly address: string;
  readonly family: 4 | 6;
  readonly prefix: number;
}

/** A listening socket (explicit source ports cannot reuse its port). */
export interface Listener {
  readonly address: string;
  readonly port: number;
}

/** A socket that holds a source port (any state but LISTEN). */
export interface Occupant {
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** TCP state number (linux.ts). */
  readonly state: number;
}

/** Kernel features that change how ports are allocated, from the release. */
export interface KernelFeatures {
  /** IP_BIND_ADDRESS_NO_PORT (Linux 4.2): bind an address now, the port at connect(). */
  readonly bindAddressNoPort: boolean;
  /** connect() prefers even ports and bind(0) odd ones (4.2 for connect, 4.6 for bind). */
  readonly evenOddSplit: boolean;
  /** IP_LOCAL_PORT_RANGE (6.3): a per-socket ephemeral range. */
  readonly localPortRangeOption: boolean;
}

/** The facts, each known with its source or unknown with the reason. */
export interface KernelFacts {
  readonly portRange: Fact<{ lo: number; hi: number }>;
  /** Ranges as the kernel prints them (`8080,9000-9010`), possibly empty. */
  readonly reservedPorts: Fact<string>;
  readonly unprivilegedPortStart: Fact<number>;
  /** ip_autobind_reuse: 1 lets bind(0) with SO_REUSEADDR share ports once the range is used up. */
  readonly ipAutobindReuse: Fact<number>;
  readonly tcpTwReuse: Fact<number>;
  /** Milliseconds a TIME_WAIT must have lasted before tcp_tw_reuse takes it over (6.13+; 1,000 before). */
  readonly tcpTwReuseDelay: Fact<number>;
  /** TCP timestamps: without them no TIME_WAIT 4-tuple is ever taken over. */
  readonly tcpTimestamps: Fact<number>;
  readonly tcpFinTimeout: Fact<number>;
  readonly tcpMaxTwBuckets: Fact<number>;
  readonly tcpMaxOrphans: Fact<number>;
  /** tcp_mem in pages: min, pressure, max. */
  readonly tcpMem: Fact<{ min: number; pressure: number; max: number }>;
  readonly somaxconn: Fact<number>;
  readonly tcpMaxSynBacklog: Fact<number>;
  readonly tcpSyncookies: Fact<number>;
  readonly fileMax: Fact<number>;
  readonly nrOpen: Fact<number>;
  /** fs.file-nr: allocated handles, free handles (always 0 since 2.6), max. */
  readonly fileNr: Fact<{ allocated: number; free: number; max: number }>;
  readonly nofile: Fact<{ soft: number; hard: number }>;
  /** Descriptors this process has open now. */
  readonly openFds: Fact<number>;
  readonly conntrackMax: Fact<number>;
  readonly conntrackCount: Fact<number>;
  /** Bytes. */
  readonly memAvailable: Fact<number>;
  readonly memTotal: Fact<number>;
  readonly kernelRelease: Fact<string>;
  readonly features: Fact<KernelFeatures>;
  readonly interfaces: Fact<InterfaceAddress[]>;
  readonly listeners: Fact<Listener[]>;
  /** What this process may do past the limits that spare a privileged one. */
  readonly capabilities: Fact<Capabilities>;
}

/** Where and how to read. */
export interface ReadFactsOptions {
  /** Root folder holding proc/ (default `/`). */
  root?: string;
  /** Interface addresses; defaults to os.networkInterfaces() when root is `/`. */
  interfaces?: InterfaceAddress[];
}

/** Reads every fact the model uses. */
export function readKernelFacts(options: ReadFactsOptions = {}): KernelFacts {
  const root = options.root ?? '/';
  const sys = (p: string): string => `proc/sys/${p}`;
  const range = readInts(root, sys('net/ipv4/ip_local_port_range'), 2);
  const tcpMem = readInts(root, sys('net/ipv4/tcp_mem'), 3);
  const fileNr = readInts(root, sys('fs/file-nr'), 3);
  const reserved = readText(root, sys('net/ipv4/ip_local_reserved_ports'));
  const release = readText(root, 'proc/sys/kernel/osrelease');
  const conntrackMax = readInt(root, sys('net/netfilter/nf_conntrack_max'));
  return {
    portRange: range.known ? known({ lo: range.value[0], hi: range.value[1] }, range.source) : range,
    reservedPorts: reserved.known ? known(reserved.value.trim(), reserved.source) : reserved,
    unprivilegedPortStart: readInt(root, sys('net/ipv4/ip_unprivileged_port_start')),
    ipAutobindReuse: readInt(root, sys('net/ipv4/ip_autobind_reuse')),
    tcpTwReuse: readInt(root, sys('net/ipv4/tcp_tw_reuse')),
    tcpTwReuseDelay: readInt(root, sys('net/ipv4/tcp_tw_reuse_delay')),
    tcpTimestamps: readInt(root, sys('net/ipv4/tcp_timestamps')),
    tcpFinTimeout: readInt(root, sys('net/ipv4/tcp_fin_timeout')),
    tcpMaxTwBuckets: readInt(root, sys('net/ipv4/tcp_max_tw_buckets')),
    tcpMaxOrphans: readInt(root, sys('net/ipv4/tcp_max_orphans')),
    tcpMem: tcpMem.known ? known({ min: tcpMem.value[0], pressure: tcpMem.value[1], max: tcpMem.value[2] }, tcpMem.source) : tcpMem,
    somaxconn: readInt(root, sys('net/core/somaxconn')),
    tcpMaxSynBacklog: readInt(root, sys('net/ipv4/tcp_max_syn_backlog')),
    tcpSyncookies: readInt(root, sys('net/ipv4/tcp_syncookies')),
    fileMax: readInt(root, sys('fs/file-max')),
    nrOpen: readInt(root, sys('fs/nr_open')),
    fileNr: fileNr.known ? known({ allocated: fileNr.value[0], free: fileNr.value[1], max: fileNr.value[2] }, fileNr.source) : fileNr,
    nofile: readNofile(root),
    openFds: readOpenFds(root),
    conntrackMax: conntrackMax.known ? conntrackMax : unknown('nf_conntrack is not loaded: no connection tracking', conntrackMax.source),
    conntrackCount: readInt(root, sys('net/netfilter/nf_conntrack_count')),
    memAvailable: readMeminfo(root, 'MemAvailable'),
    memTotal: readMeminfo(root, 'MemTotal'),
    kernelRelease: release.known ? known(release.value.trim(), release.source) : release,
    features: release.known ? featuresOf(release.value.trim(), release.source) : release,
    interfaces: options.interfaces ? known(options.interfaces, 'given') : root === '/' ? readInterfaces() : unknown('interfaces are read from the live host only', 'os.networkInterfaces()'),
    listeners: readListeners(root),
    capabilities: readCapabilities(root),
  };
}

/** The few facts the churn ceiling reads (model/churn.ts): cheap sysctl files only, for a view that refreshes. */
export function readChurnFacts(root = '/'): Pick<KernelFacts, 'tcpTwReuse' | 'tcpTwReuseDelay' | 'tcpTimestamps' | 'tcpMaxTwBuckets' | 'ipAutobindReuse' | 'kernelRelease'> {
  const ipv4 = (name: string): Fact<number> => readInt(root, `proc/sys/net/ipv4/${name}`);
  const release = readText(root, 'proc/sys/kernel/osrelease');
  return {
    tcpTwReuse: ipv4('tcp_tw_reuse'),
    tcpTwReuseDelay: ipv4('tcp_tw_reuse_delay'),
    tcpTimestamps: ipv4('tcp_timestamps'),
    tcpMaxTwBuckets: ipv4('tcp_max_tw_buckets'),
    ipAutobindReuse: ipv4('ip_autobind_reuse'),
    kernelRelease: release.known ? known(release.value.trim(), release.source) : release,
  };
}

/** Which allocation features a kernel release has. */
export function featuresOf(release: string, source = 'kernel release'): Fact<KernelFeatures> {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return unknown(`cannot read a version from kernel release '${release}'`, source);
  const v = Number(m[1]) * 1000 + Number(m[2]);
  return known({ bindAddressNoPort: v >= 4002, evenOddSplit: v >= 4006, localPortRangeOption: v >= 6003 }, source);
}

function readInterfaces(): Fact<InterfaceAddress[]> {
  try {
    const out: InterfaceAddress[] = [];
    for (const [name, addrs] of Object.entries(networkInterfaces())) {
      for (const a of addrs ?? []) {
        const prefix = Number(a.cidr?.split('/')[1] ?? (a.family === 'IPv4' ? 32 : 128));
        out.push({ interface: name, address: a.address.replace(/%.*$/, ''), family: a.family === 'IPv4' ? 4 : 6, prefix });
      }
    }
    return known(out, 'os.networkInterfaces()');
  } catch (err) {
    return unknown(`cannot list interfaces: ${(err as Error).message}`, 'os.networkInterfaces()');
  }
}

const LISTEN = new Set([TCP_LISTEN]);

function readListeners(root: string): Fact<Listener[]> {
  const out: Listener[] = [];
  const { errors } = scanProcNetTcp(root, (row) => out.push({ address: row.localAddress, port: row.localPort }), LISTEN);
  if (errors.length === 2) return unknown(errors.join('; '), 'proc/net/tcp');
  return known(out, 'proc/net/tcp, proc/net/tcp6');
}

/** Every state but LISTEN (and the request sockets, which hold no port of their own). */
const HOLDING_STATES: ReadonlySet<number> = new Set(TCP_STATES.map((_, i) => i).filter((s) => s !== 0 && s !== TCP_LISTEN && s !== TCP_NEW_SYN_RECV));

/**
 * Sockets that hold a source port now, those `keep` wants (the model asks
 * for the ones toward its destinations or on its source addresses), read
 * the fastest way this process can (BPF iterator, sock_diag, then /proc);
 * empty when the table cannot be read.
 */
export function readOccupants(keep: (o: Occupant) => boolean, root = '/'): Occupant[] {
  const out: Occupant[] = [];
  scanSockets(
    (row) => {
      const o = { localAddress: row.localAddress, localPort: row.localPort, remoteAddress: row.remoteAddress, remotePort: row.remotePort, state: row.state };
      if (keep(o)) out.push(o);
    },
    { root, states: HOLDING_STATES, unreadBytes: false },
  );
  return out;
}
