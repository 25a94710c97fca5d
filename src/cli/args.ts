/**
 * Option parsing shared by every command: node's util.parseArgs in strict
 * mode, with its errors turned into one-line InvalidArgumentErrors.
 */
import { closeSync, constants, openSync, statSync, unlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import * as ffi from '../kernel/ffi.js';
import { familyOf, formatEndpoint, parseAddresses, parseEndpoints, type Endpoints } from '../model/address.js';
import { isStrategy, STRATEGIES, type Strategy, strategySpec } from '../model/strategy.js';

/** Parses `argv` against `config.options` (strict); unknown flags and missing values exit 2 with one line. */
export function parseOptions<T extends ParseArgsConfig>(command: string, config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs<T>({ strict: true, ...config });
  } catch (err) {
    const e = err as Error & { code?: string };
    const m = /'(-[^']*)'/.exec(e.message);
    const flag = m ? m[1] : '';
    switch (e.code) {
      case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
        throw new InvalidArgumentError(`unknown option '${flag}' for '${command}': see 'fourtuple ${command} --help'`);
      case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
        const name = flag.split(' ')[0];
        if (/ambiguous/.test(e.message)) {
          const args = config.args ?? [];
          const value = args[args.indexOf(name) + 1] ?? '';
          throw new InvalidArgumentError(`invalid ${name} '${value}': a value, not an option, was expected (write ${name}=${value} to pass it anyway)`);
        }
        throw new InvalidArgumentError(`option '${name}' of '${command}' ${/argument missing/.test(e.message) ? 'needs a value' : 'takes no value'}`);
      }
      case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL': {
        const arg = /'([^']*)'/.exec(e.message)?.[1] ?? '';
        throw new InvalidArgumentError(`unexpected argument '${arg}' for '${command}': see 'fourtuple ${command} --help'`);
      }
      default:
        throw new InvalidArgumentError(e.message.split('\n')[0]);
    }
  }
}

/** `--strategy` value, checked. */
export function strategyOption(value: string | undefined, fallback: Strategy): Strategy {
  if (value === undefined) return fallback;
  if (!isStrategy(value)) throw new InvalidArgumentError(`unknown strategy '${value}' in --strategy: expected one of ${Object.keys(STRATEGIES).join(', ')}`);
  return value;
}

/** `--reuseaddr yes|no`: SO_REUSEADDR on the client's sockets; only the bind strategy may go without it. */
export function reuseAddrOption(value: string | undefined, strategy: Strategy): boolean {
  if (value === undefined || value === 'yes') return true;
  if (value !== 'no') throw new InvalidArgumentError(`invalid --reuseaddr '${value}': expected yes or no`);
  const spec = strategySpec(strategy);
  if (spec.socket.reuseAddr === 'always') throw new InvalidArgumentError(`--reuseaddr no does not go with --strategy ${strategy}: it needs SO_REUSEADDR to use one source port toward several destinations`);
  if (spec.socket.reuseAddr === 'never') throw new InvalidArgumentError(`--reuseaddr no is for --strategy bind: ${strategy} never binds a port itself`);
  return false;
}

/** Every `--to` value, parsed. */
export function endpointsOption(values: string[] | undefined): Endpoints[] {
  return (values ?? []).map((v) => parseEndpoints(v, '--to'));
}

/** Every `--from` value, parsed and flattened, duplicates dropped. */
export function sourcesOption(values: string[] | undefined): string[] {
  return [...new Set((values ?? []).flatMap((v) => parseAddresses(v, '--from')))];
}

/**
 * The rules --from and --strategy follow everywhere (probe, load, limits):
 * auto lets the kernel choose the source, so it takes no --from; sources
 * and destinations are of one family.
 */
export function checkSources(strategy: Strategy, from: readonly string[], to: readonly Endpoints[], given: readonly string[] | undefined): void {
  if (strategySpec(strategy).sources === 'none' && from.length) throw new InvalidArgumentError(`--strategy auto cannot use --from ${(given ?? from).join(',')}: connect() without bind() lets the kernel choose the source; use nopo, bind or explicit`);
  const first = to[0]?.addresses[0];
  if (first === undefined) return;
  const fam = familyOf(first);
  for (const s of from) if (familyOf(s) !== fam) throw new InvalidArgumentError(`source address '${s}' in --from is not of the destinations' family (IPv${fam})`);
}

/**
 * --from addresses that this host (its current network namespace) has:
 * bind(address, 0) says EADDRNOTAVAIL for any other, and every connect from
 * it would fail the same way. Checked where the option enters, exit 2.
 */
export function localSourcesOption(values: string[] | undefined): string[] {
  const sources = sourcesOption(values);
  if (sources.length === 0 || !ffi.ffiAvailable()) return sources;
  for (const address of sources) {
    const fd = ffi.socket(familyOf(address), true);
    if (fd < 0) return sources; // cannot tell: the run will say
    const r = ffi.bind(fd, ffi.sockaddr(address, 0));
    ffi.close(fd);
    if (r === -ffi.EADDRNOTAVAIL) throw new InvalidArgumentError(`source address '${address}' in --from is not an address of this host`);
  }
  return sources;
}

/** A whole number option within bounds. */
export function intOption(name: string, value: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const text = value.replace(/_/g, '');
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(`invalid ${name} '${value}': expected a whole number from ${min.toLocaleString('en-US')}${max < Number.MAX_SAFE_INTEGER ? ` to ${max.toLocaleString('en-US')}` : ''}`);
  }
  return n;
}

/** A number option (fractions allowed) within bounds. */
export function numberOption(name: string, value: string | undefined, fallback: number, min: number, max = Number.MAX_VALUE): number {
  if (value === undefined) return fallback;
  const n = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`invalid ${name} '${value}': expected a number from ${min}${max < Number.MAX_VALUE ? ` to ${max}` : ''}`);
  return n;
}

/** Describes endpoints for a sentence: `127.0.0.1:7000-7099`. */
export function describeEndpoints(list: readonly Endpoints[]): string {
  return list
    .map((e) => {
      const a = e.addresses.length === 1 ? e.addresses[0] : `${e.addresses[0]}-${e.addresses[e.addresses.length - 1]}`;
      return formatEndpoint(a, e.ports.toString());
    })
    .join(', ');
}

/** Fails now, before any work, when `file` could not be written later. */
export function checkWritable(file: string, name: string): void {
  const path = resolve(file);
  let existed = true;
  try {
    if (statSync(path).isDirectory()) throw new InvalidArgumentError(`cannot write ${name} '${file}': it is a directory; expected a file name`);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw err;
    existed = false;
  }
  // Open it as the end of the run will (create or append, never truncate), so /sys, a read-only mount or a missing folder is refused now.
  try {
    closeSync(openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND));
    if (!existed) unlinkSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'an error';
    throw new InvalidArgumentError(`cannot write ${name} '${file}': ${code} (its folder ${dirname(path)} is missing or not writable)`);
  }
}

/**
 * Every (address, port) of `list`, counted before it is expanded: a range of
 * addresses times a range of ports can be billions, refused in a moment.
 */
export function expandEndpoints(list: readonly Endpoints[], max: number, name: string): { address: string; port: number }[] {
  const count = list.reduce((n, e) => n + e.addresses.length * e.ports.size, 0);
  if (count > max) throw new InvalidArgumentError(`${name} names ${count.toLocaleString('en-US')} address and port pairs: at most ${max.toLocaleString('en-US')}`);
  const out: { address: string; port: number }[] = [];
  for (const e of list) for (const address of e.addresses) for (const port of e.ports) out.push({ address, port });
  return out;
}
