/**
 * Invites across servers (server-server API, "Inviting to a room"):
 *
 * - outbound: our invite event for a remote user goes to the invitee's
 *   server first (PUT /v2/invite), which countersigns it; only then is it
 *   persisted and sent to the room;
 * - inbound: a remote room invites one of our users; we countersign and
 *   keep the event with the stripped room state the inviter sent, so the
 *   invite shows in /sync although we don't know the room yet;
 * - rejecting such an invite goes through make_leave/send_leave on the
 *   inviting server.
 */
import { computeEventId } from '../core/event-hashing.js';
import { hashAndSignEvent, verifyEventSignature } from '../core/event-signing.js';
import type { PDU } from '../core/events.js';
import { serverNameOf } from '../core/identifiers.js';
import { getRoomVersion, type RoomVersion } from '../core/room-versions.js';
import { MatrixError, forbidden } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { EventStatus } from '../rooms/remote-events.js';
import { FederationRequestError } from './client.js';
import { checkIncomingPdu } from './pdu-checks.js';
import { federationPdu } from './pdu-format.js';

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Stripped state sent along with an invite, so the invitee can show the room. */
const STRIPPED_TYPES = ['m.room.create', 'm.room.name', 'm.room.avatar', 'm.room.topic', 'm.room.join_rules', 'm.room.canonical_alias', 'm.room.encryption'];

/** The room's stripped state (name, avatar, join rules...) plus `member`'s own member event. */
export async function strippedRoomState(ctx: Context, roomId: string, member: string): Promise<Array<Record<string, unknown>>> {
  const ids = await ctx.rooms.state.currentIds(roomId);
  const wanted = [...STRIPPED_TYPES.map((t) => `${t}\u0000`), `m.room.member\u0000${member}`].map((k) => ids.get(k)).filter((x): x is string => !!x);
  return (await ctx.rooms.events.getMany(wanted)).map((e) => ({
    type: e.pdu.type, state_key: e.pdu.state_key ?? '', sender: e.pdu.sender, content: e.pdu.content,
  }));
}

/**
 * Ask the invitee's server to countersign our invite; returns the event with
 * both signatures. A refusal becomes 403 for the inviting client.
 */
export async function countersignInvite(ctx: Context, version: RoomVersion, signed: PDU, eventId: string): Promise<PDU> {
  const target = signed.state_key ?? '';
  const server = serverNameOf(target);
  if (!server) throw new MatrixError('M_INVALID_PARAM', 400, 'Invalid user id');
  let res: { event?: unknown };
  try {
    res = await ctx.federation.client.request<{ event?: unknown }>(server, {
      method: 'PUT',
      path: `/_matrix/federation/v2/invite/${encodeURIComponent(signed.room_id ?? '')}/${encodeURIComponent(eventId)}`,
      body: { event: federationPdu(signed, version), room_version: version.id, invite_room_state: await strippedRoomState(ctx, signed.room_id ?? '', signed.sender) },
    });
  } catch (err) {
    if (err instanceof FederationRequestError && err.status !== undefined && err.status < 500) {
      throw forbidden(`${server} refused the invite: ${err.errcode ?? err.status}`);
    }
    throw new MatrixError('M_UNKNOWN', 502, `Could not reach ${server} to invite ${target}`);
  }
  const back = res.event;
  if (!isObject(back) || !isObject(back.signatures)) throw new MatrixError('M_UNKNOWN', 502, `${server} answered the invite without an event`);
  const theirs = isObject(back.signatures[server]) ? (back.signatures[server] as Record<string, unknown>) : {};
  const mine: Record<string, string> = {};
  for (const [keyId, sig] of Object.entries(theirs)) {
    if (typeof sig !== 'string') continue;
    const key = await ctx.federation.keys.getVerifyKey(server, keyId, signed.origin_server_ts);
    if (key && verifyEventSignature({ ...signed, signatures: { [server]: { [keyId]: sig } } }, version, server, keyId, key)) mine[keyId] = sig;
  }
  if (Object.keys(mine).length === 0) throw new MatrixError('M_UNKNOWN', 502, `${server} did not countersign the invite`);
  return { ...signed, signatures: { ...(signed.signatures ?? {}), [server]: mine } };
}

/**
 * PUT /_matrix/federation/v2/invite: a remote room invites one of our users.
 * Returns the countersigned event.
 */
export async function receiveInvite(ctx: Context, origin: string, roomId: string, eventId: string, body: unknown): Promise<{ event: PDU }> {
  if (!isObject(body) || !isObject(body.event)) throw new MatrixError('M_BAD_JSON', 400, 'event is required');
  const versionId = typeof body.room_version === 'string' ? body.room_version : '1';
  const version = getRoomVersion(versionId);
  if (!version) throw new MatrixError('M_INCOMPATIBLE_ROOM_VERSION', 400, `Room version ${versionId} is not supported`, { room_version: versionId });
  const checked = await checkIncomingPdu(body.event, version, (s, k, t) => ctx.federation.keys.getVerifyKey(s, k, t));
  if (!checked.ok) throw new MatrixError('M_BAD_JSON', 400, `Invalid event: ${checked.reason}`);
  const pdu = checked.pdu;
  if (checked.eventId !== eventId || pdu.room_id !== roomId) throw new MatrixError('M_BAD_JSON', 400, 'Event does not match the request');
  if (pdu.type !== 'm.room.member' || pdu.content.membership !== 'invite' || typeof pdu.state_key !== 'string') {
    throw new MatrixError('M_BAD_JSON', 400, 'Not an invite event');
  }
  if (serverNameOf(pdu.sender) !== origin) throw forbidden('The invite must come from the inviter\'s server');
  const invitee = pdu.state_key;
  if (serverNameOf(invitee) !== ctx.config.server_name) throw forbidden('The invitee is not a user of this server');
  const user = await ctx.storage.db.selectFrom('users').select(['deactivated']).where('user_id', '=', invitee).executeTakeFirst();
  if (!user || user.deactivated) throw new MatrixError('M_NOT_FOUND', 404, 'Unknown user');
  const current = await ctx.rooms.membership(roomId, invitee);
  if (current === 'ban') throw forbidden('The user is banned from the room');

  const countersigned = hashAndSignEvent(pdu, version, ctx.config.server_name, ctx.signingKey);
  // Our server may already be in the room; then the invite arrives in a transaction too and is handled there.
  if (!(await ctx.rooms.getRoom(roomId))) {
    const strippedState = Array.isArray(body.invite_room_state) ? body.invite_room_state.filter(isObject).slice(0, 50) : [];
    await storeRemoteMembership(ctx, roomId, eventId, countersigned, 'invite', { invite_room_state: strippedState });
  }
  return { event: federationPdu(countersigned, version) };
}

/**
 * Keep a membership event of a room we are not in (an invite, or our
 * rejection of one) as an outlier, and point the user's membership at it.
 */
export async function storeRemoteMembership(ctx: Context, roomId: string, eventId: string, pdu: PDU, membership: string, unsigned: Record<string, unknown>): Promise<void> {
  const userId = pdu.state_key!;
  const json = JSON.stringify({ ...pdu, event_id: eventId, room_id: roomId, unsigned });
  await ctx.write(async (tx, alloc, onCommit) => {
    const pos = await alloc();
    await tx.insertInto('events').values({
      event_id: eventId, room_id: roomId, type: pdu.type, state_key: userId, sender: pdu.sender,
      origin_server_ts: pdu.origin_server_ts, depth: pdu.depth, stream_pos: pos, json, state_group: null,
      redacted_by: null, rejected: EventStatus.OUTLIER, txn_device_id: null, txn_id: null, txn_scope: null,
    }).onConflict((oc) => oc.column('event_id').doNothing()).execute();
    await tx.insertInto('room_members').values({ room_id: roomId, user_id: userId, membership, event_id: eventId, stream_pos: pos, forgotten: 0 })
      .onConflict((oc) => oc.columns(['room_id', 'user_id']).doUpdateSet({ membership, event_id: eventId, stream_pos: pos, forgotten: 0 }))
      .execute();
    onCommit(() => {
      ctx.rooms.events.invalidate(eventId);
      ctx.rooms.invalidateMemberships(userId);
    });
  }, () => [userId]);
}

/**
 * Reject an invite to a room we are not in: make_leave/send_leave through
 * the inviter's server, then record the leave locally.
 */
export async function rejectRemoteInvite(ctx: Context, roomId: string, userId: string, reason?: string): Promise<void> {
  const row = await ctx.storage.db.selectFrom('room_members').select(['event_id', 'membership'])
    .where('room_id', '=', roomId).where('user_id', '=', userId).executeTakeFirst();
  if (!row || row.membership !== 'invite') throw new MatrixError('M_NOT_FOUND', 404, 'Unknown room');
  const invite = await ctx.rooms.events.get(row.event_id);
  const server = invite ? serverNameOf(invite.pdu.sender) : null;
  const forget = () => storeLocalLeave(ctx, roomId, userId, reason);
  if (!server) return forget();
  try {
    const template = await ctx.federation.client.request<{ event?: unknown; room_version?: unknown }>(server, {
      method: 'GET', path: `/_matrix/federation/v1/make_leave/${encodeURIComponent(roomId)}/${encodeURIComponent(userId)}`,
    });
    const version = getRoomVersion(typeof template.room_version === 'string' ? template.room_version : '1');
    const t = template.event;
    if (!version || !isObject(t)) throw new Error('bad make_leave answer');
    const content: Record<string, unknown> = { membership: 'leave' };
    if (reason !== undefined) content.reason = reason;
    const pdu: PDU = {
      room_id: roomId, type: 'm.room.member', state_key: userId, sender: userId, content,
      origin_server_ts: Date.now(), depth: Number(t.depth) || 0,
      prev_events: (Array.isArray(t.prev_events) ? t.prev_events : []) as PDU['prev_events'],
      auth_events: (Array.isArray(t.auth_events) ? t.auth_events : []) as PDU['auth_events'],
    };
    if (version.eventIdFormat === 'v1') {
      pdu.event_id = computeEventId(pdu, version, ctx.config.server_name);
      pdu.origin = ctx.config.server_name;
    }
    const signed = hashAndSignEvent(pdu, version, ctx.config.server_name, ctx.signingKey);
    const eventId = version.eventIdFormat === 'v1' ? pdu.event_id! : computeEventId(signed, version);
    await ctx.federation.client.request(server, {
      method: 'PUT', path: `/_matrix/federation/v2/send_leave/${encodeURIComponent(roomId)}/${encodeURIComponent(eventId)}`, body: signed,
    });
    await storeRemoteMembership(ctx, roomId, eventId, signed, 'leave', {});
  } catch (err) {
    // The inviting server is gone or refuses: the user still wants the invite gone (as Synapse does).
    ctx.log.info({ err, roomId, server }, 'could not reject the invite remotely; rejecting locally');
    await forget();
  }
}

/** A leave that only exists here: the invite is dropped from the user's view. */
async function storeLocalLeave(ctx: Context, roomId: string, userId: string, reason?: string): Promise<void> {
  const content: Record<string, unknown> = { membership: 'leave' };
  if (reason !== undefined) content.reason = reason;
  const eventId = `$local-leave-${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
  const pdu: PDU = {
    room_id: roomId, type: 'm.room.member', state_key: userId, sender: userId, content,
    origin_server_ts: Date.now(), depth: 0, prev_events: [], auth_events: [],
  };
  await storeRemoteMembership(ctx, roomId, eventId, pdu, 'leave', {});
}
