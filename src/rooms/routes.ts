/**
 * Client-server room endpoints: creation, membership, sending, state,
 * reading (timeline, context, members) and redaction. Aliases and the room
 * directory live in directory.ts; the reading logic in timeline.ts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { getRoomVersion } from '../core/room-versions.js';
import { isValidHistoricalUserId, isValidRoomAlias, isValidRoomId, isValidServerName, serverNameOf } from '../core/identifiers.js';
import { joinRemoteRoom, knockRemoteRoom } from '../federation/join.js';
import { assertRoomNotBlocked } from '../admin/room-admin.js';
import { queryRemoteAlias } from '../federation/query-routes.js';
import { shadowBannedEventId } from '../admin/users-routes.js';
import { serverNoticesRoom } from '../admin/notices.js';
import { MatrixError, badJson, forbidden, invalidParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { jsonObject, parseBody, parseQuery, queryInt } from '../server/validate.js';
import { stateKeyOf } from './state-store.js';
import type { CreateRoomBody } from './create-room.js';
import type { MembershipChange } from './membership.js';
import { refuseIfSuspended, suspendedError } from '../accounts/suspension.js';
import { aliasFromLocalpart, checkAliasSyntax, isLocalAlias, registerDirectoryRoutes, resolveAlias } from './directory.js';
import {
  eventContext, formatEvent, formatEvents, joinedMembers, openRoomForReading, parseFilterParam,
  readableState, roomMembers, roomMessages, visibleEvent,
} from './timeline.js';

const V3 = '/_matrix/client/v3';

type Requester = Awaited<ReturnType<Context['tokens']['authenticate']>>;

const params = (req: FastifyRequest) => req.params as Record<string, string>;

/** Room ids in paths must at least look like room ids. */
function roomIdParam(req: FastifyRequest): string {
  const roomId = params(req).roomId;
  if (!isValidRoomId(roomId)) throw invalidParam(`Invalid room id: ${roomId}`);
  return roomId;
}

/** Event types and state keys are limited to 255 bytes (spec: size limits). */
function checkTypeAndKey(type: string, stateKey?: string): void {
  if (!type) throw invalidParam('Event type must not be empty');
  if (Buffer.byteLength(type) > 255) throw invalidParam('Event type is longer than 255 bytes');
  if (stateKey !== undefined && Buffer.byteLength(stateKey) > 255) throw invalidParam('State key is longer than 255 bytes');
}

const guestForbidden = (what: string) => new MatrixError('M_GUEST_ACCESS_FORBIDDEN', 403, `Guests may not ${what}`);

// ---------------------------------------------------------------------------
// Bodies

const userIdString = z.string().refine(isValidHistoricalUserId, { message: 'Invalid user id' });

const createRoomSchema = z.object({
  visibility: z.enum(['public', 'private']).optional(),
  room_alias_name: z.string().optional(),
  name: z.string().optional(),
  topic: z.string().optional(),
  invite: z.array(z.string()).optional(),
  invite_3pid: z.array(z.object({
    id_server: z.string(),
    id_access_token: z.string().optional(),
    medium: z.string(),
    address: z.string(),
  })).optional(),
  room_version: z.string().optional(),
  creation_content: jsonObject.optional(),
  initial_state: z.array(z.object({
    type: z.string().min(1),
    state_key: z.string().optional(),
    content: jsonObject,
  })).optional(),
  preset: z.enum(['private_chat', 'public_chat', 'trusted_private_chat']).optional(),
  is_direct: z.boolean().optional(),
  power_level_content_override: jsonObject.optional(),
});

const reasonSchema = z.object({ reason: z.string().optional() });
const joinSchema = z.object({ reason: z.string().optional(), third_party_signed: jsonObject.optional() });
const targetSchema = z.object({ user_id: userIdString, reason: z.string().optional() });
const inviteSchema = z.object({ user_id: userIdString, reason: z.string().optional() });

const membershipEnum = z.enum(['join', 'invite', 'knock', 'leave', 'ban']);
const membersQuery = z.object({
  at: z.string().optional(),
  membership: membershipEnum.optional(),
  not_membership: membershipEnum.optional(),
});
const messagesQuery = z.object({
  from: z.string().optional(),
  to: z.string().optional(),
  // Required by the spec; defaulting to backwards like other servers do is harmless.
  dir: z.enum(['b', 'f']).optional(),
  limit: queryInt(0, 1_000_000).optional(),
  filter: z.string().optional(),
});
const contextQuery = z.object({
  limit: queryInt(0, 1_000_000).optional(),
  filter: z.string().optional(),
});
const stateQuery = z.object({ format: z.enum(['content', 'event']).optional() });

// ---------------------------------------------------------------------------
// Helpers

/**
 * Room id of `/join/{roomIdOrAlias}`-style parameters, with the servers to
 * join through that an alias lookup named: local aliases from our
 * directory, remote ones from their server's (GET /query/directory).
 */
async function resolveRoomIdOrAlias(ctx: Context, idOrAlias: string): Promise<{ roomId: string; servers: string[] }> {
  if (idOrAlias.startsWith('!')) {
    if (!isValidRoomId(idOrAlias)) throw invalidParam(`Invalid room id: ${idOrAlias}`);
    return { roomId: idOrAlias, servers: [] };
  }
  if (idOrAlias.startsWith('#')) {
    checkAliasSyntax(idOrAlias);
    if (!isLocalAlias(ctx, idOrAlias)) return queryRemoteAlias(ctx, idOrAlias);
    const roomId = await resolveAlias(ctx, idOrAlias);
    if (!roomId) throw notFound(`Room alias ${idOrAlias} not found`);
    return { roomId, servers: [] };
  }
  throw invalidParam(`${idOrAlias} is not a room id or alias`);
}

/** `via` (and the deprecated `server_name`) query parameters: servers to join through. */
function viaServers(query: unknown): string[] {
  const q = (query ?? {}) as Record<string, unknown>;
  const list = (v: unknown) => (Array.isArray(v) ? v : v === undefined ? [] : [v]).filter((x): x is string => typeof x === 'string' && isValidServerName(x));
  return [...list(q.via), ...list(q.server_name)];
}

/** Spec (m.annotation): no second annotation with the same event type and key by the same user. */
async function checkDuplicateAnnotation(ctx: Context, roomId: string, sender: string, type: string, content: Record<string, unknown>): Promise<void> {
  const rel = content['m.relates_to'] as { rel_type?: unknown; event_id?: unknown; key?: unknown } | undefined;
  if (!rel || rel.rel_type !== 'm.annotation' || typeof rel.event_id !== 'string' || typeof rel.key !== 'string') return;
  const rows = await ctx.storage.db.selectFrom('event_relations as r')
    .innerJoin('events as e', 'e.event_id', 'r.event_id')
    .select(['e.json'])
    .where('r.relates_to', '=', rel.event_id).where('r.rel_type', '=', 'm.annotation')
    .where('r.room_id', '=', roomId).where('e.sender', '=', sender).where('e.type', '=', type)
    .where('e.redacted_by', 'is', null).where('e.rejected', '=', 0)
    .execute();
  for (const r of rows) {
    const other = (JSON.parse(r.json) as { content?: Record<string, unknown> }).content?.['m.relates_to'] as { key?: unknown } | undefined;
    if (other?.key === rel.key) throw new MatrixError('M_DUPLICATE_ANNOTATION', 400, 'You have already sent this annotation');
  }
}

/**
 * m.room.canonical_alias: new aliases must be valid and point to this room
 * (spec: PUT /state). Aliases already in the current event are not checked.
 */
async function checkCanonicalAlias(ctx: Context, roomId: string, content: Record<string, unknown>): Promise<void> {
  const current = (await ctx.rooms.state.stateEvent(roomId, 'm.room.canonical_alias'))?.pdu.content ?? {};
  const existing = new Set<unknown>([current.alias, ...(Array.isArray(current.alt_aliases) ? current.alt_aliases : [])]);
  const proposed: string[] = [];
  if (content.alias !== undefined && content.alias !== null) {
    if (typeof content.alias !== 'string') throw invalidParam('alias must be a string');
    proposed.push(content.alias);
  }
  if (content.alt_aliases !== undefined) {
    if (!Array.isArray(content.alt_aliases) || content.alt_aliases.some((a) => typeof a !== 'string')) {
      throw invalidParam('alt_aliases must be an array of strings');
    }
    proposed.push(...(content.alt_aliases as string[]));
  }
  for (const alias of proposed) {
    if (existing.has(alias)) continue;
    if (!isValidRoomAlias(alias)) throw invalidParam(`Invalid alias: ${alias}`);
    const target = isLocalAlias(ctx, alias) ? await resolveAlias(ctx, alias) : undefined;
    if (target !== roomId) throw new MatrixError('M_BAD_ALIAS', 400, `The alias ${alias} does not point to this room`);
  }
}

// ---------------------------------------------------------------------------
// Routes

export function registerRoomRoutes(app: FastifyInstance, ctx: Context): void {
  registerDirectoryRoutes(app, ctx);

  // ---- creation

  app.post(`${V3}/createRoom`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    if (who.isGuest) throw guestForbidden('create rooms');
    refuseIfSuspended(who);
    const body = parseBody(createRoomSchema, req.body) as CreateRoomBody;
    if (body.room_version !== undefined && !getRoomVersion(body.room_version)) {
      throw new MatrixError('M_UNSUPPORTED_ROOM_VERSION', 400, `Room version ${body.room_version} is not supported`);
    }
    for (const u of body.invite ?? []) {
      if (!isValidHistoricalUserId(u)) throw invalidParam(`Invalid user id in invite: ${u}`);
    }
    if (body.room_alias_name !== undefined) {
      const alias = aliasFromLocalpart(body.room_alias_name, ctx.config.server_name);
      if (await resolveAlias(ctx, alias)) throw new MatrixError('M_ROOM_IN_USE', 400, `Room alias ${alias} is already taken`);
    }
    for (const ev of body.initial_state ?? []) checkTypeAndKey(ev.type, ev.state_key);
    return ctx.rooms.createRoom(who.userId, body);
  });

  // ---- membership

  const join = async (who: Requester, roomId: string, reason?: string, via: string[] = []) => {
    // A suspended user may still join their server-notices room: that is how the admins reach them.
    if (who.suspended && (await serverNoticesRoom(ctx, who.userId)) !== roomId) throw suspendedError();
    await assertRoomNotBlocked(ctx, roomId);
    const room = await ctx.rooms.getRoom(roomId);
    if (!room) {
      // Not a room we know: join it through a server that is in it.
      if (who.isGuest) throw guestForbidden('join a room over federation');
      const servers = [...via];
      // Accepting an invite: the inviting server is surely in the room.
      const invite = await ctx.storage.db.selectFrom('room_members').select('event_id')
        .where('room_id', '=', roomId).where('user_id', '=', who.userId).where('membership', '=', 'invite').executeTakeFirst();
      const inviteEvent = invite ? await ctx.rooms.events.get(invite.event_id) : undefined;
      const inviter = inviteEvent ? serverNameOf(inviteEvent.pdu.sender) : null;
      if (inviter) servers.unshift(inviter);
      const idServer = serverNameOf(roomId);
      if (idServer) servers.push(idServer);
      if (!servers.some((s) => s !== ctx.config.server_name)) throw notFound('Room not found');
      const profile = await ctx.accounts.getProfile(who.userId);
      const content: Record<string, unknown> = {};
      if (profile.displayname != null) content.displayname = profile.displayname;
      if (profile.avatar_url != null) content.avatar_url = profile.avatar_url;
      if (reason !== undefined) content.reason = reason;
      await joinRemoteRoom(ctx, { roomId, userId: who.userId, servers, content });
      return { room_id: roomId };
    }
    if (who.isGuest) {
      const ga = await ctx.rooms.state.stateEvent(roomId, 'm.room.guest_access');
      if (ga?.pdu.content.guest_access !== 'can_join') throw guestForbidden('join this room');
    }
    await ctx.rooms.changeMembership({ roomId, sender: who.userId, target: who.userId, membership: 'join', reason });
    return { room_id: roomId };
  };

  app.post(`${V3}/join/:roomIdOrAlias`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const body = parseBody(joinSchema, req.body);
    const { roomId, servers } = await resolveRoomIdOrAlias(ctx, params(req).roomIdOrAlias);
    return join(who, roomId, body.reason, [...viaServers(req.query), ...servers]);
  });

  app.post(`${V3}/rooms/:roomId/join`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const body = parseBody(joinSchema, req.body);
    return join(who, roomIdParam(req), body.reason);
  });

  app.post(`${V3}/knock/:roomIdOrAlias`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    if (who.isGuest) throw guestForbidden('knock');
    refuseIfSuspended(who);
    const body = parseBody(reasonSchema, req.body);
    const { roomId, servers } = await resolveRoomIdOrAlias(ctx, params(req).roomIdOrAlias);
    if (!(await ctx.rooms.getRoom(roomId))) {
      // A room on other servers: knock through one that is in it.
      const via = [...viaServers(req.query), ...servers];
      const idServer = serverNameOf(roomId);
      if (idServer) via.push(idServer);
      if (!via.some((s) => s !== ctx.config.server_name)) throw notFound('Room not found');
      const content: Record<string, unknown> = {};
      const profile = await ctx.accounts.getProfile(who.userId);
      if (profile.displayname != null) content.displayname = profile.displayname;
      if (profile.avatar_url != null) content.avatar_url = profile.avatar_url;
      if (body.reason !== undefined) content.reason = body.reason;
      await knockRemoteRoom(ctx, { roomId, userId: who.userId, servers: via, content });
      return { room_id: roomId };
    }
    await ctx.rooms.changeMembership({ roomId, sender: who.userId, target: who.userId, membership: 'knock', reason: body.reason });
    return { room_id: roomId };
  });

  app.post(`${V3}/rooms/:roomId/invite`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    if (who.isGuest) throw guestForbidden('invite users');
    refuseIfSuspended(who);
    const roomId = roomIdParam(req);
    const raw = req.body as Record<string, unknown> | undefined;
    if (raw && typeof raw === 'object' && raw.user_id === undefined && (raw.medium !== undefined || raw.address !== undefined)) {
      throw new MatrixError('M_UNRECOGNIZED', 400, 'Third-party invites are not supported by this server');
    }
    const body = parseBody(inviteSchema, req.body);
    const change: MembershipChange = { roomId, sender: who.userId, target: body.user_id, membership: 'invite', reason: body.reason };
    await ctx.rooms.changeMembership(change);
    return {};
  });

  app.post(`${V3}/rooms/:roomId/leave`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const body = parseBody(reasonSchema, req.body);
    const membership = await ctx.rooms.membership(roomId, who.userId);
    // An invite to a room that lives only on other servers can still be declined.
    if (!(await ctx.rooms.getRoom(roomId)) && membership !== 'invite') throw notFound('Room not found');
    // Leaving a room one has already left is a no-op.
    if (membership === 'leave') return {};
    await ctx.rooms.changeMembership({ roomId, sender: who.userId, target: who.userId, membership: 'leave', reason: body.reason });
    return {};
  });

  app.post(`${V3}/rooms/:roomId/forget`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    parseBody(z.object({}), req.body);
    const membership = await ctx.rooms.membership(roomId, who.userId);
    if (membership === 'join' || membership === 'invite' || membership === 'knock') {
      throw new MatrixError('M_UNKNOWN', 400, `User ${who.userId} is in room ${roomId}`);
    }
    if (membership !== undefined) {
      await ctx.write(async (tx, _alloc, onCommit) => {
        await tx.updateTable('room_members').set({ forgotten: 1 })
          .where('room_id', '=', roomId).where('user_id', '=', who.userId)
          .where('membership', 'in', ['leave', 'ban'])
          .execute();
        onCommit(() => ctx.rooms.invalidateMemberships(who.userId));
      }, () => [who.userId]);
    }
    return {};
  });

  app.post(`${V3}/rooms/:roomId/kick`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    if (who.isGuest) throw guestForbidden('kick users');
    refuseIfSuspended(who);
    const roomId = roomIdParam(req);
    const body = parseBody(targetSchema, req.body);
    if (!(await ctx.rooms.getRoom(roomId))) throw notFound('Room not found');
    const current = await ctx.rooms.membership(roomId, body.user_id);
    // A "kick" of a banned user would unban them; of a non-member, mean nothing.
    if (current !== 'join' && current !== 'invite' && current !== 'knock') {
      throw forbidden(`${body.user_id} is not in the room`);
    }
    await ctx.rooms.changeMembership({ roomId, sender: who.userId, target: body.user_id, membership: 'leave', reason: body.reason });
    return {};
  });

  app.post(`${V3}/rooms/:roomId/ban`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    if (who.isGuest) throw guestForbidden('ban users');
    refuseIfSuspended(who);
    const roomId = roomIdParam(req);
    const body = parseBody(targetSchema, req.body);
    await ctx.rooms.changeMembership({ roomId, sender: who.userId, target: body.user_id, membership: 'ban', reason: body.reason });
    return {};
  });

  app.post(`${V3}/rooms/:roomId/unban`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    if (who.isGuest) throw guestForbidden('unban users');
    refuseIfSuspended(who);
    const roomId = roomIdParam(req);
    const body = parseBody(targetSchema, req.body);
    if (!(await ctx.rooms.getRoom(roomId))) throw notFound('Room not found');
    if ((await ctx.rooms.membership(roomId, body.user_id)) !== 'ban') throw forbidden(`${body.user_id} is not banned`);
    await ctx.rooms.changeMembership({ roomId, sender: who.userId, target: body.user_id, membership: 'leave', reason: body.reason });
    return {};
  });

  app.get(`${V3}/joined_rooms`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    return { joined_rooms: await ctx.rooms.joinedRoomIds(who.userId) };
  });

  // ---- sending

  /** A suspended user may redact their own events only. */
  const refuseSuspendedRedaction = async (who: Requester, eventId: string) => {
    if (!who.suspended) return;
    const target = await ctx.rooms.events.get(eventId);
    if (!target || target.pdu.sender !== who.userId) throw suspendedError();
  };

  app.put(`${V3}/rooms/:roomId/send/:eventType/:txnId`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const { eventType, txnId } = params(req);
    checkTypeAndKey(eventType);
    const content = parseBody(jsonObject, req.body);
    if (who.suspended) {
      if (eventType !== 'm.room.redaction' || typeof content.redacts !== 'string') throw suspendedError();
      await refuseSuspendedRedaction(who, content.redacts);
    }
    const txn = { deviceId: who.deviceId, txnId, scope: `send/${eventType}` };
    const prior = await ctx.rooms.findTxnEvent(roomId, who.userId, txn);
    if (prior) return { event_id: prior.pdu.event_id };
    ctx.limits.message.take(who.userId);
    const shadowId = shadowBannedEventId(who);
    if (shadowId) return { event_id: shadowId };
    let redacts: string | undefined;
    if (eventType === 'm.room.redaction') {
      // Accepted in content for every room version; moved to the top level by the sender for pre-v11 rooms.
      if (typeof content.redacts !== 'string') throw badJson('m.room.redaction needs content.redacts');
      redacts = content.redacts;
      delete content.redacts;
    }
    await checkDuplicateAnnotation(ctx, roomId, who.userId, eventType, content);
    const ev = await ctx.rooms.send({
      roomId, sender: who.userId, type: eventType, content, redacts, txn,
    });
    return { event_id: ev.pdu.event_id };
  });

  const putState = async (req: FastifyRequest, eventType: string, stateKey: string) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    checkTypeAndKey(eventType, stateKey);
    const content = parseBody(jsonObject, req.body);
    refuseIfSuspended(who);
    ctx.limits.message.take(who.userId);
    const shadowId = shadowBannedEventId(who);
    if (shadowId) return { event_id: shadowId };
    if (eventType === 'm.room.canonical_alias' && stateKey === '') await checkCanonicalAlias(ctx, roomId, content);
    const ev = await ctx.rooms.send({ roomId, sender: who.userId, type: eventType, stateKey, content });
    return { event_id: ev.pdu.event_id };
  };
  app.put(`${V3}/rooms/:roomId/state/:eventType/:stateKey`, (req) => putState(req, params(req).eventType, params(req).stateKey));
  app.put(`${V3}/rooms/:roomId/state/:eventType`, (req) => putState(req, params(req).eventType, ''));

  app.put(`${V3}/rooms/:roomId/redact/:eventId/:txnId`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const { eventId, txnId } = params(req);
    if (!eventId.startsWith('$')) throw invalidParam(`Invalid event id: ${eventId}`);
    const body = parseBody(reasonSchema, req.body);
    await refuseSuspendedRedaction(who, eventId);
    const txn = { deviceId: who.deviceId, txnId, scope: `redact/${eventId}` };
    const prior = await ctx.rooms.findTxnEvent(roomId, who.userId, txn);
    if (prior) return { event_id: prior.pdu.event_id };
    ctx.limits.message.take(who.userId);
    const shadowId = shadowBannedEventId(who);
    if (shadowId) return { event_id: shadowId };
    const content: Record<string, unknown> = {};
    if (body.reason !== undefined) content.reason = body.reason;
    const ev = await ctx.rooms.send({
      roomId, sender: who.userId, type: 'm.room.redaction', content, redacts: eventId, txn,
    });
    return { event_id: ev.pdu.event_id };
  });

  // ---- state

  const getState = async (req: FastifyRequest, eventType: string, stateKey: string) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const q = parseQuery(stateQuery, req.query);
    const reader = await openRoomForReading(ctx, roomId, who);
    const ev = (await readableState(ctx, reader)).get(stateKeyOf(eventType, stateKey));
    if (!ev) throw notFound(`No ${eventType} state with key '${stateKey}' in this room`);
    if (q.format === 'event') return formatEvent(ctx, ev, who, roomId);
    return ev.pdu.content ?? {};
  };
  app.get(`${V3}/rooms/:roomId/state/:eventType/:stateKey`, (req) => getState(req, params(req).eventType, params(req).stateKey));
  app.get(`${V3}/rooms/:roomId/state/:eventType`, (req) => getState(req, params(req).eventType, ''));

  app.get(`${V3}/rooms/:roomId/state`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const reader = await openRoomForReading(ctx, roomId, who);
    return formatEvents(ctx, [...(await readableState(ctx, reader)).values()], who, roomId);
  });

  app.get(`${V3}/rooms/:roomId/members`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const q = parseQuery(membersQuery, req.query);
    const reader = await openRoomForReading(ctx, roomId, who);
    return roomMembers(ctx, reader, q);
  });

  app.get(`${V3}/rooms/:roomId/joined_members`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const reader = await openRoomForReading(ctx, roomId, who);
    if (reader.mode === 'departed') throw forbidden('You are not in the room');
    return joinedMembers(ctx, roomId);
  });

  // ---- timeline

  app.get(`${V3}/rooms/:roomId/event/:eventId`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const reader = await openRoomForReading(ctx, roomId, who);
    return formatEvent(ctx, await visibleEvent(ctx, reader, params(req).eventId), who, roomId);
  });

  app.get(`${V3}/rooms/:roomId/context/:eventId`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const q = parseQuery(contextQuery, req.query);
    const filter = parseFilterParam(q.filter);
    const reader = await openRoomForReading(ctx, roomId, who);
    return eventContext(ctx, reader, params(req).eventId, q.limit ?? 10, filter);
  });

  app.get(`${V3}/rooms/:roomId/messages`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const q = parseQuery(messagesQuery, req.query);
    const filter = parseFilterParam(q.filter);
    const reader = await openRoomForReading(ctx, roomId, who);
    return roomMessages(ctx, reader, { from: q.from, to: q.to, dir: q.dir ?? 'b', limit: q.limit ?? 10, filter });
  });
}
