/**
 * Kubernetes manifests for running fourtuple on a cluster, built as plain
 * objects (the API's own field names) and printed as YAML: a sharded `load`
 * as an Indexed Job (no coordinator of our own: the Job's completion index is
 * the shard), a `sink` Deployment with its Service, and the `ports`
 * exporter as a DaemonSet on every node. Pure.
 */

/** What every manifest is given. */
export interface ManifestOptions {
  readonly image: string;
  readonly namespace: string;
  /** Prefix of every object's name. */
  readonly name: string;
}

/** A Kubernetes object, as the API takes it. */
export type K8sObject = Record<string, unknown> & { apiVersion: string; kind: string };

const LABEL = 'app.kubernetes.io/name';

function meta(o: ManifestOptions, suffix: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: `${o.name}-${suffix}`, namespace: o.namespace, labels: { [LABEL]: `${o.name}-${suffix}`, 'app.kubernetes.io/part-of': 'fourtuple' }, ...extra };
}

/** Requests and limits for a container: small by default, as these processes are. */
function resources(cpu: string, memory: string, memoryLimit: string): Record<string, unknown> {
  return { requests: { cpu, memory }, limits: { memory: memoryLimit } };
}

/** Options of the sharded load Job. */
export interface LoadJobOptions extends ManifestOptions {
  readonly shards: number;
  /** The load's own arguments (--to, --connections, --duration, ...), without --shard and --start-at. */
  readonly args: readonly string[];
  /** Seconds after the Job's creation at which every shard starts its ramp (--start-at), so they ramp together. */
  readonly startAt: string;
}

/**
 * An Indexed Job: K pods, each `fourtuple load --shard $(JOB_COMPLETION_INDEX)/K`
 * with one --start-at, printing its report (kubectl logs), to be put
 * together with `fourtuple merge`.
 */
export function loadJob(o: LoadJobOptions): K8sObject {
  const args = ['load', ...o.args, '--shard', `$(JOB_COMPLETION_INDEX)/${o.shards}`, '--start-at', o.startAt, '--json'];
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: meta(o, 'load'),
    spec: {
      completionMode: 'Indexed',
      completions: o.shards,
      parallelism: o.shards,
      backoffLimit: 0,
      template: {
        metadata: { labels: { [LABEL]: `${o.name}-load` } },
        spec: {
          restartPolicy: 'Never',
          // One shard per node: each brings its own 4-tuple space.
          topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: { [LABEL]: `${o.name}-load` } } }],
          containers: [
            {
              name: 'load',
              image: o.image,
              args,
              securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false },
              resources: resources('500m', '256Mi', '1Gi'),
            },
          ],
        },
      },
    },
  };
}

/** Options of the sink. */
export interface SinkOptions extends ManifestOptions {
  /** Ports to listen on, LO-HI. */
  readonly ports: { readonly lo: number; readonly hi: number };
  readonly replicas: number;
  readonly durationS: number;
}

/** A Deployment of sinks listening on every address of their pods, and the Service the shards connect to. */
export function sinkManifests(o: SinkOptions): K8sObject[] {
  const ports = Array.from({ length: o.ports.hi - o.ports.lo + 1 }, (_, i) => o.ports.lo + i);
  const selector = { [LABEL]: `${o.name}-sink` };
  return [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: meta(o, 'sink'),
      spec: {
        replicas: o.replicas,
        selector: { matchLabels: selector },
        template: {
          metadata: { labels: selector },
          spec: {
            containers: [
              {
                name: 'sink',
                image: o.image,
                args: ['sink', '--listen', `0.0.0.0:${o.ports.lo}-${o.ports.hi}`, '--duration', String(o.durationS)],
                ports: ports.map((p) => ({ containerPort: p, protocol: 'TCP' })),
                securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false },
                resources: resources('1', '512Mi', '4Gi'),
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(o, 'sink'),
      spec: { selector, ports: ports.map((p) => ({ name: `tcp-${p}`, port: p, targetPort: p, protocol: 'TCP' })) },
    },
  ];
}

/** Options of the exporter. */
export interface ExporterOptions extends ManifestOptions {
  readonly port: number;
}

/**
 * The `ports` exporter on every node: the host's network namespace (the
 * node's sockets, not the pod's), the capabilities the BPF socket iterator
 * needs (without them it falls back to sock_diag), the node's cgroup tree
 * (read-only) to name who holds the ports, a read-only root, and the
 * annotations Prometheus's kubernetes_sd scrape configs look for.
 */
export function exporterDaemonSet(o: ExporterOptions): K8sObject {
  const selector = { [LABEL]: `${o.name}-exporter` };
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: meta(o, 'exporter'),
    spec: {
      selector: { matchLabels: selector },
      template: {
        metadata: {
          labels: selector,
          annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(o.port), 'prometheus.io/path': '/metrics' },
        },
        spec: {
          hostNetwork: true,
          dnsPolicy: 'ClusterFirstWithHostNet',
          tolerations: [{ operator: 'Exists' }],
          containers: [
            {
              name: 'exporter',
              image: o.image,
              // --by cgroup names who holds the ports from the node's cgroup tree, mounted read-only below.
              args: ['ports', '--prometheus', `0.0.0.0:${o.port}`, '--by', 'cgroup'],
              env: [{ name: 'FOURTUPLE_CGROUP_ROOT', value: '/host/sys/fs/cgroup' }],
              volumeMounts: [{ name: 'cgroup', mountPath: '/host/sys/fs/cgroup', readOnly: true }],
              ports: [{ name: 'metrics', containerPort: o.port, hostPort: o.port, protocol: 'TCP' }],
              securityContext: {
                readOnlyRootFilesystem: true,
                allowPrivilegeEscalation: false,
                capabilities: { drop: ['ALL'], add: ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_RESOURCE'] },
              },
              readinessProbe: { httpGet: { path: '/metrics', port: o.port }, periodSeconds: 30, timeoutSeconds: 10 },
              resources: resources('50m', '64Mi', '512Mi'),
            },
          ],
          volumes: [{ name: 'cgroup', hostPath: { path: '/sys/fs/cgroup', type: 'Directory' } }],
        },
      },
    },
  };
}

/** A YAML scalar: strings double-quoted as JSON writes them (valid YAML), the rest as they are. */
function scalar(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** YAML for plain objects, arrays and scalars (what manifests hold). */
export function toYaml(value: unknown, indent = 0): string {
  const pad = ' '.repeat(indent);
  if (Array.isArray(value)) {
    if (value.length === 0) return `${pad}[]\n`;
    return value
      .map((item) => {
        if (item !== null && typeof item === 'object' && (Array.isArray(item) ? item.length : Object.keys(item).length)) {
          const inner = toYaml(item, indent + 2);
          return `${pad}- ${inner.slice(indent + 2)}`;
        }
        return `${pad}- ${item !== null && typeof item === 'object' ? (Array.isArray(item) ? '[]' : '{}') : scalar(item)}\n`;
      })
      .join('');
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    if (entries.length === 0) return `${pad}{}\n`;
    return entries
      .map(([k, v]) => {
        const key = /^[A-Za-z0-9_.\/-]+$/.test(k) ? k : JSON.stringify(k);
        if (v !== null && typeof v === 'object' && (Array.isArray(v) ? v.length : Object.keys(v).length)) return `${pad}${key}:\n${toYaml(v, indent + 2)}`;
        return `${pad}${key}: ${v !== null && typeof v === 'object' ? (Array.isArray(v) ? '[]' : '{}') : scalar(v)}\n`;
      })
      .join('');
  }
  return `${pad}${scalar(value)}\n`;
}

/** Several objects as one YAML stream, `---` between them. */
export function yamlStream(objects: readonly K8sObject[]): string {
  return objects.map((o) => toYaml(o)).join('---\n');
}
