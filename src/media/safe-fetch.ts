/**
 * Outbound HTTP that users can aim (URL previews). Every hop is checked
 * before any connection is made:
 *
 *  - only http: and https: URLs;
 *  - the host name is resolved here, and the request is refused if ANY of
 *    its addresses is blocked (a name with one public and one private
 *    address is refused, not raced);
 *  - the connection goes to the address that was checked: the socket's
 *    `lookup` is pinned to it, so a second DNS answer (rebinding) cannot
 *    swap in another address; TLS still verifies the certificate against
 *    the host name;
 *  - redirects are followed by hand (at most `maxRedirects`), each one
 *    checked like the first request;
 *  - one time limit covers the whole exchange, redirects included, and the
 *    body is aborted as soon as it passes `maxBytes`.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are judged by the IPv4 rules.
 */
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { lookup as dnsLookup } from 'node:dns/promises';

export type SafeFetchErrorKind = 'invalid_url' | 'blocked' | 'too_large' | 'timeout' | 'too_many_redirects' | 'network';

export class SafeFetchError extends Error {
  constructor(public readonly kind: SafeFetchErrorKind, message: string) {
    super(message);
  }
}

export interface IpPolicy {
  blocklist: BlockList;
  allowlist: BlockList;
}

export interface SafeFetchOptions extends IpPolicy {
  maxBytes: number;
  timeoutMs: number;
  maxRedirects?: number;
  headers?: Record<string, string>;
  /** Resolve a host name to all its addresses (tests replace it). */
  resolve?: (host: string) => Promise<Array<{ address: string; family: number }>>;
}

export interface SafeFetchResponse {
  /** The final URL, after redirects. */
  url: string;
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** Parse a comma-separated list of CIDRs or bare addresses into a BlockList. Throws on a bad entry. */
export function parseCidrList(list: string): BlockList {
  const bl = new BlockList();
  for (const item of list.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const [addr, prefix, extra] = item.split('/');
    const family = isIP(addr);
    const max = family === 4 ? 32 : 128;
    const bits = prefix === undefined ? max : /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
    if (family === 0 || extra !== undefined || !(bits >= 0 && bits <= max)) {
      throw new Error(`'${item}' is not an IP address or CIDR range`);
    }
    bl.addSubnet(addr, bits, family === 4 ? 'ipv4' : 'ipv6');
  }
  return bl;
}

export function ipPolicy(blocklist: string, allowlist: string): IpPolicy {
  return { blocklist: parseCidrList(blocklist), allowlist: parseCidrList(allowlist) };
}

/** Expand an IPv6 address to its 8 16-bit groups; undefined if it is not IPv6. */
function ipv6Groups(addr: string): number[] | undefined {
  if (isIP(addr) !== 6) return undefined;
  let s = addr.toLowerCase();
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  // A trailing dotted quad counts as two groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (quad) {
    const p = quad[1].split('.').map(Number);
    s = s.slice(0, -quad[1].length) + (((p[0] << 8) | p[1]).toString(16) + ':' + ((p[2] << 8) | p[3]).toString(16));
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16));
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), if it is one. */
export function mappedIpv4(addr: string): string | undefined {
  const g = ipv6Groups(addr);
  if (!g || g.length !== 8) return undefined;
  if (g[0] || g[1] || g[2] || g[3] || g[4] || g[5] !== 0xffff) return undefined;
  return [g[6] >> 8, g[6] & 0xff, g[7] >> 8, g[7] & 0xff].join('.');
}

/** May an outbound request connect to this address? Not an IP at all: no. */
export function isAddressAllowed(addr: string, policy: IpPolicy): boolean {
  let a = addr.startsWith('[') && addr.endsWith(']') ? addr.slice(1, -1) : addr;
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const family = isIP(a);
  if (family === 0) return false;
  const v4 = family === 6 ? mappedIpv4(a) : a;
  const [addrCheck, type] = v4 ? [v4, 'ipv4' as const] : [a, 'ipv6' as const];
  if (policy.allowlist.check(addrCheck, type)) return true;
  return !policy.blocklist.check(addrCheck, type);
}

const defaultResolve = (host: string) => dnsLookup(host, { all: true, verbatim: true });

/** Validate one URL and find the address to connect to. */
async function checkTarget(raw: string, opts: SafeFetchOptions): Promise<{ url: URL; address: string; family: number }> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new SafeFetchError('invalid_url', 'Not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new SafeFetchError('invalid_url', 'Only http and https URLs can be previewed');
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (!host) throw new SafeFetchError('invalid_url', 'URL has no host');
  let addrs: Array<{ address: string; family: number }>;
  if (isIP(host)) {
    addrs = [{ address: host, family: isIP(host) }];
  } else {
    try {
      addrs = await (opts.resolve ?? defaultResolve)(host);
    } catch {
      throw new SafeFetchError('network', `Could not resolve ${host}`);
    }
    if (addrs.length === 0) throw new SafeFetchError('network', `Could not resolve ${host}`);
  }
  for (const a of addrs) {
    if (!isAddressAllowed(a.address, opts)) throw new SafeFetchError('blocked', 'The URL points to an address the server may not connect to');
  }
  return { url, address: addrs[0].address, family: addrs[0].family };
}

/** One request to a checked address; resolves with the response, not following redirects. */
function requestOnce(
  target: { url: URL; address: string; family: number },
  opts: SafeFetchOptions,
  signal: AbortSignal,
): Promise<SafeFetchResponse> {
  const { url, address, family } = target;
  // Pinned: whatever name the socket layer asks about, the answer is the checked address.
  const lookup: LookupFunction = (_host, options, cb) => {
    if ((options as { all?: boolean }).all) (cb as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [{ address, family }]);
    else cb(null, address, family);
  };
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: SafeFetchError) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(e);
    };
    const req = mod.request(
      url,
      {
        method: 'GET',
        agent: false,
        lookup,
        signal,
        headers: { 'accept-encoding': 'identity', ...opts.headers },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400 && res.headers.location) {
          res.resume();
          settled = true;
          resolve({ url: url.toString(), status, headers: res.headers, body: Buffer.alloc(0) });
          req.destroy();
          return;
        }
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > opts.maxBytes) {
          fail(new SafeFetchError('too_large', `The page is larger than ${opts.maxBytes} bytes`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > opts.maxBytes) {
            fail(new SafeFetchError('too_large', `The page is larger than ${opts.maxBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          resolve({ url: url.toString(), status, headers: res.headers, body: Buffer.concat(chunks) });
        });
        res.on('error', (e) => fail(signal.aborted ? timeoutError() : new SafeFetchError('network', e.message)));
        res.on('aborted', () => fail(signal.aborted ? timeoutError() : new SafeFetchError('network', 'Connection closed early')));
      },
    );
    req.on('error', (e) => fail(signal.aborted ? timeoutError() : new SafeFetchError('network', e.message)));
    req.end();
  });
}

const timeoutError = () => new SafeFetchError('timeout', 'Fetching the URL took too long');

/** `p`, or a timeout error as soon as `signal` aborts (a slow DNS answer must not outlive the time limit). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(timeoutError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(timeoutError());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e); },
    );
  });
}

/** GET a user-supplied URL under the rules at the top of this file. */
export async function safeFetch(rawUrl: string, opts: SafeFetchOptions): Promise<SafeFetchResponse> {
  const maxRedirects = opts.maxRedirects ?? 5;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), opts.timeoutMs);
  try {
    let current = rawUrl;
    for (let hop = 0; ; hop++) {
      const target = await untilAborted(checkTarget(current, opts), controller.signal);
      const res = await requestOnce(target, opts, controller.signal);
      const location = res.headers.location;
      if (res.status >= 300 && res.status < 400 && location) {
        if (hop >= maxRedirects) throw new SafeFetchError('too_many_redirects', `More than ${maxRedirects} redirects`);
        try {
          current = new URL(location, target.url).toString();
        } catch {
          throw new SafeFetchError('network', 'Invalid redirect location');
        }
        continue;
      }
      return res;
    }
  } finally {
    clearTimeout(timer);
  }
}
