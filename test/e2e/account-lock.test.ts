/**
 * Account locking (spec: "Account locking") and the client admin endpoints:
 * /_matrix/client/v1/admin/lock and /_matrix/client/v3/admin/whois, plus the
 * Synapse admin API's `locked` flag, which must have the same effect.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- account-lock
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, registerUser, request, type RegisteredUser, type TestServer } from './harness.js';
import { CS, login } from './util.js';

const PASSWORD = 'a long enough password';
const LOCK = '/_matrix/client/v1/admin/lock';
const WHOIS = '/_matrix/client/v3/admin/whois';

function expectError(r: { status: number; body: { errcode?: string } | undefined }, status: number, errcode: string, what: string) {
  assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body?.errcode, errcode, `${what}: ${JSON.stringify(r.body)}`);
}

describe('account locking', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let admin: RegisteredUser;
  let alice: RegisteredUser;
  let bob: RegisteredUser;

  const as = (who: RegisteredUser, method: string, path: string, body?: unknown) =>
    request(srv.url, method, path, { token: who.accessToken, body });

  before(async () => {
    srv = await startTestServer();
    admin = await registerUser(srv.url, 'admin', PASSWORD);
    alice = await registerUser(srv.url, 'alice', PASSWORD);
    bob = await registerUser(srv.url, 'bob', PASSWORD);
    await srv.ctx.storage.db.updateTable('users').set({ is_admin: 1 }).where('user_id', '=', admin.userId).execute();
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
