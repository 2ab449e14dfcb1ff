import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { globMatch, matchesFilter, membershipMatches, parseFilterParam } from '../../src/rooms/timeline.js';
import { MatrixError } from '../../src/server/errors.js';

const ev = (type: string, sender = '@a:x', content: Record<string, unknown> = {}, roomId = '!r:x') => ({ type, sender, content, roomId });

describe('RoomEventFilter', () => {
  test('glob patterns', () => {
    assert.equal(globMatch('m.room.*', 'm.room.message'), true);
    assert.equal(globMatch('m.room.*', 'm.roomy'), false);
    assert.equal(globMatch('*', 'anything'), true);
    assert.equal(globMatch('m.room.message', 'm.room.message'), true);
    assert.equal(globMatch('m.room.message', 'm.room.messages'), false);
    assert.equal(globMatch('m.*.topic', 'm.room.topic'), true);
    // Regex metacharacters are literal.
    assert.equal(globMatch('a.b', 'axb'), false);
    assert.equal(globMatch('(x)*', '(x)y'), true);
  });

  test('no filter lets everything through', () => {
    assert.equal(matchesFilter(undefined, ev('m.room.message')), true);
    assert.equal(matchesFilter({}, ev('m.room.message')), true);
  });

  test('types and not_types', () => {
    assert.equal(matchesFilter({ types: ['m.room.message'] }, ev('m.room.message')), true);
    assert.equal(matchesFilter({ types: ['m.room.message'] }, ev('m.room.member')), false);
    assert.equal(matchesFilter({ types: [] }, ev('m.room.member')), false);
    assert.equal(matchesFilter({ types: ['m.*'], not_types: ['m.room.member'] }, ev('m.room.member')), false);
    assert.equal(matchesFilter({ not_types: ['m.room.*'] }, ev('m.reaction')), true);
  });

  test('senders and not_senders', () => {
    assert.equal(matchesFilter({ senders: ['@a:x'] }, ev('t', '@a:x')), true);
    assert.equal(matchesFilter({ senders: ['@a:x'] }, ev('t', '@b:x')), false);
    assert.equal(matchesFilter({ senders: ['@a:x'], not_senders: ['@a:x'] }, ev('t', '@a:x')), false);
  });

  test('rooms and not_rooms', () => {
    assert.equal(matchesFilter({ rooms: ['!r:x'] }, ev('t')), true);
    assert.equal(matchesFilter({ rooms: ['!other:x'] }, ev('t')), false);
    assert.equal(matchesFilter({ not_rooms: ['!r:x'] }, ev('t')), false);
  });

  test('contains_url', () => {
    assert.equal(matchesFilter({ contains_url: true }, ev('m.room.message', '@a:x', { url: 'mxc://x/y' })), true);
    assert.equal(matchesFilter({ contains_url: true }, ev('m.room.message', '@a:x', { body: 'x' })), false);
    assert.equal(matchesFilter({ contains_url: false }, ev('m.room.message', '@a:x', { url: 'mxc://x/y' })), false);
    assert.equal(matchesFilter({ contains_url: false }, ev('m.room.message', '@a:x', {})), true);
  });

  test('parsing the query parameter', () => {
    assert.equal(parseFilterParam(undefined), undefined);
    assert.equal(parseFilterParam(''), undefined);
    assert.deepEqual(parseFilterParam('{"types":["m.room.message"],"lazy_load_members":true}'), { types: ['m.room.message'], lazy_load_members: true });
    for (const bad of ['{', '[]', '"x"', '{"types":"m.room.message"}', '{"contains_url":"yes"}']) {
      assert.throws(() => parseFilterParam(bad), (e: unknown) => e instanceof MatrixError && e.errcode === 'M_INVALID_PARAM' && e.status === 400, bad);
    }
  });
});

describe('/members membership filters', () => {
  test('single parameters', () => {
    assert.equal(membershipMatches('join', 'join'), true);
    assert.equal(membershipMatches('leave', 'join'), false);
    assert.equal(membershipMatches('leave', undefined, 'leave'), false);
    assert.equal(membershipMatches('join', undefined, 'leave'), true);
    assert.equal(membershipMatches('ban'), true);
  });

  test('both parameters combine with "or" (spec)', () => {
    assert.equal(membershipMatches('join', 'join', 'leave'), true);
    assert.equal(membershipMatches('invite', 'join', 'leave'), true);
    assert.equal(membershipMatches('leave', 'join', 'leave'), false);
    assert.equal(membershipMatches('leave', 'leave', 'leave'), true);
  });
});
