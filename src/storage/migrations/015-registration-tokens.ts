import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/**
 * Registration tokens managed by admins (src/accounts/registration-tokens.ts),
 * in addition to the single `registration_token` of the configuration.
 * `registration_token_sessions` records which UIA session holds which token:
 * an unexpired row counts as a "pending" use, so an abandoned registration
 * gives its use back once the session expires.
 */
export const registrationTokens: Migration = {
  version: 15,
  name: 'registration-tokens',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    await sql`CREATE TABLE registration_tokens (
      token TEXT PRIMARY KEY,
      uses_allowed INTEGER,
      completed INTEGER NOT NULL DEFAULT 0,
      expiry_time BIGINT,
      created_ts BIGINT NOT NULL
    )`.execute(db);
    await sql`CREATE TABLE registration_token_sessions (
      session_id TEXT PRIMARY KEY,
      token TEXT NOT NULL,
      created_ts BIGINT NOT NULL
    )`.execute(db);
    await sql`CREATE INDEX registration_token_sessions_token ON registration_token_sessions (token)`.execute(db);
  },
};
