/**
 * The differential sweep: each configuration (sweep-config.ts) in a fresh
 * private network namespace, `limits --json` against what `probe` then
 * holds and the constraint it names. Used by test/sweep.test.ts on a fixed
 * seed set and by bench/sweep.sh for a soak:
 *
 *   node dist-test/support/sweep.js [--seeds 1-40] [--soak 1000] [--jobs 2]
 *
 * prints one line per disagreement with the seed and the configuration that
 * reproduces it, and exits 1 when there was one.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { configFor, type SweepConfig } from './sweep-config.js';
import type { SweepOutcome } from './sweep-run.js';

/** One configuration's verdict. */
export interface Verdict {
  readonly seed: number;
  readonly config: SweepConfig;
  readonly predicted: number | null;
  readonly predictedMin: number | null;
  readonly binding: string | null;
  readonly held: number | null;
  readonly limitHit: string | null;
  /** Sockets in TIME_WAIT when the probe started. */
  readonly timeWait: number;
  /** Empty when model and kernel agree. */
  readonly problems: readonly string[];
  readonly ms: number;
}

interface LimitsJson {
  predicted: number | null;
  predictedMin: number | null;
  host: { binding: string | null };
}
interface ProbeJson {
  held: number;
  limit: { id: string | null; errno: string | null } | null;
  stoppedBy: string;
}

/** Runs one configuration in a new namespace. */
export function runConfig(config: SweepConfig, timeoutMs = 90_000): Promise<SweepOutcome> {
  const script = fileURLToPath(new URL('./sweep-run.js', import.meta.url));
  return new Promise((resolve, reject) => {
    // Its own process group: on a timeout the probe it started (and that one's workers) go too.
    const child = spawn('unshare', ['-n', process.execPath, script, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`seed ${config.seed}: sweep-run exited ${code ?? signal}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
      try {
        resolve(JSON.parse(out) as SweepOutcome);
      } catch {
        reject(new Error(`seed ${config.seed}: unreadable output: ${out.slice(0, 200)}`));
      }
    });
  });
}

/** Compares what the model said with what the kernel allowed. */
export function judge(config: SweepConfig, o: SweepOutcome, ms: number): Verdict {
  const problems: string[] = [];
  const lim = o.limits.json as LimitsJson | null;
  const probe = o.probe.json as ProbeJson | null;
  if (o.limits.status !== 0 || !lim) problems.push(`limits exited ${o.limits.status}: ${o.limits.stderr}`);
  if (!probe) problems.push(`probe exited ${o.probe.status} without a report: ${o.probe.stderr}`);
  const predicted = lim?.predicted ?? null;
  const predictedMin = lim?.predictedMin ?? predicted;
  const binding = lim?.host.binding ?? null;
  const held = probe?.held ?? null;
  const limitHit = probe?.limit?.id ?? null;
  if (lim && probe) {
    // Exit 1 is right only when nothing could connect at all.
    if (o.probe.status !== 0 && !(o.probe.status === 1 && held === 0)) problems.push(`probe exited ${o.probe.status}: ${o.probe.stderr}`);
    if (predicted === null) problems.push('the model gave no prediction');
    else if (predicted >= o.target) {
      if (held !== o.target) problems.push(`predicted at least the target ${o.target}, held ${held}${limitHit ? ` (limit hit: ${limitHit})` : ''}`);
    } else {
      const lo = predictedMin ?? predicted;
      if (held === null || held < lo || held > predicted) problems.push(`predicted ${lo === predicted ? predicted : `${lo}–${predicted}`}, held ${held}`);
      if (held !== null && held < o.target && held > 0 && limitHit !== binding) problems.push(`the model names ${binding}, the probe hit ${limitHit}`);
    }
  }
  if (o.churn) problems.push(...judgeChurn(o.churn, predictedMin, predicted));
  return { seed: config.seed, config, predicted, predictedMin, binding, held, limitHit, timeWait: o.timeWait, problems, ms };
}

interface ChurnJson {
  churn: { connected: number; timeWaitLeft: number | null; firstFailure: { atS: number; errno: string } | null };
  model: { exhaustionS: number | null };
}

/**
 * A churn case: before any port comes back (tcp_tw_reuse 0: 60 s), the pools
 * hold exactly what the model says in TIME_WAIT, then EADDRNOTAVAIL, when
 * they are used up. The TIME_WAIT count is the kernel's own: under load a few
 * connections the client saw established leave none (seed 1291 beside two
 * busy loops: 534 connected, 532 in TIME_WAIT, the pool being 532; the cause
 * is not established), and their ports come back at once, so `connected`
 * may exceed the pools by those.
 */
function judgeChurn(c: NonNullable<SweepOutcome['churn']>, lo: number | null, hi: number | null): string[] {
  const j = c.json as ChurnJson | null;
  if (c.status !== 0 || !j) return [`load --churn ${c.rate} exited ${c.status}: ${c.stderr}`];
  if (lo === null || hi === null) return [];
  const out: string[] = [];
  const n = j.churn.connected;
  const tw = j.churn.timeWaitLeft ?? 0;
  if (tw < lo || tw > hi || n < lo) out.push(`load --churn ${c.rate}: the pools hold ${lo === hi ? hi : `${lo}–${hi}`} before a port comes back; ${tw} in TIME_WAIT, ${n} connected`);
  if (j.model.exhaustionS === null) out.push(`load --churn ${c.rate}: the model says the pools never run out`);
  const first = j.churn.firstFailure;
  if (first?.errno !== 'EADDRNOTAVAIL') out.push(`load --churn ${c.rate}: first failure ${first ? first.errno : 'none'}, not EADDRNOTAVAIL`);
  // Paced by the clock: the pools are used up between lo/rate and hi/rate seconds; a busy machine may add some.
  else if (first.atS < lo / c.rate - 0.5 || first.atS > hi / c.rate + 1) out.push(`load --churn ${c.rate}: first failure at ${first.atS.toFixed(2)} s, the pools last ${(lo / c.rate).toFixed(2)}–${(hi / c.rate).toFixed(2)} s`);
  return out;
}

/** Runs `seeds` with `jobs` namespaces at once; calls `onVerdict` as each ends. */
export async function sweep(seeds: readonly number[], jobs: number, onVerdict?: (v: Verdict) => void): Promise<Verdict[]> {
  const verdicts: Verdict[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < seeds.length) {
      const seed = seeds[next++];
      const config = configFor(seed);
      const t0 = performance.now();
      let v: Verdict;
      try {
        v = judge(config, await runConfig(config), performance.now() - t0);
      } catch (err) {
        v = { seed, config, predicted: null, predictedMin: null, binding: null, held: null, limitHit: null, timeWait: 0, problems: [(err as Error).message], ms: performance.now() - t0 };
      }
      verdicts.push(v);
      onVerdict?.(v);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, jobs) }, worker));
  return verdicts.sort((a, b) => a.seed - b.seed);
}

/** One line that reproduces a configuration. */
export function describe(c: SweepConfig): string {
  const parts = [
    `range ${c.range[0]}-${c.range[1]}`,
    c.reserved ? `reserved ${c.reserved}` : '',
    `unpriv ${c.unprivilegedPortStart}`,
    `autobind_reuse ${c.autobindReuse}`,
    c.reuseAddr ? '' : 'no SO_REUSEADDR',
    `tw_reuse ${c.twReuse}`,
    c.timeWait ? `${c.timeWait} TIME_WAIT` : '',
    c.churn ? 'then load --churn' : '',
    c.listeners.length ? `listeners ${c.listeners.map((l) => `${l.address}:${l.port}`).join(',')}` : '',
    `--strategy ${c.strategy}`,
    ...c.destinations.map((d) => `--to ${d}`),
    ...c.sources.map((s) => `--from ${s}`),
    `as ${c.who}`,
  ];
  return parts.filter((p) => p !== '').join(', ');
}

function parseSeeds(s: string): number[] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s);
  if (!m) throw new Error(`--seeds: expected A or A-B, got '${s}'`);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

async function main(argv: string[]): Promise<number> {
  let seeds = parseSeeds('1-40');
  let jobs = 2;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--seeds') seeds = parseSeeds(argv[++i]);
    else if (argv[i] === '--soak') seeds = parseSeeds(`1000-${999 + Number(argv[++i])}`);
    else if (argv[i] === '--jobs') jobs = Number(argv[++i]);
    else throw new Error(`unknown argument '${argv[i]}'`);
  }
  const t0 = performance.now();
  let done = 0;
  const verdicts = await sweep(seeds, jobs, (v) => {
    done++;
    if (v.problems.length) process.stdout.write(`seed ${v.seed}: ${v.problems.join('; ')}\n  ${describe(v.config)}${v.timeWait ? `; ${v.timeWait} in TIME_WAIT at the start` : ''}\n`);
    if (process.stderr.isTTY) process.stderr.write(`\r${done}/${seeds.length}`);
  });
  const bad = verdicts.filter((v) => v.problems.length > 0);
  process.stdout.write(`${verdicts.length} configurations in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${verdicts.length - bad.length} agree, ${bad.length} disagree\n`);
  return bad.length ? 1 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${(err as Error).message}\n`);
      process.exit(2);
    },
  );
}
