/**
 * Space hierarchies: a space on a.test with a sub-space, a private room, a
 * private sub-space holding a public room, and a room on b.test that a.test
 * learns about through the federation /hierarchy endpoint.
 *
 *   S (space, public)
 *   ├─ SS (space, public, suggested)      order "a"
 *   │   ├─ R3 (public, suggested)          order "a"
 *   │   └─ RB (on b.test, public)          order "b"
 *   ├─ R1 (public, suggested)              order "b"
 *   ├─ R2 (invite only)                    order "c"
 *   └─ PS (space, invite only)             order "d"
 *       └─ R4 (public)
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- hierarchy
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { registerUser } from './harness.js';
import { Api, enc } from './util.js';
import { startFederation, type Federation } from './federation-harness.js';
import { FederationRequestError } from '../../src/federation/client.js';
import type { FederationHierarchy } from '../../src/rooms/hierarchy.js';

const space = { creation_content: { type: 'm.space' } };

describe('space hierarchy', { timeout: 120_000 }, () => {
  let fed: Federation;
  let alice: Api;
  let carol: Api;
  let bob: Api;
  const id: Record<string, string> = {};
  const nameOf = new Map<string, string>();

  before(async () => {
    fed = await startFederation(['a.test', 'b.test']);
    const [a, b] = fed.servers;
    alice = new Api(a.url, (await registerUser(a.url, 'alice', 'pw-alice-123')).accessToken);
    carol = new Api(a.url, (await registerUser(a.url, 'carol', 'pw-carol-123')).accessToken);
    bob = new Api(b.url, (await registerUser(b.url, 'bob', 'pw-bob-123')).accessToken);

    const make = async (api: Api, name: string, body: Record<string, unknown>) => {
      id[name] = await api.createRoom({ name, ...body });
      nameOf.set(id[name], name);
    };
    await make(alice, 'S', { preset: 'public_chat', ...space });
    await make(alice, 'SS', { preset: 'public_chat', ...space });
    await make(alice, 'R1', { preset: 'public_chat', topic: 'first room' });
    await make(alice, 'R2', { preset: 'private_chat' });
    await make(alice, 'R3', { preset: 'public_chat' });
    await make(alice, 'PS', { preset: 'private_chat', ...space });
    await make(alice, 'R4', { preset: 'public_chat' });
    await make(bob, 'RB', { preset: 'public_chat' });

    const link = (parent: string, child: string, content: Record<string, unknown>) =>
      alice.sendState(id[parent], 'm.space.child', id[child], content);
    await link('S', 'SS', { via: ['a.test'], order: 'a', suggested: true });
    await link('S', 'R1', { via: ['a.test'], order: 'b', suggested: true });
    await link('S', 'R2', { via: ['a.test'], order: 'c' });
    await link('S', 'PS', { via: ['a.test'], order: 'd' });
    await link('SS', 'R3', { via: ['a.test'], order: 'a', suggested: true });
    await link('SS', 'RB', { via: ['b.test'], order: 'b' });
    await link('PS', 'R4', { via: ['a.test'] });
    // A link without via is a removed link, and is not walked.
    await alice.sendState(id.S, 'm.space.child', id.R4, {});
  });

  after(async () => {
    await fed?.close();
  });

  const hierarchy = (api: Api, roomId: string, q: Record<string, string> = {}) => {
    const qs = new URLSearchParams(q).toString();
    return api.get(`/_matrix/client/v1/rooms/${enc(roomId)}/hierarchy${qs ? `?${qs}` : ''}`);
  };
  const names = (rooms: Array<{ room_id: string }>) => rooms.map((r) => nameOf.get(r.room_id) ?? r.room_id);

  test('the whole tree, depth first in child order, with the remote room summarised by b.test', async () => {
    const r = await hierarchy(alice, id.S);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(names(r.body.rooms), ['S', 'SS', 'R3', 'RB', 'R1', 'R2', 'PS', 'R4']);
    assert.equal(r.body.next_batch, undefined);

    const root = r.body.rooms[0];
    assert.equal(root.room_type, 'm.space');
    assert.equal(root.join_rule, 'public');
    assert.equal(root.num_joined_members, 1);
    assert.deepEqual(root.children_state.map((c: { state_key: string }) => nameOf.get(c.state_key)), ['SS', 'R1', 'R2', 'PS']);
    for (const c of root.children_state) {
      assert.equal(c.type, 'm.space.child');
      assert.equal(typeof c.origin_server_ts, 'number');
      assert.match(c.sender, /^@alice:a\.test$/);
      assert.ok(Array.isArray(c.content.via));
    }
    const r1 = r.body.rooms.find((x: { room_id: string }) => x.room_id === id.R1);
    assert.equal(r1.topic, 'first room');
    assert.deepEqual(r1.children_state, []);
    assert.equal(r.body.rooms.find((x: { room_id: string }) => x.room_id === id.R2).join_rule, 'invite');

    const rb = r.body.rooms.find((x: { room_id: string }) => x.room_id === id.RB);
    assert.equal(rb.name, 'RB');
    assert.equal(rb.join_rule, 'public');
    assert.equal(rb.num_joined_members, 1);
    assert.equal(await fed.servers[0].ctx.rooms.getRoom(id.RB), undefined, 'a.test does not hold RB');
  });

  test('rooms a user cannot see are left out, but walked through', async () => {
    const r = await hierarchy(carol, id.S);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    // R2 and PS are invite-only and carol is in neither; R4 is public, below PS.
    assert.deepEqual(names(r.body.rooms), ['S', 'SS', 'R3', 'RB', 'R1', 'R4']);
    await alice.invite(id.R2, '@carol:a.test');
    const invited = await hierarchy(carol, id.S);
    assert.deepEqual(names(invited.body.rooms), ['S', 'SS', 'R3', 'RB', 'R1', 'R2', 'R4']);
  });

  test('pagination with limit=1 walks the same tree, one room per page', async () => {
    const seen: string[] = [];
    let from: string | undefined;
    for (let page = 0; page < 20; page++) {
      const r = await hierarchy(alice, id.S, { limit: '1', ...(from ? { from } : {}) });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.rooms.length, 1);
      seen.push(...names(r.body.rooms));
      from = r.body.next_batch;
      if (!from) break;
    }
    assert.deepEqual(seen, ['S', 'SS', 'R3', 'RB', 'R1', 'R2', 'PS', 'R4']);
  });

  test('a pagination token is only good for the same parameters, user and room', async () => {
    const first = await hierarchy(alice, id.S, { limit: '2', max_depth: '3' });
    const from = first.body.next_batch as string;
    assert.equal(typeof from, 'string');
    const same = await hierarchy(alice, id.S, { limit: '2', max_depth: '3', from });
    assert.equal(same.status, 200);
    assert.deepEqual(names(same.body.rooms), ['R3', 'RB']);
    // Reusable: a retried request gets the same page.
    assert.deepEqual(names((await hierarchy(alice, id.S, { limit: '2', max_depth: '3', from })).body.rooms), ['R3', 'RB']);
    for (const bad of [
      await hierarchy(alice, id.S, { limit: '2', max_depth: '2', from }),
      await hierarchy(alice, id.S, { limit: '2', max_depth: '3', suggested_only: 'true', from }),
      await hierarchy(carol, id.S, { limit: '2', max_depth: '3', from }),
      await hierarchy(alice, id.SS, { limit: '2', max_depth: '3', from }),
      await hierarchy(alice, id.S, { from: 'no-such-token' }),
    ]) {
      assert.equal(bad.status, 400, JSON.stringify(bad.body));
      assert.equal(bad.body.errcode, 'M_INVALID_PARAM');
    }
  });

  test('max_depth bounds the walk', async () => {
    assert.deepEqual(names((await hierarchy(alice, id.S, { max_depth: '0' })).body.rooms), ['S']);
    assert.deepEqual(names((await hierarchy(alice, id.S, { max_depth: '1' })).body.rooms), ['S', 'SS', 'R1', 'R2', 'PS']);
  });

  test('suggested_only keeps suggested children only', async () => {
    const r = await hierarchy(alice, id.S, { suggested_only: 'true' });
    assert.equal(r.status, 200);
    assert.deepEqual(names(r.body.rooms), ['S', 'SS', 'R3', 'R1']);
    assert.deepEqual(r.body.rooms[0].children_state.map((c: { state_key: string }) => nameOf.get(c.state_key)), ['SS', 'R1']);
  });

  test('hidden and unknown roots are 403; bad parameters are 400', async () => {
    const priv = await hierarchy(carol, id.PS);
    assert.equal(priv.status, 403);
    assert.equal(priv.body.errcode, 'M_FORBIDDEN');
    const unknown = await hierarchy(alice, '!nowhere:a.test');
    assert.equal(unknown.status, 403);
    for (const q of [{ limit: '0' }, { max_depth: '-1' }, { suggested_only: 'maybe' }] as Array<Record<string, string>>) {
      const r = await hierarchy(alice, id.S, q);
      assert.equal(r.status, 400, JSON.stringify(q));
    }
    const anon = await hierarchy(new Api(fed.servers[0].url), id.S);
    assert.equal(anon.status, 401);
  });

  test('federation /hierarchy answers other servers with what they may see', async () => {
    const fromB = <T>(roomId: string, query: Record<string, string> = {}) =>
      fed.servers[1].ctx.federation.client.request<T>('a.test', { method: 'GET', path: `/_matrix/federation/v1/hierarchy/${enc(roomId)}`, query });
    const r = await fromB<FederationHierarchy>(id.S);
    assert.equal(r.room.room_id, id.S);
    assert.equal(r.room.room_type, 'm.space');
    assert.equal(r.room.children_state.length, 4);
    assert.deepEqual(r.children.map((c) => nameOf.get(c.room_id)).sort(), ['R1', 'SS']);
    assert.ok(r.children.every((c) => c.children_state === undefined));
    assert.deepEqual(r.inaccessible_children.map((c) => nameOf.get(c)).sort(), ['PS', 'R2']);

    const suggested = await fromB<FederationHierarchy>(id.S, { suggested_only: 'true' });
    assert.deepEqual(suggested.room.children_state.map((c) => nameOf.get(c.state_key)), ['SS', 'R1']);

    for (const hidden of [id.R2, '!nowhere:a.test']) {
      await assert.rejects(fromB(hidden), (err: unknown) => err instanceof FederationRequestError && err.status === 404);
    }
    const unsigned = await fetch(`${fed.servers[0].url}/_matrix/federation/v1/hierarchy/${enc(id.S)}`);
    assert.equal(unsigned.status, 401);
  });
});
