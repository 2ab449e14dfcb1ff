/**
 * `ranvier backup`, `backup verify` and `restore`, run as the real CLI
 * (`node --import tsx src/main.ts ...`) against a running test server that
 * keeps receiving messages during the backup.
 *
 *   RANVIER_TEST_DB=sqlite node --import tsx --test test/e2e/backup.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { adminQuery, registerUser, startTestServer, testEngine, testPostgresAdminUrl, type TestServer } from './harness.js';
import { Api, enc, request } from './util.js';
import { latestSchemaVersion, type Manifest } from '../../src/cli/backup.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const postgres = testEngine() === 'postgres';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), RANVIER_LOG_LEVEL: 'silent', RANVIER_MIN_FREE_DISK_BYTES: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    proc.on('error', reject);
    proc.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const show = (r: CliResult) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

/** A new, empty PostgreSQL database (dropped in after()). */
async function freshPostgres(created: string[]): Promise<string> {
  const name = `ranvier_t_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  created.push(name);
  const u = new URL(testPostgresAdminUrl());
  u.pathname = '/' + name;
  return u.toString();
}

async function allMessageIds(api: Api, roomId: string): Promise<string[]> {
  const ids: string[] = [];
  let from: string | undefined;
  for (let page = 0; page < 200; page++) {
    const r = await api.messages(roomId, { dir: 'b', limit: 100, from });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    for (const e of r.body.chunk) if (e.type === 'm.room.message') ids.push(e.event_id);
    if (!r.body.end || r.body.chunk.length === 0) break;
    from = r.body.end;
  }
  return ids;
}

async function flipByte(file: string, at?: number): Promise<void> {
  const buf = await readFile(file);
  const i = at ?? Math.floor(buf.length / 2);
  buf[i] ^= 0xff;
  await writeFile(file, buf);
}

describe('backup and restore', { timeout: 360_000 }, () => {
  let root: string;
  let source: TestServer;
  let sourceEnv: Record<string, string>;
  const databases: string[] = [];
  const servers: TestServer[] = [];
  let backupDir: string;
  let manifest: Manifest;
  let token: string;
  let roomId: string;
  let mediaId: string;
  const mediaBytes = randomBytes(4096);

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'ranvier-backup-test-'));
    const dataDir = path.join(root, 'source');
    source = await startTestServer({ data_dir: dataDir });
    servers.push(source);
    // The same settings the server runs with, its listener included (restore checks it is stopped).
    sourceEnv = {
      RANVIER_SERVER_NAME: 'localhost',
      RANVIER_DATA_DIR: dataDir,
      RANVIER_DATABASE: source.config.database,
      RANVIER_PORT: new URL(source.url).port,
    };
    backupDir = path.join(root, 'backup');
  });

  after(async () => {
    for (const s of servers) await s.close().catch(() => {});
    for (const name of databases) await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    await rm(root, { recursive: true, force: true });
  });

  test('online backup while messages are sent; everything acknowledged before it is restored', async () => {
    const user = await registerUser(source.url, 'keeper', 'backup password');
    token = user.accessToken;
    const api = new Api(source.url, token);
    roomId = await api.createRoom({ preset: 'private_chat', name: 'Backed up' });
    const up = await fetch(`${source.url}/_matrix/media/v3/upload?filename=blob.bin`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
      body: mediaBytes,
    });
    assert.equal(up.status, 200);
    const contentUri = ((await up.json()) as { content_uri: string }).content_uri;
    mediaId = contentUri.split('/').pop()!;
    await api.send(roomId, { msgtype: 'm.file', body: 'blob.bin', url: contentUri });

    // Continuous senders: three concurrent loops until the backup is done.
    const acked: string[] = [];
    let sending = true;
    let n = 0;
    const failures: string[] = [];
    const loop = async () => {
      while (sending) {
        const i = n++;
        const r = await request(source.url, 'PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/b${i}`, {
          token,
          body: { msgtype: 'm.text', body: `message ${i}` },
        });
        if (r.status === 200) acked.push(r.body.event_id);
        else failures.push(`${r.status} ${JSON.stringify(r.body)}`);
      }
    };
    const loops = [loop(), loop(), loop()];
    while (acked.length < 40) await new Promise((r) => setTimeout(r, 10));

    const ackedBefore = [...acked];
    let backup: CliResult;
    try {
      backup = await runCli(['backup', backupDir], sourceEnv);
    } finally {
      sending = false;
      await Promise.all(loops);
    }
    assert.equal(backup.code, 0, show(backup));
    assert.deepEqual(failures, [], 'the server kept accepting messages during the backup');
    assert.ok(acked.length > ackedBefore.length, `messages were acknowledged while the backup ran (${ackedBefore.length} before, ${acked.length} in all)`);
    if (postgres) assert.match(backup.stderr, /pg_dump --format=custom/);
    else assert.match(backup.stderr, /database 100%/, 'progress as plain percentage lines when stderr is not a terminal');

    manifest = JSON.parse(await readFile(path.join(backupDir, 'manifest.json'), 'utf8')) as Manifest;
    assert.equal(manifest.server_name, 'localhost');
    assert.equal(manifest.database, postgres ? 'postgres' : 'sqlite');
    assert.equal(manifest.schema_version, latestSchemaVersion());
    assert.equal(manifest.format_version, 1);
    assert.equal(typeof manifest.ranvier_version, 'string');
    assert.ok(Math.abs(Date.now() - manifest.created_ts) < 120_000);
    const paths = manifest.files.map((f) => f.path);
    assert.ok(paths.includes(postgres ? 'database.pgdump' : 'database.sqlite'), paths.join());
    assert.ok(paths.includes('signing.key'));
    const media = manifest.files.filter((f) => f.kind === 'media');
    assert.equal(media.length, 1, 'the uploaded file is in the backup');
    assert.equal(media[0].size, mediaBytes.length);
    for (const f of manifest.files) assert.match(f.sha256, /^[0-9a-f]{64}$/);

    const verify = await runCli(['backup', 'verify', backupDir], {});
    assert.equal(verify.code, 0, show(verify));
    assert.match(verify.stdout, /backup OK/);

    // Restore into a fresh data directory (and database), start a server there.
    const restoredDir = path.join(root, 'restored');
    const restoreEnv: Record<string, string> = { RANVIER_SERVER_NAME: 'localhost', RANVIER_DATA_DIR: restoredDir };
    if (postgres) restoreEnv.RANVIER_DATABASE = await freshPostgres(databases);
    const restore = await runCli(['restore', backupDir], restoreEnv);
    assert.equal(restore.code, 0, show(restore));

    // A second restore onto the now-populated target is refused without --force.
    const again = await runCli(['restore', backupDir], restoreEnv);
    assert.equal(again.code, 1, show(again));
    assert.match(again.stderr, postgres ? /not empty.*--force/ : /already exists.*--force/);

    const restored = await startTestServer({ data_dir: restoredDir, ...(postgres ? { database: restoreEnv.RANVIER_DATABASE } : {}) });
    servers.push(restored);
    const api2 = new Api(restored.url, token);
    const ids = await allMessageIds(api2, roomId);
    const missing = ackedBefore.filter((id) => !ids.includes(id));
    assert.deepEqual(missing, [], `${missing.length} of ${ackedBefore.length} messages acknowledged before the backup started are missing`);

    const dl = await fetch(`${restored.url}/_matrix/client/v1/media/download/localhost/${mediaId}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(dl.status, 200);
    assert.ok(Buffer.from(await dl.arrayBuffer()).equals(mediaBytes), 'media restored byte for byte');

    const keysOf = async (s: TestServer) => ((await request(s.url, 'GET', '/_matrix/key/v2/server')).body as { verify_keys: unknown }).verify_keys;
    assert.deepEqual(await keysOf(restored), await keysOf(source), 'the restored server signs with the same key');

    // The restored server works: a new message goes through.
    assert.match(await api2.send(roomId, 'after restore'), /^\$/);
    await restored.close();
  });

  test('backup refuses a non-empty directory unless --force', async () => {
    assert.ok(manifest, 'needs the backup from the first test');
    const refused = await runCli(['backup', backupDir], sourceEnv);
    assert.equal(refused.code, 1, show(refused));
    assert.match(refused.stderr, /not empty.*--force/);
    if (postgres) {
      const noTools = await runCli(['backup', path.join(root, 'no-pg-dump')], { ...sourceEnv, PATH: path.join(root, 'empty-path') });
      assert.equal(noTools.code, 1, show(noTools));
      assert.match(noTools.stderr, /pg_dump not found on PATH: install the PostgreSQL client tools/);
    }
    const forced = await runCli(['backup', backupDir, '--force'], sourceEnv);
    assert.equal(forced.code, 0, show(forced));
    const verify = await runCli(['backup', 'verify', backupDir], {});
    assert.equal(verify.code, 0, show(verify));
  });

  test('backup verify names a corrupted or missing file and exits 1', async () => {
    assert.ok(manifest, 'needs the backup from the first test');
    const dbFile = postgres ? 'database.pgdump' : 'database.sqlite';
    const mediaFile = manifest.files.find((f) => f.kind === 'media')!.path;

    const flippedDb = path.join(root, 'flipped-db');
    await cp(backupDir, flippedDb, { recursive: true });
    await flipByte(path.join(flippedDb, dbFile));
    let r = await runCli(['backup', 'verify', flippedDb], {});
    assert.equal(r.code, 1, show(r));
    assert.ok(r.stderr.includes(`${dbFile}: SHA-256 mismatch`), show(r));

    const flippedMedia = path.join(root, 'flipped-media');
    await cp(backupDir, flippedMedia, { recursive: true });
    await flipByte(path.join(flippedMedia, mediaFile), 0);
    r = await runCli(['backup', 'verify', flippedMedia], {});
    assert.equal(r.code, 1, show(r));
    assert.ok(r.stderr.includes(`${mediaFile}: SHA-256 mismatch`), show(r));
    assert.ok(!r.stderr.includes(dbFile), 'only the damaged file is named');

    const missing = path.join(root, 'missing');
    await cp(backupDir, missing, { recursive: true });
    await rm(path.join(missing, 'signing.key'));
    r = await runCli(['backup', 'verify', missing], {});
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /signing\.key: missing/);

    // A manifest may not smuggle other paths in as media (restore writes media by its paths).
    const smuggled = path.join(root, 'smuggled');
    await cp(backupDir, smuggled, { recursive: true });
    const sm = JSON.parse(await readFile(path.join(smuggled, 'manifest.json'), 'utf8')) as Manifest;
    sm.files.find((f) => f.path === 'signing.key')!.kind = 'media';
    await writeFile(path.join(smuggled, 'manifest.json'), JSON.stringify(sm));
    r = await runCli(['backup', 'verify', smuggled], {});
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /signing\.key: unexpected kind "media"/);

    const noManifest = path.join(root, 'no-manifest');
    await cp(backupDir, noManifest, { recursive: true });
    await rm(path.join(noManifest, 'manifest.json'));
    r = await runCli(['backup', 'verify', noManifest], {});
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /manifest\.json is missing/);

    if (!postgres) {
      // A copy whose checksum was updated to match the damage still fails integrity_check.
      const rewritten = path.join(root, 'rewritten');
      await cp(backupDir, rewritten, { recursive: true });
      const file = path.join(rewritten, dbFile);
      const buf = await readFile(file);
      buf.fill(0x41, 4096 * 2, 4096 * 3); // page 3: a table's b-tree page, overwritten with garbage
      await writeFile(file, buf);
      const { sha256File } = await import('../../src/cli/backup.js');
      const m = JSON.parse(await readFile(path.join(rewritten, 'manifest.json'), 'utf8')) as Manifest;
      m.files.find((f) => f.path === dbFile)!.sha256 = await sha256File(file);
      await writeFile(path.join(rewritten, 'manifest.json'), JSON.stringify(m));
      r = await runCli(['backup', 'verify', rewritten], {});
      assert.equal(r.code, 1, show(r));
      assert.match(r.stderr, /database\.sqlite: (integrity_check|cannot be read)/);
    }
  });

  test('restore refuses a damaged backup, another server_name, a newer schema, and a running server', async () => {
    assert.ok(manifest, 'needs the backup from the first test');
    const target = path.join(root, 'refused');
    const env: Record<string, string> = { RANVIER_SERVER_NAME: 'localhost', RANVIER_DATA_DIR: target };
    if (postgres) env.RANVIER_DATABASE = await freshPostgres(databases);

    const damaged = path.join(root, 'damaged');
    await cp(backupDir, damaged, { recursive: true });
    const mediaFile = manifest.files.find((f) => f.kind === 'media')!.path;
    await flipByte(path.join(damaged, mediaFile));
    let r = await runCli(['restore', damaged], env);
    assert.equal(r.code, 1, show(r));
    assert.ok(r.stderr.includes('damaged') && r.stderr.includes(mediaFile), show(r));
    assert.equal(existsSync(path.join(target, 'ranvier.db')), false, 'nothing was restored');
    assert.equal(existsSync(path.join(target, 'signing.key')), false, 'nothing was restored');

    r = await runCli(['restore', backupDir], { ...env, RANVIER_SERVER_NAME: 'other.example' });
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /backup is of server localhost.*configured as other\.example/);
    assert.equal(existsSync(path.join(target, 'signing.key')), false, 'nothing was restored');

    const newer = path.join(root, 'newer');
    await cp(backupDir, newer, { recursive: true });
    const m = JSON.parse(await readFile(path.join(newer, 'manifest.json'), 'utf8')) as Manifest;
    m.schema_version = latestSchemaVersion() + 1;
    await writeFile(path.join(newer, 'manifest.json'), JSON.stringify(m));
    r = await runCli(['restore', newer], env);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /schema version \d+, newer than this Ranvier knows/);

    // The source server is still running on its data directory.
    const before = (await stat(source.config.signing_key_path)).mtimeMs;
    r = await runCli(['restore', backupDir, '--force'], sourceEnv);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /(in use|a server answers on 127\.0\.0\.1:\d+) \(is (the server|Ranvier) running\?\)/);

    // Without the listener probe (port 0), the database itself shows it is in use: SQLite's lock,
    // or on PostgreSQL another session (held here, since an idle server's pool may have none open).
    const holder = postgres ? new pg.Client({ connectionString: source.config.database }) : undefined;
    await holder?.connect();
    try {
      r = await runCli(['restore', backupDir, '--force'], { ...sourceEnv, RANVIER_PORT: '0' });
    } finally {
      await holder?.end();
    }
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, postgres ? /PostgreSQL database is in use/ : /database .*ranvier\.db is in use/);
    assert.equal((await stat(source.config.signing_key_path)).mtimeMs, before, 'the running server was left alone');
    const who = await request(source.url, 'GET', '/_matrix/client/v3/account/whoami', { token });
    assert.equal(who.status, 200, 'the running server still works');
  });
});
