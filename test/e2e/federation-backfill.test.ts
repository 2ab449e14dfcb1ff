/**
 * Backfill: bob on b.test joins a room that lives on a.test; b.test holds
 * only the state and bob's join, so paginating back makes it fetch the
 * earlier history with /backfill. That history must come back in order,
 * once, never as new events in /sync, and only as far as history
 * visibility allows.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- federation-backfill
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { FederationRequest } from '../../src/federation/client.js';
import { registerUser } from './harness.js';
import { Api, caughtUp, enc, waitFor } from './util.js';
import { startFederation, type Federation } from './federation-harness.js';

interface Ev {
  event_id: string;
  type: string;
  sender: string;
  state_key?: string;
  content: { body?: string; membership?: string };
}

describe('backfill over federation', { timeout: 120_000 }, () => {
  let fed: Federation;
  let alice: Api;
  let bob: Api;
  /** /backfill requests b.test made, by room. */
  const backfillRequests: string[] = [];

  before(async () => {
    fed = await startFederation(['a.test', 'b.test']);
    const [a, b] = fed.servers;
    alice = new Api(a.url, (await registerUser(a.url, 'alice', 'pw-alice-123')).accessToken);
    bob = new Api(b.url, (await registerUser(b.url, 'bob', 'pw-bob-123')).accessToken);
    const client = b.ctx.federation.client;
    const request = client.request.bind(client);
    client.request = ((destination: string, req: FederationRequest) => {
      if (req.path.includes('/_matrix/federation/v1/backfill/')) backfillRequests.push(decodeURIComponent(req.path.split('/').pop()!));
      return request(destination, req);
    }) as typeof client.request;
  });

  after(async () => {
    await fed?.close();
  });

  /** Page back through the whole room from the newest event, `limit` at a time. */
  const paginateAll = async (api: Api, roomId: string, limit: number): Promise<Ev[]> => {
    const out: Ev[] = [];
    let from: string | undefined;
    for (let page = 0; page < 50; page++) {
      const r = await api.messages(roomId, { from, limit });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      out.push(...(r.body.chunk as Ev[]));
      if (r.body.end === undefined) return out;
      assert.notEqual(r.body.end, from, 'the token must move');
      from = r.body.end as string;
    }
    throw new Error('pagination did not end');
  };

  const joinThroughA = async (roomId: string) => {
    await bob.ok('POST', `/join/${enc(roomId)}?via=a.test`, {});
    await waitFor('a.test sees bob join', async () => {
      const m = await alice.ok('GET', `/rooms/${enc(roomId)}/joined_members`);
      return Object.keys(m.joined).includes('@bob:b.test');
    });
  };

  test('paginating back fetches the history before the join, in order, once, and not as new in /sync', async () => {
    const roomId = await alice.createRoom({ preset: 'public_chat', name: 'History' });
    const sent: string[] = [];
    for (let i = 1; i <= 30; i++) sent.push(await alice.send(roomId, `message ${i}`));
    await joinThroughA(roomId);
    const since = await caughtUp(bob);

    // Before any pagination, b.test holds no message of alice's.
    const local = await bob.ok('GET', `/rooms/${enc(roomId)}/context/${enc(sent[29])}`).catch(() => undefined);
    assert.equal(local, undefined, 'history is not there before backfill');
    assert.equal(backfillRequests.length, 0);

    const events = await paginateAll(bob, roomId, 7);
    const ids = events.map((e) => e.event_id);
    assert.equal(new Set(ids).size, ids.length, 'no event twice');
    assert.equal(events[0].type, 'm.room.member');
    assert.equal(events[0].state_key, '@bob:b.test', 'newest first: bob\'s join');
    const messages = events.filter((e) => e.type === 'm.room.message');
    assert.deepEqual(messages.map((e) => e.content.body), Array.from({ length: 30 }, (_, i) => `message ${30 - i}`));
    assert.deepEqual(messages.map((e) => e.event_id), [...sent].reverse());
    const last = events[events.length - 1];
    assert.equal(last.type, 'm.room.create', 'the history ends with the create event');
    assert.ok(events.some((e) => e.type === 'm.room.member' && e.state_key === '@alice:a.test' && e.content.membership === 'join'));
    assert.deepEqual(backfillRequests, [roomId], 'one /backfill for the whole history');

    // Forwards from the very start, too.
    const forward = await bob.messages(roomId, { dir: 'f', limit: 3 });
    assert.equal(forward.status, 200);
    assert.equal((forward.body.chunk as Ev[])[0].type, 'm.room.create');

    // The fetched events are now local: /context on one of them works.
    const ctx = await bob.ok('GET', `/rooms/${enc(roomId)}/context/${enc(sent[14])}?limit=2`);
    assert.equal(ctx.event.content.body, 'message 15');
    assert.equal(ctx.events_before[0]?.content.body, 'message 14');
    assert.equal(ctx.events_after[0]?.content.body, 'message 16');

    // None of it is news to an incremental sync.
    const s = await bob.sync({ since, timeout: 0 });
    const tl: Ev[] = s.rooms?.join?.[roomId]?.timeline?.events ?? [];
    assert.deepEqual(tl.map((e) => e.event_id), [], 'backfilled events are not new');

    // Paginating again reads what is stored: the same events, no new request.
    const again = await paginateAll(bob, roomId, 25);
    assert.deepEqual(again.map((e) => e.event_id), ids);
    assert.equal(backfillRequests.length, 1, 'no second /backfill');

    // The room's current state and extremities are untouched: the room goes on both ways.
    const name = await bob.ok('GET', `/rooms/${enc(roomId)}/state/m.room.name/`);
    assert.equal(name.name, 'History');
    const bobMsg = await bob.send(roomId, 'after backfill');
    await waitFor('alice gets bob\'s message', async () => {
      const r = await alice.messages(roomId, { limit: 3 });
      return (r.body.chunk as Ev[]).some((e) => e.event_id === bobMsg);
    }, { timeoutMs: 15_000 });
    const newer = await alice.send(roomId, 'after backfill too');
    const s2 = await waitFor('bob syncs alice\'s new message', async () => {
      const r = await bob.sync({ since, timeout: 0 });
      const evs: Ev[] = r.rooms?.join?.[roomId]?.timeline?.events ?? [];
      return evs.some((e) => e.event_id === newer) ? evs : undefined;
    }, { timeoutMs: 15_000 });
    assert.ok(s2.every((e) => !sent.includes(e.event_id)), 'still no backfilled event in sync');
  });

  test('concurrent paginations share one backfill', async () => {
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    for (let i = 1; i <= 20; i++) await alice.send(roomId, `concurrent ${i}`);
    await joinThroughA(roomId);
    const [r1, r2, r3] = await Promise.all([1, 2, 3].map(() => bob.messages(roomId, { limit: 100 })));
    for (const r of [r1, r2, r3]) {
      assert.equal(r.status, 200);
      const bodies = (r.body.chunk as Ev[]).filter((e) => e.type === 'm.room.message').map((e) => e.content.body);
      assert.equal(bodies.length, 20);
      assert.equal(bodies[0], 'concurrent 20');
    }
    assert.equal(backfillRequests.filter((id) => id === roomId).length, 1);
  });

  test('with history_visibility "joined", bob sees nothing from before his join', async () => {
    const roomId = await alice.createRoom({
      preset: 'public_chat',
      initial_state: [{ type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } }],
    });
    // More than one /backfill answer holds: the newest batch arrives without the visibility event.
    const secret: string[] = [];
    for (let i = 1; i <= 60; i++) secret.push(await alice.send(roomId, `secret ${i}`));
    const topic = await alice.sendState(roomId, 'm.room.topic', '', { topic: 'hidden topic change' });
    await joinThroughA(roomId);
    const before = backfillRequests.length;

    const events = await paginateAll(bob, roomId, 10);
    assert.ok(backfillRequests.length >= before + 2, `the history was fetched in several batches (${backfillRequests.length - before})`);
    assert.equal(events[0].state_key, '@bob:b.test');
    const ids = events.map((e) => e.event_id);
    for (const id of [...secret, topic]) assert.ok(!ids.includes(id), `${id} is not visible to bob`);
    assert.ok(events.every((e) => e.type !== 'm.room.message'), 'no message from before the join');

    // It was fetched, though: what bob may not see is hidden, not missing.
    const r = await bob.get(`/rooms/${enc(roomId)}/event/${enc(secret[0])}`);
    assert.equal(r.status, 404);
    const stored = await fed.servers[1].ctx.rooms.events.get(secret[0]);
    assert.ok(stored, 'the event is stored on b.test');
    assert.ok(stored.streamPos < 0, 'at a negative stream position');
    const create = events[events.length - 1];
    assert.equal(create.type, 'm.room.create', 'the fetch went back to the create event');

    // What is sent after the join is visible as usual.
    const hello = await alice.send(roomId, 'welcome bob');
    await waitFor('bob sees the message after his join', async () => {
      const page = await bob.messages(roomId, { limit: 5 });
      return (page.body.chunk as Ev[]).some((e) => e.event_id === hello);
    }, { timeoutMs: 15_000 });
  });

  test('history shared before a switch to "joined" stays visible; what follows the switch does not', async () => {
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    const shared: string[] = [];
    for (let i = 1; i <= 10; i++) shared.push(await alice.send(roomId, `shared ${i}`));
    await alice.sendState(roomId, 'm.room.history_visibility', '', { history_visibility: 'joined' });
    const hidden: string[] = [];
    for (let i = 1; i <= 60; i++) hidden.push(await alice.send(roomId, `hidden ${i}`));
    await joinThroughA(roomId);

    const events = await paginateAll(bob, roomId, 20);
    const bodies = events.filter((e) => e.type === 'm.room.message').map((e) => e.content.body);
    assert.deepEqual(bodies, Array.from({ length: 10 }, (_, i) => `shared ${10 - i}`));
    assert.equal(events[events.length - 1].type, 'm.room.create');
    const ids = new Set(events.map((e) => e.event_id));
    assert.ok(hidden.every((id) => !ids.has(id)));
  });
});
