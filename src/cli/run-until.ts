/** A run bounded by SIGINT/SIGTERM and an optional duration: what `--watch` and `--prometheus` wait on. */

/** Stops on the first signal or when the duration is over. */
export class RunUntil {
  #stopped = false;
  #why: 'signal' | 'duration' | null = null;
  #wakers = new Set<() => void>();
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #onSignal = (): void => this.stop('signal');

  /** Starts listening for SIGINT/SIGTERM; `durationS` null runs until a signal. */
  constructor(durationS: number | null) {
    process.on('SIGINT', this.#onSignal);
    process.on('SIGTERM', this.#onSignal);
    if (durationS !== null) this.#timer = setTimeout(() => this.stop('duration'), durationS * 1000);
  }

  /** True once a signal came or the duration is over. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** What ended the run, once it has ended. */
  get reason(): 'signal' | 'duration' | null {
    return this.#why;
  }

  /** Ends the run now and wakes every sleeper. */
  stop(why: 'signal' | 'duration'): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#why = why;
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
  }

  /** Resolves after `ms`, or at once when the run stops. */
  sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(t);
        this.#wakers.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      this.#wakers.add(wake);
    });
  }

  /** Resolves when the run stops. */
  done(): Promise<void> {
    return this.#stopped ? Promise.resolve() : new Promise((resolve) => this.#wakers.add(resolve));
  }

  /** Removes the signal handlers and the timer. */
  dispose(): void {
    process.off('SIGINT', this.#onSignal);
    process.off('SIGTERM', this.#onSignal);
    clearTimeout(this.#timer);
  }
}
