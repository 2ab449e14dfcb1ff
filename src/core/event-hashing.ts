/**
 * Content hashes, reference hashes, event ids and (v12) room ids
 * (server-server API, "Calculating the content/reference hash for an event";
 * /rooms/v3, v4 and v12 "Event IDs" / room id format).
 */
import { createHash, randomBytes } from 'node:crypto';
import { encodeBase64, encodeBase64Url, decodeBase64 } from './base64.js';
import { canonicalJsonBytes } from './canonical-json.js';
import { redactEvent } from './redaction.js';
import { getRoomVersion, ROOM_VERSIONS, type RoomVersion } from './room-versions.js';

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** Canonical JSON strictness for a room: v1-5 tolerate floats and big integers. */
function jsonOptions(version: RoomVersion | undefined): { strict: boolean } {
  return { strict: version ? version.strictCanonicalJson : true };
}

/**
 * From room version 3 on, `event_id` is not part of the event format: it is
 * derived from the reference hash. Servers commonly keep it attached to their
 * local copy, so drop it before hashing or signing to get wire-format bytes.
 */
export function toWireFormat<T extends object>(pdu: T, version: RoomVersion | undefined): T {
  if (!version || version.eventIdFormat === 'v1' || !Object.hasOwn(pdu, 'event_id')) return pdu;
  const { event_id: _eventId, ...rest } = pdu as Record<string, unknown>;
  return rest as T;
}

/**
 * SHA-256 content hash (unpadded Base64) over the whole event minus
 * `unsigned`, `signatures` and `hashes`. Pass `version` so `event_id` is
 * handled correctly for v3+ rooms and non-canonical numbers for v1-5 rooms.
 */
export function computeContentHash(pdu: object, version?: RoomVersion): string {
  const { unsigned: _u, signatures: _s, hashes: _h, ...rest } = toWireFormat(pdu, version) as Record<string, unknown>;
  return encodeBase64(sha256(canonicalJsonBytes(rest, jsonOptions(version))));
}

/** A copy of `pdu` with `hashes.sha256` set to its content hash. */
export function withContentHash<T extends object>(pdu: T, version?: RoomVersion): T & { hashes: { sha256: string } } {
  return { ...pdu, hashes: { sha256: computeContentHash(pdu, version) } };
}

/**
 * Whether `hashes.sha256` matches the content. A mismatch means the event was
 * redacted in transit (or tampered with) and should be handled in its
 * redacted form.
 */
export function checkContentHash(pdu: object, version?: RoomVersion): boolean {
  const hashes = (pdu as { hashes?: unknown }).hashes;
  if (hashes === null || typeof hashes !== 'object') return false;
  const claimed = (hashes as Record<string, unknown>).sha256;
  if (typeof claimed !== 'string') return false;
  let claimedBytes: Buffer;
  try {
    claimedBytes = decodeBase64(claimed);
    const actual = decodeBase64(computeContentHash(pdu, version));
    return claimedBytes.equals(actual);
  } catch {
    return false;
  }
}

/**
 * Reference hash: SHA-256 of the canonical JSON of the redacted event without
 * `signatures` and `unsigned` (`age_ts` and other legacy top-level keys are
 * already removed by redaction).
 */
export function computeReferenceHash(pdu: object, version: RoomVersion): Buffer {
  const redacted = redactEvent(toWireFormat(pdu, version), version) as Record<string, unknown>;
  const { signatures: _s, unsigned: _u, age_ts: _a, ...rest } = redacted;
  return sha256(canonicalJsonBytes(rest, jsonOptions(version)));
}

const RANDOM_ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** A random string of ASCII letters (the spec recommends alphanumerics for opaque ids). */
export function randomOpaqueId(length = 18): string {
  const bytes = randomBytes(length);
  let out = '';
  // 256 = 4*52 + 48: slight bias, irrelevant for uniqueness.
  for (const b of bytes) out += RANDOM_ID_ALPHABET[b % RANDOM_ID_ALPHABET.length];
  return out;
}

/**
 * The event id for `pdu` in a room of `version`:
 * - v1/v2: `$<random>:<serverName>` (not derived from the event; the caller
 *   must store it on the event before hashing and signing);
 * - v3: `$` + standard unpadded Base64 of the reference hash;
 * - v4+: `$` + URL-safe unpadded Base64 of the reference hash.
 */
export function computeEventId(pdu: object, version: RoomVersion, serverName?: string): string {
  switch (version.eventIdFormat) {
    case 'v1':
      if (!serverName) throw new Error(`room version ${version.id} event ids need a server name`);
      return `$${randomOpaqueId()}:${serverName}`;
    case 'v3':
      return `$${encodeBase64(computeReferenceHash(pdu, version))}`;
    case 'v4':
      return `$${encodeBase64Url(computeReferenceHash(pdu, version))}`;
  }
}

/**
 * v12 (MSC4291): the room id is the create event's event id with `!` as the
 * sigil, i.e. `!` + URL-safe Base64 of its reference hash. The version is
 * taken from `content.room_version` unless given.
 */
export function computeRoomIdFromCreateEvent(createPdu: object, version?: RoomVersion): string {
  const content = (createPdu as { content?: { room_version?: unknown } }).content;
  const declared = typeof content?.room_version === 'string' ? getRoomVersion(content.room_version) : undefined;
  const v = version ?? declared ?? ROOM_VERSIONS['12'];
  return `!${encodeBase64Url(computeReferenceHash(createPdu, v))}`;
}

/** v12: the create event's id for a room id (`!x` -> `$x`). */
export function createEventIdFromRoomId(roomId: string): string {
  return `$${roomId.slice(1)}`;
}
