/**
 * PUT /_matrix/federation/v1/send/{txnId}: the PDUs and EDUs another server
 * pushes to us. Each PDU is checked on its own (a bad one is reported in the
 * answer and never fails the rest); gaps in the room DAG are filled with
 * /get_missing_events, and, where that is not enough, with the state at the
 * missing events (/state_ids) so the new event can still be placed.
 */
import { getRoomVersion, type RoomVersion } from '../core/room-versions.js';
import { authEventIds, prevEventIds } from '../core/events.js';
import { stateKeyOf } from '../rooms/state-store.js';
import { computeEventId } from '../core/event-hashing.js';
import { serverNameOf } from '../core/identifiers.js';
import { MatrixError } from '../server/errors.js';
import { Lru } from '../server/lru.js';
import type { Context } from '../server/services.js';
import { MissingEventsError, type IncomingEvent } from '../rooms/remote-events.js';
import { checkIncomingPdu } from './pdu-checks.js';
import { roomAllowsServer } from './acl.js';

export const MAX_TXN_PDUS = 50;
export const MAX_TXN_EDUS = 100;
/** How many events one gap-filling round may fetch. */
const MISSING_EVENTS_LIMIT = 10;
/** Most events fetched one by one to complete a state (bigger gaps wait for a proper state fetch). */
const MAX_STATE_FETCH = 500;

export interface Edu {
  edu_type: string;
  content: Record<string, unknown>;
}

/** Handles the EDUs of a transaction (typing, receipts, presence, device lists, to-device). */
export type EduHandler = (origin: string, edu: Edu) => Promise<void>;

export type PduResults = Record<string, { error?: string }>;

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The id to report a refused PDU under, when one can be worked out. */
function eventIdOf(raw: Record<string, unknown>, version: RoomVersion): string | undefined {
  if (version.eventIdFormat === 'v1') return typeof raw.event_id === 'string' ? raw.event_id : undefined;
  try {
    return computeEventId(raw, version);
  } catch {
    return undefined;
  }
}

export class FederationInbound {
  /** Answers to recent transactions, so a retransmission is not processed twice. */
  private done = new Lru<string, PduResults>(1000);
  private inflight = new Map<string, Promise<PduResults>>();
  private eduHandlers = new Map<string, EduHandler>();

  constructor(private readonly ctx: Context) {}

  /** Register the handler for one EDU type (e.g. 'm.typing'). */
  onEdu(type: string, handler: EduHandler): void {
    this.eduHandlers.set(type, handler);
  }

  async handleTransaction(origin: string, txnId: string, body: unknown): Promise<{ pdus: PduResults }> {
    if (!isObject(body)) throw new MatrixError('M_BAD_JSON', 400, 'Transaction must be an object');
    const pdus = body.pdus ?? [];
    const edus = body.edus ?? [];
    if (!Array.isArray(pdus) || !Array.isArray(edus)) throw new MatrixError('M_BAD_JSON', 400, 'pdus and edus must be arrays');
    if (pdus.length > MAX_TXN_PDUS || edus.length > MAX_TXN_EDUS) {
      throw new MatrixError('M_BAD_JSON', 400, `A transaction carries at most ${MAX_TXN_PDUS} PDUs and ${MAX_TXN_EDUS} EDUs`);
    }
    const key = `${origin}\u0000${txnId}`;
    const cached = this.done.get(key);
    if (cached) return { pdus: cached };
    let running = this.inflight.get(key);
    if (!running) {
      running = this.process(origin, pdus, edus).finally(() => this.inflight.delete(key));
      this.inflight.set(key, running);
    }
    const results = await running;
    this.done.set(key, results);
    return { pdus: results };
  }

  private async process(origin: string, pdus: unknown[], edus: unknown[]): Promise<PduResults> {
    const results: PduResults = {};
    for (const raw of pdus) {
      const { id, error } = await this.receivePdu(origin, raw).catch((err: unknown) => {
        this.ctx.log.warn({ err, origin }, 'failed to process a PDU');
        return { id: undefined, error: 'internal error' };
      });
      if (id) results[id] = error ? { error } : {};
    }
    for (const edu of edus) {
      if (!isObject(edu) || typeof edu.edu_type !== 'string' || !isObject(edu.content)) continue;
      const handler = this.eduHandlers.get(edu.edu_type);
      if (!handler) continue;
      try {
        await handler(origin, { edu_type: edu.edu_type, content: edu.content });
      } catch (err) {
        this.ctx.log.warn({ err, origin, eduType: edu.edu_type }, 'failed to process an EDU');
      }
    }
    return results;
  }

  /** The room version of a room we know, or undefined. */
  private async roomVersion(roomId: string): Promise<RoomVersion | undefined> {
    const room = await this.ctx.rooms.getRoom(roomId);
    return room ? getRoomVersion(room.room_version) : undefined;
  }

  /** Check and persist one PDU from a transaction; never throws for a bad event. */
  async receivePdu(origin: string, raw: unknown): Promise<{ id?: string; error?: string }> {
    if (!isObject(raw) || typeof raw.room_id !== 'string') return { error: 'no room_id' };
    const roomId = raw.room_id;
    const version = await this.roomVersion(roomId);
    if (!version) return { id: typeof raw.event_id === 'string' ? raw.event_id : undefined, error: 'unknown room' };
    if (!(await roomAllowsServer(this.ctx, roomId, origin))) {
      return { id: eventIdOf(raw, version), error: 'origin is denied by the room\'s server ACL' };
    }
    const checked = await checkIncomingPdu(raw, version, (s, k, t) => this.ctx.federation.keys.getVerifyKey(s, k, t));
    if (!checked.ok) return { id: checked.eventId, error: checked.reason };
    const sender = serverNameOf(checked.pdu.sender);
    // Only the sender's server (or, for a few membership events, a resident server) may push an event.
    if (sender !== origin && checked.pdu.type !== 'm.room.member') return { id: checked.eventId, error: 'event not sent by its origin' };
    const ev: IncomingEvent = { eventId: checked.eventId, pdu: checked.pdu };
    const outcome = await this.receiveWithGaps(origin, roomId, version, ev);
    return { id: checked.eventId, error: outcome };
  }

  /**
   * Persist `ev`, first fetching what it depends on. Returns an error string
   * for the transaction answer, or undefined when the event was accepted
   * (soft-failed events count as accepted there: they were valid).
   */
  async receiveWithGaps(origin: string, roomId: string, version: RoomVersion, ev: IncomingEvent): Promise<string | undefined> {
    const remote = this.ctx.rooms.remote;
    let stateBefore: Map<string, string> | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const outcome = await remote.receive(roomId, version, ev, stateBefore);
        return outcome.status === 'rejected' ? outcome.reason : undefined;
      } catch (err) {
        if (!(err instanceof MissingEventsError)) throw err;
        if (attempt === 0) await this.fillGap(origin, roomId, version, ev, err.missing);
        else stateBefore = (await this.fetchStateBefore(origin, roomId, version, ev)) ?? stateBefore;
      }
    }
    return 'could not fetch the events it depends on';
  }

  /** First answer to a gap: the events between our extremities and `ev`. */
  private async fillGap(origin: string, roomId: string, version: RoomVersion, ev: IncomingEvent, missing: string[]): Promise<void> {
    if (prevEventIds(ev.pdu).some((id) => missing.includes(id))) await this.getMissingEvents(origin, roomId, version, ev);
  }

  private async checkedEvents(origin: string, version: RoomVersion, raws: unknown[]): Promise<IncomingEvent[]> {
    const out: IncomingEvent[] = [];
    for (const raw of raws) {
      const checked = await checkIncomingPdu(raw, version, (s, k, t) => this.ctx.federation.keys.getVerifyKey(s, k, t));
      if (checked.ok) out.push({ eventId: checked.eventId, pdu: checked.pdu });
      else this.ctx.log.info({ origin, eventId: checked.eventId, reason: checked.reason }, 'dropped a fetched event');
    }
    return out;
  }

  /** POST /get_missing_events: the events between our extremities and `ev`, persisted oldest first. */
  private async getMissingEvents(origin: string, roomId: string, version: RoomVersion, ev: IncomingEvent): Promise<void> {
    const room = await this.ctx.rooms.getRoom(roomId);
    if (!room) return;
    const earliest: string[] = JSON.parse(room.forward_extremities);
    const res = await this.ctx.federation.client.request<{ events?: unknown[] }>(origin, {
      method: 'POST', path: `/_matrix/federation/v1/get_missing_events/${encodeURIComponent(roomId)}`,
      body: { earliest_events: earliest, latest_events: [ev.eventId], limit: MISSING_EVENTS_LIMIT, min_depth: Math.max(0, Number(room.max_depth) - 20) },
    }).catch((err: unknown) => {
      this.ctx.log.info({ err, origin, roomId }, 'get_missing_events failed');
      return { events: [] };
    });
    const events = await this.checkedEvents(origin, version, Array.isArray(res.events) ? res.events.slice(0, MISSING_EVENTS_LIMIT) : []);
    events.sort((a, b) => a.pdu.depth - b.pdu.depth);
    for (const missing of events) {
      if (missing.eventId === ev.eventId) continue;
      try {
        await this.ctx.rooms.remote.receive(roomId, version, missing);
      } catch (err) {
        if (!(err instanceof MissingEventsError)) throw err;
        // The oldest fetched events may themselves have gaps; the state fetch below covers them.
      }
    }
  }

  /**
   * GET /state_ids at `ev`: the state before it as its origin sees it. The
   * events we lack (state and auth chain) are fetched and kept as outliers;
   * returns the state as a map, or undefined when the origin won't say.
   */
  private async fetchStateBefore(origin: string, roomId: string, version: RoomVersion, ev: IncomingEvent): Promise<Map<string, string> | undefined> {
    const client = this.ctx.federation.client;
    const ids = await client.request<{ pdu_ids?: unknown; auth_chain_ids?: unknown }>(origin, {
      method: 'GET', path: `/_matrix/federation/v1/state_ids/${encodeURIComponent(roomId)}`, query: { event_id: ev.eventId },
    }).catch(() => undefined);
    if (!ids || !Array.isArray(ids.pdu_ids) || !Array.isArray(ids.auth_chain_ids)) return undefined;
    const stateIds = ids.pdu_ids.filter((x): x is string => typeof x === 'string');
    const authIds = ids.auth_chain_ids.filter((x): x is string => typeof x === 'string');
    const remote = this.ctx.rooms.remote;
    const unknown = await remote.unknownIds([...new Set([...stateIds, ...authIds, ...authEventIds(ev.pdu)])]);
    const fetched: unknown[] = [];
    for (const id of unknown.slice(0, MAX_STATE_FETCH)) {
      const res = await client.request<{ pdus?: unknown[] }>(origin, { method: 'GET', path: `/_matrix/federation/v1/event/${encodeURIComponent(id)}` })
        .catch(() => ({ pdus: [] }));
      if (Array.isArray(res.pdus) && res.pdus.length > 0) fetched.push(res.pdus[0]);
    }
    await remote.storeOutliers(roomId, await this.checkedEvents(origin, version, fetched));
    const state = new Map<string, string>();
    for (const e of await this.ctx.rooms.events.getMany(stateIds)) {
      if (typeof e.pdu.state_key === 'string') state.set(stateKeyOf(e.pdu.type, e.pdu.state_key), e.pdu.event_id);
    }
    return state;
  }
}
