/**
 * `ranvier backup DIR`, `ranvier backup verify DIR` and `ranvier restore DIR`.
 *
 * A backup is a directory:
 *
 *   database.sqlite | database.pgdump   consistent copy of the database
 *   signing.key                         the server's signing key
 *   config.toml                         the configuration file, when one is used
 *   media/ab/cd/<sha256>                the local media store (not for S3)
 *   manifest.json                       written last: what is here, with checksums
 *
 * The manifest is written last, so a directory without one is an interrupted
 * backup, never mistaken for a complete one. The database is copied before the
 * media: media files are content-addressed and immutable once in place, so
 * every file the database copy refers to is already in the store when the
 * media walk starts (unless retention deleted it in between).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { isPostgresUrl, type Config } from '../config/config.js';
import { MIGRATIONS } from '../storage/migrations/index.js';

export const MANIFEST = 'manifest.json';
export const FORMAT_VERSION = 1;
const SQLITE_FILE = 'database.sqlite';
const PGDUMP_FILE = 'database.pgdump';
const SIGNING_KEY_FILE = 'signing.key';
const CONFIG_FILE = 'config.toml';
const MEDIA_DIR = 'media';
const HEX64 = /^[0-9a-f]{64}$/;
const MEDIA_PATH = /^media\/([0-9a-f]{2})\/([0-9a-f]{2})\/(\1\2[0-9a-f]{60})$/;
const KINDS: readonly FileKind[] = ['database', 'signing_key', 'config', 'media'];

/** A failure whose message is meant for the operator. */
export class BackupError extends Error {}

export type FileKind = 'database' | 'signing_key' | 'config' | 'media';

export interface ManifestFile {
  path: string;
  kind: FileKind;
  size: number;
  sha256: string;
}

export interface Manifest {
  format: 'ranvier-backup';
  format_version: number;
  ranvier_version: string;
  schema_version: number;
  server_name: string;
  created_ts: number;
  database: 'sqlite' | 'postgres';
  media: { store: 'local'; copied: true } | { store: 's3'; copied: false; bucket: string; prefix: string; note: string };
  files: ManifestFile[];
}

export interface Progress {
  /** Called with 0..100 while the database is copied. */
  database(percent: number): void;
  info(message: string): void;
}

export const quietProgress: Progress = { database: () => {}, info: () => {} };

/** Progress on stderr: a redrawn bar on a terminal, plain lines otherwise (logs, CI). */
export function stderrProgress(): Progress {
  const tty = process.stderr.isTTY === true;
  let last = -1;
  return {
    database(percent) {
      const p = Math.floor(percent);
      if (p === last) return;
      last = p;
      if (tty) {
        const width = 30;
        const done = Math.round((p / 100) * width);
        process.stderr.write(`\rdatabase [${'#'.repeat(done)}${' '.repeat(width - done)}] ${String(p).padStart(3)}%${p === 100 ? '\n' : ''}`);
      } else {
        process.stderr.write(`database ${p}%\n`);
      }
    },
    info(message) {
      process.stderr.write(message + '\n');
    },
  };
}

export function latestSchemaVersion(): number {
  return Math.max(...MIGRATIONS.map((m) => m.version));
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function describe(dir: string, rel: string, kind: FileKind): Promise<ManifestFile> {
  const abs = path.join(dir, rel);
  const st = await stat(abs);
  return { path: rel, kind, size: st.size, sha256: await sha256File(abs) };
}

/** Copy, then flush, so the manifest never vouches for bytes still only in the page cache. */
async function copyDurably(from: string, to: string): Promise<void> {
  await mkdir(path.dirname(to), { recursive: true });
  await copyFile(from, to);
  const fh = await open(to, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function mediaRoot(config: Config): string {
  return config.media_store_path || path.join(config.data_dir, 'media');
}

/** Relative paths ab/cd/<sha256> of every complete file in a local media store (tmp/ is skipped). */
async function listMedia(root: string): Promise<string[]> {
  const out: string[] = [];
  const entries = async (dir: string) => readdir(dir, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [];
    throw e;
  });
  for (const a of await entries(root)) {
    if (!a.isDirectory() || !/^[0-9a-f]{2}$/.test(a.name)) continue;
    for (const b of await entries(path.join(root, a.name))) {
      if (!b.isDirectory() || !/^[0-9a-f]{2}$/.test(b.name)) continue;
      for (const f of await entries(path.join(root, a.name, b.name))) {
        if (f.isFile() && HEX64.test(f.name) && f.name.startsWith(a.name + b.name)) out.push(path.join(a.name, b.name, f.name));
      }
    }
  }
  return out.sort();
}

/**
 * The connection URL without its password, which goes to the PostgreSQL
 * tools through PGPASSWORD so it never shows up in `ps`.
 */
function pgConnection(url: string): { url: string; env: NodeJS.ProcessEnv } {
  const u = new URL(url);
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (u.password) {
    env.PGPASSWORD = decodeURIComponent(u.password);
    u.password = '';
  }
  return { url: u.toString(), env };
}

/** Run a PostgreSQL client tool; a missing tool gets a message saying what to install. */
function runPgTool(tool: 'pg_dump' | 'pg_restore', args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT'
          ? new BackupError(`${tool} not found on PATH: install the PostgreSQL client tools (same major version as the server, or newer)`)
          : new BackupError(`cannot run ${tool}: ${err.message}`),
      );
    });
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new BackupError(`${tool} failed (exit ${code}): ${stderr.trim()}`));
    });
  });
}

async function postgresQuery<T>(url: string, text: string): Promise<T[]> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return (await client.query(text)).rows as T[];
  } finally {
    await client.end();
  }
}

function sqliteSchemaVersion(file: string): number {
  const db = new SqliteDatabase(file, { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null };
    return Number(row.v ?? 0);
  } finally {
    db.close();
  }
}

/**
 * Online copy through SQLite's backup API. Between steps SQLite releases its
 * read lock, and a write by the running server restarts the copy; under a
 * steady stream of writes, the copy falls back to one step (one read
 * transaction) so it always finishes.
 */
async function backupSqlite(source: string, dest: string, progress: Progress): Promise<void> {
  if (!existsSync(source)) throw new BackupError(`database ${source} does not exist`);
  const db = new SqliteDatabase(source, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    let lastRemaining = Infinity;
    let restarts = 0;
    progress.database(0);
    await db.backup(dest, {
      progress({ totalPages, remainingPages }) {
        if (remainingPages > lastRemaining) restarts++;
        lastRemaining = remainingPages;
        progress.database(totalPages === 0 ? 100 : ((totalPages - remainingPages) / totalPages) * 100);
        return restarts >= 2 ? Math.max(totalPages, 1) : 1000;
      },
    });
    progress.database(100);
  } finally {
    db.close();
  }
  // A self-contained file (no -wal beside it) is easier to check, move and restore.
  const copy = new SqliteDatabase(dest);
  try {
    copy.pragma('journal_mode = DELETE');
  } finally {
    copy.close();
  }
}

export interface BackupOptions {
  force?: boolean;
  /** The configuration file in use, copied into the backup. */
  configFile?: string;
  ranvierVersion: string;
  progress?: Progress;
}

async function isEmptyDir(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw e;
  }
}

export async function createBackup(config: Config, dir: string, opts: BackupOptions): Promise<Manifest> {
  const progress = opts.progress ?? quietProgress;
  if (!(await isEmptyDir(dir))) {
    if (!opts.force) throw new BackupError(`${dir} is not empty; choose an empty directory or pass --force to overwrite`);
    // Gone first: an interrupted overwrite must not look like a complete backup.
    await rm(path.join(dir, MANIFEST), { force: true });
    for (const f of [SQLITE_FILE, PGDUMP_FILE, SIGNING_KEY_FILE, CONFIG_FILE]) await rm(path.join(dir, f), { force: true });
  }
  // The backup holds the signing key and maybe secrets from the config file.
  await mkdir(dir, { recursive: true, mode: 0o700 });

  const files: ManifestFile[] = [];
  let schemaVersion: number;
  const postgres = isPostgresUrl(config.database);
  if (postgres) {
    const conn = pgConnection(config.database);
    const rows = await postgresQuery<{ v: number | null }>(config.database, 'SELECT MAX(version) AS v FROM schema_version');
    schemaVersion = Number(rows[0]?.v ?? 0);
    progress.info('database: pg_dump --format=custom');
    await runPgTool('pg_dump', ['--format=custom', `--file=${path.join(dir, PGDUMP_FILE)}`, `--dbname=${conn.url}`], conn.env);
    files.push(await describe(dir, PGDUMP_FILE, 'database'));
  } else {
    const dest = path.join(dir, SQLITE_FILE);
    await backupSqlite(config.database, dest, progress);
    schemaVersion = sqliteSchemaVersion(dest);
    files.push(await describe(dir, SQLITE_FILE, 'database'));
  }

  if (!existsSync(config.signing_key_path)) throw new BackupError(`signing key ${config.signing_key_path} does not exist`);
  await copyDurably(config.signing_key_path, path.join(dir, SIGNING_KEY_FILE));
  await chmod(path.join(dir, SIGNING_KEY_FILE), 0o600);
  files.push(await describe(dir, SIGNING_KEY_FILE, 'signing_key'));

  if (opts.configFile) {
    await copyDurably(opts.configFile, path.join(dir, CONFIG_FILE));
    await chmod(path.join(dir, CONFIG_FILE), 0o600);
    files.push(await describe(dir, CONFIG_FILE, 'config'));
  }

  let media: Manifest['media'];
  if (config.media_store === 's3') {
    media = {
      store: 's3',
      copied: false,
      bucket: config.s3_bucket,
      prefix: config.s3_prefix,
      note: 'Media lives in the S3 bucket and is not copied by ranvier backup; back the bucket up with your storage provider.',
    };
    progress.info(`media: in S3 bucket ${config.s3_bucket}, not copied`);
  } else {
    media = { store: 'local', copied: true };
    const root = mediaRoot(config);
    const wanted = new Set<string>();
    let copied = 0;
    for (const rel of await listMedia(root)) {
      const sha = path.basename(rel);
      const dest = path.join(dir, MEDIA_DIR, rel);
      // Content-addressed: a file already in the backup under its own hash is this file.
      const reuse = existsSync(dest) && (await sha256File(dest)) === sha;
      if (!reuse) {
        try {
          await copyDurably(path.join(root, rel), dest);
          copied++;
        } catch (e) {
          // Deleted (retention, admin purge) after the listing: not in the backup.
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw e;
        }
      }
      wanted.add(rel);
      files.push(await describe(dir, path.join(MEDIA_DIR, rel), 'media'));
    }
    // Left over from the backup this one overwrites (--force).
    for (const rel of await listMedia(path.join(dir, MEDIA_DIR))) {
      if (!wanted.has(rel)) await rm(path.join(dir, MEDIA_DIR, rel), { force: true });
    }
    progress.info(`media: ${wanted.size} files (${copied} copied, ${wanted.size - copied} already in the backup)`);
  }

  const manifest: Manifest = {
    format: 'ranvier-backup',
    format_version: FORMAT_VERSION,
    ranvier_version: opts.ranvierVersion,
    schema_version: schemaVersion,
    server_name: config.server_name,
    created_ts: Date.now(),
    database: postgres ? 'postgres' : 'sqlite',
    media,
    files,
  };
  const tmp = path.join(dir, MANIFEST + '.tmp');
  await writeFile(tmp, JSON.stringify(manifest, null, 2) + '\n', { flush: true });
  await rename(tmp, path.join(dir, MANIFEST));
  return manifest;
}

/** A path from the manifest that stays inside the backup directory. */
function safeRelative(p: unknown): p is string {
  if (typeof p !== 'string' || p === '' || path.isAbsolute(p) || p.includes('\0')) return false;
  const norm = path.normalize(p);
  return norm === p && !norm.split(path.sep).includes('..');
}

export interface VerifyResult {
  manifest?: Manifest;
  problems: string[];
}

export async function readManifest(dir: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(path.join(dir, MANIFEST), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new BackupError(`${MANIFEST} is missing: not a backup, or an interrupted one`);
    throw e;
  }
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch (e) {
    throw new BackupError(`${MANIFEST} is not valid JSON: ${(e as Error).message}`);
  }
  if (m?.format !== 'ranvier-backup' || !Array.isArray(m.files)) throw new BackupError(`${MANIFEST} is not a Ranvier backup manifest`);
  if (m.format_version !== FORMAT_VERSION) throw new BackupError(`${MANIFEST}: unsupported format_version ${String(m.format_version)} (this Ranvier reads ${FORMAT_VERSION})`);
  if (typeof m.server_name !== 'string' || !Number.isInteger(m.schema_version) || (m.database !== 'sqlite' && m.database !== 'postgres')) {
    throw new BackupError(`${MANIFEST} lacks server_name, schema_version or database`);
  }
  return m;
}

function sqliteIntegrity(file: string): string[] {
  let db: SqliteDatabase.Database | undefined;
  try {
    db = new SqliteDatabase(file, { readonly: true, fileMustExist: true });
    const rows = db.prepare('PRAGMA integrity_check').all() as Array<{ integrity_check: string }>;
    const bad = rows.map((r) => r.integrity_check).filter((r) => r !== 'ok');
    return bad.slice(0, 10).map((r) => `${SQLITE_FILE}: integrity_check: ${r}`);
  } catch (e) {
    return [`${SQLITE_FILE}: cannot be read as a SQLite database: ${(e as Error).message}`];
  } finally {
    db?.close();
  }
}

/** Whether pg_restore can read the archive's table of contents; skipped when pg_restore is not installed. */
async function pgDumpReadable(file: string): Promise<string[]> {
  try {
    await runPgTool('pg_restore', ['--list', file], process.env);
    return [];
  } catch (e) {
    if (e instanceof BackupError && /not found on PATH/.test(e.message)) return [];
    return [`${PGDUMP_FILE}: pg_restore cannot read it: ${(e as Error).message}`];
  }
}

/** Every problem with the backup in `dir`; empty means it is complete and intact. */
export async function verifyBackup(dir: string): Promise<VerifyResult> {
  let manifest: Manifest;
  try {
    manifest = await readManifest(dir);
  } catch (e) {
    if (e instanceof BackupError) return { problems: [e.message] };
    throw e;
  }
  const problems: string[] = [];
  const listed = new Set<string>();
  for (const f of manifest.files) {
    if (!safeRelative(f?.path)) {
      problems.push(`${MANIFEST}: unsafe or invalid file path ${JSON.stringify(f?.path)}`);
      continue;
    }
    // Restore writes media files by these paths: nothing else may pass as media.
    if (!KINDS.includes(f.kind) || (f.kind === 'media') !== MEDIA_PATH.test(f.path)) {
      problems.push(`${f.path}: unexpected kind ${JSON.stringify(f.kind)} for this path`);
      continue;
    }
    listed.add(f.path);
    const abs = path.join(dir, f.path);
    let size: number;
    try {
      size = (await stat(abs)).size;
    } catch {
      problems.push(`${f.path}: missing`);
      continue;
    }
    if (size !== f.size) problems.push(`${f.path}: size ${size}, expected ${f.size}`);
    const sha = await sha256File(abs);
    if (sha !== f.sha256) problems.push(`${f.path}: SHA-256 mismatch (file is corrupted or was changed)`);
    else if (f.kind === 'media' && path.basename(f.path) !== sha) problems.push(`${f.path}: content does not match its name`);
  }
  const dbFile = manifest.database === 'sqlite' ? SQLITE_FILE : PGDUMP_FILE;
  if (!manifest.files.some((f) => f.path === dbFile && f.kind === 'database')) problems.push(`${dbFile}: required but not listed in ${MANIFEST}`);
  if (!manifest.files.some((f) => f.path === SIGNING_KEY_FILE && f.kind === 'signing_key')) problems.push(`${SIGNING_KEY_FILE}: required but not listed in ${MANIFEST}`);
  // Only when the checksum matched: a byte-flipped copy already has its problem named.
  if (manifest.database === 'sqlite' && listed.has(SQLITE_FILE) && !problems.some((p) => p.startsWith(SQLITE_FILE + ':'))) {
    problems.push(...sqliteIntegrity(path.join(dir, SQLITE_FILE)));
  }
  if (manifest.database === 'postgres' && listed.has(PGDUMP_FILE) && !problems.some((p) => p.startsWith(PGDUMP_FILE + ':'))) {
    problems.push(...(await pgDumpReadable(path.join(dir, PGDUMP_FILE))));
  }
  return { manifest, problems };
}

export interface RestoreOptions {
  force?: boolean;
  progress?: Progress;
}

/**
 * Whether another connection has the SQLite database open. The running
 * server keeps it open in WAL mode, and leaving WAL mode needs every other
 * connection gone, so the switch fails with SQLITE_BUSY while it runs.
 */
function sqliteInUse(file: string): boolean {
  const db = new SqliteDatabase(file, { fileMustExist: true, timeout: 0 });
  try {
    const mode = db.pragma('journal_mode = DELETE', { simple: true }) as string;
    return mode.toLowerCase() === 'wal';
  } catch (e) {
    const code = (e as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return true;
    throw new BackupError(`cannot open the existing database ${file}: ${(e as Error).message}`);
  } finally {
    db.close();
  }
}

/**
 * Whether a server answers on the configured listener. Needed for
 * PostgreSQL, where an idle server's pool may hold no connection at all.
 */
async function serverAnswers(config: Config): Promise<boolean> {
  if (config.port === 0) return false;
  const host = config.address === '0.0.0.0' || config.address === '::' ? '127.0.0.1' : config.address;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${config.port}/_matrix/client/versions`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

export async function restoreBackup(config: Config, dir: string, opts: RestoreOptions = {}): Promise<Manifest> {
  const progress = opts.progress ?? quietProgress;
  const { manifest, problems } = await verifyBackup(dir);
  if (problems.length > 0 || !manifest) {
    throw new BackupError(`the backup in ${dir} is damaged; nothing was restored:\n  ${problems.join('\n  ')}`);
  }
  if (manifest.server_name !== config.server_name) {
    throw new BackupError(`the backup is of server ${manifest.server_name}, but this server is configured as ${config.server_name}; a server's name cannot change`);
  }
  const latest = latestSchemaVersion();
  if (manifest.schema_version > latest) {
    throw new BackupError(`the backup has schema version ${manifest.schema_version}, newer than this Ranvier knows (${latest}); restore it with Ranvier ${manifest.ranvier_version} or later`);
  }
  const postgres = isPostgresUrl(config.database);
  if ((manifest.database === 'postgres') !== postgres) {
    throw new BackupError(`the backup holds a ${manifest.database} database, but the configured database is ${postgres ? 'PostgreSQL' : 'SQLite'}`);
  }

  if (await serverAnswers(config)) {
    throw new BackupError(`a server answers on ${config.address}:${config.port} (is Ranvier running?); stop it before restoring`);
  }
  if (postgres) {
    const others = await postgresQuery<{ n: number }>(
      config.database,
      'SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    if (Number(others[0]?.n ?? 0) > 0) throw new BackupError('the configured PostgreSQL database is in use (is the server running?); stop it first');
    const tables = await postgresQuery<{ n: number }>(config.database, "SELECT COUNT(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'");
    const hasTables = Number(tables[0]?.n ?? 0) > 0;
    if (hasTables && !opts.force) throw new BackupError('the configured PostgreSQL database is not empty; pass --force to replace its contents');
    const conn = pgConnection(config.database);
    const args = ['--no-owner', '--no-privileges', '--exit-on-error', '--single-transaction', `--dbname=${conn.url}`];
    if (hasTables) args.unshift('--clean', '--if-exists');
    progress.info('database: pg_restore');
    await runPgTool('pg_restore', [...args, path.join(dir, PGDUMP_FILE)], conn.env);
  } else {
    const target = path.resolve(config.database);
    if (existsSync(target)) {
      if (sqliteInUse(target)) throw new BackupError(`database ${target} is in use (is the server running?); stop it first`);
      if (!opts.force && (await stat(target)).size > 0) throw new BackupError(`${target} already exists; pass --force to replace it`);
    }
    const tmp = target + '.restore-tmp';
    await copyDurably(path.join(dir, SQLITE_FILE), tmp);
    // A stale WAL beside the new file would be replayed into it.
    for (const suffix of ['-wal', '-shm', '-journal']) await rm(target + suffix, { force: true });
    await rename(tmp, target);
    progress.info(`database: restored to ${target}`);
  }

  await copyDurably(path.join(dir, SIGNING_KEY_FILE), config.signing_key_path);
  await chmod(config.signing_key_path, 0o600);
  progress.info(`signing key: restored to ${config.signing_key_path}`);

  const mediaFiles = manifest.files.filter((f) => f.kind === 'media');
  if (manifest.media.store === 's3') {
    progress.info(`media: in S3 bucket ${manifest.media.bucket} at backup time, not part of the backup`);
  } else if (config.media_store === 's3') {
    progress.info(`media: the backup has ${mediaFiles.length} local media files but media_store is s3; they were not uploaded (they are in ${path.join(dir, MEDIA_DIR)})`);
  } else {
    const root = mediaRoot(config);
    let copied = 0;
    for (const f of mediaFiles) {
      const dest = path.join(root, path.relative(MEDIA_DIR, f.path));
      if (existsSync(dest) && (await sha256File(dest)) === f.sha256) continue;
      await copyDurably(path.join(dir, f.path), dest);
      copied++;
    }
    progress.info(`media: ${mediaFiles.length} files (${copied} copied) into ${root}`);
  }
  if (manifest.files.some((f) => f.kind === 'config')) {
    progress.info(`configuration: the backed-up file is ${path.join(dir, CONFIG_FILE)}; it was not installed`);
  }
  return manifest;
}
