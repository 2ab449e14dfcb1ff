/**
 * Device lists (src/e2ee/device-lists.ts) against a real context: changes
 * are seen only by users sharing a room, joins and leaves show as changed
 * and left, and the answers with warm change caches equal those after
 * `streams.reset` (from the database alone).
 */
import { withServiceContext } from '../helpers/service-context.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deviceListsBetween } from '../../src/e2ee/device-lists.js';
import type { Requester } from '../../src/accounts/tokens.js';
import { generateSigningKey, publicKeyBase64 } from '../../src/core/signing-key.js';
import { signJson } from '../../src/core/json-signing.js';

test('device lists: sharing rooms, joins, leaves, key changes, deletions; warm equals cold', async () => {
  await withServiceContext(async (c) => {
    const alice = await c.accounts.createUser('alice', undefined);
    const bob = await c.accounts.createUser('bob', undefined);
    const carol = await c.accounts.createUser('carol', undefined);
    const who = (userId: string, deviceId: string): Requester => ({ userId, deviceId, isAdmin: false, isGuest: false, tokenHash: '' });
    const addDevice = (userId: string, deviceId: string) => c.storage.db.insertInto('devices')
      .values({ user_id: userId, device_id: deviceId, display_name: null, created_ts: Date.now(), last_seen_ts: null, last_seen_ip: null }).execute();
    const uploadKeys = async (userId: string, deviceId: string) => {
      const k = generateSigningKey();
      const dk = { user_id: userId, device_id: deviceId, algorithms: ['m.megolm.v1.aes-sha2'], keys: { [`ed25519:${deviceId}`]: publicKeyBase64(k) } };
      await c.keys.upload(who(userId, deviceId), { device_keys: signJson(dk, userId, { ...k, keyId: `ed25519:${deviceId}` }) });
    };
    const tokens = new Map<string, number>([[alice, c.notifier.position], [bob, c.notifier.position], [carol, c.notifier.position]]);
    /** Device lists for `user` since their last check, warm and cold (must agree). */
    const lists = async (user: string) => {
      const since = tokens.get(user)!;
      const to = c.notifier.position;
      const warm = await deviceListsBetween(c, user, since, to);
      c.streams.reset(c.notifier.position);
      const cold = await deviceListsBetween(c, user, since, to);
      assert.deepEqual(warm, cold, `${user}: warm and cold differ`);
      tokens.set(user, to);
      return warm;
    };

    await addDevice(alice, 'A1');
    await addDevice(bob, 'B1');
    await uploadKeys(bob, 'B1');
    assert.deepEqual(await lists(alice), { changed: [], left: [] }, 'no shared room yet');
    assert.deepEqual(await lists(bob), { changed: [bob], left: [] }, 'own change');

    const { room_id: room } = await c.rooms.createRoom(alice, { preset: 'private_chat', invite: [bob] });
    await c.rooms.changeMembership({ roomId: room, sender: bob, target: bob, membership: 'join' });
    assert.deepEqual(await lists(alice), { changed: [bob], left: [] }, 'bob newly shares a room');
    assert.deepEqual(await lists(bob), { changed: [alice], left: [] }, 'alice newly shares a room');

    await uploadKeys(alice, 'A1');
    await uploadKeys(carol, 'C1');
    assert.deepEqual(await lists(bob), { changed: [alice], left: [] }, 'alice changed keys; carol shares nothing');
    assert.deepEqual(await lists(alice), { changed: [alice], left: [] });

    await addDevice(bob, 'B2');
    await c.accounts.deleteDevices(bob, ['B2']);
    assert.deepEqual(await lists(alice), { changed: [bob], left: [] }, 'bob deleted a device');
    assert.deepEqual(await lists(bob), { changed: [bob], left: [] });

    await c.rooms.changeMembership({ roomId: room, sender: bob, target: bob, membership: 'leave' });
    assert.deepEqual(await lists(alice), { changed: [], left: [bob] }, 'bob left');
    assert.deepEqual(await lists(bob), { changed: [], left: [alice] }, 'bob left alice');
    await uploadKeys(bob, 'B1');
    assert.deepEqual(await lists(alice), { changed: [], left: [] }, 'no longer shared: not seen');
  });
});

test('one-time key counts and claims through the service', async () => {
  await withServiceContext(async (c) => {
    const alice = await c.accounts.createUser('alice', undefined);
    const r: Requester = { userId: alice, deviceId: 'A1', isAdmin: false, isGuest: false, tokenHash: '' };
    const res = await c.keys.upload(r, { one_time_keys: { 'curve25519:1': 'a2V5', 'curve25519:2': 'a2V5Mg' } });
    assert.deepEqual(res.one_time_key_counts, { signed_curve25519: 0, curve25519: 2 });
    // Concurrent claims never hand out the same key.
    const claims = await Promise.all([1, 2, 3].map(() => c.keys.claim({ [alice]: { A1: 'curve25519' } })));
    const ids = claims.flatMap((x) => Object.keys((x.one_time_keys as any)[alice]?.A1 ?? {}));
    assert.deepEqual(ids.sort(), ['curve25519:1', 'curve25519:2']);
    assert.deepEqual(await c.keys.otkCounts(alice, 'A1'), { signed_curve25519: 0 });
  });
});
