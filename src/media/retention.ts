/**
 * Media lifecycle: the retention job (local media unused for
 * media_retention_local_days, cached remote media unused for
 * media_retention_remote_days, /create ids that expired without content),
 * and the deletions the admin API asks for (by id, by date and size, the
 * remote cache).
 *
 * Rows go first, in one transaction per batch; the bytes go after, through
 * MediaService.deleteUnreferencedContent, which checks again under the
 * content gate that no row (of any of the four media tables) still uses
 * them: identical content is stored once, so a sha256 can be shared.
 *
 * Media that a current avatar points at (a user's profile, a current
 * m.room.member's avatar_url, a current m.room.avatar's url) is never
 * deleted by age: avatars are fetched rarely but must not vanish.
 */
import { sql } from 'kysely';
import type { Context } from '../server/services.js';
import type { Tx } from '../storage/db.js';
import { stateKeyOf } from '../rooms/state-store.js';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Rows handled per transaction: big enough to be quick, small enough not to hold the database long. */
export const RETENTION_BATCH = 500;
/** Bytes whose deletion was put off (uploads in flight) are retried next run; beyond this many, left for later runs to rediscover. */
const MAX_DEFERRED = 10_000;

export interface RetentionCounts {
  /** Local media ids deleted. */
  local: number;
  /** Cached remote media deleted. */
  remote: number;
  /** /create ids that expired without content. */
  expiredCreates: number;
  /** Content files removed from the store. */
  files: number;
}

export interface LocalDeleteFilter {
  /** Media last accessed (or, never accessed, uploaded) before this time. */
  beforeTs: number;
  /** Only media larger than this many bytes. */
  sizeGt?: number;
  /** Keep media a current avatar uses (Synapse's keep_profiles, default true). */
  keepProfiles?: boolean;
}

/** The media id of an mxc URI on `serverName`, or undefined. */
export function localMediaId(uri: unknown, serverName: string): string | undefined {
  if (typeof uri !== 'string') return undefined;
  const prefix = `mxc://${serverName}/`;
  if (!uri.startsWith(prefix)) return undefined;
  const id = uri.slice(prefix.length).split(/[/?#]/)[0];
  return id || undefined;
}

function content(json: string): Record<string, unknown> {
  try {
    const c = (JSON.parse(json) as { content?: unknown }).content;
    return c && typeof c === 'object' ? (c as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export class MediaRetention {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RetentionCounts> | undefined;
  /** sha256s whose rows are gone but whose bytes could not be deleted yet. */
  private deferred = new Set<string>();

  constructor(private readonly ctx: Context) {}

  private get db() {
    return this.ctx.storage.db;
  }

  private get serverName(): string {
    return this.ctx.config.server_name;
  }

  /** Run every media_retention_interval_minutes; the timer never keeps the process alive. */
  start(): void {
    if (this.timer) return;
    const ms = Math.max(1, this.ctx.config.media_retention_interval_minutes) * 60_000;
    this.timer = setInterval(() => {
      this.runOnce().catch((err: unknown) => this.ctx.log.error({ err }, 'media retention run failed'));
    }, ms);
    this.timer.unref();
  }

  /** Stop the timer; resolves once a run in progress has finished (the database is about to close). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => {});
  }

  /** One pass of the retention job. A pass already running is joined, not doubled. */
  runOnce(now = Date.now()): Promise<RetentionCounts> {
    return (this.running ??= this.pass(now).finally(() => (this.running = undefined)));
  }

  private async pass(now: number): Promise<RetentionCounts> {
    const counts: RetentionCounts = { local: 0, remote: 0, expiredCreates: 0, files: 0 };
    counts.files += await this.retryDeferred();
    counts.expiredCreates = await this.deleteExpiredCreates(now);
    const localDays = this.ctx.config.media_retention_local_days;
    if (localDays > 0) {
      const r = await this.deleteLocalBefore({ beforeTs: now - localDays * DAY_MS, keepProfiles: true });
      counts.local = r.deleted.length;
      counts.files += r.files;
    }
    const remoteDays = this.ctx.config.media_retention_remote_days;
    if (remoteDays > 0) {
      const r = await this.purgeRemote(now - remoteDays * DAY_MS);
      counts.remote = r.deleted;
      counts.files += r.files;
    }
    if (counts.local || counts.remote || counts.expiredCreates || counts.files) this.ctx.log.info(counts, 'media retention');
    return counts;
  }

  private async deleteExpiredCreates(now: number): Promise<number> {
    let total = 0;
    for (;;) {
      const rows = await this.db.selectFrom('media').select('media_id')
        .where('uploaded_ts', 'is', null).where('unused_expires_at', '<=', now)
        .limit(RETENTION_BATCH).execute();
      if (rows.length === 0) return total;
      const res = await this.db.deleteFrom('media')
        .where('media_id', 'in', rows.map((r) => r.media_id))
        // An upload that landed since the select keeps its id.
        .where('uploaded_ts', 'is', null)
        .executeTakeFirst();
      total += Number(res.numDeletedRows);
      if (rows.length < RETENTION_BATCH) return total;
    }
  }

  // ---- local media ---------------------------------------------------------------------------

  /**
   * Delete local media ids (rows, thumbnails, then bytes no row uses any
   * more). Returns the ids that existed and were deleted.
   */
  async deleteLocal(mediaIds: readonly string[]): Promise<{ deleted: string[]; files: number }> {
    const deleted: string[] = [];
    let files = 0;
    for (let i = 0; i < mediaIds.length; i += RETENTION_BATCH) {
      const batch = mediaIds.slice(i, i + RETENTION_BATCH);
      const { ids, shas } = await this.db.transaction().execute((tx) => this.deleteLocalRows(tx, batch));
      deleted.push(...ids);
      files += await this.deleteBytes(shas);
    }
    return { deleted, files };
  }

  private async deleteLocalRows(tx: Tx, mediaIds: string[]): Promise<{ ids: string[]; shas: string[] }> {
    if (mediaIds.length === 0) return { ids: [], shas: [] };
    const rows = await tx.selectFrom('media').select(['media_id', 'sha256']).where('media_id', 'in', mediaIds).execute();
    if (rows.length === 0) return { ids: [], shas: [] };
    const ids = rows.map((r) => r.media_id);
    const thumbs = await tx.selectFrom('media_thumbnails').select('sha256').where('media_id', 'in', ids).execute();
    await tx.deleteFrom('media_thumbnails').where('media_id', 'in', ids).execute();
    await tx.deleteFrom('media').where('media_id', 'in', ids).execute();
    const shas = [...rows.map((r) => r.sha256), ...thumbs.map((t) => t.sha256)].filter((s): s is string => !!s);
    return { ids, shas };
  }

  /**
   * Local media last used before `beforeTs` (and bigger than sizeGt), never
   * protected media, and by default not what a current avatar shows.
   */
  async deleteLocalBefore(filter: LocalDeleteFilter): Promise<{ deleted: string[]; files: number }> {
    const keep = filter.keepProfiles === false ? new Set<string>() : await this.avatarMediaIds();
    const deleted: string[] = [];
    let files = 0;
    // Keyset pagination on media_id: kept rows (avatars) are stepped over, not selected again.
    let after = '';
    for (;;) {
      let q = this.db.selectFrom('media').select('media_id')
        .where('uploaded_ts', 'is not', null)
        .where('safe_from_quarantine', '=', 0)
        .where(sql<number>`COALESCE(last_access_ts, uploaded_ts)`, '<', filter.beforeTs)
        .where('media_id', '>', after)
        .orderBy('media_id').limit(RETENTION_BATCH);
      if (filter.sizeGt && filter.sizeGt > 0) q = q.where('size', '>', filter.sizeGt);
      const rows = await q.execute();
      if (rows.length === 0) break;
      after = rows[rows.length - 1].media_id;
      const ids = rows.map((r) => r.media_id).filter((id) => !keep.has(id));
      const r = await this.deleteLocal(ids);
      deleted.push(...r.deleted);
      files += r.files;
      if (rows.length < RETENTION_BATCH) break;
    }
    return { deleted, files };
  }

  /**
   * Ids of our media that a current avatar uses: users' profile avatars, the
   * avatar_url of current m.room.member events, the url of current
   * m.room.avatar events.
   */
  async avatarMediaIds(): Promise<Set<string>> {
    const server = this.serverName;
    const ids = new Set<string>();
    const add = (uri: unknown) => {
      const id = localMediaId(uri, server);
      if (id) ids.add(id);
    };
    const prefix = `mxc://${server}/`;
    // '_' in a server name would match any character: harmless, every hit is parsed and checked.
    const users = await this.db.selectFrom('users').select('avatar_url').where('avatar_url', 'like', `${prefix}%`).execute();
    for (const u of users) add(u.avatar_url);

    // room_members holds each member's current membership event.
    const members = await this.db.selectFrom('room_members as m')
      .innerJoin('events as e', 'e.event_id', 'm.event_id')
      .select('e.json')
      .where('e.json', 'like', `%${prefix}%`)
      .execute();
    for (const m of members) add(content(m.json).avatar_url);

    // Room avatars: per room, the (few) avatar events through the (room_id, type, state_key) index;
    // only rooms that ever had one of ours need their current state looked at.
    const avatars = await this.db.selectFrom('rooms as r')
      .innerJoin('events as e', (j) => j.onRef('e.room_id', '=', 'r.room_id').on('e.type', '=', 'm.room.avatar').on('e.state_key', '=', ''))
      .select(['e.room_id', 'e.event_id', 'e.json'])
      .where('e.json', 'like', `%${prefix}%`)
      .execute();
    const byRoom = new Map<string, Map<string, string>>();
    for (const a of avatars) {
      let m = byRoom.get(a.room_id);
      if (!m) byRoom.set(a.room_id, (m = new Map()));
      m.set(a.event_id, a.json);
    }
    for (const [roomId, events] of byRoom) {
      const current = (await this.ctx.rooms.state.currentIds(roomId)).get(stateKeyOf('m.room.avatar', ''));
      const json = current ? events.get(current) : undefined;
      if (json) add(content(json).url);
    }
    return ids;
  }

  // ---- remote media --------------------------------------------------------------------------

  /** Delete cached remote media last accessed before `beforeTs`, with its thumbnails and bytes. */
  async purgeRemote(beforeTs: number): Promise<{ deleted: number; files: number }> {
    let deleted = 0;
    let files = 0;
    for (;;) {
      const rows = await this.db.selectFrom('remote_media').select(['origin', 'media_id'])
        .where('last_access_ts', '<', beforeTs).limit(RETENTION_BATCH).execute();
      if (rows.length === 0) break;
      const { count, shas } = await this.db.transaction().execute(async (tx) => {
        let count = 0;
        const shas: string[] = [];
        for (const r of rows) {
          const row = await tx.selectFrom('remote_media').select('sha256')
            .where('origin', '=', r.origin).where('media_id', '=', r.media_id)
            // Accessed again since the select: keep it.
            .where('last_access_ts', '<', beforeTs)
            .executeTakeFirst();
          if (!row) continue;
          shas.push(...(await this.deleteRemoteRow(tx, r.origin, r.media_id, row.sha256)));
          count++;
        }
        return { count, shas };
      });
      deleted += count;
      files += await this.deleteBytes(shas);
      if (rows.length < RETENTION_BATCH || count === 0) break;
    }
    return { deleted, files };
  }

  /** Delete one cached remote media (rows, then unused bytes); false when it was not cached. */
  async deleteRemote(origin: string, mediaId: string): Promise<boolean> {
    const shas = await this.db.transaction().execute(async (tx) => {
      const row = await tx.selectFrom('remote_media').select('sha256').where('origin', '=', origin).where('media_id', '=', mediaId).executeTakeFirst();
      return row ? this.deleteRemoteRow(tx, origin, mediaId, row.sha256) : undefined;
    });
    if (!shas) return false;
    await this.deleteBytes(shas);
    return true;
  }

  private async deleteRemoteRow(tx: Tx, origin: string, mediaId: string, sha256: string): Promise<string[]> {
    const thumbs = await tx.selectFrom('remote_media_thumbnails').select('sha256')
      .where('origin', '=', origin).where('media_id', '=', mediaId).execute();
    await tx.deleteFrom('remote_media_thumbnails').where('origin', '=', origin).where('media_id', '=', mediaId).execute();
    await tx.deleteFrom('remote_media').where('origin', '=', origin).where('media_id', '=', mediaId).execute();
    return [sha256, ...thumbs.map((t) => t.sha256)];
  }

  // ---- bytes ---------------------------------------------------------------------------------

  /** Remove the bytes no row uses any more; returns how many files went. */
  private async deleteBytes(shas: string[]): Promise<number> {
    if (shas.length === 0) return 0;
    const { deleted, deferred } = await this.ctx.media.deleteUnreferencedContent(shas);
    for (const sha of deferred) if (this.deferred.size < MAX_DEFERRED) this.deferred.add(sha);
    return deleted.length;
  }

  private async retryDeferred(): Promise<number> {
    if (this.deferred.size === 0) return 0;
    const shas = [...this.deferred];
    this.deferred.clear();
    return this.deleteBytes(shas);
  }
}
