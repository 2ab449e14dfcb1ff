import type { Context } from '../server/services.js';
import { EventStore } from './event-store.js';
import { StateStore } from './state-store.js';
import type { StoredEvent } from './types.js';
import { EventSender, type SendRequest, type TxnKey } from './send.js';
import { createRoom, type CreateRoomBody } from './create-room.js';
import { changeMembership, type MembershipChange } from './membership.js';

/**
 * The rooms domain: one object other domains call. Events enter a room only
 * through `send` (one at a time per room), which checks the authorization
 * rules, signs, persists and updates state in one transaction.
 */
export class RoomsService {
  readonly events: EventStore;
  readonly state: StateStore;
  private readonly sender: EventSender;

  constructor(private readonly ctx: Context) {
    this.events = new EventStore(ctx.storage.db, ctx.config.event_cache_size);
    this.state = new StateStore(ctx.storage.db, this.events, ctx.config.state_cache_size);
    this.sender = new EventSender(ctx, this.events, this.state);
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
    const rows = await this.ctx.storage.db
      .selectFrom('room_members').select('room_id')
      .where('user_id', '=', userId).where('membership', '=', 'join').execute();
    return rows.map((r) => r.room_id);
  }

  /** The event this device already sent to this room under `txnId` (idempotent retries). */
  findTxnEvent(roomId: string, sender: string, txn: TxnKey): Promise<StoredEvent | undefined> {
    return this.sender.findTxn(roomId, sender, txn);
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
