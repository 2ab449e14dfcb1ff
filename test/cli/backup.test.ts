/**
 * The backup module in-process: the SQLite copy under a steady stream of
 * writes, the S3 media case, and restore's database-kind check. The CLI
 * against a running server is covered by test/e2e/backup.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { loadConfig, type Config } from '../../src/config/config.js';
import { openStorage } from '../../src/storage/db.js';
import { BackupError, createBackup, latestSchemaVersion, restoreBackup, verifyBackup, type Progress } from '../../src/cli/backup.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ranvier-backup-unit-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A migrated SQLite database and a signing key in `dataDir`. */
async function prepare(dataDir: string, overrides: Partial<Config> = {}): Promise<Config> {
  const config = loadConfig({ env: {}, overrides: { server_name: 'unit.test', data_dir: dataDir, log_level: 'silent', ...overrides } });
  const storage = await openStorage(config.database);
  await storage.close();
  await writeFile(config.signing_key_path, 'ed25519 a_test c2VjcmV0\n');
  return config;
}

test('the SQLite copy finishes under continuous writes and holds every row committed before it started', { timeout: 30_000 }, async () => {
  await withDir(async (dir) => {
    const config = await prepare(path.join(dir, 'data'));
    const writer = new SqliteDatabase(config.database);
    writer.pragma('journal_mode = WAL');
    writer.exec('CREATE TABLE filler (id INTEGER PRIMARY KEY, blob BLOB)');
    const insert = writer.prepare('INSERT INTO filler (blob) VALUES (?)');
    // About 8 MB: several steps of the backup API, so writes land between them.
    writer.transaction(() => {
      for (let i = 0; i < 2000; i++) insert.run(Buffer.alloc(4000, i % 256));
    })();
    const before = (writer.prepare('SELECT COUNT(*) AS n FROM filler').get() as { n: number }).n;

    let writes = 0;
    const timer = setInterval(() => {
      insert.run(Buffer.alloc(100));
      writes++;
    }, 0);
    const percents: number[] = [];
    const progress: Progress = { database: (p) => percents.push(p), info: () => {} };
    try {
      const manifest = await createBackup(config, path.join(dir, 'backup'), { ranvierVersion: 'test', progress });
      assert.equal(manifest.schema_version, latestSchemaVersion());
    } finally {
      clearInterval(timer);
      writer.close();
    }
    assert.ok(writes > 0, 'the writer ran while the backup did');
    assert.equal(percents.at(-1), 100);
    assert.ok(percents.some((p) => p > 0 && p < 100), `intermediate progress was reported: ${percents.join(', ')}`);

    const copy = new SqliteDatabase(path.join(dir, 'backup', 'database.sqlite'), { readonly: true });
    try {
      const n = (copy.prepare('SELECT COUNT(*) AS n FROM filler').get() as { n: number }).n;
      assert.ok(n >= before, `${n} rows in the copy, ${before} committed before the backup`);
      assert.equal(copy.pragma('journal_mode', { simple: true }), 'delete', 'the copy is one self-contained file');
    } finally {
      copy.close();
    }
    assert.deepEqual((await verifyBackup(path.join(dir, 'backup'))).problems, []);
  });
});

test('with S3 media the manifest says media is in the bucket and copies none', async () => {
  await withDir(async (dir) => {
    const config = await prepare(path.join(dir, 'data'), {
      media_store: 's3',
      s3_bucket: 'ranvier-media',
      s3_prefix: 'prod/',
      s3_access_key_id: 'id',
      s3_secret_access_key: 'not-in-the-manifest',
    });
    const configFile = path.join(dir, 'ranvier.toml');
    await writeFile(configFile, 'server_name = "unit.test"\n');
    const manifest = await createBackup(config, path.join(dir, 'backup'), { ranvierVersion: 'test', configFile });
    assert.deepEqual(manifest.files.find((f) => f.kind === 'config')?.path, 'config.toml');
    assert.equal(await readFile(path.join(dir, 'backup', 'config.toml'), 'utf8'), 'server_name = "unit.test"\n');
    assert.equal(manifest.media.store, 's3');
    assert.equal(manifest.media.copied, false);
    assert.ok(manifest.media.store === 's3' && manifest.media.bucket === 'ranvier-media' && /not copied/.test(manifest.media.note));
    assert.equal(manifest.files.filter((f) => f.kind === 'media').length, 0);
    const text = await readFile(path.join(dir, 'backup', 'manifest.json'), 'utf8');
    assert.ok(!text.includes('not-in-the-manifest'), 'no secret in the manifest');
  });
});

test('restore refuses a SQLite backup when PostgreSQL is configured', async () => {
  await withDir(async (dir) => {
    const config = await prepare(path.join(dir, 'data'));
    await createBackup(config, path.join(dir, 'backup'), { ranvierVersion: 'test' });
    const target = loadConfig({
      env: {},
      overrides: { server_name: 'unit.test', data_dir: path.join(dir, 'target'), port: 0, database: 'postgres://nobody@127.0.0.1:1/none' },
    });
    await assert.rejects(restoreBackup(target, path.join(dir, 'backup')), (e: unknown) => e instanceof BackupError && /holds a sqlite database/.test(e.message));
  });
});
