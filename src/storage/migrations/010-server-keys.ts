import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/**
 * Other servers' signing keys (src/federation/keys.ts): one row per key, and
 * the last key response each server signed, kept whole so this server can
 * answer notary queries with the origin's own signature intact.
 */
export const serverKeys: Migration = {
  version: 10,
  name: 'server-keys',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    const stmts = [
      sql`CREATE TABLE server_keys (
        server_name TEXT NOT NULL, key_id TEXT NOT NULL, verify_key TEXT NOT NULL,
        valid_until_ts BIGINT NOT NULL, expired_ts BIGINT, fetched_ts BIGINT NOT NULL,
        PRIMARY KEY (server_name, key_id))`,
      sql`CREATE TABLE server_key_responses (
        server_name TEXT PRIMARY KEY, key_json TEXT NOT NULL,
        valid_until_ts BIGINT NOT NULL, fetched_ts BIGINT NOT NULL)`,
    ];
    for (const s of stmts) await s.execute(db);
  },
};
