/**
 * Server discovery (server-server API, "Resolving server names"): turn a
 * server name into the address to connect to, the TLS name to verify and the
 * Host header to send.
 *
 * Order: `federation_hosts` override, IP literal, explicit port,
 * /.well-known/matrix/server (then the delegated name's own rules), SRV
 * `_matrix-fed._tcp`, legacy SRV `_matrix._tcp`, and finally port 8448.
 * DNS A/AAAA lookups are left to the connection itself. DNS and the
 * well-known fetch are injectable so every branch can be tested offline.
 */
import { readFileSync } from 'node:fs';
import { resolveSrv as dnsResolveSrv } from 'node:dns/promises';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import type { Agent } from 'undici';
import { loadUndici } from './undici.js';
import type { Config } from '../config/config.js';
import { isValidServerName } from '../core/identifiers.js';
import type { BaseContext } from '../server/context.js';
import { Lru } from '../server/lru.js';

export interface ResolvedServer {
  /** Host name or IP literal to open the TCP connection to. */
  host: string;
  port: number;
  /** Name the certificate must be valid for (and SNI). */
  tlsServerName: string;
  /** Value of the Host header. */
  hostHeader: string;
}

export interface SrvRecord {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

/** One HTTP answer of the well-known fetcher (redirects are not followed by it). */
export interface WellKnownHttpResponse {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
  /** At most WELL_KNOWN_MAX_BYTES + 1 bytes: a fetcher stops reading beyond that. */
  body: Buffer;
}

export interface DiscoveryDeps {
  /** SRV lookup; an error (ENOTFOUND, ENODATA, ...) counts as "no record". */
  resolveSrv(name: string): Promise<SrvRecord[]>;
  /** One GET of an https URL, without following redirects; throws on network or TLS errors. */
  fetchWellKnown(url: string): Promise<WellKnownHttpResponse>;
  /** Clock in ms (for cache expiry). */
  now(): number;
}

/**
 * One step `resolve` took, reported to an optional trace callback so
 * `ranvier check federation` can show how a name resolved without a second
 * copy of these rules.
 */
export type DiscoveryStep =
  | { kind: 'override'; host: string; port: number }
  | { kind: 'literal'; ip: boolean; port?: number }
  | { kind: 'well-known-http'; url: string; response: WellKnownHttpResponse }
  | { kind: 'well-known'; hostname: string; cached: boolean; delegated?: string; error?: string; expiresAt: number }
  | { kind: 'srv'; name: string; cached: boolean; records: SrvRecord[]; error?: string };
export type DiscoveryTrace = (step: DiscoveryStep) => void;

export const DEFAULT_FEDERATION_PORT = 8448;
export const WELL_KNOWN_MAX_BYTES = 64 * 1024;
const WELL_KNOWN_MAX_REDIRECTS = 5;
const WELL_KNOWN_TIMEOUT_MS = 10_000;
const HOUR_MS = 3600_000;
/** The spec's recommended default cache period for a well-known answer without cache headers. */
export const WELL_KNOWN_DEFAULT_TTL_MS = 24 * HOUR_MS;
/** The spec's recommended cap on how long a well-known answer is trusted. */
export const WELL_KNOWN_MAX_TTL_MS = 48 * HOUR_MS;
/** Failures are retried after this long (the spec recommends at most an hour). */
export const WELL_KNOWN_ERROR_TTL_MS = HOUR_MS;
/**
 * Floor on the cache period of a valid answer, so a server sending
 * `no-store` or `max-age=0` does not cost a well-known fetch per request.
 */
export const WELL_KNOWN_MIN_TTL_MS = 5 * 60_000;
/** SRV answers are kept this long (node's resolver does not expose TTLs). */
const SRV_TTL_MS = 10 * 60_000;
const SRV_FAILURE_TTL_MS = 60_000;
const CACHE_ENTRIES = 1000;

/** A server name split into host (brackets removed from IPv6) and optional port. */
export interface ParsedServerName {
  /** As used to connect: IPv6 without brackets. */
  host: string;
  port?: number;
  ip: boolean;
}

/** Split `hostname[:port]`; undefined when it is not a valid server name. */
export function parseServerName(name: string): ParsedServerName | undefined {
  if (!isValidServerName(name)) return undefined;
  let host = name;
  let port: number | undefined;
  const colon = name.lastIndexOf(':');
  if (colon > name.lastIndexOf(']')) {
    host = name.slice(0, colon);
    port = Number(name.slice(colon + 1));
    if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  }
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { host: host.toLowerCase(), port, ip: isIP(host) !== 0 };
}

/** Parse `federation_hosts`: `name=host:port` pairs (port defaults to 8448; IPv6 hosts in brackets). */
export function parseFederationHosts(value: string): Map<string, { host: string; port: number }> {
  const out = new Map<string, { host: string; port: number }>();
  for (const entry of value.split(',')) {
    const item = entry.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    const name = eq > 0 ? item.slice(0, eq).trim() : '';
    const target = eq > 0 ? parseServerName(item.slice(eq + 1).trim()) : undefined;
    if (!name || !target) throw new Error(`federation_hosts: "${item}" is not server_name=host:port`);
    out.set(name.toLowerCase(), { host: target.host, port: target.port ?? DEFAULT_FEDERATION_PORT });
  }
  return out;
}

/**
 * TLS trust for outgoing federation connections: the bundled root CAs plus
 * `federation_ca_file` (node replaces its defaults when `ca` is given, so
 * both go in), and whether to verify at all.
 */
export function federationTlsOptions(config: Config): { ca?: string[]; rejectUnauthorized: boolean } {
  const opts: { ca?: string[]; rejectUnauthorized: boolean } = { rejectUnauthorized: config.federation_verify_tls };
  if (config.federation_ca_file) {
    let extra: string;
    try {
      extra = readFileSync(config.federation_ca_file, 'utf8');
    } catch (err) {
      throw new Error(`federation_ca_file: cannot read ${config.federation_ca_file}: ${(err as Error).message}`);
    }
    opts.ca = [...rootCertificates, extra];
  }
  return opts;
}

/** Milliseconds of freshness from Cache-Control / Expires, or undefined when the headers say nothing. */
export function cacheLifetimeMs(headers: Record<string, string | undefined>, now: number): number | undefined {
  const cc = headers['cache-control'];
  if (cc) {
    const directives = cc.toLowerCase().split(',').map((d) => d.trim());
    if (directives.includes('no-store') || directives.includes('no-cache')) return 0;
    for (const d of directives) {
      const m = /^max-age\s*=\s*"?(\d+)"?$/.exec(d);
      if (m) return Number(m[1]) * 1000;
    }
  }
  const expires = headers.expires;
  if (expires) {
    const at = Date.parse(expires);
    // An unparseable Expires means "already expired" (RFC 9111 5.3).
    if (Number.isNaN(at)) return 0;
    // Measure against the server's own clock when it sent one, to ignore clock skew.
    const date = headers.date ? Date.parse(headers.date) : NaN;
    return Math.max(0, at - (Number.isNaN(date) ? now : date));
  }
  return undefined;
}

interface WellKnownEntry {
  /** The m.server value, or undefined when the lookup failed (then SRV and 8448 apply). */
  delegated: string | undefined;
  expiresAt: number;
  /** Why the lookup failed (for traces). */
  error?: string;
}

export class ServerDiscovery {
  private readonly deps: DiscoveryDeps;
  private readonly overrides: Map<string, { host: string; port: number }>;
  private readonly wellKnownCache = new Lru<string, WellKnownEntry>(CACHE_ENTRIES);
  private readonly srvCache = new Lru<string, { records: SrvRecord[]; expiresAt: number }>(CACHE_ENTRIES);
  /** One lookup per name at a time: concurrent requests to a new server share it. */
  private readonly inflight = new Map<string, Promise<WellKnownEntry>>();
  private readonly fetcher: WellKnownFetcher;

  constructor(protected readonly ctx: BaseContext, deps: Partial<DiscoveryDeps> = {}) {
    this.overrides = parseFederationHosts(ctx.config.federation_hosts);
    this.fetcher = new WellKnownFetcher(ctx.config);
    this.deps = {
      resolveSrv: deps.resolveSrv ?? ((name) => dnsResolveSrv(name)),
      fetchWellKnown: deps.fetchWellKnown ?? ((url) => this.fetcher.fetch(url)),
      now: deps.now ?? Date.now,
    };
  }

  async resolve(serverName: string, trace?: DiscoveryTrace): Promise<ResolvedServer> {
    const parsed = parseServerName(serverName);
    if (!parsed) throw new Error(`invalid server name ${JSON.stringify(serverName)}`);

    const override = this.overrides.get(serverName.toLowerCase());
    if (override) {
      trace?.({ kind: 'override', host: override.host, port: override.port });
      return { host: override.host, port: override.port, tlsServerName: parsed.host, hostHeader: serverName };
    }

    // Steps 1 and 2: an IP literal or an explicit port is used as is.
    if (parsed.ip || parsed.port !== undefined) {
      trace?.({ kind: 'literal', ip: parsed.ip, port: parsed.port });
      return { host: parsed.host, port: parsed.port ?? DEFAULT_FEDERATION_PORT, tlsServerName: parsed.host, hostHeader: serverName };
    }

    // Step 3: delegation through /.well-known/matrix/server.
    const wellKnown = await this.wellKnown(parsed.host, trace);
    if (wellKnown.delegated !== undefined) {
      const delegated = parseServerName(wellKnown.delegated);
      if (delegated) {
        if (delegated.ip || delegated.port !== undefined) {
          return {
            host: delegated.host,
            port: delegated.port ?? DEFAULT_FEDERATION_PORT,
            tlsServerName: delegated.host,
            hostHeader: wellKnown.delegated,
          };
        }
        return this.viaSrv(delegated.host, trace);
      }
    }

    // Steps 4 to 6: SRV for the server name itself, then port 8448.
    return this.viaSrv(parsed.host, trace);
  }

  /** Forget cached well-known and SRV answers (all, or for one name). */
  forget(serverName?: string): void {
    if (serverName === undefined) {
      this.wellKnownCache.clear();
      this.srvCache.clear();
    } else {
      this.wellKnownCache.delete(serverName.toLowerCase());
    }
  }

  /** Close the well-known fetcher's connections. */
  async close(): Promise<void> {
    await this.fetcher.close();
  }

  /** SRV `_matrix-fed._tcp`, then `_matrix._tcp`, then `<hostname>:8448`; TLS name and Host stay `hostname`. */
  private async viaSrv(hostname: string, trace?: DiscoveryTrace): Promise<ResolvedServer> {
    for (const service of ['_matrix-fed._tcp.', '_matrix._tcp.']) {
      const target = pickSrv(await this.srv(service + hostname, trace));
      if (target) return { host: srvTargetHost(target.name), port: target.port, tlsServerName: hostname, hostHeader: hostname };
    }
    return { host: hostname, port: DEFAULT_FEDERATION_PORT, tlsServerName: hostname, hostHeader: hostname };
  }

  private async srv(name: string, trace?: DiscoveryTrace): Promise<SrvRecord[]> {
    const now = this.deps.now();
    const cached = this.srvCache.get(name);
    if (cached && cached.expiresAt > now) {
      trace?.({ kind: 'srv', name, cached: true, records: cached.records });
      return cached.records;
    }
    let records: SrvRecord[];
    let ttl = SRV_TTL_MS;
    let error: string | undefined;
    try {
      records = await this.deps.resolveSrv(name);
    } catch (err) {
      records = [];
      // "No such record" is an answer; a timeout or SERVFAIL is worth asking again soon.
      const code = (err as { code?: string }).code;
      if (code !== 'ENOTFOUND' && code !== 'ENODATA') ttl = SRV_FAILURE_TTL_MS;
      error = code ?? (err as Error).message;
    }
    this.srvCache.set(name, { records, expiresAt: now + ttl });
    trace?.({ kind: 'srv', name, cached: false, records, error });
    return records;
  }

  private async wellKnown(hostname: string, trace?: DiscoveryTrace): Promise<WellKnownEntry> {
    const cached = this.wellKnownCache.get(hostname);
    if (cached && cached.expiresAt > this.deps.now()) {
      trace?.({ kind: 'well-known', hostname, cached: true, ...cached });
      return cached;
    }
    let pending = this.inflight.get(hostname);
    if (!pending) {
      pending = this.fetchAndCache(hostname, trace).finally(() => this.inflight.delete(hostname));
      this.inflight.set(hostname, pending);
    }
    const entry = await pending;
    trace?.({ kind: 'well-known', hostname, cached: false, ...entry });
    return entry;
  }

  private async fetchAndCache(hostname: string, trace?: DiscoveryTrace): Promise<WellKnownEntry> {
    let entry: WellKnownEntry;
    try {
      const { delegated, lifetimeMs } = await this.fetchWellKnownChain(hostname, trace);
      const ttl = Math.min(WELL_KNOWN_MAX_TTL_MS, Math.max(WELL_KNOWN_MIN_TTL_MS, lifetimeMs ?? WELL_KNOWN_DEFAULT_TTL_MS));
      entry = { delegated, expiresAt: this.deps.now() + ttl };
    } catch (err) {
      this.ctx.log.debug({ server: hostname, err: (err as Error).message }, 'no usable .well-known/matrix/server');
      entry = { delegated: undefined, expiresAt: this.deps.now() + WELL_KNOWN_ERROR_TTL_MS, error: (err as Error).message };
    }
    this.wellKnownCache.set(hostname, entry);
    return entry;
  }

  /** Fetch and validate the well-known document, following up to 5 redirects; throws when it is unusable. */
  private async fetchWellKnownChain(hostname: string, trace?: DiscoveryTrace): Promise<{ delegated: string; lifetimeMs: number | undefined }> {
    let url = `https://${hostname}/.well-known/matrix/server`;
    const seen = new Set<string>([url]);
    for (let redirects = 0; ; redirects++) {
      const res = await this.deps.fetchWellKnown(url);
      trace?.({ kind: 'well-known-http', url, response: res });
      if (res.status >= 300 && res.status < 400) {
        const location = res.headers.location;
        if (!location) throw new Error(`redirect ${res.status} without Location`);
        if (redirects >= WELL_KNOWN_MAX_REDIRECTS) throw new Error('too many redirects');
        const next = new URL(location, url);
        if (next.protocol !== 'https:') throw new Error(`redirect to non-https URL ${next.protocol}`);
        url = next.toString();
        if (seen.has(url)) throw new Error('redirect loop');
        seen.add(url);
        continue;
      }
      if (res.status !== 200) throw new Error(`status ${res.status}`);
      if (res.body.length > WELL_KNOWN_MAX_BYTES) throw new Error('response larger than 64 KiB');
      let doc: unknown;
      try {
        doc = JSON.parse(res.body.toString('utf8'));
      } catch {
        throw new Error('response is not JSON');
      }
      const server = typeof doc === 'object' && doc !== null ? (doc as Record<string, unknown>)['m.server'] : undefined;
      if (typeof server !== 'string' || !parseServerName(server)) throw new Error('m.server missing or not a server name');
      return { delegated: server, lifetimeMs: cacheLifetimeMs(res.headers, this.deps.now()) };
    }
  }
}

/**
 * The real well-known fetcher: one GET over verified TLS (bundled CAs plus
 * `federation_ca_file`), 10 s limit, reading at most 64 KiB + 1 bytes.
 */
export class WellKnownFetcher {
  private agent: Agent | undefined;

  constructor(private readonly config: Config) {}

  async fetch(url: string): Promise<WellKnownHttpResponse> {
    const undici = await loadUndici();
    this.agent ??= new undici.Agent({
      connections: 2,
      keepAliveTimeout: 10_000,
      connect: { ...federationTlsOptions(this.config), timeout: WELL_KNOWN_TIMEOUT_MS },
    });
    const res = await undici.request(url, {
      method: 'GET',
      dispatcher: this.agent,
      signal: AbortSignal.timeout(WELL_KNOWN_TIMEOUT_MS),
      headers: { accept: 'application/json' },
    });
    const headers: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(res.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    // Read one byte past the limit, so the caller can tell "too large" apart and memory stays bounded.
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > WELL_KNOWN_MAX_BYTES) {
        res.body.on('error', () => {});
        res.body.destroy();
        break;
      }
    }
    return { status: res.statusCode, headers, body: Buffer.concat(chunks).subarray(0, WELL_KNOWN_MAX_BYTES + 1) };
  }

  async close(): Promise<void> {
    const agent = this.agent;
    this.agent = undefined;
    await agent?.close();
  }
}

/** RFC 2782 choice: lowest priority, then weighted random; a lone "." target means "no service here". */
export function pickSrv(records: SrvRecord[], random: () => number = Math.random): SrvRecord | undefined {
  const usable = records.filter((r) => r.name !== '' && r.name !== '.');
  if (usable.length === 0) return undefined;
  const best = Math.min(...usable.map((r) => r.priority));
  const group = usable.filter((r) => r.priority === best);
  const total = group.reduce((sum, r) => sum + r.weight, 0);
  if (total === 0) return group[Math.floor(random() * group.length)];
  let pick = random() * total;
  for (const r of group) {
    pick -= r.weight;
    if (pick < 0) return r;
  }
  return group[group.length - 1];
}

/** Strip a trailing dot DNS may leave on SRV targets, so it can be used as a connect host. */
export function srvTargetHost(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}
