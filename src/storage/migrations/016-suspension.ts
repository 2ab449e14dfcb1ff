import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/** Account suspension (spec: "Account suspension"): a reversible flag, see src/accounts/suspension.ts. */
export const suspension: Migration = {
  version: 16,
  name: 'suspension',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    await sql`ALTER TABLE users ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0`.execute(db);
  },
};
