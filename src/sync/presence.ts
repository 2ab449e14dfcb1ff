import type { Context } from '../server/services.js';
import { invalidParam } from '../server/errors.js';
import { Lru } from '../server/lru.js';
import { sendPresenceEdu } from '../federation/edus.js';

/**
 * Presence: one row per user with a stream position, shared with users who
 * share a room. Syncing marks a user online (unless told otherwise); a user
 * who stops syncing is marked offline by a periodic sweep.
 */

export const PRESENCE_STATES = ['online', 'offline', 'unavailable'] as const;
export type PresenceState = (typeof PRESENCE_STATES)[number];

/** A syncing user with no sync request for this long is marked offline. */
const OFFLINE_AFTER_MS = 90_000;
/** How often a syncing user's last-active time is refreshed (without a new stream position). */
const ACTIVE_REFRESH_MS = 60_000;
/** `currently_active` is shown while the last activity is this recent. */
const CURRENTLY_ACTIVE_MS = 5 * 60_000;
const SWEEP_EVERY_MS = 30_000;
const MAX_TRACKED = 100_000;

export interface PresenceRow {
  user_id: string;
  state: string;
  status_msg: string | null;
  last_active_ts: number;
}

export interface PresenceContent {
  presence: string;
  last_active_ago?: number;
  currently_active?: boolean;
  status_msg?: string;
  displayname?: string;
  avatar_url?: string;
}

export function presenceContent(row: PresenceRow, now = Date.now(), profile?: { displayname: string | null; avatar_url: string | null }): PresenceContent {
  const lastActive = Number(row.last_active_ts);
  const out: PresenceContent = { presence: row.state };
  if (lastActive > 0) out.last_active_ago = Math.max(0, now - lastActive);
  if (row.state === 'online') out.currently_active = lastActive > 0 && now - lastActive < CURRENTLY_ACTIVE_MS;
  if (row.status_msg != null) out.status_msg = row.status_msg;
  if (profile?.displayname != null) out.displayname = profile.displayname;
  if (profile?.avatar_url != null) out.avatar_url = profile.avatar_url;
  return out;
}

export function isPresenceState(s: unknown): s is PresenceState {
  return typeof s === 'string' && (PRESENCE_STATES as readonly string[]).includes(s);
}

interface Syncing {
  inflight: number;
  lastSeen: number;
}

export class PresenceService {
  /** Recently read/written rows, so a sync does not read presence every time. */
  private cache = new Lru<string, PresenceRow | null>(50_000);
  /** Users syncing with set_presence other than offline. */
  private syncing = new Map<string, Syncing>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly startedAt = Date.now();
  private startupSweepDone = false;

  constructor(private readonly ctx: Context) {
    if (ctx.config.presence_enabled) {
      this.sweepTimer = setInterval(() => void this.sweep(), SWEEP_EVERY_MS);
      this.sweepTimer.unref?.();
    }
  }

  get enabled(): boolean {
    return this.ctx.config.presence_enabled;
  }

  async getRow(userId: string): Promise<PresenceRow | undefined> {
    const hit = this.cache.get(userId);
    if (hit !== undefined) return hit ?? undefined;
    const row = await this.ctx.storage.db
      .selectFrom('presence').select(['user_id', 'state', 'status_msg', 'last_active_ts'])
      .where('user_id', '=', userId).executeTakeFirst();
    this.cache.set(userId, row ?? null);
    return row;
  }

  /**
   * Write a presence state with a new stream position and wake the user
   * and everyone in their rooms (when presence is enabled).
   * `statusMsg` undefined keeps the current message; null clears it.
   */
  async set(userId: string, state: PresenceState, opts: { statusMsg?: string | null; active?: boolean } = {}): Promise<void> {
    if (!isPresenceState(state)) throw invalidParam(`Invalid presence state: ${String(state).slice(0, 50)}`);
    const now = Date.now();
    const enabled = this.enabled;
    const row = await this.ctx.write(
      async (tx, alloc, onCommit) => {
        const prev = await tx.selectFrom('presence').select(['status_msg', 'last_active_ts']).where('user_id', '=', userId).executeTakeFirst();
        const statusMsg = opts.statusMsg !== undefined ? opts.statusMsg : (prev?.status_msg ?? null);
        const active = opts.active ?? state === 'online';
        const lastActive = active ? now : Number(prev?.last_active_ts ?? 0);
        const pos = await alloc();
        await tx.insertInto('presence')
          .values({ user_id: userId, state, status_msg: statusMsg, last_active_ts: lastActive, stream_pos: pos })
          .onConflict((oc) => oc.column('user_id').doUpdateSet({ state, status_msg: statusMsg, last_active_ts: lastActive, stream_pos: pos }))
          .execute();
        onCommit(() => this.ctx.streams.presence.entityChanged(userId, pos));
        const rooms = enabled
          ? await tx.selectFrom('room_members').select('room_id').where('user_id', '=', userId).where('membership', '=', 'join').execute()
          : [];
        return { row: { user_id: userId, state, status_msg: statusMsg, last_active_ts: lastActive }, rooms: rooms.map((r) => r.room_id) };
      },
      (r) => (enabled ? [userId, ...r.rooms] : []),
    );
    this.cache.set(userId, row.row);
    const p = { state, statusMsg: row.row.status_msg, lastActiveTs: row.row.last_active_ts };
    // Remote users' presence arrives here too; sendPresenceEdu forwards local users' only.
    await sendPresenceEdu(this.ctx, userId, p, row.rooms).catch((err: unknown) => this.ctx.log.warn({ err }, 'could not queue m.presence'));
  }

  /** Refresh the last-active time without a new stream position (nobody is woken). */
  private async touch(userId: string, row: PresenceRow): Promise<void> {
    const now = Date.now();
    await this.ctx.storage.db.updateTable('presence').set({ last_active_ts: now }).where('user_id', '=', userId).execute();
    this.cache.set(userId, { ...row, last_active_ts: now });
  }

  /** GET /presence/{userId}/status body. */
  async get(userId: string): Promise<PresenceContent | undefined> {
    const row = await this.getRow(userId);
    if (!row) return undefined;
    const c = presenceContent(row);
    return { presence: c.presence, last_active_ago: c.last_active_ago, currently_active: c.currently_active, status_msg: row.status_msg ?? undefined };
  }

  /**
   * A /sync began. `setPresence` is the request's set_presence (default
   * online): online marks an offline user online, unavailable marks them
   * unavailable, offline changes nothing. An explicit unavailable set
   * through the presence API is not overridden by syncing.
   */
  async syncStarted(userId: string, setPresence: string | undefined): Promise<void> {
    const want = setPresence ?? 'online';
    if (want === 'offline' || !this.enabled) return;
    let s = this.syncing.get(userId);
    if (!s) {
      if (this.syncing.size >= MAX_TRACKED) {
        const oldest = this.syncing.keys().next().value as string;
        this.syncing.delete(oldest);
      }
      this.syncing.set(userId, (s = { inflight: 0, lastSeen: Date.now() }));
    }
    s.inflight++;
    s.lastSeen = Date.now();
    try {
      const row = await this.getRow(userId);
      if (want === 'online') {
        if (!row || row.state === 'offline') await this.set(userId, 'online');
        else if (row.state === 'online' && Date.now() - Number(row.last_active_ts) > ACTIVE_REFRESH_MS) await this.touch(userId, row);
      } else if (want === 'unavailable') {
        if (!row || row.state !== 'unavailable') await this.set(userId, 'unavailable', { active: false });
      }
    } catch (err) {
      this.ctx.log.warn({ err, userId }, 'could not update presence on sync');
    }
  }

  syncEnded(userId: string): void {
    const s = this.syncing.get(userId);
    if (!s) return;
    s.inflight = Math.max(0, s.inflight - 1);
    s.lastSeen = Date.now();
  }

  /** Mark users who stopped syncing offline; after start-up, also those left online by a previous run. */
  async sweep(): Promise<void> {
    if (this.stopped) return;
    const now = Date.now();
    try {
      for (const [userId, s] of [...this.syncing]) {
        if (this.stopped) return;
        if (s.inflight > 0 || now - s.lastSeen < OFFLINE_AFTER_MS) continue;
        this.syncing.delete(userId);
        const row = await this.getRow(userId);
        if (row && row.state !== 'offline') await this.set(userId, 'offline', { active: false });
      }
      if (!this.startupSweepDone && now - this.startedAt >= OFFLINE_AFTER_MS) {
        this.startupSweepDone = true;
        const stale = await this.ctx.storage.db
          .selectFrom('presence').select('user_id')
          .where('state', '!=', 'offline').where('last_active_ts', '<', this.startedAt)
          .limit(10_000).execute();
        for (const { user_id } of stale) {
          if (this.stopped) return;
          if (this.syncing.has(user_id)) continue;
          await this.set(user_id, 'offline', { active: false });
        }
      }
    } catch (err) {
      if (!this.stopped) this.ctx.log.warn({ err }, 'presence sweep failed');
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.syncing.clear();
  }
}
