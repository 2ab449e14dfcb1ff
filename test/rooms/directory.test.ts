import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { aliasFromLocalpart, describeRoom, matchesPublicRoomsFilter, parseDirectoryToken } from '../../src/rooms/directory.js';
import { stateKeyOf } from '../../src/rooms/state-store.js';
import type { StoredEvent } from '../../src/rooms/types.js';
import { MatrixError } from '../../src/server/errors.js';

function stateEv(type: string, content: Record<string, unknown>, stateKey = ''): [string, StoredEvent] {
  return [stateKeyOf(type, stateKey), {
    nid: 1, streamPos: 1, stateGroup: 1, redactedBy: null, txnDeviceId: null, txnId: null,
    pdu: {
      event_id: `$${type}`, room_id: '!r:x', type, state_key: stateKey, sender: '@a:x', content,
      origin_server_ts: 0, depth: 1, prev_events: [], auth_events: [],
    },
  }];
}

const isInvalidParam = (e: unknown) => e instanceof MatrixError && e.errcode === 'M_INVALID_PARAM';

describe('room directory', () => {
  test('describeRoom reads the current state', () => {
    const state = new Map([
      stateEv('m.room.create', { room_version: '11', type: 'm.space' }),
      stateEv('m.room.name', { name: 'The Pub' }),
      stateEv('m.room.topic', { topic: 'Beer' }),
      stateEv('m.room.canonical_alias', { alias: '#pub:x' }),
      stateEv('m.room.join_rules', { join_rule: 'public' }),
      stateEv('m.room.history_visibility', { history_visibility: 'world_readable' }),
      stateEv('m.room.guest_access', { guest_access: 'can_join' }),
      stateEv('m.room.avatar', { url: 'mxc://x/y' }),
    ]);
    assert.deepEqual(describeRoom('!r:x', state, 3), {
      room_id: '!r:x', num_joined_members: 3, world_readable: true, guest_can_join: true,
      name: 'The Pub', topic: 'Beer', canonical_alias: '#pub:x', join_rule: 'public', avatar_url: 'mxc://x/y', room_type: 'm.space',
    });
  });

  test('describeRoom with bare state', () => {
    const d = describeRoom('!r:x', new Map([stateEv('m.room.create', {})]), 0);
    assert.deepEqual(d, { room_id: '!r:x', num_joined_members: 0, world_readable: false, guest_can_join: false });
  });

  test('rich topic falls back to the text/plain body', () => {
    const d = describeRoom('!r:x', new Map([stateEv('m.room.topic', { 'm.topic': { 'm.text': [{ mimetype: 'text/html', body: '<b>x</b>' }, { body: 'plain' }] } })]), 0);
    assert.equal(d.topic, 'plain');
  });

  test('filter: search term and room types', () => {
    const chunk = { room_id: '!r:x', name: 'The Pub', topic: 'Beer', num_joined_members: 1, world_readable: false, guest_can_join: false };
    assert.equal(matchesPublicRoomsFilter(chunk, undefined), true);
    assert.equal(matchesPublicRoomsFilter(chunk, { generic_search_term: 'pub' }), true);
    assert.equal(matchesPublicRoomsFilter(chunk, { generic_search_term: 'BEER' }), true);
    assert.equal(matchesPublicRoomsFilter(chunk, { generic_search_term: 'wine' }), false);
    assert.equal(matchesPublicRoomsFilter(chunk, { room_types: [null] }), true);
    assert.equal(matchesPublicRoomsFilter(chunk, { room_types: ['m.space'] }), false);
    assert.equal(matchesPublicRoomsFilter({ ...chunk, room_type: 'm.space' }, { room_types: ['m.space'] }), true);
  });

  test('since tokens', () => {
    assert.equal(parseDirectoryToken(undefined), 0);
    assert.equal(parseDirectoryToken('o20'), 20);
    assert.throws(() => parseDirectoryToken('p20'), isInvalidParam);
  });

  test('alias localparts', () => {
    assert.equal(aliasFromLocalpart('pub', 'example.org'), '#pub:example.org');
    for (const bad of ['', 'a:b', 'a b', '#a', 'x'.repeat(300)]) assert.throws(() => aliasFromLocalpart(bad, 'example.org'), isInvalidParam, bad);
  });
});
