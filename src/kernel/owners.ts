/**
 * Who holds a socket: its control group, named from the cgroup (v2) id the
 * socket-table iterator reads (the id of a cgroup v2 directory is its inode
 * number), and, on demand, its processes, from the socket inode numbers
 * that /proc/PID/fd links name.
 *
 * A cgroup path tells more than itself where the usual managers put their
 * workloads: systemd's units (`.../nginx.service`), and Kubernetes pods and
 * containers (`.../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
 * with the systemd driver, `/kubepods/burstable/pod<uid>/<id>` with cgroupfs).
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** A control group, as `ports --by cgroup` shows it. */
export interface CgroupInfo {
  /** Its id (the directory's inode number in the cgroup v2 tree); 0: the socket has none (TIME_WAIT, request sockets). */
  readonly id: number;
  /** Its path from the cgroup v2 root (`/system.slice/nginx.service`); null when not found (gone, or no v2 tree mounted). */
  readonly path: string | null;
  /** The systemd unit it is, or is inside (`nginx.service`, `session-3.scope`). */
  readonly unit?: string;
  /** The Kubernetes pod UID it belongs to. */
  readonly pod?: string;
  /** The container id (64 hex digits), as the runtime named the cgroup. */
  readonly container?: string;
}

/**
 * Where the cgroup v2 tree is mounted (`/sys/fs/cgroup`, `/sys/fs/cgroup/unified` beside v1 controllers), or null.
 * FOURTUPLE_CGROUP_ROOT overrides it: in a container with a cgroup namespace, the node's tree bind-mounted
 * from the host (the DaemonSet's /host/sys/fs/cgroup), where every cgroup can be named.
 */
export function cgroup2Mount(mountinfo = '/proc/self/mountinfo'): string | null {
  if (process.env.FOURTUPLE_CGROUP_ROOT) return process.env.FOURTUPLE_CGROUP_ROOT;
  let text: string;
  try {
    text = readFileSync(mountinfo, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    // mount ID, parent ID, major:minor, root, mount point, options, optional fields..., "-", fs type, source, super options
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    if (line.slice(dash + 3).split(' ')[0] !== 'cgroup2') continue;
    return line.slice(0, dash).split(' ')[4].replace(/\\040/g, ' ');
  }
  return null;
}

/** The paths of the cgroups `ids` (relative to the v2 root), found by walking the tree until all are; missing ones are left out. */
export function cgroupPaths(ids: Iterable<number>, root = cgroup2Mount()): Map<number, string> {
  const want = new Set(ids);
  want.delete(0);
  const found = new Map<number, string>();
  if (root === null || want.size === 0) return found;
  const walk = (dir: string, rel: string): void => {
    let ino: number;
    try {
      ino = Number(statSync(dir, { bigint: true }).ino);
    } catch {
      return; // removed meanwhile
    }
    if (want.has(ino)) found.set(ino, rel || '/');
    if (found.size === want.size) return;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      walk(join(dir, e.name), `${rel}/${e.name}`);
      if (found.size === want.size) return;
    }
  };
  walk(root, '');
  return found;
}

const CONTAINER = /^(?:(?:cri-containerd|docker|crio|libpod|containerd)-)?([0-9a-f]{64})(?:\.scope)?$/;
const POD = /(?:^|-)pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$/;

/** What a cgroup path says of its workload: the systemd unit, the Kubernetes pod UID and container id. */
export function describeCgroup(id: number, path: string | null): CgroupInfo {
  if (path === null) return { id, path };
  const parts = path.split('/').filter(Boolean);
  let unit: string | undefined;
  let pod: string | undefined;
  let container: string | undefined;
  for (const p of parts) {
    const c = CONTAINER.exec(p);
    if (c) container = c[1];
    const k = POD.exec(p);
    if (k) pod = k[1].replace(/_/g, '-');
    // The innermost service or scope that is not a container's.
    if (/\.(service|scope)$/.test(p) && !c) unit = p;
  }
  return { id, path, ...(unit ? { unit } : {}), ...(pod ? { pod } : {}), ...(container ? { container } : {}) };
}

/** One short name for a cgroup: pod/container, the unit, or the path. */
export function cgroupLabel(c: CgroupInfo): string {
  if (c.id === 0) return '(no owner: TIME_WAIT)';
  if (c.pod) return `pod ${c.pod}${c.container ? ` container ${c.container.slice(0, 12)}` : ''}`;
  if (c.path === null) return `cgroup ${c.id} (gone)`;
  return c.path;
}

/** A process holding sockets. */
export interface ProcessInfo {
  readonly pid: number;
  /** Its command name (/proc/PID/comm). */
  readonly comm: string;
}

/** What a walk of /proc found: the holder of each socket inode, and what it cost. */
export interface SocketHolders {
  /** Socket inode number → process (the first one found when several share it, after fork). */
  readonly byInode: Map<number, ProcessInfo>;
  readonly processes: number;
  readonly descriptors: number;
  readonly ms: number;
}

/**
 * The processes holding socket inodes `want` (all sockets when omitted):
 * every /proc/PID/fd link is read, which is what makes this costly at scale
 * (one readlink per descriptor of every process). Processes that end
 * meanwhile, or whose descriptors cannot be read (another user's, not
 * root), are passed over.
 */
export function socketHolders(want?: ReadonlySet<number>, proc = '/proc'): SocketHolders {
  const start = performance.now();
  const byInode = new Map<number, ProcessInfo>();
  let processes = 0;
  let descriptors = 0;
  let pids: string[];
  try {
    pids = readdirSync(proc).filter((n) => /^\d+$/.test(n));
  } catch {
    pids = [];
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`${proc}/${pid}/fd`);
    } catch {
      continue;
    }
    processes++;
    let info: ProcessInfo | undefined;
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`${proc}/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      descriptors++;
      if (!link.startsWith('socket:[')) continue;
      const inode = Number(link.slice(8, -1));
      if ((want && !want.has(inode)) || byInode.has(inode)) continue;
      info ??= { pid: Number(pid), comm: readComm(proc, pid) };
      byInode.set(inode, info);
    }
  }
  return { byInode, processes, descriptors, ms: performance.now() - start };
}

function readComm(proc: string, pid: string): string {
  try {
    return readFileSync(`${proc}/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}
