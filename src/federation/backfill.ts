/**
 * Backfill (server-server API, "Backfilling and retrieving missing
 * events"): a room joined through another server starts with its state and
 * our join event, not its earlier timeline. When a client paginates past
 * the oldest event we hold and that event's prev_events are unknown here,
 * /messages asks a resident server for the history before it.
 *
 * Fetched events pass the PDU checks (format, signatures, hashes) and the
 * authorisation rules against their own auth events (missing auth events
 * are fetched with /event_auth; an event whose auth chain cannot be had is
 * skipped). They are stored by RemoteEvents.storeBackfilled at negative
 * stream positions, so they sort before the whole timeline and never show
 * up as new in /sync, and they leave the room's current state and forward
 * extremities alone.
 */
import { AuthError, checkEventAuth, type StateMap } from '../core/auth-rules.js';
import { authEventIds, prevEventIds, type PDU } from '../core/events.js';
import { serverNameOf } from '../core/identifiers.js';
import { serverAclAllows } from '../core/server-acl.js';
import { getRoomVersion, type RoomVersion } from '../core/room-versions.js';
import { Lru } from '../server/lru.js';
import type { Context } from '../server/services.js';
import { EventStatus, type BackfilledEvent, type IncomingEvent } from '../rooms/remote-events.js';
import { stateKeyOf } from '../rooms/state-store.js';
import { historyVisibilityOf, type HistoryVisibility } from '../rooms/visibility.js';
import { checkIncomingPdu } from './pdu-checks.js';

/** Events asked for per /backfill request. */
export const BACKFILL_LIMIT = 50;
/** How long one /messages request waits for a backfill (it goes on in the background). */
export const BACKFILL_WAIT_MS = 10_000;
/** After a backfill that brought nothing, how long before the room is tried again. */
const RETRY_AFTER_MS = 60_000;
/** Oldest timeline events whose prev_events are looked at for the backwards extremities. */
const OLDEST_SCANNED = 20;
/** Servers asked in turn before giving up. */
const MAX_SERVERS = 3;
const REQUEST_TIMEOUT_MS = 10_000;

export class Backfiller {
  /** One backfill per room at a time: concurrent paginations share it. */
  private running = new Map<string, Promise<number>>();
  /** Rooms where the last backfill brought nothing, until when not to try again. */
  private quietUntil = new Lru<string, number>(10_000);

  constructor(private readonly ctx: Context) {}

  /**
   * Backfill `roomId` once if its history may go on beyond what we hold.
   * Resolves with the number of events stored (0 when there was nothing to
   * do, it failed, or it took longer than `waitMs`; a slow one still
   * completes, for the next pagination).
   */
  async maybeBackfill(roomId: string, waitMs = BACKFILL_WAIT_MS): Promise<number> {
    let run = this.running.get(roomId);
    if (!run) {
      const quiet = this.quietUntil.get(roomId);
      if (quiet !== undefined && quiet > Date.now()) return 0;
      run = this.backfill(roomId)
        .catch((err: unknown) => {
          this.ctx.log.warn({ err, roomId }, 'backfill failed');
          return 0;
        })
        .then((stored) => {
          if (stored === 0) this.quietUntil.set(roomId, Date.now() + RETRY_AFTER_MS);
          return stored;
        })
        .finally(() => this.running.delete(roomId));
      this.running.set(roomId, run);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<number>((resolve) => {
      timer = setTimeout(() => resolve(0), waitMs);
      timer.unref();
    });
    try {
      return await Promise.race([run, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The prev events of the room's oldest timeline events that are not in
   * the timeline: where backfill continues from. Empty once the create event
   * heads the timeline (the whole history is here).
   */
  async backwardExtremities(roomId: string): Promise<string[]> {
    const db = this.ctx.storage.db;
    const oldest = await db.selectFrom('events').select(['type', 'state_key', 'json'])
      .where('room_id', '=', roomId).where('rejected', '=', EventStatus.ACCEPTED)
      .orderBy('stream_pos', 'asc').limit(OLDEST_SCANNED).execute();
    if (oldest.length === 0 || (oldest[0].type === 'm.room.create' && oldest[0].state_key === '')) return [];
    const prevs = new Set<string>();
    for (const row of oldest) for (const id of prevEventIds(JSON.parse(row.json) as PDU)) prevs.add(id);
    const statuses = await this.statuses([...prevs]);
    // Outliers (state from the join, say) still need their place in the timeline.
    return [...prevs].filter((id) => {
      const s = statuses.get(id);
      return s === undefined || s === EventStatus.OUTLIER;
    });
  }

  private async backfill(roomId: string): Promise<number> {
    const room = await this.ctx.rooms.getRoom(roomId);
    const version = room ? getRoomVersion(room.room_version) : undefined;
    if (!room || !version) return 0;
    const from = await this.backwardExtremities(roomId);
    if (from.length === 0) return 0;
    for (const server of await this.candidateServers(roomId, room.creator)) {
      const raws = await this.ctx.federation.client.request<{ pdus?: unknown }>(server, {
        method: 'GET',
        path: `/_matrix/federation/v1/backfill/${encodeURIComponent(roomId)}`,
        query: { v: from, limit: String(BACKFILL_LIMIT) },
        timeoutMs: REQUEST_TIMEOUT_MS,
      }).then((r) => (Array.isArray(r.pdus) ? r.pdus.slice(0, BACKFILL_LIMIT * 2) : []), (err: unknown) => {
        this.ctx.log.info({ err, server, roomId }, 'backfill request failed');
        return [];
      });
      if (raws.length === 0) continue;
      const stored = await this.storeBatch(server, roomId, version, raws);
      this.ctx.log.debug({ server, roomId, received: raws.length, stored }, 'backfilled');
      if (stored > 0) return stored;
    }
    return 0;
  }

  /** Servers with joined members, other than us; the room creator's first. */
  private async candidateServers(roomId: string, creator: string): Promise<string[]> {
    const us = this.ctx.config.server_name;
    const creatorServer = serverNameOf(creator);
    // Not room-routes' serversInRoom: the read path (timeline.ts) should not pull in the federation routes.
    const rows = await this.ctx.storage.db.selectFrom('room_members').select('user_id')
      .where('room_id', '=', roomId).where('membership', '=', 'join').execute();
    const acl = (await this.ctx.rooms.state.stateEvent(roomId, 'm.room.server_acl'))?.pdu.content;
    // History is never taken from a server the room's ACL shuts out.
    const servers = [...new Set(rows.map((r) => serverNameOf(r.user_id)))]
      .filter((s): s is string => !!s && s !== us && serverAclAllows(acl, s)).sort();
    if (creatorServer && servers.includes(creatorServer)) servers.unshift(...servers.splice(servers.indexOf(creatorServer), 1));
    return servers.slice(0, MAX_SERVERS);
  }

  /** Check, authorise and store one /backfill answer. Returns how many events were stored. */
  private async storeBatch(server: string, roomId: string, version: RoomVersion, raws: unknown[]): Promise<number> {
    const events = new Map<string, IncomingEvent>();
    for (const raw of raws) {
      const checked = await this.check(raw, version);
      if (!checked) continue;
      if (roomOf(checked) !== roomId) continue;
      events.set(checked.eventId, checked);
    }
    const statuses = await this.statuses([...events.keys()]);
    const fresh = [...events.values()].filter((e) => {
      const s = statuses.get(e.eventId);
      return s === undefined || s === EventStatus.OUTLIER;
    });
    if (fresh.length === 0) return 0;
    // Oldest first, so auth events and prev events come before the events that need them.
    fresh.sort((a, b) => a.pdu.depth - b.pdu.depth || a.pdu.origin_server_ts - b.pdu.origin_server_ts || (a.eventId < b.eventId ? -1 : 1));

    await this.fetchMissingAuth(server, roomId, version, fresh, events);
    const decided = new Map<string, BackfilledEvent>();
    const out: BackfilledEvent[] = [];
    for (const ev of fresh) {
      const status = await this.authorise(roomId, version, ev, decided);
      if (status === undefined) continue; // its auth chain could not be had
      const item: BackfilledEvent = { ev, status };
      if (status === EventStatus.ACCEPTED) item.stateAfter = await this.stateAfter(ev, decided);
      decided.set(ev.eventId, item);
      out.push(item);
    }
    return this.ctx.rooms.remote.storeBackfilled(roomId, out);
  }

  private async check(raw: unknown, version: RoomVersion): Promise<IncomingEvent | undefined> {
    const checked = await checkIncomingPdu(raw, version, (s, k, t) => this.ctx.federation.keys.getVerifyKey(s, k, t));
    if (checked.ok) return { eventId: checked.eventId, pdu: checked.pdu };
    this.ctx.log.info({ eventId: checked.eventId, reason: checked.reason }, 'dropped a backfilled event');
    return undefined;
  }

  /**
   * Auth events neither stored nor in the batch: fetch the auth chains of
   * the events that need them (/event_auth) and keep the ones that pass
   * their own auth checks as outliers.
   */
  private async fetchMissingAuth(server: string, roomId: string, version: RoomVersion, batch: IncomingEvent[], inBatch: Map<string, IncomingEvent>): Promise<void> {
    const needed = [...new Set(batch.flatMap((e) => authEventIds(e.pdu)))].filter((id) => !inBatch.has(id));
    const unknown = new Set(await this.ctx.rooms.remote.unknownIds(needed));
    if (unknown.size === 0) return;
    const chain = new Map<string, IncomingEvent>();
    for (const ev of batch) {
      if (!authEventIds(ev.pdu).some((id) => unknown.has(id) && !chain.has(id))) continue;
      const res = await this.ctx.federation.client.request<{ auth_chain?: unknown }>(server, {
        method: 'GET',
        path: `/_matrix/federation/v1/event_auth/${encodeURIComponent(roomId)}/${encodeURIComponent(ev.eventId)}`,
        timeoutMs: REQUEST_TIMEOUT_MS,
      }).catch(() => ({ auth_chain: [] }));
      for (const raw of Array.isArray(res.auth_chain) ? res.auth_chain : []) {
        const checked = await this.check(raw, version);
        if (checked && roomOf(checked) === roomId) chain.set(checked.eventId, checked);
      }
    }
    const ordered = [...chain.values()].sort((a, b) => a.pdu.depth - b.pdu.depth);
    const ok = new Map<string, BackfilledEvent>();
    const outliers: IncomingEvent[] = [];
    for (const ev of ordered) {
      if ((await this.authorise(roomId, version, ev, ok, chain)) !== EventStatus.ACCEPTED) continue;
      ok.set(ev.eventId, { ev, status: EventStatus.ACCEPTED });
      outliers.push(ev);
    }
    await this.ctx.rooms.remote.storeOutliers(roomId, outliers);
  }

  /**
   * ACCEPTED or REJECTED by the authorisation rules against the event's own
   * auth events (from `decided`, else stored ones); undefined when some are
   * missing. `extra`: fetched events allowed as auth events while checking
   * an auth chain (they must be in `decided` too by then).
   */
  private async authorise(roomId: string, version: RoomVersion, ev: IncomingEvent, decided: Map<string, BackfilledEvent>, extra?: Map<string, IncomingEvent>): Promise<number | undefined> {
    const ids = authEventIds(ev.pdu);
    const fromStore = ids.filter((id) => !decided.has(id) && !extra?.has(id));
    const stored = new Map((await this.ctx.rooms.events.getMany(fromStore)).map((e) => [e.pdu.event_id, e.pdu as PDU]));
    const statuses = await this.statuses(fromStore);
    const authState: StateMap = new Map();
    for (const id of ids) {
      const d = decided.get(id);
      let pdu: PDU | undefined;
      if (d) {
        if (d.status !== EventStatus.ACCEPTED) return EventStatus.REJECTED;
        pdu = d.ev.pdu;
      } else if (extra?.has(id)) {
        return undefined; // an auth event of the chain that did not pass (yet)
      } else {
        pdu = stored.get(id);
        if (!pdu) return undefined;
        if (statuses.get(id) === EventStatus.REJECTED) return EventStatus.REJECTED;
      }
      authState.set(stateKeyOf(pdu.type, pdu.state_key ?? ''), pdu);
    }
    const createKey = stateKeyOf('m.room.create', '');
    if (version.roomIdIsCreateEventHash && !authState.has(createKey) && ev.pdu.type !== 'm.room.create') {
      const createId = `$${roomId.slice(1)}`;
      const create = decided.get(createId)?.ev.pdu ?? (await this.ctx.rooms.events.get(createId))?.pdu;
      if (!create) return undefined;
      authState.set(createKey, create);
    }
    try {
      checkEventAuth(ev.pdu, authState, version);
      return EventStatus.ACCEPTED;
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      this.ctx.log.info({ eventId: ev.eventId, roomId, reason: err.message }, 'rejected a backfilled event');
      return EventStatus.REJECTED;
    }
  }

  /**
   * State after `ev`: the state after its prev events (which must all be
   * known, from this batch or the stored timeline, and agree) plus `ev`.
   * Undefined when that is not known; resolving disagreeing branches would
   * need the batch stored first, and is left to a later fetch of the state.
   */
  private async stateAfter(ev: IncomingEvent, decided: Map<string, BackfilledEvent>): Promise<Map<string, string> | undefined> {
    const prevs = prevEventIds(ev.pdu);
    let before: Map<string, string> | undefined;
    if (prevs.length === 0) before = new Map();
    for (const id of prevs) {
      let state = decided.get(id)?.stateAfter;
      if (!state && !decided.has(id)) {
        const stored = await this.ctx.rooms.events.get(id);
        const status = stored ? (await this.statuses([id])).get(id) : undefined;
        if (stored && status === EventStatus.ACCEPTED && stored.stateGroup != null) state = await this.ctx.rooms.state.groupIds(stored.stateGroup);
      }
      if (!state || (before && !sameState(before, state))) return undefined;
      before = state;
    }
    if (!before) return undefined;
    const after = new Map(before);
    if (typeof ev.pdu.state_key === 'string') after.set(stateKeyOf(ev.pdu.type, ev.pdu.state_key), ev.eventId);
    return after;
  }

  private async statuses(ids: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.ctx.storage.db.selectFrom('events').select(['event_id', 'rejected']).where('event_id', 'in', ids.slice(i, i + 500)).execute();
      for (const r of rows) out.set(r.event_id, Number(r.rejected));
    }
    return out;
  }
}

/** The room an incoming event belongs to; a v12 create event names none (its id is the room's). */
function roomOf(ev: IncomingEvent): string | undefined {
  if (typeof ev.pdu.room_id === 'string') return ev.pdu.room_id;
  return ev.pdu.type === 'm.room.create' ? `!${ev.eventId.slice(1)}` : undefined;
}

function sameState(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/**
 * The history visibility in force below the oldest history visibility
 * event of the room's timeline (HistoryVisibilityFacts.baseline), when the
 * room's history is incomplete here; undefined (the spec's default,
 * `shared`) once the create event heads the timeline. It comes from the
 * oldest state we know: the state before that oldest visibility event, or,
 * without one, the state of the oldest event whose state is known (our join,
 * say). When neither is known it is `joined`: hide what may not be shown
 * until more history arrives.
 */
export async function historyBaseline(ctx: Context, roomId: string): Promise<HistoryVisibility | undefined> {
  const db = ctx.storage.db;
  const oldest = await db.selectFrom('events').select(['type', 'state_key'])
    .where('room_id', '=', roomId).where('rejected', '=', EventStatus.ACCEPTED)
    .orderBy('stream_pos', 'asc').limit(1).executeTakeFirst();
  if (!oldest || (oldest.type === 'm.room.create' && oldest.state_key === '')) return undefined;
  const firstHv = await db.selectFrom('events').select(['stream_pos', 'json'])
    .where('room_id', '=', roomId).where('type', '=', 'm.room.history_visibility').where('state_key', '=', '')
    .where('rejected', '=', EventStatus.ACCEPTED).orderBy('stream_pos', 'asc').limit(1).executeTakeFirst();
  const firstKnown = await db.selectFrom('events').select(['stream_pos', 'state_group'])
    .where('room_id', '=', roomId).where('rejected', '=', EventStatus.ACCEPTED).where('state_group', 'is not', null)
    .orderBy('stream_pos', 'asc').limit(1).executeTakeFirst();
  const hvIn = async (group: number): Promise<HistoryVisibility> => {
    const id = (await ctx.rooms.state.groupIds(group)).get(stateKeyOf('m.room.history_visibility', ''));
    const ev = id ? await ctx.rooms.events.get(id) : undefined;
    return historyVisibilityOf(ev?.pdu.content);
  };
  if (firstKnown?.state_group != null && (!firstHv || Number(firstKnown.stream_pos) < Number(firstHv.stream_pos))) {
    return hvIn(Number(firstKnown.state_group));
  }
  if (firstHv) {
    for (const prev of await ctx.rooms.events.getMany(prevEventIds(JSON.parse(firstHv.json) as PDU))) {
      if (prev.stateGroup != null && prev.streamPos < Number(firstHv.stream_pos)) return hvIn(prev.stateGroup);
    }
  }
  return 'joined';
}

const backfillers = new WeakMap<Context, Backfiller>();

/** The backfiller of a server (one per context, so paginations share running backfills). */
export function backfillerOf(ctx: Context): Backfiller {
  let b = backfillers.get(ctx);
  if (!b) backfillers.set(ctx, (b = new Backfiller(ctx)));
  return b;
}
