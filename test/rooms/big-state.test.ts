/**
 * Room state too big for one statement: state groups written with multi-row
 * inserts (src/rooms/state-store.ts writeGroup) and a remote join that
 * brings thousands of state events (src/rooms/remote-events.ts
 * bootstrapJoin, storeOutliers), against a real SQLite database.
 *
 *   node --import tsx --test test/rooms/big-state.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PDU } from '../../src/core/events.js';
import { getRoomVersion } from '../../src/core/room-versions.js';
import type { IncomingEvent } from '../../src/rooms/remote-events.js';
import { EventStatus } from '../../src/rooms/remote-events.js';
import { StateStore, stateKeyOf } from '../../src/rooms/state-store.js';
import type { Context } from '../../src/server/services.js';
import { withServiceContext } from '../helpers/service-context.js';

const ROOM = '!big:remote.test';

/** Insert bare events rows (as outliers) so state groups can point at them; returns event_id -> nid. */
async function insertEvents(ctx: Context, ids: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  await ctx.write(async (tx, alloc) => {
    for (const id of ids) {
      const row = await tx.insertInto('events').values({
        event_id: id, room_id: ROOM, type: 'x', state_key: '', sender: '@a:remote.test', origin_server_ts: 0, depth: 1,
        stream_pos: await alloc(), json: '{}', state_group: null, redacted_by: null, rejected: EventStatus.OUTLIER,
        txn_device_id: null, txn_id: null, txn_scope: null,
      }).returning('nid').executeTakeFirstOrThrow();
      out.set(id, Number(row.nid));
    }
  });
  return out;
}

test('writeGroup stores a snapshot and a delta larger than one insert batch, reusing state keys', async () => {
  await withServiceContext(async (ctx) => {
    const n = 1_234;
    const ids = Array.from({ length: n + 10 }, (_, i) => `$e${i}`);
    const nids = await insertEvents(ctx, ids);
    const snapshot = new Map<string, string>();
    for (let i = 0; i < n; i++) snapshot.set(stateKeyOf(i % 2 ? 'm.room.member' : 'org.test', `k${i}`), ids[i]);
    const writer = new StateStore(ctx.storage.db, ctx.rooms.events, 10);
    const changes = (m: Map<string, string>) => new Map([...m].map(([k, id]) => [k, { nid: nids.get(id)!, eventId: id }]));

    const g1 = await ctx.storage.db.transaction().execute((tx) => writer.writeGroup(tx, ROOM, null, changes(snapshot)));
    // Replace ten existing keys and add five new ones.
    const delta = new Map<string, string>();
    for (let i = 0; i < 10; i++) delta.set([...snapshot.keys()][i * 100], ids[n + i]);
    for (let i = 0; i < 5; i++) delta.set(stateKeyOf('org.test.new', `n${i}`), ids[n + i]);
    const g2 = await ctx.storage.db.transaction().execute((tx) => writer.writeGroup(tx, ROOM, g1, changes(delta)));

    // A fresh store has nothing cached: what it reads is what was written.
    const reader = new StateStore(ctx.storage.db, ctx.rooms.events, 10);
    assert.deepEqual(new Map([...(await reader.groupIds(g1))].sort()), new Map([...snapshot].sort()));
    const expected = new Map([...snapshot, ...delta]);
    assert.deepEqual(new Map([...(await reader.groupIds(g2))].sort()), new Map([...expected].sort()));
    assert.equal(expected.size, n + 5);

    const keys = await ctx.storage.db.selectFrom('state_keys').select(({ fn }) => fn.countAll<number>().as('c')).executeTakeFirstOrThrow();
    assert.equal(Number(keys.c), n + 5, 'one state_keys row per distinct key, none duplicated by the second group');
    const entries = await ctx.storage.db.selectFrom('state_group_entries').select(({ fn }) => fn.countAll<number>().as('c'))
      .where('group_id', '=', g2).executeTakeFirstOrThrow();
    assert.equal(Number(entries.c), 15, 'the second group is a delta');
  });
});

test('bootstrapJoin of a room with thousands of members stores every state event and membership', async () => {
  await withServiceContext(async (ctx) => {
    const version = getRoomVersion('10')!;
    let depth = 0;
    const ev = (type: string, stateKey: string, sender: string, content: Record<string, unknown>): IncomingEvent => {
      const pdu: PDU = {
        room_id: ROOM, type, state_key: stateKey, sender, content, origin_server_ts: 1_000 + depth, depth: ++depth,
        prev_events: [], auth_events: [],
      };
      return { eventId: `$ev${depth}`, pdu };
    };
    const creator = '@creator:remote.test';
    const create = ev('m.room.create', '', creator, { creator, room_version: '10' });
    // Several transactions' worth of outliers (500 each) and several multi-row batches of members.
    const members = Array.from({ length: 2_100 }, (_, i) => ev('m.room.member', `@u${i}:remote.test`, `@u${i}:remote.test`, { membership: i % 7 === 0 ? 'leave' : 'join' }));
    const state = [create, ...members];
    const join = ev('m.room.member', '@me:test.local', '@me:test.local', { membership: 'join' });

    const stored = await ctx.rooms.remote.bootstrapJoin(ROOM, version, state, [create], join);
    assert.equal(stored.pdu.event_id, join.eventId);

    const current = await ctx.rooms.state.currentIds(ROOM);
    assert.equal(current.size, state.length + 1);
    for (const e of [...state, join]) assert.equal(current.get(stateKeyOf(e.pdu.type, e.pdu.state_key!)), e.eventId);

    const rows = await ctx.storage.db.selectFrom('room_members').select(['user_id', 'membership', 'event_id']).where('room_id', '=', ROOM).execute();
    assert.equal(rows.length, members.length + 1);
    const byUser = new Map(rows.map((r) => [r.user_id, r]));
    for (const m of [...members, join]) {
      const row = byUser.get(m.pdu.state_key!);
      assert.ok(row, `membership row for ${m.pdu.state_key}`);
      assert.equal(row.membership, m.pdu.content.membership);
      assert.equal(row.event_id, m.eventId);
    }
    const outliers = await ctx.storage.db.selectFrom('events').select(({ fn }) => fn.countAll<number>().as('c'))
      .where('room_id', '=', ROOM).where('rejected', '=', EventStatus.OUTLIER).executeTakeFirstOrThrow();
    assert.equal(Number(outliers.c), state.length);
    const joined = [...members.filter((m) => m.pdu.content.membership === 'join').map((m) => m.pdu.state_key!), join.pdu.state_key!];
    assert.deepEqual([...(await ctx.rooms.joinedMembers(ROOM))].sort(), joined.sort());
  });
});
