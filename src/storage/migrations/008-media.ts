import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/**
 * Local media: one row per media id (created by /create or /upload; the
 * content columns are filled once the bytes arrive), and one row per
 * generated thumbnail. Bytes live in the media store, addressed by sha256.
 */
export const media: Migration = {
  version: 8,
  name: 'media',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    const stmts = [
      sql`CREATE TABLE media (
        media_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, created_ts BIGINT NOT NULL,
        unused_expires_at BIGINT, uploaded_ts BIGINT,
        content_type TEXT, upload_name TEXT, size BIGINT, sha256 TEXT)`,
      sql`CREATE INDEX media_user ON media (user_id)`,
      sql`CREATE INDEX media_sha256 ON media (sha256)`,
      sql`CREATE TABLE media_thumbnails (
        media_id TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, method TEXT NOT NULL,
        animated INTEGER NOT NULL, content_type TEXT NOT NULL, size BIGINT NOT NULL, sha256 TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        PRIMARY KEY (media_id, width, height, method, animated))`,
      sql`CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256)`,
    ];
    for (const s of stmts) await s.execute(db);
  },
};
