/**
 * Where events from other servers enter a room (the remote counterpart of
 * send.ts). Each event has already passed the format, signature and hash
 * checks (federation/pdu-checks.ts); here come the authorisation steps of
 * the server-server API ("Checks performed on receipt of a PDU", 4-6) and
 * persistence into the room DAG:
 *
 * - the state before the event is the state after its prev_events, resolved
 *   when there are several;
 * - rejected events are kept (so they are never fetched again) but never
 *   shown or used; soft-failed events are kept out of the timeline and the
 *   forward extremities;
 * - the room's current state becomes the resolution of the old current
 *   state and the state after the event whenever the event does not extend
 *   every forward extremity.
 *
 * Events known only as part of other events' auth chains or of a room's
 * state (received with a join, for instance) are stored as outliers.
 */
import { authEventsNeeded, checkEventAuth, AuthError, type StateMap } from '../core/auth-rules.js';
import { authEventIds, prevEventIds, redactsOf, type PDU } from '../core/events.js';
import { serverNameOf } from '../core/identifiers.js';
import { effectivePowerLevels, requiredLevelForAction, userPowerLevel } from '../core/power-levels.js';
import { redactEvent } from '../core/redaction.js';
import type { RoomVersion } from '../core/room-versions.js';
import type { Context } from '../server/services.js';
import type { KeyedMutex } from '../server/mutex.js';
import type { Tx } from '../storage/db.js';
import type { EventStore } from './event-store.js';
import { stateKeyOf, type StateStore } from './state-store.js';
import { resolveStateIds } from './state-resolution.js';
import { EventStatus } from './event-status.js';
import type { StoredEvent } from './types.js';

export { EventStatus };

export type ReceiveOutcome =
  | { status: 'accepted'; event: StoredEvent }
  | { status: 'duplicate' }
  | { status: 'rejected' | 'soft-failed'; reason: string };

/** Thrown when an event's prev_events or auth_events are not stored yet: the caller must fetch them first. */
export class MissingEventsError extends Error {
  constructor(readonly missing: string[]) {
    super(`missing events: ${missing.join(', ')}`);
  }
}

interface RoomHeadRow {
  room_id: string;
  room_version: string;
  current_state_group: number | null;
  forward_extremities: string;
  max_depth: number;
}

/** A PDU as received plus the id it was checked under. */
export interface IncomingEvent {
  eventId: string;
  pdu: PDU;
  /** Our own unsigned data kept with the stored copy (replaces_state, prev_content); the sender's is never kept. */
  localUnsigned?: Record<string, unknown>;
}

/** One event for storeBackfilled. */
export interface BackfilledEvent {
  ev: IncomingEvent;
  /** ACCEPTED or REJECTED. */
  status: number;
  /** State after the event (stateKey -> event id), when its prev events' state is known. */
  stateAfter?: Map<string, string>;
}

function storedForm(ev: IncomingEvent, roomId: string): PDU & { event_id: string; room_id: string } {
  const { unsigned: _u, ...rest } = ev.pdu;
  return { ...rest, event_id: ev.eventId, room_id: roomId, ...(ev.localUnsigned ? { unsigned: ev.localUnsigned } : {}) };
}

/** Stored JSON keeps the wire form: a v12 create event has no room_id. */
function jsonOf(stored: PDU & { event_id: string; room_id: string }, wireHadRoomId: boolean): string {
  return JSON.stringify(wireHadRoomId ? stored : { ...stored, room_id: undefined });
}

/** The events row of an incoming event. */
function eventRow(ev: IncomingEvent, roomId: string, pos: number, group: number | null, status: number) {
  const pdu = ev.pdu;
  return {
    event_id: ev.eventId, room_id: roomId, type: pdu.type, state_key: typeof pdu.state_key === 'string' ? pdu.state_key : null,
    sender: pdu.sender, origin_server_ts: pdu.origin_server_ts, depth: pdu.depth, stream_pos: pos,
    json: jsonOf(storedForm(ev, roomId), pdu.room_id !== undefined), state_group: group, redacted_by: null, rejected: status,
    txn_device_id: null, txn_id: null, txn_scope: null,
  };
}

/** Outliers stored per write transaction (a join of a big room brings tens of thousands). */
const OUTLIERS_PER_TRANSACTION = 500;
/** Rows per multi-row INSERT: 14 columns each keeps a statement well under SQLite's parameter limit. */
const EVENT_ROWS_PER_INSERT = 200;
const MEMBER_ROWS_PER_INSERT = 500;

export class RemoteEvents {
  constructor(
    private readonly ctx: Context,
    private readonly events: EventStore,
    private readonly state: StateStore,
    private readonly roomLocks: KeyedMutex,
  ) {}

  private get db() {
    return this.ctx.storage.db;
  }

  private async head(roomId: string): Promise<RoomHeadRow | undefined> {
    return this.db.selectFrom('rooms')
      .select(['room_id', 'room_version', 'current_state_group', 'forward_extremities', 'max_depth'])
      .where('room_id', '=', roomId).executeTakeFirst();
  }

  /** Which of `ids` are not stored at all (in any status). */
  async unknownIds(ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const known = await this.events.getMany(ids);
    const have = new Set(known.map((e) => e.pdu.event_id));
    return ids.filter((id) => !have.has(id));
  }

  /**
   * Store events as outliers (no timeline, no state group), skipping ones
   * already stored. Used for auth chains and for the state a join brings.
   * The caller has checked signatures and hashes.
   */
  async storeOutliers(roomId: string, incoming: IncomingEvent[]): Promise<void> {
    const fresh: IncomingEvent[] = [];
    const unknown = new Set(await this.unknownIds(incoming.map((e) => e.eventId)));
    const seen = new Set<string>();
    for (const ev of incoming) if (unknown.has(ev.eventId) && !seen.has(ev.eventId)) { seen.add(ev.eventId); fresh.push(ev); }
    // A big room's join brings tens of thousands: multi-row inserts, and several short transactions so the
    // write lock (every writer of this server waits on it) is never held for long.
    for (let i = 0; i < fresh.length; i += OUTLIERS_PER_TRANSACTION) {
      // SQLite calls are synchronous: without a turn of the event loop between transactions, storing a
      // big room's state would block every other request until the last one.
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const chunk = fresh.slice(i, i + OUTLIERS_PER_TRANSACTION);
      await this.ctx.write(async (tx, alloc) => {
        const rows = [];
        // Positions are unique per event even for outliers, which no stream ever shows.
        for (const ev of chunk) rows.push(eventRow(ev, roomId, await alloc(), null, EventStatus.OUTLIER));
        for (let j = 0; j < rows.length; j += EVENT_ROWS_PER_INSERT) {
          await tx.insertInto('events').values(rows.slice(j, j + EVENT_ROWS_PER_INSERT)).onConflict((oc) => oc.column('event_id').doNothing()).execute();
        }
      });
    }
  }

  /**
   * Store an event we could not place in the DAG (its own prev events are
   * unknown) as an outlier that knows the state after it, so later events
   * can build on it. `stateBeforeIds` are the ids of the state at the event
   * as the origin reported them (/state_ids); unknown ones are skipped.
   */
  async storeOutlierWithState(roomId: string, ev: IncomingEvent, stateBeforeIds: string[]): Promise<void> {
    const known = await this.events.getMany(stateBeforeIds);
    const after = new Map<string, string>();
    for (const e of known) after.set(stateKeyOf(e.pdu.type, e.pdu.state_key ?? ''), e.pdu.event_id);
    if (typeof ev.pdu.state_key === 'string') after.set(stateKeyOf(ev.pdu.type, ev.pdu.state_key), ev.eventId);
    await this.roomLocks.run(roomId, () => this.ctx.write(async (tx, alloc) => {
      const pos = await alloc();
      const nid = await this.insertEvent(tx, roomId, ev, pos, null, EventStatus.OUTLIER);
      const group = await this.writeStateGroup(tx, roomId, null, after);
      await tx.updateTable('events').set({ state_group: group }).where('nid', '=', nid).execute();
    }));
    this.events.invalidate(ev.eventId);
  }

  /**
   * Store history fetched with /backfill (federation/backfill.ts), given
   * oldest first with the status and, when known, the state after each
   * event. Each gets a NEGATIVE stream position, allocated downwards below
   * every position in use, newest event highest: so the events sort before
   * the room's existing timeline and no incremental /sync (which reads
   * positions above its token) ever reports them as new. The room's current
   * state, forward extremities and memberships are not touched, and no
   * stream or waiter is notified. Events already in the timeline (any
   * status but OUTLIER) are skipped; outlier copies move into the timeline.
   * Returns how many events were stored.
   */
  async storeBackfilled(roomId: string, items: BackfilledEvent[]): Promise<number> {
    return this.roomLocks.run(roomId, async () => {
      const statuses = await this.statuses(items.map((i) => i.ev.eventId));
      const seen = new Set<string>();
      const fresh = items.filter((i) => {
        const s = statuses.get(i.ev.eventId);
        if (seen.has(i.ev.eventId) || (s !== undefined && s !== EventStatus.OUTLIER)) return false;
        seen.add(i.ev.eventId);
        return true;
      });
      if (fresh.length === 0) return 0;
      const groups = new Map<number, Map<string, string>>();
      await this.ctx.write(async (tx, _alloc, onCommit) => {
        const low = await tx.selectFrom('events').select((eb) => eb.fn.min('stream_pos').as('low')).executeTakeFirst();
        // Oldest first here, so the oldest gets the lowest position and each state group is a small delta on the previous.
        const top = Math.min(Number(low?.low ?? 0), 0) - 1;
        let base: number | null = null;
        for (const [i, item] of fresh.entries()) {
          const pos = top - (fresh.length - 1 - i);
          const nid = await this.insertEvent(tx, roomId, item.ev, pos, null, item.status);
          let group: number | null = null;
          if (item.stateAfter && item.status === EventStatus.ACCEPTED) {
            group = await this.writeStateGroup(tx, roomId, base, item.stateAfter);
            groups.set(group, item.stateAfter);
            base = group;
          }
          await tx.updateTable('events').set({ rejected: item.status, stream_pos: pos, state_group: group }).where('nid', '=', nid).execute();
          const rel = item.ev.pdu.content['m.relates_to'] as { rel_type?: unknown; event_id?: unknown } | undefined;
          if (item.status === EventStatus.ACCEPTED && rel && typeof rel.rel_type === 'string' && typeof rel.event_id === 'string') {
            await tx.insertInto('event_relations').values({ event_id: item.ev.eventId, room_id: roomId, relates_to: rel.event_id, rel_type: rel.rel_type })
              .onConflict((oc) => oc.column('event_id').doNothing()).execute();
          }
        }
        onCommit(() => {
          for (const item of fresh) this.events.invalidate(item.ev.eventId);
          for (const [g, state] of groups) this.state.primeGroup(g, state);
        });
      });
      return fresh.length;
    });
  }

  /**
   * We joined a room through another server (send_join): create the room
   * locally from the state before our join event, the auth chain, and the
   * join itself. The join's prev events stay unknown until backfill.
   */
  async bootstrapJoin(roomId: string, version: RoomVersion, state: IncomingEvent[], authChain: IncomingEvent[], join: IncomingEvent): Promise<StoredEvent> {
    const before = new Map<string, string>();
    for (const e of state) if (typeof e.pdu.state_key === 'string') before.set(stateKeyOf(e.pdu.type, e.pdu.state_key), e.eventId);
    const after = new Map(before);
    after.set(stateKeyOf('m.room.member', join.pdu.state_key ?? ''), join.eventId);
    const create = state.find((e) => e.pdu.type === 'm.room.create' && e.pdu.state_key === '');
    if (!create) throw new Error('the room state has no create event');
    const members = [...after].filter(([k]) => k.startsWith('m.room.member\u0000'));
    const byId = new Map([...state, join].map((e) => [e.eventId, e.pdu]));
    const streams = this.ctx.streams;
    // Our earlier membership (an invite or a knock) is what the join replaces: sync shows the state before the join from it.
    const replaced = before.get(stateKeyOf('m.room.member', join.pdu.state_key ?? ''));
    if (replaced) join = { ...join, localUnsigned: { replaces_state: replaced } };
    return this.roomLocks.run(roomId, async () => {
      await this.storeOutliers(roomId, [...authChain, ...state].filter((e) => e.eventId !== join.eventId));
      const stored = storedForm(join, roomId);
      return this.ctx.write(async (tx, alloc, onCommit) => {
        const pos = await alloc();
        await tx.insertInto('rooms').values({
          room_id: roomId, room_version: version.id, creator: create.pdu.sender, created_ts: Date.now(), visibility: 'private',
          current_state_group: null, forward_extremities: '[]', max_depth: 0,
        }).onConflict((oc) => oc.column('room_id').doNothing()).execute();
        const beforeGroup = await this.writeStateGroup(tx, roomId, null, before);
        const nid = await this.insertEvent(tx, roomId, join, pos, null, EventStatus.ACCEPTED);
        await tx.updateTable('events').set({ rejected: EventStatus.ACCEPTED, stream_pos: pos }).where('nid', '=', nid).execute();
        const group = await this.writeStateGroup(tx, roomId, beforeGroup, after);
        await tx.updateTable('events').set({ state_group: group }).where('nid', '=', nid).execute();
        await tx.updateTable('rooms').set({ current_state_group: group, forward_extremities: JSON.stringify([join.eventId]), max_depth: join.pdu.depth })
          .where('room_id', '=', roomId).execute();
        const memberRows = members.map(([k, id]) => ({
          room_id: roomId, user_id: k.slice('m.room.member\u0000'.length), membership: String(byId.get(id)?.content.membership ?? 'leave'),
          event_id: id, stream_pos: pos, forgotten: 0,
        }));
        for (let i = 0; i < memberRows.length; i += MEMBER_ROWS_PER_INSERT) {
          await tx.insertInto('room_members').values(memberRows.slice(i, i + MEMBER_ROWS_PER_INSERT))
            .onConflict((oc) => oc.columns(['room_id', 'user_id']).doUpdateSet((eb) => ({
              membership: eb.ref('excluded.membership'), event_id: eb.ref('excluded.event_id'), stream_pos: eb.ref('excluded.stream_pos'), forgotten: 0,
            })))
            .execute();
        }
        const result: StoredEvent = { nid, pdu: stored, streamPos: pos, stateGroup: group, redactedBy: null, txnDeviceId: null, txnId: null };
        onCommit(() => {
          this.events.invalidate(join.eventId);
          this.events.remember(result);
          this.state.primeGroup(group, after);
          this.ctx.rooms.recent.add(roomId, pos, join.eventId);
          streams.events.entityChanged(roomId, pos);
          streams.roomState.entityChanged(roomId, pos);
          for (const [k] of members) this.ctx.rooms.invalidateMemberships(k.slice('m.room.member\u0000'.length));
        });
        return result;
      }, () => [roomId, join.pdu.state_key ?? '']);
    });
  }

  private async insertEvent(tx: Tx, roomId: string, ev: IncomingEvent, pos: number, group: number | null, status: number): Promise<number> {
    const row = await tx.insertInto('events').values(eventRow(ev, roomId, pos, group, status)).onConflict((oc) => oc.column('event_id').doNothing()).returning('nid').executeTakeFirst();
    if (row) return Number(row.nid);
    const existing = await tx.selectFrom('events').select('nid').where('event_id', '=', ev.eventId).executeTakeFirstOrThrow();
    return Number(existing.nid);
  }

  /**
   * Authorise and persist one event of a room we are in. Prev and auth
   * events must be stored already (else MissingEventsError).
   */
  async receive(roomId: string, version: RoomVersion, ev: IncomingEvent, stateBeforeOverride?: Map<string, string>): Promise<ReceiveOutcome> {
    return this.roomLocks.run(roomId, async () => {
      const existing = await this.events.get(ev.eventId);
      if (existing && (await this.statusOf(ev.eventId)) !== EventStatus.OUTLIER) return { status: 'duplicate' };
      const room = await this.head(roomId);
      if (!room) throw new Error(`unknown room ${roomId}`);
      const prevIds = prevEventIds(ev.pdu);
      const authIds = authEventIds(ev.pdu);
      // With the state before the event given (fetched from its origin), unknown prev events are tolerated.
      const missing = await this.unknownIds(stateBeforeOverride ? authIds : [...new Set([...prevIds, ...authIds])]);
      if (missing.length > 0) throw new MissingEventsError(missing);

      // Step 4: against the event's own auth events.
      const authEvents = await this.events.getMany(authIds);
      const statuses = await this.statuses(authIds);
      if (authIds.some((id) => statuses.get(id) === EventStatus.REJECTED)) {
        return this.reject(roomId, ev, 'an auth event was rejected');
      }
      const authMap: StateMap = new Map();
      for (const a of authEvents) authMap.set(stateKeyOf(a.pdu.type, a.pdu.state_key ?? ''), a.pdu);
      await this.addCreateEvent(authMap, roomId, version);
      const authFailure = tryAuth(ev.pdu, authMap, version);
      if (authFailure) return this.reject(roomId, ev, `auth events: ${authFailure}`);

      // Step 5: against the state before the event.
      const before = stateBeforeOverride ? { ids: stateBeforeOverride, baseGroup: null } : await this.stateBefore(version, prevIds);
      const beforeFailure = tryAuth(ev.pdu, await this.authStateFrom(before.ids, ev.pdu, version), version);
      if (beforeFailure) return this.reject(roomId, ev, `state before: ${beforeFailure}`);

      // Step 6: against the current state (soft fail).
      const currentGroup = room.current_state_group == null ? null : Number(room.current_state_group);
      const currentIds = currentGroup == null ? new Map<string, string>() : await this.state.groupIds(currentGroup);
      if (!sameState(currentIds, before.ids)) {
        const currentFailure = tryAuth(ev.pdu, await this.authStateFrom(currentIds, ev.pdu, version), version);
        if (currentFailure) return this.softFail(roomId, ev, before, currentFailure);
      }
      const event = await this.persistAccepted(room, version, ev, before, currentIds);
      return { status: 'accepted', event };
    });
  }

  private async statusOf(eventId: string): Promise<number | undefined> {
    return (await this.statuses([eventId])).get(eventId);
  }

  private async statuses(ids: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.db.selectFrom('events').select(['event_id', 'rejected']).where('event_id', 'in', ids.slice(i, i + 500)).execute();
      for (const r of rows) out.set(r.event_id, Number(r.rejected));
    }
    return out;
  }

  /** v12 never lists the create event in auth_events; the rules still need it. */
  private async addCreateEvent(map: StateMap, roomId: string, version: RoomVersion): Promise<void> {
    const key = stateKeyOf('m.room.create', '');
    if (map.has(key) || !version.roomIdIsCreateEventHash) return;
    const create = await this.events.get(`$${roomId.slice(1)}`);
    if (create) map.set(key, create.pdu);
  }

  private async authStateFrom(ids: Map<string, string>, pdu: PDU, version: RoomVersion): Promise<StateMap> {
    const wanted: string[] = [];
    for (const [t, sk] of authEventsNeeded(pdu, version)) {
      const id = ids.get(stateKeyOf(t, sk));
      if (id) wanted.push(id);
    }
    const createId = ids.get(stateKeyOf('m.room.create', ''));
    if (createId) wanted.push(createId);
    const map: StateMap = new Map();
    for (const e of await this.events.getMany(wanted)) map.set(stateKeyOf(e.pdu.type, e.pdu.state_key ?? ''), e.pdu);
    return map;
  }

  /**
   * State after the prev events, resolved when they disagree. `baseGroup` is
   * a stored group close to it (the first prev event's), so the new group can
   * be written as a small delta.
   */
  async stateBefore(version: RoomVersion, prevIds: string[]): Promise<{ ids: Map<string, string>; baseGroup: number | null }> {
    const prevs = await this.events.getMany(prevIds);
    const states: Map<string, string>[] = [];
    let baseGroup: number | null = null;
    for (const p of prevs) {
      if (p.stateGroup == null) continue; // an outlier prev event: its state is unknown
      if (baseGroup == null) baseGroup = p.stateGroup;
      states.push(await this.state.groupIds(p.stateGroup));
    }
    if (states.length === 0) return { ids: new Map(), baseGroup: null };
    if (states.length === 1) return { ids: states[0], baseGroup };
    return { ids: await resolveStateIds(this.db, this.events, version, states), baseGroup };
  }

  private async reject(roomId: string, ev: IncomingEvent, reason: string): Promise<ReceiveOutcome> {
    await this.storeWithStatus(roomId, ev, EventStatus.REJECTED);
    this.ctx.log.info({ eventId: ev.eventId, roomId, reason }, 'rejected remote event');
    return { status: 'rejected', reason };
  }

  private async softFail(roomId: string, ev: IncomingEvent, _before: { ids: Map<string, string> }, reason: string): Promise<ReceiveOutcome> {
    await this.storeWithStatus(roomId, ev, EventStatus.SOFT_FAILED);
    this.ctx.log.info({ eventId: ev.eventId, roomId, reason }, 'soft-failed remote event');
    return { status: 'soft-failed', reason };
  }

  private async storeWithStatus(roomId: string, ev: IncomingEvent, status: number): Promise<void> {
    await this.ctx.write(async (tx, alloc) => {
      const pos = await alloc();
      await this.insertEvent(tx, roomId, ev, pos, null, status);
      // An outlier copy may exist already: it now has a definite status.
      await tx.updateTable('events').set({ rejected: status }).where('event_id', '=', ev.eventId).execute();
    });
  }

  /** Nids of events by id (for writing state groups). */
  private async nids(tx: Tx, ids: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await tx.selectFrom('events').select(['event_id', 'nid']).where('event_id', 'in', ids.slice(i, i + 500)).execute();
      for (const r of rows) out.set(r.event_id, Number(r.nid));
    }
    return out;
  }

  /** Write `target` as a group, as a delta on `base` when there is one. */
  private async writeStateGroup(tx: Tx, roomId: string, base: number | null, target: Map<string, string>): Promise<number> {
    const baseIds = base == null ? new Map<string, string>() : await this.state.groupIds(base, tx);
    const changed = [...target].filter(([k, id]) => baseIds.get(k) !== id);
    const removed = [...baseIds.keys()].some((k) => !target.has(k));
    if (changed.length === 0 && !removed && base != null) return base;
    // Deltas can only add or replace entries; a removal needs a snapshot.
    const entries = removed || base == null ? [...target] : changed;
    const nidOf = await this.nids(tx, entries.map(([, id]) => id));
    const changes = new Map<string, { nid: number; eventId: string }>();
    for (const [k, id] of entries) {
      const nid = nidOf.get(id);
      if (nid !== undefined) changes.set(k, { nid, eventId: id });
    }
    return this.state.writeGroup(tx, roomId, removed ? null : base, changes);
  }

  private async persistAccepted(
    room: RoomHeadRow, version: RoomVersion, ev: IncomingEvent,
    before: { ids: Map<string, string>; baseGroup: number | null }, currentIds: Map<string, string>,
  ): Promise<StoredEvent> {
    const roomId = room.room_id;
    const pdu = ev.pdu;
    const isState = typeof pdu.state_key === 'string';
    const after = new Map(before.ids);
    if (isState) after.set(stateKeyOf(pdu.type, pdu.state_key!), ev.eventId);

    const prevIds = prevEventIds(pdu);
    const oldExtremities: string[] = JSON.parse(room.forward_extremities);
    const extremities = [...oldExtremities.filter((id) => !prevIds.includes(id)), ev.eventId];
    // Extending every extremity: the event's state is the room's. Otherwise the branches merge.
    const newCurrent = oldExtremities.every((id) => prevIds.includes(id))
      ? after
      : await resolveStateIds(this.db, this.events, version, [currentIds, after]);

    const stored = storedForm(ev, roomId);
    const replaced = isState ? before.ids.get(stateKeyOf(pdu.type, pdu.state_key!)) : undefined;
    if (replaced) {
      const prev = await this.events.get(replaced);
      if (prev) stored.unsigned = { replaces_state: replaced, prev_content: prev.pdu.content, prev_sender: prev.pdu.sender };
    }
    const redactTarget = await this.redactionTarget(version, pdu, roomId, before.ids);
    const push = await this.ctx.push?.prepareEvent(stored, room.room_version, newCurrent);
    const memberChanges = [...newCurrent].filter(([k, id]) => k.startsWith('m.room.member\u0000') && currentIds.get(k) !== id);
    const memberEvents = await this.events.getMany(memberChanges.map(([, id]) => id).filter((id) => id !== ev.eventId));
    const currentChanged = !sameState(currentIds, newCurrent);
    const streams = this.ctx.streams;

    let group: number | null = null;
    return this.ctx.write(async (tx, alloc, onCommit) => {
      const pos = await alloc();
      // An outlier copy (from a join's state, say) becomes the timeline event in place: state groups may point at its nid.
      const nid = await this.insertEvent(tx, roomId, { eventId: ev.eventId, pdu, localUnsigned: stored.unsigned }, pos, null, EventStatus.ACCEPTED);
      await tx.updateTable('events').set({ rejected: EventStatus.ACCEPTED, stream_pos: pos }).where('nid', '=', nid).execute();
      group = await this.writeStateGroup(tx, roomId, before.baseGroup, after);
      await tx.updateTable('events').set({ state_group: group }).where('nid', '=', nid).execute();
      const currentGroup = newCurrent === after
        ? group
        : await this.writeStateGroup(tx, roomId, room.current_state_group == null ? null : Number(room.current_state_group), newCurrent);
      await tx.updateTable('rooms').set({
        current_state_group: currentGroup, forward_extremities: JSON.stringify(extremities),
        max_depth: Math.max(Number(room.max_depth), pdu.depth),
      }).where('room_id', '=', roomId).execute();
      const byId = new Map<string, PDU>(memberEvents.map((m) => [m.pdu.event_id, m.pdu]));
      byId.set(ev.eventId, pdu);
      for (const [k, id] of memberChanges) {
        const member = byId.get(id);
        if (!member) continue;
        const userId = k.slice('m.room.member\u0000'.length);
        const membership = String(member.content.membership);
        await tx.insertInto('room_members').values({ room_id: roomId, user_id: userId, membership, event_id: id, stream_pos: pos, forgotten: 0 })
          .onConflict((oc) => oc.columns(['room_id', 'user_id']).doUpdateSet({ membership, event_id: id, stream_pos: pos, forgotten: 0 }))
          .execute();
      }
      const rel = pdu.content['m.relates_to'] as { rel_type?: unknown; event_id?: unknown } | undefined;
      if (rel && typeof rel.rel_type === 'string' && typeof rel.event_id === 'string') {
        await tx.insertInto('event_relations').values({ event_id: ev.eventId, room_id: roomId, relates_to: rel.event_id, rel_type: rel.rel_type })
          .onConflict((oc) => oc.column('event_id').doNothing()).execute();
      }
      if (redactTarget) {
        const redacted = redactEvent(redactTarget.pdu, version) as PDU;
        redacted.event_id = redactTarget.pdu.event_id;
        redacted.room_id = redactTarget.pdu.room_id;
        await tx.updateTable('events').set({ json: JSON.stringify(redacted), redacted_by: ev.eventId }).where('nid', '=', redactTarget.nid).execute();
      }
      if (push) await push.write(tx, pos, onCommit);
      const stateGroup = group;
      const result: StoredEvent = { nid, pdu: stored, streamPos: pos, stateGroup, redactedBy: null, txnDeviceId: null, txnId: null };
      onCommit(() => {
        this.events.invalidate(ev.eventId);
        this.events.remember(result);
        this.state.primeGroup(stateGroup, after);
        this.ctx.rooms.recent.add(roomId, pos, ev.eventId);
        this.ctx.metrics?.eventsPersisted.inc({ origin: 'remote' });
        streams.events.entityChanged(roomId, pos);
        if (currentChanged || isState) streams.roomState.entityChanged(roomId, pos);
        for (const [k] of memberChanges) this.ctx.rooms.invalidateMemberships(k.slice('m.room.member\u0000'.length));
        if (redactTarget) {
          this.events.invalidate(redactTarget.pdu.event_id);
          if (typeof redactTarget.pdu.state_key === 'string') streams.roomState.entityChanged(roomId, pos);
        }
      });
      return result;
    }, () => [roomId, ...memberChanges.map(([k]) => k.slice('m.room.member\u0000'.length))]);
  }

  /**
   * The event a remote redaction may redact now: same server as the
   * target's sender (the spec lets servers check this lazily), or a sender
   * with the redact power level in the state before the redaction.
   */
  private async redactionTarget(version: RoomVersion, pdu: PDU, roomId: string, before: Map<string, string>): Promise<StoredEvent | undefined> {
    if (pdu.type !== 'm.room.redaction') return undefined;
    const targetId = redactsOf(pdu, version);
    if (!targetId) return undefined;
    const target = await this.events.get(targetId);
    if (!target || target.pdu.room_id !== roomId || target.redactedBy) return undefined;
    if (serverNameOf(target.pdu.sender) === serverNameOf(pdu.sender)) return target;
    const authState = await this.authStateFrom(before, { ...pdu, type: 'm.room.power_levels', state_key: '' }, version);
    const create = authState.get(stateKeyOf('m.room.create', ''));
    const pl = effectivePowerLevels(authState.get(stateKeyOf('m.room.power_levels', ''))?.content, create, version);
    return userPowerLevel(pl, pdu.sender, create, version) >= requiredLevelForAction(pl, 'redact') ? target : undefined;
  }
}

function tryAuth(pdu: PDU, state: StateMap, version: RoomVersion): string | undefined {
  try {
    checkEventAuth(pdu, state, version);
    return undefined;
  } catch (err) {
    if (err instanceof AuthError) return err.message;
    throw err;
  }
}

function sameState(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
