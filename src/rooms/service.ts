import type { Context } from '../server/services.js';
import { WeightedLru } from '../server/lru.js';
import { KeyedMutex } from '../server/mutex.js';
import { EventStore } from './event-store.js';
import { RecentEvents } from './recent-events.js';
import { StateStore } from './state-store.js';
import type { StoredEvent } from './types.js';
import { EventSender, type SendRequest, type TxnKey } from './send.js';
import { RemoteEvents } from './remote-events.js';
import { createRoom, type CreateRoomBody } from './create-room.js';
import { changeMembership, type MembershipChange } from './membership.js';

/** A user's membership in one room, as stored in room_members. */
export interface MemberRowData {
  readonly room_id: string;
  readonly membership: string;
  readonly event_id: string;
  readonly stream_pos: number;
  readonly forgotten: boolean;
}

/** Users whose room_members rows are cached, and the most rows held in all. */
const MEMBER_ROWS_USERS = 10_000;
const MEMBER_ROWS_TOTAL = 200_000;
/** Rooms whose joined members are cached, and the most member ids held in all. */
const JOINED_MEMBERS_ROOMS = 5_000;
const JOINED_MEMBERS_TOTAL = 200_000;

/**
 * The rooms domain: one object other domains call. Events enter a room only
 * through `send` (one at a time per room), which checks the authorization
 * rules, signs, persists and updates state in one transaction.
 */
export class RoomsService {
  readonly events: EventStore;
  readonly state: StateStore;
  /** The newest events of active rooms (fed by the write path after commit). */
  readonly recent = new RecentEvents();
  private readonly sender: EventSender;
  /** One event writer per room at a time, local or remote. */
  readonly roomLocks = new KeyedMutex();
  /** Events from other servers: authorisation and persistence into the room DAG. */
  readonly remote: RemoteEvents;
  /**
   * Each user's room_members rows as committed: dropped after commit by
   * every write that changes them (invalidateMemberships); a read that
   * raced such a write is not kept (generation).
   */
  private memberRows = new WeightedLru<string, readonly MemberRowData[]>(MEMBER_ROWS_USERS, MEMBER_ROWS_TOTAL, (rows) => rows.length);
  private memberGen = 0;
  /** Joined members per room, valid while the room's state does not change after `asOf`. */
  private joined = new WeightedLru<string, { ids: readonly string[]; asOf: number }>(JOINED_MEMBERS_ROOMS, JOINED_MEMBERS_TOTAL, (e) => e.ids.length);

  constructor(private readonly ctx: Context) {
    this.events = new EventStore(ctx.storage.db, ctx.config.event_cache_size);
    this.state = new StateStore(ctx.storage.db, this.events, ctx.config.state_cache_size);
    this.sender = new EventSender(ctx, this.events, this.state, this.roomLocks);
    this.remote = new RemoteEvents(ctx, this.events, this.state, this.roomLocks);
    ctx.streams.onReset(() => {
      this.memberRows.clear();
      this.memberGen++;
      this.joined.clear();
      this.recent.clear();
    });
  }

  /** The user's membership in every room they have a row for (cached; do not modify). */
  async memberRowsOf(userId: string): Promise<readonly MemberRowData[]> {
    const hit = this.memberRows.get(userId);
    if (hit) return hit;
    const gen = this.memberGen;
    const rows = await this.ctx.storage.db.selectFrom('room_members')
      .select(['room_id', 'membership', 'event_id', 'stream_pos', 'forgotten'])
      .where('user_id', '=', userId).execute();
    const out: MemberRowData[] = rows.map((r) => ({
      room_id: r.room_id, membership: r.membership, event_id: r.event_id, stream_pos: Number(r.stream_pos), forgotten: !!r.forgotten,
    }));
    if (gen === this.memberGen) this.memberRows.set(userId, out);
    return out;
  }

  /** A write changed the user's room_members rows (call after it commits). */
  invalidateMemberships(userId: string): void {
    this.memberRows.delete(userId);
    this.memberGen++;
  }

  /** User ids joined to the room (cached; do not modify). */
  async joinedMembers(roomId: string): Promise<readonly string[]> {
    const roomState = this.ctx.streams.roomState;
    const hit = this.joined.get(roomId);
    if (hit && !roomState.hasEntityChanged(roomId, hit.asOf)) return hit.ids;
    const asOf = this.ctx.notifier.position;
    const rows = await this.ctx.storage.db.selectFrom('room_members').select('user_id')
      .where('room_id', '=', roomId).where('membership', '=', 'join').execute();
    const ids = rows.map((r) => r.user_id);
    this.joined.set(roomId, { ids, asOf });
    return ids;
  }

  getRoom(roomId: string) {
    return this.ctx.storage.db.selectFrom('rooms').selectAll().where('room_id', '=', roomId).executeTakeFirst();
  }

  /** Current membership of `userId` in `roomId` ('join', 'invite', 'leave', 'ban', 'knock') or undefined. */
  async membership(roomId: string, userId: string): Promise<string | undefined> {
    const row = await this.ctx.storage.db
      .selectFrom('room_members').select('membership')
      .where('room_id', '=', roomId).where('user_id', '=', userId).executeTakeFirst();
    return row?.membership;
  }

  async joinedRoomIds(userId: string): Promise<string[]> {
    const out: string[] = [];
    for (const r of await this.memberRowsOf(userId)) if (r.membership === 'join') out.push(r.room_id);
    return out;
  }

  /** The event this device already sent to this room under `txnId` (idempotent retries). */
  findTxnEvent(roomId: string, sender: string, txn: TxnKey): Promise<StoredEvent | undefined> {
    return this.sender.findTxn(roomId, sender, txn);
  }

  /** An unsigned, authorised event template on the current state (federation make_join/make_leave). */
  buildUnsigned(...args: Parameters<EventSender['buildUnsigned']>) {
    return this.sender.buildUnsigned(...args);
  }

  /** Build, authorize, sign and persist one event; returns its stored form. */
  send(req: SendRequest): Promise<StoredEvent> {
    return this.sender.send(req);
  }

  /** First event of a new room; also writes the room row. Used by createRoom only. */
  sendCreateEvent(...args: Parameters<EventSender['sendCreateEvent']>): Promise<StoredEvent> {
    return this.sender.sendCreateEvent(...args);
  }

  createRoom(userId: string, body: CreateRoomBody): Promise<{ room_id: string }> {
    return createRoom(this.ctx, userId, body);
  }

  /** Join/invite/leave/kick/ban/unban/knock, with the spec's checks; returns the member event. */
  changeMembership(change: MembershipChange): Promise<StoredEvent> {
    return changeMembership(this.ctx, change);
  }

  /** After a profile change: send a fresh member event in every joined room (spec: profile propagation). */
  async propagateProfile(userId: string): Promise<void> {
    const profile = await this.ctx.accounts.getProfile(userId);
    for (const roomId of await this.joinedRoomIds(userId)) {
      const current = await this.state.stateEvent(roomId, 'm.room.member', userId);
      const content = { ...(current?.pdu.content ?? {}), membership: 'join' } as Record<string, unknown>;
      if (profile.displayname != null) content.displayname = profile.displayname; else delete content.displayname;
      if (profile.avatar_url != null) content.avatar_url = profile.avatar_url; else delete content.avatar_url;
      try {
        await this.send({ roomId, sender: userId, type: 'm.room.member', stateKey: userId, content });
      } catch (err) {
        this.ctx.log.warn({ err, roomId }, 'could not propagate profile change');
      }
    }
  }

  /** Deactivation: leave every room the user is joined to or invited to. */
  async leaveAll(userId: string): Promise<void> {
    const rows = await this.ctx.storage.db.selectFrom('room_members').select(['room_id'])
      .where('user_id', '=', userId).where('membership', 'in', ['join', 'invite', 'knock']).execute();
    for (const { room_id } of rows) {
      try {
        await this.changeMembership({ roomId: room_id, sender: userId, target: userId, membership: 'leave' });
      } catch (err) {
        this.ctx.log.warn({ err, roomId: room_id }, 'could not leave room on deactivation');
      }
    }
  }
}
