/**
 * End-to-end encryption with real clients: matrix-js-sdk with its Rust crypto
 * (what Element uses) against the server's /keys, /sendToDevice and
 * /room_keys endpoints. Device keys, an encrypted room both sides decrypt,
 * cross-signing, and server-side key backup restored on a new device.
 *
 *   RANVIER_TEST_DB=sqlite node --import tsx --test test/e2e/e2ee-client.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import './sdk-setup.js'; // before matrix-js-sdk
import * as sdk from 'matrix-js-sdk';
import { startTestServer, registerUser, type TestServer } from './harness.js';
import { Api, enc, login, waitFor } from './util.js';
import { decryptionState, findEvent, passwordUia, startCryptoClient, waitDecrypted, type CryptoUser } from './crypto-util.js';

const PASSWORD = 'e2ee client test password';
const MEGOLM = 'm.megolm.v1.aes-sha2';

describe('end-to-end encryption through matrix-js-sdk (Rust crypto)', { timeout: 60_000 }, () => {
  let server: TestServer;
  let alice: CryptoUser;
  let bob: CryptoUser;
  let alice2: CryptoUser | undefined;
  let aliceApi: Api;
  let bobApi: Api;
  let roomId: string | undefined;
  /** bob's messages from step 2c (megolm session bob shared with alice's first device). */
  const bobMessages: Array<{ eventId: string; body: string }> = [];

  before(async () => {
    server = await startTestServer();
    const [a, b] = await Promise.all([registerUser(server.url, 'alice', PASSWORD), registerUser(server.url, 'bob', PASSWORD)]);
    aliceApi = new Api(server.url, a.accessToken);
    bobApi = new Api(server.url, b.accessToken);
    [alice, bob] = await Promise.all([
      startCryptoClient(server.url, a, PASSWORD),
      startCryptoClient(server.url, b, PASSWORD),
    ]);
  });

  after(async () => {
    alice?.client.stopClient();
    bob?.client.stopClient();
    alice2?.client.stopClient();
    await server?.close();
  });

  /** The server's view of a device's keys (raw /keys/query). */
  async function queriedDevice(api: Api, userId: string, deviceId: string): Promise<any> {
    const r = await api.ok('POST', '/keys/query', { device_keys: { [userId]: [] } });
    return r.device_keys?.[userId]?.[deviceId];
  }

  function needRoom(): string {
    assert.ok(roomId, 'no encrypted room: the room step failed earlier');
    return roomId;
  }

  test('1. both clients upload device keys and one-time keys', async () => {
    for (const u of [alice, bob]) {
      const dk = await waitFor(
        `${u.userId}'s device keys on the server`,
        () => queriedDevice(aliceApi, u.userId, u.deviceId),
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      assert.equal(dk.user_id, u.userId);
      assert.equal(dk.device_id, u.deviceId);
      assert.ok(dk.algorithms.includes(MEGOLM), `algorithms: ${JSON.stringify(dk.algorithms)}`);
      const ed = dk.keys[`ed25519:${u.deviceId}`];
      assert.equal(typeof ed, 'string');
      assert.equal(typeof dk.keys[`curve25519:${u.deviceId}`], 'string');
      assert.equal(typeof dk.signatures?.[u.userId]?.[`ed25519:${u.deviceId}`], 'string');
      // the server's keys are the ones the client holds
      assert.equal(ed, (await u.crypto.getOwnDeviceKeys()).ed25519);
    }
    // one-time keys were uploaded (an empty upload returns the counts)
    const counts = await bobApi.ok('POST', '/keys/upload', {});
    assert.ok((counts.one_time_key_counts?.signed_curve25519 ?? 0) > 0, `bob's OTK counts: ${JSON.stringify(counts)}`);
  });

  test('2a. alice creates an encrypted room, bob joins', async () => {
    const res = await alice.client.createRoom({
      name: 'Secret tea party',
      preset: sdk.Preset.PrivateChat,
      initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: MEGOLM } }],
    });
    const id = res.room_id;
    await waitFor('alice is in her encrypted room', () => alice.client.getRoom(id)?.getMyMembership() === 'join');
    await waitFor('alice: encryption enabled in the room', () => alice.crypto.isEncryptionEnabledInRoom(id));
    await alice.client.invite(id, bob.userId);
    await waitFor('bob sees the invite', () => bob.client.getRoom(id)?.getMyMembership() === 'invite');
    await bob.client.joinRoom(id);
    await waitFor('bob is joined', () => bob.client.getRoom(id)?.getMyMembership() === 'join');
    await waitFor('alice sees bob join', () => alice.client.getRoom(id)?.getMember(bob.userId)?.membership === 'join');
    await waitFor('bob: encryption enabled in the room', () => bob.crypto.isEncryptionEnabledInRoom(id));
    roomId = id;
  });

  test('2b. alice → bob: encrypted on the server, bob decrypts', async () => {
    const id = needRoom();
    for (const body of ['hello bob, this is secret', 'a second secret']) {
      const { event_id } = await alice.client.sendTextMessage(id, body);
      const raw = await bobApi.ok('GET', `/rooms/${enc(id)}/event/${enc(event_id)}`);
      assert.equal(raw.type, 'm.room.encrypted', 'the server stores ciphertext');
      assert.equal(raw.content.algorithm, MEGOLM);
      assert.equal(raw.content.body, undefined);
      await waitDecrypted(bob, id, event_id, body);
    }
  });

  test('2c. bob → alice: alice decrypts', async () => {
    const id = needRoom();
    for (const body of ['hi alice, secret reply', 'and another']) {
      const { event_id } = await bob.client.sendTextMessage(id, body);
      await waitDecrypted(alice, id, event_id, body);
      bobMessages.push({ eventId: event_id, body });
    }
  });

  test('3a. both bootstrap cross-signing', async () => {
    await alice.crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordUia(alice) });
    await bob.crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordUia(bob) });
    assert.ok(await alice.crypto.isCrossSigningReady(), 'alice cross-signing ready');
    assert.ok(await bob.crypto.isCrossSigningReady(), 'bob cross-signing ready');
    // the server holds bob's master and self-signing keys, and bob's device is signed by the latter
    const q = await aliceApi.ok('POST', '/keys/query', { device_keys: { [bob.userId]: [] } });
    const master = q.master_keys?.[bob.userId];
    const ssk = q.self_signing_keys?.[bob.userId];
    assert.ok(master?.usage?.includes('master'), `bob's master key: ${JSON.stringify(q.master_keys)}`);
    assert.ok(ssk?.usage?.includes('self_signing'), `bob's self-signing key: ${JSON.stringify(q.self_signing_keys)}`);
    assert.equal(q.user_signing_keys?.[bob.userId], undefined, "bob's user-signing key must not be shown to alice");
    const sskId = Object.keys(ssk.keys)[0];
    const dev = q.device_keys[bob.userId][bob.deviceId];
    assert.equal(typeof dev.signatures?.[bob.userId]?.[sskId], 'string', `bob's device signed by his self-signing key: ${JSON.stringify(dev.signatures)}`);
    // bob sees his own user-signing key
    const own = await bobApi.ok('POST', '/keys/query', { device_keys: { [bob.userId]: [] } });
    assert.ok(own.user_signing_keys?.[bob.userId]?.usage?.includes('user_signing'), 'bob sees his own user-signing key');
  });

  test("3b. alice's client sees bob's device as cross-signed by bob (device_lists in /sync)", async () => {
    await waitFor(
      "alice sees bob's device signed by its owner",
      async () => (await alice.crypto.getDeviceVerificationStatus(bob.userId, bob.deviceId))?.signedByOwner,
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    assert.ok(await alice.crypto.userHasCrossSigningKeys(bob.userId), 'alice knows bob has a cross-signing identity');
    const status = await alice.crypto.getUserVerificationStatus(bob.userId);
    assert.equal(status.isCrossSigningVerified(), false, 'alice has not verified bob');
    // and the same for bob looking at alice
    await waitFor(
      "bob sees alice's device signed by its owner",
      async () => (await bob.crypto.getDeviceVerificationStatus(alice.userId, alice.deviceId))?.signedByOwner,
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    // each client sees its own device as cross-signed and verified
    const ownStatus = await alice.crypto.getDeviceVerificationStatus(alice.userId, alice.deviceId);
    assert.ok(ownStatus?.signedByOwner && ownStatus.crossSigningVerified, `alice's own device: ${JSON.stringify(ownStatus)}`);
  });

  test('4. key backup: alice backs up keys, a new device restores them and decrypts history', async () => {
    const id = needRoom();
    await alice.crypto.resetKeyBackup();
    const version = await waitFor('alice has an active backup', () => alice.crypto.getActiveSessionBackupVersion(), {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const info = await aliceApi.ok('GET', '/room_keys/version');
    assert.equal(info.version, version);
    assert.equal(info.algorithm, 'm.megolm_backup.v1.curve25519-aes-sha2');
    assert.equal(typeof info.auth_data?.public_key, 'string');
    const trust = await alice.crypto.isKeyBackupTrusted(info);
    assert.ok(trust.trusted, `alice trusts her backup as the server returns it: ${JSON.stringify(trust)}`);

    const body = 'history before the second device';
    const { event_id } = await alice.client.sendTextMessage(id, body);
    const raw = await aliceApi.ok('GET', `/rooms/${enc(id)}/event/${enc(event_id)}`);
    const sessionId: string = raw.content.session_id;
    await waitDecrypted(bob, id, event_id, body);

    // alice's client uploads the session (the SDK backs up in the background)
    const keys = await waitFor(
      `session ${sessionId} in the backup on the server`,
      async () => {
        const k = await aliceApi.ok('GET', `/room_keys/keys?version=${enc(version)}`);
        return k.rooms?.[id]?.sessions?.[sessionId] ? k : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    const backedUp = keys.rooms[id].sessions[sessionId];
    assert.equal(typeof backedUp.session_data?.ciphertext, 'string');
    assert.equal(typeof backedUp.first_message_index, 'number');
    const count = await aliceApi.ok('GET', `/room_keys/version/${enc(version)}`);
    assert.ok(count.count >= 1, `count: ${JSON.stringify(count)}`);
    assert.equal(typeof count.etag, 'string');

    // a second device for alice
    const l = await login(server.url, 'alice', PASSWORD, 'alice second device');
    assert.equal(l.status, 200, JSON.stringify(l.body));
    alice2 = await startCryptoClient(
      server.url,
      { userId: l.body.user_id, accessToken: l.body.access_token, deviceId: l.body.device_id },
      PASSWORD,
    );
    const a2 = alice2;
    assert.notEqual(a2.deviceId, alice.deviceId);
    let ev = findEvent(a2.client, id, event_id);
    if (!ev) {
      await a2.client.scrollback(a2.client.getRoom(id)!, 30);
      ev = findEvent(a2.client, id, event_id);
    }
    assert.ok(ev, 'the second device has the history event');
    // without the backup the new device cannot read it (no key was shared with it)
    const before = await waitFor('the second device has tried to decrypt the history event', () => {
      const e = findEvent(a2.client, id, event_id);
      return e && !e.isBeingDecrypted() && (e.isDecryptionFailure() || e.getClearContent()) ? e : undefined;
    });
    assert.ok(before.isDecryptionFailure(), `before the restore: ${decryptionState(before)}`);

    // hand the backup decryption key over (as 4S or verification would) and restore
    const key = await alice.crypto.getSessionBackupPrivateKey();
    assert.ok(key, "alice's first device holds the backup decryption key");
    await a2.crypto.storeSessionBackupPrivateKey(key, version);
    const result = await a2.crypto.restoreKeyBackup();
    assert.ok(result.imported >= 1, `restore imported keys: ${JSON.stringify(result)}`);
    await waitDecrypted(a2, id, event_id, body, { retry: true });
    // bob's earlier messages too: alice's first device backed up the session bob shared with it
    for (const m of bobMessages) {
      if (!findEvent(a2.client, id, m.eventId)) await a2.client.scrollback(a2.client.getRoom(id)!, 30);
      await waitDecrypted(a2, id, m.eventId, m.body, { retry: true });
    }
  });

  test('5. no unexpected failed E2EE requests from any client', () => {
    // Expected: the 401 that starts UIA on /keys/device_signing/upload, and
    // 404 M_NOT_FOUND from /room_keys/version before a backup exists.
    const expected = (f: { method: string; path: string; status: number }) =>
      (f.status === 401 && f.path.endsWith('/keys/device_signing/upload')) ||
      (f.status === 404 && f.method === 'GET' && f.path.endsWith('/room_keys/version'));
    const e2ee = /\/(keys|sendToDevice|room_keys|dehydrated_device)\b/;
    const bad = [alice, bob, alice2]
      .filter((u): u is CryptoUser => !!u)
      .flatMap((u) => u.failures.filter((f) => e2ee.test(f.path) && !expected(f)).map((f) => `${u.userId}/${u.deviceId}: ${f.method} ${f.path} -> ${f.status} ${f.body}`));
    assert.deepEqual(bad, []);
  });
});
