/**
 * /sync: what changed for a user between two points of the global stream.
 *
 * A sync token is `s<pos>_<typing>` (tokens.ts). Everything a client can
 * sync carries a stream position, so an incremental sync is a set of range
 * queries over (since, to], where `to` is the committed stream head read at
 * the start of the computation. Typing is in memory with its own serial.
 *
 * Per room, the timeline is read through the user's history visibility
 * ranges (rooms/visibility.ts), so a user never sees events from before
 * they could see the room or after they left it.
 */
import { sql } from 'kysely';
import { hoist } from '../storage/db.js';
import type { Context } from '../server/services.js';
import { MatrixError, invalidParam } from '../server/errors.js';
import { Lru, WeightedLru } from '../server/lru.js';
import { userRoomKey } from '../server/stream-changes.js';
import { EVENT_COLUMNS, rowToStoredEvent } from '../rooms/event-store.js';
import { splitStateKey, stateKeyOf } from '../rooms/state-store.js';
import { toClientEvent, toStrippedState } from '../rooms/client-event.js';
import type { ClientEvent, Requesting, StoredEvent } from '../rooms/types.js';
import { HistoryVisibilityOracle, loadVisibilityFacts, type VisibilityFacts } from '../rooms/visibility.js';
import { applyEventFields, applyLimit, compileFilter, parseFilter, parseInlineFilter, type CompiledFilter, type EventMatcher } from './filters.js';
import { makeRoomToken, makeSyncToken, parseSyncToken, type SyncToken } from './tokens.js';
import { presenceContent } from './presence.js';
import type { ReceiptContent } from './receipts.js';

// ---------------------------------------------------------------- response shapes

export interface StrippedEvent {
  type: string;
  state_key: string;
  sender: string;
  content: Record<string, unknown>;
}

/** Account data, ephemeral and presence events: no event id. */
export interface BasicEvent {
  type: string;
  content: Record<string, unknown>;
  sender?: string;
  room_id?: string;
}

export interface TimelineBatch {
  events: ClientEvent[];
  limited: boolean;
  prev_batch: string;
}

export interface JoinedRoomSync {
  summary: { 'm.heroes'?: string[]; 'm.joined_member_count': number; 'm.invited_member_count': number };
  state: { events: ClientEvent[] };
  timeline: TimelineBatch;
  ephemeral: { events: BasicEvent[] };
  account_data: { events: BasicEvent[] };
  unread_notifications: { highlight_count: number; notification_count: number };
}

export interface LeftRoomSync {
  state: { events: ClientEvent[] };
  timeline: TimelineBatch;
  account_data: { events: BasicEvent[] };
}

export interface SyncResponse {
  next_batch: string;
  rooms: {
    join: Record<string, JoinedRoomSync>;
    invite: Record<string, { invite_state: { events: StrippedEvent[] } }>;
    leave: Record<string, LeftRoomSync>;
    knock: Record<string, { knock_state: { events: StrippedEvent[] } }>;
  };
  presence: { events: BasicEvent[] };
  account_data: { events: BasicEvent[] };
  to_device: { events: unknown[] };
  device_lists: { changed: string[]; left: string[] };
  device_one_time_keys_count: Record<string, number>;
  [extra: string]: unknown;
}

/**
 * A later domain (e2ee: to-device, device lists, key counts) adds its part
 * of the response here. It sees the range (since, to] and returns whether
 * it added anything (so a long-poll returns).
 */
export type SyncExtension = (args: {
  userId: string;
  deviceId: string;
  since: number | undefined;
  to: number;
  body: SyncResponse;
  /** The parsed `since` token as the client sent it (e.g. its to-device part); undefined on an initial sync. */
  sinceToken?: SyncToken;
}) => Promise<boolean>;

export interface SyncRequest {
  userId: string;
  deviceId: string;
  since?: string;
  /** Milliseconds to wait for something new (incremental syncs only). */
  timeoutMs?: number;
  /** The `filter` query parameter: inline JSON or a stored filter id. */
  filter?: string;
  fullState?: boolean;
  setPresence?: string;
  /** Aborted when the client goes away. */
  signal?: AbortSignal;
}

// ---------------------------------------------------------------- internals

const IN_CHUNK = 500;
const MAX_TIMEOUT_MS = 5 * 60_000;
/** Events looked at per room before a timeline gives up and reports `limited`. */
const SCAN_CAP = 2000;
const MAX_BATCH = 500;
/** Rooms built at once (PostgreSQL can run them in parallel; SQLite serialises anyway). */
const ROOM_CONCURRENCY = 8;
/** Above this many stream positions, look for changed rooms room by room instead of scanning the range. */
const RANGE_SCAN_MAX = 5000;
const HERO_COUNT = 5;
/** (user, room) pairs whose history visibility facts are cached, and the most facts held in all. */
const FACTS_CACHE_SIZE = 20_000;
const FACTS_CACHE_TOTAL = 200_000;
/** At most this many users whose presence changed are named in the presence query (more: the query runs as it is). */
const PRESENCE_NARROW_MAX = 200;
/** Rooms whose summary data is cached. */
const SUMMARY_CACHE_SIZE = 10_000;
/** Stripped state shown with invites and knocks (spec: Stripped state). */
const STRIPPED_TYPES = ['m.room.create', 'm.room.name', 'm.room.avatar', 'm.room.topic', 'm.room.join_rules', 'm.room.canonical_alias', 'm.room.encryption'];

/** The timeline query without filters (the common case), compiled once. */
const timelineRange = hoist((db, roomId: string, lo: number, hi: number, limit: number) => db.selectFrom('events').select(EVENT_COLUMNS)
  .where('room_id', '=', roomId).where('rejected', '=', 0)
  .where('stream_pos', '>=', lo).where('stream_pos', '<=', hi)
  .orderBy('stream_pos', 'desc').limit(limit));

function chunks<T>(xs: T[], n = IN_CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Sort and merge inclusive ranges (adjacent ones too). */
export function mergeRanges(ranges: Array<[number, number]>): Array<[number, number]> {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && last[1] + 1 >= a) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** `*` wildcards to a LIKE pattern with `!` as the escape character. */
function likePattern(glob: string): string {
  return glob.replace(/[!%_]/g, (c) => '!' + c).replace(/\*/g, '%');
}

export interface MemberRow {
  roomId: string;
  membership: string;
  eventId: string;
  pos: number;
  forgotten: boolean;
}

/** What is known about a user in a room: their membership history and what they may see. */
export interface RoomAccess {
  oracle: HistoryVisibilityOracle;
  memberships: VisibilityFacts['membership'];
}

export interface TimelineResult {
  /** Oldest first. */
  events: StoredEvent[];
  limited: boolean;
  /** Every event in the range is in `events` (so the state before the first one is the state at the range start). */
  complete: boolean;
  /**
   * Every event after the first returned one (up to the range end) is in
   * `events`: no state change after the timeline start went unseen.
   */
  tailComplete: boolean;
}

interface RoomPlan {
  roomId: string;
  section: 'join' | 'leave';
  /** Exclusive. */
  lower: number;
  /** Inclusive. */
  upper: number;
  /** Full state at the start of the timeline, rather than a delta since `lower`. */
  full: boolean;
  access: RoomAccess;
  /** The user never joined (e.g. a rejected invite): show no room state. */
  hideState: boolean;
}

interface BuildCtx {
  userId: string;
  requester: Requesting;
  filter: CompiledFilter;
  /** Initial sync (no since token). */
  initial: boolean;
  heroes: Map<string, string[]>;
}

/**
 * What a room summary is made of, valid while the room's state does not
 * change after `asOf`. Filled in lazily: `named` and the hero candidates
 * (the first HERO_COUNT + 1 members, so HERO_COUNT remain without the
 * syncing user).
 */
interface SummaryEntry {
  asOf: number;
  joined: number;
  invited: number;
  group: number | undefined;
  named?: boolean;
  active?: string[];
  departed?: string[];
}

interface BuiltRoom {
  timeline: TimelineBatch;
  state: ClientEvent[];
}

export class SyncService {
  private filterCache = new Lru<string, CompiledFilter>(1000);
  private extensions: SyncExtension[] = [];
  /** History visibility facts per `userRoomKey` (see loadAccess). */
  private factsCache = new WeightedLru<string, { facts: VisibilityFacts; asOf: number }>(
    FACTS_CACHE_SIZE, FACTS_CACHE_TOTAL, (e) => 1 + e.facts.historyVisibility.length + e.facts.membership.length);
  /** Member counts, state group, name and hero candidates per room (see summaries). */
  private summaryCache = new Lru<string, SummaryEntry>(SUMMARY_CACHE_SIZE);

  constructor(private readonly ctx: Context) {
    ctx.streams.onReset(() => {
      this.factsCache.clear();
      this.summaryCache.clear();
    });
  }

  registerExtension(ext: SyncExtension): void {
    this.extensions.push(ext);
  }

  // ------------------------------------------------------------ filters

  /** Resolve the `filter` parameter: inline JSON (starts with `{`) or a stored filter id. */
  async resolveFilter(userId: string, param: string | undefined): Promise<CompiledFilter> {
    if (param === undefined || param === '') return compileFilter();
    const key = `${userId}\u0000${param}`;
    const hit = this.filterCache.get(key);
    if (hit) return hit;
    let compiled: CompiledFilter;
    if (param.trimStart().startsWith('{')) {
      compiled = compileFilter(parseInlineFilter(param));
    } else {
      let raw: unknown;
      try {
        raw = await this.ctx.accounts.getFilter(userId, param);
      } catch (err) {
        if (err instanceof MatrixError && err.status === 404) raw = undefined;
        else throw err;
      }
      if (raw == null) throw invalidParam('No such filter');
      compiled = compileFilter(parseFilter(typeof raw === 'string' ? JSON.parse(raw) : raw));
    }
    this.filterCache.set(key, compiled);
    return compiled;
  }

  // ------------------------------------------------------------ the endpoint

  /** GET /sync, long-polling when given a since token and a timeout. */
  async sync(req: SyncRequest): Promise<SyncResponse> {
    const { userId, deviceId } = req;
    if (req.setPresence !== undefined && !['online', 'offline', 'unavailable'].includes(req.setPresence)) {
      throw invalidParam('set_presence must be online, offline or unavailable');
    }
    const filter = await this.resolveFilter(userId, req.filter);
    const since = req.since ? parseSyncToken(req.since) : undefined;
    const fullState = req.fullState === true;
    const timeout = req.timeoutMs ?? 0;
    const presence = this.ctx.ephemeral.presence;
    await presence.syncStarted(userId, req.setPresence);
    try {
      // full_state and initial syncs answer at once (spec).
      const wait = since !== undefined && !fullState ? timeout : 0;
      return await this.longPoll(userId, wait, req.signal, async () => {
        const r = await this.compute({ userId, deviceId, filter, since, fullState });
        return { value: r.body, hasData: r.hasData };
      });
    } finally {
      presence.syncEnded(userId);
    }
  }

  /**
   * Run `fn`; if it has nothing to say, wait (up to `timeoutMs`, or until
   * the client goes away) for the user or one of their rooms to be
   * notified, then run it once more and answer with whatever it has. An
   * empty answer after a wake-up is fine (the client polls again) and keeps
   * shutdown prompt: the server wakes every waiter when it stops.
   */
  async longPoll<T>(userId: string, timeoutMs: number, signal: AbortSignal | undefined, fn: () => Promise<{ value: T; hasData: boolean }>): Promise<T> {
    const timeout = Math.min(MAX_TIMEOUT_MS, Math.max(0, timeoutMs));
    let waiting: Promise<boolean> | undefined;
    const stopWaiting = new AbortController();
    const onAbort = () => stopWaiting.abort();
    if (timeout > 0 && !signal?.aborted) {
      signal?.addEventListener('abort', onAbort, { once: true });
      // Register for wake-ups *before* reading the stream head, so nothing
      // committed in between is missed.
      const keys = [userId, ...(await this.ctx.rooms.joinedRoomIds(userId))];
      waiting = this.ctx.notifier.wait(keys, timeout, stopWaiting.signal);
    }
    try {
      const first = await fn();
      if (!waiting || first.hasData) return first.value;
      const woken = await waiting;
      if (!woken || signal?.aborted) return first.value;
      return (await fn()).value;
    } finally {
      stopWaiting.abort();
      signal?.removeEventListener('abort', onAbort);
    }
  }

  // ------------------------------------------------------------ computing a response

  async compute(o: { userId: string; deviceId: string; filter: CompiledFilter; since?: SyncToken; fullState?: boolean }): Promise<{ body: SyncResponse; hasData: boolean }> {
    const { userId, deviceId, filter } = o;
    const typing = this.ctx.ephemeral.typing;
    // Read the typing serial before anything else: a change during the
    // computation is then sent (again) next time rather than lost.
    const typingSerial = typing.serial;
    // The committed stream head. Every change up to it is recorded in the
    // stream change caches (ctx.write), which the reads below rely on.
    const to = this.ctx.notifier.position;
    const since = o.since ? { pos: Math.min(o.since.pos, to), typing: typing.normalise(o.since.typing) } : undefined;
    const sincePos = since?.pos;
    const initial = since === undefined;
    const fullState = o.fullState === true;
    const requester: Requesting = { userId, deviceId };

    const body: SyncResponse = {
      next_batch: makeSyncToken(to, typingSerial),
      rooms: { join: {}, invite: {}, leave: {}, knock: {} },
      presence: { events: [] },
      account_data: { events: [] },
      to_device: { events: [] },
      device_lists: { changed: [], left: [] },
      device_one_time_keys_count: {},
    };

    const members = (await this.memberships(userId, to)).filter((m) => filter.rooms.allows(m.roomId));
    const joined = members.filter((m) => m.membership === 'join');
    const joinedIds = joined.map((m) => m.roomId);

    // Room account data (all of it, or what changed) also tells which rooms changed.
    const roomAccountData = await this.roomAccountData(userId, sincePos, to);
    // Receipts likewise.
    const wantReceipts = filter.ephemeral.allowsType('m.receipt');
    const receiptRooms = sincePos === undefined ? joinedIds : this.ctx.streams.receipts.changedAmong(joinedIds, sincePos);
    const receipts = wantReceipts && receiptRooms.length
      ? await this.ctx.ephemeral.receipts.forRooms(userId, receiptRooms, sincePos, to)
      : new Map<string, ReceiptContent>();

    // Which joined rooms to build.
    let joinBuild: MemberRow[];
    if (initial || fullState) {
      joinBuild = joined;
    } else {
      const changed = await this.roomsWithEvents(joinedIds, sincePos!, to);
      for (const id of receipts.keys()) changed.add(id);
      for (const id of roomAccountData.keys()) changed.add(id);
      for (const id of joinedIds) if (typing.changedSince(id, since!.typing)) changed.add(id);
      joinBuild = joined.filter((m) => changed.has(m.roomId));
    }

    // Which left rooms.
    const left = members.filter((m) => (m.membership === 'leave' || m.membership === 'ban') && !m.forgotten);
    let leaveBuild: MemberRow[];
    if (initial) {
      // Kicks and bans always show; rooms the user left themselves only with include_leave.
      const candidates = filter.includeLeave ? left : left.filter((m) => m.membership === 'ban');
      if (!filter.includeLeave) {
        const leaves = left.filter((m) => m.membership === 'leave');
        const evs = await this.ctx.rooms.events.getMany(leaves.map((m) => m.eventId));
        const kicked = new Set(evs.filter((e) => e.pdu.sender !== userId).map((e) => e.pdu.event_id));
        candidates.push(...leaves.filter((m) => kicked.has(m.eventId)));
      }
      leaveBuild = candidates;
    } else {
      leaveBuild = left.filter((m) => m.pos > sincePos!);
    }

    const access = await this.loadAccess(userId, [...joinBuild, ...leaveBuild].map((m) => m.roomId), to);
    const plans: RoomPlan[] = [];
    for (const m of joinBuild) {
      const a = access.get(m.roomId)!;
      const newlyJoined = !initial && a.oracle.membershipBefore(sincePos! + 1) !== 'join';
      const fresh = initial || newlyJoined;
      plans.push({ roomId: m.roomId, section: 'join', lower: fresh ? 0 : sincePos!, upper: to, full: fresh || fullState, access: a, hideState: false });
    }
    for (const m of leaveBuild) {
      const a = access.get(m.roomId)!;
      const joinedAtSince = !initial && a.oracle.membershipBefore(sincePos! + 1) === 'join';
      const everJoined = a.memberships.some((x) => x.membership === 'join' && x.pos <= m.pos);
      plans.push({
        roomId: m.roomId, section: 'leave', lower: joinedAtSince ? sincePos! : 0, upper: m.pos,
        full: !joinedAtSince || fullState, access: a, hideState: !everJoined,
      });
    }

    const joinPlans = plans.filter((p) => p.section === 'join');
    // Rooms new to the client get all their receipts, not just recent ones.
    const freshJoins = joinPlans.filter((p) => !initial && p.lower === 0).map((p) => p.roomId);
    if (wantReceipts && freshJoins.length) {
      for (const [roomId, c] of await this.ctx.ephemeral.receipts.forRooms(userId, freshJoins, undefined, to)) receipts.set(roomId, c);
    }
    const [summaries, unread] = await Promise.all([
      this.summaries(userId, joinPlans.map((p) => p.roomId)),
      this.unreadCounts(userId, joinPlans, to),
    ]);
    const heroes = new Map<string, string[]>();
    for (const [roomId, s] of summaries) if (s['m.heroes']) heroes.set(roomId, s['m.heroes']);
    const bctx: BuildCtx = { userId, requester, filter, initial, heroes };
    const built = await mapLimit(plans, ROOM_CONCURRENCY, (p) => this.buildRoom(p, bctx));

    let hasData = false;
    for (let i = 0; i < plans.length; i++) {
      const p = plans[i];
      const b = built[i];
      const ad = this.filterRoomAccountData(filter, p.roomId, roomAccountData.get(p.roomId));
      if (p.section === 'leave') {
        body.rooms.leave[p.roomId] = { state: { events: b.state }, timeline: b.timeline, account_data: { events: ad } };
        hasData = true;
        continue;
      }
      const ephemeral = this.roomEphemeral(filter, p.roomId, p.lower === 0 ? undefined : since?.typing, receipts.get(p.roomId));
      const empty = !p.full && b.timeline.events.length === 0 && b.state.length === 0 && ephemeral.length === 0 && ad.length === 0;
      if (empty) continue;
      body.rooms.join[p.roomId] = {
        summary: summaries.get(p.roomId) ?? { 'm.joined_member_count': 0, 'm.invited_member_count': 0 },
        state: { events: b.state },
        timeline: b.timeline,
        ephemeral: { events: ephemeral },
        account_data: { events: ad },
        unread_notifications: unread.get(p.roomId) ?? { highlight_count: 0, notification_count: 0 },
      };
      hasData = true;
    }

    // Invites and knocks.
    for (const m of members) {
      if (m.membership !== 'invite' && m.membership !== 'knock') continue;
      if (!initial && m.pos <= sincePos!) continue;
      const events = await this.strippedState(m.roomId, m.eventId, m.membership);
      if (m.membership === 'invite') body.rooms.invite[m.roomId] = { invite_state: { events } };
      else body.rooms.knock[m.roomId] = { knock_state: { events } };
      hasData = true;
    }

    body.account_data.events = await this.globalAccountData(userId, filter.accountData, sincePos, to);
    body.presence.events = await this.presenceEvents(userId, filter.presence, sincePos, to, freshJoins);
    if (body.account_data.events.length || body.presence.events.length) hasData = true;

    for (const ext of this.extensions) {
      if (await ext({ userId, deviceId, since: sincePos, to, body, sinceToken: o.since })) hasData = true;
    }
    return { body, hasData };
  }

  // ------------------------------------------------------------ memberships and access

  /** The user's membership in every room, as of stream position `to`. */
  async memberships(userId: string, to: number): Promise<MemberRow[]> {
    const rows = await this.ctx.rooms.memberRowsOf(userId);
    const out: MemberRow[] = [];
    for (const r of rows) {
      let row: MemberRow = { roomId: r.room_id, membership: r.membership, eventId: r.event_id, pos: r.stream_pos, forgotten: r.forgotten };
      if (row.pos > to) {
        // Changed after our snapshot: use the membership as of `to`.
        // (No stream_pos condition in SQL: it would steer SQLite to the wrong index.)
        const history = await this.ctx.storage.db.selectFrom('events').select(['event_id', 'stream_pos', 'json'])
          .where('room_id', '=', r.room_id).where('type', '=', 'm.room.member').where('state_key', '=', userId)
          .where('rejected', '=', 0).execute();
        let prev: (typeof history)[number] | undefined;
        for (const h of history) if (Number(h.stream_pos) <= to && (!prev || Number(h.stream_pos) > Number(prev.stream_pos))) prev = h;
        if (!prev) continue;
        const content = (JSON.parse(prev.json) as { content?: { membership?: unknown } }).content;
        row = { ...row, membership: typeof content?.membership === 'string' ? content.membership : 'leave', eventId: prev.event_id, pos: Number(prev.stream_pos) };
      }
      out.push(row);
    }
    return out;
  }

  /** History visibility of the user in many rooms, batched (see loadVisibilityFacts). */
  async loadAccess(userId: string, roomIds: string[], to: number): Promise<Map<string, RoomAccess>> {
    const out = new Map<string, RoomAccess>();
    const use = (roomId: string, f: VisibilityFacts) => {
      const bounded: VisibilityFacts = {
        historyVisibility: f.historyVisibility.filter((h) => h.pos <= to),
        membership: f.membership.filter((m) => m.pos <= to),
      };
      out.set(roomId, { oracle: new HistoryVisibilityOracle(userId, bounded), memberships: bounded.membership });
    };
    // Cached facts (all of them, bounded by `to` above) hold while the room's
    // state (history visibility, the user's member events) did not change
    // after they were read. Only for a `to` whose changes are all recorded.
    const cacheable = to <= this.ctx.notifier.position;
    const roomState = this.ctx.streams.roomState;
    const missing: string[] = [];
    for (const roomId of new Set(roomIds)) {
      const hit = cacheable ? this.factsCache.get(userRoomKey(userId, roomId)) : undefined;
      if (hit && !roomState.hasEntityChanged(roomId, hit.asOf)) use(roomId, hit.facts);
      else missing.push(roomId);
    }
    if (!missing.length) return out;
    if (!cacheable) {
      for (const [roomId, f] of await loadVisibilityFacts(this.ctx.storage.db, userId, missing, to)) use(roomId, f);
      return out;
    }
    const asOf = this.ctx.notifier.position;
    for (const [roomId, f] of await loadVisibilityFacts(this.ctx.storage.db, userId, missing)) {
      this.factsCache.set(userRoomKey(userId, roomId), { facts: f, asOf });
      use(roomId, f);
    }
    return out;
  }

  /** Rooms among `roomIds` with an event in (since, to]. */
  private async roomsWithEvents(roomIds: string[], since: number, to: number): Promise<Set<string>> {
    const out = new Set<string>();
    if (to <= since || roomIds.length === 0) return out;
    // Rooms whose last event may be after `since` (one after `to` too: such a
    // room is built and found empty).
    const events = this.ctx.streams.events;
    if (since >= events.earliestKnown) return new Set(events.changedAmong(roomIds, since));
    const db = this.ctx.storage.db;
    if (to - since <= RANGE_SCAN_MAX) {
      const wanted = new Set(roomIds);
      const rows = await db.selectFrom('events').select('room_id').distinct()
        .where('stream_pos', '>', since).where('stream_pos', '<=', to).execute();
      for (const r of rows) if (wanted.has(r.room_id)) out.add(r.room_id);
      return out;
    }
    for (const roomId of roomIds) {
      const r = await db.selectFrom('events').select('stream_pos')
        .where('room_id', '=', roomId).where('stream_pos', '>', since).where('stream_pos', '<=', to)
        .limit(1).executeTakeFirst();
      if (r) out.add(roomId);
    }
    return out;
  }

  // ------------------------------------------------------------ one room

  private async buildRoom(p: RoomPlan, x: BuildCtx): Promise<BuiltRoom> {
    const { filter } = x;
    const tl = filter.timeline.allowsRoom(p.roomId)
      // The user always sees their own membership changes (e.g. the leave after declining an invite).
      ? await this.timeline(p.roomId, p.access.oracle, p.lower, p.upper, filter.timelineLimit, filter.timeline, p.access.memberships.map((x) => x.pos))
      : { events: [], limited: false, complete: false, tailComplete: false };
    const startPos = tl.events.length ? tl.events[0].streamPos - 1 : p.upper;

    let state: StoredEvent[] = [];
    if (!p.hideState && filter.state.allowsRoom(p.roomId)) {
      state = await this.roomState(p, x, tl, startPos);
    }

    const all = [...tl.events, ...state];
    const redactions = await this.redactionsFor(all);
    const fmt = (ev: StoredEvent) => this.format(ev, x, redactions);
    return {
      timeline: {
        events: tl.events.map(fmt),
        limited: tl.limited,
        prev_batch: makeRoomToken(startPos),
      },
      state: state.map(fmt),
    };
  }

  /** The state section: full state at the timeline start, or the delta since `lower`. */
  private async roomState(p: RoomPlan, x: BuildCtx, tl: TimelineResult, startPos: number): Promise<StoredEvent[]> {
    const { filter, userId } = x;
    const inTimeline = new Set(tl.events.map((e) => e.pdu.event_id));
    const lazy = filter.lazyLoadMembers;
    const wantedMembers = new Set<string>();
    if (lazy) {
      for (const e of tl.events) wantedMembers.add(e.pdu.sender);
      if (p.full) {
        wantedMembers.add(userId);
        for (const h of x.heroes.get(p.roomId) ?? []) wantedMembers.add(h);
      }
    }

    let startIds: Map<string, string> | undefined;
    const start = async () => (startIds ??= await this.stateIdsAt(p.roomId, startPos));
    const pick = new Map<string, string>(); // state key -> event id

    if (p.full) {
      for (const [k, id] of await start()) {
        const [type, stateKey] = splitStateKey(k);
        if (!filter.state.allowsType(type)) continue;
        if (lazy && type === 'm.room.member' && !wantedMembers.has(stateKey)) continue;
        pick.set(k, id);
      }
    } else {
      if (!tl.complete) {
        const [from, at] = await Promise.all([this.stateIdsAt(p.roomId, p.lower), start()]);
        for (const [k, id] of at) {
          if (from.get(k) === id) continue;
          const [type] = splitStateKey(k);
          // Member changes in a gap are always sent, lazy loading or not (spec).
          if (!filter.state.allowsType(type)) continue;
          pick.set(k, id);
        }
      }
      if (lazy && wantedMembers.size && tl.events.length) {
        const ids = await start();
        for (const u of wantedMembers) {
          const k = stateKeyOf('m.room.member', u);
          const id = ids.get(k);
          if (id && filter.state.allowsType('m.room.member')) pick.set(k, id);
        }
      }
    }
    // State changes after the timeline start that the timeline does not show
    // (filtered out, or in a visibility gap): give their end value, unless
    // the timeline itself sets that key (its own value then wins).
    if (!tl.tailComplete) {
      const [at, end] = await Promise.all([start(), this.stateIdsAt(p.roomId, p.upper)]);
      const setByTimeline = new Set(tl.events.filter((e) => e.pdu.state_key !== undefined).map((e) => stateKeyOf(e.pdu.type, e.pdu.state_key!)));
      for (const [k, id] of end) {
        if (at.get(k) === id || setByTimeline.has(k)) continue;
        const [type, stateKey] = splitStateKey(k);
        if (!filter.state.allowsType(type)) continue;
        if (p.full && lazy && type === 'm.room.member' && !wantedMembers.has(stateKey)) continue;
        pick.set(k, id);
      }
    }
    const ids = [...pick.values()].filter((id) => !inTimeline.has(id));
    const evs = await this.ctx.rooms.events.getMany(ids);
    return evs.filter((e) => filter.state.matches(e.pdu));
  }

  /** State (as stateKey -> event id) after the last event of the room at or before `pos`. */
  async stateIdsAt(roomId: string, pos: number): Promise<Map<string, string>> {
    const db = this.ctx.storage.db;
    // Backfilled history sits at negative positions and carries old state: never the state "now" for sync.
    const row = await db.selectFrom('events').select('state_group')
      .where('room_id', '=', roomId).where('stream_pos', '<=', pos).where('stream_pos', '>=', 0).where('rejected', '=', 0).where('state_group', 'is not', null)
      .orderBy('stream_pos', 'desc').limit(1).executeTakeFirst();
    if (row && row.state_group != null) return this.ctx.rooms.state.groupIds(Number(row.state_group));
    // Nothing of the room before `pos` here: a room joined over federation starts
    // with our join, whose predecessors we never had. The state before that first
    // event is its state after, without the event itself.
    const first = await db.selectFrom('events').select(EVENT_COLUMNS)
      .where('room_id', '=', roomId).where('stream_pos', '>', pos).where('rejected', '=', 0).where('state_group', 'is not', null)
      .orderBy('stream_pos', 'asc').limit(1).executeTakeFirst();
    if (!first || first.state_group == null) return new Map();
    const ev = rowToStoredEvent(first);
    if (ev.pdu.type === 'm.room.create') return new Map();
    const ids = new Map(await this.ctx.rooms.state.groupIds(Number(first.state_group)));
    if (typeof ev.pdu.state_key === 'string') {
      const key = stateKeyOf(ev.pdu.type, ev.pdu.state_key);
      const replaced = ev.pdu.unsigned?.replaces_state;
      if (typeof replaced === 'string') ids.set(key, replaced); else ids.delete(key);
    }
    return ids;
  }

  /**
   * The newest `limit` visible events of the room in (lower, upper] that
   * match the filter, oldest first; `limited` when there are more.
   */
  async timeline(
    roomId: string, oracle: HistoryVisibilityOracle, lower: number, upper: number, limit: number, m: EventMatcher,
    alsoVisible: number[] = [],
  ): Promise<TimelineResult> {
    const want = limit + 1;
    const ranges = mergeRanges([...oracle.visibleRanges(), ...alsoVisible.map((p): [number, number] => [p, p])])
      .map(([a, b]): [number, number] => [Math.max(a, lower + 1), Math.min(b, upper)])
      .filter(([a, b]) => a <= b)
      .reverse();
    let complete = m.isEmpty && (upper <= lower || (ranges.length === 1 && ranges[0][0] === lower + 1 && ranges[0][1] === upper));
    const out: StoredEvent[] = [];
    if ((m.exactTypes && m.exactTypes.length === 0) || (m.senderList && m.senderList.length === 0)) {
      return { events: [], limited: false, complete: false, tailComplete: false };
    }
    let scanned = 0;
    let capped = false;
    // Events came from more than one range: there are invisible gaps inside the timeline.
    let rangesUsed = 0;
    const db = this.ctx.storage.db;
    outer: for (const [a, b] of ranges) {
      let usedThis = false;
      let hi = b;
      let batch = Math.min(MAX_BATCH, m.isEmpty ? want : Math.max(want, 50));
      for (;;) {
        let evs: StoredEvent[];
        if (!m.exactTypes && !m.typePatterns?.length && !m.exactNotTypes?.length && !m.senderList && !m.notSenderList?.length) {
          evs = await this.eventsInRange(roomId, a, hi, batch);
        } else {
          let q = db.selectFrom('events').select(EVENT_COLUMNS)
            .where('room_id', '=', roomId).where('rejected', '=', 0)
            .where('stream_pos', '>=', a).where('stream_pos', '<=', hi);
          if (m.exactTypes) q = q.where('type', 'in', m.exactTypes);
          else if (m.typePatterns && m.typePatterns.length <= 50) {
            const pats = m.typePatterns.map(likePattern);
            q = q.where((eb) => eb.or(pats.map((pat) => sql<boolean>`${eb.ref('type')} LIKE ${pat} ESCAPE '!'`)));
          }
          if (m.exactNotTypes && m.exactNotTypes.length <= 200) q = q.where('type', 'not in', m.exactNotTypes);
          if (m.senderList && m.senderList.length <= 200) q = q.where('sender', 'in', m.senderList);
          if (m.notSenderList?.length && m.notSenderList.length <= 200) q = q.where('sender', 'not in', m.notSenderList);
          evs = (await q.orderBy('stream_pos', 'desc').limit(batch).execute()).map(rowToStoredEvent);
        }
        for (const ev of evs) {
          scanned++;
          if (m.matches(ev.pdu)) {
            out.push(ev);
            if (!usedThis) {
              usedThis = true;
              rangesUsed++;
            }
            if (out.length >= want) break outer;
          } else {
            complete = false;
          }
        }
        if (evs.length < batch) break;
        hi = evs[evs.length - 1].streamPos - 1;
        if (hi < a) break;
        if (scanned >= SCAN_CAP) {
          capped = true;
          break outer;
        }
        batch = Math.min(MAX_BATCH, batch * 2);
      }
    }
    const limited = out.length > limit || capped;
    if (limited) complete = false;
    const tailComplete = m.isEmpty && rangesUsed <= 1 && (ranges.length === 0 || ranges[0][1] === upper);
    return { events: out.slice(0, limit).reverse(), limited, complete, tailComplete };
  }

  /**
   * The room's newest `limit` accepted events in [lo, hi], newest first:
   * from the recent events and the event cache when they cover the range,
   * else from the database.
   */
  private async eventsInRange(roomId: string, lo: number, hi: number, limit: number): Promise<StoredEvent[]> {
    if (hi <= this.ctx.notifier.position) {
      const ids = this.ctx.rooms.recent.range(roomId, lo, hi, limit);
      if (ids) {
        if (!ids.length) return [];
        const evs = await this.ctx.rooms.events.getMany(ids);
        if (evs.length === ids.length) return evs;
      }
    }
    return (await timelineRange(this.ctx.storage.db, roomId, lo, hi, limit)).map(rowToStoredEvent);
  }

  // ------------------------------------------------------------ formatting

  async redactionsFor(evs: StoredEvent[]): Promise<Map<string, StoredEvent>> {
    const ids = [...new Set(evs.map((e) => e.redactedBy).filter((id): id is string => !!id))];
    const out = new Map<string, StoredEvent>();
    if (ids.length) for (const r of await this.ctx.rooms.events.getMany(ids)) out.set(r.pdu.event_id, r);
    return out;
  }

  /** Client format (no room_id unless asked), unsigned.redacted_because, event_fields. */
  format(ev: StoredEvent, x: { requester: Requesting; filter?: CompiledFilter }, redactions: Map<string, StoredEvent>, roomId?: string): ClientEvent {
    const because = ev.redactedBy ? redactions.get(ev.redactedBy) : undefined;
    const omitRoomId = roomId === undefined;
    const out = toClientEvent(ev, x.requester, {
      omitRoomId,
      redactedBecause: because ? toClientEvent(because, x.requester, { omitRoomId }) : undefined,
    });
    if (omitRoomId) delete out.room_id;
    else if (!out.room_id) out.room_id = roomId;
    return applyEventFields(out, x.filter?.eventFields);
  }

  // ------------------------------------------------------------ room extras

  private roomEphemeral(filter: CompiledFilter, roomId: string, sinceTyping: number | undefined, receipts: ReceiptContent | undefined): BasicEvent[] {
    const m = filter.ephemeral;
    if (!m.allowsRoom(roomId)) return [];
    const out: BasicEvent[] = [];
    if (m.allowsType('m.typing')) {
      const typing = this.ctx.ephemeral.typing;
      const users = typing.users(roomId);
      if (sinceTyping === undefined ? users.length > 0 : typing.changedSince(roomId, sinceTyping)) {
        out.push({ type: 'm.typing', content: { user_ids: users } });
      }
    }
    if (receipts && m.allowsType('m.receipt')) out.push({ type: 'm.receipt', content: receipts });
    return applyLimit(out, m.limit);
  }

  private filterRoomAccountData(filter: CompiledFilter, roomId: string, events: BasicEvent[] | undefined): BasicEvent[] {
    const m = filter.roomAccountData;
    if (!events || !m.allowsRoom(roomId)) return [];
    return applyLimit(events.filter((e) => m.matches(e)), m.limit);
  }

  /** Room account data per room: everything (initial) or what changed in (since, to]. */
  private async roomAccountData(userId: string, since: number | undefined, to: number): Promise<Map<string, BasicEvent[]>> {
    if (since !== undefined && !this.ctx.streams.accountData.hasEntityChanged(userId, since)) return new Map();
    let q = this.ctx.storage.db.selectFrom('account_data').select(['room_id', 'type', 'content'])
      .where('user_id', '=', userId).where('room_id', '!=', '').where('stream_pos', '<=', to);
    if (since !== undefined) q = q.where('stream_pos', '>', since);
    const out = new Map<string, BasicEvent[]>();
    for (const r of await q.orderBy('stream_pos').execute()) {
      let list = out.get(r.room_id);
      if (!list) out.set(r.room_id, (list = []));
      list.push({ type: r.type, content: JSON.parse(r.content) });
    }
    return out;
  }

  async globalAccountData(userId: string, m: EventMatcher, since: number | undefined, to: number): Promise<BasicEvent[]> {
    if (since !== undefined && !this.ctx.streams.accountData.hasEntityChanged(userId, since)) return [];
    let q = this.ctx.storage.db.selectFrom('account_data').select(['type', 'content'])
      .where('user_id', '=', userId).where('room_id', '=', '').where('stream_pos', '<=', to);
    if (since !== undefined) q = q.where('stream_pos', '>', since);
    const rows = await q.orderBy('stream_pos').execute();
    const evs = rows.map((r) => ({ type: r.type, content: JSON.parse(r.content) as Record<string, unknown> }));
    // Users who never changed their push rules still get the defaults on an initial sync.
    if (since === undefined && !evs.some((e) => e.type === 'm.push_rules')) {
      evs.unshift({ type: 'm.push_rules', content: (await this.ctx.push.rulesContent(userId)) as unknown as Record<string, unknown> });
    }
    return applyLimit(evs.filter((e) => m.matches(e)), m.limit);
  }

  /**
   * Presence of the user and of everyone sharing a room with them: changes
   * in (since, to], or all not offline. Members of `newRooms` (joined since
   * `since`) are new to the client: their current presence is included.
   */
  async presenceEvents(userId: string, m: EventMatcher, since: number | undefined, to: number, newRooms: string[] = []): Promise<BasicEvent[]> {
    if (!this.ctx.config.presence_enabled || !m.allowsType('m.presence')) return [];
    const db = this.ctx.storage.db;
    // Incremental: only users whose presence changed after `since` can have a
    // row in range. Skip the query when the change cache knows there are none,
    // and narrow it to them when it knows there are few.
    let changedUsers: string[] | undefined;
    if (since !== undefined && to <= this.ctx.notifier.position) {
      changedUsers = this.ctx.streams.presence.allChangedSince(since, PRESENCE_NARROW_MAX);
    }
    const query = () => {
      let q = db.selectFrom('presence as p')
        .leftJoin('users as u', 'u.user_id', 'p.user_id')
        .select(['p.user_id', 'p.state', 'p.status_msg', 'p.last_active_ts', 'u.displayname', 'u.avatar_url'])
        .where('p.stream_pos', '<=', to)
        .where((eb) => eb.or([
          eb('p.user_id', '=', userId),
          eb.exists(eb.selectFrom('room_members as b')
            .innerJoin('room_members as a', 'a.room_id', 'b.room_id')
            .select(sql<number>`1`.as('one'))
            .whereRef('b.user_id', '=', 'p.user_id').where('b.membership', '=', 'join')
            .where('a.user_id', '=', userId).where('a.membership', '=', 'join')),
        ]));
      q = since !== undefined ? q.where('p.stream_pos', '>', since) : q.where('p.state', '!=', 'offline');
      if (changedUsers?.length) q = q.where('p.user_id', 'in', changedUsers);
      return q.orderBy('p.stream_pos', 'desc').limit(5000).execute();
    };
    const rows = changedUsers?.length === 0 ? [] : (await query()).reverse();
    if (since !== undefined && newRooms.length) {
      const seen = new Set(rows.map((r) => r.user_id));
      for (const part of chunks(newRooms)) {
        const more = await db.selectFrom('presence as p')
          .innerJoin('room_members as b', 'b.user_id', 'p.user_id')
          .leftJoin('users as u', 'u.user_id', 'p.user_id')
          .select(['p.user_id', 'p.state', 'p.status_msg', 'p.last_active_ts', 'u.displayname', 'u.avatar_url'])
          .where('b.room_id', 'in', part).where('b.membership', '=', 'join')
          .where('p.stream_pos', '<=', to).where('p.state', '!=', 'offline')
          .limit(5000).execute();
        for (const r of more) {
          if (seen.has(r.user_id)) continue;
          seen.add(r.user_id);
          rows.push(r);
        }
      }
    }
    const now = Date.now();
    const evs: BasicEvent[] = [];
    for (const r of rows) {
      if (!m.allowsSender(r.user_id)) continue;
      const content = presenceContent(r, now, { displayname: r.displayname ?? null, avatar_url: r.avatar_url ?? null });
      evs.push({ type: 'm.presence', sender: r.user_id, content: content as unknown as Record<string, unknown> });
    }
    return applyLimit(evs, m.limit);
  }

  /** m.heroes and member counts for each room. */
  async summaries(userId: string, roomIds: string[]): Promise<Map<string, JoinedRoomSync['summary']>> {
    const out = new Map<string, JoinedRoomSync['summary']>();
    if (!roomIds.length) return out;
    const db = this.ctx.storage.db;
    // Everything here is read from the room's current state and membership,
    // so a cached entry holds until the room's state changes.
    const roomState = this.ctx.streams.roomState;
    const entries = new Map<string, SummaryEntry>();
    const missing: string[] = [];
    for (const id of roomIds) {
      const hit = this.summaryCache.get(id);
      if (hit && !roomState.hasEntityChanged(id, hit.asOf)) entries.set(id, hit);
      else missing.push(id);
    }
    if (missing.length) {
      const asOf = this.ctx.notifier.position;
      const fresh = new Map<string, SummaryEntry>();
      for (const id of missing) fresh.set(id, { asOf, joined: 0, invited: 0, group: undefined });
      for (const part of chunks(missing)) {
        const counts = await db.selectFrom('room_members')
          .select(['room_id', 'membership', (eb) => eb.fn.countAll<number>().as('n')])
          .where('room_id', 'in', part).where('membership', 'in', ['join', 'invite'])
          .groupBy(['room_id', 'membership']).execute();
        for (const c of counts) {
          const e = fresh.get(c.room_id)!;
          if (c.membership === 'join') e.joined = Number(c.n);
          else e.invited = Number(c.n);
        }
        const rooms = await db.selectFrom('rooms').select(['room_id', 'current_state_group']).where('room_id', 'in', part).execute();
        for (const r of rooms) if (r.current_state_group != null) fresh.get(r.room_id)!.group = Number(r.current_state_group);
      }
      for (const [id, e] of fresh) {
        this.summaryCache.set(id, e);
        entries.set(id, e);
      }
    }
    for (const id of roomIds) {
      const e = entries.get(id)!;
      out.set(id, { 'm.joined_member_count': e.joined, 'm.invited_member_count': e.invited });
    }
    // Heroes only for rooms without a name or canonical alias.
    await mapLimit(roomIds, ROOM_CONCURRENCY, async (roomId) => {
      const e = entries.get(roomId)!;
      if (e.named === undefined) e.named = await this.isNamed(e.group);
      if (e.named) return;
      const candidates = async (memberships: string[]) => (await db.selectFrom('room_members').select('user_id')
        .where('room_id', '=', roomId).where('membership', 'in', memberships)
        .orderBy('stream_pos').limit(HERO_COUNT + 1).execute()).map((r) => r.user_id);
      e.active ??= await candidates(['join', 'invite']);
      let heroes = e.active.filter((u) => u !== userId).slice(0, HERO_COUNT);
      if (!heroes.length) {
        e.departed ??= await candidates(['leave', 'ban']);
        heroes = e.departed.filter((u) => u !== userId).slice(0, HERO_COUNT);
      }
      out.get(roomId)!['m.heroes'] = heroes;
    });
    return out;
  }

  /** Whether the state group gives the room a name or a canonical alias. */
  private async isNamed(group: number | undefined): Promise<boolean> {
    const ids = group === undefined ? new Map<string, string>() : await this.ctx.rooms.state.groupIds(group);
    const nameId = ids.get(stateKeyOf('m.room.name', ''));
    const aliasId = ids.get(stateKeyOf('m.room.canonical_alias', ''));
    if (!nameId && !aliasId) return false;
    const evs = await this.ctx.rooms.events.getMany([nameId, aliasId].filter((x): x is string => !!x));
    return evs.some((e) => (e.pdu.type === 'm.room.name' && typeof e.pdu.content.name === 'string' && e.pdu.content.name !== '')
      || (e.pdu.type === 'm.room.canonical_alias' && typeof e.pdu.content.alias === 'string' && e.pdu.content.alias !== ''));
  }

  /**
   * Notification and highlight counts from the push rules (ctx.push): events
   * that notified the user after their read receipt (or own latest event)
   * and since the start of their current stay in the room.
   */
  private async unreadCounts(userId: string, plans: RoomPlan[], to: number): Promise<Map<string, { highlight_count: number; notification_count: number }>> {
    if (!plans.length) return new Map();
    const rooms = plans.map((p) => {
      const mem = p.access.memberships;
      let joinedAt = 0;
      for (let i = mem.length - 1; i >= 0; i--) {
        if (mem[i].membership !== 'join') break;
        joinedAt = mem[i].pos;
      }
      return { roomId: p.roomId, after: joinedAt };
    });
    return this.ctx.push.unreadCountsForRooms(userId, rooms, to);
  }

  /** invite_state / knock_state: the room's stripped state plus the member event itself. */
  async strippedState(roomId: string, memberEventId: string, membership: string): Promise<StrippedEvent[]> {
    const member = await this.ctx.rooms.events.get(memberEventId);
    const out: StrippedEvent[] = [];
    const carried = member?.pdu.unsigned?.[membership === 'knock' ? 'knock_room_state' : 'invite_room_state'];
    if (Array.isArray(carried) && carried.length) {
      for (const e of carried as Array<Record<string, unknown>>) {
        if (!e || typeof e.type !== 'string' || typeof e.sender !== 'string') continue;
        out.push({ type: e.type, state_key: typeof e.state_key === 'string' ? e.state_key : '', sender: e.sender, content: (e.content as Record<string, unknown>) ?? {} });
      }
    } else {
      const ids = await this.ctx.rooms.state.currentIds(roomId);
      const wanted = STRIPPED_TYPES.map((t) => ids.get(stateKeyOf(t, ''))).filter((x): x is string => !!x);
      // The inviter's member event helps clients show who invited them.
      if (member && member.pdu.sender !== member.pdu.state_key) {
        const inviter = ids.get(stateKeyOf('m.room.member', member.pdu.sender));
        if (inviter) wanted.push(inviter);
      }
      for (const ev of await this.ctx.rooms.events.getMany(wanted)) out.push(toStrippedState(ev));
    }
    if (member) {
      const self = toStrippedState(member);
      const i = out.findIndex((e) => e.type === self.type && e.state_key === self.state_key);
      if (i >= 0) out.splice(i, 1);
      out.push(self);
    }
    return out;
  }
}
