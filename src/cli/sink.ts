/** `fourtuple sink`: the accepting half of probe on its own, for runs between two hosts. */
import { readKernelFacts } from '../kernel/facts.js';
import { TCP_LISTEN, TCP_TIME_WAIT } from '../kernel/linux.js';
import { scanProcNetTcp } from '../kernel/proc-net-tcp.js';
import { InvalidArgumentError } from '../errors.js';
import { closeListeners, fmtTarget, ListenError, openListener, type Listener } from '../engine/listeners.js';
import { parseShard, runIdOf, shardItems, shardShare, type Shard } from '../engine/shard.js';
import { SinkPool } from '../engine/sink-pool.js';
import { num } from '../report/format.js';
import { endpointsOption, expandEndpoints, intOption, numberOption, parseOptions } from './args.js';

/** Usage text. */
export const SINK_HELP = `Usage: fourtuple sink --listen ADDR:PORTS [...] [--duration S] [--max N] [--backlog B] [--close rst|fin] [--json]

Accepts and holds TCP connections on the given addresses and ports, in as
many processes as the open-files limit requires, until the time bound or
SIGINT/SIGTERM; then closes them all and reports. Pair it with
'fourtuple load --to ...' on another host.

  --listen ADDR:PORTS  where to listen: 0.0.0.0:7000-7009, 127.0.0.1:7000, [::]:7000 (repeatable)
  --duration S         stop after S seconds (default 600)
  --max N              accept at most N connections (default 1,000,000); past N the sink stops
                       accepting, its listen queues fill, and then new SYNs are dropped: a
                       server at its capacity, as clients see it (they time out)
  --backlog B          listen() backlog of each socket (default net.core.somaxconn, which also caps it)
  --close rst|fin      how to close at the end (default rst: no TIME_WAIT on either side)
  --shard I/K          shard I of K sinks started from one command line: every K-th --listen pair
                       (all of them when there are fewer) and its share of --max; the report is tagged
  --json               print one JSON object at the end
`;

const OPTIONS = {
  listen: { type: 'string', multiple: true },
  shard: { type: 'string' },
  'run-id': { type: 'string' },
  duration: { type: 'string' },
  max: { type: 'string' },
  backlog: { type: 'string' },
  close: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Parsed options. */
export interface SinkArgs {
  readonly help: boolean;
  readonly json: boolean;
  readonly listen: { address: string; port: number }[];
  readonly durationS: number;
  readonly max: number;
  /** listen() backlog; undefined: somaxconn. */
  readonly backlog: number | undefined;
  readonly close: 'rst' | 'fin';
  /** One shard of a run (--shard I/K): its share of the listen addresses and of --max, and the tag for merge. */
  readonly shard?: Shard;
}

/** Parses argv without running anything. */
export function parseSinkArgs(argv: string[]): SinkArgs {
  const { values: v } = parseOptions('sink', { args: argv, options: OPTIONS });
  const close = v.close ?? 'rst';
  if (close !== 'rst' && close !== 'fin') throw new InvalidArgumentError(`invalid --close '${close}': expected rst or fin`);
  const all = expandEndpoints(endpointsOption(v.listen), 4096, '--listen');
  if (all.length === 0 && !v.help) throw new InvalidArgumentError("'sink' needs --listen ADDR:PORTS: where to accept connections");
  const max = intOption('--max', v.max, 1_000_000, 1, 10_000_000);
  // A shard listens on its share of the (address, port) pairs (all of them when there are fewer than K) and holds its share of --max.
  let shard: Shard | undefined;
  if (v.shard !== undefined) {
    const { index, count } = parseShard(v.shard);
    shard = { index, count, runId: v['run-id'] ?? runIdOf(['sink', ...argv]) };
  } else if (v['run-id'] !== undefined) throw new InvalidArgumentError('--run-id goes with --shard I/K');
  return {
    help: v.help ?? false,
    json: v.json ?? false,
    listen: shard ? shardItems(all, shard.index, shard.count) : all,
    durationS: numberOption('--duration', v.duration, 600, 0.1, 86_400),
    max: shard ? Math.max(1, shardShare(max, shard.index, shard.count)) : max,
    shard,
    backlog: v.backlog === undefined ? undefined : intOption('--backlog', v.backlog, 0, 1, 65_535),
    close,
  };
}

/** Runs the sink until its time bound or a signal; returns the exit code. */
export async function runSink(argv: string[], out: (s: string) => void): Promise<number> {
  const args = parseSinkArgs(argv);
  if (args.help) {
    out(SINK_HELP);
    return 0;
  }
  const facts = readKernelFacts();
  const somaxconn = facts.somaxconn.known ? facts.somaxconn.value : 4096;
  const backlog = args.backlog === undefined ? somaxconn : Math.min(args.backlog, somaxconn);
  const listeners: Listener[] = [];
  for (const t of args.listen) {
    const l = openListener(t, backlog, args.close === 'rst');
    if (l instanceof ListenError) {
      closeListeners(listeners);
      throw new InvalidArgumentError(`cannot listen on ${fmtTarget(t)} in --listen: ${l.errno}`);
    }
    listeners.push(l);
  }
  const names = listeners.map(fmtTarget);
  // A server outlives its clients: it closes what they closed, and --max caps what it holds at once.
  const pool = new SinkPool({ listeners, capacity: args.max, close: args.close, limit: args.max, watchHeld: true });
  const started = performance.now();
  const tty = process.stderr.isTTY && !args.json;
  let died = 0;
  pool.on('died', () => died++);
  try {
    await pool.start();
    if (!args.json) process.stderr.write(`fourtuple sink: listening on ${names.join(', ')} for ${args.durationS} s; Ctrl-C stops\n`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, args.durationS * 1000);
      const stop = (): void => {
        clearTimeout(timer);
        resolve();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      if (tty) {
        const tick = setInterval(() => process.stderr.write(`\r\x1b[Kholding ${num(pool.held)} (peak ${num(pool.peak)})  ${((performance.now() - started) / 1000).toFixed(0)} s`), 250);
        const clear = (): void => clearInterval(tick);
        timer.unref();
        process.once('SIGINT', clear);
        process.once('SIGTERM', clear);
        setTimeout(clear, args.durationS * 1000).unref();
      }
    });
    if (tty) process.stderr.write('\r\x1b[K');
    const peak = pool.peak;
    const errors = pool.errors;
    await pool.close(1500);
    closeListeners(listeners);
    const keys = new Set(args.listen.map((t) => `${t.address}|${t.port}`));
    let left = 0;
    scanProcNetTcp('/', (r) => {
      if (r.state !== TCP_LISTEN && r.state !== TCP_TIME_WAIT && keys.has(`${r.localAddress}|${r.localPort}`)) left++;
    });
    const result = { run: args.shard ? { id: args.shard.runId, shard: args.shard.index, shards: args.shard.count } : null, listen: names, peak, durationMs: Math.round(performance.now() - started), errors, workers: pool.workers.length, died, cleanup: { left } };
    out(args.json ? JSON.stringify(result, null, 2) : `Held at most ${num(peak)} connections on ${names.join(', ')} over ${(result.durationMs / 1000).toFixed(1)} s, in ${pool.workers.length} processes${died ? ` (${died} died)` : ''}; ${left === 0 ? 'all closed' : `${num(left)} still open`}.`);
    return 0;
  } finally {
    await pool.close(1500);
    closeListeners(listeners);
  }
}
