import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  authEventIds,
  checkContentHash,
  computeContentHash,
  computeEventId,
  computeReferenceHash,
  computeRoomIdFromCreateEvent,
  createEventIdFromRoomId,
  encodeBase64,
  encodeBase64Url,
  getRoomVersion,
  isValidEventId,
  isValidRoomId,
  makeEventReferences,
  prevEventIds,
  redactsOf,
  verifyEventSignature,
  withContentHash,
  type PDU,
} from '../../src/core/index.js';
import { FEDERATION_PDUS } from './fixtures/federation-pdus.js';

const v = (id: string) => getRoomVersion(id)!;

describe('real federation PDUs', () => {
  for (const fixture of FEDERATION_PDUS) {
    describe(fixture.name, () => {
      const version = v(fixture.roomVersion);
      const pdu = JSON.parse(fixture.json) as PDU;

      test('event id matches', () => {
        assert.equal(computeEventId(pdu, version), fixture.eventId);
        assert.ok(isValidEventId(fixture.eventId, version));
      });

      test(fixture.redacted ? 'content hash does not match (served redacted)' : 'content hash matches', () => {
        assert.equal(checkContentHash(pdu, version), !fixture.redacted);
      });

      for (const [server, keys] of Object.entries(fixture.keys)) {
        for (const [keyId, publicKey] of Object.entries(keys)) {
          test(`signature from ${server} ${keyId} verifies`, () => {
            assert.equal(verifyEventSignature(pdu, version, server, keyId, publicKey), true);
            const tampered = { ...pdu, origin_server_ts: pdu.origin_server_ts + 1 };
            assert.equal(verifyEventSignature(tampered, version, server, keyId, publicKey), false);
          });
        }
      }
    });
  }
});

describe('event ids', () => {
  const createJson = FEDERATION_PDUS.find((f) => f.name.startsWith('m.room.create in v3'))!.json;
  const create = JSON.parse(createJson) as PDU;

  test('v3 uses standard base64 and v4+ url-safe base64 of the same reference hash', () => {
    const hash = computeReferenceHash(create, v('3'));
    assert.equal(hash.length, 32);
    assert.equal(computeEventId(create, v('3')), `$${encodeBase64(hash)}`);
    assert.equal(computeEventId(create, v('4')), `$${encodeBase64Url(hash)}`);
    assert.equal(computeEventId(create, v('3')), '$RrGxF28UrHLmoASHndYb9Jb/1SFww2ptmtur9INS438');
    assert.equal(computeEventId(create, v('4')), '$RrGxF28UrHLmoASHndYb9Jb_1SFww2ptmtur9INS438');
  });

  test('the reference hash ignores unsigned data, signatures and redactable content', () => {
    const base = computeReferenceHash(create, v('4'));
    const noisy = { ...create, unsigned: { age: 1 }, signatures: {}, extra_top_level: 1, content: { ...create.content, junk: 1 } };
    // m.room.create before v11 keeps only `creator`, so `junk` and even
    // `room_version`/`predecessor` are outside the reference hash.
    assert.deepEqual(computeReferenceHash(noisy, v('4')), base);
    assert.notDeepEqual(computeReferenceHash({ ...create, depth: 2 }, v('4')), base);
  });

  test('v1/v2 event ids are random and carry the server name', () => {
    const a = computeEventId(create, v('1'), 'example.org');
    const b = computeEventId(create, v('2'), 'example.org');
    assert.match(a, /^\$[A-Za-z]{18}:example\.org$/);
    assert.notEqual(a, b);
    assert.ok(isValidEventId(a, v('1')));
    assert.throws(() => computeEventId(create, v('1')), /server name/);
  });

  test('a v1 event with an event_id keeps it in the reference hash', () => {
    const ev: PDU = { ...create, event_id: '$a:jki.re' };
    assert.notDeepEqual(computeReferenceHash(ev, v('1')), computeReferenceHash({ ...ev, event_id: '$b:jki.re' }, v('1')));
    // ...but from v3 on event_id is not part of the format at all.
    assert.deepEqual(computeReferenceHash(ev, v('4')), computeReferenceHash(create, v('4')));
  });
});

describe('v12 room ids', () => {
  const fixture = FEDERATION_PDUS.find((f) => f.name === 'm.room.create in v12 room')!;
  const create = JSON.parse(fixture.json) as PDU;

  test('room id is "!" + url-safe reference hash of the create event', () => {
    const roomId = computeRoomIdFromCreateEvent(create);
    assert.equal(roomId, '!mauT12AzsoqxV7Abvy_ApA-HNPK1LcT4GbP70_AOPyQ');
    assert.equal(createEventIdFromRoomId(roomId), fixture.eventId);
    assert.ok(isValidRoomId(roomId, v('12')));
    assert.equal(isValidRoomId(roomId, v('11')), false);
  });

  test('v12 keeps the whole create content in the hash', () => {
    const changed = { ...create, content: { ...create.content, 'fi.mau.randomness': 'other' } };
    assert.notEqual(computeRoomIdFromCreateEvent(changed), computeRoomIdFromCreateEvent(create));
  });
});

describe('content hashes', () => {
  const pdu: PDU = {
    room_id: '!r:example.org',
    sender: '@u:example.org',
    type: 'm.room.message',
    content: { body: 'hi' },
    origin_server_ts: 1,
    depth: 1,
    prev_events: [],
    auth_events: [],
  };

  test('covers content but not unsigned, signatures or hashes', () => {
    const h = computeContentHash(pdu, v('11'));
    assert.match(h, /^[A-Za-z0-9+/]{43}$/);
    assert.equal(computeContentHash({ ...pdu, unsigned: { age: 3 }, signatures: { x: {} }, hashes: { sha256: 'zz' } }, v('11')), h);
    assert.notEqual(computeContentHash({ ...pdu, content: { body: 'ho' } }, v('11')), h);
  });

  test('withContentHash adds a hash that checkContentHash accepts', () => {
    const hashed = withContentHash(pdu, v('11'));
    assert.equal(hashed.hashes.sha256, computeContentHash(pdu, v('11')));
    assert.equal(checkContentHash(hashed, v('11')), true);
    assert.equal(pdu.hashes, undefined, 'input is not mutated');
  });

  test('v1-5 events with float content can be hashed; v6+ refuse them', () => {
    const floaty = { ...pdu, content: { level: 50.5 } };
    assert.match(computeContentHash(floaty, v('5')), /^[A-Za-z0-9+/]{43}$/);
    assert.throws(() => computeContentHash(floaty, v('6')));
  });
});

describe('event reference helpers', () => {
  test('prevEventIds/authEventIds read both v1 pairs and plain ids', () => {
    const v1Style = { prev_events: [['$a:x', { sha256: 'h' }]], auth_events: [['$b:x', { sha256: 'h' }], ['$c:x', {}]] } as Pick<PDU, 'prev_events' | 'auth_events'>;
    assert.deepEqual(prevEventIds(v1Style), ['$a:x']);
    assert.deepEqual(authEventIds(v1Style), ['$b:x', '$c:x']);
    assert.deepEqual(prevEventIds({ prev_events: ['$1', '$2'] }), ['$1', '$2']);
  });

  test('makeEventReferences builds the right format for the room version', () => {
    const refs = [{ eventId: '$a:x', sha256: 'abc' }];
    assert.deepEqual(makeEventReferences(v('2'), refs), [['$a:x', { sha256: 'abc' }]]);
    assert.deepEqual(makeEventReferences(v('3'), refs), ['$a:x']);
  });

  test('redactsOf reads content.redacts from v11 and the top level before', () => {
    const redaction = { type: 'm.room.redaction', redacts: '$top', content: { redacts: '$inner' } } as unknown as PDU;
    assert.equal(redactsOf(redaction, v('10')), '$top');
    assert.equal(redactsOf(redaction, v('11')), '$inner');
    assert.equal(redactsOf({ ...redaction, content: {} }, v('11')), '$top');
  });
});
