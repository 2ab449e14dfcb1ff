import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  effectivePowerLevels,
  getRoomVersion,
  notificationLevel,
  parsePowerLevelValue,
  requiredLevelForAction,
  requiredLevelForEvent,
  roomCreators,
  userPowerLevel,
  type CreateEventLike,
} from '../../src/core/index.js';

const v = (id: string) => getRoomVersion(id)!;
const createV10: CreateEventLike = { sender: '@alice:x', content: { creator: '@alice:x' } };
const createV11: CreateEventLike = { sender: '@alice:x', content: {} };
const createV12: CreateEventLike = { sender: '@alice:x', content: { additional_creators: ['@bob:y', 42, '@bob:y'] } };

describe('defaults', () => {
  test('an empty power levels event yields the spec defaults', () => {
    const pl = effectivePowerLevels({}, createV11, v('11'));
    assert.deepEqual(
      { ban: pl.ban, kick: pl.kick, redact: pl.redact, invite: pl.invite, events_default: pl.events_default, state_default: pl.state_default, users_default: pl.users_default },
      { ban: 50, kick: 50, redact: 50, invite: 0, events_default: 0, state_default: 50, users_default: 0 },
    );
    assert.equal(userPowerLevel(pl, '@alice:x', createV11, v('11')), 0, 'no implicit creator power once a PL event exists');
    assert.equal(notificationLevel(pl, 'room'), 50);
  });

  test('without a power levels event the creator has 100 (v1-11)', () => {
    const plV10 = effectivePowerLevels(undefined, createV10, v('10'));
    assert.equal(userPowerLevel(plV10, '@alice:x', createV10, v('10')), 100);
    assert.equal(userPowerLevel(plV10, '@bob:x', createV10, v('10')), 0);
    // v1-10 look at content.creator, not the sender.
    const oddCreate: CreateEventLike = { sender: '@alice:x', content: { creator: '@carol:x' } };
    assert.equal(userPowerLevel(effectivePowerLevels(undefined, oddCreate, v('10')), '@carol:x', oddCreate, v('10')), 100);
    assert.equal(userPowerLevel(effectivePowerLevels(undefined, oddCreate, v('11')), '@alice:x', oddCreate, v('11')), 100);
  });

  test('v12 creators have infinite power, with or without a power levels event', () => {
    for (const content of [undefined, { users: { '@dave:x': 100 } }]) {
      const pl = effectivePowerLevels(content, createV12, v('12'));
      assert.equal(userPowerLevel(pl, '@alice:x', createV12, v('12')), Infinity);
      assert.equal(userPowerLevel(pl, '@bob:y', createV12, v('12')), Infinity);
    }
    const pl = effectivePowerLevels({ users: { '@dave:x': 100 } }, createV12, v('12'));
    assert.equal(userPowerLevel(pl, '@dave:x', createV12, v('12')), 100);
    assert.deepEqual(roomCreators(createV12, v('12')), ['@alice:x', '@bob:y']);
    // additional_creators means nothing before v12.
    assert.deepEqual(roomCreators(createV12, v('11')), ['@alice:x']);
  });
});

describe('value parsing per room version', () => {
  test('strings are integers before v10 and invalid from v10', () => {
    for (const s of ['50', ' +50 ', '0050', '-7']) {
      assert.equal(typeof parsePowerLevelValue(s, v('9')), 'number', s);
      assert.equal(parsePowerLevelValue(s, v('10')), undefined, s);
    }
    assert.equal(parsePowerLevelValue(' +50 ', v('9')), 50);
    assert.equal(parsePowerLevelValue('-7', v('1')), -7);
    for (const bad of ['5.5', '1e3', 'abc', '', '++1']) assert.equal(parsePowerLevelValue(bad, v('9')), undefined, bad);
  });

  test('floats are truncated in v1-5 and rejected in v10+', () => {
    assert.equal(parsePowerLevelValue(50.57, v('5')), 50);
    assert.equal(parsePowerLevelValue(-1.5, v('5')), -1);
    assert.equal(parsePowerLevelValue(50.57, v('10')), undefined);
    assert.equal(parsePowerLevelValue(Infinity, v('1')), undefined);
    for (const bad of [null, true, [], {}]) assert.equal(parsePowerLevelValue(bad, v('1')), undefined);
  });

  test('stringy content is honoured in old rooms', () => {
    const content = { ban: '60', users: { '@bob:x': '75' }, events: { 'm.room.name': '20' }, users_default: ' 5 ' };
    const pl = effectivePowerLevels(content, createV10, v('9'));
    assert.equal(pl.ban, 60);
    assert.equal(userPowerLevel(pl, '@bob:x', createV10, v('9')), 75);
    assert.equal(userPowerLevel(pl, '@eve:x', createV10, v('9')), 5);
    assert.equal(requiredLevelForEvent(pl, 'm.room.name', true), 20);
  });

  test('invalid values fall back to defaults rather than poisoning comparisons', () => {
    const pl = effectivePowerLevels({ ban: 'lots', users: { '@bob:x': null } }, createV10, v('10'));
    assert.equal(pl.ban, 50);
    assert.equal(userPowerLevel(pl, '@bob:x', createV10, v('10')), 0);
  });

  test('user ids that shadow Object.prototype names are plain data', () => {
    const pl = effectivePowerLevels(JSON.parse('{"users":{"__proto__":5}}'), createV11, v('11'));
    assert.equal(userPowerLevel(pl, '__proto__', createV11, v('11')), 5);
    assert.equal(userPowerLevel(pl, 'constructor', createV11, v('11')), 0);
    assert.equal(requiredLevelForEvent(pl, 'toString', false), 0);
  });
});

describe('required levels', () => {
  const pl = effectivePowerLevels(
    { events: { 'm.room.name': 10, 'm.reaction': 5 }, events_default: 1, state_default: 60, invite: 3, kick: 4, ban: 6, redact: 7, notifications: { room: 20, custom: 1 } },
    createV11,
    v('11'),
  );
  test('events overrides beat the state/message defaults', () => {
    assert.equal(requiredLevelForEvent(pl, 'm.room.name', true), 10);
    assert.equal(requiredLevelForEvent(pl, 'm.reaction', false), 5);
    assert.equal(requiredLevelForEvent(pl, 'm.room.topic', true), 60);
    assert.equal(requiredLevelForEvent(pl, 'm.room.message', false), 1);
  });
  test('named actions and notifications', () => {
    assert.deepEqual((['invite', 'kick', 'ban', 'redact'] as const).map((a) => requiredLevelForAction(pl, a)), [3, 4, 6, 7]);
    assert.equal(notificationLevel(pl, 'room'), 20);
    assert.equal(notificationLevel(pl, 'custom'), 1);
    assert.equal(notificationLevel(pl, 'unknown'), 50);
  });
});
