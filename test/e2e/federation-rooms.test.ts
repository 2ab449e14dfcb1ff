/**
 * Rooms across servers: a user on one server joins a room on another
 * through send_join, and messages flow both ways through transactions.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- federation-rooms
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { registerUser } from './harness.js';
import { Api, enc, waitFor } from './util.js';
import { startFederation, type Federation } from './federation-harness.js';

describe('rooms over federation', { timeout: 60_000 }, () => {
  let fed: Federation;
  let alice: Api;
  let bob: Api;

  before(async () => {
    fed = await startFederation(['a.test', 'b.test']);
    const [a, b] = fed.servers;
    alice = new Api(a.url, (await registerUser(a.url, 'alice', 'pw-alice-123')).accessToken);
    bob = new Api(b.url, (await registerUser(b.url, 'bob', 'pw-bob-123')).accessToken);
  });

  after(async () => {
    await fed?.close();
  });

  const timelineBodies = async (api: Api, roomId: string) => {
    const r = await api.messages(roomId, { limit: 50 });
    if (r.status !== 200) return [];
    return (r.body.chunk as Array<{ type: string; content: { body?: string } }>).filter((e) => e.type === 'm.room.message').map((e) => e.content.body);
  };

  test('bob joins alice\'s room through a.test and they chat both ways', async () => {
    const roomId = await alice.createRoom({ preset: 'public_chat', name: 'Federated' });
    await alice.send(roomId, 'before bob');
    const since = (await bob.sync({ timeout: 0 })).next_batch;
    const joined = await bob.ok('POST', `/join/${enc(roomId)}?via=a.test`, {});
    assert.equal(joined.room_id, roomId);
    // Bob's client learns the room's state from /sync (the state before his join, then the join).
    for (const s of [await bob.sync({ since, timeout: 0 }), await bob.sync({ timeout: 0 })]) {
      const room = s.rooms.join[roomId];
      const all = [...room.state.events, ...room.timeline.events] as Array<{ type: string; state_key?: string; content: Record<string, unknown> }>;
      assert.equal(all.find((e) => e.type === 'm.room.name')?.content.name, 'Federated');
      assert.ok(all.some((e) => e.type === 'm.room.create'));
      assert.ok(all.some((e) => e.type === 'm.room.member' && e.state_key === '@alice:a.test'));
      assert.ok(room.timeline.events.some((e: { type: string; state_key?: string }) => e.type === 'm.room.member' && e.state_key === '@bob:b.test'));
    }
    // Bob's server now has the room's state.
    const name = await bob.ok('GET', `/rooms/${enc(roomId)}/state/m.room.name/`);
    assert.equal(name.name, 'Federated');
    // Alice's server saw the join.
    await waitFor('bob joined on a.test', async () => {
      const m = await alice.ok('GET', `/rooms/${enc(roomId)}/joined_members`);
      return Object.keys(m.joined).includes('@bob:b.test');
    });
    await alice.send(roomId, 'hello bob');
    await waitFor('bob sees alice\'s message', async () => (await timelineBodies(bob, roomId)).includes('hello bob'), { timeoutMs: 15_000 });
    await bob.send(roomId, 'hello alice');
    await waitFor('alice sees bob\'s message', async () => (await timelineBodies(alice, roomId)).includes('hello alice'), { timeoutMs: 15_000 });
  });

  const membershipOn = async (api: Api, roomId: string, userId: string) => {
    const r = await api.get(`/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`);
    return r.status === 200 ? (r.body.membership as string) : undefined;
  };

  test('a remote invite shows in sync with the room name, and accepting it joins', async () => {
    const roomId = await alice.createRoom({ preset: 'private_chat', name: 'Invite only' });
    await alice.invite(roomId, '@bob:b.test');
    assert.equal(await membershipOn(alice, roomId, '@bob:b.test'), 'invite');
    const invite = await waitFor('bob sees the invite', async () => {
      const s = await bob.sync({ timeout: 0 });
      return s.rooms?.invite?.[roomId];
    });
    const names = invite.invite_state.events.filter((e: { type: string }) => e.type === 'm.room.name');
    assert.equal(names[0]?.content.name, 'Invite only');
    // Bob accepts without naming a server: the inviter's server is used.
    await bob.join(roomId);
    await waitFor('alice sees bob join', async () => (await membershipOn(alice, roomId, '@bob:b.test')) === 'join');
  });

  test('rejecting a remote invite tells the inviting server', async () => {
    const roomId = await alice.createRoom({ preset: 'private_chat' });
    await alice.invite(roomId, '@bob:b.test');
    await waitFor('bob sees the invite', async () => (await bob.sync({ timeout: 0 })).rooms?.invite?.[roomId]);
    await bob.leave(roomId);
    await waitFor('alice sees the rejection', async () => (await membershipOn(alice, roomId, '@bob:b.test')) === 'leave');
  });

  test('inviting a user of a server that does not exist fails without inviting anyone', async () => {
    const roomId = await alice.createRoom({ preset: 'private_chat' });
    const r = await alice.post(`/rooms/${enc(roomId)}/invite`, { user_id: '@nobody:c.test' });
    assert.ok(r.status >= 400, `status ${r.status}`);
    assert.equal(await membershipOn(alice, roomId, '@nobody:c.test'), undefined);
  });

  test('knocking on a remote room, then being let in', async () => {
    const roomId = await alice.createRoom({ preset: 'private_chat', initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'knock' } }] });
    await bob.ok('POST', `/knock/${enc(roomId)}?via=a.test`, { reason: 'let me in' });
    await waitFor('alice sees the knock', async () => (await membershipOn(alice, roomId, '@bob:b.test')) === 'knock');
    await waitFor('bob sees his knock in sync', async () => (await bob.sync({ timeout: 0 })).rooms?.knock?.[roomId]);
    await alice.invite(roomId, '@bob:b.test');
    await bob.join(roomId);
    await waitFor('alice sees bob join', async () => (await membershipOn(alice, roomId, '@bob:b.test')) === 'join');
  });

  test('a restricted room admits members of the allowed room, vouched for by the resident server', async () => {
    const allowed = await alice.createRoom({ preset: 'public_chat' });
    const restricted = await alice.createRoom({
      preset: 'private_chat',
      initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: allowed }] } }],
    });
    // Not yet in the allowed room: refused.
    const refused = await bob.post(`/join/${enc(restricted)}?via=a.test`, {});
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    await bob.ok('POST', `/join/${enc(allowed)}?via=a.test`, {});
    await waitFor('a.test knows bob is in the allowed room', async () => (await membershipOn(alice, allowed, '@bob:b.test')) === 'join');
    await bob.ok('POST', `/join/${enc(restricted)}?via=a.test`, {});
    const member = await alice.ok('GET', `/rooms/${enc(restricted)}/state/m.room.member/${enc('@bob:b.test')}`);
    assert.equal(member.membership, 'join');
    assert.equal(member.join_authorised_via_users_server, '@alice:a.test');
  });

  test('the room directory of another server', async () => {
    const roomId = await alice.createRoom({ preset: 'public_chat', name: 'Listed', visibility: 'public' });
    const dir = await bob.ok('GET', '/publicRooms?server=a.test');
    const entry = dir.chunk.find((c: { room_id: string }) => c.room_id === roomId);
    assert.equal(entry?.name, 'Listed');
    const filtered = await bob.ok('POST', '/publicRooms?server=a.test', { filter: { generic_search_term: 'Listed' } });
    assert.ok(filtered.chunk.some((c: { room_id: string }) => c.room_id === roomId));
  });

  test('a join through a server that is not in the room fails cleanly', async () => {
    const r = await bob.post(`/join/${enc('!doesnotexist:a.test')}`, {});
    assert.ok(r.status === 404 || r.status === 403, `status ${r.status}`);
    assert.ok(typeof r.body.errcode === 'string');
  });
});
