/**
 * The one place that says which limit an errno means when a connect fails,
 * shared by the engine (to decide whether to stop) and the reports.
 */
import type { ConstraintId } from './limits.js';
import type { Strategy } from './strategy.js';

/** What a failed attempt means. */
export interface ErrnoMeaning {
  /** The constraint it reveals; null for failures that say nothing about a ceiling. */
  readonly constraint: ConstraintId | null;
  /** `pool`: one source/destination pool is full, others may go on; `stop`: progress stops; `transient`: retry. */
  readonly effect: 'pool' | 'stop' | 'transient';
  readonly words: string;
}

/** Meaning of `errno` (a name such as 'EADDRNOTAVAIL') under `strategy`. */
export function errnoMeaning(errno: string, strategy: Strategy): ErrnoMeaning {
  switch (errno) {
    case 'EADDRNOTAVAIL':
      return {
        constraint: strategy === 'explicit' ? 'explicit-ports' : strategy === 'bind' ? 'bind-pool' : 'ephemeral-ports',
        effect: 'pool',
        words: 'no source port left for that (source, destination) 4-tuple',
      };
    case 'EADDRINUSE':
      return {
        constraint: strategy === 'explicit' ? 'explicit-ports' : 'bind-pool',
        effect: 'pool',
        words: strategy === 'explicit' ? 'the chosen source port is taken' : 'bind(address, 0) found no free port in the shared pool',
      };
    case 'EMFILE':
      return { constraint: 'fd-process', effect: 'stop', words: "the process's open-files limit (RLIMIT_NOFILE)" };
    case 'ENFILE':
      return { constraint: 'fd-host', effect: 'stop', words: 'the system-wide file table (fs.file-max)' };
    case 'ENOBUFS':
    case 'ENOMEM':
      return { constraint: 'memory', effect: 'stop', words: 'the kernel could not allocate socket memory' };
    case 'ETIMEDOUT':
      return { constraint: 'backlog', effect: 'transient', words: 'no answer to the SYN: the accepting side dropped it (full backlog?) or conntrack did' };
    case 'ECONNREFUSED':
      return { constraint: 'backlog', effect: 'transient', words: 'refused: nothing listens there, or the listener is gone' };
    case 'ECONNRESET':
      return { constraint: 'backlog', effect: 'transient', words: 'reset by the accepting side' };
    default:
      return { constraint: null, effect: 'transient', words: 'unexpected error' };
  }
}
