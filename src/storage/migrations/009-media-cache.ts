import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/**
 * Media lifecycle: last access (for retention), quarantine marks, and the
 * local cache of remote media and of the thumbnails fetched for it.
 */
export const mediaCache: Migration = {
  version: 9,
  name: 'media-cache',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    const stmts = [
      sql`ALTER TABLE media ADD COLUMN last_access_ts BIGINT`,
      sql`ALTER TABLE media ADD COLUMN quarantined_by TEXT`,
      sql`ALTER TABLE media ADD COLUMN safe_from_quarantine INTEGER NOT NULL DEFAULT 0`,
      sql`CREATE TABLE remote_media (
        origin TEXT NOT NULL, media_id TEXT NOT NULL,
        content_type TEXT, upload_name TEXT, size BIGINT NOT NULL, sha256 TEXT NOT NULL,
        fetched_ts BIGINT NOT NULL, last_access_ts BIGINT NOT NULL, quarantined_by TEXT,
        PRIMARY KEY (origin, media_id))`,
      sql`CREATE INDEX remote_media_sha256 ON remote_media (sha256)`,
      sql`CREATE INDEX remote_media_access ON remote_media (last_access_ts)`,
      sql`CREATE TABLE remote_media_thumbnails (
        origin TEXT NOT NULL, media_id TEXT NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL, method TEXT NOT NULL, animated INTEGER NOT NULL,
        content_type TEXT NOT NULL, size BIGINT NOT NULL, sha256 TEXT NOT NULL, created_ts BIGINT NOT NULL,
        PRIMARY KEY (origin, media_id, width, height, method, animated))`,
      sql`CREATE INDEX remote_media_thumbnails_sha256 ON remote_media_thumbnails (sha256)`,
    ];
    for (const s of stmts) await s.execute(db);
  },
};
