/**
 * The client's IP address: one function, {@link clientIp}, for every use
 * (the per-IP limit, the query logs, the page's view tokens, the OHTTP relay
 * exemption). createApp makes express's `req.ip` this function too, so no
 * code can read another answer (docs/operations.md, "Binding, proxies and
 * TLS").
 *
 * ## Whom X-Forwarded-For is believed from
 *
 * Only configured proxies (`--trust-proxy 10.0.0.0/8,loopback`): addresses,
 * CIDRs and express's names `loopback`, `linklocal`, `uniquelocal`. Trusting
 * everyone (express's `true`, a hop count, `0.0.0.0/0`) is refused: it lets
 * any client name any address, so slip past the per-IP limit, write what it
 * likes into the logs and read another address's rows.
 *
 * The walk is express's (proxy-addr's): start at the socket's address; while
 * the address in hand is a trusted proxy, step to the header's next entry
 * from the right. The first untrusted address is the client's: the
 * rightmost entry no trusted proxy added. Entries left of it were written by
 * the client and are never read.
 *
 * ## What comes out
 *
 * Always an IP address in canonical form (node:net's isIP, then IPv4-mapped
 * IPv6 `::ffff:1.2.3.4` as `1.2.3.4`, IPv6 compressed and lower case), so
 * one client is one key and a log column holds nothing but addresses. An
 * entry that is not one (`<img src=x>`, 15 KB of padding, `2130706433`,
 * `fe80::1%eth0`) ends the walk at the socket's own address.
 */
import net from 'node:net';
import type { IncomingMessage } from 'node:http';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { quoteInput } from '../shared/errors.ts';

/** express's named ranges (proxy-addr's IP_RANGES). */
const NAMED_RANGES: Readonly<Record<string, readonly string[]>> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
  uniquelocal: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
};

/** An IP address in canonical form, or undefined when `text` is not one (a zone id included). */
export function canonicalIp(text: string): string | undefined {
  const a = text.trim();
  if (a.length > 45 || a.includes('%')) return undefined; // the longest IPv6 text form is 45 characters
  const family = net.isIP(a);
  if (family === 4) return a;
  if (family !== 6) return undefined;
  const c = new net.SocketAddress({ address: a, family: 'ipv6' }).address; // inet_ntop: compressed, lower case
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(c);
  return mapped?.[1] ?? c;
}

/** The validated `--trust-proxy` list: addresses and CIDRs in canonical form, and named ranges. Never "everyone". */
export type TrustedProxies = readonly string[];

/**
 * Parses `--trust-proxy` (a comma-separated list, or one already split).
 * Each entry is `loopback`, `linklocal`, `uniquelocal`, an IP address or a
 * CIDR with a prefix of at least 1; anything else (`true`, `*`, a hop count,
 * a host name, `0.0.0.0/0`) is an invalid_field error naming it.
 */
export function parseTrustProxy(value: string | readonly string[]): TrustedProxies {
  const entries = (typeof value === 'string' ? value.split(',') : value).map((s) => s.trim()).filter((s) => s !== '');
  if (entries.length === 0) throw new PcdError(ErrorCode.InvalidField, 'trust-proxy: name the proxies, e.g. loopback or 10.0.0.0/8');
  const out: string[] = [];
  for (const e of entries) {
    const name = e.toLowerCase();
    if (name in NAMED_RANGES) {
      out.push(name);
      continue;
    }
    const [addr = '', prefix, extra] = e.split('/');
    const ip = canonicalIp(addr);
    const bits = ip === undefined ? 0 : net.isIP(ip) === 4 ? 32 : 128;
    const p = prefix === undefined ? bits : /^\d{1,3}$/.test(prefix) ? Number(prefix) : Number.NaN;
    if (ip === undefined || extra !== undefined || !(p >= 1 && p <= bits)) {
      const why = /^(true|\*|all|\d+)$/i.test(e) || p === 0 ? ': trusting every address would let any client claim any IP' : '';
      throw new PcdError(
        ErrorCode.InvalidField,
        `trust-proxy: ${quoteInput(e)} is not a proxy address, CIDR (1.2.3.0/24, fd00::/8) or one of loopback, linklocal, uniquelocal${why}`,
      );
    }
    out.push(prefix === undefined ? ip : `${ip}/${p}`);
  }
  return out;
}

/** A predicate over canonical addresses: is this one of the trusted proxies? */
export function compileTrust(proxies: TrustedProxies): (ip: string) => boolean {
  if (proxies.length === 0) return () => false;
  const list = new net.BlockList();
  for (const p of proxies) {
    for (const entry of NAMED_RANGES[p] ?? [p]) {
      const [addr = '', prefix] = entry.split('/');
      const type = net.isIP(addr) === 4 ? 'ipv4' : 'ipv6';
      if (prefix === undefined) list.addAddress(addr, type);
      else list.addSubnet(addr, Number(prefix), type);
    }
  }
  return (ip) => list.check(ip, net.isIP(ip) === 4 ? 'ipv4' : 'ipv6');
}

/** Where a request came from: the socket's peer and the X-Forwarded-For header. */
type Source = Pick<IncomingMessage, 'socket' | 'headers'>;

/** The socket's address, canonical; `unknown` for a socket that has none (one already closed). */
function socketIp(req: Source): string {
  const a = req.socket.remoteAddress;
  return (a !== undefined ? (canonicalIp(a) ?? a) : undefined) ?? 'unknown';
}

/**
 * The client's IP address, canonical: the socket's, or when the socket is a
 * trusted proxy the rightmost X-Forwarded-For entry that no trusted proxy
 * added. An entry that is not an IP address gives the socket's address.
 */
export function clientIp(req: Source, trusted: (ip: string) => boolean): string {
  const own = socketIp(req);
  let ip = own;
  if (!trusted(ip)) return ip;
  const header = req.headers['x-forwarded-for'];
  if (header === undefined) return ip;
  const hops = (Array.isArray(header) ? header.join(',') : header).split(',');
  for (let i = hops.length - 1; i >= 0 && trusted(ip); i--) {
    const next = canonicalIp(hops[i] ?? '');
    if (next === undefined) return own;
    ip = next;
  }
  return ip;
}
