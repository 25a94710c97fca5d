/**
 * The one parser for addresses, address ranges, CIDR blocks, ports and
 * endpoints (`127.0.0.1:7000-7039`, `127.0.0.2-127.0.0.9`, `127.0.1.0/28`,
 * `[::1]:7000`). Pure: no I/O. Every failure is an InvalidArgumentError whose
 * message names the bad value and what was expected.
 */
import { InvalidArgumentError } from '../errors.js';
import { PortSet } from './port-set.js';
import { type Ip, formatIp, parseIp } from '../ip.js';

export { type Ip, formatIp, parseIp };

/** Most addresses one specification may expand to; keeps a typo like /8 from allocating millions. */
export const MAX_ADDRESSES = 65_536;

/** A set of destinations: every address with every port. */
export interface Endpoints {
  readonly addresses: readonly string[];
  readonly ports: PortSet;
}

/** Canonical form of one address, or an error naming it. */
export function normalizeAddress(text: string, what = 'address'): string {
  const ip = parseIp(text);
  if (!ip) throw new InvalidArgumentError(`invalid ${what} '${text}': expected an IPv4 address like 127.0.0.1 or an IPv6 address like ::1`);
  return formatIp(ip);
}

/** True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback). */
export function isLoopback(address: string): boolean {
  const ip = parseIp(address);
  if (!ip) return false;
  if (ip.family === 4) return ip.n >> 24n === 127n;
  if (ip.n === 1n) return true;
  return ip.n >> 32n === 0xffffn && (ip.n & 0xffffffffn) >> 24n === 127n;
}

/**
 * An endpoint as people and error messages write it: `127.0.0.1:7000`, and an
 * IPv6 address (anything with a ':', IPv4-mapped too) in brackets:
 * `[::1]:7000`. `port` may be a range or list (`7000-7039`).
 */
export function formatEndpoint(address: string, port: number | string): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Family of a valid address. */
export function familyOf(address: string): 4 | 6 {
  return parseIp(address)?.family ?? 4;
}

/**
 * Expands a comma-separated list of addresses, ranges (`a-b`) and CIDR blocks
 * (`a/len`, every address of the block, network and broadcast included:
 * all of them are usable on loopback). `what` names the option in errors.
 */
export function parseAddresses(spec: string, what = 'address'): string[] {
  if (typeof spec !== 'string') throw new InvalidArgumentError(`invalid ${what} ${JSON.stringify(spec) ?? String(spec)}: expected a string such as '127.0.0.2-127.0.0.9'`);
  const out: string[] = [];
  const seen = new Set<string>();
  if (spec.trim() === '') throw new InvalidArgumentError(`empty ${what}: expected an address, a range like 127.0.0.2-127.0.0.9 or a CIDR like 127.0.1.0/28`);
  for (const part of spec.split(',')) {
    for (const a of expandOne(part.trim(), what)) {
      if (!seen.has(a)) {
        seen.add(a);
        out.push(a);
        if (out.length > MAX_ADDRESSES) throw new InvalidArgumentError(`${what} '${spec}' expands to more than ${MAX_ADDRESSES} addresses`);
      }
    }
  }
  return out;
}

function expandOne(part: string, what: string): string[] {
  const expected = 'expected an address, a range like 127.0.0.2-127.0.0.9 or a CIDR like 127.0.1.0/28';
  const slash = part.indexOf('/');
  if (slash >= 0) {
    const base = parseIp(part.slice(0, slash));
    const lenText = part.slice(slash + 1);
    const bits = base?.family === 6 ? 128 : 32;
    if (!base || !/^\d{1,3}$/.test(lenText) || Number(lenText) > bits) {
      throw new InvalidArgumentError(`invalid CIDR '${part}' in ${what}: ${expected}`);
    }
    const hostBits = BigInt(bits - Number(lenText));
    const first = (base.n >> hostBits) << hostBits;
    return span(part, what, { family: base.family, n: first }, { family: base.family, n: first + (1n << hostBits) - 1n });
  }
  const dash = part.indexOf('-');
  if (dash >= 0) {
    const lo = parseIp(part.slice(0, dash));
    const hi = parseIp(part.slice(dash + 1));
    if (!lo || !hi || lo.family !== hi.family) throw new InvalidArgumentError(`invalid address range '${part}' in ${what}: ${expected}`);
    if (hi.n < lo.n) throw new InvalidArgumentError(`empty address range '${part}' in ${what}: the end is below the start`);
    return span(part, what, lo, hi);
  }
  const ip = parseIp(part);
  if (!ip) throw new InvalidArgumentError(`invalid address '${part}' in ${what}: ${expected}`);
  return [formatIp(ip)];
}

function span(part: string, what: string, lo: Ip, hi: Ip): string[] {
  if (hi.n - lo.n >= BigInt(MAX_ADDRESSES)) throw new InvalidArgumentError(`${what} '${part}' expands to more than ${MAX_ADDRESSES} addresses`);
  const out: string[] = [];
  for (let n = lo.n; n <= hi.n; n++) out.push(formatIp({ family: lo.family, n }));
  return out;
}

/** Parses `7000`, `7000-7039` or a comma list of those; ports are 1-65535. */
export function parsePorts(spec: string, what = 'port'): PortSet {
  if (typeof spec !== 'string') throw new InvalidArgumentError(`invalid ${what} ${JSON.stringify(spec) ?? String(spec)}: expected a string such as '7000' or '7000-7039'`);
  const ranges: { lo: number; hi: number }[] = [];
  if (spec.trim() === '') throw new InvalidArgumentError(`empty ${what}: expected a port 1-65535 or a range like 7000-7039`);
  for (const raw of spec.split(',')) {
    const part = raw.trim();
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new InvalidArgumentError(`invalid port '${part}' in ${what}: expected a port 1-65535 or a range like 7000-7039`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    for (const [text, p] of [[m[1], lo], [m[2], hi]] as const) {
      if (text !== undefined && (p < 1 || p > 65535)) throw new InvalidArgumentError(`invalid port '${text}' in ${what}: expected 1-65535`);
    }
    if (hi < lo) throw new InvalidArgumentError(`empty port range '${part}' in ${what}: the end is below the start`);
    ranges.push({ lo, hi });
  }
  return new PortSet(ranges);
}

/**
 * Parses `ADDRS:PORTS` where ADDRS is anything parseAddresses takes and an
 * IPv6 part is bracketed: `127.0.0.1:7000-7039`, `[::1]:7000`.
 */
export function parseEndpoints(spec: string, what = 'endpoint'): Endpoints {
  if (typeof spec !== 'string') throw new InvalidArgumentError(`invalid ${what} ${JSON.stringify(spec) ?? String(spec)}: expected a string such as '127.0.0.1:7000'`);
  let addrPart: string;
  let portPart: string;
  if (spec.startsWith('[')) {
    const close = spec.indexOf(']');
    if (close < 0 || spec[close + 1] !== ':') throw new InvalidArgumentError(`invalid ${what} '${spec}': expected [IPv6]:PORTS like [::1]:7000`);
    addrPart = spec.slice(1, close);
    portPart = spec.slice(close + 2);
  } else {
    const colon = spec.lastIndexOf(':');
    if (colon < 0) throw new InvalidArgumentError(`invalid ${what} '${spec}': expected ADDRESS:PORTS like 127.0.0.1:7000 or 127.0.0.1:7000-7039`);
    addrPart = spec.slice(0, colon);
    portPart = spec.slice(colon + 1);
    if (addrPart.includes(':')) throw new InvalidArgumentError(`invalid ${what} '${spec}': bracket IPv6 addresses, as in [::1]:7000`);
  }
  return { addresses: parseAddresses(addrPart, what), ports: parsePorts(portPart, what) };
}
