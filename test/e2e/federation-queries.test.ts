/**
 * Federation queries between two servers: remote profiles, joining through
 * a remote alias, GET /user/devices, and /keys/query and /keys/claim for
 * users of the other server (with device-list updates invalidating what the
 * asking server cached).
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- federation-queries
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { registerUser, type RegisteredUser } from './harness.js';
import { Api, caughtUp, enc, waitFor } from './util.js';
import { startFederation, type Federation } from './federation-harness.js';
import { generateSigningKey, publicKeyBase64, type SigningKey } from '../../src/core/signing-key.js';
import { signJson } from '../../src/core/json-signing.js';
import { FederationRequestError } from '../../src/federation/client.js';

const b64 = () => randomBytes(32).toString('base64').replace(/=+$/, '');

function deviceKeys(u: RegisteredUser, key: SigningKey) {
  const dk = {
    user_id: u.userId, device_id: u.deviceId,
    algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
    keys: { [`curve25519:${u.deviceId}`]: b64(), [`ed25519:${u.deviceId}`]: publicKeyBase64(key) },
  };
  return signJson(dk, u.userId, { ...key, keyId: `ed25519:${u.deviceId}` });
}

describe('federation queries', { timeout: 90_000 }, () => {
  let fed: Federation;
  let aliceUser: RegisteredUser;
  let alice: Api;
  let bob: Api;
  let roomId: string | undefined;

  before(async () => {
    fed = await startFederation(['a.test', 'b.test']);
    const [a, b] = fed.servers;
    aliceUser = await registerUser(a.url, 'alice', 'pw-alice-123');
    alice = new Api(a.url, aliceUser.accessToken);
    bob = new Api(b.url, (await registerUser(b.url, 'bob', 'pw-bob-123')).accessToken);
  });

  after(async () => {
    await fed?.close();
  });

  /** A signed request from b.test to a.test, as b.test's server makes it. */
  const fromB = <T>(method: 'GET' | 'POST', path: string, opts: { query?: Record<string, string>; body?: unknown } = {}) =>
    fed.servers[1].ctx.federation.client.request<T>('a.test', { method, path, ...opts });

  const statusOf = async (p: Promise<unknown>): Promise<number | undefined> => {
    try {
      await p;
      return 200;
    } catch (err) {
      assert.ok(err instanceof FederationRequestError, String(err));
      return err.status;
    }
  };

  test('remote profile: bob reads alice\'s profile through b.test; unknown users are 404', async () => {
    await alice.ok('PUT', `/profile/${enc(aliceUser.userId)}/displayname`, { displayname: 'Alice of A' });
    const p = await bob.ok('GET', `/profile/${enc(aliceUser.userId)}`);
    assert.equal(p.displayname, 'Alice of A');
    const field = await bob.ok('GET', `/profile/${enc(aliceUser.userId)}/displayname`);
    assert.equal(field.displayname, 'Alice of A');
    const missing = await bob.get(`/profile/${enc('@nobody:a.test')}`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.errcode, 'M_NOT_FOUND');
  });

  test('query/profile is served for local users only', async () => {
    const r = await fromB<Record<string, unknown>>('GET', '/_matrix/federation/v1/query/profile', { query: { user_id: aliceUser.userId, field: 'displayname' } });
    assert.deepEqual(r, { displayname: 'Alice of A' });
    assert.equal(await statusOf(fromB('GET', '/_matrix/federation/v1/query/profile', { query: { user_id: '@bob:b.test' } })), 400);
    assert.equal(await statusOf(fromB('GET', '/_matrix/federation/v1/query/profile', { query: { user_id: '@ghost:a.test' } })), 404);
    // Unsigned requests are refused.
    const unsigned = await fetch(`${fed.servers[0].url}/_matrix/federation/v1/query/profile?user_id=${enc(aliceUser.userId)}`);
    assert.equal(unsigned.status, 401);
  });

  test('bob joins alice\'s room by its a.test alias (query/directory), no via given', async () => {
    const id = await alice.createRoom({ preset: 'public_chat', name: 'Lobby', room_alias_name: 'lobby' });
    const dir = await fromB<{ room_id: string; servers: string[] }>('GET', '/_matrix/federation/v1/query/directory', { query: { room_alias: '#lobby:a.test' } });
    assert.equal(dir.room_id, id);
    assert.deepEqual(dir.servers, ['a.test']);
    assert.equal(await statusOf(fromB('GET', '/_matrix/federation/v1/query/directory', { query: { room_alias: '#nope:a.test' } })), 404);

    // The client directory API asks a.test too.
    const viaClient = await bob.ok('GET', `/directory/room/${enc('#lobby:a.test')}`);
    assert.equal(viaClient.room_id, id);
    assert.ok(viaClient.servers.includes('a.test'));
    assert.equal((await bob.get(`/directory/room/${enc('#nope:a.test')}`)).status, 404);

    const joined = await bob.ok('POST', `/join/${enc('#lobby:a.test')}`, {});
    assert.equal(joined.room_id, id);
    await waitFor('a.test sees bob joined', async () => {
      const m = await alice.ok('GET', `/rooms/${enc(id)}/joined_members`);
      return Object.keys(m.joined).includes('@bob:b.test');
    }, { timeoutMs: 10_000 });
    const missing = await bob.post(`/join/${enc('#nope:a.test')}`, {});
    assert.equal(missing.status, 404, JSON.stringify(missing.body));
    assert.equal(missing.body.errcode, 'M_NOT_FOUND');
    roomId = id;
  });

  test('user/devices lists a local user\'s devices with keys; other servers\' users are refused', async () => {
    const key = generateSigningKey();
    const dk = deviceKeys(aliceUser, key);
    await alice.ok('POST', '/keys/upload', { device_keys: dk, one_time_keys: { [`signed_curve25519:AAAA`]: signJson({ key: b64() }, aliceUser.userId, { ...key, keyId: `ed25519:${aliceUser.deviceId}` }) } });
    await alice.ok('PUT', `/devices/${enc(aliceUser.deviceId)}`, { display_name: 'alice laptop' });
    const r = await fromB<{ user_id: string; stream_id: number; devices: Array<{ device_id: string; keys: any; device_display_name?: string }> }>(
      'GET', `/_matrix/federation/v1/user/devices/${enc(aliceUser.userId)}`,
    );
    assert.equal(r.user_id, aliceUser.userId);
    assert.equal(typeof r.stream_id, 'number');
    assert.ok(r.stream_id > 0);
    const dev = r.devices.find((d) => d.device_id === aliceUser.deviceId);
    assert.ok(dev, JSON.stringify(r));
    assert.equal(dev.keys.keys[`ed25519:${aliceUser.deviceId}`], publicKeyBase64(key));
    assert.equal(dev.device_display_name, 'alice laptop');
    assert.equal(await statusOf(fromB('GET', `/_matrix/federation/v1/user/devices/${enc('@bob:b.test')}`)), 400);
  });

  test('bob\'s /keys/query and /keys/claim for alice go to a.test; an unreachable server is a failure', async () => {
    const q = await bob.ok('POST', '/keys/query', { device_keys: { [aliceUser.userId]: [], '@someone:c.test': [] } });
    const dev = q.device_keys?.[aliceUser.userId]?.[aliceUser.deviceId];
    assert.ok(dev, JSON.stringify(q));
    assert.equal(dev.user_id, aliceUser.userId);
    assert.ok(q.failures?.['c.test'], `failures: ${JSON.stringify(q.failures)}`);
    assert.equal(q.failures['a.test'], undefined);

    const claim = await bob.ok('POST', '/keys/claim', { one_time_keys: { [aliceUser.userId]: { [aliceUser.deviceId]: 'signed_curve25519' } } });
    const got = claim.one_time_keys?.[aliceUser.userId]?.[aliceUser.deviceId];
    assert.ok(got?.['signed_curve25519:AAAA'], JSON.stringify(claim));
    // The one key is used up.
    const again = await bob.ok('POST', '/keys/claim', { one_time_keys: { [aliceUser.userId]: { [aliceUser.deviceId]: 'signed_curve25519' } } });
    assert.deepEqual(again.one_time_keys?.[aliceUser.userId] ?? {}, {});
  });

  test('alice\'s new device keys reach bob: device_lists.changed in /sync, and the re-query is fresh', async () => {
    assert.ok(roomId, 'needs the shared room from the alias test');
    // Warm b.test's cache.
    await bob.ok('POST', '/keys/query', { device_keys: { [aliceUser.userId]: [] } });
    const since = await caughtUp(bob);
    const key2 = generateSigningKey();
    await alice.ok('POST', '/keys/upload', { device_keys: deviceKeys(aliceUser, key2) });
    await waitFor('bob sees alice in device_lists.changed', async () => {
      const s = await bob.sync({ since, timeout: 0 });
      return (s.device_lists?.changed ?? []).includes(aliceUser.userId);
    }, { timeoutMs: 15_000, intervalMs: 100 });
    const q = await bob.ok('POST', '/keys/query', { device_keys: { [aliceUser.userId]: [] } });
    assert.equal(q.device_keys[aliceUser.userId][aliceUser.deviceId].keys[`ed25519:${aliceUser.deviceId}`], publicKeyBase64(key2));
  });
});
