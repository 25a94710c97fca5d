/** `fourtuple k8s load|sink|exporter`: manifests on stdout, ready for `kubectl apply -f -`. */
import { InvalidArgumentError } from '../errors.js';
import { exporterDaemonSet, loadJob, sinkManifests, yamlStream, type ManifestOptions } from '../k8s/manifests.js';
import { parsePortRange } from '../model/nat.js';
import { parseStartAt } from '../engine/shard.js';
import { intOption, parseOptions } from './args.js';

export const K8S_HELP = `Usage: fourtuple k8s load --shards K --to HOST:PORTS [load options...] [--start-in S]
       fourtuple k8s sink [--ports LO-HI] [--replicas N] [--duration S]
       fourtuple k8s exporter [--port P]
       (all: [--image IMAGE] [--namespace NS] [--name NAME])

Prints Kubernetes manifests as YAML, for 'kubectl apply -f -'. No cluster is
needed to print them; fourtuple runs no coordinator of its own:

  load      an Indexed Job of K pods, each 'fourtuple load --shard $(JOB_COMPLETION_INDEX)/K'
            with one --start-at (now + --start-in, default 60 s) so they ramp together; each
            prints its --json report: kubectl logs them into files and 'fourtuple merge' them
  sink      a Deployment of sinks on --ports (default 7000-7009) and the Service in front
  exporter  a DaemonSet of 'fourtuple ports --prometheus 0.0.0.0:P' on every node (host
            network, the BPF iterator's capabilities, read-only root, scrape annotations)

  --image IMAGE    the image built from this package's Dockerfile (default fourtuple:latest)
  --namespace NS   default 'default'
  --name NAME      prefix of the objects' names (default fourtuple)
`;

const OPTIONS = {
  image: { type: 'string' },
  namespace: { type: 'string' },
  name: { type: 'string' },
  shards: { type: 'string' },
  'start-in': { type: 'string' },
  ports: { type: 'string' },
  replicas: { type: 'string' },
  duration: { type: 'string' },
  port: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** A DNS-1123 label, as Kubernetes names and namespaces must be. */
function label(what: string, v: string): string {
  if (!/^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$/.test(v)) throw new InvalidArgumentError(`invalid ${what} '${v}': lower-case letters, digits and '-', at most 52`);
  return v;
}

/** Runs the command; returns the exit code. */
export function runK8s(argv: string[], out: (s: string) => void): number {
  const [kind, ...rest] = argv;
  if (kind === undefined || kind === '--help' || kind === '-h') {
    out(K8S_HELP);
    return kind === undefined ? 2 : 0;
  }
  if (kind !== 'load' && kind !== 'sink' && kind !== 'exporter') throw new InvalidArgumentError(`unknown k8s manifest '${kind}': expected load, sink or exporter`);
  // load passes its own options through to the pods; the manifest's are taken out first.
  const mine: string[] = [];
  const passed: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i].split('=', 1)[0].replace(/^--/, '');
    if (rest[i].startsWith('--') && Object.hasOwn(OPTIONS, flag)) {
      mine.push(rest[i]);
      if (!rest[i].includes('=') && OPTIONS[flag as keyof typeof OPTIONS].type === 'string') mine.push(rest[++i] ?? '');
    } else if (kind === 'load') passed.push(rest[i]);
    else mine.push(rest[i]);
  }
  const { values: v } = parseOptions('k8s', { args: mine, options: OPTIONS });
  if (v.help) {
    out(K8S_HELP);
    return 0;
  }
  const base: ManifestOptions = { image: v.image ?? 'fourtuple:latest', namespace: label('--namespace', v.namespace ?? 'default'), name: label('--name', v.name ?? 'fourtuple') };
  if (kind === 'load') {
    const shards = intOption('--shards', v.shards, 0, 1, 1000);
    if (shards === 0) throw new InvalidArgumentError('k8s load needs --shards K: the number of pods, each one shard');
    if (!passed.includes('--to') && !passed.some((a) => a.startsWith('--to='))) throw new InvalidArgumentError("k8s load needs --to HOST:PORTS: the server (or the sink's Service) to connect to");
    for (const a of passed) if (/^--(shard|start-at|json)(=|$)/.test(a)) throw new InvalidArgumentError(`k8s load sets ${a.split('=')[0]} itself`);
    const startIn = intOption('--start-in', v['start-in'], 60, 0, 86_400);
    const startAt = new Date(parseStartAt(`+${startIn}`)).toISOString().replace(/\.\d{3}Z$/, 'Z');
    out(yamlStream([loadJob({ ...base, shards, args: passed, startAt })]));
    return 0;
  }
  if (kind === 'sink') {
    const ports = parsePortRange(v.ports ?? '7000-7009', '--ports');
    if (ports.hi - ports.lo + 1 > 100) throw new InvalidArgumentError(`--ports ${v.ports}: at most 100 ports in a Service`);
    out(yamlStream(sinkManifests({ ...base, ports, replicas: intOption('--replicas', v.replicas, 1, 1, 1000), durationS: intOption('--duration', v.duration, 86_400, 1, 31_536_000) })));
    return 0;
  }
  out(yamlStream([exporterDaemonSet({ ...base, port: intOption('--port', v.port, 9464, 1, 65535) })]));
  return 0;
}
