/**
 * Helpers for integration tests: start a real server on a random port with
 * its own temporary data directory (and, with RANVIER_TEST_DB=postgres, its
 * own fresh PostgreSQL database), and register users over HTTP.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig, type Config } from '../../src/config/config.js';
import { silentLogger, createLogger } from '../../src/server/logging.js';
import type { Context } from '../../src/server/services.js';
import { startServer } from '../../src/server/start.js';

export interface TestServer {
  /** Base URL without trailing slash, e.g. http://127.0.0.1:41234 */
  url: string;
  /** https base URL of the TLS listener, when started with federation_tls_port. */
  federationUrl?: string;
  serverName: string;
  ctx: Context;
  config: Config;
  close(): Promise<void>;
}

export type TestEngine = 'sqlite' | 'postgres';

export function testEngine(): TestEngine {
  const e = (process.env.RANVIER_TEST_DB ?? 'sqlite').toLowerCase();
  if (e !== 'sqlite' && e !== 'postgres') throw new Error(`RANVIER_TEST_DB must be sqlite or postgres, not ${e}`);
  return e;
}

/**
 * The maintenance database the harness connects to in order to create and
 * drop per-server databases. Default postgres://<os user>@127.0.0.1:5432/test;
 * override with RANVIER_TEST_PG_URL.
 */
export function testPostgresAdminUrl(): string {
  if (process.env.RANVIER_TEST_PG_URL) return process.env.RANVIER_TEST_PG_URL;
  return `postgres://${encodeURIComponent(os.userInfo().username)}@127.0.0.1:5432/test`;
}

function withDatabase(url: string, dbName: string): string {
  const u = new URL(url);
  u.pathname = '/' + dbName;
  return u.toString();
}

/** Run one statement against the PostgreSQL admin database (CREATE/DROP DATABASE). */
export async function adminQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: testPostgresAdminUrl(), connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/**
 * Start a server for a test. Defaults: server_name 'localhost', 127.0.0.1 on
 * port 0, registration open, rate limits off, log level silent (set
 * RANVIER_TEST_LOG=debug to see the server's log), data in a temporary
 * directory removed at close.
 */
export async function startTestServer(overrides: Partial<Config> = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ranvier-test-'));
  let dbName: string | undefined;
  const cleanups: Array<() => Promise<void>> = [() => rm(dataDir, { recursive: true, force: true })];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    cleanups.length = 0;
  };

  try {
    let database: string | undefined;
    if (overrides.database === undefined && testEngine() === 'postgres') {
      dbName = `ranvier_t_${randomBytes(6).toString('hex')}`;
      await adminQuery(`CREATE DATABASE ${dbName}`);
      const name = dbName;
      cleanups.push(() => adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
      database = withDatabase(testPostgresAdminUrl(), dbName);
    }

    const config = loadConfig({
      env: {},
      overrides: {
        server_name: 'localhost',
        address: '127.0.0.1',
        port: 0,
        allow_registration: true,
        rate_limit_enabled: false,
        // Tests never reach the public network; remote keys come from the servers themselves.
        trusted_key_servers: '',
        // A small CI disk must not refuse the tests' writes (disk-guard.test.ts sets its own floor).
        min_free_disk_bytes: 0,
        log_level: 'silent',
        data_dir: dataDir,
        ...(database ? { database } : {}),
        ...overrides,
      },
    });
    const logLevel = process.env.RANVIER_TEST_LOG;
    const log = logLevel ? createLogger({ log_level: logLevel }) : config.log_level === 'silent' ? silentLogger() : createLogger(config);
    const server = await startServer(config, { log });

    let closed: Promise<void> | undefined;
    return {
      url: server.url,
      federationUrl: server.federationUrl,
      serverName: config.server_name,
      ctx: server.ctx,
      config: server.ctx.config,
      close: () =>
        (closed ??= (async () => {
          try {
            await server.close();
          } finally {
            await cleanup();
          }
        })()),
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

export interface RegisteredUser {
  userId: string;
  accessToken: string;
  deviceId: string;
}

/**
 * Register `name` with `password` through the Client-Server API, completing
 * user-interactive auth with m.login.dummy (first request: 401 with a
 * session; second: the same body plus auth).
 */
export async function registerUser(url: string, name: string, password: string): Promise<RegisteredUser> {
  const endpoint = `${url}/_matrix/client/v3/register`;
  const body: Record<string, unknown> = { username: name, password, initial_device_display_name: 'test' };
  let res = await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  let json = (await res.json()) as Record<string, unknown>;
  if (res.status === 401 && typeof json.session === 'string') {
    body.auth = { type: 'm.login.dummy', session: json.session };
    res = await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    json = (await res.json()) as Record<string, unknown>;
  }
  if (res.status !== 200) throw new Error(`register ${name} failed: ${res.status} ${JSON.stringify(json)}`);
  return { userId: json.user_id as string, accessToken: json.access_token as string, deviceId: json.device_id as string };
}

/**
 * A small authenticated JSON request helper for tests that want raw HTTP:
 * returns the status and parsed body (undefined for an empty body).
 */
export async function request(
  url: string,
  method: string,
  pathAndQuery: string,
  opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] ??= 'application/json';
  const res = await fetch(url + pathAndQuery, {
    method,
    headers,
    body: opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}
