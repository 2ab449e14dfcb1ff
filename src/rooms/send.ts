import { canonicalJson } from '../core/canonical-json.js';
import { computeEventId, computeReferenceHash } from '../core/event-hashing.js';
import { hashAndSignEvent } from '../core/event-signing.js';
import { makeEventReferences, redactsOf, type PDU } from '../core/events.js';
import { encodeBase64 } from '../core/base64.js';
import { redactEvent } from '../core/redaction.js';
import { getRoomVersion, type RoomVersion } from '../core/room-versions.js';
import { authEventsNeeded, checkEventAuth, AuthError, type StateMap } from '../core/auth-rules.js';
import { effectivePowerLevels, requiredLevelForAction, userPowerLevel } from '../core/power-levels.js';
import { MatrixError, forbidden, notFound } from '../server/errors.js';
import { KeyedMutex } from '../server/mutex.js';
import type { Context } from '../server/services.js';
import { hoist, type Tx } from '../storage/db.js';
import { EVENT_COLUMNS, rowToStoredEvent, type EventStore } from './event-store.js';
import { stateKeyOf, type StateStore } from './state-store.js';
import type { StoredEvent } from './types.js';
import { serverNameOf } from '../core/identifiers.js';
import { federationPdu } from '../federation/pdu-format.js';
import { isUniqueViolation } from '../storage/errors.js';

/**
 * Spec: a retransmission is the same transaction id on the same HTTP path
 * from the same device, so the key is (device, txnId, path). `scope` is the
 * path inside the room, e.g. `send/m.room.message` or `redact/$event`.
 */
export interface TxnKey {
  deviceId: string;
  txnId: string;
  scope: string;
}

export interface SendRequest {
  roomId: string;
  sender: string;
  type: string;
  content: Record<string, unknown>;
  stateKey?: string;
  /** For m.room.redaction. */
  redacts?: string;
  /** Client transaction for idempotency; see TxnKey. */
  txn?: TxnKey;
  /**
   * Called with the signed event before it is persisted; may return it with
   * more signatures (a remote invitee's server countersigns invites).
   */
  countersign?: (signed: PDU, eventId: string, version: RoomVersion) => Promise<PDU>;
}

// The send path's reads, compiled once.
const findTxnRow = hoist((db, roomId: string, sender: string, deviceId: string, txnId: string, scope: string) => db
  .selectFrom('events').select(EVENT_COLUMNS).where('room_id', '=', roomId)
  .where('sender', '=', sender).where('txn_device_id', '=', deviceId).where('txn_id', '=', txnId)
  .where('txn_scope', '=', scope).limit(1));
const roomHead = hoist((db, roomId: string) => db.selectFrom('rooms')
  .select(['room_id', 'room_version', 'current_state_group', 'forward_extremities', 'max_depth'])
  .where('room_id', '=', roomId));

/** The spec's limit on a whole event (65536 bytes of canonical JSON). */
export const MAX_EVENT_BYTES = 65536;

/** The room row fields the sender needs, whether read from the database or just created. */
interface RoomHead {
  room_id: string;
  room_version: string;
  current_state_group: number | null;
  forward_extremities: string;
  max_depth: number;
}

/**
 * The one way an event enters a room. Per room, events are built and
 * persisted one at a time (room lock): read the current state, build the
 * PDU, check the authorization rules against that state, sign, then store
 * event + new state group + membership + room head in one transaction.
 * Reading and signing happen outside the global write transaction so other
 * rooms are not held up.
 */
/** The newest create event timestamp this process used (see sendCreateEvent). */
let lastCreateTs = 0;

export class EventSender {
  constructor(
    private readonly ctx: Context, private readonly events: EventStore, private readonly state: StateStore,
    /** Shared with the code that persists events from other servers: one writer per room. */
    private readonly roomLocks: KeyedMutex,
  ) {}

  async send(req: SendRequest): Promise<StoredEvent> {
    // (Routes look the transaction up first, before rate limiting; this
    // check under the room lock is the one that decides.)
    return this.roomLocks.run(req.roomId, async () => {
      if (req.txn) {
        const prior = await this.findTxn(req.roomId, req.sender, req.txn);
        if (prior) return prior;
      }
      const [room] = await roomHead(this.ctx.storage.db, req.roomId);
      if (!room) throw notFound('Unknown room');
      return this.buildAndPersist(room, req);
    });
  }

  /**
   * Used by createRoom for the first event, whose room row is written in the same transaction.
   * From room version 12 the room id is the create event's hash, so two identical create events
   * (same sender and content in the same millisecond: a bot creating rooms in parallel) would
   * name the same room. Create timestamps are made distinct within this process, and a clash with
   * another process is retried with a later one.
   */
  async sendCreateEvent(version: RoomVersion, sender: string, content: Record<string, unknown>, roomIdForOldVersions: string | undefined, visibility: string): Promise<StoredEvent> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.persistCreateEvent(version, sender, content, roomIdForOldVersions, visibility);
      } catch (err) {
        if (!version.roomIdIsCreateEventHash || attempt >= 3 || !isUniqueViolation(err)) throw err;
      }
    }
  }

  private async persistCreateEvent(version: RoomVersion, sender: string, content: Record<string, unknown>, roomIdForOldVersions: string | undefined, visibility: string): Promise<StoredEvent> {
    lastCreateTs = Math.max(Date.now(), lastCreateTs + 1);
    const pdu: PDU = {
      type: 'm.room.create', state_key: '', sender, content,
      origin_server_ts: lastCreateTs, depth: 1, prev_events: [], auth_events: [],
    };
    if (!version.roomIdIsCreateEventHash) pdu.room_id = roomIdForOldVersions;
    checkEventAuth(pdu, new Map(), version);
    const { signed, eventId } = this.sign(pdu, version);
    const roomId = version.roomIdIsCreateEventHash ? `!${eventId.slice(1)}` : roomIdForOldVersions!;
    return this.persist({ room_id: roomId, room_version: version.id, current_state_group: null, forward_extremities: '[]', max_depth: 0 }, signed, eventId, new Map(), undefined, async (tx) => {
      await tx.insertInto('rooms').values({
        room_id: roomId, room_version: version.id, creator: sender, created_ts: Date.now(),
        visibility, current_state_group: null, forward_extremities: '[]', max_depth: 0,
      }).execute();
    });
  }

  /** The event a retransmission of `txn` refers to (the room is part of the path, hence of the key). */
  async findTxn(roomId: string, sender: string, txn: TxnKey): Promise<StoredEvent | undefined> {
    const [row] = await findTxnRow(this.ctx.storage.db, roomId, sender, txn.deviceId, txn.txnId, txn.scope);
    return row ? rowToStoredEvent(row) : undefined;
  }

  /**
   * An unsigned event for `req` on top of the room's current state, with
   * prev_events, auth_events and depth filled in and the authorization rules
   * checked (403 on failure). Federation's make_join/make_leave hand this to
   * the joining server as a template.
   */
  async buildUnsigned(roomId: string, req: Omit<SendRequest, 'roomId' | 'txn'>): Promise<{ pdu: PDU; version: RoomVersion }> {
    const [room] = await roomHead(this.ctx.storage.db, roomId);
    if (!room) throw notFound('Unknown room');
    const { pdu, version } = await this.build(room, { ...req, roomId });
    return { pdu, version };
  }

  private async buildAndPersist(room: RoomHead, req: SendRequest): Promise<StoredEvent> {
    const { pdu, version, currentIds, authState } = await this.build(room, req);
    let redactTarget: StoredEvent | undefined;
    if (req.type === 'm.room.redaction') {
      redactTarget = await this.checkRedaction(pdu, version, authState, room.room_id);
    }

    const { signed: own, eventId } = this.sign(pdu, version);
    if (Buffer.byteLength(canonicalJson(own)) > MAX_EVENT_BYTES) throw new MatrixError('M_TOO_LARGE', 413, 'Event too large');
    const signed = req.countersign ? await req.countersign(own, eventId, version) : own;
    return this.persist(room, signed, eventId, currentIds, req.txn, undefined, redactTarget);
  }

  private async build(room: RoomHead, req: SendRequest): Promise<{ pdu: PDU; version: RoomVersion; currentIds: Map<string, string>; authState: StateMap }> {
    const version = getRoomVersion(room.room_version);
    if (!version) throw new MatrixError('M_UNSUPPORTED_ROOM_VERSION', 400, `Room version ${room.room_version} is not supported`);
    const currentIds = room.current_state_group == null ? new Map<string, string>() : await this.state.groupIds(Number(room.current_state_group));

    const content = { ...req.content };
    const pdu: PDU = {
      room_id: room.room_id, type: req.type, sender: req.sender, content,
      origin_server_ts: Date.now(), depth: Number(room.max_depth) + 1, prev_events: [], auth_events: [],
    };
    if (req.stateKey !== undefined) pdu.state_key = req.stateKey;
    if (req.type === 'm.room.redaction' && req.redacts) {
      // v11 moved `redacts` into content; older versions keep it top-level.
      if (version.redactsInContent) content.redacts = req.redacts; else pdu.redacts = req.redacts;
    }

    // Authorization: the state the event is checked against is the current state.
    const authState: StateMap = new Map();
    const needed = authEventsNeeded(pdu, version);
    const neededIds: string[] = [];
    for (const [t, sk] of needed) {
      const id = currentIds.get(stateKeyOf(t, sk));
      if (id) neededIds.push(id);
    }
    const authEvents = await this.events.getMany(neededIds);
    for (const ev of authEvents) authState.set(stateKeyOf(ev.pdu.type, ev.pdu.state_key ?? ''), ev.pdu);
    // v12 does not list the create event in auth_events (the room id stands
    // for it), but the rules still read it.
    const createKey = stateKeyOf('m.room.create', '');
    if (!authState.has(createKey) && currentIds.has(createKey)) {
      const create = await this.events.get(currentIds.get(createKey)!);
      if (create) authState.set(createKey, create.pdu);
    }
    const prevIds: string[] = JSON.parse(room.forward_extremities);
    const prevEvents = await this.events.getMany(prevIds);
    pdu.prev_events = makeEventReferences(version, prevEvents.map((e) => ({ eventId: e.pdu.event_id, sha256: referenceSha(e.pdu, version) })));
    pdu.auth_events = makeEventReferences(version, authEvents.map((e) => ({ eventId: e.pdu.event_id, sha256: referenceSha(e.pdu, version) })));
    try {
      // Not signed yet: an authorising server's signature (restricted joins) can only be ours, added when we sign.
      checkEventAuth(pdu, authState, version, { isSignedBy: (_p, server) => server === this.ctx.config.server_name });
    } catch (e) {
      if (e instanceof AuthError) throw forbidden(e.message);
      throw e;
    }
    return { pdu, version, currentIds, authState };
  }

  /** A redaction is accepted when the sender redacts their own event or has the redact power level. */
  private async checkRedaction(pdu: PDU, version: RoomVersion, authState: StateMap, roomId: string): Promise<StoredEvent | undefined> {
    const targetId = redactsOf(pdu, version);
    if (!targetId) throw new MatrixError('M_BAD_JSON', 400, 'Redaction without a target');
    const target = await this.events.get(targetId);
    if (!target || target.pdu.room_id !== roomId) return undefined; // spec: redacting an unknown event is allowed
    if (target.pdu.sender === pdu.sender) return target;
    const create = authState.get(stateKeyOf('m.room.create', ''));
    const pl = effectivePowerLevels(authState.get(stateKeyOf('m.room.power_levels', ''))?.content, create, version);
    if (userPowerLevel(pl, pdu.sender, create, version) < requiredLevelForAction(pl, 'redact')) {
      throw forbidden('You may only redact your own events');
    }
    return target;
  }

  private sign(pdu: PDU, version: RoomVersion): { signed: PDU; eventId: string } {
    const { server_name } = this.ctx.config;
    if (version.eventIdFormat === 'v1') {
      pdu.event_id = computeEventId(pdu, version, server_name);
      pdu.origin = server_name;
      return { signed: hashAndSignEvent(pdu, version, server_name, this.ctx.signingKey), eventId: pdu.event_id };
    }
    const signed = hashAndSignEvent(pdu, version, server_name, this.ctx.signingKey);
    return { signed, eventId: computeEventId(signed, version) };
  }

  private async persist(
    room: RoomHead, signed: PDU, eventId: string, currentIds: Map<string, string>,
    txn: SendRequest['txn'], beforeInsert?: (tx: Tx) => Promise<void>, redactTarget?: StoredEvent,
  ): Promise<StoredEvent> {
    const roomId = room.room_id;
    const isState = typeof signed.state_key === 'string';
    const key = isState ? stateKeyOf(signed.type, signed.state_key!) : undefined;
    // Stored copy: keep event_id alongside; unsigned carries what clients want about replaced state.
    const stored: PDU & { event_id: string; room_id: string } = { ...signed, event_id: eventId, room_id: roomId };
    const unsigned: Record<string, unknown> = {};
    const replaced = key ? currentIds.get(key) : undefined;
    if (replaced) {
      const prev = await this.events.get(replaced);
      if (prev) {
        unsigned.replaces_state = replaced;
        unsigned.prev_content = prev.pdu.content;
        unsigned.prev_sender = prev.pdu.sender;
      }
    }
    if (Object.keys(unsigned).length) stored.unsigned = unsigned;
    // The v12 create event has no room_id on the wire; keep the stored JSON true to the wire form.
    const json = JSON.stringify(signed.room_id === undefined ? { ...stored, room_id: undefined } : stored);

    let newState: Map<string, string> | undefined;
    // Push rules are evaluated before the write so the notification counts commit with the event.
    const push = await this.ctx.push?.prepareEvent(stored, room.room_version, currentIds);
    const membershipTarget = signed.type === 'm.room.member' ? signed.state_key : undefined;
    const streams = this.ctx.streams;
    const destinations = await this.remoteDestinations(roomId, membershipTarget);
    const version = getRoomVersion(room.room_version);
    const result = await this.ctx.write(async (tx, alloc, onCommit) => {
      if (beforeInsert) await beforeInsert(tx);
      const pos = await alloc();
      let group = room.current_state_group == null ? null : Number(room.current_state_group);
      const inserted = await tx.insertInto('events').values({
        event_id: eventId, room_id: roomId, type: signed.type, state_key: isState ? signed.state_key! : null,
        sender: signed.sender, origin_server_ts: signed.origin_server_ts, depth: signed.depth, stream_pos: pos, json,
        // A state event's group is written below, once its nid is known.
        state_group: key ? null : group, redacted_by: null, rejected: 0,
        txn_device_id: txn?.deviceId ?? null, txn_id: txn?.txnId ?? null, txn_scope: txn?.scope ?? null,
      }).returning('nid').executeTakeFirstOrThrow();
      const nid = Number(inserted.nid);
      if (key) {
        group = await this.state.writeGroup(tx, roomId, group, new Map([[key, { nid, eventId }]]));
        newState = new Map(currentIds);
        newState.set(key, eventId);
        await tx.updateTable('events').set({ state_group: group }).where('nid', '=', nid).execute();
      }
      await tx.updateTable('rooms').set({
        current_state_group: group, forward_extremities: JSON.stringify([eventId]), max_depth: signed.depth,
      }).where('room_id', '=', roomId).execute();
      if (membershipTarget !== undefined) {
        const membership = String(signed.content.membership);
        const values = { room_id: roomId, user_id: membershipTarget, membership, event_id: eventId, stream_pos: pos, forgotten: 0 };
        await tx.insertInto('room_members').values(values)
          .onConflict((oc) => oc.columns(['room_id', 'user_id']).doUpdateSet({ membership, event_id: eventId, stream_pos: pos, forgotten: 0 }))
          .execute();
      }
      const rel = signed.content['m.relates_to'] as { rel_type?: unknown; event_id?: unknown } | undefined;
      if (rel && typeof rel.rel_type === 'string' && typeof rel.event_id === 'string') {
        await tx.insertInto('event_relations').values({ event_id: eventId, room_id: roomId, relates_to: rel.event_id, rel_type: rel.rel_type })
          .onConflict((oc) => oc.column('event_id').doNothing()).execute();
      }
      if (redactTarget) await this.applyRedaction(tx, redactTarget, eventId);
      if (push) await push.write(tx, pos, onCommit);
      // Other servers in the room get the event from a durable queue that commits with it.
      if (destinations.length > 0 && version) await this.ctx.federation.sender.enqueuePdu(destinations, federationPdu(signed, version), { tx, onCommit });
      const ev: StoredEvent = { nid, pdu: stored, streamPos: pos, stateGroup: group, redactedBy: null, txnDeviceId: txn?.deviceId ?? null, txnId: txn?.txnId ?? null };
      onCommit(() => {
        // Caches first: a woken /sync may read this event at once.
        this.events.remember(ev);
        if (newState && group != null) this.state.primeGroup(group, newState);
        if (redactTarget) this.events.invalidate(redactTarget.pdu.event_id);
        this.ctx.rooms.recent.add(roomId, pos, eventId);
        this.ctx.metrics?.eventsPersisted.inc({ origin: 'local' });
        streams.events.entityChanged(roomId, pos);
        if (isState) streams.roomState.entityChanged(roomId, pos);
        if (membershipTarget !== undefined) this.ctx.rooms.invalidateMemberships(membershipTarget);
        // A redacted state event changes what readers of that state parse out of it.
        const target = redactTarget?.pdu;
        if (target && typeof target.state_key === 'string') streams.roomState.entityChanged(target.room_id ?? roomId, pos);
      });
      return ev;
    }, () => (membershipTarget ? [roomId, membershipTarget] : [roomId]));
    return result;
  }

  /**
   * Servers that must receive an event of this room: those with joined
   * members, plus the server of a user whose membership it changes (an
   * invitee, or someone kicked or banned).
   */
  private async remoteDestinations(roomId: string, membershipTarget: string | undefined): Promise<string[]> {
    if (!this.ctx.federation.policy.enabled) return [];
    const own = this.ctx.config.server_name;
    const out = new Set<string>();
    for (const userId of await this.ctx.rooms.joinedMembers(roomId)) {
      const s = serverNameOf(userId);
      if (s && s !== own) out.add(s);
    }
    const t = membershipTarget ? serverNameOf(membershipTarget) : null;
    if (t && t !== own) out.add(t);
    return [...out];
  }

  /** Replace the stored event by its redacted form (the original content is gone for good). */
  private async applyRedaction(tx: Tx, target: StoredEvent, redactionId: string): Promise<void> {
    const version = getRoomVersion((await tx.selectFrom('rooms').select('room_version').where('room_id', '=', target.pdu.room_id).executeTakeFirstOrThrow()).room_version)!;
    const redacted = redactEvent(target.pdu, version) as PDU;
    redacted.event_id = target.pdu.event_id;
    redacted.room_id = target.pdu.room_id;
    await tx.updateTable('events').set({ json: JSON.stringify(redacted), redacted_by: redactionId }).where('nid', '=', target.nid).execute();
  }
}

/** v1/v2 references carry the referenced event's reference hash. */
function referenceSha(pdu: PDU, version: RoomVersion): string {
  if (version.eventIdFormat !== 'v1') return '';
  const { unsigned: _u, ...rest } = pdu;
  return encodeBase64(computeReferenceHash(rest, version));
}
