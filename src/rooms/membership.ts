import { serverNameOf } from '../core/identifiers.js';
import { effectivePowerLevels, requiredLevelForAction, userPowerLevel } from '../core/power-levels.js';
import { getRoomVersion } from '../core/room-versions.js';
import { MatrixError, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { stateKeyOf } from './state-store.js';
import type { StoredEvent } from './types.js';
import type { TxnKey } from './send.js';
import type { PDU } from '../core/events.js';
import type { RoomVersion } from '../core/room-versions.js';
import { countersignInvite, rejectRemoteInvite } from '../federation/invite.js';

export interface MembershipChange {
  roomId: string;
  /** Who acts (the requester). */
  sender: string;
  /** Whose membership changes. */
  target: string;
  membership: 'join' | 'invite' | 'leave' | 'ban' | 'knock';
  reason?: string;
  isDirect?: boolean;
  txn?: TxnKey;
}

/**
 * Every membership change: join, invite, leave, kick (leave of another
 * user), ban, unban (leave of a banned user) and knock. The authorization
 * rules make the real decision; this only builds the right content (profile,
 * reason, restricted-join authorisation) and gives clearer errors first.
 */
export async function changeMembership(ctx: Context, change: MembershipChange): Promise<StoredEvent> {
  const { roomId, sender, target, membership } = change;
  const room = await ctx.rooms.getRoom(roomId);
  if (!room) {
    // Declining an invite to a room that lives only on other servers.
    if (membership === 'leave' && sender === target) {
      await rejectRemoteInvite(ctx, roomId, target, change.reason);
      const row = await ctx.storage.db.selectFrom('room_members').select('event_id').where('room_id', '=', roomId).where('user_id', '=', target).executeTakeFirst();
      const ev = row ? await ctx.rooms.events.get(row.event_id) : undefined;
      if (ev) return ev;
    }
    throw notFound('Unknown room');
  }
  const remoteTarget = serverNameOf(target) !== ctx.config.server_name;
  if (remoteTarget && !ctx.federation.policy.allows(serverNameOf(target) ?? '')) {
    throw new MatrixError('M_FORBIDDEN', 403, `This server does not federate with ${serverNameOf(target)}`);
  }
  const targetUser = remoteTarget
    ? { user_id: target, deactivated: 0 }
    : await ctx.storage.db.selectFrom('users').select(['user_id', 'deactivated']).where('user_id', '=', target).executeTakeFirst();
  if (!targetUser) throw notFound(`Unknown user ${target}`);

  const current = await ctx.rooms.membership(roomId, target);
  const content: Record<string, unknown> = { membership };
  if (change.reason !== undefined) content.reason = change.reason;

  if ((membership === 'join' || membership === 'invite' || membership === 'knock') && !remoteTarget) {
    const profile = await ctx.accounts.getProfile(target);
    if (profile.displayname != null) content.displayname = profile.displayname;
    if (profile.avatar_url != null) content.avatar_url = profile.avatar_url;
  }
  if (membership === 'invite') {
    if (change.isDirect) content.is_direct = true;
    if (current === 'join') throw new MatrixError('M_FORBIDDEN', 403, `${target} is already in the room`);
    if (current === 'ban') throw new MatrixError('M_FORBIDDEN', 403, `${target} is banned from the room`);
    if (targetUser.deactivated) throw new MatrixError('M_FORBIDDEN', 403, `${target} is deactivated`);
  }
  if (membership === 'join' && current !== 'join' && current !== 'invite') {
    await authoriseRestrictedJoin(ctx, roomId, target, content);
  }
  if (membership === 'leave' && sender !== target && current === 'ban') {
    // Unban: the auth rules check the ban level for leaving a banned user.
  }
  // A remote invitee's server must countersign the invite before it exists.
  const countersign = membership === 'invite' && remoteTarget ? (signed: PDU, eventId: string, version: RoomVersion) => countersignInvite(ctx, version, signed, eventId) : undefined;
  return ctx.rooms.send({ roomId, sender, type: 'm.room.member', stateKey: target, content, txn: change.txn, countersign });
}

/**
 * Restricted rooms (v8+): a user who is not invited may join if they are in
 * one of the rooms the join rule allows; the join event then names a local
 * member who can invite (join_authorised_via_users_server).
 */
export async function authoriseRestrictedJoin(ctx: Context, roomId: string, userId: string, content: Record<string, unknown>): Promise<void> {
  const joinRules = await ctx.rooms.state.stateEvent(roomId, 'm.room.join_rules');
  const rule = joinRules?.pdu.content.join_rule;
  if (rule !== 'restricted' && rule !== 'knock_restricted') return;
  const allow = Array.isArray(joinRules!.pdu.content.allow) ? (joinRules!.pdu.content.allow as Array<{ type?: string; room_id?: string }>) : [];
  let allowed = false;
  for (const a of allow) {
    if (a.type === 'm.room_membership' && typeof a.room_id === 'string' && (await ctx.rooms.membership(a.room_id, userId)) === 'join') {
      allowed = true;
      break;
    }
  }
  if (!allowed) return; // the auth rules will refuse with a clear reason
  const room = await ctx.rooms.getRoom(roomId);
  const version = getRoomVersion(room!.room_version)!;
  const state = await ctx.rooms.state.current(roomId);
  const create = state.get(stateKeyOf('m.room.create', ''))?.pdu;
  const pl = effectivePowerLevels(state.get(stateKeyOf('m.room.power_levels', ''))?.pdu.content, create, version);
  const inviteLevel = requiredLevelForAction(pl, 'invite');
  for (const [k, ev] of state) {
    if (!k.startsWith('m.room.member\u0000') || ev.pdu.content.membership !== 'join') continue;
    const member = ev.pdu.state_key!;
    if (serverNameOf(member) !== ctx.config.server_name) continue;
    if (userPowerLevel(pl, member, create, version) >= inviteLevel) {
      content.join_authorised_via_users_server = member;
      return;
    }
  }
}
