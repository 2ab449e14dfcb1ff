import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MatrixError } from '../../src/server/errors.js';
import {
  applyEventFields, applyLimit, compileFilter, EventMatcher, parseFilter, parseInlineFilter, splitFieldPath, typePattern,
  DEFAULT_TIMELINE_LIMIT,
} from '../../src/sync/filters.js';

const invalid = (fn: () => unknown) =>
  assert.throws(fn, (e: unknown) => e instanceof MatrixError && e.errcode === 'M_INVALID_PARAM');

test('type patterns: * matches any sequence, the rest is literal', () => {
  assert.equal(typePattern('m.room.*')('m.room.message'), true);
  assert.equal(typePattern('m.room.*')('m.roomy'), false);
  assert.equal(typePattern('*')('anything'), true);
  assert.equal(typePattern('m.room.message')('m.room.message'), true);
  assert.equal(typePattern('m.room.message')('m.room.messages'), false);
  // regex characters are literal
  assert.equal(typePattern('a.b')('axb'), false);
  assert.equal(typePattern('a+(b)*')('a+(b)zzz'), true);
});

test('event matcher: types, not_types, senders, not_senders, contains_url', () => {
  const m = new EventMatcher({ types: ['m.room.*'], not_types: ['m.room.member'], senders: ['@a:x', '@b:x'], not_senders: ['@b:x'] });
  assert.equal(m.matches({ type: 'm.room.message', sender: '@a:x' }), true);
  assert.equal(m.matches({ type: 'm.room.member', sender: '@a:x' }), false, 'not_types wins');
  assert.equal(m.matches({ type: 'm.room.message', sender: '@b:x' }), false, 'not_senders wins');
  assert.equal(m.matches({ type: 'm.room.message', sender: '@c:x' }), false);
  assert.equal(m.matches({ type: 'org.custom', sender: '@a:x' }), false);
  const url = new EventMatcher({ contains_url: true });
  assert.equal(url.matches({ type: 't', sender: '@a:x', content: { url: 'mxc://x/y' } }), true);
  assert.equal(url.matches({ type: 't', sender: '@a:x', content: { body: 'x' } }), false);
  const noUrl = new EventMatcher({ contains_url: false });
  assert.equal(noUrl.matches({ type: 't', sender: '@a:x', content: { url: 'mxc://x/y' } }), false);
  assert.equal(new EventMatcher().isEmpty, true);
  assert.equal(m.isEmpty, false);
  assert.equal(new EventMatcher({ types: [] }).allowsType('anything'), false, 'an empty types list matches nothing');
});

test('room selection: not_rooms wins over rooms', () => {
  const f = compileFilter({ room: { rooms: ['!a:x', '!b:x'], not_rooms: ['!b:x'] } });
  assert.equal(f.rooms.allows('!a:x'), true);
  assert.equal(f.rooms.allows('!b:x'), false);
  assert.equal(f.rooms.allows('!c:x'), false);
  assert.equal(compileFilter().rooms.allows('!c:x'), true);
});

test('compiled filter defaults', () => {
  const f = compileFilter();
  assert.equal(f.timelineLimit, DEFAULT_TIMELINE_LIMIT);
  assert.equal(f.includeLeave, false);
  assert.equal(f.lazyLoadMembers, false);
  const g = compileFilter({ room: { timeline: { limit: 3 }, state: { lazy_load_members: true }, include_leave: true } });
  assert.equal(g.timelineLimit, 3);
  assert.equal(g.lazyLoadMembers, true);
  assert.equal(g.includeLeave, true);
  assert.equal(compileFilter({ room: { timeline: { limit: 0 } } }).timelineLimit, 0);
  assert.equal(compileFilter({ room: { timeline: { limit: 10 ** 9 } } }).timelineLimit, 1000, 'capped');
});

test('parsing: wrong types and bad JSON are M_INVALID_PARAM; unknown fields are fine', () => {
  invalid(() => parseFilter({ room: { timeline: { limit: 'ten' } } }));
  invalid(() => parseFilter({ room: { rooms: 'not a list' } }));
  invalid(() => parseFilter([]));
  invalid(() => parseInlineFilter('{not json'));
  assert.deepEqual(parseFilter({ room: { timeline: { limit: 5 } }, 'org.example': 1 }).room?.timeline?.limit, 5);
});

test('event_fields: dot paths with escapes', () => {
  assert.deepEqual(splitFieldPath('content.body'), ['content', 'body']);
  assert.deepEqual(splitFieldPath('content.m\\.relates_to'), ['content', 'm.relates_to']);
  assert.deepEqual(splitFieldPath('content.m\\\\foo'), ['content', 'm\\foo']);
  assert.deepEqual(splitFieldPath('a\\xb'), ['a\\xb'], 'other escapes are literal');
});

test('event_fields: keeps only the listed fields, never touching the original', () => {
  const ev = {
    event_id: '$e', type: 'm.room.message', sender: '@a:x',
    content: { body: 'hi', msgtype: 'm.text', 'm.relates_to': { rel_type: 'm.thread' } },
    unsigned: { age: 1 },
  };
  const fields = ['type', 'content.body', 'content.m\\.relates_to', 'missing.path'].map(splitFieldPath);
  assert.deepEqual(applyEventFields(ev, fields), { type: 'm.room.message', content: { body: 'hi', 'm.relates_to': { rel_type: 'm.thread' } } });
  // a wider path after a narrower one wins
  const both = applyEventFields(ev, [['content', 'body'], ['content']]);
  assert.deepEqual(both, { content: ev.content });
  (both as { content: Record<string, unknown> }).content.body = 'changed';
  assert.equal(ev.content.body, 'hi', 'the source event is not modified');
  assert.equal(applyEventFields(ev, undefined), ev);
});

test('applyLimit keeps the most recent items', () => {
  assert.deepEqual(applyLimit([1, 2, 3, 4], 2), [3, 4]);
  assert.deepEqual(applyLimit([1, 2], 5), [1, 2]);
  assert.deepEqual(applyLimit([1, 2], 0), []);
  assert.deepEqual(applyLimit([1, 2], undefined), [1, 2]);
});
