/**
 * Hashing and signing of events (server-server API, "Signing Events").
 *
 * An event's signature covers its *redacted* form (which includes the content
 * hash), so it stays verifiable after redaction, while the content hash lets
 * receivers notice when the full content was tampered with or stripped.
 */
import { computeContentHash, toWireFormat } from './event-hashing.js';
import type { PDU } from './events.js';
import { serverNameOf } from './identifiers.js';
import { signJson, verifyJsonSignature } from './json-signing.js';
import { redactEvent } from './redaction.js';
import type { RoomVersion } from './room-versions.js';
import type { SigningKey } from './signing-key.js';

export { checkContentHash } from './event-hashing.js';

/**
 * Return a copy of `pdu` with `hashes.sha256` set and a signature from
 * `serverName` added to `signatures` (existing signatures are kept).
 * For v1/v2 rooms the event must already carry its `event_id`.
 */
export function hashAndSignEvent<T extends PDU>(pdu: T, version: RoomVersion, serverName: string, key: SigningKey): T {
  const hashed = { ...pdu, hashes: { sha256: computeContentHash(pdu, version) } };
  const redacted = redactEvent(toWireFormat(hashed, version), version);
  const signed = signJson(redacted, serverName, key, { strict: version.strictCanonicalJson });
  return { ...hashed, signatures: signed.signatures };
}

/**
 * Verify `serverName`'s signature under `keyId` on the event (full or
 * redacted copy alike). Key lookup and validity periods are the caller's
 * concern; this only checks the cryptography.
 */
export function verifyEventSignature(
  pdu: object,
  version: RoomVersion,
  serverName: string,
  keyId: string,
  publicKeyB64: string,
): boolean {
  const redacted = redactEvent(toWireFormat(pdu, version), version);
  return verifyJsonSignature(redacted, serverName, keyId, publicKeyB64, { strict: version.strictCanonicalJson });
}

/**
 * Servers whose signatures the spec requires on an event, before key lookup:
 * the sender's server; for v1/v2 also the server of the event id; and for
 * restricted-room joins (v8+) the server of `join_authorised_via_users_server`.
 * Third-party-invite membership events may be sent by a server other than the
 * sender's, so for those the sender's server is still listed and callers may
 * relax the requirement as the spec allows.
 */
export function requiredSignatureServers(pdu: PDU, version: RoomVersion): string[] {
  const servers = new Set<string>();
  const domainOf = (id: unknown): string | null => (typeof id === 'string' ? serverNameOf(id) : null);
  const senderServer = domainOf(pdu.sender);
  if (senderServer) servers.add(senderServer);
  if (version.eventIdFormat === 'v1') {
    const idServer = domainOf(pdu.event_id);
    if (idServer) servers.add(idServer);
  }
  if (
    version.restrictedJoinRule &&
    pdu.type === 'm.room.member' &&
    pdu.content?.membership === 'join' &&
    typeof pdu.content.join_authorised_via_users_server === 'string'
  ) {
    const authServer = domainOf(pdu.content.join_authorised_via_users_server);
    if (authServer) servers.add(authServer);
  }
  return [...servers];
}
