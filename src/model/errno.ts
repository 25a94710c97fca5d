/**
 * The one place that says which limit an errno means when a connect fails,
 * shared by the engine (to decide whether to stop) and the reports.
 */
import type { ConstraintId } from './limits.js';
import { type Strategy, strategySpec } from './strategy.js';

/** What a failed attempt means. */
export interface ErrnoMeaning {
  /** The constraint it reveals; null for failures that say nothing about a ceiling. */
  readonly constraint: ConstraintId | null;
  /** `pool`: one source/destination pool is full, others may go on; `stop`: progress stops; `transient`: retry. */
  readonly effect: 'pool' | 'stop' | 'transient';
  /**
   * A hard answer from the destination or the network (refused, unreachable,
   * reset at connect): retrying at once would only storm it, so the engine
   * backs off from that destination.
   */
  readonly backoff: boolean;
  readonly words: string;
}

/** Meaning of `errno` (a name such as 'EADDRNOTAVAIL') under `strategy`. */
export function errnoMeaning(errno: string, strategy: Strategy): ErrnoMeaning {
  const spec = strategySpec(strategy);
  const own = spec.portPickedBy === 'program';
  switch (errno) {
    case 'EADDRNOTAVAIL':
      return {
        constraint: spec.constraint,
        effect: 'pool', backoff: false,
        words: 'no source port left for that (source, destination) 4-tuple',
      };
    case 'EADDRINUSE':
      return {
        constraint: own ? 'explicit-ports' : 'bind-pool',
        effect: 'pool', backoff: false,
        words: own ? 'the chosen source port is taken' : 'bind(address, 0) found no free port in the shared pool',
      };
    case 'EMFILE':
      return { constraint: 'fd-process', effect: 'stop', backoff: false, words: "the process's open-files limit (RLIMIT_NOFILE)" };
    case 'ENFILE':
      return { constraint: 'fd-host', effect: 'stop', backoff: false, words: 'the system-wide file table (fs.file-max)' };
    case 'ENOBUFS':
    case 'ENOMEM':
      return { constraint: 'memory', effect: 'stop', backoff: false, words: 'the kernel could not allocate socket memory' };
    case 'ETIMEDOUT':
      return { constraint: 'backlog', effect: 'transient', backoff: false, words: 'no answer to the SYN: the accepting side dropped it (full backlog?) or conntrack did' };
    case 'ECONNREFUSED':
      return { constraint: 'backlog', effect: 'transient', backoff: true, words: 'refused: nothing listens there, or the listener is gone' };
    case 'ECONNRESET':
      return { constraint: 'backlog', effect: 'transient', backoff: true, words: 'reset by the accepting side' };
    case 'ENETUNREACH':
      return { constraint: null, effect: 'transient', backoff: true, words: 'no route to that network from here' };
    case 'EHOSTUNREACH':
      return { constraint: null, effect: 'transient', backoff: true, words: 'the destination host is unreachable' };
    default:
      return { constraint: null, effect: 'transient', backoff: false, words: 'unexpected error' };
  }
}
