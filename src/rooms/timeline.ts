/**
 * Reading a room: who may read it (and as of when), /messages, /context,
 * /event, and the state and member lists a reader is entitled to. All
 * timeline reads go through the history visibility ranges of visibility.ts,
 * so a user never sees an event they should not.
 */
import { z } from 'zod';
import { currentStreamPos } from '../storage/db.js';
import { forbidden, invalidParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { toClientEvent } from './client-event.js';
import { EVENT_COLUMNS, rowToStoredEvent } from './event-store.js';
import { makeRoomToken, parseRoomToken } from '../sync/tokens.js';
import type { ClientEvent, Requesting, StoredEvent } from './types.js';
import { HistoryVisibilityOracle, MAX_POS, MIN_POS, loadVisibility } from './visibility.js';
import { BACKFILL_WAIT_MS, backfillerOf, historyBaseline } from '../federation/backfill.js';

// ---------------------------------------------------------------------------
// RoomEventFilter

export interface RoomEventFilter {
  limit?: number;
  types?: string[];
  not_types?: string[];
  senders?: string[];
  not_senders?: string[];
  rooms?: string[];
  not_rooms?: string[];
  contains_url?: boolean;
  lazy_load_members?: boolean;
  include_redundant_members?: boolean;
}

const stringList = z.array(z.string());
export const roomEventFilterSchema = z.object({
  limit: z.number().int().optional(),
  types: stringList.optional(),
  not_types: stringList.optional(),
  senders: stringList.optional(),
  not_senders: stringList.optional(),
  rooms: stringList.optional(),
  not_rooms: stringList.optional(),
  contains_url: z.boolean().optional(),
  lazy_load_members: z.boolean().optional(),
  include_redundant_members: z.boolean().optional(),
  unread_thread_notifications: z.boolean().optional(),
});

/** Parse the `filter` query parameter (a JSON RoomEventFilter); absent or empty means no filter. */
export function parseFilterParam(raw: unknown): RoomEventFilter | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (typeof raw !== 'string') throw invalidParam('filter must be a JSON object');
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw invalidParam('filter is not valid JSON');
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw invalidParam('filter must be a JSON object');
  const r = roomEventFilterSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw invalidParam(`filter.${issue.path.join('.')}: ${issue.message}`);
  }
  return r.data;
}

const globCache = new Map<string, RegExp>();

/** Event type patterns: `*` matches any sequence of characters, everything else is literal. */
export function globMatch(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  let re = globCache.get(pattern);
  if (!re) {
    re = new RegExp('^' + pattern.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$', 's');
    if (globCache.size > 1000) globCache.clear();
    globCache.set(pattern, re);
  }
  return re.test(value);
}

/** Does one event pass the filter? (The `not_` lists win over the positive ones.) */
export function matchesFilter(
  filter: RoomEventFilter | undefined,
  ev: { type: string; sender: string; roomId: string; content: Record<string, unknown> },
): boolean {
  if (!filter) return true;
  if (filter.not_rooms?.includes(ev.roomId)) return false;
  if (filter.rooms && !filter.rooms.includes(ev.roomId)) return false;
  if (filter.not_senders?.includes(ev.sender)) return false;
  if (filter.senders && !filter.senders.includes(ev.sender)) return false;
  if (filter.not_types?.some((p) => globMatch(p, ev.type))) return false;
  if (filter.types && !filter.types.some((p) => globMatch(p, ev.type))) return false;
  if (filter.contains_url !== undefined) {
    const hasUrl = typeof ev.content?.url === 'string';
    if (hasUrl !== filter.contains_url) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Small helpers

/** The room an event belongs to; the v12 create event carries no room_id (it is derived from its id). */
export function roomIdOf(ev: StoredEvent): string {
  if (ev.pdu.room_id) return ev.pdu.room_id;
  return ev.pdu.type === 'm.room.create' ? `!${ev.pdu.event_id.slice(1)}` : '';
}

const forFilter = (ev: StoredEvent, roomId: string) => ({ type: ev.pdu.type, sender: ev.pdu.sender, roomId, content: ev.pdu.content ?? {} });
const forVisibility = (ev: StoredEvent) => ({ pos: ev.streamPos, type: ev.pdu.type, stateKey: ev.pdu.state_key, content: ev.pdu.content ?? {} });

/** Client format for a batch of events, with unsigned.redacted_because for redacted ones. */
export async function formatEvents(ctx: Context, evs: StoredEvent[], requester: Requesting, roomId: string): Promise<ClientEvent[]> {
  const redactionIds = [...new Set(evs.map((e) => e.redactedBy).filter((id): id is string => !!id))];
  const redactions = new Map<string, ClientEvent>();
  if (redactionIds.length) {
    for (const r of await ctx.rooms.events.getMany(redactionIds)) redactions.set(r.pdu.event_id, fixRoomId(toClientEvent(r, requester), roomId));
  }
  return evs.map((ev) => {
    const because = ev.redactedBy ? redactions.get(ev.redactedBy) : undefined;
    return fixRoomId(toClientEvent(ev, requester, because ? { redactedBecause: because } : {}), roomId);
  });
}

export async function formatEvent(ctx: Context, ev: StoredEvent, requester: Requesting, roomId: string): Promise<ClientEvent> {
  return (await formatEvents(ctx, [ev], requester, roomId))[0];
}

function fixRoomId(ev: ClientEvent, roomId: string): ClientEvent {
  if (!ev.room_id) ev.room_id = roomId;
  return ev;
}

// ---------------------------------------------------------------------------
// Access

/**
 * A user's read access to a room:
 * - `joined`: current state, history per visibility;
 * - `departed`: was in the room (left, kicked, banned, or re-invited after
 *   leaving): state as of `stateAt`, history up to their departure;
 * - `peeking`: never a member, but the room is world_readable.
 */
export interface RoomReader {
  roomId: string;
  requester: Requesting;
  mode: 'joined' | 'departed' | 'peeking';
  /** The member event after which a departed user's view of the state stops. */
  stateAt?: { eventId: string; pos: number };
  oracle: HistoryVisibilityOracle;
}

/** Who may read `roomId`, or 403 M_FORBIDDEN. */
export async function openRoomForReading(ctx: Context, roomId: string, requester: Requesting): Promise<RoomReader> {
  const db = ctx.storage.db;
  const member = await db.selectFrom('room_members').select(['membership', 'event_id', 'stream_pos', 'forgotten'])
    .where('room_id', '=', roomId).where('user_id', '=', requester.userId).executeTakeFirst();
  const oracle = await loadVisibility(db, roomId, requester.userId, await historyBaseline(ctx, roomId));
  const base = { roomId, requester, oracle };
  if (member?.membership === 'join') return { ...base, mode: 'joined' };
  if (member && !member.forgotten) {
    if (member.membership === 'leave' || member.membership === 'ban') {
      return { ...base, mode: 'departed', stateAt: { eventId: member.event_id, pos: Number(member.stream_pos) } };
    }
    // Invited or knocking again after having been in the room.
    const gone = oracle.lastDeparture();
    if (gone) return { ...base, mode: 'departed', stateAt: gone };
  }
  if (oracle.currentHistoryVisibility === 'world_readable') {
    const room = await ctx.rooms.getRoom(roomId);
    if (room) return { ...base, mode: 'peeking' };
  }
  throw forbidden(`You are not in room ${roomId}`);
}

/** The state this reader sees: current, or as of their departure. */
export async function readableState(ctx: Context, reader: RoomReader): Promise<Map<string, StoredEvent>> {
  if (reader.mode !== 'departed' || !reader.stateAt) return ctx.rooms.state.current(reader.roomId);
  const ev = await ctx.rooms.events.get(reader.stateAt.eventId);
  return ev ? ctx.rooms.state.afterEvent(ev) : new Map();
}

/** State after the last event of the room at or before `pos`. */
export async function stateAtPosition(ctx: Context, roomId: string, pos: number): Promise<Map<string, StoredEvent>> {
  const row = await ctx.storage.db.selectFrom('events').select(['state_group'])
    .where('room_id', '=', roomId).where('stream_pos', '<=', pos).where('rejected', '=', 0).where('state_group', 'is not', null)
    .orderBy('stream_pos', 'desc').limit(1).executeTakeFirst();
  if (!row || row.state_group == null) return new Map();
  return ctx.rooms.state.groupEvents(Number(row.state_group));
}

/** Parse a pagination token parameter (`t<pos>`, `t-<n>` or a sync token) or throw 400 M_INVALID_PARAM. */
export function tokenParam(_name: string, value: string): number {
  const neg = /^t-(\d{1,16})$/.exec(value);
  if (neg && Number(neg[1]) <= -MIN_POS) return -Number(neg[1]);
  return parseRoomToken(value);
}

/** A room token; backfilled history lies at negative positions (`t-<n>`), which only /messages and /context read. */
function roomToken(pos: number): string {
  return pos < 0 ? `t-${Math.min(-pos, -MIN_POS)}` : makeRoomToken(pos);
}

// ---------------------------------------------------------------------------
// Scanning the timeline

/** Rows read per database round trip, and at most per request before handing back a token. */
const BATCH = 200;
const SCAN_CAP = 5000;

interface ScanResult {
  events: StoredEvent[];
  /** Last stream position looked at (whether or not it matched). */
  cursor?: number;
  /** Stopped because of SCAN_CAP, not because `want` was reached or the range ran out. */
  capped: boolean;
  /** Ran out of visible events inside [lo, hi]. */
  exhausted: boolean;
}

/**
 * Visible events of the room with lo <= stream_pos <= hi matching `filter`,
 * newest first (`b`) or oldest first (`f`), at most `want` of them.
 */
export async function scanTimeline(
  ctx: Context,
  reader: RoomReader,
  opts: { dir: 'b' | 'f'; lo: number; hi: number; want: number; filter?: RoomEventFilter },
): Promise<ScanResult> {
  const { dir, want, filter } = opts;
  const out: StoredEvent[] = [];
  if (want <= 0) return { events: out, capped: false, exhausted: false };
  let ranges = reader.oracle.visibleRanges()
    .map(([a, b]): [number, number] => [Math.max(a, opts.lo), Math.min(b, opts.hi)])
    .filter(([a, b]) => a <= b);
  if (dir === 'b') ranges = ranges.reverse();
  let scanned = 0;
  let cursor: number | undefined;
  for (const [a, b] of ranges) {
    let lo = a;
    let hi = b;
    for (;;) {
      const rows = await ctx.storage.db.selectFrom('events').select(EVENT_COLUMNS)
        .where('room_id', '=', reader.roomId).where('rejected', '=', 0)
        .where('stream_pos', '>=', lo).where('stream_pos', '<=', hi)
        .orderBy('stream_pos', dir === 'b' ? 'desc' : 'asc')
        .limit(BATCH).execute();
      for (const row of rows) {
        const ev = rowToStoredEvent(row);
        scanned++;
        cursor = ev.streamPos;
        if (matchesFilter(filter, forFilter(ev, reader.roomId))) {
          out.push(ev);
          if (out.length >= want) return { events: out, cursor, capped: false, exhausted: false };
        }
      }
      if (rows.length < BATCH) break;
      if (scanned >= SCAN_CAP) return { events: out, cursor, capped: true, exhausted: false };
      if (dir === 'b') hi = cursor! - 1; else lo = cursor! + 1;
      if (lo > hi) break;
    }
  }
  return { events: out, cursor, capped: false, exhausted: true };
}

/** Member events of the senders of `evs`, as of the state after `at` (lazy-loading members). */
async function senderMembers(ctx: Context, at: StoredEvent, evs: StoredEvent[]): Promise<StoredEvent[]> {
  const senders = new Set(evs.map((e) => e.pdu.sender));
  const state = await ctx.rooms.state.afterEvent(at);
  const out: StoredEvent[] = [];
  for (const ev of state.values()) {
    if (ev.pdu.type === 'm.room.member' && senders.has(ev.pdu.state_key ?? '')) out.push(ev);
  }
  return out;
}

// ---------------------------------------------------------------------------
// /messages

export const MAX_MESSAGES_LIMIT = 1000;

export interface MessagesQuery {
  from?: string;
  to?: string;
  dir: 'b' | 'f';
  limit: number;
  filter?: RoomEventFilter;
}

export interface MessagesResponse {
  start: string;
  end?: string;
  chunk: ClientEvent[];
  state?: ClientEvent[];
}

export async function roomMessages(ctx: Context, reader: RoomReader, q: MessagesQuery): Promise<MessagesResponse> {
  const head = await currentStreamPos(ctx.storage.db);
  const fromPos = q.from !== undefined ? tokenParam('from', q.from) : q.dir === 'b' ? head : MIN_POS;
  const toPos = q.to !== undefined ? tokenParam('to', q.to) : undefined;
  const start = q.from ?? roomToken(fromPos);
  const limit = Math.min(q.limit, MAX_MESSAGES_LIMIT);
  if (limit <= 0) return { start, end: start, chunk: [] };

  // Backwards from P: P, P-1, ... down to (but excluding) `to`. Forwards: P+1, ... up to and including `to`.
  const [lo, hi] = q.dir === 'b'
    ? [toPos === undefined ? MIN_POS : toPos + 1, fromPos]
    : [fromPos + 1, toPos === undefined ? MAX_POS : toPos];
  let res = await scanTimeline(ctx, reader, { dir: q.dir, lo, hi, want: limit + 1, filter: q.filter });
  if (q.dir === 'b' && toPos === undefined && res.exhausted) res = await withBackfill(ctx, reader, res, hi, limit + 1, q.filter);

  let chunk = res.events;
  let end: string | undefined;
  const tokenAfter = (pos: number) => roomToken(q.dir === 'b' ? pos - 1 : pos);
  if (chunk.length > limit) {
    chunk = chunk.slice(0, limit);
    end = tokenAfter(chunk[chunk.length - 1].streamPos);
  } else if (res.capped && res.cursor !== undefined) {
    end = tokenAfter(res.cursor);
  } else if (toPos !== undefined) {
    // Stopped at the caller's `to`; the room may go on beyond it.
    end = roomToken(toPos);
  }
  // Otherwise nothing further is visible in that direction: `end` is omitted (spec).

  const out: MessagesResponse = { start, chunk: await formatEvents(ctx, chunk, reader.requester, reader.roomId) };
  if (end !== undefined) out.end = end;
  if (q.filter?.lazy_load_members && chunk.length) {
    const newest = q.dir === 'b' ? chunk[0] : chunk[chunk.length - 1];
    out.state = await formatEvents(ctx, await senderMembers(ctx, newest, chunk), reader.requester, reader.roomId);
  }
  return out;
}

/** Backfill rounds one /messages request may wait for (each brings up to BACKFILL_LIMIT events). */
const MAX_BACKFILL_ROUNDS = 5;

/**
 * A backwards scan found no more visible events: when the room's oldest
 * events have unknown prev events (a room joined over federation), fetch
 * older history (federation/backfill.ts) and scan on into it, again while
 * what arrives is not visible to the reader, within BACKFILL_WAIT_MS. The
 * fetched events lie below every position already scanned, and may change
 * what the reader can see (history visibility events), so the oracle is
 * reloaded each time.
 */
async function withBackfill(ctx: Context, reader: RoomReader, res: ScanResult, hi: number, want: number, filter?: RoomEventFilter): Promise<ScanResult> {
  const deadline = Date.now() + BACKFILL_WAIT_MS;
  let out = res;
  for (let round = 0; round < MAX_BACKFILL_ROUNDS && out.exhausted; round++) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    if ((await backfillerOf(ctx).maybeBackfill(reader.roomId, left)) === 0) break;
    const oracle = await loadVisibility(ctx.storage.db, reader.roomId, reader.requester.userId, await historyBaseline(ctx, reader.roomId));
    const below = out.cursor !== undefined ? Math.min(hi, out.cursor - 1) : hi;
    const more = await scanTimeline(ctx, { ...reader, oracle }, { dir: 'b', lo: MIN_POS, hi: below, want: want - out.events.length, filter });
    out = { ...more, events: [...out.events, ...more.events], cursor: more.cursor ?? out.cursor };
  }
  return out;
}

// ---------------------------------------------------------------------------
// /event and /context

/** One event the reader may see, or 404 M_NOT_FOUND. */
export async function visibleEvent(ctx: Context, reader: RoomReader, eventId: string): Promise<StoredEvent> {
  const ev = await ctx.rooms.events.get(eventId);
  if (!ev || roomIdOf(ev) !== reader.roomId || !reader.oracle.canSee(forVisibility(ev))) {
    throw notFound('Event not found');
  }
  return ev;
}

export interface ContextResponse {
  start: string;
  end: string;
  events_before: ClientEvent[];
  event: ClientEvent;
  events_after: ClientEvent[];
  state: ClientEvent[];
}

export async function eventContext(
  ctx: Context,
  reader: RoomReader,
  eventId: string,
  limit: number,
  filter?: RoomEventFilter,
): Promise<ContextResponse> {
  const ev = await visibleEvent(ctx, reader, eventId);
  limit = Math.min(Math.max(limit, 0), MAX_MESSAGES_LIMIT);
  const nBefore = Math.floor(limit / 2);
  const nAfter = limit - nBefore;
  const head = await currentStreamPos(ctx.storage.db);
  const before = await scanTimeline(ctx, reader, { dir: 'b', lo: MIN_POS, hi: ev.streamPos - 1, want: nBefore, filter });
  const after = await scanTimeline(ctx, reader, { dir: 'f', lo: ev.streamPos + 1, hi: Math.max(head, ev.streamPos), want: nAfter, filter });
  const firstBefore = before.events[before.events.length - 1];
  const lastAfter = after.events[after.events.length - 1];
  const start = roomToken((firstBefore ?? ev).streamPos - 1);
  const end = roomToken((lastAfter ?? ev).streamPos);

  // Spec: the state at the last event returned; the filter applies to it too.
  const stateEvents = [...(await ctx.rooms.state.afterEvent(lastAfter ?? ev)).values()];
  let state = stateEvents.filter((s) => matchesFilter(filter, forFilter(s, reader.roomId)));
  if (filter?.lazy_load_members) {
    const senders = new Set([...before.events, ev, ...after.events].map((e) => e.pdu.sender));
    state = state.filter((s) => s.pdu.type !== 'm.room.member' || senders.has(s.pdu.state_key ?? ''));
  }
  const requester = reader.requester;
  return {
    start,
    end,
    events_before: await formatEvents(ctx, before.events, requester, reader.roomId),
    event: await formatEvent(ctx, ev, requester, reader.roomId),
    events_after: await formatEvents(ctx, after.events, requester, reader.roomId),
    state: await formatEvents(ctx, state, requester, reader.roomId),
  };
}

// ---------------------------------------------------------------------------
// /members and /joined_members

export type MembershipValue = 'join' | 'invite' | 'knock' | 'leave' | 'ban';

/** The spec's odd rule: with both parameters, keep a member if either condition holds. */
export function membershipMatches(m: string, membership?: string, notMembership?: string): boolean {
  if (membership && notMembership) return m === membership || m !== notMembership;
  if (membership) return m === membership;
  if (notMembership) return m !== notMembership;
  return true;
}

export async function roomMembers(
  ctx: Context,
  reader: RoomReader,
  q: { at?: string; membership?: MembershipValue; not_membership?: MembershipValue },
): Promise<{ chunk: ClientEvent[] }> {
  let bound = q.at !== undefined ? tokenParam('at', q.at) : undefined;
  let state: Map<string, StoredEvent>;
  if (reader.mode === 'departed' && reader.stateAt && (bound === undefined || bound >= reader.stateAt.pos)) {
    state = await readableState(ctx, reader);
  } else if (bound !== undefined) {
    if (reader.mode === 'departed' && reader.stateAt) bound = Math.min(bound, reader.stateAt.pos);
    state = await stateAtPosition(ctx, reader.roomId, bound);
  } else {
    state = await ctx.rooms.state.current(reader.roomId);
  }
  const members = [...state.values()].filter((ev) =>
    ev.pdu.type === 'm.room.member' &&
    membershipMatches(typeof ev.pdu.content?.membership === 'string' ? ev.pdu.content.membership : 'leave', q.membership, q.not_membership));
  return { chunk: await formatEvents(ctx, members, reader.requester, reader.roomId) };
}

export async function joinedMembers(ctx: Context, roomId: string): Promise<{ joined: Record<string, { display_name?: string; avatar_url?: string }> }> {
  const state = await ctx.rooms.state.current(roomId);
  const joined: Record<string, { display_name?: string; avatar_url?: string }> = {};
  for (const ev of state.values()) {
    if (ev.pdu.type !== 'm.room.member' || ev.pdu.content?.membership !== 'join') continue;
    const info: { display_name?: string; avatar_url?: string } = {};
    const c = ev.pdu.content;
    if (typeof c.displayname === 'string') info.display_name = c.displayname;
    if (typeof c.avatar_url === 'string') info.avatar_url = c.avatar_url;
    Object.defineProperty(joined, ev.pdu.state_key ?? '', { value: info, enumerable: true, writable: true, configurable: true });
  }
  return { joined };
}
