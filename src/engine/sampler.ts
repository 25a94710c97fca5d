/**
 * The run's measurements over time: the timeline (every 250 ms), the rates
 * of the ramp, the peak and when it came, memory (kernel each sample, user
 * space spaced by its cost, MemAvailable) and what other programs cost.
 */
import type { Totals } from './aggregate.js';
import { median } from './aggregate.js';
import { kernelSocketBytes, memAvailableBytes, pssBytes } from './memory.js';
import { cpuSnapshot, othersCpu, procEntryBytes, type CpuSnapshot, type OthersCpu } from './others.js';

/** One point of the run's time series. */
export interface Sample {
  /** Milliseconds since the ramp started. */
  readonly t: number;
  readonly held: number;
  /** Connections per second over the last interval. */
  readonly rate: number;
  /** Failed attempts so far, all errnos. */
  readonly errors: number;
  /** Failed attempts so far, per errno. */
  readonly errorsBy: Readonly<Record<string, number>>;
  /** Kernel memory grown since the start (slab + TCP pages). */
  readonly kernelBytes: number;
  /** User-space memory (PSS) of every process of the run; sampled every 2 s, null between. */
  readonly userBytes: number | null;
}

/** How often the timeline gets a point. */
export const SAMPLE_MS = 250;
/** How often user-space memory (PSS of every process) is sampled, at the most. */
const USER_SAMPLE_MS = 2000;
/** Reading smaps_rollup walks page tables: rounds are spaced to keep them under 2% of the coordinator's time. */
const USER_SAMPLE_COST_SHARE = 0.02;

/** Memory at the peak. */
export interface PeakMemory {
  readonly userBytes: number;
  readonly kernelBytes: number;
  /** How much MemAvailable fell from the start to the peak: all the run cost the host. Null where unreadable. */
  readonly availableDropBytes: number | null;
}

/** Collects the run's measurements; the coordinator calls it, it reads /proc. */
export class Sampler {
  readonly timeline: Sample[] = [];
  readonly rates: number[] = [];
  #rampStart = 0;
  #lastAt = 0;
  #lastHeld = 0;
  #lastGrowthAt = 0;
  #peak = 0;
  #peakAt = 0;
  #lastUser = 0;
  #userEvery = USER_SAMPLE_MS;
  #kernelBefore = 0;
  #availableBefore: number | null = null;
  #procEntriesBefore: number | null = null;
  #cpuAtRamp: CpuSnapshot | null = null;
  memory: PeakMemory = { userBytes: 0, kernelBytes: 0, availableDropBytes: null };
  others: { cpu: OthersCpu | null; procEntryBytes: number | null } = { cpu: null, procEntryBytes: null };

  /** Reads the baselines, before anything of the run is open. */
  baseline(): void {
    this.#kernelBefore = kernelSocketBytes();
    this.#availableBefore = memAvailableBytes();
    this.#procEntriesBefore = procEntryBytes();
  }

  /** The ramp starts now. */
  begin(now: number): void {
    this.#rampStart = now;
    this.#lastAt = now;
    this.#lastGrowthAt = now;
    this.#cpuAtRamp = cpuSnapshot();
    this.timeline.push({ t: 0, held: 0, rate: 0, errors: 0, errorsBy: {}, kernelBytes: 0, userBytes: null });
  }

  get rampStart(): number {
    return this.#rampStart;
  }

  /** The most held at once so far, and when. */
  get peak(): number {
    return this.#peak;
  }

  get peakAt(): number {
    return this.#peakAt;
  }

  /** When the held count last grew. */
  get lastGrowthAt(): number {
    return this.#lastGrowthAt;
  }

  /** One point of the timeline; `ramping` says whether its rate counts in the ramp's median. Returns the rate and error count. */
  sample(now: number, t: Totals, ramping: boolean, pids: () => number[]): { rate: number; errors: number } {
    const dt = (now - this.#lastAt) / 1000;
    const rate = dt > 0 ? (t.held - this.#lastHeld) / dt : 0;
    if (t.held > this.#lastHeld) this.#lastGrowthAt = now;
    if (ramping && t.held > this.#lastHeld) this.rates.push(rate);
    const errors = errorCount(t);
    let userBytes: number | null = null;
    if (now - this.#lastUser >= this.#userEvery) {
      this.#lastUser = now;
      userBytes = userBytesOf(pids());
      const cost = performance.now() - now;
      this.#userEvery = Math.max(USER_SAMPLE_MS, cost / USER_SAMPLE_COST_SHARE);
    }
    const kernelBytes = Math.max(0, kernelSocketBytes() - this.#kernelBefore);
    this.timeline.push({ t: Math.round(now - this.#rampStart), held: t.held, rate: Math.round(rate), errors, errorsBy: t.errors, kernelBytes, userBytes });
    this.#lastHeld = t.held;
    this.#lastAt = now;
    // After the ramp the peak is the kernel's count (measurePeak), not a sample's.
    if (ramping && t.held > this.#peak) {
      this.#peak = t.held;
      this.#peakAt = now;
    }
    return { rate, errors };
  }

  /**
   * Records the peak once every client has counted what it holds: samples
   * during the ramp may have counted connections already reset, unseen
   * until the clients polled them all, so what is held now is the count.
   * Then memory at the peak and what other programs took.
   */
  measurePeak(now: number, t: Totals, counted: boolean, pids: number[], rampEndedAt = now): void {
    // The peak came when the ramp ended, or at the sample that first saw it: not when it was counted.
    if (t.held > this.#peak) {
      this.#peak = t.held;
      this.#peakAt = Math.min(now, rampEndedAt || now);
    } else if (t.held < this.#peak && counted) {
      this.#peak = t.held;
    }
    if (this.#peakAt === 0) this.#peakAt = Math.min(now, rampEndedAt || now);
    const available = memAvailableBytes();
    this.memory = {
      userBytes: userBytesOf(pids),
      kernelBytes: Math.max(0, kernelSocketBytes() - this.#kernelBefore),
      availableDropBytes: available !== null && this.#availableBefore !== null ? Math.max(0, this.#availableBefore - available) : null,
    };
    const cpuNow = cpuSnapshot();
    const cpu = this.#cpuAtRamp && cpuNow ? othersCpu(this.#cpuAtRamp, cpuNow, new Set(pids)) : null;
    const entries = procEntryBytes();
    this.others = { cpu, procEntryBytes: entries !== null && this.#procEntriesBefore !== null ? Math.max(0, entries - this.#procEntriesBefore) : null };
    this.#closeTimeline(now, t);
  }

  /**
   * The timeline's last ramp point, at the peak: a ramp shorter than one
   * sampling period (or ending between two) still shows where it ended and
   * the errors that ended it. Not counted in the rate's median.
   */
  #closeTimeline(now: number, t: Totals): void {
    const last = this.timeline[this.timeline.length - 1];
    const at = Math.max(last?.t ?? 0, Math.round((this.#peakAt || now) - this.#rampStart));
    if (last && last.held === t.held && at - last.t < SAMPLE_MS) return;
    const dt = (now - this.#lastAt) / 1000;
    const rate = dt > 0 ? Math.max(0, (t.held - this.#lastHeld) / dt) : 0;
    this.timeline.push({ t: at, held: t.held, rate: Math.round(rate), errors: errorCount(t), errorsBy: t.errors, kernelBytes: this.memory.kernelBytes, userBytes: this.memory.userBytes });
    this.#lastHeld = t.held;
    this.#lastAt = now;
  }

  /** Median and peak over the ramp's samples; a ramp shorter than one sample gets its average for both. */
  rateSummary(held: number, now: number): { median: number | null; peak: number | null; samples: number[] } {
    const rampS = ((this.#peakAt || now) - this.#rampStart) / 1000;
    if (this.rates.length < 2) {
      const avg = rampS > 0 && held > 0 ? Math.round(held / rampS) : null;
      return { median: avg, peak: avg, samples: this.rates.map(Math.round) };
    }
    const m = median(this.rates);
    return { median: m === null ? null : Math.round(m), peak: Math.round(Math.max(...this.rates)), samples: this.rates.map(Math.round) };
  }
}

function errorCount(t: Totals): number {
  let n = 0;
  for (const v of Object.values(t.errors)) n += v;
  return n;
}

/** PSS summed over the run's processes. */
function userBytesOf(pids: readonly number[]): number {
  let n = 0;
  for (const pid of pids) n += pssBytes(pid);
  return n;
}
