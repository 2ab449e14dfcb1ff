/**
 * /sync with the stream change caches and the caches derived from them must
 * answer exactly what it answers from the database alone. After each change,
 * the same incremental sync is computed with warm caches and again after
 * `streams.reset` (every cache dropped, every change cache "maybe changed"),
 * and the two answers are compared.
 */
import { withServiceContext } from '../helpers/service-context.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileFilter } from '../../src/sync/filters.js';
import { parseSyncToken } from '../../src/sync/tokens.js';
import { RecentEvents } from '../../src/rooms/recent-events.js';

/** Drop what depends on the clock. */
function stable(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stable);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === 'age' || k === 'last_active_ago' || k === 'currently_active') continue;
      out[k] = stable(x);
    }
    return out;
  }
  return v;
}

test('incremental /sync answers the same with warm caches as from the database alone', async () => {
  await withServiceContext(async (c) => {
    const alice = await c.accounts.createUser('alice', undefined);
    const bob = await c.accounts.createUser('bob', undefined);
    const carol = await c.accounts.createUser('carol', undefined);
    const filter = compileFilter();
    const lazy = compileFilter({ room: { state: { lazy_load_members: true }, timeline: { limit: 3 } } });

    const { room_id: named } = await c.rooms.createRoom(alice, { preset: 'private_chat', name: 'Named', invite: [bob] });
    const { room_id: dm } = await c.rooms.createRoom(alice, { preset: 'private_chat', invite: [bob] });
    await c.rooms.changeMembership({ roomId: named, sender: bob, target: bob, membership: 'join' });
    await c.rooms.changeMembership({ roomId: dm, sender: bob, target: bob, membership: 'join' });

    const tokens = new Map<string, string>();
    for (const [who, f] of [[bob, filter], [alice, filter], [bob + '#lazy', lazy]] as const) {
      const user = who.split('#')[0];
      tokens.set(who, (await c.sync.compute({ userId: user, deviceId: 'DEV', filter: f })).body.next_batch);
    }

    let step = 0;
    /** Sync everyone incrementally, warm then cold, and compare. */
    const check = async (what: string) => {
      step++;
      for (const [who, f] of [[bob, filter], [alice, filter], [bob + '#lazy', lazy]] as const) {
        const user = who.split('#')[0];
        const since = parseSyncToken(tokens.get(who)!);
        const warm = await c.sync.compute({ userId: user, deviceId: 'DEV', filter: f, since });
        c.streams.reset(c.notifier.position);
        const cold = await c.sync.compute({ userId: user, deviceId: 'DEV', filter: f, since });
        assert.deepEqual(stable(warm.body), stable(cold.body), `step ${step} (${what}), ${who}: warm and cold answers differ`);
        assert.equal(warm.hasData, cold.hasData, `step ${step} (${what}), ${who}: hasData`);
        // Warm the caches again from what the database said.
        await c.sync.compute({ userId: user, deviceId: 'DEV', filter: f, since });
        tokens.set(who, warm.body.next_batch);
      }
    };

    await check('nothing happened');
    const m1 = await c.rooms.send({ roomId: named, sender: alice, type: 'm.room.message', content: { msgtype: 'm.text', body: 'one' } });
    await check('a message');
    await c.rooms.send({ roomId: named, sender: alice, type: 'm.room.message', content: { msgtype: 'm.text', body: 'two bob' } });
    await c.rooms.send({ roomId: dm, sender: alice, type: 'm.room.message', content: { msgtype: 'm.text', body: 'dm' } });
    await check('messages in two rooms (unread counts move on)');
    await c.ephemeral.receipts.send(bob, named, 'm.read', m1.pdu.event_id);
    await check('a read receipt');
    await c.ephemeral.receipts.send(bob, dm, 'm.read.private', m1.pdu.event_id).catch(() => {});
    await c.accounts.setAccountData(bob, '', 'm.ignored_user_list', { ignored_users: { [alice]: {} } });
    await check('global account data');
    await c.rooms.send({ roomId: named, sender: alice, type: 'm.room.message', content: { msgtype: 'm.text', body: 'ignored' } });
    await check('a message from an ignored user');
    await c.accounts.setAccountData(bob, '', 'm.ignored_user_list', { ignored_users: {} });
    await c.accounts.setAccountData(bob, named, 'm.tag', { tags: { 'm.favourite': {} } });
    await check('room account data');
    await c.ephemeral.presence.set(alice, 'unavailable', { statusMsg: 'away' });
    await check('presence');
    await c.rooms.changeMembership({ roomId: dm, sender: alice, target: carol, membership: 'invite' });
    await c.rooms.changeMembership({ roomId: dm, sender: carol, target: carol, membership: 'join' });
    await check('a member joined (counts, heroes)');
    await c.rooms.send({ roomId: dm, sender: alice, type: 'm.room.name', stateKey: '', content: { name: 'Now named' } });
    await check('a room name');
    const m2 = await c.rooms.send({ roomId: dm, sender: carol, type: 'm.room.message', content: { msgtype: 'm.text', body: 'hi bob' } });
    await check('a message from the new member');
    await c.rooms.send({ roomId: dm, sender: carol, type: 'm.room.redaction', content: {}, redacts: m2.pdu.event_id });
    await check('a redaction (notification gone)');
    await c.rooms.send({ roomId: dm, sender: alice, type: 'm.room.history_visibility', stateKey: '', content: { history_visibility: 'joined' } });
    await check('history visibility');
    await c.rooms.changeMembership({ roomId: dm, sender: bob, target: bob, membership: 'leave' });
    await check('a leave');
    await c.rooms.send({ roomId: dm, sender: alice, type: 'm.room.message', content: { msgtype: 'm.text', body: 'after bob left' } });
    await check('a message in a room left');
    await c.rooms.changeMembership({ roomId: dm, sender: alice, target: bob, membership: 'invite' });
    await check('an invite');
    await c.rooms.changeMembership({ roomId: dm, sender: bob, target: bob, membership: 'join' });
    await check('a rejoin');
  });
});

test('recent events: answers only for positions it has seen all of', () => {
  const r = new RecentEvents(3, 2);
  assert.equal(r.range('!a', 0, 100, 10), undefined, 'an unknown room');
  r.add('!a', 10, '$10');
  // Nothing is claimed before the first event recorded.
  assert.equal(r.range('!a', 9, 100, 10), undefined);
  assert.deepEqual(r.range('!a', 10, 100, 10), ['$10']);
  r.add('!a', 12, '$12');
  r.add('!a', 15, '$15');
  assert.deepEqual(r.range('!a', 11, 100, 10), ['$15', '$12'], 'newest first');
  assert.deepEqual(r.range('!a', 11, 14, 10), ['$12']);
  assert.deepEqual(r.range('!a', 13, 14, 10), [], 'known to be empty');
  assert.deepEqual(r.range('!a', 10, 100, 2), ['$15', '$12'], 'the newest `limit`');
  // A fourth event pushes $10 out: from 10 down nothing is known any more.
  r.add('!a', 20, '$20');
  assert.equal(r.range('!a', 10, 100, 10), undefined);
  assert.deepEqual(r.range('!a', 11, 100, 10), ['$20', '$15', '$12']);
  // Out of order: the room is forgotten rather than answered wrongly.
  r.add('!a', 18, '$18');
  assert.equal(r.range('!a', 11, 100, 10), undefined);
  // Bounded in rooms too.
  r.add('!b', 30, '$30');
  r.add('!c', 31, '$31');
  r.add('!d', 32, '$32');
  assert.equal(r.range('!b', 30, 100, 10), undefined, 'least recently used room went');
  assert.deepEqual(r.range('!d', 32, 100, 10), ['$32']);
  r.clear();
  assert.equal(r.range('!d', 32, 100, 10), undefined);
});
