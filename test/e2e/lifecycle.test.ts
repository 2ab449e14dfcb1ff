/**
 * Process lifecycle, on the engine under test (SQLite, or PostgreSQL with
 * RANVIER_TEST_DB=postgres):
 * - SIGTERM to a real `ranvier serve` process answers a waiting /sync
 *   long-poll and exits 0 promptly;
 * - start-up refuses a database written by a newer version (a schema_version
 *   above every known migration) with a clear message and changes nothing;
 * - a migration that fails leaves the database as it was, and is retried.
 *
 *   node --import tsx --test test/e2e/lifecycle.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { adminQuery, registerUser, testEngine, testPostgresAdminUrl } from './harness.js';
import { Api, freePort } from './util.js';
import { openStorage } from '../../src/storage/db.js';
import { MIGRATIONS, runMigrations, type Migration } from '../../src/storage/migrations/index.js';
import { SchemaTooNewError } from '../../src/storage/version-check.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A temporary data directory and an empty database of the engine under test. */
async function freshSetup(t: { after(fn: () => Promise<void>): void }): Promise<{ dataDir: string; database: string }> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ranvier-life-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  if (testEngine() !== 'postgres') return { dataDir, database: path.join(dataDir, 'ranvier.db') };
  const name = `ranvier_t_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  t.after(() => adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  const u = new URL(testPostgresAdminUrl());
  u.pathname = '/' + name;
  return { dataDir, database: u.toString() };
}

interface Proc {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string }>;
}

/** Run the CLI from source (`node --import tsx src/main.ts ...`) with only RANVIER_* settings from `env`. */
function runCli(args: string[], env: Record<string, string>): Proc {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RANVIER_')));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    cwd: ROOT,
    env: { ...clean, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string }>((resolve) => {
    child.once('exit', (code, signal) => {
      // Let the pipes drain.
      setImmediate(() => resolve({ code, signal, stderr, stdout }));
    });
  });
  return { child, exited };
}

async function waitUntilUp(url: string, proc: Proc, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  let exited = false;
  void proc.exited.then(() => (exited = true));
  while (Date.now() < deadline) {
    if (exited) {
      const r = await proc.exited;
      throw new Error(`server exited early (${r.code}): ${r.stderr}${r.stdout}`);
    }
    try {
      const res = await fetch(`${url}/_matrix/client/versions`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not start in time');
}

test('SIGTERM answers a waiting /sync long-poll and exits 0 promptly', { timeout: 60_000 }, async (t) => {
  const { dataDir, database } = await freshSetup(t);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = runCli(['serve'], {
    RANVIER_SERVER_NAME: 'localhost',
    RANVIER_ADDRESS: '127.0.0.1',
    RANVIER_PORT: String(port),
    RANVIER_DATA_DIR: dataDir,
    RANVIER_DATABASE: database,
    RANVIER_ALLOW_REGISTRATION: 'true',
    RANVIER_RATE_LIMIT_ENABLED: 'false',
    RANVIER_TRUSTED_KEY_SERVERS: '',
    RANVIER_MIN_FREE_DISK_BYTES: '0',
    RANVIER_LOG_LEVEL: 'info',
  });
  t.after(() => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
  });
  await waitUntilUp(url, proc);

  const alice = await registerUser(url, 'alice', 'pw-alice-1');
  const api = new Api(url, alice.accessToken);
  const first = await api.sync({ timeout: 0 });
  // A long-poll that would otherwise wait 30 s.
  const started = Date.now();
  const pending = api.call('GET', `/sync?since=${encodeURIComponent(first.next_batch)}&timeout=30000`);
  await new Promise((r) => setTimeout(r, 500));

  const killedAt = Date.now();
  proc.child.kill('SIGTERM');
  const poll = await pending;
  const exit = await proc.exited;
  const tookMs = Date.now() - killedAt;

  assert.equal(poll.status, 200, `the long-poll got an answer: ${JSON.stringify(poll.body)}`);
  assert.equal(typeof poll.body.next_batch, 'string');
  assert.ok(Date.now() - started < 10_000, 'the long-poll did not run to its timeout');
  assert.equal(exit.signal, null, `exited by itself, not killed: ${exit.stderr}`);
  assert.equal(exit.code, 0, `exit code 0; stderr: ${exit.stderr}`);
  assert.ok(tookMs < 5_000, `stopped promptly (${tookMs} ms)`);
  assert.match(exit.stdout, /"msg":"stopped"/, 'the shutdown completed (log line "stopped")');

  // The port is free again and the database opens cleanly.
  await assert.rejects(fetch(`${url}/_matrix/client/versions`));
  const storage = await openStorage(database);
  try {
    const users = await storage.db.selectFrom('users').select('user_id').execute();
    assert.deepEqual(users.map((u) => u.user_id), ['@alice:localhost']);
  } finally {
    await storage.close();
  }
});

test('a database written by a newer version is refused with a clear message and left unchanged', { timeout: 60_000 }, async (t) => {
  const { dataDir, database } = await freshSetup(t);
  const known = Math.max(...MIGRATIONS.map((m) => m.version));
  const future = known + 1;
  const storage = await openStorage(database);
  await sql`INSERT INTO schema_version (version, name, applied_ts) VALUES (${future}, ${'from-the-future'}, ${Date.now()})`.execute(storage.db);
  await storage.close();

  // In process: openStorage rejects with the typed error.
  const err = await openStorage(database).then(
    async (s) => {
      await s.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  assert.ok(err instanceof SchemaTooNewError, String(err));
  assert.equal(err.databaseVersion, future);
  assert.equal(err.knownVersion, known);

  // The CLI: exit 1 with the message and no stack trace.
  const proc = runCli(['serve'], {
    RANVIER_ADDRESS: '127.0.0.1',
    RANVIER_PORT: String(await freePort()),
    RANVIER_DATA_DIR: dataDir,
    RANVIER_DATABASE: database,
    RANVIER_LOG_LEVEL: 'silent',
  });
  const exit = await proc.exited;
  assert.equal(exit.code, 1, exit.stderr);
  assert.match(exit.stderr, /^ranvier: The database was written by a newer version of Ranvier \(schema version \d+; this version knows up to \d+\)/);
  assert.match(exit.stderr, /Upgrade Ranvier/);
  assert.doesNotMatch(exit.stderr, /\n\s+at /, 'no stack trace');

  // Nothing was changed: the same schema_version rows, no migration rerun.
  const raw = await openStorageRaw(database);
  try {
    const rows = await sql<{ version: number }>`SELECT version FROM schema_version ORDER BY version`.execute(raw.db);
    assert.deepEqual(rows.rows.map((r) => Number(r.version)), [...MIGRATIONS.map((m) => m.version), future].sort((a, b) => a - b));
  } finally {
    await raw.close();
  }
});

test('a failing migration leaves the database as it was, and runs again next time', { timeout: 60_000 }, async (t) => {
  const { database } = await freshSetup(t);
  const storage = await openStorage(database);
  try {
    const db = storage.db;
    const streamBefore = await db.selectFrom('counters').select('value').where('name', '=', 'stream').executeTakeFirstOrThrow();
    const version = Math.max(...MIGRATIONS.map((m) => m.version)) + 1000;
    let fail = true;
    const injected: Migration = {
      version,
      name: 'test-injected',
      async up(trx) {
        // Schema and data changes, then a failure half-way.
        await sql`CREATE TABLE half_done (x INTEGER NOT NULL)`.execute(trx);
        await sql`INSERT INTO half_done (x) VALUES (1)`.execute(trx);
        await sql`UPDATE counters SET value = value + 100 WHERE name = 'stream'`.execute(trx);
        if (fail) throw new Error('injected migration failure');
      },
    };
    await assert.rejects(runMigrations(db, storage.dialect, [...MIGRATIONS, injected]), /injected migration failure/);

    await assert.rejects(sql`SELECT x FROM half_done`.execute(db), 'the table created by the failed migration is gone');
    const streamAfter = await db.selectFrom('counters').select('value').where('name', '=', 'stream').executeTakeFirstOrThrow();
    assert.equal(Number(streamAfter.value), Number(streamBefore.value), 'its data change was rolled back');
    const recorded = await sql<{ version: number }>`SELECT version FROM schema_version WHERE version = ${version}`.execute(db);
    assert.equal(recorded.rows.length, 0, 'not recorded as applied');

    // Fixed (here: no longer failing), it is applied on the next start.
    fail = false;
    assert.equal(await runMigrations(db, storage.dialect, [...MIGRATIONS, injected]), 1);
    const rows = await sql<{ x: number }>`SELECT x FROM half_done`.execute(db);
    assert.deepEqual(rows.rows.map((r) => Number(r.x)), [1]);
    assert.equal(await runMigrations(db, storage.dialect, [...MIGRATIONS, injected]), 0, 'applied once only');
  } finally {
    await storage.close();
  }
});

/** Open a database without running (or checking) migrations, to inspect it as it is. */
async function openStorageRaw(database: string) {
  const { Kysely, PostgresDialect, SqliteDialect } = await import('kysely');
  if (/^postgres/.test(database)) {
    const { default: pg } = await import('pg');
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: database, max: 1 }) }) });
    return { db, close: () => db.destroy() };
  }
  const { default: Sqlite } = await import('better-sqlite3');
  const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: new Sqlite(database, { readonly: true }) }) });
  return { db, close: () => db.destroy() };
}
