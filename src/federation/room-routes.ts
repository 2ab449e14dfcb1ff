/**
 * Server-server room routes: receiving transactions, letting other servers
 * join and leave our rooms (make_join/send_join, make_leave/send_leave), and
 * answering their questions about room history and state (/event, /state,
 * /state_ids, /event_auth, /get_missing_events, /backfill).
 *
 * Reads are allowed only to servers with a joined member in the room.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { authEventIds, prevEventIds, type PDU } from '../core/events.js';
import { serverNameOf } from '../core/identifiers.js';
import { getRoomVersion, type RoomVersion } from '../core/room-versions.js';
import { MatrixError, forbidden, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { parseBody } from '../server/validate.js';
import type { StoredEvent } from '../rooms/types.js';
import { listPublicRooms } from '../rooms/directory.js';
import { authoriseRestrictedJoin } from '../rooms/membership.js';
import { hashAndSignEvent } from '../core/event-signing.js';
import { EventStatus } from '../rooms/remote-events.js';
import { withFederationAuth } from './auth.js';
import { checkIncomingPdu } from './pdu-checks.js';
import { federationPdu } from './pdu-format.js';
import { receiveInvite, strippedRoomState } from './invite.js';
import { requireRoomAllowsServer } from './acl.js';

const P = '/_matrix/federation';
/** Most events one /backfill or /get_missing_events answer carries. */
const MAX_HISTORY_EVENTS = 100;

const params = (req: FastifyRequest) => req.params as Record<string, string>;
const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

const missingEventsSchema = z.object({
  earliest_events: z.array(z.string()).max(200),
  latest_events: z.array(z.string()).max(200),
  limit: z.number().int().min(0).optional(),
  min_depth: z.number().int().optional(),
});

async function roomVersionOf(ctx: Context, roomId: string): Promise<RoomVersion> {
  const room = await ctx.rooms.getRoom(roomId);
  if (!room) throw notFound('Unknown room');
  const version = getRoomVersion(room.room_version);
  if (!version) throw new MatrixError('M_UNSUPPORTED_ROOM_VERSION', 400, 'Unsupported room version');
  return version;
}

/** Does `server` have a user joined to the room now? */
export async function serverInRoom(ctx: Context, roomId: string, server: string): Promise<boolean> {
  const row = await ctx.storage.db.selectFrom('room_members').select('user_id')
    .where('room_id', '=', roomId).where('membership', '=', 'join').where('user_id', 'like', `%:${server}`)
    .limit(1).executeTakeFirst();
  return !!row && serverNameOf(row.user_id) === server;
}

/** Every other server with a joined member in the room. */
export async function serversInRoom(ctx: Context, roomId: string): Promise<string[]> {
  const rows = await ctx.storage.db.selectFrom('room_members').select('user_id')
    .where('room_id', '=', roomId).where('membership', '=', 'join').execute();
  const out = new Set<string>();
  for (const r of rows) {
    const s = serverNameOf(r.user_id);
    if (s) out.add(s);
  }
  return [...out];
}

/** Read access to a room's history and state: a resident server the room's ACL allows. */
async function requireServerInRoom(ctx: Context, roomId: string, origin: string): Promise<void> {
  if (!(await serverInRoom(ctx, roomId, origin))) throw forbidden(`${origin} is not in room ${roomId}`);
  await requireRoomAllowsServer(ctx, roomId, origin);
}

/** The auth chain of `ids` (not including them unless reachable), as stored events. */
async function authChainOf(ctx: Context, ids: string[]): Promise<StoredEvent[]> {
  return authChainOfEvents(ctx, await ctx.rooms.events.getMany(ids));
}

/** The auth chain of events already loaded (a big room's state outgrows the event cache: no second read). */
async function authChainOfEvents(ctx: Context, evs: StoredEvent[]): Promise<StoredEvent[]> {
  const seen = new Map<string, StoredEvent>();
  let frontier = new Set<string>();
  for (const ev of evs) for (const a of authEventIds(ev.pdu)) frontier.add(a);
  while (frontier.size > 0) {
    const batch = [...frontier].filter((id) => !seen.has(id));
    frontier = new Set();
    for (const ev of await ctx.rooms.events.getMany(batch)) {
      seen.set(ev.pdu.event_id, ev);
      for (const a of authEventIds(ev.pdu)) if (!seen.has(a)) frontier.add(a);
    }
  }
  return [...seen.values()];
}

/** State before `ev` (the state after its prev events, resolved). */
async function stateBefore(ctx: Context, version: RoomVersion, ev: StoredEvent): Promise<Map<string, string>> {
  return (await ctx.rooms.remote.stateBefore(version, prevEventIds(ev.pdu))).ids;
}

function wire(version: RoomVersion, evs: StoredEvent[]): PDU[] {
  return evs.map((e) => federationPdu(e.pdu, version));
}

/** A stored, non-rejected event of the room, or 404. */
async function roomEvent(ctx: Context, roomId: string, eventId: string): Promise<StoredEvent> {
  const ev = await ctx.rooms.events.get(eventId);
  if (!ev || ev.pdu.room_id !== roomId) throw notFound('Unknown event');
  return ev;
}

export function registerFederationRoomRoutes(app: FastifyInstance, ctx: Context): void {
  app.put(`${P}/v1/send/:txnId`, withFederationAuth(ctx, async (req, _reply, origin) => {
    return ctx.federation.inbound.handleTransaction(origin, params(req).txnId, req.body);
  }));

  // ---- joining and leaving through us

  const makeMembership = (membership: 'join' | 'leave' | 'knock') => withFederationAuth(ctx, async (req, _reply, origin) => {
    const { roomId, userId } = params(req);
    if (serverNameOf(userId) !== origin) throw forbidden('The user must belong to the requesting server');
    const version = await roomVersionOf(ctx, roomId);
    await requireRoomAllowsServer(ctx, roomId, origin);
    if (membership === 'join' || membership === 'knock') {
      const raw = (req.query as Record<string, unknown>).ver;
      const supported = raw === undefined ? ['1'] : Array.isArray(raw) ? raw.map(String) : [String(raw)];
      if (!supported.includes(version.id)) {
        throw new MatrixError('M_INCOMPATIBLE_ROOM_VERSION', 400, `The room is version ${version.id}`, { room_version: version.id });
      }
    }
    const content: Record<string, unknown> = { membership };
    // Restricted rooms: one of our members vouches for a joiner who is in an allowed room.
    if (membership === 'join' && !['join', 'invite'].includes((await ctx.rooms.membership(roomId, userId)) ?? '')) {
      await authoriseRestrictedJoin(ctx, roomId, userId, content);
    }
    const { pdu } = await ctx.rooms.buildUnsigned(roomId, { sender: userId, type: 'm.room.member', stateKey: userId, content });
    const { hashes: _h, signatures: _s, ...template } = federationPdu(pdu, version);
    return { event: template, room_version: version.id };
  });
  app.get(`${P}/v1/make_join/:roomId/:userId`, makeMembership('join'));
  app.get(`${P}/v1/make_leave/:roomId/:userId`, makeMembership('leave'));
  app.get(`${P}/v1/make_knock/:roomId/:userId`, makeMembership('knock'));

  /** Accept a signed join or leave built from our template; returns the stored event. */
  const acceptMembership = async (origin: string, roomId: string, eventId: string, body: unknown, membership: 'join' | 'leave' | 'knock') => {
    const version = await roomVersionOf(ctx, roomId);
    await requireRoomAllowsServer(ctx, roomId, origin);
    // A restricted join vouched for by one of our users needs our signature before it is valid.
    const vouch = isRecord(body) && isRecord(body.content) ? body.content.join_authorised_via_users_server : undefined;
    if (membership === 'join' && typeof vouch === 'string' && serverNameOf(vouch) === ctx.config.server_name && isRecord(body)) {
      body = hashAndSignEvent(body as PDU, version, ctx.config.server_name, ctx.signingKey);
    }
    const checked = await checkIncomingPdu(body, version, (s, k, t) => ctx.federation.keys.getVerifyKey(s, k, t));
    if (!checked.ok) throw new MatrixError('M_BAD_JSON', 400, `Invalid event: ${checked.reason}`);
    const pdu = checked.pdu;
    if (checked.eventId !== eventId) throw new MatrixError('M_BAD_JSON', 400, 'Event id does not match the event');
    if (pdu.room_id !== roomId || pdu.type !== 'm.room.member' || pdu.state_key !== pdu.sender || pdu.content.membership !== membership) {
      throw new MatrixError('M_BAD_JSON', 400, `Not a ${membership} event for this room`);
    }
    if (serverNameOf(pdu.sender) !== origin) throw forbidden('The event must be sent by a user of the requesting server');
    const outcome = await ctx.federation.inbound.receiveWithGaps(origin, roomId, version, { eventId, pdu });
    if (outcome !== undefined) throw forbidden(`The ${membership} is not allowed: ${outcome}`);
    const stored = await ctx.rooms.events.get(eventId);
    if (!stored) throw new MatrixError('M_UNKNOWN', 500, 'Event was not stored');
    // The joining server told only us; everyone else in the room hears it from us.
    const others = (await serversInRoom(ctx, roomId)).filter((s) => s !== origin && s !== ctx.config.server_name);
    await ctx.federation.sender.enqueuePdu(others, federationPdu(stored.pdu, version));
    return { version, stored };
  };

  app.put(`${P}/v2/send_join/:roomId/:eventId`, withFederationAuth(ctx, async (req, _reply, origin) => {
    const { roomId, eventId } = params(req);
    const { version, stored } = await acceptMembership(origin, roomId, eventId, req.body, 'join');
    const stateIds = await stateBefore(ctx, version, stored);
    const state = await ctx.rooms.events.getMany([...stateIds.values()]);
    const chain = await authChainOfEvents(ctx, [...state, stored]);
    return {
      origin: ctx.config.server_name,
      state: wire(version, state),
      auth_chain: wire(version, chain),
      event: federationPdu(stored.pdu, version),
      members_omitted: false,
      servers_in_room: await serversInRoom(ctx, roomId),
    };
  }));

  app.put(`${P}/v2/send_leave/:roomId/:eventId`, withFederationAuth(ctx, async (req, _reply, origin) => {
    const { roomId, eventId } = params(req);
    await acceptMembership(origin, roomId, eventId, req.body, 'leave');
    return {};
  }));

  app.put(`${P}/v1/send_knock/:roomId/:eventId`, withFederationAuth(ctx, async (req, _reply, origin) => {
    const { roomId, eventId } = params(req);
    const { stored } = await acceptMembership(origin, roomId, eventId, req.body, 'knock');
    return { knock_room_state: await strippedRoomState(ctx, roomId, stored.pdu.sender) };
  }));

  app.put(`${P}/v2/invite/:roomId/:eventId`, withFederationAuth(ctx, async (req, _reply, origin) => {
    const { roomId, eventId } = params(req);
    if (await ctx.rooms.getRoom(roomId)) await requireRoomAllowsServer(ctx, roomId, origin);
    return receiveInvite(ctx, origin, roomId, eventId, req.body);
  }));

  // ---- room directory (public rooms only, so any allowed server may ask)

  const directoryQuery = z.object({ limit: z.coerce.number().int().min(0).optional(), since: z.string().optional() }).loose();
  const directoryBody = z.object({
    limit: z.number().int().min(0).optional(),
    since: z.string().optional(),
    filter: z.object({ generic_search_term: z.string().optional(), room_types: z.array(z.string().nullable()).optional() }).optional(),
  }).loose();
  app.get(`${P}/v1/publicRooms`, withFederationAuth(ctx, async (req) => {
    const q = directoryQuery.safeParse(req.query);
    if (!q.success) throw new MatrixError('M_INVALID_PARAM', 400, 'Invalid limit or since');
    return listPublicRooms(ctx, { limit: q.data.limit, since: q.data.since });
  }));
  app.post(`${P}/v1/publicRooms`, withFederationAuth(ctx, async (req) => {
    const body = parseBody(directoryBody, req.body);
    return listPublicRooms(ctx, { limit: body.limit, since: body.since, filter: body.filter });
  }));

  // ---- history and state

  app.get(`${P}/v1/event/:eventId`, withFederationAuth(ctx, async (req, _reply, origin) => {
    const ev = await ctx.rooms.events.get(params(req).eventId);
    if (!ev) throw notFound('Unknown event');
    await requireServerInRoom(ctx, ev.pdu.room_id, origin);
    const version = await roomVersionOf(ctx, ev.pdu.room_id);
    return { origin: ctx.config.server_name, origin_server_ts: Date.now(), pdus: [federationPdu(ev.pdu, version)] };
  }));

  const stateAt = async (req: FastifyRequest, origin: string) => {
    const { roomId } = params(req);
    const eventId = (req.query as Record<string, unknown>).event_id;
    if (typeof eventId !== 'string') throw new MatrixError('M_MISSING_PARAM', 400, 'event_id is required');
    await requireServerInRoom(ctx, roomId, origin);
    const version = await roomVersionOf(ctx, roomId);
    const ev = await roomEvent(ctx, roomId, eventId);
    const ids = await stateBefore(ctx, version, ev);
    const chain = await authChainOf(ctx, [...ids.values()]);
    return { version, ids, chain };
  };

  app.get(`${P}/v1/state_ids/:roomId`, withFederationAuth(ctx, async (req, _reply, origin) => {
    const { ids, chain } = await stateAt(req, origin);
    return { pdu_ids: [...ids.values()], auth_chain_ids: chain.map((e) => e.pdu.event_id) };
  }));

  app.get(`${P}/v1/state/:roomId`, withFederationAuth(ctx, async (req, _reply, origin) => {
    const { version, ids, chain } = await stateAt(req, origin);
    return { pdus: wire(version, await ctx.rooms.events.getMany([...ids.values()])), auth_chain: wire(version, chain) };
  }));

  app.get(`${P}/v1/event_auth/:roomId/:eventId`, withFederationAuth(ctx, async (req, _reply, origin) => {
    const { roomId, eventId } = params(req);
    await requireServerInRoom(ctx, roomId, origin);
    const version = await roomVersionOf(ctx, roomId);
    await roomEvent(ctx, roomId, eventId);
    return { auth_chain: wire(version, await authChainOf(ctx, [eventId])) };
  }));

  app.post(`${P}/v1/get_missing_events/:roomId`, withFederationAuth(ctx, async (req, _reply, origin) => {
    const { roomId } = params(req);
    const body = parseBody(missingEventsSchema, req.body);
    await requireServerInRoom(ctx, roomId, origin);
    const version = await roomVersionOf(ctx, roomId);
    const limit = Math.min(body.limit ?? 10, MAX_HISTORY_EVENTS);
    const stop = new Set(body.earliest_events);
    const events = await walkBack(ctx, roomId, body.latest_events, limit, body.min_depth ?? 0, stop, false);
    return { events: wire(version, events) };
  }));

  app.get(`${P}/v1/backfill/:roomId`, withFederationAuth(ctx, async (req, _reply, origin) => {
    const { roomId } = params(req);
    const q = req.query as Record<string, unknown>;
    const from = Array.isArray(q.v) ? q.v.map(String) : typeof q.v === 'string' ? [q.v] : [];
    const limit = Math.min(Number(q.limit) || 10, MAX_HISTORY_EVENTS);
    if (from.length === 0) throw new MatrixError('M_MISSING_PARAM', 400, 'v is required');
    await requireServerInRoom(ctx, roomId, origin);
    const version = await roomVersionOf(ctx, roomId);
    const events = await walkBack(ctx, roomId, from, limit, 0, new Set(), true);
    return { origin: ctx.config.server_name, origin_server_ts: Date.now(), pdus: wire(version, events) };
  }));
}

/**
 * Breadth-first walk along prev_events from `start`. get_missing_events
 * excludes the start events themselves and stops at `stop`; backfill
 * includes them. Only accepted timeline events are returned.
 */
async function walkBack(ctx: Context, roomId: string, start: string[], limit: number, minDepth: number, stop: Set<string>, includeStart: boolean): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  const seen = new Set<string>(start);
  let frontier: string[] = [];
  if (includeStart) frontier = start;
  else for (const ev of await ctx.rooms.events.getMany(start)) for (const p of prevEventIds(ev.pdu)) if (!seen.has(p) && !stop.has(p)) { seen.add(p); frontier.push(p); }
  while (frontier.length > 0 && out.length < limit) {
    const evs = await ctx.rooms.events.getMany(frontier);
    const statuses = await ctx.storage.db.selectFrom('events').select(['event_id', 'rejected']).where('event_id', 'in', frontier).execute();
    const ok = new Set(statuses.filter((s) => Number(s.rejected) === EventStatus.ACCEPTED).map((s) => s.event_id));
    frontier = [];
    for (const ev of evs) {
      if (ev.pdu.room_id !== roomId || !ok.has(ev.pdu.event_id) || ev.pdu.depth < minDepth) continue;
      if (out.length >= limit) break;
      out.push(ev);
      for (const p of prevEventIds(ev.pdu)) if (!seen.has(p) && !stop.has(p)) { seen.add(p); frontier.push(p); }
    }
  }
  return out;
}
