/**
 * A sink worker process: accepts from listening sockets it inherited as
 * fds 3.. (shared with the other sink workers, so whoever has room
 * accepts), and holds each connection as a bare descriptor.
 */
import * as ffi from '../kernel/ffi.js';
import type { SinkConfig, ToWorker } from './protocol.js';
import { ignoreGroupSignals, raiseNofile, send } from './worker-common.js';

const REPORT_MS = 100;
const POLL_MS = 20;
const POLLRDHUP = 0x2000;
/** A watching sink checks what it holds this often at least... */
const WATCH_MS = 1000;
/** ...and less often when a check costs more than this share of one core. */
const WATCH_SHARE = 0.01;

class SinkWorker {
  readonly #c: SinkConfig;
  readonly #fds: Int32Array;
  readonly #listen: ffi.PollSet;
  readonly #quota: number;
  #held = 0;
  #lastReport = 0;
  #running = true;
  readonly #errors: Record<string, number> = {};
  #errorCount = 0;
  /** What the last report said: an idle sink (a spare, or the last one while the run holds) sends nothing new. */
  #reported = { held: -1, errors: -1 };

  constructor(config: SinkConfig, quota: number) {
    this.#c = config;
    this.#quota = quota;
    this.#fds = new Int32Array(quota);
    this.#listen = new ffi.PollSet(config.listeners);
    for (let i = 0; i < config.listeners; i++) this.#listen.set(i, 3 + i, ffi.POLLIN);
  }

  start(): void {
    this.#loop();
    if (this.#c.watchHeld) setTimeout(this.#watch, WATCH_MS).unref();
  }

  /** Closes the held connections the peer closed or reset; a full worker that has room again goes back to accepting. */
  #watch = (): void => {
    if (!this.#running) return;
    const started = performance.now();
    const before = this.#held;
    const wasFull = before >= this.#quota;
    const set = new ffi.PollSet(Math.min(Math.max(1, this.#held), 4096));
    let kept = 0;
    for (let base = 0; base < this.#held; base += set.capacity) {
      const n = Math.min(set.capacity, this.#held - base);
      for (let i = 0; i < n; i++) set.set(i, this.#fds[base + i], POLLRDHUP);
      const ready = set.poll(n, 0);
      for (let i = 0; i < n; i++) {
        const fd = this.#fds[base + i];
        if (ready > 0 && set.revents(i)) ffi.close(fd);
        else this.#fds[kept++] = fd;
      }
    }
    this.#held = kept;
    if (kept !== before) this.#report(performance.now(), false);
    if (wasFull && kept < this.#quota) setImmediate(this.#loop);
    const cost = performance.now() - started;
    setTimeout(this.#watch, Math.max(WATCH_MS, cost / WATCH_SHARE)).unref();
  };

  #report(now: number, full: boolean): void {
    this.#lastReport = now;
    this.#reported = { held: this.#held, errors: this.#errorCount };
    send({ type: 'accepted', held: this.#held, full, errors: { ...this.#errors } });
  }

  #loop = (): void => {
    if (!this.#running) return;
    if (this.#held < this.#quota) {
      const n = this.#listen.poll(this.#c.listeners, POLL_MS);
      if (n > 0) {
        for (let i = 0; i < this.#c.listeners && this.#held < this.#quota; i++) {
          if (!this.#listen.revents(i)) continue;
          const lfd = this.#listen.fd(i);
          while (this.#held < this.#quota) {
            const fd = ffi.accept4(lfd);
            if (fd >= 0) {
              this.#fds[this.#held++] = fd;
              continue;
            }
            if (fd !== -ffi.EAGAIN && fd !== -ffi.EINTR) {
              const name = ffi.errnoName(fd);
              this.#errors[name] = (this.#errors[name] ?? 0) + 1;
              this.#errorCount++;
            }
            break;
          }
        }
      }
    }
    const now = performance.now();
    const full = this.#held >= this.#quota;
    const news = this.#held !== this.#reported.held || this.#errorCount !== this.#reported.errors;
    if ((news && now - this.#lastReport >= REPORT_MS) || full) this.#report(now, full);
    // Full: stop polling the listeners for good; the coordinator starts another sink worker.
    if (!full) setImmediate(this.#loop);
  };

  closeAll(): number {
    this.#running = false;
    const n = this.#held;
    for (let i = 0; i < n; i++) ffi.close(this.#fds[i]);
    this.#held = 0;
    return n;
  }
}

let sink: SinkWorker | undefined;
ignoreGroupSignals();

process.on('message', (msg: ToWorker) => {
  if (msg.type === 'start') {
    const config = msg.config as SinkConfig;
    const nofile = raiseNofile();
    sink = new SinkWorker(config, Math.max(0, Math.min(config.quota, nofile.soft - 64 - config.listeners)));
    send({ type: 'ready', pid: process.pid, nofile });
    sink.start();
  } else if (msg.type === 'close') {
    const closed = sink?.closeAll() ?? 0;
    send({ type: 'closed', closed });
    process.disconnect?.();
  }
});
process.on('disconnect', () => {
  sink?.closeAll();
  process.exit(0);
});
