/**
 * The first three checks on a PDU received from another server (server-server
 * API, "Checks performed on receipt of a PDU"): is it a well-formed event of
 * its room version, is it signed by the servers that must sign it, and does
 * its content hash match (if not, only its redacted form is kept).
 *
 * Authorisation (steps 4-6) needs room state and lives with the room code.
 */
import { canonicalJsonBytes } from '../core/canonical-json.js';
import { checkContentHash, computeEventId } from '../core/event-hashing.js';
import { requiredSignatureServers, verifyEventSignature } from '../core/event-signing.js';
import type { PDU } from '../core/events.js';
import { isValidRoomId, isValidUserId, isValidEventId, serverNameOf } from '../core/identifiers.js';
import { redactEvent } from '../core/redaction.js';
import type { RoomVersion } from '../core/room-versions.js';

/** The spec's limit on a whole event in federation format, as canonical JSON. */
export const MAX_PDU_BYTES = 65_536;
/** Limits Synapse and the Rust servers apply to references (prevents amplification). */
export const MAX_PREV_EVENTS = 20;
export const MAX_AUTH_EVENTS = 10;
const MAX_ID_BYTES = 255;

/** Looks up a server's public key (unpadded base64) valid at `validAtTs`, as ServerKeys.getVerifyKey does. */
export type KeyLookup = (serverName: string, keyId: string, validAtTs: number) => Promise<string | undefined>;

export type PduCheckResult =
  | { ok: true; eventId: string; pdu: PDU; /** True when the content hash failed and `pdu` is the redacted copy. */ redacted: boolean }
  | { ok: false; eventId?: string; reason: string };

const byteLength = (s: string) => Buffer.byteLength(s, 'utf8');
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function checkReferences(value: unknown, version: RoomVersion, max: number, name: string): string | undefined {
  if (!Array.isArray(value)) return `${name} must be an array`;
  if (value.length > max) return `${name} has more than ${max} entries`;
  for (const ref of value) {
    if (version.eventIdFormat === 'v1') {
      if (!Array.isArray(ref) || typeof ref[0] !== 'string' || !isObject(ref[1])) return `${name} entries must be [event_id, hashes] pairs`;
    } else if (typeof ref !== 'string' || !isValidEventId(ref, version)) {
      return `${name} entries must be event ids`;
    }
  }
  return undefined;
}

/**
 * Step 1: structure and sizes. Returns a reason string when the event is not
 * a valid event of `version`, else undefined.
 */
export function checkPduFormat(raw: unknown, version: RoomVersion): string | undefined {
  if (!isObject(raw)) return 'event is not an object';
  let size: number;
  try {
    size = canonicalJsonBytes(raw, { strict: version.strictCanonicalJson }).length;
  } catch (err) {
    return `event is not canonical JSON: ${(err as Error).message}`;
  }
  if (size > MAX_PDU_BYTES) return `event is larger than ${MAX_PDU_BYTES} bytes`;

  if (typeof raw.type !== 'string' || byteLength(raw.type) > MAX_ID_BYTES) return 'type must be a string of at most 255 bytes';
  if (typeof raw.sender !== 'string' || !isValidUserId(raw.sender) || byteLength(raw.sender) > MAX_ID_BYTES) return 'sender must be a user id';
  if (!isObject(raw.content)) return 'content must be an object';
  if (!Number.isSafeInteger(raw.origin_server_ts)) return 'origin_server_ts must be an integer';
  if (!Number.isSafeInteger(raw.depth) || (raw.depth as number) < 0) return 'depth must be a non-negative integer';
  if (raw.state_key !== undefined && (typeof raw.state_key !== 'string' || byteLength(raw.state_key) > MAX_ID_BYTES)) {
    return 'state_key must be a string of at most 255 bytes';
  }
  const isV12Create = version.roomIdIsCreateEventHash && raw.type === 'm.room.create' && raw.state_key === '';
  if (isV12Create) {
    if (raw.room_id !== undefined) return 'a v12 create event must not have a room_id';
  } else if (typeof raw.room_id !== 'string' || !isValidRoomId(raw.room_id, version) || byteLength(raw.room_id) > MAX_ID_BYTES) {
    return 'room_id must be a room id';
  }
  if (version.eventIdFormat === 'v1') {
    if (typeof raw.event_id !== 'string' || !isValidEventId(raw.event_id, version) || byteLength(raw.event_id) > MAX_ID_BYTES) return 'event_id must be an event id';
  }
  const prev = checkReferences(raw.prev_events, version, MAX_PREV_EVENTS, 'prev_events');
  if (prev) return prev;
  const auth = checkReferences(raw.auth_events, version, MAX_AUTH_EVENTS, 'auth_events');
  if (auth) return auth;
  if (!isObject(raw.hashes) || typeof raw.hashes.sha256 !== 'string') return 'hashes.sha256 is missing';
  if (!isObject(raw.signatures)) return 'signatures are missing';
  return undefined;
}

/**
 * Step 2: every server that must sign the event has at least one valid
 * signature under a key we know, and none of its known-key signatures is
 * bad. Unknown keys (and keys expired before the event, when the room
 * version enforces validity) are skipped, as the spec says.
 */
export async function checkPduSignatures(pdu: PDU, version: RoomVersion, keys: KeyLookup): Promise<string | undefined> {
  const signatures = isObject(pdu.signatures) ? pdu.signatures : {};
  // Keys must have been valid when the event was created; old room versions don't enforce this.
  const validAt = version.enforceKeyValidity ? pdu.origin_server_ts : 0;
  for (const server of requiredSignatureServers(pdu, version)) {
    const byServer = Object.hasOwn(signatures, server) && isObject(signatures[server]) ? (signatures[server] as Record<string, unknown>) : {};
    let valid = 0;
    for (const keyId of Object.keys(byServer)) {
      if (!keyId.startsWith('ed25519:')) continue;
      const publicKey = await keys(server, keyId, validAt);
      if (publicKey === undefined) continue;
      if (!verifyEventSignature(pdu, version, server, keyId, publicKey)) return `bad signature from ${server} (${keyId})`;
      valid++;
    }
    if (valid === 0) return `no valid signature from ${server}`;
  }
  return undefined;
}

/**
 * Steps 1-3 together. The event id is computed (v3+) or read (v1/v2) before
 * anything else so rejections can name it.
 */
export async function checkIncomingPdu(raw: unknown, version: RoomVersion, keys: KeyLookup): Promise<PduCheckResult> {
  const formatError = checkPduFormat(raw, version);
  if (formatError) {
    const id = isObject(raw) && typeof raw.event_id === 'string' ? raw.event_id : undefined;
    return { ok: false, eventId: id, reason: formatError };
  }
  const pdu = raw as PDU;
  const eventId = version.eventIdFormat === 'v1' ? (pdu.event_id as string) : computeEventId(pdu, version);
  // The origin of a v1/v2 event id must be a server name; later ids carry none.
  if (version.eventIdFormat === 'v1' && !serverNameOf(eventId)) return { ok: false, eventId, reason: 'event_id has no server name' };
  const sigError = await checkPduSignatures(pdu, version, keys);
  if (sigError) return { ok: false, eventId, reason: sigError };
  if (!checkContentHash(pdu, version)) {
    return { ok: true, eventId, pdu: redactEvent(pdu, version), redacted: true };
  }
  return { ok: true, eventId, pdu, redacted: false };
}
