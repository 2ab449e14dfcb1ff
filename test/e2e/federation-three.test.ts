/**
 * Three servers in one room: everyone sees everyone's messages, typing, read
 * receipts and profiles, and a server stopped mid-conversation gets everything
 * it missed once it is back.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- federation-three
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { registerUser } from './harness.js';
import { Api, enc, login, waitFor } from './util.js';
import { startFederation, type Federation } from './federation-harness.js';

describe('three federated servers', { timeout: 120_000 }, () => {
  let fed: Federation;
  const users: Api[] = [];
  let roomId: string;

  before(async () => {
    fed = await startFederation(['a.test', 'b.test', 'c.test']);
    for (const [i, name] of ['alice', 'bob', 'carol'].entries()) {
      const s = fed.servers[i];
      users.push(new Api(s.url, (await registerUser(s.url, name, `pw-${name}-123`)).accessToken));
    }
    const [alice, bob, carol] = users;
    roomId = await alice.createRoom({ preset: 'public_chat', name: 'Three' });
    await bob.ok('POST', `/join/${enc(roomId)}?via=a.test`, {});
    // Carol joins through bob's server: any resident server will do.
    await carol.ok('POST', `/join/${enc(roomId)}?via=b.test`, {});
    for (const u of users) {
      await waitFor('everyone sees three members', async () => {
        const m = await u.ok('GET', `/rooms/${enc(roomId)}/joined_members`);
        return Object.keys(m.joined).length === 3;
      }, { timeoutMs: 15_000 });
    }
  });

  after(async () => {
    await fed?.close();
  });

  const bodies = async (api: Api) => {
    const r = await api.messages(roomId, { limit: 100 });
    if (r.status !== 200) return [] as string[];
    return (r.body.chunk as Array<{ type: string; content: { body?: string } }>)
      .filter((e) => e.type === 'm.room.message').map((e) => e.content.body ?? '');
  };

  const everyoneSees = async (texts: string[], who: Api[] = users) => {
    for (const u of who) {
      await waitFor(`messages ${texts.join(', ')} on ${u.url}`, async () => {
        const seen = await bodies(u);
        return texts.every((t) => seen.includes(t));
      }, { timeoutMs: 20_000 });
    }
  };

  test('messages from each server reach the other two', async () => {
    const [alice, bob, carol] = users;
    await alice.send(roomId, 'from a');
    await bob.send(roomId, 'from b');
    await carol.send(roomId, 'from c');
    await everyoneSees(['from a', 'from b', 'from c']);
  });

  test('typing, read receipts and profiles cross all three servers', async () => {
    const [alice, bob, carol] = users;
    await bob.ok('PUT', `/rooms/${enc(roomId)}/typing/${enc('@bob:b.test')}`, { typing: true, timeout: 30_000 });
    for (const u of [alice, carol]) {
      await waitFor('bob typing seen', async () => {
        const s = await u.sync({ timeout: 0 });
        const typing = s.rooms?.join?.[roomId]?.ephemeral?.events?.find((e: { type: string }) => e.type === 'm.typing');
        return typing?.content.user_ids.includes('@bob:b.test');
      }, { timeoutMs: 15_000 });
    }
    const eventId = await alice.send(roomId, 'read me');
    await everyoneSees(['read me']);
    await carol.ok('POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, {});
    for (const u of [alice, bob]) {
      await waitFor('carol\'s receipt seen', async () => {
        const s = await u.sync({ timeout: 0 });
        const receipts = s.rooms?.join?.[roomId]?.ephemeral?.events?.find((e: { type: string }) => e.type === 'm.receipt');
        return receipts?.content?.[eventId]?.['m.read']?.['@carol:c.test'];
      }, { timeoutMs: 15_000 });
    }
    await carol.ok('PUT', `/profile/${enc('@carol:c.test')}/displayname`, { displayname: 'Carol C' });
    const profile = await alice.ok('GET', `/profile/${enc('@carol:c.test')}`);
    assert.equal(profile.displayname, 'Carol C');
  });

  test('a server stopped mid-conversation catches up after restart, nothing lost', async () => {
    const [alice, bob] = users;
    await fed.stop(2);
    const missed = ['while c was down 1', 'while c was down 2', 'while c was down 3'];
    await alice.send(roomId, missed[0]);
    await bob.send(roomId, missed[1]);
    await alice.send(roomId, missed[2]);
    await everyoneSees(missed, [alice, bob]);

    const c = await fed.start(2);
    const carolLogin = await login(c.url, 'carol', 'pw-carol-123');
    const carol = new Api(c.url, carolLogin.body.access_token as string);
    users[2] = carol;
    // Carol speaking tells a.test and b.test that c.test is back, which ends their backoff.
    await carol.send(roomId, 'c is back');
    await everyoneSees([...missed, 'c is back']);
  });
});
