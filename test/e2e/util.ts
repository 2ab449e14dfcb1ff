/**
 * Shared helpers for the integration tests (test/e2e/*.test.ts): polling,
 * raw Client-Server API calls, user-interactive auth and matrix-js-sdk setup.
 * Server start-up and registration live in harness.ts.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import './sdk-setup.js'; // before matrix-js-sdk
import * as sdk from 'matrix-js-sdk';
import { request } from './harness.js';

export { request };

export const CS = '/_matrix/client/v3';

/** Assert a Matrix error answer: HTTP status and errcode, naming `what` and showing the body. */
export function expectError(r: { status: number; body: { errcode?: string } | undefined }, status: number, errcode: string, what: string): void {
  assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body?.errcode, errcode, `${what}: ${JSON.stringify(r.body)}`);
}

/** Poll `fn` until it returns a truthy value (returned) or `timeoutMs` passes (throws, naming `what`). */
export async function waitFor<T>(
  what: string,
  fn: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const intervalMs = opts.intervalMs ?? 15;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError ? `: last error ${(lastError as Error)?.message ?? String(lastError)}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const enc = encodeURIComponent;

/** A client bound to one server and (optionally) one access token: raw JSON calls. */
export class Api {
  constructor(public readonly url: string, public readonly token?: string) {}

  call(method: string, path: string, body?: unknown, headers?: Record<string, string>) {
    return request(this.url, method, path.startsWith('/_matrix') ? path : CS + path, { token: this.token, body, headers });
  }

  get(path: string) {
    return this.call('GET', path);
  }

  post(path: string, body: unknown = {}) {
    return this.call('POST', path, body);
  }

  put(path: string, body: unknown = {}) {
    return this.call('PUT', path, body);
  }

  /** Like call, but throws unless the status is 200; returns the body. */
  async ok(method: string, path: string, body?: unknown): Promise<any> {
    const r = await this.call(method, path, body);
    if (r.status !== 200) throw new Error(`${method} ${path} -> ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  createRoom(body: Record<string, unknown> = {}): Promise<string> {
    return this.ok('POST', '/createRoom', body).then((b) => b.room_id as string);
  }

  private txn = 0;

  async send(roomId: string, body: string | Record<string, unknown>, type = 'm.room.message'): Promise<string> {
    const content = typeof body === 'string' ? { msgtype: 'm.text', body } : body;
    const txnId = `t${Date.now()}-${++this.txn}-${Math.random().toString(36).slice(2)}`;
    const b = await this.ok('PUT', `/rooms/${enc(roomId)}/send/${enc(type)}/${txnId}`, content);
    return b.event_id as string;
  }

  async sendState(roomId: string, type: string, stateKey: string, content: Record<string, unknown>): Promise<string> {
    const b = await this.ok('PUT', `/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, content);
    return b.event_id as string;
  }

  invite(roomId: string, userId: string) {
    return this.ok('POST', `/rooms/${enc(roomId)}/invite`, { user_id: userId });
  }

  join(roomIdOrAlias: string) {
    return this.ok('POST', `/join/${enc(roomIdOrAlias)}`, {}).then((b) => b.room_id as string);
  }

  leave(roomId: string) {
    return this.ok('POST', `/rooms/${enc(roomId)}/leave`, {});
  }

  sync(params: { since?: string; timeout?: number; filter?: unknown; full_state?: boolean } = {}) {
    const q = new URLSearchParams();
    if (params.since) q.set('since', params.since);
    if (params.timeout !== undefined) q.set('timeout', String(params.timeout));
    if (params.filter !== undefined) q.set('filter', typeof params.filter === 'string' ? params.filter : JSON.stringify(params.filter));
    if (params.full_state) q.set('full_state', 'true');
    const qs = q.toString();
    return this.ok('GET', `/sync${qs ? '?' + qs : ''}`);
  }

  messages(roomId: string, params: { from?: string; to?: string; dir?: 'b' | 'f'; limit?: number; filter?: unknown } = {}) {
    const q = new URLSearchParams({ dir: params.dir ?? 'b' });
    if (params.from) q.set('from', params.from);
    if (params.to) q.set('to', params.to);
    if (params.limit !== undefined) q.set('limit', String(params.limit));
    if (params.filter !== undefined) q.set('filter', JSON.stringify(params.filter));
    return this.call('GET', `/rooms/${enc(roomId)}/messages?${q}`);
  }
}

/** Sync until nothing is pending: returns a token that is "now". */
export async function caughtUp(api: Api, since?: string): Promise<string> {
  let s = await api.sync({ since, timeout: 0 });
  for (let i = 0; i < 5; i++) {
    const next = await api.sync({ since: s.next_batch, timeout: 0 });
    if (next.next_batch === s.next_batch) break;
    s = next;
  }
  return s.next_batch;
}

/**
 * POST /register through user-interactive auth: the first request without
 * auth; while the server answers 401 with a session, complete the next stage
 * of a flow with `stageAuth` (default: only m.login.dummy). Returns the last
 * response (the 400/403 of a refused registration, or the 200).
 */
export async function registerRaw(
  url: string,
  body: Record<string, unknown>,
  stageAuth: (stage: string, session: string) => Record<string, unknown> | undefined = (stage, session) =>
    stage === 'm.login.dummy' ? { type: 'm.login.dummy', session } : undefined,
) {
  let r = await request(url, 'POST', `${CS}/register`, { body });
  for (let i = 0; i < 5 && r.status === 401 && typeof r.body?.session === 'string'; i++) {
    const completed: string[] = r.body.completed ?? [];
    const flows: Array<{ stages: string[] }> = r.body.flows ?? [];
    let next: Record<string, unknown> | undefined;
    for (const f of flows) {
      const remaining = f.stages.filter((s) => !completed.includes(s));
      if (remaining.length === 0) continue;
      next = stageAuth(remaining[0], r.body.session);
      if (next) break;
    }
    if (!next) break;
    r = await request(url, 'POST', `${CS}/register`, { body: { ...body, auth: next } });
  }
  return r;
}

export const passwordAuth = (user: string, password: string, session?: string) => ({
  type: 'm.login.password',
  identifier: { type: 'm.id.user', user },
  password,
  ...(session ? { session } : {}),
});

export function login(url: string, user: string, password: string, deviceName?: string) {
  return request(url, 'POST', `${CS}/login`, {
    body: { type: 'm.login.password', identifier: { type: 'm.id.user', user }, password, initial_device_display_name: deviceName },
  });
}

/** A TCP port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------- matrix-js-sdk

type LogMethod = (...args: unknown[]) => void;
const noop: LogMethod = () => {};
const silentLogger = {
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  log: noop,
  getChild: () => silentLogger,
};

/** One failed HTTP request seen by an SDK client (for diagnosing a stalled sync). */
export interface FailedRequest {
  method: string;
  path: string;
  status: number;
  body: string;
}

export interface SdkUser {
  client: sdk.MatrixClient;
  userId: string;
  /** Requests from this client that did not get a 2xx (most recent last, capped). */
  failures: FailedRequest[];
}

/** Create a matrix-js-sdk client whose logger is silent and whose failed requests are recorded. */
export function makeClient(
  baseUrl: string,
  creds: { userId?: string; accessToken?: string; deviceId?: string } = {},
): SdkUser {
  const failures: FailedRequest[] = [];
  const fetchFn: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    if (!res.ok) {
      const u = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
      const body = await res.clone().text().catch(() => '');
      failures.push({ method: init?.method ?? 'GET', path: u.pathname, status: res.status, body: body.slice(0, 300) });
      if (failures.length > 50) failures.shift();
    }
    return res;
  };
  const client = sdk.createClient({
    baseUrl,
    accessToken: creds.accessToken,
    userId: creds.userId,
    deviceId: creds.deviceId,
    fetchFn,
    logger: silentLogger,
    timelineSupport: true,
  });
  return { client, userId: creds.userId ?? '', failures };
}

export function describeFailures(u: SdkUser): string {
  if (u.failures.length === 0) return 'no failed requests';
  return u.failures.map((f) => `${f.method} ${f.path} -> ${f.status} ${f.body}`).join('\n  ');
}

/** startClient and wait for the first sync to be processed. */
export async function startAndSync(u: SdkUser, opts: sdk.IStartClientOpts = {}, timeoutMs = 10_000): Promise<void> {
  await u.client.startClient({ initialSyncLimit: 10, ...opts });
  try {
    await waitFor(
      `${u.userId}'s first sync`,
      () => {
        const s = u.client.getSyncState();
        return s === sdk.SyncState.Prepared || s === sdk.SyncState.Syncing;
      },
      { timeoutMs },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; sync state ${u.client.getSyncState()}; failed requests:\n  ${describeFailures(u)}`);
  }
}

/** Status and errcode of a rejected matrix-js-sdk call (fails if it resolved). */
export async function sdkError(p: Promise<unknown>): Promise<{ status: number; errcode: string; data: any }> {
  try {
    await p;
  } catch (err) {
    const e = err as { httpStatus?: number; errcode?: string; data?: any };
    return { status: e.httpStatus ?? 0, errcode: e.errcode ?? e.data?.errcode ?? '', data: e.data ?? {} };
  }
  throw new Error('expected the request to fail, but it succeeded');
}
