/**
 * The pure push rule engine (src/core/push-rules.ts) against the examples
 * and definitions in the spec's Push Notifications module.
 *
 *   node --import tsx --test test/push/push-rules.test.ts
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  RULE_KINDS,
  actionsOutcome,
  conditionMatches,
  emptyUserRules,
  evaluatePushRules,
  globMatches,
  mergeRules,
  rulesContent,
  serverDefaultRules,
  splitDottedPath,
  userRulesFromContent,
  validateActions,
  validateConditions,
  type PushCondition,
  type PushEvalContext,
  type PushEvent,
  type UserPushRules,
} from '../../src/core/push-rules.js';

const ME = '@bob:example.org';
const ctx = (over: Partial<PushEvalContext> = {}): PushEvalContext => ({
  userId: ME, memberCount: 5, senderPowerLevel: 0, notificationLevels: {}, displayName: 'Bob', ...over,
});
const msg = (content: Record<string, unknown>, over: Partial<PushEvent> = {}): PushEvent => ({
  type: 'm.room.message', sender: '@alice:example.org', room_id: '!room:example.org', event_id: '$e', content, ...over,
});
const cond = (c: PushCondition, ev: PushEvent, c2 = ctx()) => conditionMatches(c, ev, c2);
const defaults = () => mergeRules(ME, emptyUserRules());

describe('server-default rules', () => {
  test('ids and order are exactly the spec list', () => {
    const rs = serverDefaultRules(ME);
    assert.deepEqual(rs.override.map((r) => r.rule_id), [
      '.m.rule.master', '.m.rule.suppress_notices', '.m.rule.invite_for_me', '.m.rule.member_event',
      '.m.rule.is_user_mention', '.m.rule.is_room_mention', '.m.rule.tombstone', '.m.rule.reaction',
      '.m.rule.room.server_acl', '.m.rule.suppress_edits',
    ]);
    assert.deepEqual(rs.content, []);
    assert.deepEqual(rs.room, []);
    assert.deepEqual(rs.sender, []);
    assert.deepEqual(rs.underride.map((r) => r.rule_id), [
      '.m.rule.call', '.m.rule.encrypted_room_one_to_one', '.m.rule.room_one_to_one', '.m.rule.message', '.m.rule.encrypted',
    ]);
    for (const kind of RULE_KINDS) for (const r of rs[kind]) assert.equal(r.default, true, r.rule_id);
  });

  test('definitions match the spec', () => {
    const rs = serverDefaultRules(ME);
    const get = (id: string) => [...rs.override, ...rs.underride].find((r) => r.rule_id === id);
    assert.deepEqual(get('.m.rule.master'), { rule_id: '.m.rule.master', default: true, enabled: false, conditions: [], actions: [] });
    assert.deepEqual(get('.m.rule.invite_for_me'), {
      rule_id: '.m.rule.invite_for_me', default: true, enabled: true,
      conditions: [
        { kind: 'event_match', key: 'type', pattern: 'm.room.member' },
        { kind: 'event_match', key: 'content.membership', pattern: 'invite' },
        { kind: 'event_match', key: 'state_key', pattern: ME },
      ],
      actions: ['notify', { set_tweak: 'sound', value: 'default' }],
    });
    assert.deepEqual(get('.m.rule.is_user_mention'), {
      rule_id: '.m.rule.is_user_mention', default: true, enabled: true,
      conditions: [{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: ME }],
      actions: ['notify', { set_tweak: 'sound', value: 'default' }, { set_tweak: 'highlight' }],
    });
    assert.deepEqual(get('.m.rule.is_room_mention'), {
      rule_id: '.m.rule.is_room_mention', default: true, enabled: true,
      conditions: [
        { kind: 'event_property_is', key: 'content.m\\.mentions.room', value: true },
        { kind: 'sender_notification_permission', key: 'room' },
      ],
      actions: ['notify', { set_tweak: 'highlight' }],
    });
    assert.deepEqual(get('.m.rule.tombstone')?.conditions, [
      { kind: 'event_match', key: 'type', pattern: 'm.room.tombstone' },
      { kind: 'event_match', key: 'state_key', pattern: '' },
    ]);
    assert.deepEqual(get('.m.rule.suppress_edits')?.conditions, [
      { kind: 'event_property_is', key: 'content.m\\.relates_to.rel_type', value: 'm.replace' },
    ]);
    assert.deepEqual(get('.m.rule.call')?.actions, ['notify', { set_tweak: 'sound', value: 'ring' }]);
    assert.deepEqual(get('.m.rule.encrypted_room_one_to_one')?.conditions, [
      { kind: 'room_member_count', is: '2' }, { kind: 'event_match', key: 'type', pattern: 'm.room.encrypted' },
    ]);
    assert.deepEqual(get('.m.rule.message')?.actions, ['notify']);
  });

  test('the legacy body-based mention rules are gone (spec v1.17, MSC4210)', () => {
    const ids = Object.values(serverDefaultRules(ME)).flat().map((r) => r.rule_id);
    for (const id of ['.m.rule.contains_display_name', '.m.rule.roomnotif', '.m.rule.contains_user_name']) assert.ok(!ids.includes(id), id);
  });
});

describe('event_match (spec examples)', () => {
  const topic = (t: unknown) => ({ type: 'm.room.topic', sender: '@example:example.org', state_key: '', content: { topic: t } }) as PushEvent;
  const c = { kind: 'event_match', key: 'content.topic', pattern: 'lunc?*' };
  test('matches the whole value, case-insensitively, * may be empty', () => {
    assert.equal(cond(c, topic('Lunch plans')), true);
    assert.equal(cond(c, topic('LUNCH')), true);
  });
  test('does not match', () => {
    assert.equal(cond(c, topic(' lunch')), false, 'leading space');
    assert.equal(cond(c, topic('lunc')), false, '? needs a character');
    assert.equal(cond(c, topic(null)), false, 'not a string');
    assert.equal(cond({ kind: 'event_match', key: 'content.nope', pattern: '*' }, topic('x')), false, 'absent key never matches, even *');
    assert.equal(cond({ kind: 'event_match', key: 'content.topic', pattern: '*' }, topic(5)), false);
  });
  test('content.body matches at word boundaries', () => {
    const b = { kind: 'event_match', key: 'content.body', pattern: 'ex*ple' };
    assert.equal(cond(b, msg({ body: 'An example event.' })), true);
    assert.equal(cond(b, msg({ body: 'exple' })), true);
    assert.equal(cond(b, msg({ body: 'An exciting triple-whammy' })), true);
    assert.equal(cond(b, msg({ body: 'Anexample event' })), false, 'no boundary before');
    assert.equal(cond(b, msg({ body: 'examples' })), false, 'no boundary after');
    const cake = { kind: 'event_match', key: 'content.body', pattern: 'cake' };
    assert.equal(cond(cake, msg({ body: 'I like CAKE!' })), true);
    assert.equal(cond(cake, msg({ body: 'pancakes' })), false);
    assert.equal(cond(cake, msg({ body: 'cake_shop' })), false, '_ is a word character');
    assert.equal(cond(cake, msg({ body: 'cake\nshop' })), true);
  });
  test('other keys match the whole value, not words', () => {
    assert.equal(cond({ kind: 'event_match', key: 'content.msgtype', pattern: 'notice' }, msg({ msgtype: 'm.notice' })), false);
    assert.equal(cond({ kind: 'event_match', key: 'content.msgtype', pattern: 'm.notice' }, msg({ msgtype: 'm.notice' })), true);
    assert.equal(cond({ kind: 'event_match', key: 'type', pattern: 'm.room.*' }, msg({})), true);
  });
  test('? matches exactly one character (code point)', () => {
    assert.equal(globMatches('a?c', 'abc'), true);
    assert.equal(globMatches('a?c', 'ac'), false);
    assert.equal(globMatches('a?c', 'a😀c'), true);
    assert.equal(globMatches('a?c', 'abbc'), false);
  });
  test('pathological patterns stay fast', () => {
    const body = 'a'.repeat(65_000);
    const start = process.hrtime.bigint();
    assert.equal(globMatches('*a*a*a*a*a*a*a*a*b', body), false);
    assert.equal(globMatches('a*a*a*a*a*a*a*a*b', body, { wordBoundaries: true }), false);
    assert.equal(globMatches('a*a*a*a*a*a*a*a', body, { wordBoundaries: true }), true);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    assert.ok(ms < 2000, `took ${ms} ms`);
  });
});

describe('dotted paths', () => {
  test('escapes per the spec appendix', () => {
    assert.deepEqual(splitDottedPath('content.body'), ['content', 'body']);
    assert.deepEqual(splitDottedPath('content.m\\.relates_to'), ['content', 'm.relates_to']);
    assert.deepEqual(splitDottedPath('content.m\\\\foo'), ['content', 'm\\foo']);
    assert.deepEqual(splitDottedPath('content.m\\xfoo'), ['content', 'm\\xfoo'], 'other escapes are left as-is');
  });
  test('a dotted property is not a nested one', () => {
    const ev = msg({ 'm.relates_to': { rel_type: 'm.replace' }, m: { relates_to: { rel_type: 'x' } } });
    assert.equal(cond({ kind: 'event_property_is', key: 'content.m\\.relates_to.rel_type', value: 'm.replace' }, ev), true);
    assert.equal(cond({ kind: 'event_property_is', key: 'content.m.relates_to.rel_type', value: 'x' }, ev), true);
    assert.equal(cond({ kind: 'event_property_is', key: 'content.m.relates_to.rel_type', value: 'm.replace' }, ev), false);
  });
});

describe('event_property_is / event_property_contains (spec examples)', () => {
  const create = (federate: unknown) => ({
    type: 'm.room.create', sender: '@example:example.org', state_key: '',
    content: { creator: '@example:example.org', 'm.federate': federate, room_version: '1' },
  }) as PushEvent;
  const is = { kind: 'event_property_is', key: 'content.m\\.federate', value: true };
  test('exact values only', () => {
    assert.equal(cond(is, create(true)), true);
    assert.equal(cond(is, create('true')), false);
    assert.equal(cond(is, create(1)), false);
    assert.equal(cond({ kind: 'event_property_is', key: 'content.x', value: null }, msg({ x: null })), true, 'null is a value');
    assert.equal(cond({ kind: 'event_property_is', key: 'content.x', value: null }, msg({})), false, 'absent is not null');
    assert.equal(cond({ kind: 'event_property_is', key: 'content.x', value: 'a' }, msg({ x: ['a'] })), false, 'compound values never match');
  });
  test('contains', () => {
    const ev = {
      type: 'm.room.canonical_alias', sender: '@example:example.org', state_key: '',
      content: { alias: '#somewhere:localhost', alt_aliases: ['#somewhere:example.org', '#myroom:example.com'] },
    } as PushEvent;
    assert.equal(cond({ kind: 'event_property_contains', key: 'content.alt_aliases', value: '#myroom:example.com' }, ev), true);
    assert.equal(cond({ kind: 'event_property_contains', key: 'content.alt_aliases', value: ':example.com' }, ev), false);
    assert.equal(cond({ kind: 'event_property_contains', key: 'content.alias', value: '#somewhere:localhost' }, ev), false, 'not an array');
  });
});

describe('other conditions', () => {
  test('room_member_count', () => {
    const c = (is: string, n: number) => cond({ kind: 'room_member_count', is }, msg({}), ctx({ memberCount: n }));
    assert.equal(c('2', 2), true);
    assert.equal(c('2', 3), false);
    assert.equal(c('==2', 2), true);
    assert.equal(c('<2', 1), true);
    assert.equal(c('<2', 2), false);
    assert.equal(c('>2', 3), true);
    assert.equal(c('<=10', 10), true);
    assert.equal(c('>=10', 9), false);
    assert.equal(c('~2', 2), false, 'unparsable never matches');
  });
  test('sender_notification_permission', () => {
    const c = { kind: 'sender_notification_permission', key: 'room' };
    assert.equal(cond(c, msg({}), ctx({ senderPowerLevel: 49 })), false, 'default level 50');
    assert.equal(cond(c, msg({}), ctx({ senderPowerLevel: 50 })), true);
    assert.equal(cond(c, msg({}), ctx({ senderPowerLevel: 10, notificationLevels: { room: 10 } })), true);
    assert.equal(cond(c, msg({}), ctx({ senderPowerLevel: Infinity })), true);
  });
  test('contains_display_name', () => {
    const c = { kind: 'contains_display_name' };
    assert.equal(cond(c, msg({ body: 'hey bob, lunch?' })), true);
    assert.equal(cond(c, msg({ body: 'bobby' })), false);
    assert.equal(cond(c, msg({ body: 'hey bob' }), ctx({ displayName: null })), false);
    assert.equal(cond(c, msg({ body: 'hi B*b' }), ctx({ displayName: 'B*b' })), true, 'the name is literal');
    assert.equal(cond(c, msg({ body: 'hi Bob' }), ctx({ displayName: 'B*b' })), false);
  });
  test('unknown conditions never match', () => {
    assert.equal(cond({ kind: 'org.example.whatever' }, msg({})), false);
  });
});

describe('evaluation with the default rules', () => {
  const rs = defaults();
  test('a plain message in a group notifies without highlight', () => {
    const out = evaluatePushRules(rs, msg({ msgtype: 'm.text', body: 'hello' }), ctx());
    assert.deepEqual(out, { actions: ['notify'], notify: true, highlight: false, rule: { kind: 'underride', rule_id: '.m.rule.message' } });
  });
  test('one-to-one rooms add a sound', () => {
    const out = evaluatePushRules(rs, msg({ msgtype: 'm.text', body: 'hello' }), ctx({ memberCount: 2 }));
    assert.equal(out.rule?.rule_id, '.m.rule.room_one_to_one');
    assert.equal(out.sound, 'default');
  });
  test('user mention highlights', () => {
    const out = evaluatePushRules(rs, msg({ body: 'hi', 'm.mentions': { user_ids: [ME] } }), ctx());
    assert.equal(out.rule?.rule_id, '.m.rule.is_user_mention');
    assert.equal(out.notify, true);
    assert.equal(out.highlight, true);
    const other = evaluatePushRules(rs, msg({ body: 'hi', 'm.mentions': { user_ids: ['@carol:example.org'] } }), ctx());
    assert.equal(other.highlight, false);
  });
  test('a body mention without m.mentions does not highlight', () => {
    assert.equal(evaluatePushRules(rs, msg({ body: '@bob:example.org Bob hi' }), ctx()).highlight, false);
  });
  test('room mention needs the power level', () => {
    const ev = msg({ body: '@room', 'm.mentions': { room: true } });
    assert.equal(evaluatePushRules(rs, ev, ctx({ senderPowerLevel: 0 })).highlight, false);
    const ok = evaluatePushRules(rs, ev, ctx({ senderPowerLevel: 50 }));
    assert.equal(ok.rule?.rule_id, '.m.rule.is_room_mention');
    assert.equal(ok.highlight, true);
  });
  test('notices, edits, reactions, member events and ACLs are silent', () => {
    assert.equal(evaluatePushRules(rs, msg({ msgtype: 'm.notice', body: 'bot' }), ctx()).notify, false);
    assert.equal(evaluatePushRules(rs, msg({ body: '* x', 'm.relates_to': { rel_type: 'm.replace', event_id: '$x' } }), ctx()).notify, false);
    assert.equal(evaluatePushRules(rs, msg({}, { type: 'm.reaction' }), ctx()).notify, false);
    assert.equal(evaluatePushRules(rs, msg({ membership: 'join' }, { type: 'm.room.member', state_key: '@carol:example.org' }), ctx()).notify, false);
    assert.equal(evaluatePushRules(rs, msg({ allow: ['*'] }, { type: 'm.room.server_acl', state_key: '' }), ctx()).notify, false);
    assert.equal(evaluatePushRules(rs, msg({}, { type: 'm.room.topic', state_key: '' }), ctx()).notify, false, 'no rule matches');
  });
  test('invites for me notify, invites for others do not', () => {
    const inv = (who: string) => msg({ membership: 'invite' }, { type: 'm.room.member', state_key: who });
    assert.equal(evaluatePushRules(rs, inv(ME), ctx()).rule?.rule_id, '.m.rule.invite_for_me');
    assert.equal(evaluatePushRules(rs, inv('@carol:example.org'), ctx()).notify, false);
  });
  test('tombstones highlight; calls ring; encrypted events notify', () => {
    const t = evaluatePushRules(rs, msg({ body: 'moved' }, { type: 'm.room.tombstone', state_key: '' }), ctx());
    assert.equal(t.highlight, true);
    assert.equal(evaluatePushRules(rs, msg({ body: 'moved' }, { type: 'm.room.tombstone' }), ctx()).notify, false, 'not a state event');
    assert.equal(evaluatePushRules(rs, msg({}, { type: 'm.call.invite' }), ctx()).sound, 'ring');
    assert.equal(evaluatePushRules(rs, msg({}, { type: 'm.room.encrypted' }), ctx()).rule?.rule_id, '.m.rule.encrypted');
    assert.equal(evaluatePushRules(rs, msg({}, { type: 'm.room.encrypted' }), ctx({ memberCount: 2 })).rule?.rule_id, '.m.rule.encrypted_room_one_to_one');
  });
});

describe('user rules', () => {
  const withRules = (content: unknown) => mergeRules(ME, userRulesFromContent(content));

  test('the master rule beats everything, including user overrides', () => {
    const u = emptyUserRules();
    u.defaults['override/.m.rule.master'] = { enabled: true };
    u.custom.override.push({ rule_id: 'all', default: false, enabled: true, conditions: [], actions: ['notify'] });
    const rs = mergeRules(ME, u);
    assert.deepEqual(rs.override.slice(0, 2).map((r) => r.rule_id), ['.m.rule.master', 'all']);
    const out = evaluatePushRules(rs, msg({ body: 'hi', 'm.mentions': { user_ids: [ME] } }), ctx());
    assert.equal(out.notify, false);
    assert.equal(out.rule?.rule_id, '.m.rule.master');
  });

  test('user rules rank above server-default rules of their kind', () => {
    const u: UserPushRules = emptyUserRules();
    u.custom.underride.push({ rule_id: 'quiet', default: false, enabled: true, conditions: [{ kind: 'event_match', key: 'type', pattern: 'm.room.message' }], actions: [] });
    u.custom.override.push({ rule_id: 'beer', default: false, enabled: true, conditions: [
      { kind: 'event_match', key: 'content.body', pattern: 'beer' }, { kind: 'room_member_count', is: '<=10' },
    ], actions: ['notify', { set_tweak: 'sound', value: 'beeroclock.wav' }] });
    const rs = mergeRules(ME, u);
    assert.equal(rs.underride[0].rule_id, 'quiet');
    assert.equal(rs.override[1].rule_id, 'beer');
    assert.equal(evaluatePushRules(rs, msg({ body: 'hello' }), ctx()).notify, false);
    const beer = evaluatePushRules(rs, msg({ body: 'Beer time' }), ctx());
    assert.equal(beer.sound, 'beeroclock.wav');
    assert.equal(evaluatePushRules(rs, msg({ body: 'Beer time' }), ctx({ memberCount: 11 })).notify, false, 'falls through to quiet');
  });

  test('room, sender and content rules (spec examples)', () => {
    const rs = withRules({ global: {
      room: [{ rule_id: '!dj234r78wl45Gh4D:matrix.org', actions: [], enabled: true, default: false }],
      sender: [{ rule_id: '@spambot:matrix.org', actions: [], enabled: true, default: false }],
      content: [
        { rule_id: 'nocake', pattern: 'cake*lie', actions: ['notify'], enabled: true, default: false },
        { rule_id: 'cake', pattern: 'cake', actions: ['notify', { set_tweak: 'sound', value: 'cakealarm.wav' }], enabled: true, default: false },
      ],
    } });
    assert.equal(evaluatePushRules(rs, msg({ body: 'hi' }, { room_id: '!dj234r78wl45Gh4D:matrix.org' }), ctx()).notify, false);
    assert.equal(evaluatePushRules(rs, msg({ body: 'hi' }, { sender: '@spambot:matrix.org' }), ctx()).notify, false);
    assert.equal(evaluatePushRules(rs, msg({ body: 'the cake is a lie' }), ctx()).rule?.rule_id, 'nocake');
    assert.equal(evaluatePushRules(rs, msg({ body: 'cake!' }), ctx()).sound, 'cakealarm.wav');
    // Content rules come before room rules.
    assert.equal(evaluatePushRules(rs, msg({ body: 'cake' }, { room_id: '!dj234r78wl45Gh4D:matrix.org' }), ctx()).rule?.rule_id, 'cake');
  });

  test('disabled rules never match', () => {
    const u = emptyUserRules();
    u.defaults['underride/.m.rule.message'] = { enabled: false };
    const out = evaluatePushRules(mergeRules(ME, u), msg({ body: 'hello' }), ctx());
    assert.equal(out.notify, false);
    assert.equal(out.rule, undefined);
  });

  test('stored content round-trips; server-default definitions come from the server', () => {
    const u = emptyUserRules();
    u.defaults['underride/.m.rule.message'] = { actions: ['notify', { set_tweak: 'sound', value: 'x' }] };
    u.defaults['override/.m.rule.suppress_notices'] = { enabled: false };
    u.custom.content.push({ rule_id: 'c', default: false, enabled: false, pattern: 'p', actions: ['notify'] });
    const content = rulesContent(mergeRules(ME, u));
    // Tamper with a default's definition: it is not taken from storage.
    const tampered = structuredClone(content);
    tampered.global.underride.find((r) => r.rule_id === '.m.rule.message')!.conditions = [];
    const back = userRulesFromContent(tampered);
    assert.deepEqual(back.custom.content, u.custom.content);
    const again = rulesContent(mergeRules(ME, back));
    assert.deepEqual(again, content);
    assert.equal(again.global.override.find((r) => r.rule_id === '.m.rule.suppress_notices')?.enabled, false);
  });

  test('client format: conditions only on override/underride, pattern only on content', () => {
    const c = rulesContent(withRules({ global: {
      room: [{ rule_id: '!r:x', actions: [], conditions: [{ kind: 'event_match', key: 'room_id', pattern: '!r:x' }] }],
      content: [{ rule_id: 'c', actions: [], pattern: 'x' }],
    } }));
    assert.deepEqual(c.global.room, [{ rule_id: '!r:x', default: false, enabled: true, actions: [] }]);
    assert.deepEqual(c.global.content, [{ rule_id: 'c', default: false, enabled: true, actions: [], pattern: 'x' }]);
    for (const r of c.global.override) assert.ok(Array.isArray(r.conditions));
  });

  test('garbage in storage is skipped', () => {
    const rs = withRules({ global: { override: [null, 5, { rule_id: 7 }, { rule_id: 'bad', conditions: 'x', actions: [] }], content: [{ rule_id: 'np', actions: [] }] } });
    assert.deepEqual(rs.override.filter((r) => !r.default), []);
    assert.deepEqual(rs.content, []);
    assert.deepEqual(withRules('nope'), defaults());
  });
});

describe('actions', () => {
  test('historical actions are ignored', () => {
    assert.deepEqual(actionsOutcome(['dont_notify']), actionsOutcome([]));
    assert.deepEqual(actionsOutcome(['notify', 'coalesce']).actions, ['notify']);
    assert.deepEqual(validateActions(['dont_notify', 'notify']), ['notify']);
  });
  test('highlight without a value is true; false is false', () => {
    assert.equal(actionsOutcome(['notify', { set_tweak: 'highlight' }]).highlight, true);
    assert.equal(actionsOutcome(['notify', { set_tweak: 'highlight', value: false }]).highlight, false);
    assert.equal(actionsOutcome(['notify']).highlight, false);
  });
  test('validation', () => {
    assert.ok(!Array.isArray(validateActions('notify')));
    assert.ok(!Array.isArray(validateActions(['explode'])));
    assert.ok(!Array.isArray(validateActions([{ value: 1 }])));
    assert.ok(!Array.isArray(validateActions([{ set_tweak: 'highlight', value: 'yes' }])));
    assert.deepEqual(validateActions([{ set_tweak: 'custom', value: { a: 1 } }]), [{ set_tweak: 'custom', value: { a: 1 } }], 'tweaks pass through');
    assert.ok(!Array.isArray(validateConditions([{ key: 'type' }])), 'kind is required');
    assert.ok(!Array.isArray(validateConditions([{ kind: 'event_match', key: 'type' }])), 'event_match needs a pattern');
    assert.deepEqual(validateConditions([{ kind: 'org.example.future', x: 1 }]), [{ kind: 'org.example.future', x: 1 }]);
  });
});
