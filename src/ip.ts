/** IP addresses as (family, integer): the one place they are parsed and printed. Pure. */

/** An IP address as a family and an unsigned integer. */
export interface Ip {
  readonly family: 4 | 6;
  readonly n: bigint;
}

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses one IPv4 or IPv6 address; undefined when it is neither. */
export function parseIp(text: string): Ip | undefined {
  const m = V4.exec(text);
  if (m) {
    let n = 0n;
    for (let i = 1; i <= 4; i++) {
      const octet = Number(m[i]);
      if (octet > 255 || (m[i].length > 1 && m[i][0] === '0')) return undefined;
      n = (n << 8n) | BigInt(octet);
    }
    return { family: 4, n };
  }
  return parseIPv6(text);
}

function parseIPv6(text: string): Ip | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || !text.includes(':')) return undefined;
  let head = text;
  let tailV4: bigint | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = parseIp(text.slice(lastColon + 1));
    if (!v4 || v4.family !== 4) return undefined;
    tailV4 = v4.n;
    head = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...left, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...right];
  let n = 0n;
  for (const g of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  if (tailV4 !== undefined) n = (n & ~0xffffffffn) | tailV4;
  return { family: 6, n };
}

/** Formats an address canonically (dotted quad; RFC 5952 for IPv6). */
export function formatIp(ip: Ip): string {
  if (ip.family === 4) {
    const n = Number(ip.n);
    return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
  }
  if (ip.n >> 32n === 0xffffn) return `::ffff:${formatIp({ family: 4, n: ip.n & 0xffffffffn })}`;
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((ip.n >> BigInt(i * 16)) & 0xffffn));
  // Longest run of two or more zero groups becomes '::'.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

