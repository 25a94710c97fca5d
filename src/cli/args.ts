/**
 * Option parsing shared by every command: node's util.parseArgs in strict
 * mode, with its errors turned into one-line InvalidArgumentErrors.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import { parseAddresses, parseEndpoints, type Endpoints } from '../model/address.js';
import { isStrategy, STRATEGIES, type Strategy } from '../model/strategy.js';

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

/** Every `--to` value, parsed. */
export function endpointsOption(values: string[] | undefined): Endpoints[] {
  return (values ?? []).map((v) => parseEndpoints(v, '--to'));
}

/** Every `--from` value, parsed and flattened, duplicates dropped. */
export function sourcesOption(values: string[] | undefined): string[] {
  return [...new Set((values ?? []).flatMap((v) => parseAddresses(v, '--from')))];
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
      return `${a.includes(':') ? `[${a}]` : a}:${e.ports.toString()}`;
    })
    .join(', ');
}

/** Fails now, before any work, when `file` could not be written later. */
export function checkWritable(file: string, name: string): void {
  const dir = dirname(resolve(file));
  try {
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    accessSync(dir, constants.W_OK);
  } catch {
    throw new InvalidArgumentError(`cannot write ${name} '${file}': its folder ${dir} is missing or not writable`);
  }
}
