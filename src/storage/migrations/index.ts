import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../db.js';

/**
 * Versioned migrations, applied in order at start-up inside one
 * transaction each. Never edit a released migration: add a new one.
 */
export interface Migration {
  version: number;
  name: string;
  up(db: Kysely<any>, dialect: Dialect): Promise<void>; // eslint-disable-line @typescript-eslint/no-explicit-any -- migrations run before the typed schema exists
}

import { initial } from './001-initial.js';
import { sync } from './003-sync.js';
import { push } from './004-push.js';
import { toDevice } from './006-to-device.js';
import { e2eeKeys } from './005-e2ee-keys.js';
import { keyBackup } from './007-key-backup.js';
import { media } from './008-media.js';
import { mediaCache } from './009-media-cache.js';
import { serverKeys } from './010-server-keys.js';
import { federationQueue } from './011-federation-queue.js';
import { openidTokens } from './012-openid-tokens.js';
import { assertSchemaNotNewer } from '../version-check.js';
import { adminUsers } from './013-admin-users.js';
import { adminRooms } from './014-admin-rooms.js';
import { registrationTokens } from './015-registration-tokens.js';
import { suspension } from './016-suspension.js';

export const MIGRATIONS: Migration[] = [initial, sync, push, e2eeKeys, toDevice, keyBackup, media, mediaCache, serverKeys, federationQueue, openidTokens, adminUsers, adminRooms, registrationTokens, suspension];

/** `migrations` is for tests only (injecting a failing migration); the server always runs MIGRATIONS. */
export async function runMigrations(db: Kysely<any>, dialect: Dialect, migrations: readonly Migration[] = MIGRATIONS): Promise<number> { // eslint-disable-line @typescript-eslint/no-explicit-any -- see Migration
  await sql`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ts BIGINT NOT NULL)`.execute(db);
  const rows = await sql<{ version: number }>`SELECT version FROM schema_version`.execute(db);
  const applied = new Set(rows.rows.map((r) => Number(r.version)));
  assertSchemaNotNewer(applied, migrations);
  let count = 0;
  for (const m of migrations) {
    if (applied.has(m.version)) continue;
    await db.transaction().execute(async (trx) => {
      await m.up(trx, dialect);
      await sql`INSERT INTO schema_version (version, name, applied_ts) VALUES (${m.version}, ${m.name}, ${Date.now()})`.execute(trx);
    });
    count++;
  }
  return count;
}
