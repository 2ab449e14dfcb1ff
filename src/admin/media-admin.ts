/**
 * What the media admin routes do: quarantine marks, protection, media info
 * and per-user listing, in Synapse's shapes. Deletions go through
 * MediaRetention, which owns the row-then-bytes order.
 *
 * Quarantine never deletes anything: downloads and thumbnails of quarantined
 * media answer 404 (MediaService.getMedia), the bytes stay for the admins.
 */
import { sql } from 'kysely';
import { MatrixError, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';

/** Sort orders of GET /users/{user_id}/media, named as Synapse names them, with their column. */
export const MEDIA_ORDER = {
  media_id: 'media_id',
  upload_name: 'upload_name',
  created_ts: 'created_ts',
  last_access_ts: 'last_access_ts',
  media_length: 'size',
  media_type: 'content_type',
  quarantined_by: 'quarantined_by',
  safe_from_quarantine: 'safe_from_quarantine',
} as const;
export type MediaOrder = keyof typeof MEDIA_ORDER;

export interface UserMediaPage {
  media: Array<Record<string, unknown>>;
  total: number;
  next_token?: number;
}

/** Events read per query when looking for a room's media. */
const ROOM_SCAN_BATCH = 500;

/** (origin, media id) of an mxc URI, or undefined. */
export function parseMxc(uri: unknown): { origin: string; mediaId: string } | undefined {
  if (typeof uri !== 'string') return undefined;
  const m = /^mxc:\/\/([^/?#]+)\/([^/?#]+)$/.exec(uri);
  return m ? { origin: m[1], mediaId: m[2] } : undefined;
}

/** The mxc URIs an event's content points at (Synapse's set: url and info.thumbnail_url). */
function mediaUris(json: string): string[] {
  let c: { url?: unknown; info?: { thumbnail_url?: unknown } } | undefined;
  try {
    c = (JSON.parse(json) as { content?: typeof c }).content;
  } catch {
    return [];
  }
  if (!c || typeof c !== 'object') return [];
  const out: string[] = [];
  if (typeof c.url === 'string') out.push(c.url);
  if (c.info && typeof c.info === 'object' && typeof c.info.thumbnail_url === 'string') out.push(c.info.thumbnail_url);
  return out;
}

export class MediaAdmin {
  constructor(private readonly ctx: Context) {}

  private get db() {
    return this.ctx.storage.db;
  }

  isLocal(serverName: string): boolean {
    return serverName === this.ctx.config.server_name;
  }

  /** Quarantine (by = admin user id) or release (by = null) one piece of media. Protected local media is not quarantined. */
  async setQuarantine(serverName: string, mediaId: string, by: string | null): Promise<number> {
    if (this.isLocal(serverName)) {
      let q = this.db.updateTable('media').set({ quarantined_by: by }).where('media_id', '=', mediaId);
      if (by !== null) q = q.where('safe_from_quarantine', '=', 0);
      return Number((await q.executeTakeFirst()).numUpdatedRows);
    }
    const res = await this.db.updateTable('remote_media').set({ quarantined_by: by })
      .where('origin', '=', serverName).where('media_id', '=', mediaId).executeTakeFirst();
    return Number(res.numUpdatedRows);
  }

  /** Quarantine every piece of media (local and cached remote) the room's events point at. */
  async quarantineRoom(roomId: string, by: string): Promise<number> {
    const local = new Set<string>();
    const remote = new Map<string, Set<string>>();
    // Pages through the (room_id, stream_pos) index; stream positions are unique.
    let after = -1;
    for (;;) {
      const rows = await this.db.selectFrom('events').select(['stream_pos', 'json'])
        .where('room_id', '=', roomId).where('stream_pos', '>', after)
        .orderBy('stream_pos').limit(ROOM_SCAN_BATCH)
        .execute();
      for (const r of rows) {
        if (!r.json.includes('mxc://')) continue;
        for (const uri of mediaUris(r.json)) {
          const m = parseMxc(uri);
          if (!m) continue;
          if (this.isLocal(m.origin)) local.add(m.mediaId);
          else {
            let s = remote.get(m.origin);
            if (!s) remote.set(m.origin, (s = new Set()));
            s.add(m.mediaId);
          }
        }
      }
      if (rows.length < ROOM_SCAN_BATCH) break;
      after = Number(rows[rows.length - 1].stream_pos);
    }
    let n = await this.quarantineLocal([...local], by);
    for (const [origin, ids] of remote) {
      const list = [...ids];
      for (let i = 0; i < list.length; i += ROOM_SCAN_BATCH) {
        const res = await this.db.updateTable('remote_media').set({ quarantined_by: by })
          .where('origin', '=', origin).where('media_id', 'in', list.slice(i, i + ROOM_SCAN_BATCH)).executeTakeFirst();
        n += Number(res.numUpdatedRows);
      }
    }
    return n;
  }

  /** Quarantine everything a local user uploaded. */
  async quarantineUser(userId: string, by: string): Promise<number> {
    const res = await this.db.updateTable('media').set({ quarantined_by: by })
      .where('user_id', '=', userId).where('safe_from_quarantine', '=', 0).executeTakeFirst();
    return Number(res.numUpdatedRows);
  }

  private async quarantineLocal(ids: string[], by: string): Promise<number> {
    let n = 0;
    for (let i = 0; i < ids.length; i += ROOM_SCAN_BATCH) {
      const res = await this.db.updateTable('media').set({ quarantined_by: by })
        .where('media_id', 'in', ids.slice(i, i + ROOM_SCAN_BATCH)).where('safe_from_quarantine', '=', 0).executeTakeFirst();
      n += Number(res.numUpdatedRows);
    }
    return n;
  }

  async setProtected(mediaId: string, safe: boolean): Promise<void> {
    await this.db.updateTable('media').set({ safe_from_quarantine: safe ? 1 : 0 }).where('media_id', '=', mediaId).execute();
  }

  async localExists(mediaId: string): Promise<boolean> {
    return !!(await this.db.selectFrom('media').select('media_id').where('media_id', '=', mediaId).executeTakeFirst());
  }

  /** GET /media/{origin}/{media_id}: Synapse's media_info. */
  async info(serverName: string, mediaId: string): Promise<Record<string, unknown>> {
    if (!this.isLocal(serverName)) {
      const r = await this.db.selectFrom('remote_media').selectAll()
        .where('origin', '=', serverName).where('media_id', '=', mediaId).executeTakeFirst();
      if (!r) throw notFound('Unknown media');
      return {
        media_origin: r.origin, user_id: null, media_id: r.media_id, media_type: r.content_type,
        media_length: Number(r.size), upload_name: r.upload_name, created_ts: Number(r.fetched_ts),
        filesystem_id: null, url_cache: null, last_access_ts: Number(r.last_access_ts), quarantined_by: r.quarantined_by,
        authenticated: true, safe_from_quarantine: null, sha256: r.sha256,
      };
    }
    const r = await this.db.selectFrom('media').selectAll().where('media_id', '=', mediaId).executeTakeFirst();
    if (!r) throw notFound('Unknown media');
    return {
      media_origin: null, user_id: r.user_id, media_id: r.media_id, media_type: r.content_type,
      media_length: r.size === null ? null : Number(r.size), upload_name: r.upload_name, created_ts: Number(r.created_ts),
      filesystem_id: null, url_cache: null, last_access_ts: r.last_access_ts === null ? null : Number(r.last_access_ts),
      quarantined_by: r.quarantined_by,
      // Downloadable without a token while the legacy endpoints are on.
      authenticated: !this.ctx.config.legacy_media_enabled,
      safe_from_quarantine: !!r.safe_from_quarantine, sha256: r.sha256,
    };
  }

  /** GET /users/{user_id}/media: the user's uploaded media, one page. */
  async userMedia(userId: string, from: number, limit: number, order: MediaOrder, dir: 'f' | 'b'): Promise<UserMediaPage> {
    if (!(await this.ctx.accounts.userExists(userId))) throw new MatrixError('M_NOT_FOUND', 404, 'Unknown user');
    const base = this.db.selectFrom('media').where('user_id', '=', userId).where('uploaded_ts', 'is not', null);
    const count = await base.select(sql<number>`COUNT(*)`.as('n')).executeTakeFirst();
    const total = Number(count?.n ?? 0);
    const direction = dir === 'b' ? 'desc' : 'asc';
    let q = base.selectAll().orderBy(MEDIA_ORDER[order], direction);
    // Ties always in ascending media_id, so pages are stable.
    if (order !== 'media_id') q = q.orderBy('media_id', 'asc');
    const rows = await q.limit(limit).offset(from).execute();
    const media = rows.map((r) => ({
      created_ts: Number(r.created_ts),
      last_access_ts: r.last_access_ts === null ? null : Number(r.last_access_ts),
      media_id: r.media_id,
      media_length: r.size === null ? null : Number(r.size),
      media_type: r.content_type,
      quarantined_by: r.quarantined_by,
      safe_from_quarantine: !!r.safe_from_quarantine,
      upload_name: r.upload_name,
    }));
    const page: UserMediaPage = { media, total };
    if (from + limit < total) page.next_token = from + media.length;
    return page;
  }
}
