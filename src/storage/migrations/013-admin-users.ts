import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/**
 * Account flags for the Synapse-compatible user admin API
 * (src/admin/users-routes.ts): shadow bans, GDPR erasure, locking, the
 * account's user_type, and per-user overrides of the message rate limit.
 */
export const adminUsers: Migration = {
  version: 13,
  name: 'admin-users',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    const stmts = [
      sql`ALTER TABLE users ADD COLUMN shadow_banned INTEGER NOT NULL DEFAULT 0`,
      sql`ALTER TABLE users ADD COLUMN erased INTEGER NOT NULL DEFAULT 0`,
      sql`ALTER TABLE users ADD COLUMN locked INTEGER NOT NULL DEFAULT 0`,
      sql`ALTER TABLE users ADD COLUMN user_type TEXT`,
      sql`CREATE TABLE ratelimit_overrides (
        user_id TEXT PRIMARY KEY, messages_per_second INTEGER NOT NULL, burst_count INTEGER NOT NULL)`,
    ];
    for (const s of stmts) await s.execute(db);
  },
};
