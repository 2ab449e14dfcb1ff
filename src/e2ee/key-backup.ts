/**
 * Server-side key backups (spec: "Server-side key backups"). Each user has
 * numbered backup versions; only the newest live one accepts keys. A version
 * row carries an `etag` counter that is bumped whenever its stored keys
 * change, so clients can tell whether they need to fetch keys again.
 *
 * Writes go through `ctx.write` (serialised, one transaction each); they
 * allocate no stream positions because backups are not synced.
 */
import { MatrixError, notFound } from '../server/errors.js';
import type { BaseContext } from '../server/context.js';
import type { Tx } from '../storage/db.js';

/** One backed-up session key as the client sends and receives it (KeyBackupData). */
export interface KeyBackupData {
  first_message_index: number;
  forwarded_count: number;
  is_verified: boolean;
  session_data: Record<string, unknown>;
}

/** `{rooms: {roomId: {sessions: {sessionId: KeyBackupData}}}}` */
export type RoomsKeys = Record<string, { sessions: Record<string, KeyBackupData> }>;

export interface BackupVersionInfo {
  algorithm: string;
  auth_data: Record<string, unknown>;
  count: number;
  etag: string;
  version: string;
}

export interface RoomKeysUpdate {
  etag: string;
  count: number;
}

type SessionMeta = Pick<KeyBackupData, 'first_message_index' | 'forwarded_count' | 'is_verified'>;

/**
 * The spec's replacement rule: should `candidate` replace `current` (already
 * stored for the same session)? A verified key beats an unverified one; then
 * the lower first_message_index wins; then the lower forwarded_count. On a
 * full tie the stored key is kept.
 */
export function shouldReplaceSession(current: SessionMeta | undefined, candidate: SessionMeta): boolean {
  if (!current) return true;
  if (current.is_verified !== candidate.is_verified) return candidate.is_verified;
  if (current.first_message_index !== candidate.first_message_index) return candidate.first_message_index < current.first_message_index;
  return candidate.forwarded_count < current.forwarded_count;
}

/** Version ids are decimal strings of positive integers; anything else names no backup. */
function parseVersion(version: string): number | undefined {
  if (!/^[1-9]\d{0,14}$/.test(version)) return undefined;
  return Number(version);
}

const unknownVersion = () => notFound('Unknown backup version');

/** Spread query chunks so `IN (...)` lists stay well under both engines' parameter limits. */
const CHUNK = 500;

export class KeyBackupService {
  constructor(private readonly ctx: BaseContext) {}

  private get db() {
    return this.ctx.storage.db;
  }

  /** The newest live version row of a user, if any. */
  private async currentRow(tx: Tx, userId: string) {
    return tx
      .selectFrom('e2e_room_keys_versions')
      .selectAll()
      .where('user_id', '=', userId)
      .where('deleted', '=', 0)
      .orderBy('version', 'desc')
      .limit(1)
      .executeTakeFirst();
  }

  /** A live version row, or undefined (unknown, malformed or deleted). */
  private async liveRow(tx: Tx, userId: string, version: string) {
    const v = parseVersion(version);
    if (v === undefined) return undefined;
    return tx
      .selectFrom('e2e_room_keys_versions')
      .selectAll()
      .where('user_id', '=', userId)
      .where('version', '=', v)
      .where('deleted', '=', 0)
      .executeTakeFirst();
  }

  private async countKeys(tx: Tx, userId: string, version: number): Promise<number> {
    const r = await tx
      .selectFrom('e2e_room_keys')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('user_id', '=', userId)
      .where('version', '=', version)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  private async info(tx: Tx, userId: string, row: { version: number; algorithm: string; auth_data: string; etag: number }): Promise<BackupVersionInfo> {
    return {
      algorithm: row.algorithm,
      auth_data: JSON.parse(row.auth_data) as Record<string, unknown>,
      count: await this.countKeys(tx, userId, Number(row.version)),
      etag: String(row.etag),
      version: String(row.version),
    };
  }

  // ---- versions

  async createVersion(userId: string, algorithm: string, authData: Record<string, unknown>): Promise<string> {
    return this.ctx.write(async (tx) => {
      const max = await tx
        .selectFrom('e2e_room_keys_versions')
        .select((eb) => eb.fn.max<number | string | null>('version').as('v'))
        .where('user_id', '=', userId)
        .executeTakeFirst();
      const version = Number(max?.v ?? 0) + 1;
      await tx
        .insertInto('e2e_room_keys_versions')
        .values({ user_id: userId, version, algorithm, auth_data: JSON.stringify(authData), etag: 0, deleted: 0, created_ts: Date.now() })
        .execute();
      return String(version);
    });
  }

  /** The given version, or the newest live one when `version` is undefined. */
  async getVersion(userId: string, version?: string): Promise<BackupVersionInfo> {
    const db = this.db;
    const row = version === undefined ? await this.currentRow(db, userId) : await this.liveRow(db, userId, version);
    if (!row) throw version === undefined ? notFound('No current backup version') : unknownVersion();
    return this.info(db, userId, row);
  }

  async updateVersion(userId: string, version: string, body: { algorithm: string; auth_data: Record<string, unknown>; version?: string }): Promise<void> {
    if (body.version !== undefined && body.version !== version) {
      throw new MatrixError('M_INVALID_PARAM', 400, 'The version in the body does not match the version in the path');
    }
    await this.ctx.write(async (tx) => {
      const row = await this.liveRow(tx, userId, version);
      if (!row) throw unknownVersion();
      if (row.algorithm !== body.algorithm) throw new MatrixError('M_INVALID_PARAM', 400, 'Algorithm does not match');
      await tx
        .updateTable('e2e_room_keys_versions')
        .set({ auth_data: JSON.stringify(body.auth_data) })
        .where('user_id', '=', userId)
        .where('version', '=', row.version)
        .execute();
    });
  }

  /** Delete a version and its keys. Deleting an already-deleted version succeeds; an unknown one is 404. */
  async deleteVersion(userId: string, version: string): Promise<void> {
    const v = parseVersion(version);
    if (v === undefined) throw unknownVersion();
    await this.ctx.write(async (tx) => {
      const row = await tx
        .selectFrom('e2e_room_keys_versions')
        .select(['version', 'deleted'])
        .where('user_id', '=', userId)
        .where('version', '=', v)
        .executeTakeFirst();
      if (!row) throw unknownVersion();
      await tx.deleteFrom('e2e_room_keys').where('user_id', '=', userId).where('version', '=', v).execute();
      if (!row.deleted) {
        await tx
          .updateTable('e2e_room_keys_versions')
          .set({ deleted: 1, auth_data: '{}' })
          .where('user_id', '=', userId)
          .where('version', '=', v)
          .execute();
      }
    });
  }

  // ---- keys

  /**
   * Store keys in `version`, which must be the user's current backup.
   * Each session is stored unless the one already stored is better
   * (see `shouldReplaceSession`). The etag changes only when something was written.
   */
  async putKeys(userId: string, version: string, rooms: RoomsKeys): Promise<RoomKeysUpdate> {
    return this.ctx.write(async (tx) => {
      const row = await this.writableRow(tx, userId, version);
      const v = Number(row.version);
      let changed = 0;
      for (const [roomId, { sessions }] of Object.entries(rooms)) {
        const ids = Object.keys(sessions);
        for (let i = 0; i < ids.length; i += CHUNK) {
          const chunk = ids.slice(i, i + CHUNK);
          const stored = await tx
            .selectFrom('e2e_room_keys')
            .select(['session_id', 'first_message_index', 'forwarded_count', 'is_verified'])
            .where('user_id', '=', userId)
            .where('version', '=', v)
            .where('room_id', '=', roomId)
            .where('session_id', 'in', chunk)
            .execute();
          const current = new Map(stored.map((s) => [s.session_id, {
            first_message_index: Number(s.first_message_index),
            forwarded_count: Number(s.forwarded_count),
            is_verified: Boolean(s.is_verified),
          }]));
          for (const sessionId of chunk) {
            const k = sessions[sessionId];
            const cur = current.get(sessionId);
            if (!shouldReplaceSession(cur, k)) continue;
            const values = {
              first_message_index: k.first_message_index,
              forwarded_count: k.forwarded_count,
              is_verified: k.is_verified ? 1 : 0,
              session_data: JSON.stringify(k.session_data),
            };
            if (cur) {
              await tx
                .updateTable('e2e_room_keys')
                .set(values)
                .where('user_id', '=', userId)
                .where('version', '=', v)
                .where('room_id', '=', roomId)
                .where('session_id', '=', sessionId)
                .execute();
            } else {
              await tx.insertInto('e2e_room_keys').values({ user_id: userId, version: v, room_id: roomId, session_id: sessionId, ...values }).execute();
            }
            // A later duplicate of this session in the same request competes with what was just stored.
            current.set(sessionId, { first_message_index: k.first_message_index, forwarded_count: k.forwarded_count, is_verified: k.is_verified });
            changed++;
          }
        }
      }
      const etag = changed ? await this.bumpEtag(tx, userId, v) : Number(row.etag);
      return { etag: String(etag), count: await this.countKeys(tx, userId, v) };
    });
  }

  /** Keys of a version: all rooms, one room, or one session (404 when that session is missing). */
  async getKeys(userId: string, version: string): Promise<{ rooms: RoomsKeys }>;
  async getKeys(userId: string, version: string, roomId: string): Promise<{ sessions: Record<string, KeyBackupData> }>;
  async getKeys(userId: string, version: string, roomId: string, sessionId: string): Promise<KeyBackupData>;
  async getKeys(userId: string, version: string, roomId?: string, sessionId?: string): Promise<unknown> {
    const db = this.db;
    const row = await this.liveRow(db, userId, version);
    if (!row) throw unknownVersion();
    let q = db
      .selectFrom('e2e_room_keys')
      .select(['room_id', 'session_id', 'first_message_index', 'forwarded_count', 'is_verified', 'session_data'])
      .where('user_id', '=', userId)
      .where('version', '=', Number(row.version));
    if (roomId !== undefined) q = q.where('room_id', '=', roomId);
    if (sessionId !== undefined) q = q.where('session_id', '=', sessionId);
    const rows = await q.execute();
    const data = (r: (typeof rows)[number]): KeyBackupData => ({
      first_message_index: Number(r.first_message_index),
      forwarded_count: Number(r.forwarded_count),
      is_verified: Boolean(r.is_verified),
      session_data: JSON.parse(r.session_data) as Record<string, unknown>,
    });
    if (sessionId !== undefined) {
      if (!rows.length) throw notFound('No room key found for this session');
      return data(rows[0]);
    }
    // Null-prototype maps: room and session ids are client-chosen strings (think "__proto__").
    const rooms: RoomsKeys = Object.create(null) as RoomsKeys;
    for (const r of rows) (rooms[r.room_id] ??= { sessions: Object.create(null) as Record<string, KeyBackupData> }).sessions[r.session_id] = data(r);
    if (roomId !== undefined) return rooms[roomId] ?? { sessions: {} };
    return { rooms };
  }

  /** Delete keys of a version (all, one room's, or one session). Allowed on any live version. */
  async deleteKeys(userId: string, version: string, roomId?: string, sessionId?: string): Promise<RoomKeysUpdate> {
    return this.ctx.write(async (tx) => {
      const row = await this.liveRow(tx, userId, version);
      if (!row) throw unknownVersion();
      const v = Number(row.version);
      let q = tx.deleteFrom('e2e_room_keys').where('user_id', '=', userId).where('version', '=', v);
      if (roomId !== undefined) q = q.where('room_id', '=', roomId);
      if (sessionId !== undefined) q = q.where('session_id', '=', sessionId);
      const res = await q.executeTakeFirst();
      const deleted = Number(res.numDeletedRows ?? 0);
      const etag = deleted ? await this.bumpEtag(tx, userId, v) : Number(row.etag);
      return { etag: String(etag), count: await this.countKeys(tx, userId, v) };
    });
  }

  /**
   * The version row if `version` is the user's current backup; 404 if it is
   * unknown or deleted (as Synapse does), 403 M_WRONG_ROOM_KEYS_VERSION if a
   * newer version has superseded it.
   */
  private async writableRow(tx: Tx, userId: string, version: string) {
    const row = await this.liveRow(tx, userId, version);
    if (!row) throw unknownVersion();
    const current = await this.currentRow(tx, userId);
    if (current && Number(current.version) !== Number(row.version)) {
      throw new MatrixError('M_WRONG_ROOM_KEYS_VERSION', 403, 'Wrong backup version.', { current_version: String(current.version) });
    }
    return row;
  }

  private async bumpEtag(tx: Tx, userId: string, version: number): Promise<number> {
    const r = await tx
      .updateTable('e2e_room_keys_versions')
      .set((eb) => ({ etag: eb('etag', '+', 1) }))
      .where('user_id', '=', userId)
      .where('version', '=', version)
      .returning('etag')
      .executeTakeFirstOrThrow();
    return Number(r.etag);
  }
}
