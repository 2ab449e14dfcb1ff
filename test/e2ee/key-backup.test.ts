/**
 * The key-backup replacement rule (spec: "Server-side key backups"): a stored
 * session key is replaced only by a better one.
 *
 *   node --import tsx --test test/e2ee/key-backup.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { shouldReplaceSession } from '../../src/e2ee/key-backup.js';

const key = (is_verified: boolean, first_message_index: number, forwarded_count: number) => ({ is_verified, first_message_index, forwarded_count });

test('anything replaces nothing', () => {
  assert.equal(shouldReplaceSession(undefined, key(false, 99, 99)), true);
});

test('is_verified decides first, whatever the indices and counts', () => {
  assert.equal(shouldReplaceSession(key(false, 0, 0), key(true, 10, 10)), true);
  assert.equal(shouldReplaceSession(key(true, 10, 10), key(false, 0, 0)), false);
});

test('with equal is_verified, the lower first_message_index wins, whatever the forwarded_count', () => {
  for (const v of [true, false]) {
    assert.equal(shouldReplaceSession(key(v, 5, 0), key(v, 4, 9)), true);
    assert.equal(shouldReplaceSession(key(v, 4, 9), key(v, 5, 0)), false);
  }
});

test('with equal is_verified and first_message_index, the lower forwarded_count wins', () => {
  assert.equal(shouldReplaceSession(key(true, 3, 2), key(true, 3, 1)), true);
  assert.equal(shouldReplaceSession(key(true, 3, 1), key(true, 3, 2)), false);
});

test('a full tie keeps the stored key', () => {
  assert.equal(shouldReplaceSession(key(false, 3, 1), key(false, 3, 1)), false);
});

test('encryption_enabled_by_default_for_room_type: default off, accepts off/invite/all, rejects anything else', async () => {
  const { loadConfig } = await import('../../src/config/config.js');
  assert.equal(loadConfig({ env: {} }).encryption_enabled_by_default_for_room_type, 'off');
  for (const v of ['off', 'invite', 'all']) {
    assert.equal(loadConfig({ env: { RANVIER_ENCRYPTION_ENABLED_BY_DEFAULT_FOR_ROOM_TYPE: v } }).encryption_enabled_by_default_for_room_type, v);
  }
  assert.throws(() => loadConfig({ env: { RANVIER_ENCRYPTION_ENABLED_BY_DEFAULT_FOR_ROOM_TYPE: 'private' } }), /encryption_enabled_by_default_for_room_type/);
});
