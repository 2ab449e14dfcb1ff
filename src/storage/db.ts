import { mkdirSync } from 'node:fs';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { CompiledQuery, Kysely, PostgresDialect, SqliteDialect, type Compilable, type DialectAdapter, type LogEvent, type Transaction } from 'kysely';
import type { Database } from './schema.js';
import { runMigrations } from './migrations/index.js';
import { Lru } from '../server/lru.js';

export type Dialect = 'sqlite' | 'postgres';
export type Db = Kysely<Database>;
export type Tx = Transaction<Database> | Kysely<Database>;


export interface Storage {
  db: Db;
  dialect: Dialect;
  close(): Promise<void>;
}

/** `onQuery`: told each query's duration in seconds (metrics); without it Kysely does not time queries at all. */
export async function openStorage(database: string, opts: { poolSize?: number; sqliteSynchronous?: string; onQuery?: (seconds: number) => void } = {}): Promise<Storage> {
  const onQuery = opts.onQuery;
  const log = onQuery ? { log: (e: LogEvent) => onQuery(e.queryDurationMillis / 1000) } : {};
  let db: Db;
  let dialect: Dialect;
  if (/^postgres(ql)?:\/\//.test(database)) {
    dialect = 'postgres';
    // Loaded only when used: a SQLite server should not pay pg's memory.
    const { default: pg } = await import('pg');
    // BIGINT columns hold stream positions and timestamps, all far below 2^53:
    // read them as numbers rather than pg's default strings.
    pg.types.setTypeParser(20, (v: string) => Number(v));
    const pool = new pg.Pool({ connectionString: database, max: opts.poolSize ?? 10 });
    // An idle client dropped by the server (restart, admin termination) emits
    // 'error' on the pool; unhandled it would crash the process. The pool
    // replaces the client and the next query reports any lasting problem.
    pool.on('error', () => {});
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }), ...log });
  } else {
    dialect = 'sqlite';
    if (database !== ':memory:') mkdirSync(path.dirname(path.resolve(database)), { recursive: true });
    const sqlite = new SqliteDatabase(database);
    // WAL: a commit is in the WAL (the OS page cache) before we answer 200,
    // so acknowledged writes survive kill -9 of this process. synchronous=FULL
    // adds an fsync per commit, for power loss too; it blocks the event loop
    // for the fsync, so it is opt-in.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma(`synchronous = ${opts.sqliteSynchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    // Keep the page cache small: idle memory matters more than cold reads.
    sqlite.pragma('cache_size = -8000');
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }), ...log });
  }
  try {
    await runMigrations(db, dialect);
  } catch (err) {
    // E.g. a database from a newer Ranvier (SchemaTooNewError): leave nothing open.
    await db.destroy().catch(() => {});
    throw err;
  }
  return { db, dialect, close: () => db.destroy() };
}

const NEXT_STREAM_POS = CompiledQuery.raw(`UPDATE counters SET value = value + 1 WHERE name = 'stream' RETURNING value`, []);

/** Allocate the next position in the global stream (inside the caller's transaction). */
export async function nextStreamPos(tx: Tx): Promise<number> {
  const row = await tx.executeQuery<{ value: number }>(NEXT_STREAM_POS);
  return Number(row.rows[0].value);
}

/** A query argument's stand-in while a hoisted query is compiled. */
class Slot {
  constructor(readonly index: number) {}
}

/**
 * A query shape built and compiled once per dialect, then run with fresh
 * argument values. For the hottest small queries, Kysely's building and
 * compiling cost as much as the database running them.
 *
 * `build` is called once with stand-ins for its arguments: each argument
 * must go into the query as one bound value (not a list for `in`, not used
 * to choose the query's shape). Other values in `build` are constants.
 */
export function hoist<A extends unknown[], R>(build: (db: Db, ...args: A) => Compilable<R>): (db: Tx, ...args: A) => Promise<R[]> {
  const byAdapter = new WeakMap<DialectAdapter, { sql: string; params: unknown[] }>();
  return async (db, ...args) => {
    const adapter = db.getExecutor().adapter;
    let shape = byAdapter.get(adapter);
    if (!shape) {
      const arity = build.length - 1;
      const stand = Array.from({ length: arity }, (_, i) => new Slot(i)) as unknown as A;
      const compiled = build(db as Db, ...stand).compile();
      const used = new Set(compiled.parameters.filter((p) => p instanceof Slot).map((p) => (p as Slot).index));
      if (used.size !== arity) throw new Error(`hoisted query uses ${used.size} of its ${arity} arguments as bound values: ${compiled.sql}`);
      shape = { sql: compiled.sql, params: [...compiled.parameters] };
      byAdapter.set(adapter, shape);
    }
    const params = shape.params.map((p) => (p instanceof Slot ? args[p.index] : p));
    const res = await db.executeQuery<R>(CompiledQuery.raw(shape.sql, params) as CompiledQuery<R>);
    return res.rows;
  };
}

export async function currentStreamPos(db: Tx): Promise<number> {
  const row = await db.selectFrom('counters').select('value').where('name', '=', 'stream').executeTakeFirstOrThrow();
  return Number(row.value);
}

/**
 * Kysely prepares every query anew; with better-sqlite3, preparing costs as
 * much as running a small query. Queries are built from a fixed set of
 * shapes, so reuse prepared statements by SQL text (bounded).
 */
function withStatementCache(sqlite: SqliteDatabase.Database): SqliteDatabase.Database {
  const cache = new Lru<string, SqliteDatabase.Statement>(1000);
  const prepare = sqlite.prepare.bind(sqlite);
  return new Proxy(sqlite, {
    get(target, prop, receiver) {
      if (prop === 'prepare') {
        return (source: string) => {
          let stmt = cache.get(source);
          if (!stmt) {
            stmt = prepare(source);
            cache.set(source, stmt);
          }
          return stmt;
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
