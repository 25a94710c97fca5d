/**
 * Every error fourtuple raises on purpose, each with a stable `code`.
 * The table in docs/errors.md lists them; keep the two in step.
 */

/** Base class: a failure fourtuple knows how to describe in one line. */
export class FourtupleError extends Error {
  /** Stable, documented identifier; never changes between releases. */
  readonly code: string;
  /** Process exit code the CLI uses for this failure. */
  readonly exitCode: number;

  constructor(message: string, code: string, exitCode = 1) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** Bad input: a malformed address, port, range, option or flag (exit 2). */
export class InvalidArgumentError extends FourtupleError {
  constructor(message: string) {
    super(message, 'FT_INVALID_ARGUMENT', 2);
  }
}

/** A raw syscall path is needed but koffi or libc cannot be loaded (or FOURTUPLE_NO_FFI=1). */
export class FfiUnavailableError extends FourtupleError {
  constructor(reason: string) {
    super(`native syscalls unavailable: ${reason}`, 'FT_FFI_UNAVAILABLE', 1);
  }
}

/** A worker or sink process ended or failed in a way the run could not absorb. */
export class EngineError extends FourtupleError {
  constructor(message: string) {
    super(message, 'FT_ENGINE', 1);
  }
}

/** The host lacks something a command needs (a namespace tool, root, a kernel feature). */
export class UnsupportedError extends FourtupleError {
  constructor(message: string) {
    super(message, 'FT_UNSUPPORTED', 1);
  }
}

/**
 * Every source address given to the library's `connect` has no source port
 * left for one destination (each (source, destination) pool is full).
 */
export class PoolExhaustedError extends FourtupleError {
  /** The destination, `address:port` (`[v6]:port`). */
  readonly destination: string;
  /** The source addresses that were tried, all full for it. */
  readonly sources: readonly string[];

  constructor(destination: string, sources: readonly string[], strategy: string) {
    const shown = sources.length <= 8 ? sources.join(', ') : `${sources.slice(0, 8).join(', ')} and ${sources.length - 8} more`;
    super(
      `no source port left for ${destination}: every (source, destination) pool is full with strategy ${strategy}, for all ${sources.length} source address${sources.length === 1 ? '' : 'es'} (${shown}); close connections to it, or add source addresses`,
      'FT_POOL_EXHAUSTED',
      1,
    );
    this.destination = destination;
    this.sources = sources;
  }
}

/** A connection opened through the library's `connector` or `createConnection` did not complete in time. */
export class ConnectTimeoutError extends FourtupleError {
  constructor(destination: string, timeoutMs: number) {
    super(`connect to ${destination} timed out after ${timeoutMs} ms`, 'FT_CONNECT_TIMEOUT', 1);
  }
}

/** `lab run` and `lab up` faults other than a failed build step: no (complete) lab, a lab already up, the sink or every client failing. */
export class LabError extends FourtupleError {
  constructor(message: string, code: 'FT_LAB_DOWN' | 'FT_LAB_EXISTS' | 'FT_LAB_SINK' | 'FT_LAB_CLIENT') {
    super(message, code, 1);
  }
}
