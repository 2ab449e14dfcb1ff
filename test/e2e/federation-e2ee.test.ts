/**
 * End-to-end encryption across servers: matrix-js-sdk clients with Rust
 * crypto on a.test and b.test share an encrypted room and each decrypts the
 * other's messages (device keys via /user/keys/query, one-time keys via
 * /user/keys/claim, room keys as m.direct_to_device EDUs). Typing and read
 * receipts cross too, and an EDU about a user of another server than the
 * transaction's origin is ignored.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- federation-e2ee
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import './sdk-setup.js'; // before matrix-js-sdk
import * as sdk from 'matrix-js-sdk';
import { registerUser } from './harness.js';
import { Api, caughtUp, enc, login, waitFor } from './util.js';
import { startFederation, type Federation } from './federation-harness.js';
import { startCryptoClient, waitDecrypted, type CryptoUser } from './crypto-util.js';

const PASSWORD = 'federated e2ee password';
const MEGOLM = 'm.megolm.v1.aes-sha2';

type SyncBody = { next_batch: string; rooms?: { join?: Record<string, { ephemeral?: { events: Array<{ type: string; content: any }> } }> } };

/** The ephemeral event of `type` in `roomId` of a sync response. */
function ephemeral(s: SyncBody, roomId: string, type: string): any {
  return s.rooms?.join?.[roomId]?.ephemeral?.events.find((e) => e.type === type)?.content;
}

describe('end-to-end encryption across servers', { timeout: 120_000 }, () => {
  let fed: Federation;
  let alice: CryptoUser;
  let bob: CryptoUser;
  /** Raw API clients on second devices, so their syncs never acknowledge the SDK devices' to-device messages. */
  let aliceRaw: Api;
  let bobRaw: Api;
  let roomId: string | undefined;
  let bobEventId: string | undefined;

  before(async () => {
    fed = await startFederation(['a.test', 'b.test']);
    const [a, b] = fed.servers;
    const [ua, ub] = await Promise.all([registerUser(a.url, 'alice', PASSWORD), registerUser(b.url, 'bob', PASSWORD)]);
    [alice, bob] = await Promise.all([startCryptoClient(a.url, ua, PASSWORD), startCryptoClient(b.url, ub, PASSWORD)]);
    const [la, lb] = await Promise.all([login(a.url, 'alice', PASSWORD, 'raw'), login(b.url, 'bob', PASSWORD, 'raw')]);
    aliceRaw = new Api(a.url, la.body.access_token);
    bobRaw = new Api(b.url, lb.body.access_token);
  });

  after(async () => {
    alice?.client.stopClient();
    bob?.client.stopClient();
    await fed?.close();
  });

  function needRoom(): string {
    assert.ok(roomId, 'no shared encrypted room: the room step failed earlier');
    return roomId;
  }

  test('1. alice creates an encrypted room on a.test, bob joins it from b.test', async () => {
    const res = await alice.client.createRoom({
      name: 'Across the wire',
      preset: sdk.Preset.PublicChat,
      initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: MEGOLM } }],
    });
    const id = res.room_id;
    await waitFor('alice: encryption enabled', () => alice.crypto.isEncryptionEnabledInRoom(id));
    await bob.client.joinRoom(id, { viaServers: ['a.test'] });
    await waitFor('bob is joined', () => bob.client.getRoom(id)?.getMyMembership() === 'join', { timeoutMs: 15_000 });
    await waitFor('alice sees bob join', () => alice.client.getRoom(id)?.getMember(bob.userId)?.membership === 'join', { timeoutMs: 15_000 });
    // Bob's client learns from /sync alone that the room is encrypted and who is in it.
    await waitFor('bob: encryption enabled', () => bob.crypto.isEncryptionEnabledInRoom(id), { timeoutMs: 15_000 });
    await waitFor('bob sees alice joined', () => bob.client.getRoom(id)?.getMember(alice.userId)?.membership === 'join', { timeoutMs: 15_000 });
    roomId = id;
  });

  test('2. each side sees the other\'s device through its own server', async () => {
    await waitFor("alice's client knows bob's device", async () => (await alice.crypto.getUserDeviceInfo([bob.userId], true)).get(bob.userId)?.has(bob.deviceId), { timeoutMs: 15_000, intervalMs: 100 });
    await waitFor("bob's client knows alice's device", async () => (await bob.crypto.getUserDeviceInfo([alice.userId], true)).get(alice.userId)?.has(alice.deviceId), { timeoutMs: 15_000, intervalMs: 100 });
  });

  test('3. alice → bob and bob → alice: ciphertext on both servers, each decrypts', async () => {
    const id = needRoom();
    const body = 'hello bob on b.test, this is secret';
    const { event_id } = await alice.client.sendTextMessage(id, body);
    const raw = await waitFor('the event on b.test', async () => {
      const r = await bobRaw.get(`/rooms/${enc(id)}/event/${enc(event_id)}`);
      return r.status === 200 ? r.body : undefined;
    }, { timeoutMs: 15_000 });
    assert.equal(raw.type, 'm.room.encrypted', 'b.test stores ciphertext');
    assert.equal(raw.content.algorithm, MEGOLM);
    assert.equal(raw.content.body, undefined);
    await waitDecrypted(bob, id, event_id, body, { timeoutMs: 20_000 });

    const reply = 'hi alice on a.test, secret reply';
    const sent = await bob.client.sendTextMessage(id, reply);
    await waitDecrypted(alice, id, sent.event_id, reply, { timeoutMs: 20_000 });
    bobEventId = sent.event_id;
  });

  test('4. bob typing on b.test shows up in alice\'s /sync on a.test', async () => {
    const id = needRoom();
    const since = await caughtUp(aliceRaw);
    await bobRaw.put(`/rooms/${enc(id)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 30_000 });
    await waitFor('alice sees bob typing', async () => {
      const s = (await aliceRaw.sync({ since, timeout: 1000 })) as SyncBody;
      return (ephemeral(s, id, 'm.typing')?.user_ids ?? []).includes(bob.userId);
    }, { timeoutMs: 15_000 });
    const stop = await caughtUp(aliceRaw);
    await bobRaw.put(`/rooms/${enc(id)}/typing/${enc(bob.userId)}`, { typing: false });
    await waitFor('alice sees bob stop typing', async () => {
      const s = (await aliceRaw.sync({ since: stop, timeout: 1000 })) as SyncBody;
      const t = ephemeral(s, id, 'm.typing');
      return t && !t.user_ids.includes(bob.userId);
    }, { timeoutMs: 15_000 });
  });

  test('5. alice\'s read receipt on a.test shows up in bob\'s /sync on b.test', async () => {
    const id = needRoom();
    assert.ok(bobEventId);
    const since = await caughtUp(bobRaw);
    await aliceRaw.ok('POST', `/rooms/${enc(id)}/receipt/m.read/${enc(bobEventId)}`, {});
    await waitFor('bob sees alice\'s receipt', async () => {
      const s = (await bobRaw.sync({ since, timeout: 1000 })) as SyncBody;
      return ephemeral(s, id, 'm.receipt')?.[bobEventId!]?.['m.read']?.[alice.userId];
    }, { timeoutMs: 15_000 });
  });

  test('6. EDUs about another server\'s user are ignored (a transaction signed by b.test about @alice:a.test)', async () => {
    const id = needRoom();
    const since = await caughtUp(aliceRaw);
    const aliceLatest = await aliceRaw.send(id, 'a plain marker message');
    await waitFor('b.test has the marker', async () => (await bobRaw.get(`/rooms/${enc(id)}/event/${enc(aliceLatest)}`)).status === 200, { timeoutMs: 15_000 });
    const [, b] = fed.servers;
    const edus = [
      // Forged: b.test speaking for a.test's alice.
      { edu_type: 'm.typing', content: { room_id: id, user_id: alice.userId, typing: true } },
      { edu_type: 'm.receipt', content: { [id]: { 'm.read': { [alice.userId]: { event_ids: [aliceLatest], data: { ts: 1 } } } } } },
      { edu_type: 'm.direct_to_device', content: { sender: alice.userId, type: 'm.forged', message_id: 'forged-1', messages: { [alice.userId]: { '*': { x: 1 } } } } },
      // Genuine: b.test speaking for its own bob (the control: proves the transaction was processed).
      { edu_type: 'm.typing', content: { room_id: id, user_id: bob.userId, typing: true } },
    ];
    const res = await b.ctx.federation.client.request<{ pdus: unknown }>('a.test', {
      method: 'PUT', path: `/_matrix/federation/v1/send/forged-${Date.now()}`,
      body: { origin: 'b.test', origin_server_ts: Date.now(), pdus: [], edus },
    });
    assert.deepEqual(res.pdus, {});
    let last: SyncBody | undefined;
    await waitFor('alice sees bob typing (the genuine EDU)', async () => {
      last = (await aliceRaw.sync({ since, timeout: 1000 })) as SyncBody;
      return (ephemeral(last, id, 'm.typing')?.user_ids ?? []).includes(bob.userId);
    }, { timeoutMs: 15_000 });
    assert.ok(!ephemeral(last!, id, 'm.typing').user_ids.includes(alice.userId), 'forged typing for alice was applied');
    const full = (await aliceRaw.sync({ since, timeout: 0 })) as SyncBody & { to_device?: { events: Array<{ type: string }> } };
    const receipt = ephemeral(full, id, 'm.receipt');
    assert.equal(receipt?.[aliceLatest]?.['m.read']?.[alice.userId], undefined, `forged receipt for alice was stored: ${JSON.stringify(receipt)}`);
    assert.ok(!(full.to_device?.events ?? []).some((e) => e.type === 'm.forged'), 'forged to-device message was delivered');
  });
});
