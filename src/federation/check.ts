/**
 * `ranvier check federation`: look at a server the way other homeservers
 * will (discovery, TCP, TLS, the version and key endpoints) and say what is
 * wrong and how to fix it.
 *
 * Discovery is the real ServerDiscovery, traced, so the tester cannot drift
 * from what federation actually does. The certificate is always verified as
 * another server would, whatever `federation_verify_tls` says. Every network
 * step is limited to 5 s; the network is injectable so each failure message
 * can be tested offline.
 */
import { Resolver } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { checkServerIdentity, connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { Config } from '../config/config.js';
import { parseSigningKeyFile, publicKeyBase64, type SigningKey } from '../core/signing-key.js';
import type { BaseContext } from '../server/context.js';
import { silentLogger } from '../server/logging.js';
import {
  DEFAULT_FEDERATION_PORT,
  ServerDiscovery,
  WELL_KNOWN_MAX_BYTES,
  federationTlsOptions,
  parseServerName,
  type DiscoveryDeps,
  type DiscoveryStep,
  type ResolvedServer,
  type WellKnownHttpResponse,
} from './discovery.js';
import { checkKeyResponse } from './keys.js';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** One line telling the operator what to do (failures, and warnings). */
  fix?: string;
  /** Passed, but something will break soon or is deprecated. */
  warning?: string;
}

export interface Report {
  server_name: string;
  /** True when every check passed (warnings included). */
  ok: boolean;
  /** Where discovery sent us, when it got that far. */
  resolved?: ResolvedServer;
  checks: Check[];
}

export interface HttpResponse {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
  body: Buffer;
}

export interface CertInfo {
  /** Subject common name. */
  subject: string;
  /** subjectAltName entries as node prints them: `DNS:example.org`, `IP Address:1.2.3.4`. */
  altNames: string[];
  issuer: string;
  validFrom: number;
  validTo: number;
}

/** What one TCP connect and TLS handshake to the resolved address showed. */
export interface TlsProbe {
  /** Time the TCP connect took, when it succeeded. */
  connectMs?: number;
  tcpError?: string;
  /** Error code of the TCP failure (ECONNREFUSED, ENOTFOUND, ETIMEDOUT ...). */
  tcpCode?: string;
  tlsError?: string;
  /** Negotiated protocol, e.g. TLSv1.3. */
  protocol?: string;
  /** OpenSSL's reason the chain is not trusted (e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE); undefined when trusted. */
  chainError?: string;
  cert?: CertInfo;
}

export interface CheckDeps {
  /** DNS, well-known fetch and clock for discovery (defaults: the real ones, 5 s limits). */
  discovery: Partial<DiscoveryDeps>;
  probeTls(target: ResolvedServer, opts: { ca?: string[]; timeoutMs: number }): Promise<TlsProbe>;
  /** One GET to the resolved address; `verify` false skips certificate checks (they were reported already). */
  get(target: ResolvedServer, path: string, opts: { ca?: string[]; verify: boolean; timeoutMs: number }): Promise<HttpResponse>;
  /** The keys in signing_key_path (throws when unreadable; never creates one). */
  ownSigningKeys(config: Config): SigningKey[];
  now(): number;
  /** Limit on each network step. */
  timeoutMs: number;
}

export const CHECK_STEP_TIMEOUT_MS = 5000;
const DAY_MS = 24 * 3600_000;
const CERT_WARN_MS = 14 * DAY_MS;
const KEY_WARN_MS = DAY_MS;
const MAX_RESPONSE_BYTES = 256 * 1024;

// ---- small helpers

function errMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${code} ${err.message}` : err.message;
  }
  return String(err);
}

function timeoutError(what: string, ms: number): Error {
  return Object.assign(new Error(`${what} timed out after ${ms / 1000} s`), { code: 'ETIMEDOUT' });
}

/** Reject after `ms`; the underlying work is also cancelled by its own timer where it has one. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(timeoutError(what, ms)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

export function formatDuration(ms: number): string {
  const abs = Math.abs(ms);
  if (abs >= 2 * DAY_MS) return `${Math.floor(abs / DAY_MS)} days`;
  if (abs >= 2 * 3600_000) return `${Math.floor(abs / 3600_000)} hours`;
  if (abs >= 2 * 60_000) return `${Math.floor(abs / 60_000)} minutes`;
  return `${Math.floor(abs / 1000)} s`;
}

const formatDate = (ms: number) => new Date(ms).toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
const hostPort = (t: { host: string; port: number }) => `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;

// ---- the real network (the defaults of CheckDeps)

async function openTcp(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(timeoutError(`connecting to ${hostPort({ host, port })}`, timeoutMs));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function certInfo(peer: PeerCertificate): CertInfo | undefined {
  if (!peer || Object.keys(peer).length === 0) return undefined;
  const name = (n: Record<string, string | string[] | undefined> | undefined) => {
    const v = n?.CN ?? n?.O;
    return Array.isArray(v) ? v.join(', ') : (v ?? '');
  };
  return {
    subject: name(peer.subject as unknown as Record<string, string | string[] | undefined>),
    altNames: peer.subjectaltname ? peer.subjectaltname.split(', ') : [],
    issuer: name(peer.issuer as unknown as Record<string, string | string[] | undefined>),
    validFrom: Date.parse(peer.valid_from),
    validTo: Date.parse(peer.valid_to),
  };
}

/** TCP connect, then a TLS handshake that records, rather than rejects, an untrusted certificate. */
export async function probeTls(target: ResolvedServer, opts: { ca?: string[]; timeoutMs: number }): Promise<TlsProbe> {
  const started = performance.now();
  let socket: Socket;
  try {
    socket = await openTcp(target.host, target.port, opts.timeoutMs);
  } catch (err) {
    return { tcpError: errMessage(err), tcpCode: (err as { code?: string }).code };
  }
  const connectMs = Math.round(performance.now() - started);
  try {
    const secure = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect({
        socket,
        // SNI must not carry an IP address (RFC 6066).
        servername: isIP(target.tlsServerName) ? undefined : target.tlsServerName,
        ca: opts.ca,
        rejectUnauthorized: false,
        // The name is judged separately; this keeps authorizationError about the chain alone.
        checkServerIdentity: () => undefined,
      });
      const timer = setTimeout(() => {
        s.destroy();
        reject(timeoutError('TLS handshake', opts.timeoutMs));
      }, opts.timeoutMs);
      s.once('secureConnect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    // Typed as Error, but node sets OpenSSL's code string here.
    const authError = secure.authorizationError as unknown as string | Error | undefined;
    const probe: TlsProbe = {
      connectMs,
      protocol: secure.getProtocol() ?? undefined,
      chainError: secure.authorized ? undefined : authError instanceof Error ? errMessage(authError) : (authError ?? 'not trusted'),
      cert: certInfo(secure.getPeerCertificate()),
    };
    secure.destroy();
    return probe;
  } catch (err) {
    socket.destroy();
    return { connectMs, tlsError: errMessage(err) };
  }
}

/** One https GET without redirects, reading at most `maxBytes` + 1 bytes. */
function httpsGet(opts: {
  host: string;
  port: number;
  path: string;
  hostHeader: string;
  servername: string;
  ca?: string[];
  verify: boolean;
  timeoutMs: number;
  maxBytes: number;
}): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: opts.host,
      port: opts.port,
      path: opts.path,
      method: 'GET',
      headers: { host: opts.hostHeader, accept: 'application/json' },
      servername: isIP(opts.servername) ? undefined : opts.servername,
      ca: opts.ca,
      rejectUnauthorized: opts.verify,
      agent: false,
    });
    const timer = setTimeout(() => req.destroy(timeoutError(`GET ${opts.path}`, opts.timeoutMs)), opts.timeoutMs);
    req.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = () => {
        clearTimeout(timer);
        const headers: Record<string, string | undefined> = {};
        for (const [k, v] of Object.entries(res.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
        resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks) });
      };
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size > opts.maxBytes) {
          // Enough to say "too large"; stop reading.
          res.destroy();
          finish();
        }
      });
      res.once('end', finish);
      res.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    req.end();
  });
}

function defaultGet(target: ResolvedServer, path: string, opts: { ca?: string[]; verify: boolean; timeoutMs: number }): Promise<HttpResponse> {
  return httpsGet({
    host: target.host,
    port: target.port,
    path,
    hostHeader: target.hostHeader,
    servername: target.tlsServerName,
    ca: opts.ca,
    verify: opts.verify,
    timeoutMs: opts.timeoutMs,
    maxBytes: MAX_RESPONSE_BYTES,
  });
}

function defaultDiscoveryDeps(ca: string[] | undefined, timeoutMs: number): Partial<DiscoveryDeps> {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 1 });
  return {
    resolveSrv: (name) => resolver.resolveSrv(name),
    async fetchWellKnown(url): Promise<WellKnownHttpResponse> {
      const u = new URL(url);
      const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
      return httpsGet({
        host,
        port: u.port ? Number(u.port) : 443,
        path: u.pathname + u.search,
        hostHeader: u.host,
        servername: host,
        ca,
        verify: true,
        timeoutMs,
        maxBytes: WELL_KNOWN_MAX_BYTES,
      });
    },
  };
}

function readOwnSigningKeys(config: Config): SigningKey[] {
  const keys = parseSigningKeyFile(readFileSync(config.signing_key_path, 'utf8'));
  if (keys.length === 0) throw new Error('the file holds no ed25519 key');
  return keys;
}

// ---- the checks

/** How discovery went, from its trace: the discovery checks plus a phrase saying how the target was found. */
function discoveryChecks(serverName: string, steps: DiscoveryStep[], target: ResolvedServer, now: number): { checks: Check[]; how: string } {
  const checks: Check[] = [];
  const override = steps.find((s) => s.kind === 'override');
  if (override) {
    checks.push({
      name: 'discovery',
      ok: true,
      detail: `federation_hosts pins ${serverName} to ${hostPort(override)}; well-known and SRV skipped (other servers do not see this setting)`,
    });
    return { checks, how: 'federation_hosts' };
  }
  const literal = steps.find((s) => s.kind === 'literal');
  if (literal) {
    checks.push({
      name: 'discovery',
      ok: true,
      detail: literal.ip ? 'an IP literal: used as is, no well-known or SRV' : 'an explicit port: used as is, no well-known or SRV',
    });
    return { checks, how: literal.ip ? 'IP literal' : 'explicit port' };
  }

  let how = `default port ${DEFAULT_FEDERATION_PORT}`;
  const wk = steps.find((s) => s.kind === 'well-known');
  if (wk) {
    const answers = steps.filter((s) => s.kind === 'well-known-http');
    const chain = answers.map((a) => `${a.url} → ${a.response.status}`).join(', ');
    const last = answers.at(-1)?.response;
    if (wk.delegated !== undefined) {
      const cc = last ? [last.headers['cache-control'] && `Cache-Control: ${last.headers['cache-control']}`, last.headers.expires && `Expires: ${last.headers.expires}`].filter(Boolean).join(', ') : '';
      const ttl = formatDuration(wk.expiresAt - now);
      checks.push({
        name: 'well-known',
        ok: true,
        detail: `${chain} {"m.server": "${wk.delegated}"}; ${cc ? `${cc}, so` : 'no cache headers, so'} other servers cache it for ${ttl}`,
      });
      how = `well-known delegation to ${wk.delegated}`;
    } else {
      const url = `https://${wk.hostname}/.well-known/matrix/server`;
      const reason = wk.error ?? 'unusable';
      // A 200 or a redirect means someone meant to delegate: that it does not work is a fault.
      const intended = last !== undefined && (last.status === 200 || (last.status >= 300 && last.status < 400));
      if (intended) {
        checks.push({
          name: 'well-known',
          ok: false,
          detail: `${chain}: ${reason}; other servers ignore it and fall back to SRV and port ${DEFAULT_FEDERATION_PORT}`,
          fix: `Serve ${url} over https as JSON {"m.server": "host:port"} without redirects to plain http (Ranvier does this when well_known_server is set), or remove it.`,
        });
      } else if (last !== undefined && last.status !== 404) {
        checks.push({
          name: 'well-known',
          ok: true,
          detail: `${chain}: not delegated`,
          warning: `${url} answers ${last.status}: other servers treat that as "no delegation" but retry within the hour`,
          fix: `Answer ${url} with 404, or with {"m.server": "host:port"} to delegate.`,
        });
      } else {
        checks.push({ name: 'well-known', ok: true, detail: `${url}: ${last ? '404' : reason}; not delegated` });
      }
    }
  }

  const srvSteps = steps.filter((s) => s.kind === 'srv');
  if (srvSteps.length > 0) {
    const parts = srvSteps.map((s) => {
      const records = s.records.filter((r) => r.name !== '' && r.name !== '.');
      if (records.length > 0) return `${s.name}: ${records.map((r) => `${r.priority} ${r.weight} ${r.port} ${r.name}`).join(', ')}`;
      return `${s.name}: ${s.error && s.error !== 'ENOTFOUND' && s.error !== 'ENODATA' ? `lookup failed (${s.error})` : 'none'}`;
    });
    const used = srvSteps.find((s) => s.records.some((r) => r.name !== '' && r.name !== '.'));
    const failed = srvSteps.find((s) => s.error && s.error !== 'ENOTFOUND' && s.error !== 'ENODATA');
    const check: Check = { name: 'SRV records', ok: true, detail: parts.join('; ') };
    if (used?.name.startsWith('_matrix._tcp.')) {
      check.warning = `only the deprecated ${used.name} record exists`;
      check.fix = `Publish the same record as ${used.name.replace('_matrix._tcp.', '_matrix-fed._tcp.')} too; newer servers may stop reading _matrix._tcp.`;
    } else if (failed) {
      check.warning = `DNS lookup of ${failed.name} failed (${failed.error}); other servers may resolve differently`;
      check.fix = 'Check that the DNS servers of this domain answer SRV queries (an empty answer is fine, a failure is not).';
    }
    checks.push(check);
    if (used) how = `SRV ${used.name}`;
  }
  return { checks, how };
}

function connectFix(serverName: string, target: ResolvedServer, probe: TlsProbe, how: string): string {
  if (probe.tcpCode === 'ENOTFOUND' || probe.tcpCode === 'EAI_AGAIN') {
    return `${target.host} has no address in DNS: add an A or AAAA record for it${how.startsWith('SRV') ? ', or fix the SRV target' : ''}.`;
  }
  const listen = `Make sure Ranvier (federation_tls_port = ${target.port}) or your reverse proxy listens on ${hostPort(target)} and the firewall lets it through`;
  if (how.startsWith('default port')) {
    return `${listen}, or delegate elsewhere: serve https://${serverName}/.well-known/matrix/server (set well_known_server, e.g. "matrix.${serverName}:443") or publish _matrix-fed._tcp.${serverName}.`;
  }
  return `${listen}.`;
}

function chainFix(code: string): string {
  if (/SELF_SIGNED/.test(code)) {
    return 'The certificate is self-signed, which other servers reject: use one from a public CA such as Let\'s Encrypt (a private federation can trust its own CA with federation_ca_file on every server).';
  }
  if (/UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/.test(code)) {
    return 'The intermediate certificates are missing or the CA is unknown: serve the full chain (fullchain.pem, not cert.pem) as federation_tls_cert or in your proxy, from a CA other servers trust.';
  }
  if (/EXPIRED/.test(code)) return 'Renew the certificate, then restart Ranvier (or reload your proxy).';
  return 'Use a certificate from a CA other servers trust, with its full chain.';
}

function tlsChecks(target: ResolvedServer, probe: TlsProbe, how: string, now: number, caFile: string): { checks: Check[]; verified: boolean } {
  const checks: Check[] = [];
  const protocol = probe.protocol ?? 'unknown protocol';
  const check: Check = { name: 'TLS handshake', ok: true, detail: protocol };
  if (probe.protocol === 'TLSv1' || probe.protocol === 'TLSv1.1') {
    check.warning = `${probe.protocol} is obsolete and many servers refuse it`;
    check.fix = 'Enable TLS 1.2 and 1.3 on the listener or proxy.';
  }
  checks.push(check);
  const cert = probe.cert;
  if (!cert) {
    checks.push({ name: 'TLS certificate', ok: false, detail: 'the server sent no certificate', fix: 'Configure a certificate for the TLS listener or proxy.' });
    return { checks, verified: false };
  }

  const names = cert.altNames.length > 0 ? cert.altNames.join(', ') : `CN=${cert.subject}`;
  // checkServerIdentity reads only subject and subjectaltname.
  const identity = checkServerIdentity(target.tlsServerName, {
    subject: { CN: cert.subject },
    subjectaltname: cert.altNames.join(', '),
  } as unknown as PeerCertificate);
  const nameOk = identity === undefined;
  const why = how.startsWith('well-known')
    ? ' (the delegated name: with delegation the certificate must be for the name in m.server)'
    : how.startsWith('SRV')
      ? ` (the server name: with SRV the certificate must be for ${target.tlsServerName}, not the SRV target)`
      : '';
  checks.push(
    nameOk
      ? { name: 'TLS certificate name', ok: true, detail: `valid for ${target.tlsServerName} (${names})` }
      : {
          name: 'TLS certificate name',
          ok: false,
          detail: `the certificate is for ${names}, but other servers check it against ${target.tlsServerName}`,
          fix: `Get a certificate that names ${target.tlsServerName}${why} and use it for ${hostPort(target)}.`,
        },
  );

  const trustedBy = caFile ? 'system CAs + federation_ca_file' : 'system CAs';
  const chainOk = probe.chainError === undefined;
  checks.push(
    chainOk
      ? {
          name: 'TLS certificate chain',
          ok: true,
          // Not a warning: a private federation trusts its CA on purpose; but say that others need it too.
          detail: `trusted (issuer ${cert.issuer}; checked against ${trustedBy}${caFile ? ', which servers without that CA do not have' : ''})`,
        }
      : {
          name: 'TLS certificate chain',
          ok: false,
          detail: `not trusted: ${probe.chainError} (issuer ${cert.issuer}; checked against ${trustedBy})`,
          fix: chainFix(probe.chainError ?? ''),
        },
  );

  let expiryOk = true;
  if (Number.isNaN(cert.validTo) || cert.validTo <= now) {
    expiryOk = false;
    checks.push({
      name: 'TLS certificate expiry',
      ok: false,
      detail: `expired on ${formatDate(cert.validTo)}`,
      fix: 'Renew the certificate (e.g. certbot renew), then restart Ranvier or reload your proxy.',
    });
  } else if (cert.validFrom > now) {
    expiryOk = false;
    checks.push({
      name: 'TLS certificate expiry',
      ok: false,
      detail: `not valid before ${formatDate(cert.validFrom)}`,
      fix: 'Check the clock of this machine and of the server (NTP), or wait until the certificate becomes valid.',
    });
  } else {
    const left = cert.validTo - now;
    checks.push({
      name: 'TLS certificate expiry',
      ok: true,
      detail: `valid until ${formatDate(cert.validTo)} (${formatDuration(left)} left)`,
      ...(left < CERT_WARN_MS
        ? { warning: `expires in ${formatDuration(left)}`, fix: 'Renew the certificate soon (e.g. certbot renew), then restart Ranvier or reload your proxy.' }
        : {}),
    });
  }
  return { checks, verified: nameOk && chainOk && expiryOk };
}

/** Parse a JSON answer of the resolved server; a failure comes back as a finished check. */
async function getJson(
  deps: CheckDeps,
  target: ResolvedServer,
  path: string,
  opts: { ca?: string[]; verify: boolean },
  name: string,
): Promise<{ json: unknown } | { check: Check }> {
  const proxyFix = `Forward /_matrix/ on ${hostPort(target)} to Ranvier unchanged (no path rewriting).`;
  let res: HttpResponse;
  try {
    res = await withTimeout(deps.get(target, path, { ...opts, timeoutMs: deps.timeoutMs }), deps.timeoutMs, `GET ${path}`);
  } catch (err) {
    return { check: { name, ok: false, detail: `GET ${path} failed: ${errMessage(err)}`, fix: `Check that ${hostPort(target)} serves HTTPS and forwards /_matrix/ to Ranvier.` } };
  }
  if (res.status !== 200) {
    return { check: { name, ok: false, detail: `GET ${path} answered HTTP ${res.status}`, fix: proxyFix } };
  }
  if (res.body.length > MAX_RESPONSE_BYTES) {
    return { check: { name, ok: false, detail: `GET ${path} answered more than ${MAX_RESPONSE_BYTES} bytes`, fix: proxyFix } };
  }
  try {
    return { json: JSON.parse(res.body.toString('utf8')) };
  } catch {
    return { check: { name, ok: false, detail: `GET ${path} did not answer JSON (${res.headers['content-type'] ?? 'no content type'})`, fix: proxyFix } };
  }
}

function keyFix(error: string, serverName: string): string {
  if (error.startsWith('server_name')) {
    return `This address answers for another server: make ${serverName} resolve (well-known, SRV, DNS) to the homeserver whose server_name is ${serverName}.`;
  }
  if (error.startsWith('not self-signed') || error === 'not signed by the server') {
    return 'Every key in verify_keys must sign the response: the server publishes a key it does not sign with; check its signing key file and restart it.';
  }
  return `The key endpoint must come unchanged from the homeserver of ${serverName}; check what your proxy forwards /_matrix/key/ to.`;
}

/**
 * Run every check against `serverName` (default: ours). Never throws for
 * network trouble: each problem becomes a failed check.
 */
export async function checkFederation(config: Config, serverName: string = config.server_name, overrides: Partial<CheckDeps> = {}): Promise<Report> {
  const checks: Check[] = [];
  const report = (resolved?: ResolvedServer): Report => ({ server_name: serverName, ok: checks.every((c) => c.ok), ...(resolved ? { resolved } : {}), checks });
  const own = serverName.toLowerCase() === config.server_name.toLowerCase();

  let ca: string[] | undefined;
  try {
    ca = federationTlsOptions(config).ca;
  } catch (err) {
    checks.push({ name: 'federation_ca_file', ok: false, detail: errMessage(err), fix: 'Point federation_ca_file at a readable PEM file, or leave it empty.' });
  }
  const timeoutMs = overrides.timeoutMs ?? CHECK_STEP_TIMEOUT_MS;
  const now = overrides.now ?? Date.now;
  const deps: CheckDeps = {
    discovery: { ...defaultDiscoveryDeps(ca, timeoutMs), ...overrides.discovery },
    probeTls: overrides.probeTls ?? probeTls,
    get: overrides.get ?? defaultGet,
    ownSigningKeys: overrides.ownSigningKeys ?? readOwnSigningKeys,
    now,
    timeoutMs,
  };

  // 1. The name and how it resolves.
  if (!parseServerName(serverName)) {
    checks.push({
      name: 'server name',
      ok: false,
      detail: `${JSON.stringify(serverName)} is not a valid server name`,
      fix: 'A server name is a DNS name or IP literal with an optional port, e.g. example.org or example.org:8448.',
    });
    return report();
  }
  checks.push({ name: 'server name', ok: true, detail: `${serverName} is a valid server name${own ? ' (this server)' : ''}` });

  const { resolveSrv, fetchWellKnown } = deps.discovery;
  const discoveryDeps: Partial<DiscoveryDeps> = {
    now,
    ...(resolveSrv ? { resolveSrv: (name: string) => withTimeout(resolveSrv(name), timeoutMs, `SRV lookup of ${name}`) } : {}),
    ...(fetchWellKnown ? { fetchWellKnown: (url: string) => withTimeout(fetchWellKnown(url), timeoutMs, `GET ${url}`) } : {}),
  };
  // Discovery reads only config and log; a fresh instance has empty caches, so every step really happens.
  const discovery = new ServerDiscovery({ config, log: silentLogger() } as unknown as BaseContext, discoveryDeps);
  const steps: DiscoveryStep[] = [];
  let target: ResolvedServer;
  try {
    target = await discovery.resolve(serverName, (s) => steps.push(s));
  } catch (err) {
    checks.push({ name: 'resolution', ok: false, detail: errMessage(err), fix: 'Check the server name and its DNS.' });
    return report();
  } finally {
    await discovery.close();
  }
  const { checks: found, how } = discoveryChecks(serverName, steps, target, now());
  checks.push(...found);
  checks.push({
    name: 'resolution',
    ok: true,
    detail: `connect to ${hostPort(target)} (${how}); certificate must be valid for ${target.tlsServerName}; Host: ${target.hostHeader}`,
  });

  // 2. TCP and TLS.
  let probe: TlsProbe;
  try {
    // Twice the step limit: the probe is two steps (connect, handshake), each limited on its own.
    probe = await withTimeout(deps.probeTls(target, { ca, timeoutMs }), 2 * timeoutMs, `connecting to ${hostPort(target)}`);
  } catch (err) {
    probe = { tcpError: errMessage(err), tcpCode: (err as { code?: string }).code };
  }
  if (probe.tcpError !== undefined || probe.connectMs === undefined) {
    checks.push({ name: 'TCP connect', ok: false, detail: `${hostPort(target)}: ${probe.tcpError ?? 'failed'}`, fix: connectFix(serverName, target, probe, how) });
    return report(target);
  }
  checks.push({ name: 'TCP connect', ok: true, detail: `${hostPort(target)} in ${probe.connectMs} ms` });
  if (probe.tlsError !== undefined) {
    checks.push({
      name: 'TLS handshake',
      ok: false,
      detail: probe.tlsError,
      fix: `${hostPort(target)} accepts connections but does not complete a TLS handshake: point federation at a TLS listener (federation_tls_port, or a proxy holding the certificate), not at Ranvier's plain HTTP port.`,
    });
    return report(target);
  }
  const tls = tlsChecks(target, probe, how, now(), config.federation_ca_file);
  checks.push(...tls.checks);
  // Go on over an unverified connection, so one run shows every problem; the TLS failure is already reported.
  const viaNote = tls.verified ? '' : ' (over an unverified connection)';
  const httpOpts = { ca, verify: tls.verified };

  // 3. The version endpoint.
  const version = await getJson(deps, target, '/_matrix/federation/v1/version', httpOpts, 'federation version');
  if ('check' in version) {
    checks.push(version.check);
  } else {
    const server = (version.json as { server?: { name?: unknown; version?: unknown } } | null)?.server;
    const label = [server?.name, server?.version].filter((v) => typeof v === 'string').join(' ');
    checks.push(
      label
        ? { name: 'federation version', ok: true, detail: `${label}${viaNote}` }
        : { name: 'federation version', ok: false, detail: 'the answer has no server.name', fix: `Forward /_matrix/ on ${hostPort(target)} to the homeserver.` },
    );
  }

  // 4. The key endpoint.
  let published: Record<string, { key: string }> | undefined;
  const keys = await getJson(deps, target, '/_matrix/key/v2/server', httpOpts, 'server keys');
  if ('check' in keys) {
    checks.push(keys.check);
  } else {
    const checked = checkKeyResponse(keys.json, serverName);
    if ('error' in checked) {
      checks.push({ name: 'server keys', ok: false, detail: `key response rejected: ${checked.error}`, fix: keyFix(checked.error, serverName) });
    } else {
      published = checked.ok.verify_keys;
      checks.push({ name: 'server keys', ok: true, detail: `${Object.keys(published).join(', ')}, each self-signed, server_name ${serverName}${viaNote}` });
      const left = checked.ok.valid_until_ts - now();
      if (left <= 0) {
        checks.push({
          name: 'key validity',
          ok: false,
          detail: `valid_until_ts ${formatDate(checked.ok.valid_until_ts)} is in the past`,
          fix: 'The server publishes expired keys, so others will not accept its signatures: check its clock (NTP) and restart it.',
        });
      } else {
        checks.push({
          name: 'key validity',
          ok: true,
          detail: `valid until ${formatDate(checked.ok.valid_until_ts)} (${formatDuration(left)} left)`,
          ...(left < KEY_WARN_MS
            ? { warning: `the key response expires in ${formatDuration(left)}`, fix: 'Servers should publish keys valid for days; check the server\'s clock and key configuration.' }
            : {}),
        });
      }
    }
  }

  // 5. Our own server: the key others see is the one we sign with; the well-known says what config says.
  if (own) {
    checks.push(...ownKeyCheck(config, deps, target, published));
    const wk = await ownWellKnownCheck(config, deps, steps);
    if (wk) checks.push(wk);
  }
  return report(target);
}

function ownKeyCheck(config: Config, deps: CheckDeps, target: ResolvedServer, published: Record<string, { key: string }> | undefined): Check[] {
  let key: SigningKey;
  try {
    key = deps.ownSigningKeys(config)[0];
  } catch (err) {
    return [{
      name: 'signing key',
      ok: false,
      detail: `cannot read signing_key_path ${config.signing_key_path}: ${errMessage(err)}`,
      fix: 'Run the check with the configuration the server uses (--config, or the same RANVIER_* variables), so signing_key_path names its key file.',
    }];
  }
  // Nothing to compare with: the key endpoint failure is reported already.
  if (!published) return [];
  const ours = publicKeyBase64(key);
  if (published[key.keyId]?.key === ours) {
    return [{ name: 'signing key', ok: true, detail: `the published ${key.keyId} is the key in ${config.signing_key_path}` }];
  }
  const seen = Object.entries(published).map(([id, v]) => `${id} (${v.key.slice(0, 8)}…)`).join(', ');
  return [{
    name: 'signing key',
    ok: false,
    detail: `${config.signing_key_path} holds ${key.keyId} (${ours.slice(0, 8)}…), but ${hostPort(target)} publishes ${seen}; other servers will reject events signed with this configuration's key`,
    fix: `Make the server behind ${hostPort(target)} run with this configuration (same signing_key_path or data_dir) and restart it, or make ${config.server_name} resolve to the server that does.`,
  }];
}

async function ownWellKnownCheck(config: Config, deps: CheckDeps, steps: DiscoveryStep[]): Promise<Check | undefined> {
  const expected = config.well_known_server;
  if (!expected) return undefined;
  const host = parseServerName(config.server_name)?.host ?? config.server_name;
  const url = `https://${host.includes(':') ? `[${host}]` : host}/.well-known/matrix/server`;
  const fix = `Forward /.well-known/matrix/ on ${host}:443 to Ranvier, or serve {"m.server": "${expected}"} there yourself.`;
  let served: string | undefined;
  let problem: string | undefined;
  const traced = steps.find((s) => s.kind === 'well-known');
  if (traced) {
    served = traced.delegated;
    problem = traced.error;
  } else {
    // Discovery skipped the well-known (explicit port or federation_hosts): fetch it once, as a plain GET.
    const fetchWellKnown = deps.discovery.fetchWellKnown;
    if (!fetchWellKnown) return undefined;
    try {
      const res = await withTimeout(fetchWellKnown(url), deps.timeoutMs, `GET ${url}`);
      if (res.status !== 200) problem = `HTTP ${res.status}`;
      else {
        const doc = JSON.parse(res.body.toString('utf8')) as Record<string, unknown> | null;
        const m = doc?.['m.server'];
        if (typeof m === 'string') served = m;
        else problem = 'no m.server';
      }
    } catch (err) {
      problem = errMessage(err);
    }
  }
  if (served === expected) return { name: 'well-known config', ok: true, detail: `${url} says ${served}, as well_known_server does` };
  return {
    name: 'well-known config',
    ok: false,
    detail: served !== undefined ? `well_known_server is ${expected}, but ${url} says ${served}` : `well_known_server is ${expected}, but ${url} is not usable (${problem ?? 'no answer'})`,
    fix,
  };
}

/** The report as lines for a terminal: ✓/✗ per check, then the fix or warning indented below. */
export function formatReport(report: Report): string {
  const lines = [`Federation check for ${report.server_name}`, ''];
  const width = Math.max(...report.checks.map((c) => c.name.length));
  for (const c of report.checks) {
    lines.push(`${c.ok ? '✓' : '✗'} ${c.name.padEnd(width)}  ${c.detail}`);
    if (c.warning) lines.push(`  ${' '.repeat(width)}  warning: ${c.warning}`);
    if (c.fix && (!c.ok || c.warning)) lines.push(`  ${' '.repeat(width)}  fix: ${c.fix}`);
  }
  const failed = report.checks.filter((c) => !c.ok).length;
  const warned = report.checks.filter((c) => c.ok && c.warning).length;
  lines.push('');
  lines.push(
    failed === 0
      ? `All checks passed${warned ? ` (${warned} warning${warned === 1 ? '' : 's'})` : ''}.`
      : `${failed} check${failed === 1 ? '' : 's'} failed${warned ? `, ${warned} warning${warned === 1 ? '' : 's'}` : ''}.`,
  );
  return lines.join('\n') + '\n';
}
