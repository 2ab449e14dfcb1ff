/**
 * From room version 12 a room id is the hash of its create event: rooms made
 * in parallel by one user with the same request must still be distinct rooms.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRoom } from '../../src/rooms/create-room.js';
import { withServiceContext } from '../helpers/service-context.js';

test('twenty identical createRoom requests at once make twenty rooms (room version 12)', async (t) => {
  await withServiceContext(async (ctx) => {
    const alice = await ctx.accounts.createUser('alice', undefined);
    // The same millisecond for every request, as on a fast machine.
    const now = Date.now();
    t.mock.method(Date, 'now', () => now);
    const results = await Promise.all(Array.from({ length: 20 }, () => createRoom(ctx, alice, { room_version: '12' })));
    const ids = new Set(results.map((r) => r.room_id));
    assert.equal(ids.size, 20, `distinct room ids: ${[...ids].join(' ')}`);
    const rows = await ctx.storage.db.selectFrom('rooms').select('room_id').execute();
    assert.equal(rows.length, 20);
  });
});
