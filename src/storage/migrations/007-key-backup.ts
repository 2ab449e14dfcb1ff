import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/**
 * Server-side key backups: one row per backup version (deleted versions stay,
 * marked, so their numbers are never reused and a repeated DELETE succeeds),
 * and one row per backed-up megolm session.
 */
export const keyBackup: Migration = {
  version: 7,
  name: 'key-backup',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    const stmts = [
      sql`CREATE TABLE e2e_room_keys_versions (
        user_id TEXT NOT NULL, version BIGINT NOT NULL, algorithm TEXT NOT NULL, auth_data TEXT NOT NULL,
        etag BIGINT NOT NULL, deleted INTEGER NOT NULL, created_ts BIGINT NOT NULL,
        PRIMARY KEY (user_id, version))`,
      sql`CREATE TABLE e2e_room_keys (
        user_id TEXT NOT NULL, version BIGINT NOT NULL, room_id TEXT NOT NULL, session_id TEXT NOT NULL,
        first_message_index BIGINT NOT NULL, forwarded_count BIGINT NOT NULL, is_verified INTEGER NOT NULL,
        session_data TEXT NOT NULL,
        PRIMARY KEY (user_id, version, room_id, session_id))`,
    ];
    for (const s of stmts) await s.execute(db);
  },
};
