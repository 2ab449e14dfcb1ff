/**
 * End-to-end keys over HTTP: /keys/upload, query, claim, changes,
 * cross-signing and signatures, and the device lists and key counts in /sync.
 *
 *   RANVIER_TEST_DB=sqlite node --import tsx --test test/e2e/e2ee-keys.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startTestServer, registerUser, type RegisteredUser, type TestServer } from './harness.js';
import { Api, caughtUp, login, passwordAuth } from './util.js';
import { generateSigningKey, publicKeyBase64, type SigningKey } from '../../src/core/signing-key.js';
import { signJson } from '../../src/core/json-signing.js';

const PASSWORD = 'keys test password';
const b64 = () => randomBytes(32).toString('base64').replace(/=+$/, '');

function deviceKeys(u: RegisteredUser, key: SigningKey, over: Record<string, unknown> = {}) {
  const dk = {
    user_id: u.userId, device_id: u.deviceId,
    algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
    keys: { [`curve25519:${u.deviceId}`]: b64(), [`ed25519:${u.deviceId}`]: publicKeyBase64(key) },
    ...over,
  };
  return signJson(dk, u.userId, named(key, u.deviceId));
}

/** The key under the id `ed25519:<name>` (a device id, or a cross-signing key's public key). */
function named(key: SigningKey, name: string): SigningKey {
  return { ...key, keyId: `ed25519:${name}` };
}

function otk(u: RegisteredUser, key: SigningKey, extra: Record<string, unknown> = {}) {
  return signJson({ key: b64(), ...extra }, u.userId, named(key, u.deviceId));
}

/** A cross-signing key whose key id is its public key. */
function csKey(): SigningKey {
  const k = generateSigningKey();
  return named(k, publicKeyBase64(k));
}

function csObj(userId: string, usage: string, key: SigningKey, signer?: SigningKey) {
  const obj = { user_id: userId, usage: [usage], keys: { [key.keyId]: publicKeyBase64(key) } };
  return signer ? signJson(obj, userId, signer) : obj;
}

function assertError(r: { status: number; body: any }, status: number, errcode: string | string[], what: string) {
  assert.equal(r.status, status, `${what}: status (${JSON.stringify(r.body)})`);
  const codes = Array.isArray(errcode) ? errcode : [errcode];
  assert.ok(codes.includes(r.body?.errcode), `${what}: errcode ${r.body?.errcode}`);
}

describe('e2ee keys', { timeout: 90_000 }, () => {
  let server: TestServer;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let carol: RegisteredUser;
  let aliceApi: Api;
  let bobApi: Api;
  let carolApi: Api;
  const aliceKey = generateSigningKey();
  const bobKey = generateSigningKey();

  before(async () => {
    server = await startTestServer();
    alice = await registerUser(server.url, 'alice', PASSWORD);
    bob = await registerUser(server.url, 'bob', PASSWORD);
    carol = await registerUser(server.url, 'carol', PASSWORD);
    aliceApi = new Api(server.url, alice.accessToken);
    bobApi = new Api(server.url, bob.accessToken);
    carolApi = new Api(server.url, carol.accessToken);
  });
  after(async () => server?.close());

  test('upload rejects keys for another user or device, unsigned or malformed keys', async () => {
    assertError(await aliceApi.post('/keys/upload', { device_keys: deviceKeys(bob, aliceKey) }), 400, 'M_INVALID_PARAM', 'other user');
    const otherDevice = signJson({ ...deviceKeys(alice, aliceKey), device_id: 'OTHER' }, alice.userId, named(aliceKey, alice.deviceId));
    assertError(await aliceApi.post('/keys/upload', { device_keys: otherDevice }), 400, 'M_INVALID_PARAM', 'other device');
    const { signatures: _s, ...unsigned } = deviceKeys(alice, aliceKey);
    assertError(await aliceApi.post('/keys/upload', { device_keys: unsigned }), 400, ['M_INVALID_PARAM', 'M_BAD_JSON'], 'unsigned');
    const badSig = deviceKeys(alice, aliceKey);
    (badSig.keys as Record<string, string>)[`curve25519:${alice.deviceId}`] = b64(); // signature no longer matches
    assertError(await aliceApi.post('/keys/upload', { device_keys: badSig }), 400, ['M_INVALID_PARAM', 'M_BAD_JSON'], 'bad signature');
    assertError(await aliceApi.post('/keys/upload', { device_keys: deviceKeys(alice, aliceKey, { algorithms: 'x' }) }), 400, ['M_INVALID_PARAM', 'M_BAD_JSON'], 'algorithms');
    assertError(await aliceApi.post('/keys/upload', { device_keys: deviceKeys(alice, aliceKey, { keys: 5 }) }), 400, ['M_INVALID_PARAM', 'M_BAD_JSON'], 'keys');
    // Signed one-time key not signed by the device.
    const dk = deviceKeys(alice, aliceKey);
    assertError(await aliceApi.post('/keys/upload', { device_keys: dk, one_time_keys: { 'signed_curve25519:A': otk(alice, generateSigningKey()) } }), 400, 'M_INVALID_PARAM', 'otk bad signature');
    assertError(await aliceApi.post('/keys/upload', { one_time_keys: { 'signed_curve25519:A': { key: b64() } } }), 400, 'M_INVALID_PARAM', 'otk unsigned');
  });

  test('upload, query, claim with fallback, idempotency and reused ids', async () => {
    const dk = deviceKeys(alice, aliceKey);
    const k1 = otk(alice, aliceKey);
    const k2 = otk(alice, aliceKey);
    const fb = otk(alice, aliceKey, { fallback: true });
    let r = await aliceApi.ok('POST', '/keys/upload', { device_keys: dk, one_time_keys: { 'signed_curve25519:AAAA': k1, 'signed_curve25519:BBBB': k2 }, fallback_keys: { 'signed_curve25519:FB1': fb } });
    assert.equal(r.one_time_key_counts.signed_curve25519, 2);
    // Same content again: idempotent.
    r = await aliceApi.ok('POST', '/keys/upload', { device_keys: dk, one_time_keys: { 'signed_curve25519:AAAA': k1 } });
    assert.equal(r.one_time_key_counts.signed_curve25519, 2);
    // Same id, different content.
    assertError(await aliceApi.post('/keys/upload', { one_time_keys: { 'signed_curve25519:AAAA': otk(alice, aliceKey) } }), 400, 'M_INVALID_PARAM', 'otk id reused');

    const q = await bobApi.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [], '@x:remote.example': [] } });
    const got = q.device_keys[alice.userId][alice.deviceId];
    assert.equal(got.keys[`ed25519:${alice.deviceId}`], publicKeyBase64(aliceKey));
    assert.equal(got.unsigned.device_display_name, 'test');
    assert.ok(q.failures['remote.example'], 'remote server in failures');
    const q2 = await bobApi.ok('POST', '/keys/query', { device_keys: { [alice.userId]: ['NOPE'] } });
    assert.deepEqual(q2.device_keys[alice.userId], {});

    // A sync before the claims: the server may cache counts, and the claims must still show.
    let s = await aliceApi.sync({ timeout: 0 });
    assert.equal(s.device_one_time_keys_count.signed_curve25519, 2);
    const claim = () => bobApi.ok('POST', '/keys/claim', { one_time_keys: { [alice.userId]: { [alice.deviceId]: 'signed_curve25519' } } });
    const c1 = await claim();
    const c2 = await claim();
    const id1 = Object.keys(c1.one_time_keys[alice.userId][alice.deviceId])[0];
    const id2 = Object.keys(c2.one_time_keys[alice.userId][alice.deviceId])[0];
    assert.notEqual(id1, id2);
    assert.deepEqual(new Set([id1, id2]), new Set(['signed_curve25519:AAAA', 'signed_curve25519:BBBB']));
    s = await aliceApi.sync({ timeout: 0 });
    assert.equal(s.device_one_time_keys_count.signed_curve25519, 0);
    assert.deepEqual(s.device_unused_fallback_key_types, ['signed_curve25519']);
    // Out of one-time keys: the fallback key, then marked used.
    const c3 = await claim();
    assert.deepEqual(c3.one_time_keys[alice.userId][alice.deviceId], { 'signed_curve25519:FB1': fb });
    s = await aliceApi.sync({ timeout: 0 });
    assert.deepEqual(s.device_unused_fallback_key_types, []);
    // A new fallback key replaces the used one.
    await aliceApi.ok('POST', '/keys/upload', { fallback_keys: { 'signed_curve25519:FB2': otk(alice, aliceKey, { fallback: true }) } });
    s = await aliceApi.sync({ timeout: 0 });
    assert.deepEqual(s.device_unused_fallback_key_types, ['signed_curve25519']);
    const c4 = await claim();
    assert.ok(c4.one_time_keys[alice.userId][alice.deviceId]['signed_curve25519:FB2']);
  });

  test('cross-signing upload, signatures, failures', async () => {
    const master = csKey();
    const ssk = csKey();
    const usk = csKey();
    const badSsk = csObj(alice.userId, 'self_signing', ssk, csKey());
    assertError(await aliceApi.post('/keys/device_signing/upload', { master_key: csObj(alice.userId, 'master', master), self_signing_key: badSsk }), 400, 'M_INVALID_SIGNATURE', 'ssk not signed by master');
    assertError(await aliceApi.post('/keys/device_signing/upload', { master_key: csObj(bob.userId, 'master', master) }), 400, 'M_INVALID_PARAM', 'master of another user');
    // First upload: no UIA needed (MSC3967).
    await aliceApi.ok('POST', '/keys/device_signing/upload', {
      master_key: csObj(alice.userId, 'master', master),
      self_signing_key: csObj(alice.userId, 'self_signing', ssk, master),
      user_signing_key: csObj(alice.userId, 'user_signing', usk, master),
    });
    // Replacing the master key needs UIA.
    const master2 = csKey();
    const r = await aliceApi.post('/keys/device_signing/upload', { master_key: csObj(alice.userId, 'master', master2) });
    assert.equal(r.status, 401);
    assert.ok(r.body.session);

    let q = await aliceApi.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } });
    assert.ok(q.master_keys[alice.userId]);
    assert.ok(q.self_signing_keys[alice.userId]);
    assert.ok(q.user_signing_keys[alice.userId]);
    const qb = await bobApi.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } });
    assert.equal(qb.user_signing_keys[alice.userId], undefined, 'user-signing key only for its owner');

    // Sign own device with the self-signing key.
    const stored = q.device_keys[alice.userId][alice.deviceId];
    const { unsigned: _u, ...plain } = stored;
    const signedDevice = signJson({ ...plain, signatures: {} }, alice.userId, ssk);
    const badDevice = signJson({ ...plain, signatures: {} }, alice.userId, csKey());
    const masterPub = publicKeyBase64(master);
    const masterSignedByDevice = signJson({ ...csObj(alice.userId, 'master', master), signatures: {} }, alice.userId, named(aliceKey, alice.deviceId));
    let up = await aliceApi.ok('POST', '/keys/signatures/upload', { [alice.userId]: { [alice.deviceId]: signedDevice, [masterPub]: masterSignedByDevice } });
    assert.deepEqual(up.failures, {});
    up = await aliceApi.ok('POST', '/keys/signatures/upload', { [alice.userId]: { [alice.deviceId]: badDevice } });
    assert.equal(up.failures[alice.userId][alice.deviceId].errcode, 'M_INVALID_SIGNATURE');
    q = await bobApi.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } });
    assert.ok(q.device_keys[alice.userId][alice.deviceId].signatures[alice.userId][ssk.keyId], 'ssk signature on device');
    assert.ok(q.master_keys[alice.userId].signatures[alice.userId][`ed25519:${alice.deviceId}`], 'device signature on master');

    // Bob signs Alice's master key with his user-signing key.
    const bm = csKey();
    const busk = csKey();
    await bobApi.ok('POST', '/keys/device_signing/upload', { master_key: csObj(bob.userId, 'master', bm), user_signing_key: csObj(bob.userId, 'user_signing', busk, bm) });
    const aliceMaster = csObj(alice.userId, 'master', master);
    up = await bobApi.ok('POST', '/keys/signatures/upload', { [alice.userId]: { [masterPub]: signJson(aliceMaster, bob.userId, busk) } });
    assert.deepEqual(up.failures, {});
    up = await bobApi.ok('POST', '/keys/signatures/upload', { [alice.userId]: { [masterPub]: signJson(aliceMaster, bob.userId, csKey()) } });
    assert.equal(up.failures[alice.userId][masterPub].errcode, 'M_INVALID_SIGNATURE');
    q = await bobApi.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } });
    assert.ok(q.master_keys[alice.userId].signatures[bob.userId][busk.keyId], 'bob sees his signature');

    // With password UIA, the master key is replaced and the others reset.
    const session = r.body.session;
    await aliceApi.ok('POST', '/keys/device_signing/upload', { master_key: csObj(alice.userId, 'master', master2), auth: passwordAuth(alice.userId, PASSWORD, session) });
    q = await aliceApi.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } });
    assert.equal(q.master_keys[alice.userId].keys[master2.keyId], publicKeyBase64(master2));
    assert.equal(q.self_signing_keys[alice.userId], undefined);
    assert.equal(q.user_signing_keys[alice.userId], undefined);
  });

  test('device lists in /sync and /keys/changes follow joins, leaves and key changes', async () => {
    const roomId = await bobApi.createRoom({});
    await bobApi.invite(roomId, carol.userId);
    const since = await caughtUp(carolApi);
    await carolApi.join(roomId);
    let s = await carolApi.sync({ since, timeout: 0 });
    assert.ok(s.device_lists.changed.includes(bob.userId), `bob newly shares a room: ${JSON.stringify(s.device_lists)}`);
    let t = s.next_batch;

    // Bob uploads device keys: carol's long-poll wakes with bob changed.
    const waiting = carolApi.sync({ since: t, timeout: 10_000 });
    await new Promise((res) => setTimeout(res, 100));
    await bobApi.ok('POST', '/keys/upload', { device_keys: deviceKeys(bob, bobKey) });
    s = await waiting;
    assert.deepEqual(s.device_lists.changed, [bob.userId]);
    const ch = await carolApi.ok('GET', `/keys/changes?from=${encodeURIComponent(t)}&to=${encodeURIComponent(s.next_batch)}`);
    assert.deepEqual(ch.changed, [bob.userId]);
    t = s.next_batch;

    // Alice is in no room with carol: her key changes are not seen.
    await aliceApi.ok('POST', '/keys/upload', { device_keys: deviceKeys(alice, generateSigningKey()) });
    s = await carolApi.sync({ since: t, timeout: 0 });
    assert.ok(!s.device_lists.changed.includes(alice.userId));
    t = s.next_batch;

    // Bob logs in a new device and then deletes it: a change.
    const l = await login(server.url, 'bob', PASSWORD);
    const bob2 = new Api(server.url, l.body.access_token);
    await bob2.ok('POST', '/logout');
    s = await carolApi.sync({ since: t, timeout: 0 });
    assert.deepEqual(s.device_lists.changed, [bob.userId]);
    t = s.next_batch;

    // Bob leaves: carol sees him in left.
    await bobApi.leave(roomId);
    s = await carolApi.sync({ since: t, timeout: 0 });
    assert.deepEqual(s.device_lists.left, [bob.userId]);
    assert.ok(!s.device_lists.changed.includes(bob.userId));
    const ch2 = await carolApi.ok('GET', `/keys/changes?from=${encodeURIComponent(t)}&to=${encodeURIComponent(s.next_batch)}`);
    assert.deepEqual(ch2.left, [bob.userId]);
    assertError(await carolApi.call('GET', '/keys/changes?from=bogus&to=s1_0'), 400, 'M_INVALID_PARAM', 'bad token');
  });

  test('deleting a device removes its keys', async () => {
    const l = await login(server.url, 'bob', PASSWORD, 'second');
    const dev = { userId: bob.userId, deviceId: l.body.device_id, accessToken: l.body.access_token };
    const api = new Api(server.url, dev.accessToken);
    const k = generateSigningKey();
    await api.ok('POST', '/keys/upload', { device_keys: deviceKeys(dev, k), one_time_keys: { 'signed_curve25519:Z': otk(dev, k) } });
    let q = await aliceApi.ok('POST', '/keys/query', { device_keys: { [bob.userId]: [] } });
    assert.ok(q.device_keys[bob.userId][dev.deviceId]);
    await api.ok('POST', '/logout');
    q = await aliceApi.ok('POST', '/keys/query', { device_keys: { [bob.userId]: [] } });
    assert.equal(q.device_keys[bob.userId][dev.deviceId], undefined);
    const c = await aliceApi.ok('POST', '/keys/claim', { one_time_keys: { [bob.userId]: { [dev.deviceId]: 'signed_curve25519' } } });
    assert.deepEqual(c.one_time_keys, {});
  });
});
