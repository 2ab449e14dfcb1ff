/**
 * Account locking and suspension (spec: "Account locking", "Account
 * suspension") and the client admin endpoints: /_matrix/client/v1/admin/lock,
 * /admin/suspend and /_matrix/client/v3/admin/whois, plus the Synapse admin
 * API's forms of them, which must have the same effect.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- account-lock
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, registerUser, request, type RegisteredUser, type TestServer } from './harness.js';
import { Api, CS, enc, expectError, login } from './util.js';

const PASSWORD = 'a long enough password';
const LOCK = '/_matrix/client/v1/admin/lock';
const WHOIS = '/_matrix/client/v3/admin/whois';
const SUSPEND = '/_matrix/client/v1/admin/suspend';

/** A server with a server admin and two plain users. */
async function serverWithUsers(): Promise<{ srv: TestServer; admin: RegisteredUser; alice: RegisteredUser; bob: RegisteredUser }> {
  const srv = await startTestServer();
  const admin = await registerUser(srv.url, 'admin', PASSWORD);
  const alice = await registerUser(srv.url, 'alice', PASSWORD);
  const bob = await registerUser(srv.url, 'bob', PASSWORD);
  await srv.ctx.storage.db.updateTable('users').set({ is_admin: 1 }).where('user_id', '=', admin.userId).execute();
  return { srv, admin, alice, bob };
}

describe('account locking', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let admin: RegisteredUser;
  let alice: RegisteredUser;
  let bob: RegisteredUser;

  const as = (who: RegisteredUser, method: string, path: string, body?: unknown) =>
    request(srv.url, method, path, { token: who.accessToken, body });

  before(async () => {
    ({ srv, admin, alice, bob } = await serverWithUsers());
  });

  after(async () => {
    await srv?.close();
  });

  test('a locked user gets 401 M_USER_LOCKED (soft logout) and cannot log in; unlocking restores the same session', async () => {
    assert.deepEqual((await as(admin, 'GET', `${LOCK}/${alice.userId}`)).body, { locked: false });
    const put = await as(admin, 'PUT', `${LOCK}/${alice.userId}`, { locked: true });
    assert.equal(put.status, 200);
    assert.deepEqual(put.body, { locked: true });
    assert.deepEqual((await as(admin, 'GET', `${LOCK}/${alice.userId}`)).body, { locked: true });

    const whoami = await as(alice, 'GET', `${CS}/account/whoami`);
    expectError(whoami, 401, 'M_USER_LOCKED', 'whoami while locked');
    assert.equal(whoami.body.soft_logout, true);
    expectError(await as(alice, 'GET', `${CS}/sync?timeout=0`), 401, 'M_USER_LOCKED', 'sync while locked');
    expectError(await login(srv.url, 'alice', PASSWORD), 401, 'M_USER_LOCKED', 'login while locked');
    expectError(await login(srv.url, 'alice', 'wrong password'), 403, 'M_FORBIDDEN', 'a wrong password still says nothing about the lock');

    assert.equal((await as(admin, 'PUT', `${LOCK}/${alice.userId}`, { locked: false })).status, 200);
    const again = await as(alice, 'GET', `${CS}/account/whoami`);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.user_id, alice.userId);
    assert.equal((await login(srv.url, 'alice', PASSWORD)).status, 200);
  });

  test('a locked user may still log out', async () => {
    const session = await login(srv.url, 'bob', PASSWORD);
    assert.equal(session.status, 200);
    const token = session.body.access_token as string;
    assert.equal((await as(admin, 'PUT', `${LOCK}/${bob.userId}`, { locked: true })).status, 200);
    assert.equal((await request(srv.url, 'POST', `${CS}/logout`, { token, body: {} })).status, 200);
    expectError(await request(srv.url, 'GET', `${CS}/account/whoami`, { token }), 401, 'M_UNKNOWN_TOKEN', 'the logged-out token');
    assert.equal((await request(srv.url, 'POST', `${CS}/logout/all`, { token: bob.accessToken, body: {} })).status, 200);
    expectError(await as(bob, 'GET', `${CS}/account/whoami`), 401, 'M_UNKNOWN_TOKEN', 'after logout/all');
    assert.equal((await as(admin, 'PUT', `${LOCK}/${bob.userId}`, { locked: false })).status, 200);
    bob = { ...bob, accessToken: (await login(srv.url, 'bob', PASSWORD)).body.access_token as string };
  });

  test("the Synapse admin API's locked flag locks at once", async () => {
    const path = `/_synapse/admin/v2/users/${alice.userId}`;
    assert.equal((await as(admin, 'PUT', path, { locked: true })).status, 200);
    expectError(await as(alice, 'GET', `${CS}/account/whoami`), 401, 'M_USER_LOCKED', 'locked through /_synapse/admin');
    assert.equal((await as(admin, 'PUT', path, { locked: false })).status, 200);
    assert.equal((await as(alice, 'GET', `${CS}/account/whoami`)).status, 200);
  });

  test('lock endpoint errors: rights checked first, then the user', async () => {
    expectError(await request(srv.url, 'GET', `${LOCK}/${alice.userId}`), 401, 'M_MISSING_TOKEN', 'no token');
    expectError(await as(bob, 'GET', `${LOCK}/${alice.userId}`), 403, 'M_FORBIDDEN', 'non-admin GET');
    expectError(await as(bob, 'PUT', `${LOCK}/${alice.userId}`, { locked: true }), 403, 'M_FORBIDDEN', 'non-admin PUT');
    expectError(await as(bob, 'GET', `${LOCK}/@nobody:localhost`), 403, 'M_FORBIDDEN', 'no enumeration for non-admins');
    expectError(await as(admin, 'GET', `${LOCK}/@someone:elsewhere.test`), 400, 'M_INVALID_PARAM', 'remote user');
    expectError(await as(admin, 'GET', `${LOCK}/@nobody:localhost`), 404, 'M_NOT_FOUND', 'unknown user');
    expectError(await as(admin, 'PUT', `${LOCK}/${alice.userId}`, { locked: 'yes' }), 400, 'M_BAD_JSON', 'locked not a boolean');
    expectError(await as(admin, 'PUT', `${LOCK}/${alice.userId}`, {}), 400, 'M_BAD_JSON', 'locked missing');
    assert.deepEqual((await as(admin, 'GET', `${LOCK}/${alice.userId}`)).body, { locked: false }, 'bad requests changed nothing');
  });

  test('whois: yourself or, for server admins, anyone; devices keyed by id', async () => {
    const self = await as(alice, 'GET', `${WHOIS}/${alice.userId}`);
    assert.equal(self.status, 200, JSON.stringify(self.body));
    assert.equal(self.body.user_id, alice.userId);
    assert.ok(self.body.devices[alice.deviceId], `device ${alice.deviceId} listed: ${JSON.stringify(self.body)}`);
    assert.ok(Array.isArray(self.body.devices[alice.deviceId].sessions[0].connections));

    assert.equal((await as(admin, 'GET', `${WHOIS}/${alice.userId}`)).status, 200);
    expectError(await as(bob, 'GET', `${WHOIS}/${alice.userId}`), 403, 'M_FORBIDDEN', 'someone else');
    expectError(await as(admin, 'GET', `${WHOIS}/@nobody:localhost`), 404, 'M_NOT_FOUND', 'unknown user');
  });
});

describe('account suspension', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let admin: RegisteredUser;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let aliceApi: Api;
  let bobApi: Api;
  let roomId: string;
  let otherRoom: string;

  const as = (who: RegisteredUser, method: string, path: string, body?: unknown) =>
    request(srv.url, method, path, { token: who.accessToken, body });
  const suspend = async (on: boolean) => assert.equal((await as(admin, 'PUT', `${SUSPEND}/${alice.userId}`, { suspended: on })).status, 200);

  before(async () => {
    ({ srv, admin, alice, bob } = await serverWithUsers());
    aliceApi = new Api(srv.url, alice.accessToken);
    bobApi = new Api(srv.url, bob.accessToken);
    roomId = await bobApi.createRoom({ preset: 'public_chat' });
    otherRoom = await bobApi.createRoom({ preset: 'public_chat' });
    await aliceApi.join(roomId);
  });

  after(async () => {
    await srv?.close();
  });

  test('a suspended user reads and syncs but cannot reach others: 403 M_USER_SUSPENDED', async () => {
    const own = await aliceApi.send(roomId, 'before the suspension');
    const bobs = await bobApi.send(roomId, 'from bob');
    await suspend(true);
    assert.deepEqual((await as(admin, 'GET', `${SUSPEND}/${alice.userId}`)).body, { suspended: true });

    const refused: Array<[string, string, unknown]> = [
      ['PUT', `${CS}/rooms/${enc(roomId)}/send/m.room.message/s1`, { msgtype: 'm.text', body: 'hi' }],
      ['PUT', `${CS}/rooms/${enc(roomId)}/state/m.room.topic/`, { topic: 'x' }],
      ['POST', `${CS}/createRoom`, {}],
      ['POST', `${CS}/join/${enc(otherRoom)}`, {}],
      ['POST', `${CS}/rooms/${enc(roomId)}/invite`, { user_id: admin.userId }],
      ['PUT', `${CS}/profile/${enc(alice.userId)}/displayname`, { displayname: 'Evil' }],
      ['PUT', `${CS}/rooms/${enc(roomId)}/redact/${enc(bobs)}/r1`, {}],
      ['PUT', `${CS}/rooms/${enc(roomId)}/send/m.room.redaction/r2`, { redacts: bobs }],
    ];
    for (const [method, path, body] of refused) {
      const r = await as(alice, method, path, body);
      assert.equal(r.status, 403, `${method} ${path}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.errcode, 'M_USER_SUSPENDED', `${method} ${path}`);
    }
    // Still allowed: sync, history, redacting one's own event, logging in, then leaving.
    assert.equal((await as(alice, 'GET', `${CS}/sync?timeout=0`)).status, 200);
    assert.equal((await aliceApi.messages(roomId)).status, 200);
    assert.equal((await as(alice, 'PUT', `${CS}/rooms/${enc(roomId)}/redact/${enc(own)}/r3`, {})).status, 200);
    assert.equal((await login(srv.url, 'alice', PASSWORD)).status, 200);
    assert.equal((await as(alice, 'POST', `${CS}/rooms/${enc(roomId)}/leave`, {})).status, 200);
    const members = await bobApi.ok('GET', `/rooms/${enc(roomId)}/joined_members`);
    assert.ok(!(alice.userId in members.joined), 'the leave went through');
    const profile = await request(srv.url, 'GET', `${CS}/profile/${enc(alice.userId)}`);
    assert.notEqual(profile.body.displayname, 'Evil', 'the refused profile change changed nothing');
  });

  test('a suspended user can still join their server-notices room and read the notice', async () => {
    await suspend(true);
    const sent = await as(admin, 'POST', '/_synapse/admin/v1/send_server_notice', {
      user_id: alice.userId, content: { msgtype: 'm.text', body: 'You are suspended for spam' },
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const sync = await aliceApi.sync({ timeout: 0 });
    const [noticeRoom] = Object.keys(sync.rooms?.invite ?? {});
    assert.ok(noticeRoom, 'invited to the notices room');
    assert.equal(await aliceApi.join(noticeRoom), noticeRoom);
    const ev = await aliceApi.ok('GET', `/rooms/${enc(noticeRoom)}/event/${enc(sent.body.event_id)}`);
    assert.equal(ev.content.body, 'You are suspended for spam');
    expectError(await as(alice, 'POST', `${CS}/join/${enc(otherRoom)}`, {}), 403, 'M_USER_SUSPENDED', 'any other room');
    await suspend(false);
  });

  test('lifting the suspension (Synapse admin form) restores everything at once', async () => {
    const r = await as(admin, 'PUT', `/_synapse/admin/v1/suspend/${alice.userId}`, { suspend: false });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { [`user_${alice.userId}_suspended`]: false });
    assert.equal((await as(admin, 'GET', `/_synapse/admin/v2/users/${alice.userId}`)).body.suspended, false);
    await aliceApi.join(roomId);
    assert.match(await aliceApi.send(roomId, 'back'), /^\$/);
    assert.equal((await as(admin, 'PUT', `/_synapse/admin/v1/suspend/${alice.userId}`, { suspend: true })).status, 200);
    assert.equal((await as(admin, 'GET', `/_synapse/admin/v2/users/${alice.userId}`)).body.suspended, true);
    await suspend(false);
  });

  test('suspend endpoint errors and the moderation capability', async () => {
    expectError(await as(bob, 'PUT', `${SUSPEND}/${alice.userId}`, { suspended: true }), 403, 'M_FORBIDDEN', 'non-admin');
    expectError(await as(admin, 'GET', `${SUSPEND}/@x:elsewhere.test`), 400, 'M_INVALID_PARAM', 'remote user');
    expectError(await as(admin, 'GET', `${SUSPEND}/@nobody:localhost`), 404, 'M_NOT_FOUND', 'unknown user');
    expectError(await as(admin, 'PUT', `${SUSPEND}/${alice.userId}`, { suspended: 1 }), 400, 'M_BAD_JSON', 'not a boolean');
    expectError(await as(admin, 'PUT', `/_synapse/admin/v1/suspend/${alice.userId}`, {}), 400, 'M_BAD_JSON', 'Synapse form without suspend');
    const adminCaps = (await as(admin, 'GET', `${CS}/capabilities`)).body.capabilities;
    assert.deepEqual(adminCaps['m.account_moderation'], { lock: true, suspend: true });
    assert.equal((await as(bob, 'GET', `${CS}/capabilities`)).body.capabilities['m.account_moderation'], undefined);
  });
});
