/**
 * Outbound server-server HTTP: every request goes through discovery, TLS
 * (verified, with the right SNI) and, unless told otherwise, X-Matrix signing.
 *
 * Requests to our own server name are not short-cut: they go through
 * discovery and the network like any other (tests and single-host setups
 * rely on a server being able to call itself).
 */
import { isIP } from 'node:net';
import { Transform, type Readable } from 'node:stream';
import type { Agent, Dispatcher } from 'undici';
import { loadUndici } from './undici.js';
import { signRequest } from '../core/x-matrix.js';
import type { BaseContext } from '../server/context.js';
import { federationTlsOptions, type ResolvedServer, type ServerDiscovery } from './discovery.js';
import { FederationPolicy } from './policy.js';

export interface FederationRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Path, already percent-encoded, e.g. /_matrix/federation/v1/version */
  path: string;
  query?: Record<string, string | string[] | undefined>;
  /** JSON body. */
  body?: unknown;
  /** Add an X-Matrix Authorization header (default true). */
  signed?: boolean;
  /** Whole-request time limit (default 30 s). For requestStream: until the headers arrive, then the longest pause between body chunks. */
  timeoutMs?: number;
  /** Largest response body accepted (default 16 MiB for JSON; no limit for requestStream unless given). */
  maxBytes?: number;
}

/** A failed request: network error, timeout, refused by policy, or a non-2xx answer. */
export class FederationRequestError extends Error {
  constructor(
    readonly destination: string,
    message: string,
    /** HTTP status when the server answered. */
    readonly status?: number,
    /** Matrix errcode from the body, when there was one. */
    readonly errcode?: string,
    readonly body?: unknown,
  ) {
    super(`${destination}: ${message}`);
  }
}

export interface StreamResponse {
  status: number;
  headers: Record<string, string>;
  body: Readable;
}

export interface FederationClientOptions {
  /** Who we may talk to; default: `ctx.federation.policy` when present, else one built from the config. */
  policy?: FederationPolicy;
  /** Connections kept per destination address (default 8). */
  connectionsPerHost?: number;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_JSON_BYTES = 16 * 1024 * 1024;
/** Error bodies are only read for their errcode; more than this is dropped. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const KEEP_ALIVE_MS = 30_000;

/** Path plus query string exactly as it goes on the wire (and into the signature). */
export function buildUri(path: string, query?: FederationRequest['query']): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v === undefined) continue;
    for (const item of Array.isArray(v) ? v : [v]) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(item)}`);
  }
  return parts.length > 0 ? `${path}${path.includes('?') ? '&' : '?'}${parts.join('&')}` : path;
}

function flattenHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

/** Read a body up to `max` bytes; undefined when it is larger (the stream is destroyed then). */
async function readCapped(body: Readable, max: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) {
      discard(body);
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Drop a response body we no longer want; undici reports that as an abort error, which nobody needs to hear. */
function discard(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}

/** A promise that rejects with the signal's reason when it aborts (and never settles otherwise). */
function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: string }).code;
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return `${code ? `${code} ` : ''}${err.message}${cause}`;
  }
  return String(err);
}

export class FederationClient {
  private agentPromise: Promise<Agent> | undefined;
  private readonly agentOptions: Agent.Options;
  private readonly ownPolicy: FederationPolicy;

  constructor(
    protected readonly ctx: BaseContext,
    protected readonly discovery: ServerDiscovery,
    opts: FederationClientOptions = {},
  ) {
    this.ownPolicy = opts.policy ?? new FederationPolicy(ctx.config);
    // One pool per address (host:port); undici derives SNI per request from
    // the servername we pass, and unrefs idle sockets so they never hold the
    // process open. Pools of addresses gone idle are dropped by the Agent.
    this.agentOptions = {
      connections: opts.connectionsPerHost ?? 8,
      keepAliveTimeout: KEEP_ALIVE_MS,
      keepAliveMaxTimeout: 5 * 60_000,
      connect: { ...federationTlsOptions(ctx.config), timeout: DEFAULT_TIMEOUT_MS },
    };
  }

  private agent(): Promise<Agent> {
    return (this.agentPromise ??= loadUndici().then(({ Agent }) => new Agent(this.agentOptions)));
  }

  /** The service's policy once the full context is assembled (the client only sees BaseContext); the same config otherwise. */
  private get policy(): FederationPolicy {
    const fed = (this.ctx as Partial<{ federation: { policy: FederationPolicy } }>).federation;
    return fed?.policy ?? this.ownPolicy;
  }

  /** Send a request and parse the JSON answer; throws FederationRequestError on any failure or non-2xx status. */
  async request<T = unknown>(destination: string, req: FederationRequest): Promise<T> {
    const maxBytes = req.maxBytes ?? DEFAULT_MAX_JSON_BYTES;
    const { res, done, signal } = await this.send(destination, req);
    try {
      await this.throwUnlessOk(destination, res);
      const len = Number(res.headers['content-length']);
      if (Number.isFinite(len) && len > maxBytes) {
        discard(res.body);
        throw new FederationRequestError(destination, `response of ${len} bytes exceeds the ${maxBytes}-byte limit`, res.statusCode);
      }
      let buf: Buffer | undefined;
      try {
        buf = await readCapped(res.body, maxBytes);
      } catch (err) {
        throw this.wrap(destination, err, signal);
      }
      if (buf === undefined) throw new FederationRequestError(destination, `response exceeds the ${maxBytes}-byte limit`, res.statusCode);
      if (buf.length === 0) return {} as T;
      try {
        return JSON.parse(buf.toString('utf8')) as T;
      } catch {
        throw new FederationRequestError(destination, 'response is not valid JSON', res.statusCode);
      }
    } finally {
      done();
    }
  }

  /** Like request, but hands back the body as a stream (media); non-2xx still throws. */
  async requestStream(destination: string, req: FederationRequest): Promise<StreamResponse> {
    const { res, done } = await this.send(destination, req);
    // From here the body's own idle timeout (bodyTimeout) applies.
    done();
    await this.throwUnlessOk(destination, res);
    const max = req.maxBytes ?? Infinity;
    const len = Number(res.headers['content-length']);
    if (Number.isFinite(len) && len > max) {
      discard(res.body);
      throw new FederationRequestError(destination, `response of ${len} bytes exceeds the ${max}-byte limit`, res.statusCode);
    }
    // Hand out a plain node stream rather than undici's body: destroying that
    // one early emits an 'error' (an abort), which crashes a caller that
    // merely stopped reading. This one counts bytes as well.
    let size = 0;
    const body = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (size > max) cb(new FederationRequestError(destination, `response exceeds the ${max}-byte limit`, res.statusCode));
        else cb(null, chunk);
      },
    });
    res.body.on('error', (err) => body.destroy(this.wrap(destination, err)));
    body.on('close', () => {
      if (!res.body.readableEnded) res.body.destroy();
    });
    res.body.pipe(body);
    return { status: res.statusCode, headers: flattenHeaders(res.headers), body };
  }

  /** Close pooled connections (in-flight requests finish first). */
  async close(): Promise<void> {
    const agent = this.agentPromise;
    this.agentPromise = undefined;
    if (agent) await (await agent).close();
  }

  /**
   * Check policy, resolve, sign and send; resolves once the response headers
   * are in. `done` stops the whole-request timer; until it is called the
   * timer can still abort reading the body.
   */
  private async send(
    destination: string,
    req: FederationRequest,
  ): Promise<{ res: Dispatcher.ResponseData; done: () => void; signal: AbortSignal }> {
    // Policy before any I/O, discovery included.
    if (!this.policy.allows(destination)) {
      throw new FederationRequestError(destination, 'federation with this server is not allowed by this server\'s policy');
    }
    const timeoutMs = req.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new FederationRequestError(destination, `timed out after ${timeoutMs} ms`)), timeoutMs);
    const done = () => clearTimeout(timer);
    try {
      let target: ResolvedServer;
      try {
        // DNS and the well-known fetch cannot be cancelled, but the caller need not wait for them past the deadline.
        target = await Promise.race([this.discovery.resolve(destination), rejectOnAbort(abort.signal)]);
      } catch (err) {
        if (abort.signal.aborted) throw abort.signal.reason;
        throw new FederationRequestError(destination, `cannot resolve server: ${describe(err)}`);
      }

      const uri = buildUri(req.path, req.query);
      const headers: Record<string, string> = { host: target.hostHeader, accept: 'application/json' };
      let body: string | undefined;
      if (req.body !== undefined) {
        body = JSON.stringify(req.body);
        headers['content-type'] = 'application/json';
      }
      if (req.signed !== false) {
        headers.authorization = signRequest(this.ctx.signingKey, {
          method: req.method,
          uri,
          origin: this.ctx.config.server_name,
          destination,
          content: req.body,
        });
      }
      const origin = `https://${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
      // `servername` is read by undici's dispatcher but missing from its types.
      const opts: Dispatcher.RequestOptions & { servername?: string } = {
        origin,
        path: uri,
        method: req.method,
        headers,
        body,
        signal: abort.signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        // SNI must not carry an IP address (RFC 6066); node then checks the certificate against the connect host.
        servername: isIP(target.tlsServerName) ? undefined : target.tlsServerName,
      };
      const res = await (await this.agent()).request(opts);
      return { res, done, signal: abort.signal };
    } catch (err) {
      done();
      throw this.wrap(destination, err, abort.signal);
    }
  }

  private wrap(destination: string, err: unknown, signal?: AbortSignal): FederationRequestError {
    if (err instanceof FederationRequestError) return err;
    if (signal?.aborted && signal.reason instanceof FederationRequestError) return signal.reason;
    const code = (err as { code?: unknown } | null)?.code;
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
      return new FederationRequestError(destination, `timed out: ${describe(err)}`);
    }
    return new FederationRequestError(destination, `request failed: ${describe(err)}`);
  }

  /** Turn a non-2xx answer into a FederationRequestError carrying status, errcode and body. */
  private async throwUnlessOk(destination: string, res: Dispatcher.ResponseData): Promise<void> {
    if (res.statusCode >= 200 && res.statusCode < 300) return;
    let parsed: unknown;
    try {
      const buf = await readCapped(res.body, MAX_ERROR_BODY_BYTES);
      parsed = buf && buf.length > 0 ? JSON.parse(buf.toString('utf8')) : undefined;
    } catch {
      parsed = undefined;
    }
    discard(res.body);
    const obj = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : undefined;
    const errcode = typeof obj?.errcode === 'string' ? obj.errcode : undefined;
    const message = typeof obj?.error === 'string' ? obj.error : `HTTP ${res.statusCode}`;
    throw new FederationRequestError(destination, `${res.statusCode} ${errcode ?? ''} ${message}`.replace(/\s+/g, ' ').trim(), res.statusCode, errcode, parsed);
  }
}
