/**
 * The Synapse-compatible user admin API over HTTP: the requests synadm sends
 * (user list, details, modify, deactivate, password, whois), flags (admin,
 * shadow ban, rate limit overrides), devices, joined rooms, and
 * shared-secret registration as register_new_matrix_user does it.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- admin-users
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startTestServer, registerUser, type RegisteredUser, type TestServer } from './harness.js';
import { Api, enc, expectError, login, request } from './util.js';

const PASSWORD = 'hunter2 but longer';
const V1 = '/_synapse/admin/v1';
const V2 = '/_synapse/admin/v2';
const SECRET = 'a shared secret for tests';

/** register_new_matrix_user's MAC. */
function mac(nonce: string, user: string, password: string, admin: boolean, secret = SECRET): string {
  return createHmac('sha1', secret).update(`${nonce}\0${user}\0${password}\0${admin ? 'admin' : 'notadmin'}`).digest('hex');
}

describe('user admin API', { timeout: 120_000 }, () => {
  let srv: TestServer;
  let admin: RegisteredUser;
  let alice: RegisteredUser;
  let carol: RegisteredUser;

  const adm = (method: string, path: string, body?: unknown) =>
    request(srv.url, method, path, { token: admin.accessToken, body: body ?? (method === 'GET' || method === 'DELETE' ? undefined : {}) });

  before(async () => {
    srv = await startTestServer({ registration_shared_secret: SECRET });
    admin = await registerUser(srv.url, 'admin', PASSWORD);
    alice = await registerUser(srv.url, 'alice', PASSWORD);
    carol = await registerUser(srv.url, 'carol', PASSWORD);
    await srv.ctx.storage.db.updateTable('users').set({ is_admin: 1 }).where('user_id', '=', admin.userId).execute();
  });

  after(async () => {
    await srv?.close();
  });

  test('every route: 401 without a token, 403 M_FORBIDDEN for non-admins', async () => {
    const u = '@carol:localhost';
    const routes: Array<[string, string, unknown?]> = [
      ['GET', `${V1}/server_version`],
      ['GET', `${V2}/users`],
      ['GET', `${V2}/users/${u}`],
      ['PUT', `${V2}/users/@newbie:localhost`, { password: 'x' }],
      ['POST', `${V1}/deactivate/${u}`, { erase: true }],
      ['POST', `${V1}/reset_password/${u}`, { new_password: 'x' }],
      ['GET', `${V1}/whois/${u}`],
      ['GET', `${V1}/users/${u}/admin`],
      ['PUT', `${V1}/users/${alice.userId}/admin`, { admin: true }],
      ['POST', `${V1}/users/${u}/shadow_ban`, {}],
      ['DELETE', `${V1}/users/${u}/shadow_ban`],
      ['GET', `${V1}/users/${u}/override_ratelimit`],
      ['POST', `${V1}/users/${u}/override_ratelimit`, { messages_per_second: 0, burst_count: 0 }],
      ['DELETE', `${V1}/users/${u}/override_ratelimit`],
      ['GET', `${V1}/users/${u}/joined_rooms`],
      ['GET', `${V2}/users/${u}/devices`],
      ['GET', `${V2}/users/${u}/devices/${carol.deviceId}`],
      ['PUT', `${V2}/users/${u}/devices/${carol.deviceId}`, { display_name: 'x' }],
      ['DELETE', `${V2}/users/${u}/devices/${carol.deviceId}`],
      ['POST', `${V2}/users/${u}/delete_devices`, { devices: [carol.deviceId] }],
    ];
    for (const [method, path, body] of routes) {
      expectError(await request(srv.url, method, path, { token: alice.accessToken, body }), 403, 'M_FORBIDDEN', `${method} ${path} as non-admin`);
      expectError(await request(srv.url, method, path, { body }), 401, 'M_MISSING_TOKEN', `${method} ${path} without token`);
    }
    // Nothing happened on the way: carol is intact, alice is no admin, newbie does not exist.
    const c = await adm('GET', `${V2}/users/${u}`);
    assert.equal(c.body.deactivated, false);
    assert.equal(c.body.shadow_banned, false);
    assert.equal((await adm('GET', `${V2}/users/${u}/devices`)).body.total, 1);
    assert.equal((await adm('GET', `${V1}/users/${alice.userId}/admin`)).body.admin, false);
    assert.equal((await adm('GET', `${V2}/users/@newbie:localhost`)).status, 404);
  });

  test('server_version', async () => {
    const r = await adm('GET', `${V1}/server_version`);
    assert.equal(r.status, 200);
    assert.match(r.body.server_version, /^Ranvier \d+\.\d+/);
  });

  test('user list as synadm asks for it: filters, pagination, ordering', async () => {
    // synadm user list: from, limit, guests only when given, deactivated only when true.
    const r = await adm('GET', `${V2}/users?from=0&limit=100`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const names = r.body.users.map((x: { name: string }) => x.name);
    assert.deepEqual(names, ['@admin:localhost', '@alice:localhost', '@carol:localhost']);
    assert.equal(r.body.total, 3);
    assert.equal(r.body.next_token, undefined);
    const a = r.body.users[0];
    for (const k of ['name', 'user_type', 'is_guest', 'admin', 'deactivated', 'shadow_banned', 'displayname', 'avatar_url', 'creation_ts', 'locked', 'erased']) {
      assert.ok(k in a, `list entry has ${k}`);
    }
    assert.equal(a.admin, true);
    assert.equal(a.is_guest, false);
    assert.equal(a.displayname, 'admin');
    assert.ok(a.creation_ts > Date.now() - 600_000 && a.creation_ts <= Date.now(), 'creation_ts in ms');

    const page1 = await adm('GET', `${V2}/users?from=0&limit=2&guests=false`);
    assert.equal(page1.body.users.length, 2);
    assert.equal(page1.body.total, 3);
    assert.equal(page1.body.next_token, '2');
    const page2 = await adm('GET', `${V2}/users?from=${page1.body.next_token}&limit=2`);
    assert.deepEqual(page2.body.users.map((x: { name: string }) => x.name), ['@carol:localhost']);
    assert.equal(page2.body.next_token, undefined);

    assert.deepEqual((await adm('GET', `${V2}/users?name=ALI`)).body.users.map((x: { name: string }) => x.name), ['@alice:localhost']);
    assert.deepEqual((await adm('GET', `${V2}/users?user_id=car`)).body.users.map((x: { name: string }) => x.name), ['@carol:localhost']);
    assert.deepEqual((await adm('GET', `${V2}/users?admins=true`)).body.users.map((x: { name: string }) => x.name), ['@admin:localhost']);
    assert.equal((await adm('GET', `${V2}/users?admins=false`)).body.total, 2);
    // A wildcard in a search term is literal.
    assert.equal((await adm('GET', `${V2}/users?name=%25`)).body.total, 0);
    const back = await adm('GET', `${V2}/users?order_by=name&dir=b`);
    assert.deepEqual(back.body.users.map((x: { name: string }) => x.name), ['@carol:localhost', '@alice:localhost', '@admin:localhost']);
    const byAdmin = await adm('GET', `${V2}/users?order_by=admin&dir=b&limit=1`);
    assert.equal(byAdmin.body.users[0].name, '@admin:localhost');

    for (const q of ['limit=-1', 'from=x', 'guests=maybe', 'deactivated=1', 'order_by=password', 'dir=up', 'admins=yes']) {
      expectError(await adm('GET', `${V2}/users?${q}`), 400, 'M_INVALID_PARAM', q);
    }
  });

  test('user details; 404 for unknown users, 400 for remote ones', async () => {
    const r = await adm('GET', `${V2}/users/${alice.userId}`);
    assert.equal(r.status, 200);
    assert.equal(r.body.name, alice.userId);
    assert.equal(r.body.admin, false);
    assert.equal(r.body.deactivated, false);
    assert.equal(r.body.erased, false);
    assert.deepEqual(r.body.threepids, []);
    assert.equal(typeof r.body.last_seen_ts, 'number');
    expectError(await adm('GET', `${V2}/users/@nobody:localhost`), 404, 'M_NOT_FOUND', 'unknown user');
    assert.equal((await adm('GET', `${V2}/users/@someone:elsewhere.example`)).status, 400);
    // Encoded ids (synapse-admin encodes them) work too.
    assert.equal((await adm('GET', `${V2}/users/${enc(alice.userId)}`)).body.name, alice.userId);
  });

  test('user modify: create (201), change profile, admin, password (200); bad bodies 400', async () => {
    const created = await adm('PUT', `${V2}/users/@bob:localhost`, { password: 'bob password 1', displayname: 'Bob', admin: false });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.name, '@bob:localhost');
    assert.equal(created.body.displayname, 'Bob');
    const bobLogin = await login(srv.url, 'bob', 'bob password 1');
    assert.equal(bobLogin.status, 200, JSON.stringify(bobLogin.body));
    const bobToken = bobLogin.body.access_token as string;

    const modified = await adm('PUT', `${V2}/users/@bob:localhost`, { displayname: 'Robert', avatar_url: 'mxc://localhost/abc', admin: true, user_type: 'bot' });
    assert.equal(modified.status, 200, JSON.stringify(modified.body));
    assert.equal(modified.body.displayname, 'Robert');
    assert.equal(modified.body.avatar_url, 'mxc://localhost/abc');
    assert.equal(modified.body.admin, true);
    assert.equal(modified.body.user_type, 'bot');
    const profile = await request(srv.url, 'GET', `/_matrix/client/v3/profile/${enc('@bob:localhost')}`);
    assert.equal(profile.body.displayname, 'Robert');

    // Changing the password logs out everywhere unless told otherwise.
    const pw = await adm('PUT', `${V2}/users/@bob:localhost`, { password: 'bob password 2', logout_devices: false });
    assert.equal(pw.status, 200);
    assert.equal((await request(srv.url, 'GET', '/_matrix/client/v3/account/whoami', { token: bobToken })).status, 200);
    assert.equal((await adm('PUT', `${V2}/users/@bob:localhost`, { password: 'bob password 3' })).status, 200);
    expectError(await request(srv.url, 'GET', '/_matrix/client/v3/account/whoami', { token: bobToken }), 401, 'M_UNKNOWN_TOKEN', 'old token after password change');
    assert.equal((await login(srv.url, 'bob', 'bob password 2')).status, 403);
    assert.equal((await login(srv.url, 'bob', 'bob password 3')).status, 200);

    expectError(await adm('PUT', `${V2}/users/@bob:localhost`, { admin: 'yes' }), 400, 'M_BAD_JSON', 'admin not a boolean');
    expectError(await adm('PUT', `${V2}/users/@bob:localhost`, { threepids: [{ medium: 'email', address: 'b@example.org' }] }), 400, 'M_INVALID_PARAM', 'threepids');
    assert.equal((await adm('PUT', `${V2}/users/@bob:elsewhere.example`, { password: 'x' })).status, 400);
    expectError(await adm('PUT', `${V2}/users/${admin.userId}`, { admin: false }), 400, 'M_UNKNOWN', 'self-demotion');
    expectError(await adm('PUT', `${V2}/users/@Not%20Valid:localhost`, { password: 'x' }), 400, 'M_INVALID_USERNAME', 'invalid localpart');
    expectError(await adm('PUT', `${V2}/users/@Upper:localhost`, { password: 'x' }), 400, 'M_INVALID_USERNAME', 'upper case localpart');
    assert.equal((await adm('GET', `${V2}/users/@upper:localhost`)).status, 404, 'no lower-cased twin was created');
  });

  test('user password (reset_password)', async () => {
    const dave = await registerUser(srv.url, 'dave', PASSWORD);
    const r = await adm('POST', `${V1}/reset_password/${dave.userId}`, { new_password: 'dave new password' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, {});
    expectError(await request(srv.url, 'GET', '/_matrix/client/v3/account/whoami', { token: dave.accessToken }), 401, 'M_UNKNOWN_TOKEN', 'logged out');
    assert.equal((await login(srv.url, 'dave', PASSWORD)).status, 403);
    const l = await login(srv.url, 'dave', 'dave new password');
    assert.equal(l.status, 200);
    // synadm --no-logout
    assert.equal((await adm('POST', `${V1}/reset_password/${dave.userId}`, { new_password: 'dave third password', logout_devices: false })).status, 200);
    assert.equal((await request(srv.url, 'GET', '/_matrix/client/v3/account/whoami', { token: l.body.access_token })).status, 200);

    expectError(await adm('POST', `${V1}/reset_password/${dave.userId}`, {}), 400, 'M_MISSING_PARAM', 'no new_password');
    expectError(await adm('POST', `${V1}/reset_password/${dave.userId}`, { new_password: 5 }), 400, 'M_BAD_JSON', 'new_password not a string');
    expectError(await adm('POST', `${V1}/reset_password/@ghost:localhost`, { new_password: 'x' }), 404, 'M_NOT_FOUND', 'unknown user');
  });

  test('user whois', async () => {
    const r = await adm('GET', `${V1}/whois/${alice.userId}`);
    assert.equal(r.status, 200);
    assert.equal(r.body.user_id, alice.userId);
    const sessions = r.body.devices[''].sessions;
    assert.equal(sessions.length, 1);
    assert.equal(sessions[0].connections[0].ip, '127.0.0.1');
    assert.equal(typeof sessions[0].connections[0].last_seen, 'number');
    expectError(await adm('GET', `${V1}/whois/@ghost:localhost`), 404, 'M_NOT_FOUND', 'unknown user');
  });

  test('user deactivate with erase; list hides deactivated users; reactivation', async () => {
    const erin = await registerUser(srv.url, 'erin', PASSWORD);
    await request(srv.url, 'PUT', `/_matrix/client/v3/profile/${enc(erin.userId)}/displayname`, { token: erin.accessToken, body: { displayname: 'Erin E.' } });
    expectError(await adm('POST', `${V1}/deactivate/${erin.userId}`, { erase: 'yes' }), 400, 'M_BAD_JSON', 'erase not a boolean');
    const r = await adm('POST', `${V1}/deactivate/${erin.userId}`, { erase: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { id_server_unbind_result: 'success' });
    const d = await adm('GET', `${V2}/users/${erin.userId}`);
    assert.equal(d.body.deactivated, true);
    assert.equal(d.body.erased, true);
    assert.equal(d.body.displayname, null);
    assert.equal((await request(srv.url, 'GET', '/_matrix/client/v3/account/whoami', { token: erin.accessToken })).status, 401);
    assert.equal((await login(srv.url, 'erin', PASSWORD)).status, 403);

    const names = async (q: string) => (await adm('GET', `${V2}/users?${q}`)).body.users.map((x: { name: string }) => x.name);
    assert.ok(!(await names('limit=100')).includes(erin.userId));
    assert.ok((await names('limit=100&deactivated=true')).includes(erin.userId));

    expectError(await adm('POST', `${V1}/deactivate/@ghost:localhost`, {}), 404, 'M_NOT_FOUND', 'unknown user');
    assert.equal((await adm('POST', `${V1}/deactivate/@x:elsewhere.example`, {})).status, 400);

    // synadm user modify --activate (with a password, as Synapse requires).
    const re = await adm('PUT', `${V2}/users/${erin.userId}`, { deactivated: false, password: 'erin again' });
    assert.equal(re.status, 200, JSON.stringify(re.body));
    assert.equal(re.body.deactivated, false);
    assert.equal(re.body.erased, false);
    assert.equal((await login(srv.url, 'erin', 'erin again')).status, 200);
    // synadm user modify --deactivate
    const de = await adm('PUT', `${V2}/users/${erin.userId}`, { deactivated: true });
    assert.equal(de.body.deactivated, true);
    assert.equal(de.body.erased, false);
  });

  test('admin status', async () => {
    assert.deepEqual((await adm('GET', `${V1}/users/${alice.userId}/admin`)).body, { admin: false });
    assert.deepEqual((await adm('PUT', `${V1}/users/${alice.userId}/admin`, { admin: true })).body, {});
    assert.deepEqual((await adm('GET', `${V1}/users/${alice.userId}/admin`)).body, { admin: true });
    // Takes effect at once for the admin API itself.
    assert.equal((await request(srv.url, 'GET', `${V1}/server_version`, { token: alice.accessToken })).status, 200);
    assert.deepEqual((await adm('PUT', `${V1}/users/${alice.userId}/admin`, { admin: false })).body, {});
    assert.equal((await request(srv.url, 'GET', `${V1}/server_version`, { token: alice.accessToken })).status, 403);
    expectError(await adm('PUT', `${V1}/users/${alice.userId}/admin`, {}), 400, 'M_MISSING_PARAM', 'no admin');
    expectError(await adm('PUT', `${V1}/users/${alice.userId}/admin`, { admin: 1 }), 400, 'M_BAD_JSON', 'admin not boolean');
    expectError(await adm('PUT', `${V1}/users/${admin.userId}/admin`, { admin: false }), 400, 'M_UNKNOWN', 'self-demotion');
    assert.equal((await adm('GET', `${V1}/users/@x:elsewhere.example/admin`)).status, 400);
  });

  test('shadow ban: sends answer with an event id but reach nobody', async () => {
    const carolApi = new Api(srv.url, carol.accessToken);
    const aliceApi = new Api(srv.url, alice.accessToken);
    const roomId = await carolApi.createRoom({ preset: 'public_chat' });
    await aliceApi.join(roomId);

    assert.deepEqual((await adm('POST', `${V1}/users/${carol.userId}/shadow_ban`)).body, {});
    assert.equal((await adm('GET', `${V2}/users/${carol.userId}`)).body.shadow_banned, true);
    const fake = await carolApi.send(roomId, 'buy cheap stuff');
    assert.match(fake, /^\$/);
    const seen = await aliceApi.call('GET', `/rooms/${enc(roomId)}/event/${enc(fake)}`);
    assert.equal(seen.status, 404, 'the shadow-banned message was not stored');
    const fakeState = await carolApi.sendState(roomId, 'm.room.topic', '', { topic: 'spam' });
    assert.equal((await aliceApi.call('GET', `/rooms/${enc(roomId)}/event/${enc(fakeState)}`)).status, 404);

    assert.deepEqual((await adm('DELETE', `${V1}/users/${carol.userId}/shadow_ban`)).body, {});
    assert.equal((await adm('GET', `${V2}/users/${carol.userId}`)).body.shadow_banned, false);
    const real = await carolApi.send(roomId, 'hello again');
    const got = await aliceApi.call('GET', `/rooms/${enc(roomId)}/event/${enc(real)}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.content.body, 'hello again');

    assert.equal((await adm('POST', `${V1}/users/@x:elsewhere.example/shadow_ban`)).status, 400);
    expectError(await adm('POST', `${V1}/users/@ghost:localhost/shadow_ban`), 404, 'M_NOT_FOUND', 'unknown user');
  });

  test('joined_rooms', async () => {
    const aliceApi = new Api(srv.url, alice.accessToken);
    const roomId = await aliceApi.createRoom();
    const r = await adm('GET', `${V1}/users/${alice.userId}/joined_rooms`);
    assert.equal(r.status, 200);
    assert.ok(r.body.joined_rooms.includes(roomId));
    assert.equal(r.body.total, r.body.joined_rooms.length);
    await aliceApi.leave(roomId);
    assert.ok(!(await adm('GET', `${V1}/users/${alice.userId}/joined_rooms`)).body.joined_rooms.includes(roomId));
  });

  test('override_ratelimit storage and validation', async () => {
    const path = `${V1}/users/${alice.userId}/override_ratelimit`;
    assert.deepEqual((await adm('GET', path)).body, {});
    assert.deepEqual((await adm('POST', path, { messages_per_second: 7, burst_count: 9 })).body, { messages_per_second: 7, burst_count: 9 });
    assert.deepEqual((await adm('GET', path)).body, { messages_per_second: 7, burst_count: 9 });
    assert.deepEqual((await adm('POST', path, {})).body, { messages_per_second: 0, burst_count: 0 });
    expectError(await adm('POST', path, { messages_per_second: -1 }), 400, 'M_INVALID_PARAM', 'negative');
    expectError(await adm('POST', path, { burst_count: 'many' }), 400, 'M_INVALID_PARAM', 'not a number');
    expectError(await adm('POST', path, { burst_count: 1.5 }), 400, 'M_INVALID_PARAM', 'not an integer');
    assert.deepEqual((await adm('DELETE', path)).body, {});
    assert.deepEqual((await adm('GET', path)).body, {});
    expectError(await adm('GET', `${V1}/users/@ghost:localhost/override_ratelimit`), 404, 'M_NOT_FOUND', 'unknown user');
  });

  test('devices: list, get, rename, delete, delete_devices', async () => {
    const l1 = await login(srv.url, 'alice', PASSWORD, 'phone');
    const l2 = await login(srv.url, 'alice', PASSWORD, 'laptop');
    const base = `${V2}/users/${alice.userId}/devices`;
    const list = await adm('GET', base);
    assert.equal(list.status, 200);
    assert.equal(list.body.total, 3);
    const ids = list.body.devices.map((d: { device_id: string }) => d.device_id).sort();
    assert.deepEqual(ids, [alice.deviceId, l1.body.device_id, l2.body.device_id].sort());
    assert.equal(list.body.devices[0].user_id, alice.userId);

    const one = await adm('GET', `${base}/${l1.body.device_id}`);
    assert.equal(one.body.display_name, 'phone');
    assert.deepEqual((await adm('PUT', `${base}/${l1.body.device_id}`, { display_name: 'old phone' })).body, {});
    assert.equal((await adm('GET', `${base}/${l1.body.device_id}`)).body.display_name, 'old phone');
    expectError(await adm('GET', `${base}/NOSUCHDEVICE`), 404, 'M_NOT_FOUND', 'unknown device');

    assert.deepEqual((await adm('DELETE', `${base}/${l1.body.device_id}`)).body, {});
    assert.equal((await request(srv.url, 'GET', '/_matrix/client/v3/account/whoami', { token: l1.body.access_token })).status, 401);
    // synadm user prune-devices
    assert.deepEqual((await adm('POST', `${V2}/users/${alice.userId}/delete_devices`, { devices: [l2.body.device_id] })).body, {});
    assert.equal((await request(srv.url, 'GET', '/_matrix/client/v3/account/whoami', { token: l2.body.access_token })).status, 401);
    assert.equal((await adm('GET', base)).body.total, 1);
    expectError(await adm('POST', `${V2}/users/${alice.userId}/delete_devices`, { devices: 'all' }), 400, 'M_BAD_JSON', 'devices not a list');
  });

  test('shared-secret registration (register_new_matrix_user)', async () => {
    const nonce = async () => {
      const r = await request(srv.url, 'GET', `${V1}/register`);
      assert.equal(r.status, 200);
      assert.equal(typeof r.body.nonce, 'string');
      return r.body.nonce as string;
    };
    const n1 = await nonce();
    const ok = await request(srv.url, 'POST', `${V1}/register`, {
      body: { nonce: n1, username: 'frank', password: 'frank password', admin: true, mac: mac(n1, 'frank', 'frank password', true) },
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.user_id, '@frank:localhost');
    assert.equal(ok.body.home_server, 'localhost');
    assert.equal(typeof ok.body.device_id, 'string');
    const who = await request(srv.url, 'GET', '/_matrix/client/v3/account/whoami', { token: ok.body.access_token });
    assert.equal(who.body.user_id, '@frank:localhost');
    // admin: true in the MAC made frank an admin.
    assert.equal((await request(srv.url, 'GET', `${V1}/server_version`, { token: ok.body.access_token })).status, 200);

    // The nonce was used up.
    const again = await request(srv.url, 'POST', `${V1}/register`, {
      body: { nonce: n1, username: 'frank2', password: 'frank password', admin: false, mac: mac(n1, 'frank2', 'frank password', false) },
    });
    expectError(again, 400, 'M_UNKNOWN', 'reused nonce');

    // Wrong MAC: the admin flag is part of what is signed.
    const n2 = await nonce();
    const bad = await request(srv.url, 'POST', `${V1}/register`, {
      body: { nonce: n2, username: 'mallory', password: 'mallory pw', admin: true, mac: mac(n2, 'mallory', 'mallory pw', false) },
    });
    expectError(bad, 403, 'M_UNKNOWN', 'wrong MAC');
    assert.equal(bad.body.error, 'HMAC incorrect');
    const n3 = await nonce();
    const wrongSecret = await request(srv.url, 'POST', `${V1}/register`, {
      body: { nonce: n3, username: 'mallory', password: 'mallory pw', admin: false, mac: mac(n3, 'mallory', 'mallory pw', false, 'guess') },
    });
    expectError(wrongSecret, 403, 'M_UNKNOWN', 'wrong secret');
    assert.equal((await adm('GET', `${V2}/users/@mallory:localhost`)).status, 404);
    // A nonce spent on a wrong MAC cannot be retried.
    const retry = await request(srv.url, 'POST', `${V1}/register`, {
      body: { nonce: n3, username: 'mallory', password: 'mallory pw', admin: false, mac: mac(n3, 'mallory', 'mallory pw', false) },
    });
    expectError(retry, 400, 'M_UNKNOWN', 'nonce spent on a wrong MAC');

    const n4 = await nonce();
    expectError(await request(srv.url, 'POST', `${V1}/register`, { body: { nonce: n4, password: 'x', mac: 'ab' } }), 400, 'M_BAD_JSON', 'no username');
    const n5 = await nonce();
    const taken = await request(srv.url, 'POST', `${V1}/register`, {
      body: { nonce: n5, username: 'alice', password: 'pw', admin: false, mac: mac(n5, 'alice', 'pw', false) },
    });
    expectError(taken, 400, 'M_USER_IN_USE', 'existing user');
    expectError(await request(srv.url, 'POST', `${V1}/register`, { body: { nonce: 'made-up' } }), 400, 'M_UNKNOWN', 'unknown nonce');
  });
});

describe('user admin API: rate limit overrides and disabled shared-secret registration', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let admin: RegisteredUser;
  let alice: RegisteredUser;

  before(async () => {
    srv = await startTestServer({ rate_limit_enabled: true, rate_limit_message_per_second: 0.001, rate_limit_message_burst: 2 });
    admin = await registerUser(srv.url, 'admin', PASSWORD);
    alice = await registerUser(srv.url, 'alice', PASSWORD);
    await srv.ctx.storage.db.updateTable('users').set({ is_admin: 1 }).where('user_id', '=', admin.userId).execute();
  });

  after(async () => {
    await srv?.close();
  });

  test('the message rate limiter honours override_ratelimit', async () => {
    const aliceApi = new Api(srv.url, alice.accessToken);
    const roomId = await aliceApi.createRoom();
    const send = (i: number) => aliceApi.call('PUT', `/rooms/${enc(roomId)}/send/m.room.message/rl${i}`, { msgtype: 'm.text', body: `m${i}` });
    let i = 0;
    assert.equal((await send(i++)).status, 200);
    assert.equal((await send(i++)).status, 200);
    expectError(await send(i++), 429, 'M_LIMIT_EXCEEDED', 'default burst of 2 used up');

    const path = `${V1}/users/${alice.userId}/override_ratelimit`;
    const set = await request(srv.url, 'POST', path, { token: admin.accessToken, body: { messages_per_second: 0, burst_count: 0 } });
    assert.equal(set.status, 200);
    for (let k = 0; k < 5; k++) assert.equal((await send(i++)).status, 200, 'unlimited with 0/0');

    await request(srv.url, 'POST', path, { token: admin.accessToken, body: { messages_per_second: 1, burst_count: 4 } });
    for (let k = 0; k < 4; k++) assert.equal((await send(i++)).status, 200, 'burst of 4');
    expectError(await send(i++), 429, 'M_LIMIT_EXCEEDED', 'override burst used up');

    assert.equal((await request(srv.url, 'DELETE', path, { token: admin.accessToken })).status, 200);
    assert.equal((await send(i++)).status, 200);
    assert.equal((await send(i++)).status, 200);
    expectError(await send(i++), 429, 'M_LIMIT_EXCEEDED', 'back to the defaults');
  });

  test('shared-secret registration is refused when no secret is configured', async () => {
    expectError(await request(srv.url, 'GET', `${V1}/register`), 400, 'M_UNKNOWN', 'GET nonce');
    const r = await request(srv.url, 'POST', `${V1}/register`, {
      body: { nonce: 'n', username: 'x', password: 'y', admin: false, mac: mac('n', 'x', 'y', false, '') },
    });
    expectError(r, 400, 'M_UNKNOWN', 'POST register');
    assert.match(r.body.error, /not enabled/);
  });
});
