import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getRoomVersion, redactEvent, type PDU } from '../../src/core/index.js';

const v = (id: string) => getRoomVersion(id)!;

function event(type: string, content: Record<string, unknown>, extra: Record<string, unknown> = {}): PDU {
  return {
    event_id: '$e:example.org',
    room_id: '!r:example.org',
    type,
    state_key: '',
    sender: '@u:example.org',
    content,
    origin_server_ts: 1,
    depth: 2,
    prev_events: ['$p'],
    auth_events: ['$a'],
    hashes: { sha256: 'h' },
    signatures: { 'example.org': { 'ed25519:1': 's' } },
    unsigned: { age: 10, redacted_because: {} },
    origin: 'example.org',
    membership: 'join',
    prev_state: [],
    age_ts: 5,
    custom_top_level: true,
    ...extra,
  };
}

const contentAfter = (e: PDU, versionId: string) => redactEvent(e, v(versionId)).content;

describe('top-level keys', () => {
  test('v1-10 keep origin, membership and prev_state; drop unsigned and unknown keys', () => {
    const redacted = redactEvent(event('m.room.message', { body: 'x' }), v('10'));
    assert.deepEqual(Object.keys(redacted).sort(), [
      'auth_events', 'content', 'depth', 'event_id', 'hashes', 'membership', 'origin',
      'origin_server_ts', 'prev_events', 'prev_state', 'room_id', 'sender', 'signatures', 'state_key', 'type',
    ]);
    assert.deepEqual(redacted.content, {});
  });

  test('v11+ also drop origin, membership and prev_state', () => {
    for (const id of ['11', '12']) {
      const redacted = redactEvent(event('m.room.message', { body: 'x' }), v(id));
      assert.deepEqual(Object.keys(redacted).sort(), [
        'auth_events', 'content', 'depth', 'event_id', 'hashes', 'origin_server_ts',
        'prev_events', 'room_id', 'sender', 'signatures', 'state_key', 'type',
      ], id);
    }
  });

  test('pre-v11 top-level redacts is not protected', () => {
    const redacted = redactEvent(event('m.room.redaction', {}, { redacts: '$x' }), v('10'));
    assert.equal('redacts' in redacted, false);
  });

  test('does not mutate the input and only includes keys that were present', () => {
    const input = event('m.room.message', { body: 'x' });
    const { state_key: _sk, ...noStateKey } = input;
    redactEvent(input, v('11'));
    assert.equal(input.content.body, 'x');
    assert.equal('state_key' in redactEvent(noStateKey as PDU, v('11')), false);
  });
});

describe('content allow-lists', () => {
  test('m.room.member keeps membership; join_authorised_via_users_server only from v9', () => {
    const member = event('m.room.member', { membership: 'join', displayname: 'U', join_authorised_via_users_server: '@m:x' });
    assert.deepEqual(contentAfter(member, '8'), { membership: 'join' });
    assert.deepEqual(contentAfter(member, '9'), { membership: 'join', join_authorised_via_users_server: '@m:x' });
  });

  test('m.room.member keeps only third_party_invite.signed from v11', () => {
    const member = event('m.room.member', {
      membership: 'invite',
      third_party_invite: { display_name: 'bob', signed: { mxid: '@b:x', token: 't', signatures: {} } },
    });
    assert.deepEqual(contentAfter(member, '10'), { membership: 'invite' });
    assert.deepEqual(contentAfter(member, '11'), {
      membership: 'invite',
      third_party_invite: { signed: { mxid: '@b:x', token: 't', signatures: {} } },
    });
  });

  test('m.room.create keeps creator before v11 and everything from v11', () => {
    const content = { creator: '@u:example.org', room_version: '11', 'm.federate': false, predecessor: { room_id: '!o:x' } };
    assert.deepEqual(contentAfter(event('m.room.create', content), '10'), { creator: '@u:example.org' });
    assert.deepEqual(contentAfter(event('m.room.create', content), '11'), content);
    assert.deepEqual(contentAfter(event('m.room.create', { additional_creators: ['@b:x'], room_version: '12' }), '12'), {
      additional_creators: ['@b:x'],
      room_version: '12',
    });
  });

  test('m.room.join_rules keeps allow from v8', () => {
    const rules = event('m.room.join_rules', { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: '!s:x' }], other: 1 });
    assert.deepEqual(contentAfter(rules, '7'), { join_rule: 'restricted' });
    assert.deepEqual(contentAfter(rules, '8'), { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: '!s:x' }] });
  });

  test('m.room.power_levels keeps invite only from v11, never notifications', () => {
    const content = {
      ban: 50, events: { x: 1 }, events_default: 0, kick: 50, redact: 50, state_default: 50,
      users: { '@u:x': 100 }, users_default: 0, invite: 0, notifications: { room: 50 },
    };
    const { invite: _i, notifications: _n, ...withoutInvite } = content;
    assert.deepEqual(contentAfter(event('m.room.power_levels', content), '10'), withoutInvite);
    const { notifications: _n2, ...withInvite } = content;
    assert.deepEqual(contentAfter(event('m.room.power_levels', content), '11'), withInvite);
  });

  test('m.room.aliases keeps aliases only in v1-5', () => {
    const aliases = event('m.room.aliases', { aliases: ['#a:x'] });
    assert.deepEqual(contentAfter(aliases, '5'), { aliases: ['#a:x'] });
    assert.deepEqual(contentAfter(aliases, '6'), {});
  });

  test('m.room.history_visibility keeps history_visibility in every version', () => {
    for (const id of ['1', '6', '11', '12']) {
      assert.deepEqual(contentAfter(event('m.room.history_visibility', { history_visibility: 'joined', x: 1 }), id), { history_visibility: 'joined' });
    }
  });

  test('m.room.redaction keeps content.redacts from v11', () => {
    const redaction = event('m.room.redaction', { redacts: '$x', reason: 'spam' });
    assert.deepEqual(contentAfter(redaction, '10'), {});
    assert.deepEqual(contentAfter(redaction, '11'), { redacts: '$x' });
  });

  test('other event types lose all content', () => {
    assert.deepEqual(contentAfter(event('m.room.topic', { topic: 't' }), '12'), {});
    assert.deepEqual(contentAfter(event('m.room.message', { body: 'b', msgtype: 'm.text' }), '1'), {});
  });
});
