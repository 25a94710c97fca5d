#!/usr/bin/env node
/** The `fourtuple` executable: dispatches to one file per command and maps errors to exit codes. */
import { FourtupleError } from '../errors.js';
import { runLimits } from './limits.js';

const USAGE = `Usage: fourtuple <command> [options]

Is there a hard limit of 65,536 TCP connections? Ask this host.

Commands:
  limits    predict the ceiling from the live kernel: every constraint, the binding one, its remedy
  probe     prove it: open and hold connections against an embedded sink, then report and clean up
  load      the same engine against an existing server (--to)
  sink      the accepting half on its own (--listen), for runs between two hosts
  report    turn a saved 'probe --json' result into a self-contained HTML report
  merge     put the reports of a sharded run (--shard I/K --json) together: sums, exact percentiles
  reuse     one source port, many connections: the 4-tuple experiment, from the kernel's socket table
  ports     source ports in use per destination from the kernel's socket table; --watch, --prometheus
  lab       several hosts and a NAT gateway in network namespaces: up, status, run, down
  k8s       Kubernetes manifests: a sharded load (Indexed Job), a sink, the exporter (DaemonSet)

Run 'fourtuple <command> --help' for a command's options.
`;

type Runner = (argv: string[], out: (s: string) => void) => number | Promise<number>;

const COMMANDS: Record<string, () => Promise<Runner>> = {
  limits: async () => runLimits,
  probe: async () => (await import('./probe.js')).runProbe.bind(null, 'probe'),
  load: async () => (await import('./probe.js')).runProbe.bind(null, 'load'),
  sink: async () => (await import('./sink.js')).runSink,
  report: async () => (await import('./report.js')).runReport,
  merge: async () => (await import('./merge.js')).runMerge,
  reuse: async () => (await import('./reuse.js')).runReuseCommand,
  ports: async () => (await import('./ports.js')).runPorts,
  lab: async () => (await import('./lab.js')).runLab,
  k8s: async () => (await import('./k8s.js')).runK8s,
};

// A closed pipe (| head) is the reader's choice, not a failure: end quietly, as ss | head does. The
// workers of a run see their coordinator gone and close what they hold.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(0);
});

function write(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    // Asked for: stdout, exit 0. No command at all is bad usage: stderr, exit 2.
    if (command === undefined) process.stderr.write(USAGE);
    else write(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version') {
    write('0.1.0');
    return 0;
  }
  const load = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!load) {
    process.stderr.write(`fourtuple: unknown command '${command}': expected one of ${Object.keys(COMMANDS).join(', ')}\n`);
    return 2;
  }
  const run = await load();
  return run(rest, write);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof FourtupleError) {
      process.stderr.write(`fourtuple: ${err.message}\n`);
      process.exitCode = err.exitCode;
    } else {
      process.stderr.write(`fourtuple: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
