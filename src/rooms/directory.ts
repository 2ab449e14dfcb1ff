/**
 * Room aliases and the published room directory:
 *   PUT/GET/DELETE /directory/room/{roomAlias}, GET /rooms/{roomId}/aliases,
 *   GET/PUT /directory/list/room/{roomId}, GET/POST /publicRooms.
 * Other servers' aliases and directories are asked for over federation.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { effectivePowerLevels, requiredLevelForEvent, userPowerLevel } from '../core/power-levels.js';
import { getRoomVersion } from '../core/room-versions.js';
import { isValidRoomAlias, isValidRoomId, isValidServerName, serverNameOf } from '../core/identifiers.js';
import { MatrixError, forbidden, invalidParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { parseBody, parseQuery, queryInt } from '../server/validate.js';
import { stateKeyOf } from './state-store.js';
import type { StoredEvent } from './types.js';
import { historyVisibilityOf } from './visibility.js';
import { queryRemoteAlias } from '../federation/query-routes.js';
import { isUniqueViolation } from '../storage/errors.js';

const V3 = '/_matrix/client/v3';

// ---------------------------------------------------------------------------
// Aliases

/** Validate a full alias from a path: syntax (400 M_INVALID_PARAM). */
export function checkAliasSyntax(alias: string): void {
  if (!isValidRoomAlias(alias)) throw invalidParam('Room alias invalid');
}

/** Is this one of ours? */
export function isLocalAlias(ctx: Context, alias: string): boolean {
  return serverNameOf(alias) === ctx.config.server_name;
}

/**
 * The alias `room_alias_name` of /createRoom stands for, or 400 M_INVALID_PARAM
 * if it is not a usable localpart.
 */
export function aliasFromLocalpart(localpart: string, serverName: string): string {
  if (!localpart || !/^[^:\s#\u0000]+$/u.test(localpart)) throw invalidParam('room_alias_name contains invalid characters');
  const alias = `#${localpart}:${serverName}`;
  if (!isValidRoomAlias(alias)) throw invalidParam('room_alias_name is too long or invalid');
  return alias;
}

/** The room a local alias points to. */
export async function resolveAlias(ctx: Context, alias: string): Promise<string | undefined> {
  const row = await ctx.storage.db.selectFrom('room_aliases').select('room_id').where('alias', '=', alias).executeTakeFirst();
  return row?.room_id;
}

export async function localAliasesOf(ctx: Context, roomId: string): Promise<string[]> {
  const rows = await ctx.storage.db.selectFrom('room_aliases').select('alias').where('room_id', '=', roomId).orderBy('alias').execute();
  return rows.map((r) => r.alias);
}

/** Power check against the current state: may `userId` send a state event of `type`? */
export async function canSendState(ctx: Context, roomId: string, userId: string, type: string): Promise<boolean> {
  const room = await ctx.rooms.getRoom(roomId);
  const version = room ? getRoomVersion(room.room_version) : undefined;
  if (!room || !version) return false;
  const create = await ctx.rooms.state.stateEvent(roomId, 'm.room.create');
  const pl = await ctx.rooms.state.stateEvent(roomId, 'm.room.power_levels');
  const levels = effectivePowerLevels(pl?.pdu.content, create?.pdu, version);
  return userPowerLevel(levels, userId, create?.pdu, version) >= requiredLevelForEvent(levels, type, true);
}


async function createAlias(ctx: Context, who: { userId: string; isAdmin: boolean }, alias: string, roomId: string): Promise<void> {
  checkAliasSyntax(alias);
  if (!isLocalAlias(ctx, alias)) throw invalidParam('Room alias must be on this server');
  if (!isValidRoomId(roomId)) throw invalidParam('Invalid room_id');
  const room = await ctx.rooms.getRoom(roomId);
  if (!room) throw notFound('Room not found');
  if (!who.isAdmin && (await ctx.rooms.membership(roomId, who.userId)) !== 'join') {
    throw forbidden('You must be in the room to create an alias for it');
  }
  if (await resolveAlias(ctx, alias)) throw new MatrixError('M_UNKNOWN', 409, `Room alias ${alias} already exists`);
  try {
    await ctx.write(async (tx) => {
      await tx.insertInto('room_aliases').values({ alias, room_id: roomId, creator: who.userId, created_ts: Date.now() }).execute();
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new MatrixError('M_UNKNOWN', 409, `Room alias ${alias} already exists`);
    throw err;
  }
}

async function deleteAlias(ctx: Context, who: { userId: string; isAdmin: boolean }, alias: string): Promise<void> {
  checkAliasSyntax(alias);
  const row = await ctx.storage.db.selectFrom('room_aliases').selectAll().where('alias', '=', alias).executeTakeFirst();
  if (!row) throw notFound(`Room alias ${alias} not found`);
  const roomId = row.room_id;
  const allowed = who.isAdmin || row.creator === who.userId ||
    ((await ctx.rooms.membership(roomId, who.userId)) === 'join' && (await canSendState(ctx, roomId, who.userId, 'm.room.canonical_alias')));
  if (!allowed) throw forbidden('You may not delete this alias');
  await ctx.write(async (tx) => {
    await tx.deleteFrom('room_aliases').where('alias', '=', alias).execute();
  });
  // Keep m.room.canonical_alias honest when we can (spec: servers may; failures are not the caller's problem).
  try {
    const current = await ctx.rooms.state.stateEvent(roomId, 'm.room.canonical_alias');
    const content = current?.pdu.content;
    if (!content) return;
    const alt = Array.isArray(content.alt_aliases) ? (content.alt_aliases as unknown[]) : undefined;
    if (content.alias !== alias && !alt?.includes(alias)) return;
    const next: Record<string, unknown> = { ...content };
    if (next.alias === alias) delete next.alias;
    if (alt) next.alt_aliases = alt.filter((a) => a !== alias);
    if ((await ctx.rooms.membership(roomId, who.userId)) !== 'join') return;
    await ctx.rooms.send({ roomId, sender: who.userId, type: 'm.room.canonical_alias', stateKey: '', content: next });
  } catch (err) {
    ctx.log.debug({ err, roomId, alias }, 'could not update canonical alias after alias deletion');
  }
}

// ---------------------------------------------------------------------------
// Published room directory

export interface PublicRoomsChunk {
  room_id: string;
  name?: string;
  topic?: string;
  canonical_alias?: string;
  num_joined_members: number;
  world_readable: boolean;
  guest_can_join: boolean;
  join_rule?: string;
  avatar_url?: string;
  room_type?: string;
}

/** Describe a room for the directory from its current state. */
export function describeRoom(roomId: string, state: Map<string, StoredEvent>, joinedCount: number): PublicRoomsChunk {
  const content = (type: string) => state.get(stateKeyOf(type, ''))?.pdu.content ?? {};
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const chunk: PublicRoomsChunk = {
    room_id: roomId,
    num_joined_members: joinedCount,
    world_readable: historyVisibilityOf(content('m.room.history_visibility')) === 'world_readable',
    guest_can_join: content('m.room.guest_access').guest_access === 'can_join',
  };
  const name = str(content('m.room.name').name);
  if (name) chunk.name = name;
  const topic = plainTopic(content('m.room.topic'));
  if (topic) chunk.topic = topic;
  const alias = str(content('m.room.canonical_alias').alias);
  if (alias) chunk.canonical_alias = alias;
  const joinRule = str(content('m.room.join_rules').join_rule);
  if (joinRule) chunk.join_rule = joinRule;
  const avatar = str(content('m.room.avatar').url);
  if (avatar) chunk.avatar_url = avatar;
  const roomType = str(content('m.room.create').type);
  if (roomType) chunk.room_type = roomType;
  return chunk;
}

/** The plain-text topic: `topic`, or the text/plain entry of `m.topic`. */
function plainTopic(c: Record<string, unknown>): string | undefined {
  if (typeof c.topic === 'string' && c.topic !== '') return c.topic;
  const rich = (c['m.topic'] as { 'm.text'?: unknown } | undefined)?.['m.text'];
  if (Array.isArray(rich)) {
    for (const r of rich) {
      const t = r as { mimetype?: unknown; body?: unknown };
      if ((t.mimetype === undefined || t.mimetype === 'text/plain') && typeof t.body === 'string') return t.body;
    }
  }
  return undefined;
}

export interface PublicRoomsFilter {
  generic_search_term?: string;
  room_types?: Array<string | null>;
}

export function matchesPublicRoomsFilter(chunk: PublicRoomsChunk, filter: PublicRoomsFilter | undefined): boolean {
  if (!filter) return true;
  if (filter.room_types) {
    if (!filter.room_types.includes(chunk.room_type ?? null)) return false;
  }
  const term = filter.generic_search_term?.trim().toLowerCase();
  if (term) {
    const hay = [chunk.name, chunk.topic, chunk.canonical_alias, chunk.room_id].filter((s): s is string => !!s).map((s) => s.toLowerCase());
    if (!hay.some((s) => s.includes(term))) return false;
  }
  return true;
}

/** `since` tokens are offsets into the (stably ordered) list. */
export function parseDirectoryToken(since: string | undefined): number {
  if (since === undefined || since === '') return 0;
  const m = /^o(\d{1,9})$/.exec(since);
  if (!m) throw invalidParam('Invalid since token');
  return Number(m[1]);
}

export interface PublicRoomsResponse {
  chunk: PublicRoomsChunk[];
  next_batch?: string;
  prev_batch?: string;
  total_room_count_estimate: number;
}

export async function listPublicRooms(
  ctx: Context,
  opts: { limit?: number; since?: string; filter?: PublicRoomsFilter; server?: string },
): Promise<PublicRoomsResponse> {
  const offset = parseDirectoryToken(opts.since);
  if (opts.server && opts.server !== ctx.config.server_name) return remotePublicRooms(ctx, opts.server, opts);
  const db = ctx.storage.db;
  const rooms = await db.selectFrom('rooms').select('room_id').where('visibility', '=', 'public').execute();
  const ids = rooms.map((r) => r.room_id);
  const counts = new Map<string, number>();
  for (let i = 0; i < ids.length; i += 500) {
    const rows = await db.selectFrom('room_members').select(['room_id', (eb) => eb.fn.countAll<number>().as('n')])
      .where('membership', '=', 'join').where('room_id', 'in', ids.slice(i, i + 500)).groupBy('room_id').execute();
    for (const r of rows) counts.set(r.room_id, Number(r.n));
  }
  const all: PublicRoomsChunk[] = [];
  for (const id of ids) {
    const chunk = describeRoom(id, await ctx.rooms.state.current(id), counts.get(id) ?? 0);
    if (matchesPublicRoomsFilter(chunk, opts.filter)) all.push(chunk);
  }
  // Largest first, then by id, so pages are stable.
  all.sort((a, b) => b.num_joined_members - a.num_joined_members || (a.room_id < b.room_id ? -1 : a.room_id > b.room_id ? 1 : 0));
  const limit = opts.limit && opts.limit > 0 ? opts.limit : all.length;
  const page = all.slice(offset, offset + limit);
  const out: PublicRoomsResponse = { chunk: page, total_room_count_estimate: all.length };
  if (offset + limit < all.length) out.next_batch = `o${offset + limit}`;
  if (offset > 0) out.prev_batch = `o${Math.max(0, offset - limit)}`;
  return out;
}

/** Another server's directory, through federation (POST when a filter is given, as the spec allows). */
async function remotePublicRooms(
  ctx: Context, server: string, opts: { limit?: number; since?: string; filter?: PublicRoomsFilter },
): Promise<PublicRoomsResponse> {
  if (!isValidServerName(server)) throw new MatrixError('M_INVALID_PARAM', 400, `${server} is not a server name`);
  const path = '/_matrix/federation/v1/publicRooms';
  let res: unknown;
  try {
    res = opts.filter
      ? await ctx.federation.client.request(server, { method: 'POST', path, body: { limit: opts.limit, since: opts.since, filter: opts.filter } })
      : await ctx.federation.client.request(server, { method: 'GET', path, query: { limit: opts.limit !== undefined ? String(opts.limit) : undefined, since: opts.since } });
  } catch (err) {
    ctx.log.info({ err, server }, 'remote room directory request failed');
    throw new MatrixError('M_UNKNOWN', 502, `Could not get the room directory of ${server}`);
  }
  const body = (res ?? {}) as Partial<PublicRoomsResponse>;
  if (!Array.isArray(body.chunk)) throw new MatrixError('M_UNKNOWN', 502, `${server} sent an invalid room directory`);
  const out: PublicRoomsResponse = { chunk: body.chunk, total_room_count_estimate: Number(body.total_room_count_estimate) || body.chunk.length };
  if (typeof body.next_batch === 'string') out.next_batch = body.next_batch;
  if (typeof body.prev_batch === 'string') out.prev_batch = body.prev_batch;
  return out;
}

// ---------------------------------------------------------------------------
// Routes

const aliasParams = (req: FastifyRequest) => (req.params as { roomAlias: string }).roomAlias;

const publicRoomsBody = z.object({
  limit: z.number().int().min(0).optional(),
  since: z.string().optional(),
  filter: z.object({
    generic_search_term: z.string().optional(),
    room_types: z.array(z.string().nullable()).optional(),
  }).optional(),
  include_all_networks: z.boolean().optional(),
  third_party_instance_id: z.string().optional(),
});

const publicRoomsQuery = z.object({
  limit: queryInt(0, 100_000).optional(),
  since: z.string().optional(),
  server: z.string().optional(),
});

export function registerDirectoryRoutes(app: FastifyInstance, ctx: Context): void {
  app.put(`${V3}/directory/room/:roomAlias`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    if (who.isGuest) throw new MatrixError('M_GUEST_ACCESS_FORBIDDEN', 403, 'Guests may not create aliases');
    const body = parseBody(z.object({ room_id: z.string() }), req.body);
    await createAlias(ctx, who, aliasParams(req), body.room_id);
    return {};
  });

  app.get(`${V3}/directory/room/:roomAlias`, async (req) => {
    const alias = aliasParams(req);
    checkAliasSyntax(alias);
    if (!isLocalAlias(ctx, alias)) {
      // Another server's alias: ask it (GET /query/directory).
      const remote = await queryRemoteAlias(ctx, alias);
      return { room_id: remote.roomId, servers: remote.servers };
    }
    const roomId = await resolveAlias(ctx, alias);
    if (!roomId) throw notFound(`Room alias ${alias} not found`);
    // Every server with members in the room can help a client join; ours first.
    const servers = new Set([ctx.config.server_name]);
    for (const userId of await ctx.rooms.joinedMembers(roomId)) {
      const s = serverNameOf(userId);
      if (s) servers.add(s);
    }
    return { room_id: roomId, servers: [...servers] };
  });

  app.delete(`${V3}/directory/room/:roomAlias`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    await deleteAlias(ctx, who, aliasParams(req));
    return {};
  });

  app.get(`${V3}/rooms/:roomId/aliases`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const { roomId } = req.params as { roomId: string };
    if (!isValidRoomId(roomId)) throw invalidParam('Invalid room id');
    if (!who.isAdmin && (await ctx.rooms.membership(roomId, who.userId)) !== 'join') {
      const hv = await ctx.rooms.state.stateEvent(roomId, 'm.room.history_visibility');
      if (!hv || historyVisibilityOf(hv.pdu.content) !== 'world_readable') throw forbidden('You are not in the room');
    }
    return { aliases: await localAliasesOf(ctx, roomId) };
  });

  app.get(`${V3}/directory/list/room/:roomId`, async (req) => {
    const { roomId } = req.params as { roomId: string };
    const room = isValidRoomId(roomId) ? await ctx.rooms.getRoom(roomId) : undefined;
    if (!room) throw notFound('Room not found');
    return { visibility: room.visibility === 'public' ? 'public' : 'private' };
  });

  app.put(`${V3}/directory/list/room/:roomId`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    if (who.isGuest) throw new MatrixError('M_GUEST_ACCESS_FORBIDDEN', 403, 'Guests may not publish rooms');
    const { roomId } = req.params as { roomId: string };
    const body = parseBody(z.object({ visibility: z.enum(['public', 'private']).optional() }), req.body);
    const room = isValidRoomId(roomId) ? await ctx.rooms.getRoom(roomId) : undefined;
    if (!room) throw notFound('Room not found');
    const joined = (await ctx.rooms.membership(roomId, who.userId)) === 'join';
    const allowed = who.isAdmin || (joined && (room.creator === who.userId || (await canSendState(ctx, roomId, who.userId, 'm.room.canonical_alias'))));
    if (!allowed) throw forbidden('You may not change this room\'s visibility in the directory');
    const visibility = body.visibility ?? 'public';
    await ctx.write(async (tx) => {
      await tx.updateTable('rooms').set({ visibility }).where('room_id', '=', roomId).execute();
    });
    return {};
  });

  app.get(`${V3}/publicRooms`, async (req) => {
    // No authentication required (spec); a token, if sent, is not needed.
    const q = parseQuery(publicRoomsQuery, req.query);
    return listPublicRooms(ctx, { limit: q.limit, since: q.since, server: q.server });
  });

  app.post(`${V3}/publicRooms`, async (req) => {
    await ctx.tokens.authenticate(req);
    const q = parseQuery(z.object({ server: z.string().optional() }).loose(), req.query);
    const body = parseBody(publicRoomsBody, req.body);
    return listPublicRooms(ctx, { limit: body.limit, since: body.since, filter: body.filter, server: q.server });
  });
}
