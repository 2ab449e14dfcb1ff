import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MatrixError } from '../../src/server/errors.js';
import { makeRoomToken, makeSyncToken, parseRoomToken, parseSyncToken } from '../../src/sync/tokens.js';

const invalid = (fn: () => unknown) =>
  assert.throws(fn, (e: unknown) => e instanceof MatrixError && e.errcode === 'M_INVALID_PARAM' && e.status === 400);

test('sync tokens round-trip', () => {
  assert.equal(makeSyncToken(42, 7), 's42_7');
  assert.deepEqual(parseSyncToken('s42_7'), { pos: 42, typing: 7 });
  assert.deepEqual(parseSyncToken(makeSyncToken(0, 1718000000000)), { pos: 0, typing: 1718000000000 });
});

test('sync tokens: missing typing part is 0, later extra parts are ignored', () => {
  assert.deepEqual(parseSyncToken('s5'), { pos: 5, typing: 0 });
  assert.deepEqual(parseSyncToken('s5_3_9_1'), { pos: 5, typing: 3 });
  assert.deepEqual(parseSyncToken('s5_3_2_1'), { pos: 5, typing: 3, toDevice: 2 });
});

test('sync tokens: optional to-device part, only when behind the stream position', () => {
  assert.equal(makeSyncToken(42, 7, 40), 's42_7_40');
  assert.equal(makeSyncToken(42, 7, 42), 's42_7');
  assert.equal(makeSyncToken(42, 7, undefined), 's42_7');
  assert.deepEqual(parseSyncToken('s42_7_40'), { pos: 42, typing: 7, toDevice: 40 });
  assert.deepEqual(parseSyncToken('s42_7_50'), { pos: 42, typing: 7 });
});

test('malformed sync tokens are M_INVALID_PARAM', () => {
  for (const t of ['', 's', 'sx_1', 't5', '5_1', 's5_', 's5_a', 's-1_0', 's99999999999999999_0', 's1_2 ']) invalid(() => parseSyncToken(t));
});

test('room tokens: t<pos>, and sync tokens are accepted too', () => {
  assert.equal(makeRoomToken(10), 't10');
  assert.equal(makeRoomToken(-3), 't0');
  assert.equal(parseRoomToken('t10'), 10);
  assert.equal(parseRoomToken('s12_4'), 12);
  assert.equal(parseRoomToken(makeRoomToken(0)), 0);
  for (const t of ['', 't', 'tx', 't-1', 'x5', 's_1']) invalid(() => parseRoomToken(t));
});
