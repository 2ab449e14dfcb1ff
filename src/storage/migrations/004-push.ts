import { sql, type Kysely } from 'kysely';
import type { Migration } from './index.js';

/** Push: per-user notification actions for events (unread counts and GET /notifications), and pushers. */
export const push: Migration = {
  version: 4,
  name: 'push',
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations predate the typed schema
  async up(db: Kysely<any>) {
    const stmts = [
      sql`CREATE TABLE event_push_actions (
        user_id TEXT NOT NULL, room_id TEXT NOT NULL, event_id TEXT NOT NULL, stream_pos BIGINT NOT NULL,
        notify INTEGER NOT NULL, highlight INTEGER NOT NULL, actions TEXT NOT NULL, ts BIGINT NOT NULL,
        PRIMARY KEY (user_id, event_id))`,
      sql`CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_id, stream_pos)`,
      sql`CREATE INDEX event_push_actions_user ON event_push_actions (user_id, stream_pos)`,
      sql`CREATE INDEX event_push_actions_event ON event_push_actions (event_id)`,
      sql`CREATE TABLE pushers (
        user_id TEXT NOT NULL, app_id TEXT NOT NULL, pushkey TEXT NOT NULL, kind TEXT NOT NULL,
        app_display_name TEXT NOT NULL, device_display_name TEXT NOT NULL, profile_tag TEXT, lang TEXT NOT NULL,
        data TEXT NOT NULL, device_id TEXT, created_ts BIGINT NOT NULL,
        PRIMARY KEY (user_id, app_id, pushkey))`,
      sql`CREATE INDEX pushers_key ON pushers (app_id, pushkey)`,
    ];
    for (const s of stmts) await s.execute(db);
  },
};
