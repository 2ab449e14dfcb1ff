/**
 * Space hierarchies (client-server spec "Spaces"; server-server "Spaces"):
 * walk a space's m.space.child links and summarise the rooms found.
 *
 *   GET /_matrix/client/v1/rooms/{roomId}/hierarchy   (paginated walk for a user)
 *   GET /_matrix/federation/v1/hierarchy/{roomId}     (one level, for another server;
 *                                                       route in federation/openid-hierarchy-routes.ts)
 *
 * The client walk is depth-first, as the spec and Synapse do it: a space's
 * children are visited (and their own children) before its next sibling.
 * A room the user may not see is left out of the answer, but its children
 * are still walked, so a private sub-space does not hide public rooms
 * linked below it. Rooms this server does not hold are summarised by asking
 * the servers in the link's `via` (answers cached briefly).
 *
 * Pagination keeps the rest of the walk in memory under an opaque token
 * (like Synapse's sessions): a token is valid for a few minutes and only for
 * the same user, room, `max_depth` and `suggested_only`.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isValidRoomId, isValidServerName } from '../core/identifiers.js';
import { FederationRequestError } from '../federation/client.js';
import { serverInRoom } from '../federation/room-routes.js';
import { forbidden, invalidParam } from '../server/errors.js';
import { Lru } from '../server/lru.js';
import type { Context } from '../server/services.js';
import { parseQuery, queryInt } from '../server/validate.js';
import { describeRoom, type PublicRoomsChunk } from './directory.js';
import { stateKeyOf } from './state-store.js';
import type { StoredEvent } from './types.js';

const V1 = '/_matrix/client/v1';
const SPACE = 'm.space';

/** Rooms per page at most (and by default): the spec asks for a maximum. */
export const MAX_HIERARCHY_LIMIT = 50;
/** Rooms looked at per request, shown or not, so a page of hidden rooms still ends. */
const MAX_ROOMS_EXAMINED = 50;
/** Deepest walk allowed (and the default). */
const MAX_DEPTH = 50;
/** Other servers' rooms summarised per request; the walk pauses (next_batch) when reached. */
const MAX_REMOTE_ROOMS = 5;
/** `via` servers tried per remote room. */
const MAX_VIA_TRIED = 3;
const REMOTE_TIMEOUT_MS = 10_000;
const REMOTE_CACHE_MS = 60_000;
/** Failures are remembered for less time than answers. */
const REMOTE_FAILURE_CACHE_MS = 15_000;
const REMOTE_CACHE_SIZE = 1000;
const SESSION_MS = 5 * 60_000;
const SESSION_COUNT = 1000;
/** Children summarised in one federation answer; the rest are left out (the spec lets a server omit what it cannot describe). */
const MAX_FEDERATION_CHILDREN = 100;

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** An m.space.child event as the hierarchy shows it (stripped state plus origin_server_ts). */
export interface ChildStateEvent {
  type: 'm.space.child';
  state_key: string;
  content: Json & { via: string[] };
  sender: string;
  origin_server_ts: number;
}

/** A room of the hierarchy: the directory fields plus the spec's additions. */
export interface RoomSummary extends PublicRoomsChunk {
  children_state?: ChildStateEvent[];
  allowed_room_ids?: string[];
  room_version?: string;
  encryption?: string;
}

export interface FederationHierarchy {
  room: RoomSummary & { children_state: ChildStateEvent[] };
  children: RoomSummary[];
  inaccessible_children: string[];
}

// ---------------------------------------------------------------- summaries

/** `order` counts only when it is at most 50 printable ASCII characters (spec). */
function validOrder(content: Json): string | undefined {
  const o = content.order;
  return typeof o === 'string' && o.length <= 50 && /^[\x20-\x7e]*$/.test(o) ? o : undefined;
}

/** The spec's child order: valid `order` first (lexicographically), then timestamp, then room id. */
export function compareChildren(a: ChildStateEvent, b: ChildStateEvent): number {
  const oa = validOrder(a.content);
  const ob = validOrder(b.content);
  if (oa !== undefined && ob === undefined) return -1;
  if (oa === undefined && ob !== undefined) return 1;
  if (oa !== undefined && ob !== undefined && oa !== ob) return oa < ob ? -1 : 1;
  if (a.origin_server_ts !== b.origin_server_ts) return a.origin_server_ts - b.origin_server_ts;
  return a.state_key < b.state_key ? -1 : a.state_key > b.state_key ? 1 : 0;
}

/** A child link, or undefined when it is not one (no `via`: the link was removed). */
export function toChildState(ev: { type?: unknown; state_key?: unknown; content?: unknown; sender?: unknown; origin_server_ts?: unknown }): ChildStateEvent | undefined {
  if (ev.type !== 'm.space.child' || typeof ev.state_key !== 'string' || !isValidRoomId(ev.state_key)) return undefined;
  if (!isObject(ev.content) || !Array.isArray(ev.content.via)) return undefined;
  const via = ev.content.via.filter((s): s is string => typeof s === 'string' && isValidServerName(s));
  if (via.length === 0) return undefined;
  return {
    type: 'm.space.child',
    state_key: ev.state_key,
    content: { ...ev.content, via },
    sender: typeof ev.sender === 'string' ? ev.sender : '',
    origin_server_ts: typeof ev.origin_server_ts === 'number' ? ev.origin_server_ts : 0,
  };
}

const isSuggested = (c: ChildStateEvent) => c.content.suggested === true;

/** The room's child links, in the spec's order. */
function childLinks(state: Map<string, StoredEvent>, suggestedOnly: boolean): ChildStateEvent[] {
  const out: ChildStateEvent[] = [];
  for (const ev of state.values()) {
    if (ev.pdu.type !== 'm.space.child') continue;
    const child = toChildState(ev.pdu);
    if (child && (!suggestedOnly || isSuggested(child))) out.push(child);
  }
  return out.sort(compareChildren);
}

/** Rooms whose members may join a restricted room (join rule `allow` entries). */
function allowedRoomIds(joinRules: Json): string[] {
  if (!Array.isArray(joinRules.allow)) return [];
  const out: string[] = [];
  for (const a of joinRules.allow) {
    if (isObject(a) && a.type === 'm.room_membership' && typeof a.room_id === 'string') out.push(a.room_id);
  }
  return out;
}

/** A summary of a room we hold, from its current state; undefined when we do not hold it. */
export async function summarizeLocalRoom(ctx: Context, roomId: string, suggestedOnly: boolean): Promise<(RoomSummary & { children_state: ChildStateEvent[] }) | undefined> {
  const room = await ctx.rooms.getRoom(roomId);
  if (!room) return undefined;
  const state = await ctx.rooms.state.current(roomId);
  const chunk = describeRoom(roomId, state, (await ctx.rooms.joinedMembers(roomId)).length);
  const joinRules = state.get(stateKeyOf('m.room.join_rules', ''))?.pdu.content ?? {};
  // No join rules event means invite-only (auth rules); the summary's own default would say public.
  const summary: RoomSummary & { children_state: ChildStateEvent[] } = {
    ...chunk,
    join_rule: chunk.join_rule ?? 'invite',
    children_state: childLinks(state, suggestedOnly),
    room_version: room.room_version,
  };
  if (summary.join_rule === 'restricted' || summary.join_rule === 'knock_restricted') summary.allowed_room_ids = allowedRoomIds(joinRules);
  const algorithm = state.get(stateKeyOf('m.room.encryption', ''))?.pdu.content.algorithm;
  if (typeof algorithm === 'string') summary.encryption = algorithm;
  return summary;
}

const openToAnyone = (s: RoomSummary) => s.world_readable || s.join_rule === 'public' || s.join_rule === 'knock' || s.join_rule === 'knock_restricted';
const isRestricted = (s: RoomSummary) => s.join_rule === 'restricted' || s.join_rule === 'knock_restricted';

/** May this local user see the room in a hierarchy (spec: member, invited, may join or knock, or world-readable)? */
export async function userMayView(ctx: Context, summary: RoomSummary, userId: string): Promise<boolean> {
  const membership = await ctx.rooms.membership(summary.room_id, userId);
  if (membership === 'ban') return summary.world_readable;
  if (membership === 'join' || membership === 'invite' || openToAnyone(summary)) return true;
  if (isRestricted(summary)) {
    for (const allowed of summary.allowed_room_ids ?? []) {
      if ((await ctx.rooms.membership(allowed, userId)) === 'join') return true;
    }
  }
  return false;
}

/** May another server learn about this room of ours (it could peek or one of its users could join or knock)? */
export async function serverMayView(ctx: Context, summary: RoomSummary, origin: string): Promise<boolean> {
  if (openToAnyone(summary)) return true;
  if (await serverInRoom(ctx, summary.room_id, origin)) return true;
  if (isRestricted(summary)) {
    for (const allowed of summary.allowed_room_ids ?? []) {
      if (await serverInRoom(ctx, allowed, origin)) return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------- federation, serving

/**
 * Our answer to GET /hierarchy/{roomId} from `origin`: the room and the
 * children we hold, summarised when `origin` may see them. Undefined when
 * the room is unknown or hidden from `origin` (the route's 404).
 */
export async function federationHierarchy(ctx: Context, roomId: string, origin: string, suggestedOnly: boolean): Promise<FederationHierarchy | undefined> {
  const room = await summarizeLocalRoom(ctx, roomId, suggestedOnly);
  if (!room || !(await serverMayView(ctx, room, origin))) return undefined;
  const children: RoomSummary[] = [];
  const inaccessible: string[] = [];
  for (const link of room.children_state.slice(0, MAX_FEDERATION_CHILDREN)) {
    const child = await summarizeLocalRoom(ctx, link.state_key, suggestedOnly);
    if (!child) continue;
    if (!(await serverMayView(ctx, child, origin))) {
      inaccessible.push(child.room_id);
      continue;
    }
    // The spec's child chunk has no children_state: the asker comes back for a sub-space it wants to walk.
    const { children_state: _omit, ...summary } = child;
    children.push(summary);
  }
  return { room, children, inaccessible_children: inaccessible };
}

// ---------------------------------------------------------------- federation, asking

interface RemoteAnswer {
  room: RoomSummary & { children_state: ChildStateEvent[] };
  children: Map<string, RoomSummary>;
  inaccessible: Set<string>;
}

/** A summary from another server, checked for the fields we rely on; undefined when unusable. */
function parseRemoteSummary(v: unknown): RoomSummary | undefined {
  if (!isObject(v) || typeof v.room_id !== 'string' || !isValidRoomId(v.room_id)) return undefined;
  const str = (x: unknown) => (typeof x === 'string' && x !== '' ? x : undefined);
  const out: RoomSummary = {
    room_id: v.room_id,
    num_joined_members: typeof v.num_joined_members === 'number' && v.num_joined_members >= 0 ? Math.floor(v.num_joined_members) : 0,
    world_readable: v.world_readable === true,
    guest_can_join: v.guest_can_join === true,
    join_rule: str(v.join_rule) ?? 'public',
  };
  for (const k of ['name', 'topic', 'canonical_alias', 'avatar_url', 'room_type', 'room_version', 'encryption'] as const) {
    const s = str(v[k]);
    if (s !== undefined) out[k] = s;
  }
  if (Array.isArray(v.allowed_room_ids)) out.allowed_room_ids = v.allowed_room_ids.filter((r): r is string => typeof r === 'string');
  if (Array.isArray(v.children_state)) {
    out.children_state = v.children_state.map((e) => (isObject(e) ? toChildState(e) : undefined))
      .filter((e): e is ChildStateEvent => e !== undefined).sort(compareChildren);
  }
  return out;
}

function parseRemoteAnswer(roomId: string, body: unknown, suggestedOnly: boolean): RemoteAnswer | undefined {
  if (!isObject(body)) return undefined;
  const room = parseRemoteSummary(body.room);
  if (!room || room.room_id !== roomId) return undefined;
  // A server that ignored suggested_only still gets filtered here.
  const links = (room.children_state ?? []).filter((c) => !suggestedOnly || isSuggested(c));
  const children = new Map<string, RoomSummary>();
  for (const c of Array.isArray(body.children) ? body.children : []) {
    const s = parseRemoteSummary(c);
    if (s) children.set(s.room_id, s);
  }
  const inaccessible = new Set(Array.isArray(body.inaccessible_children) ? body.inaccessible_children.filter((r): r is string => typeof r === 'string') : []);
  return { room: { ...room, children_state: links }, children, inaccessible };
}

const remoteCaches = new WeakMap<Context, Lru<string, { at: number; answer: RemoteAnswer | undefined }>>();

/** Ask the `via` servers of a link about a room we do not hold (cached); undefined when none could say. */
export async function fetchRemoteHierarchy(ctx: Context, roomId: string, via: string[], suggestedOnly: boolean): Promise<RemoteAnswer | undefined> {
  let cache = remoteCaches.get(ctx);
  if (!cache) remoteCaches.set(ctx, (cache = new Lru(REMOTE_CACHE_SIZE)));
  const key = `${suggestedOnly ? 's' : 'a'}|${roomId}`;
  const hit = cache.get(key);
  if (hit && Date.now() - hit.at < (hit.answer ? REMOTE_CACHE_MS : REMOTE_FAILURE_CACHE_MS)) return hit.answer;
  const servers = [...new Set(via)].filter((s) => s !== ctx.config.server_name && isValidServerName(s)).slice(0, MAX_VIA_TRIED);
  let answer: RemoteAnswer | undefined;
  for (const server of servers) {
    try {
      const body = await ctx.federation.client.request<unknown>(server, {
        method: 'GET',
        path: `/_matrix/federation/v1/hierarchy/${encodeURIComponent(roomId)}`,
        query: { suggested_only: suggestedOnly ? 'true' : 'false' },
        timeoutMs: REMOTE_TIMEOUT_MS,
      });
      answer = parseRemoteAnswer(roomId, body, suggestedOnly);
      if (answer) break;
      ctx.log.info({ server, roomId }, 'unusable space hierarchy answer');
    } catch (err) {
      const detail = err instanceof FederationRequestError ? { status: err.status, errcode: err.errcode } : { err };
      ctx.log.debug({ server, roomId, ...detail }, 'remote space hierarchy request failed');
    }
  }
  cache.set(key, { at: Date.now(), answer });
  return answer;
}

// ---------------------------------------------------------------- the client walk

interface QueueEntry {
  roomId: string;
  via: string[];
  depth: number;
  /** What the parent's server told about this room, when the parent was remote. */
  remote?: RoomSummary;
}

interface Session {
  userId: string;
  roomId: string;
  suggestedOnly: boolean;
  maxDepth: number;
  /** Rooms still to visit; the next one is last. */
  stack: QueueEntry[];
  visited: Set<string>;
  at: number;
}

const sessions = new WeakMap<Context, Lru<string, Session>>();

function sessionsOf(ctx: Context): Lru<string, Session> {
  let s = sessions.get(ctx);
  if (!s) sessions.set(ctx, (s = new Lru(SESSION_COUNT)));
  return s;
}

export interface HierarchyOptions {
  from?: string;
  limit?: number;
  maxDepth?: number;
  suggestedOnly?: boolean;
}

export interface HierarchyResponse {
  rooms: Array<RoomSummary & { children_state: ChildStateEvent[] }>;
  next_batch?: string;
}

/** One page of the space tree under `roomId` as `userId` may see it. Throws 403 (root hidden or unknown) or 400 (bad `from`). */
export async function spaceHierarchy(ctx: Context, userId: string, roomId: string, opts: HierarchyOptions): Promise<HierarchyResponse> {
  const limit = Math.min(opts.limit ?? MAX_HIERARCHY_LIMIT, MAX_HIERARCHY_LIMIT);
  const maxDepth = Math.min(opts.maxDepth ?? MAX_DEPTH, MAX_DEPTH);
  const suggestedOnly = opts.suggestedOnly ?? false;

  let session: Session;
  if (opts.from !== undefined) {
    const saved = sessionsOf(ctx).get(opts.from);
    if (!saved || Date.now() - saved.at > SESSION_MS) throw invalidParam('Unknown or expired pagination token');
    if (saved.userId !== userId || saved.roomId !== roomId || saved.suggestedOnly !== suggestedOnly || saved.maxDepth !== maxDepth) {
      throw invalidParam('The pagination token was made for other parameters (room, max_depth or suggested_only)');
    }
    // Copied, so a retried request with the same token gets the same page.
    session = { ...saved, stack: [...saved.stack], visited: new Set(saved.visited) };
  } else {
    const root = await summarizeLocalRoom(ctx, roomId, suggestedOnly);
    if (!root || !(await userMayView(ctx, root, userId))) throw forbidden('You cannot view this room');
    session = { userId, roomId, suggestedOnly, maxDepth, stack: [{ roomId, via: [], depth: 0 }], visited: new Set(), at: Date.now() };
  }

  const rooms: HierarchyResponse['rooms'] = [];
  let examined = 0;
  let remoteRooms = 0;
  while (session.stack.length > 0 && rooms.length < limit && examined < MAX_ROOMS_EXAMINED) {
    const entry = session.stack.pop() as QueueEntry;
    if (session.visited.has(entry.roomId)) continue;

    let summary: RoomSummary | undefined = await summarizeLocalRoom(ctx, entry.roomId, suggestedOnly);
    let remoteChildren = new Map<string, RoomSummary>();
    let inaccessible = new Set<string>();
    // A non-space child described by its parent's server needs no call of its own; a sub-space needs its links.
    if (!summary && entry.remote && entry.remote.room_type !== SPACE) summary = entry.remote;
    if (!summary) {
      if (remoteRooms >= MAX_REMOTE_ROOMS) {
        // Enough remote work for one request: this room starts the next page.
        session.stack.push(entry);
        break;
      }
      remoteRooms++;
      const answer = await fetchRemoteHierarchy(ctx, entry.roomId, entry.via, suggestedOnly);
      if (answer) {
        summary = answer.room;
        remoteChildren = answer.children;
        inaccessible = answer.inaccessible;
      }
    }
    session.visited.add(entry.roomId);
    examined++;
    if (!summary) continue;

    if (await userMayView(ctx, summary, userId)) rooms.push({ ...summary, children_state: summary.children_state ?? [] });
    if (entry.depth < maxDepth) {
      const links = summary.children_state ?? [];
      for (let i = links.length - 1; i >= 0; i--) {
        const child = links[i];
        if (session.visited.has(child.state_key) || inaccessible.has(child.state_key)) continue;
        session.stack.push({ roomId: child.state_key, via: child.content.via, depth: entry.depth + 1, remote: remoteChildren.get(child.state_key) });
      }
    }
  }

  const out: HierarchyResponse = { rooms };
  if (session.stack.some((e) => !session.visited.has(e.roomId))) {
    const token = randomBytes(18).toString('base64url');
    sessionsOf(ctx).set(token, { ...session, at: Date.now() });
    out.next_batch = token;
  }
  return out;
}

// ---------------------------------------------------------------- route

const boolParam = z.enum(['true', 'false']).transform((v) => v === 'true');

const hierarchyQuery = z.looseObject({
  from: z.string().optional(),
  limit: queryInt(1, 10_000).optional(),
  max_depth: queryInt(0, 10_000).optional(),
  suggested_only: boolParam.optional(),
});

export function registerHierarchyRoutes(app: FastifyInstance, ctx: Context): void {
  app.get(`${V1}/rooms/:roomId/hierarchy`, async (req: FastifyRequest) => {
    const who = await ctx.tokens.authenticate(req);
    const { roomId } = req.params as { roomId: string };
    if (!isValidRoomId(roomId)) throw invalidParam('Invalid room id');
    const q = parseQuery(hierarchyQuery, req.query);
    return spaceHierarchy(ctx, who.userId, roomId, { from: q.from, limit: q.limit, maxDepth: q.max_depth, suggestedOnly: q.suggested_only });
  });
}
