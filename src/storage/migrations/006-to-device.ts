import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/**
 * To-device messaging: pending messages per recipient device (one stream
 * position per send request, so (user, device, stream_pos) is unique),
 * transaction ids of sends (idempotency), and MSC3814 dehydrated devices.
 */
export const toDevice: Migration = {
  version: 6,
  name: 'to-device messages and dehydrated devices',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    const stmts = [
      sql`CREATE TABLE to_device_messages (
        user_id TEXT NOT NULL, device_id TEXT NOT NULL, stream_pos BIGINT NOT NULL,
        sender TEXT NOT NULL, type TEXT NOT NULL, content TEXT NOT NULL,
        PRIMARY KEY (user_id, device_id, stream_pos))`,
      sql`CREATE TABLE to_device_txns (
        user_id TEXT NOT NULL, device_id TEXT NOT NULL, txn_id TEXT NOT NULL, created_ts BIGINT NOT NULL,
        PRIMARY KEY (user_id, device_id, txn_id))`,
      sql`CREATE TABLE dehydrated_devices (
        user_id TEXT NOT NULL PRIMARY KEY, device_id TEXT NOT NULL, device_data TEXT NOT NULL,
        keys TEXT, created_ts BIGINT NOT NULL)`,
    ];
    for (const s of stmts) await s.execute(db);
  },
};
