/** Spawning and tracking worker processes (one per open-files limit's worth of connections). */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FromWorker, ToWorker } from './protocol.js';

/** Keeps each worker's V8 heap small: it holds typed arrays, not objects. */
const WORKER_EXEC_ARGV = ['--max-semi-space-size=1', '--max-old-space-size=96'];

/** A worker process as the coordinator sees it. */
export interface WorkerHandle {
  readonly kind: 'client' | 'sink';
  readonly index: number;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Set once the process has exited: its exit code or signal. */
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  send(msg: ToWorker): void;
}

/** Starts a worker; listener fds are handed over as the child's fds 3, 4, ... */
export function spawnWorker(kind: 'client' | 'sink', index: number, onMessage: (w: WorkerHandle, m: FromWorker) => void, onExit: (w: WorkerHandle) => void, listenerFds: readonly number[] = []): WorkerHandle {
  const file = fileURLToPath(new URL(kind === 'client' ? './client-worker.js' : './sink-worker.js', import.meta.url));
  const child = fork(file, [], {
    stdio: ['ignore', 'inherit', 'inherit', ...listenerFds, 'ipc'],
    execArgv: WORKER_EXEC_ARGV,
    serialization: 'advanced',
  });
  const handle: WorkerHandle = {
    kind,
    index,
    child,
    pid: child.pid ?? -1,
    send(msg: ToWorker): void {
      if (!child.connected) return;
      // The channel can close between the check and the write (a worker dying of a signal): its 'exit' tells the rest.
      try {
        child.send(msg, (err) => void err);
      } catch {
        // as above
      }
    },
  };
  child.on('message', (m: FromWorker) => onMessage(handle, m));
  child.on('exit', (code, signal) => {
    handle.exit = { code, signal };
    onExit(handle);
  });
  child.on('error', () => {
    // 'exit' follows and carries the news.
  });
  return handle;
}

/** Resolves when every worker has exited, SIGKILLing those still alive after `graceMs`. */
export async function reap(workers: Iterable<WorkerHandle>, graceMs: number): Promise<void> {
  const alive = [...workers].filter((w) => !w.exit);
  if (alive.length === 0) return;
  const exited = Promise.all(alive.map((w) => new Promise<void>((res) => (w.exit ? res() : w.child.once('exit', () => res())))));
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((res) => {
    timer = setTimeout(() => {
      for (const w of alive) if (!w.exit) w.child.kill('SIGKILL');
      res();
    }, graceMs);
  });
  await Promise.race([exited, late]);
  clearTimeout(timer);
  await exited;
}
