/**
 * The deprecated sync endpoints, still used by old clients and bots:
 * GET /events, GET /initialSync and GET /rooms/{roomId}/initialSync. They
 * are thin layers over SyncService.
 */
import type { Context } from '../server/services.js';
import { currentStreamPos } from '../storage/db.js';
import { openRoomForReading, readableState } from '../rooms/timeline.js';
import { stateKeyOf } from '../rooms/state-store.js';
import type { ClientEvent, Requesting, StoredEvent } from '../rooms/types.js';
import type { HistoryVisibilityOracle } from '../rooms/visibility.js';
import { compileFilter, EventMatcher } from './filters.js';
import { makeRoomToken, makeSyncToken, parseSyncToken } from './tokens.js';
import type { BasicEvent } from './service.js';
import { presenceContent } from './presence.js';

const DEFAULT_LIMIT = 10;
const MAX_LIMIT = 1000;
/** Events per room per /events response. */
const EVENTS_PER_ROOM = 100;

const everything = new EventMatcher();

function clampLimit(limit: number | undefined): number {
  return Math.min(MAX_LIMIT, Math.max(0, limit ?? DEFAULT_LIMIT));
}

interface RoomInfo {
  room_id: string;
  membership?: string;
  invite?: ClientEvent;
  messages?: { chunk: ClientEvent[]; start?: string; end: string };
  state?: ClientEvent[];
  visibility?: string;
  account_data?: BasicEvent[];
  presence?: BasicEvent[];
  receipts?: BasicEvent[];
}

async function roomVisibility(ctx: Context, roomId: string): Promise<string> {
  const r = await ctx.rooms.getRoom(roomId);
  return r?.visibility === 'public' ? 'public' : 'private';
}

async function roomAccountDataList(ctx: Context, userId: string, roomId: string): Promise<BasicEvent[]> {
  const rows = await ctx.storage.db.selectFrom('account_data').select(['type', 'content'])
    .where('user_id', '=', userId).where('room_id', '=', roomId).orderBy('stream_pos').execute();
  return rows.map((r) => ({ type: r.type, content: JSON.parse(r.content) }));
}

/** Messages and state of one room as the legacy endpoints show them (state at the end, not the start). */
async function roomSnapshot(
  ctx: Context, requester: Requesting, roomId: string, oracle: HistoryVisibilityOracle,
  upper: number, limit: number, stateIds: Map<string, string> | undefined, to: number,
): Promise<{ messages: NonNullable<RoomInfo['messages']>; state: ClientEvent[] }> {
  const sync = ctx.sync;
  const tl = await sync.timeline(roomId, oracle, 0, upper, limit, everything);
  const ids = stateIds ?? (await sync.stateIdsAt(roomId, upper));
  const stateEvents = await ctx.rooms.events.getMany([...ids.values()]);
  const redactions = await sync.redactionsFor([...tl.events, ...stateEvents]);
  const fmt = (e: StoredEvent) => sync.format(e, { requester }, redactions, roomId);
  const messages: NonNullable<RoomInfo['messages']> = { chunk: tl.events.map(fmt), end: makeSyncToken(to, ctx.ephemeral.typing.serial) };
  messages.start = makeRoomToken(tl.events.length ? tl.events[0].streamPos - 1 : upper);
  return { messages, state: stateEvents.map(fmt) };
}

/** GET /initialSync. */
export async function legacyInitialSync(ctx: Context, requester: Requesting, opts: { limit?: number; archived?: boolean }): Promise<Record<string, unknown>> {
  const { userId } = requester;
  const limit = clampLimit(opts.limit);
  const sync = ctx.sync;
  const typingSerial = ctx.ephemeral.typing.serial;
  const to = await currentStreamPos(ctx.storage.db);
  const members = (await sync.memberships(userId, to)).filter((m) => !m.forgotten);
  const readable = members.filter((m) => m.membership === 'join' || (opts.archived && (m.membership === 'leave' || m.membership === 'ban')));
  const access = await sync.loadAccess(userId, readable.map((m) => m.roomId), to);
  const joinedIds = members.filter((m) => m.membership === 'join').map((m) => m.roomId);
  const receipts = await ctx.ephemeral.receipts.forRooms(userId, joinedIds, undefined, to);

  const rooms: RoomInfo[] = [];
  for (const m of members) {
    if (m.membership === 'invite') {
      const ev = await ctx.rooms.events.get(m.eventId);
      const info: RoomInfo = { room_id: m.roomId, membership: 'invite' };
      if (ev) info.invite = sync.format(ev, { requester }, new Map(), m.roomId);
      rooms.push(info);
      continue;
    }
    const a = access.get(m.roomId);
    if (!a) continue;
    const upper = m.membership === 'join' ? to : m.pos;
    const snap = await roomSnapshot(ctx, requester, m.roomId, a.oracle, upper, limit, undefined, to);
    rooms.push({
      room_id: m.roomId,
      membership: m.membership,
      messages: snap.messages,
      state: snap.state,
      visibility: await roomVisibility(ctx, m.roomId),
      account_data: await roomAccountDataList(ctx, userId, m.roomId),
    });
  }
  const receiptEvents: BasicEvent[] = [...receipts].map(([roomId, content]) => ({ type: 'm.receipt', room_id: roomId, content }));
  return {
    end: makeSyncToken(to, typingSerial),
    rooms,
    presence: await sync.presenceEvents(userId, everything, undefined, to),
    account_data: await sync.globalAccountData(userId, everything, undefined, to),
    receipts: receiptEvents,
  };
}

/** GET /rooms/{roomId}/initialSync: members, departed members (as of leaving) and peekers of world-readable rooms. */
export async function legacyRoomInitialSync(ctx: Context, requester: Requesting, roomId: string, opts: { limit?: number }): Promise<RoomInfo> {
  const { userId } = requester;
  const reader = await openRoomForReading(ctx, roomId, requester);
  const to = await currentStreamPos(ctx.storage.db);
  const limit = clampLimit(opts.limit);
  const departed = reader.mode === 'departed' && reader.stateAt;
  const upper = departed ? Math.min(reader.stateAt!.pos, to) : to;
  let stateIds: Map<string, string> | undefined;
  if (departed) {
    const state = await readableState(ctx, reader);
    stateIds = new Map([...state.values()].map((e) => [stateKeyOf(e.pdu.type, e.pdu.state_key ?? ''), e.pdu.event_id]));
  }
  const snap = await roomSnapshot(ctx, requester, roomId, reader.oracle, upper, limit, stateIds, to);
  const info: RoomInfo = {
    room_id: roomId,
    messages: snap.messages,
    state: snap.state,
    visibility: await roomVisibility(ctx, roomId),
    account_data: await roomAccountDataList(ctx, userId, roomId),
  };
  const membership = await ctx.rooms.membership(roomId, userId);
  if (membership && reader.mode !== 'peeking') info.membership = membership;

  // Presence of the room's members and its receipts, as Synapse gives them.
  info.presence = [];
  if (ctx.config.presence_enabled) {
    const rows = await ctx.storage.db.selectFrom('presence as p')
      .innerJoin('room_members as m', 'm.user_id', 'p.user_id')
      .leftJoin('users as u', 'u.user_id', 'p.user_id')
      .select(['p.user_id', 'p.state', 'p.status_msg', 'p.last_active_ts', 'u.displayname', 'u.avatar_url'])
      .where('m.room_id', '=', roomId).where('m.membership', '=', 'join').limit(5000).execute();
    for (const r of rows) {
      info.presence.push({ type: 'm.presence', sender: r.user_id, content: presenceContent(r, Date.now(), { displayname: r.displayname ?? null, avatar_url: r.avatar_url ?? null }) as unknown as Record<string, unknown> });
    }
  }
  const receipts = (await ctx.ephemeral.receipts.forRooms(userId, [roomId], undefined, upper)).get(roomId);
  info.receipts = receipts ? [{ type: 'm.receipt', room_id: roomId, content: receipts }] : [];
  return info;
}

/**
 * GET /events: everything new since `from` in the user's rooms as one flat
 * list (room events with room_id, typing, receipts, presence), long-polling
 * up to `timeout`. With `roomId`, only that room (which may be a
 * world-readable room the user peeks at).
 */
export async function legacyEvents(
  ctx: Context, requester: Requesting,
  opts: { from?: string; timeoutMs?: number; roomId?: string; signal?: AbortSignal },
): Promise<{ start: string; end: string; chunk: unknown[] }> {
  const { userId } = requester;
  const sync = ctx.sync;
  const start = opts.from ?? makeSyncToken(await currentStreamPos(ctx.storage.db), ctx.ephemeral.typing.serial);
  const since = parseSyncToken(start);

  if (opts.roomId !== undefined) {
    const roomId = opts.roomId;
    const reader = await openRoomForReading(ctx, roomId, requester);
    if (reader.mode !== 'peeking') {
      // A member: the ordinary path, limited to that room.
      return eventsFromSync(ctx, requester, start, since, { room: { rooms: [roomId] } }, opts);
    }
    return sync.longPoll(userId, opts.timeoutMs ?? 0, opts.signal, async () => {
      const to = await currentStreamPos(ctx.storage.db);
      const pos = Math.min(since.pos, to);
      const tl = await sync.timeline(roomId, reader.oracle, pos, to, EVENTS_PER_ROOM, everything);
      const redactions = await sync.redactionsFor(tl.events);
      const chunk = tl.events.map((e) => sync.format(e, { requester }, redactions, roomId));
      return { value: { start, end: makeSyncToken(to, ctx.ephemeral.typing.serial), chunk }, hasData: chunk.length > 0 };
    });
  }
  return eventsFromSync(ctx, requester, start, since, {}, opts);
}

async function eventsFromSync(
  ctx: Context, requester: Requesting, start: string, since: ReturnType<typeof parseSyncToken>,
  filterDef: Parameters<typeof compileFilter>[0], opts: { timeoutMs?: number; signal?: AbortSignal },
): Promise<{ start: string; end: string; chunk: unknown[] }> {
  const sync = ctx.sync;
  const { userId } = requester;
  const filter = compileFilter(filterDef, { defaultLimit: EVENTS_PER_ROOM });
  return sync.longPoll(userId, opts.timeoutMs ?? 0, opts.signal, async () => {
    const { body } = await sync.compute({ userId, deviceId: requester.deviceId ?? '', filter, since });
    const chunk: unknown[] = [];
    const withRoom = <T extends object>(roomId: string, e: T) => ({ ...e, room_id: roomId });
    for (const [roomId, r] of Object.entries(body.rooms.join)) {
      for (const e of r.timeline.events) chunk.push(withRoom(roomId, e));
      for (const e of r.ephemeral.events) chunk.push(withRoom(roomId, e));
    }
    for (const [roomId, r] of Object.entries(body.rooms.leave)) {
      for (const e of r.timeline.events) chunk.push(withRoom(roomId, e));
    }
    for (const roomId of Object.keys(body.rooms.invite)) {
      const row = await ctx.storage.db.selectFrom('room_members').select('event_id')
        .where('room_id', '=', roomId).where('user_id', '=', userId).executeTakeFirst();
      const ev = row ? await ctx.rooms.events.get(row.event_id) : undefined;
      if (ev) chunk.push(sync.format(ev, { requester }, new Map(), roomId));
    }
    chunk.push(...body.presence.events);
    return { value: { start, end: body.next_batch, chunk }, hasData: chunk.length > 0 };
  });
}
