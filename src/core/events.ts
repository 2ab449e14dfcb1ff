/**
 * Persistent Data Unit (room event) shapes and small accessors.
 *
 * One type covers every room version: v1/v2 reference other events as
 * `[event_id, {sha256}]` pairs, later versions as bare event ids, and v12
 * create events have no `room_id`. The accessors below hide those differences.
 */
import type { RoomVersion } from './room-versions.js';

export interface EventHashes {
  sha256: string;
}

/** Room v1/v2 event reference: the event id plus the referenced event's hashes. */
export type EventReferencePair = [eventId: string, hashes: Partial<EventHashes> & Record<string, unknown>];

export type EventReferences = string[] | EventReferencePair[];

export interface PDU {
  /** Present on the wire for v1/v2 only; later versions derive it from the reference hash. */
  event_id?: string;
  /** Absent only on v12+ `m.room.create` events. */
  room_id?: string;
  type: string;
  /** Present (possibly empty) exactly when this is a state event. */
  state_key?: string;
  sender: string;
  content: Record<string, unknown>;
  origin_server_ts: number;
  depth: number;
  prev_events: EventReferences;
  auth_events: EventReferences;
  hashes?: EventHashes;
  signatures?: Record<string, Record<string, string>>;
  unsigned?: Record<string, unknown>;
  /** Top-level in room versions 1-10; in `content` from v11. */
  redacts?: string;
  /** Legacy fields, protected by pre-v11 redaction. */
  origin?: string;
  membership?: string;
  prev_state?: unknown;
  /** Unknown top-level keys must survive untouched: they are covered by the content hash. */
  [key: string]: unknown;
}

function referenceIds(refs: unknown): string[] {
  if (!Array.isArray(refs)) return [];
  const ids: string[] = [];
  for (const ref of refs) {
    if (typeof ref === 'string') ids.push(ref);
    else if (Array.isArray(ref) && typeof ref[0] === 'string') ids.push(ref[0]);
  }
  return ids;
}

/** Event ids of `prev_events`, whichever format the room version uses. */
export function prevEventIds(pdu: Pick<PDU, 'prev_events'>): string[] {
  return referenceIds(pdu.prev_events);
}

/** Event ids of `auth_events`, whichever format the room version uses. */
export function authEventIds(pdu: Pick<PDU, 'auth_events'>): string[] {
  return referenceIds(pdu.auth_events);
}

export function isStateEvent(pdu: { state_key?: unknown }): boolean {
  return typeof pdu.state_key === 'string';
}

/** `content.membership` of a member event, if it is a string. */
export function membershipOf(pdu: { content?: unknown } | undefined): string | undefined {
  const content = pdu?.content;
  if (content === null || typeof content !== 'object') return undefined;
  const m = (content as Record<string, unknown>).membership;
  return typeof m === 'string' ? m : undefined;
}

/**
 * The event id a redaction targets: `content.redacts` from v11 (MSC2174),
 * top-level `redacts` before. Falls back to the other location so events
 * served to clients in either shape still resolve.
 */
export function redactsOf(pdu: PDU, version: RoomVersion): string | undefined {
  const inContent = typeof pdu.content?.redacts === 'string' ? (pdu.content.redacts as string) : undefined;
  const topLevel = typeof pdu.redacts === 'string' ? pdu.redacts : undefined;
  return version.redactsInContent ? (inContent ?? topLevel) : (topLevel ?? inContent);
}

/**
 * Build `prev_events`/`auth_events` in the room version's format. For v1/v2
 * each pair carries the referenced event's *reference hash* (unpadded
 * Base64), as Synapse does; later versions just list ids.
 */
export function makeEventReferences(
  version: RoomVersion,
  events: ReadonlyArray<{ eventId: string; sha256: string }>,
): EventReferences {
  if (version.eventIdFormat === 'v1') {
    return events.map((e): EventReferencePair => [e.eventId, { sha256: e.sha256 }]);
  }
  return events.map((e) => e.eventId);
}
