import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSigningKey, publicKeyBase64, type SigningKey } from '../../src/core/signing-key.js';
import { hashAndSignEvent } from '../../src/core/event-signing.js';
import { computeEventId } from '../../src/core/event-hashing.js';
import { ROOM_VERSIONS } from '../../src/core/room-versions.js';
import type { PDU } from '../../src/core/events.js';
import { checkIncomingPdu, MAX_PDU_BYTES, type KeyLookup } from '../../src/federation/pdu-checks.js';

const V10 = ROOM_VERSIONS['10'];
/** A syntactically valid v4+ event id. */
const eid = (n: string) => '$' + n.padEnd(43, 'A');
const V1 = ROOM_VERSIONS['1'];
const remoteKey = generateSigningKey('r1');
const otherKey = generateSigningKey('o1');

function lookupFrom(keys: Record<string, SigningKey[]>): KeyLookup {
  return async (server, keyId) => {
    const key = keys[server]?.find((k) => k.keyId === keyId);
    return key ? publicKeyBase64(key) : undefined;
  };
}

const keys = lookupFrom({ 'remote.example': [remoteKey], 'other.example': [otherKey] });

function message(overrides: Partial<PDU> = {}): PDU {
  return {
    room_id: '!room:remote.example', type: 'm.room.message', sender: '@alice:remote.example',
    content: { msgtype: 'm.text', body: 'hello' }, origin_server_ts: 1_700_000_000_000, depth: 5,
    prev_events: [eid('prev')], auth_events: [eid('create'), eid('member')], ...overrides,
  };
}

const signed = (pdu: PDU, server = 'remote.example', key = remoteKey, version = V10) => hashAndSignEvent(pdu, version, server, key);

test('a well-formed, correctly signed event passes with its computed id', async () => {
  const pdu = signed(message());
  const r = await checkIncomingPdu(pdu, V10, keys);
  assert.ok(r.ok, !r.ok ? r.reason : '');
  assert.equal(r.eventId, computeEventId(pdu, V10));
  assert.equal(r.redacted, false);
  assert.deepEqual(r.pdu.content, { msgtype: 'm.text', body: 'hello' });
});

test('content changed after signing: kept, but only as its redacted copy', async () => {
  const pdu = { ...signed(message()), content: { msgtype: 'm.text', body: 'tampered' } };
  const r = await checkIncomingPdu(pdu, V10, keys);
  assert.ok(r.ok, !r.ok ? r.reason : '');
  assert.equal(r.redacted, true);
  assert.deepEqual(r.pdu.content, {});
});

test('a change to a signed (non-content) field breaks the signature and is dropped', async () => {
  const pdu = { ...signed(message()), origin_server_ts: 1_700_000_000_001 };
  const r = await checkIncomingPdu(pdu, V10, keys);
  assert.equal(r.ok, false);
  assert.match(!r.ok ? r.reason : '', /bad signature from remote\.example/);
});

test("signed by another server than the sender's is dropped", async () => {
  const pdu = signed(message(), 'other.example', otherKey);
  const r = await checkIncomingPdu(pdu, V10, keys);
  assert.equal(r.ok, false);
  assert.match(!r.ok ? r.reason : '', /no valid signature from remote\.example/);
});

test('a signature under an unknown key does not count', async () => {
  const unknown = generateSigningKey('zz');
  const r = await checkIncomingPdu(signed(message(), 'remote.example', unknown), V10, keys);
  assert.equal(r.ok, false);
  assert.match(!r.ok ? r.reason : '', /no valid signature from remote\.example/);
});

test('forged signature bytes under a known key are dropped', async () => {
  const pdu = signed(message());
  const sig = pdu.signatures!['remote.example'][remoteKey.keyId];
  const forged = { ...pdu, signatures: { 'remote.example': { [remoteKey.keyId]: (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1) } } };
  const r = await checkIncomingPdu(forged, V10, keys);
  assert.equal(r.ok, false);
  assert.match(!r.ok ? r.reason : '', /bad signature/);
});

test('format: size, references, ids and types are enforced', async () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['not an object', [], /not an object/],
    ['oversized', signed(message({ content: { body: 'x'.repeat(MAX_PDU_BYTES) } })), /larger than/],
    ['too many prev_events', signed(message({ prev_events: Array.from({ length: 21 }, (_, i) => eid(`p${i}`)) })), /prev_events/],
    ['too many auth_events', signed(message({ auth_events: Array.from({ length: 11 }, (_, i) => eid(`a${i}`)) })), /auth_events/],
    ['bad sender', signed(message({ sender: 'alice' })), /sender/],
    ['long type', signed(message({ type: 't'.repeat(256) })), /type/],
    ['float in v10', { ...signed(message()), depth: 1.5 }, /canonical|depth/],
    ['missing room id', signed(message({ room_id: undefined })), /room_id/],
    ['no hashes', { ...message(), signatures: {} }, /hashes/],
  ];
  for (const [name, raw, re] of cases) {
    const r = await checkIncomingPdu(raw, V10, keys);
    assert.equal(r.ok, false, name);
    assert.match(!r.ok ? r.reason : '', re, name);
  }
});

test('v1 rooms also require the signature of the event id server', async () => {
  const base = message({
    event_id: '$abc:other.example', prev_events: [['$p:remote.example', { sha256: 'x' }]] as never,
    auth_events: [['$c:remote.example', { sha256: 'y' }]] as never,
  });
  const onlySender = hashAndSignEvent(base, V1, 'remote.example', remoteKey);
  const r1 = await checkIncomingPdu(onlySender, V1, keys);
  assert.equal(r1.ok, false);
  assert.match(!r1.ok ? r1.reason : '', /other\.example/);
  const both = hashAndSignEvent(onlySender, V1, 'other.example', otherKey);
  const r2 = await checkIncomingPdu(both, V1, keys);
  assert.ok(r2.ok, !r2.ok ? r2.reason : '');
  assert.equal(r2.eventId, '$abc:other.example');
});
