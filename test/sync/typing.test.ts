import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TypingTracker } from '../../src/sync/typing.js';
import { buildReceiptContents } from '../../src/sync/receipts.js';
import { mergeRanges } from '../../src/sync/service.js';

test('typing: start, refresh, stop; the serial moves only on visible changes', () => {
  const changed: string[] = [];
  const t = new TypingTracker((r) => changed.push(r), 10, 100);
  const s0 = t.serial;
  assert.equal(t.set('!r', '@a', true, 10_000), true);
  assert.deepEqual(t.users('!r'), ['@a']);
  const s1 = t.serial;
  assert.ok(s1 > s0);
  assert.equal(t.changedSince('!r', s0), true);
  assert.equal(t.changedSince('!r', s1), false);
  assert.equal(t.set('!r', '@a', true, 10_000), false, 'a refresh is not a change');
  assert.equal(t.serial, s1);
  assert.equal(t.set('!r', '@a', false), true);
  assert.deepEqual(t.users('!r'), []);
  assert.equal(t.changedSince('!r', s1), true, 'stopping is a change clients must see');
  assert.equal(t.set('!r', '@a', false), false);
  assert.deepEqual(changed, ['!r', '!r']);
  t.stop();
});

test('typing expires after its timeout', async () => {
  const t = new TypingTracker(() => {}, 10, 100);
  t.set('!r', '@a', true, 20);
  assert.deepEqual(t.users('!r'), ['@a']);
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(t.users('!r'), []);
  t.stop();
});

test('typing: tokens from before a restart, and forgotten rooms, get a fresh (empty) list', () => {
  const t = new TypingTracker(() => {}, 2, 1000);
  assert.equal(t.normalise(5000), 0, 'a serial ahead of ours is from another process');
  assert.equal(t.normalise(1000), 1000);
  assert.equal(t.changedSince('!unknown', 500), true, 'older than this process: tell them');
  assert.equal(t.changedSince('!unknown', 1000), false);
  for (const r of ['!a', '!b', '!c']) {
    t.set(r, '@u', true);
    t.set(r, '@u', false);
  }
  // !a was evicted from the idle list (max 2): a token from before its change still hears about it
  const now = t.serial;
  assert.equal(t.changedSince('!a', 1000), true);
  assert.equal(t.changedSince('!a', now), false);
  t.stop();
});

test('receipt contents are batched per room, event, type and user', () => {
  const m = buildReceiptContents([
    { room_id: '!r', receipt_type: 'm.read', user_id: '@a', thread_id: '', event_id: '$1', ts: 10 },
    { room_id: '!r', receipt_type: 'm.read', user_id: '@b', thread_id: 'main', event_id: '$1', ts: 11 },
    { room_id: '!r', receipt_type: 'm.read.private', user_id: '@a', thread_id: '', event_id: '$2', ts: 12 },
    { room_id: '!s', receipt_type: 'm.read', user_id: '@a', thread_id: '$root', event_id: '$9', ts: 13 },
  ]);
  assert.deepEqual(m.get('!r'), {
    $1: { 'm.read': { '@a': { ts: 10 }, '@b': { ts: 11, thread_id: 'main' } } },
    $2: { 'm.read.private': { '@a': { ts: 12 } } },
  });
  assert.deepEqual(m.get('!s'), { $9: { 'm.read': { '@a': { ts: 13, thread_id: '$root' } } } });
});

test('mergeRanges sorts and merges overlapping and adjacent ranges', () => {
  assert.deepEqual(mergeRanges([[10, 20], [5, 5], [21, 21], [30, 40], [35, 36]]), [[5, 5], [10, 21], [30, 40]]);
  assert.deepEqual(mergeRanges([]), []);
});
