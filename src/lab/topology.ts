/**
 * Builds, inspects and removes the lab with iproute2 and nftables. Only
 * names starting with `ft-` are ever created or deleted; a build that fails
 * half way removes everything it made.
 */
import { spawnSync } from 'node:child_process';
import { FourtupleError, LabError, UnsupportedError } from '../errors.js';
import { GATEWAY_NS, LAB_COMPLETE, GATEWAY_PUBLIC_LINK, NFT_TABLE, PREFIX, SERVER_LINK, SERVER_NS, planSteps, type LabSpec, type Step } from './plan.js';

/** A build step failed; everything built was removed. */
export class LabBuildError extends FourtupleError {
  constructor(message: string) {
    super(message, 'FT_LAB_BUILD', 1);
  }
}

/** Result of one command. */
interface Ran {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(argv: readonly string[], input?: string): Ran {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', input, timeout: 15_000 });
  if (r.error) return { status: null, stdout: '', stderr: r.error.message };
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Why the lab cannot run here, or undefined. */
export function labUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'the lab needs root (ip netns)';
  if (run(['ip', '-V']).status !== 0) return "iproute2's 'ip' is not installed";
  return undefined;
}

/** Whether nft is installed. */
export function nftAvailable(): boolean {
  return run(['nft', '--version']).status === 0;
}

/** Every network namespace whose name starts with `ft-`. */
export function labNamespaces(): string[] {
  const r = run(['ip', 'netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n) => n !== undefined && n.startsWith(PREFIX));
}

/** Links starting with `ft-` in the host's own namespace (a crash between 'link add' and the move leaves them there). */
export function hostLabLinks(): string[] {
  const r = run(['ip', '-o', 'link', 'show']);
  const out: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^\d+:\s+([^:@\s]+)/.exec(line);
    if (m && m[1].startsWith(PREFIX)) out.push(m[1]);
  }
  return out;
}

/** Process ids running inside namespace `ns`. */
export function pidsIn(ns: string): number[] {
  return run(['ip', 'netns', 'pids', ns])
    .stdout.split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isSafeInteger(n) && n > 0);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** What `down` removed. */
export interface DownReport {
  readonly namespaces: string[];
  readonly links: string[];
  readonly killed: number[];
}

/**
 * Removes every `ft-` namespace (with its links and nftables table) and host
 * link, after ending the processes inside those namespaces (which only the lab
 * starts): SIGTERM, then SIGKILL after two seconds. Idempotent.
 */
export async function labDown(): Promise<DownReport> {
  const namespaces = labNamespaces();
  const killed: number[] = [];
  for (const ns of namespaces) for (const pid of pidsIn(ns)) if (signal(pid, 'SIGTERM')) killed.push(pid);
  const deadline = Date.now() + 2000;
  while (killed.some(alive) && Date.now() < deadline) await sleep(50);
  for (const pid of killed) if (alive(pid)) signal(pid, 'SIGKILL');
  for (const ns of namespaces) {
    if (ns === GATEWAY_NS) run(['ip', 'netns', 'exec', ns, 'nft', 'delete', 'table', 'ip', NFT_TABLE]);
    run(['ip', 'netns', 'del', ns]);
  }
  const links = hostLabLinks();
  for (const l of links) run(['ip', 'link', 'del', l]);
  return { namespaces, links, killed };
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Test hook: FOURTUPLE_LAB_FAIL_STEP=N makes step N (0-based) fail with an invalid argument. */
function stepFor(steps: readonly Step[], i: number): Step {
  const fail = process.env.FOURTUPLE_LAB_FAIL_STEP;
  return fail !== undefined && Number(fail) === i ? { ...steps[i], argv: [...steps[i].argv, 'ft-invalid-argument'] } : steps[i];
}

/** Builds the lab; on any failure removes all of it and throws LabBuildError. */
export async function labUp(spec: LabSpec): Promise<{ steps: number }> {
  const why = labUnavailable();
  if (why) throw new UnsupportedError(why);
  if (spec.nat && !nftAvailable()) throw new UnsupportedError("--nat needs nftables' 'nft' (apt-get install nftables)");
  const existing = labNamespaces();
  if (existing.length) throw new LabError(`a lab is already up (${existing.join(', ')}): run 'fourtuple lab down' first`, 'FT_LAB_EXISTS');
  const steps = planSteps(spec);
  for (let i = 0; i < steps.length; i++) {
    const s = stepFor(steps, i);
    const r = run(s.argv, s.input);
    if (r.status !== 0) {
      await labDown();
      throw new LabBuildError(`lab up failed at step ${i + 1} of ${steps.length} (${s.argv.join(' ')}): ${r.stderr.trim() || `exit ${r.status}`}; everything built was removed`);
    }
  }
  return { steps: steps.length };
}

/** The snat rule of the gateway, as found in its nftables table. */
export interface GatewayNat {
  readonly addresses: string[];
  readonly ports: { lo: number; hi: number };
}

/** What exists now. */
export interface LabStatus {
  readonly up: boolean;
  /** Namespaces exist but the build never finished (no completion mark): run 'lab down'. */
  readonly incomplete: boolean;
  readonly clients: { namespace: string; addresses: string[]; portRange: string | null; pids: number[] }[];
  readonly gateway: { namespace: string; addresses: string[]; nat: GatewayNat | null; forwarding: boolean; conntrackCount: number | null; pids: number[] } | null;
  readonly server: { namespace: string; addresses: string[]; pids: number[] } | null;
  /** ft- namespaces that fit no role (a different or damaged lab). */
  readonly other: string[];
  /** ft- links left in the host's namespace. */
  readonly hostLinks: string[];
}

/** Whether the build's last step ran: the gateway's loopback carries LAB_COMPLETE as its alias. */
function gatewayMarked(): boolean {
  const r = run(['ip', '-n', GATEWAY_NS, '-j', 'link', 'show', 'dev', 'lo']);
  if (r.status !== 0) return false;
  try {
    return (JSON.parse(r.stdout) as { ifalias?: string }[]).some((l) => l.ifalias === LAB_COMPLETE);
  } catch {
    return false;
  }
}

function addressesIn(ns: string, dev: string): string[] {
  const r = run(['ip', '-n', ns, '-j', 'addr', 'show', 'dev', dev]);
  if (r.status !== 0) return [];
  try {
    const parsed = JSON.parse(r.stdout) as { addr_info?: { family: string; local: string }[] }[];
    return parsed.flatMap((l) => (l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => a.local));
  } catch {
    return [];
  }
}

function readIn(ns: string, file: string): string | null {
  const r = run(['ip', 'netns', 'exec', ns, 'cat', file]);
  return r.status === 0 ? r.stdout.trim() : null;
}

/** The snat rule in the gateway's `ft_lab` table, or null without one. */
export function gatewayNat(): GatewayNat | null {
  const r = run(['ip', 'netns', 'exec', GATEWAY_NS, 'nft', '-j', 'list', 'table', 'ip', NFT_TABLE]);
  if (r.status !== 0) return null;
  try {
    const doc = JSON.parse(r.stdout) as { nftables: { rule?: { expr: Record<string, unknown>[] } }[] };
    for (const item of doc.nftables) {
      for (const e of item.rule?.expr ?? []) {
        const snat = e.snat as { addr?: string | { range: [string, string] }; port?: number | { range: [number, number] } } | undefined;
        if (!snat) continue;
        const [a0, a1] = typeof snat.addr === 'string' ? [snat.addr, snat.addr] : (snat.addr?.range ?? ['', '']);
        const [lo, hi] = typeof snat.port === 'number' ? [snat.port, snat.port] : (snat.port?.range ?? [1024, 65535]);
        const first = Number(a0.split('.')[3]);
        const last = Number(a1.split('.')[3]);
        const prefix = a0.split('.').slice(0, 3).join('.');
        const addresses = Array.from({ length: last - first + 1 }, (_, i) => `${prefix}.${first + i}`);
        return { addresses, ports: { lo, hi } };
      }
    }
  } catch {
    return null;
  }
  return null;
}

/** Reads what exists: namespaces, addresses, the NAT rule, forwarding, conntrack and processes. */
export function labStatus(): LabStatus {
  const all = labNamespaces();
  const clients = all
    .filter((n) => /^ft-c\d+$/.test(n))
    .sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)))
    .map((ns) => ({ namespace: ns, addresses: addressesIn(ns, `${ns}-e`), portRange: readIn(ns, '/proc/sys/net/ipv4/ip_local_port_range')?.replace(/\s+/, '-') ?? null, pids: pidsIn(ns) }));
  const gw = all.includes(GATEWAY_NS)
    ? {
        namespace: GATEWAY_NS,
        addresses: addressesIn(GATEWAY_NS, GATEWAY_PUBLIC_LINK),
        nat: gatewayNat(),
        forwarding: readIn(GATEWAY_NS, '/proc/sys/net/ipv4/ip_forward') === '1',
        conntrackCount: conntrackCount(),
        pids: pidsIn(GATEWAY_NS),
      }
    : null;
  const srv = all.includes(SERVER_NS) ? { namespace: SERVER_NS, addresses: addressesIn(SERVER_NS, SERVER_LINK), pids: pidsIn(SERVER_NS) } : null;
  const other = all.filter((n) => n !== GATEWAY_NS && n !== SERVER_NS && !/^ft-c\d+$/.test(n));
  const complete = all.includes(GATEWAY_NS) && gatewayMarked();
  const parts = clients.length > 0 && gw !== null && srv !== null;
  return { up: parts && complete, incomplete: all.length > 0 && !(parts && complete), clients, gateway: gw, server: srv, other, hostLinks: hostLabLinks() };
}

/** Entries in the gateway's connection-tracking table, or null when it has none. */
export function conntrackCount(): number | null {
  const v = readIn(GATEWAY_NS, '/proc/sys/net/netfilter/nf_conntrack_count');
  return v === null ? null : Number(v);
}
