import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/** End-to-end keys: device keys, one-time and fallback keys, cross-signing keys and signatures, device-list changes. */
export const e2eeKeys: Migration = {
  version: 5,
  name: 'e2ee-keys',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    const stmts = [
      sql`CREATE TABLE e2e_device_keys (
        user_id TEXT NOT NULL, device_id TEXT NOT NULL, key_json TEXT NOT NULL, ts BIGINT NOT NULL,
        PRIMARY KEY (user_id, device_id))`,
      sql`CREATE TABLE e2e_one_time_keys (
        user_id TEXT NOT NULL, device_id TEXT NOT NULL, algorithm TEXT NOT NULL, key_id TEXT NOT NULL,
        key_json TEXT NOT NULL, ts BIGINT NOT NULL,
        PRIMARY KEY (user_id, device_id, algorithm, key_id))`,
      sql`CREATE TABLE e2e_fallback_keys (
        user_id TEXT NOT NULL, device_id TEXT NOT NULL, algorithm TEXT NOT NULL, key_id TEXT NOT NULL,
        key_json TEXT NOT NULL, used INTEGER NOT NULL,
        PRIMARY KEY (user_id, device_id, algorithm))`,
      sql`CREATE TABLE e2e_cross_signing_keys (
        user_id TEXT NOT NULL, key_type TEXT NOT NULL, public_key TEXT NOT NULL, key_json TEXT NOT NULL, stream_pos BIGINT NOT NULL,
        PRIMARY KEY (user_id, key_type))`,
      sql`CREATE TABLE e2e_signatures (
        target_user_id TEXT NOT NULL, target_key_id TEXT NOT NULL, signer_user_id TEXT NOT NULL, signer_key_id TEXT NOT NULL,
        signature TEXT NOT NULL,
        PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id))`,
      sql`CREATE INDEX e2e_signatures_signer ON e2e_signatures (signer_user_id, signer_key_id)`,
      sql`CREATE TABLE device_list_changes (user_id TEXT NOT NULL, stream_pos BIGINT NOT NULL, PRIMARY KEY (user_id, stream_pos))`,
      sql`CREATE INDEX device_list_changes_pos ON device_list_changes (stream_pos)`,
    ];
    for (const s of stmts) await s.execute(db);
  },
};
