import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/**
 * OpenID tokens (src/accounts/openid.ts): short-lived tokens a user hands to
 * an integration manager, which asks us who they belong to. Only the
 * SHA-256 of a token is kept; expired rows are purged opportunistically.
 */
export const openidTokens: Migration = {
  version: 12,
  name: 'openid-tokens',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    await sql`CREATE TABLE openid_tokens (token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, expires_ts BIGINT NOT NULL)`.execute(db);
    await sql`CREATE INDEX openid_tokens_expires ON openid_tokens (expires_ts)`.execute(db);
  },
};
