import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/** Sync: incremental presence is a range query on stream_pos. */
export const sync: Migration = {
  version: 3,
  name: 'sync indexes',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    await sql`CREATE INDEX presence_stream ON presence (stream_pos)`.execute(db);
  },
};
