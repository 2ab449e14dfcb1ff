/**
 * Registration tokens: the Synapse-compatible admin API (CRUD, validation,
 * 401/403) and registering with an admin-made token while
 * allow_registration is off (pending and completed uses, exhausted and
 * expired tokens, the validity endpoint, /register/available).
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- admin-tokens
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './harness.js';
import { CS, enc, login, registerRaw, request } from './util.js';

const PASSWORD = 'hunter2 but longer';
const BASE = '/_synapse/admin/v1/registration_tokens';
const VALIDITY = '/_matrix/client/v1/register/m.login.registration_token/validity';

interface TokenObject { token: string; uses_allowed: number | null; pending: number; completed: number; expiry_time: number | null }

describe('registration tokens', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let adminToken: string;
  let aliceToken: string;

  const admin = (method: string, path: string, body?: unknown) => request(srv.url, method, BASE + path, { token: adminToken, body });
  const validity = async (token: string) => {
    const r = await request(srv.url, 'GET', `${VALIDITY}?token=${enc(token)}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.valid as boolean;
  };
  const getToken = async (token: string): Promise<TokenObject> => {
    const r = await admin('GET', `/${enc(token)}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  };
  const tokenAuth = (token: string) => (stage: string, session: string) =>
    stage === 'm.login.registration_token' ? { type: 'm.login.registration_token', token, session } : undefined;

  before(async () => {
    // Closed registration: only token holders may register.
    srv = await startTestServer({ allow_registration: false, registration_token: '' });
    await srv.ctx.accounts.createUser('admin', PASSWORD, { admin: true });
    await srv.ctx.accounts.createUser('alice', PASSWORD);
    const a = await login(srv.url, 'admin', PASSWORD);
    assert.equal(a.status, 200, JSON.stringify(a.body));
    adminToken = a.body.access_token;
    const b = await login(srv.url, 'alice', PASSWORD);
    assert.equal(b.status, 200, JSON.stringify(b.body));
    aliceToken = b.body.access_token;
  });

  after(() => srv?.close());

  test('every route needs a token (401) of a server admin (403)', async () => {
    const routes: Array<[string, string, unknown]> = [
      ['GET', '', undefined],
      ['GET', '/abcd', undefined],
      ['POST', '/new', {}],
      ['PUT', '/abcd', { uses_allowed: 1 }],
      ['DELETE', '/abcd', undefined],
    ];
    for (const [method, path, body] of routes) {
      const anon = await request(srv.url, method, BASE + path, { body });
      assert.equal(anon.status, 401, `${method} ${path} without a token`);
      const r = await request(srv.url, method, BASE + path, { token: aliceToken, body });
      assert.equal(r.status, 403, `${method} ${path} as a non-admin`);
      assert.equal(r.body.errcode, 'M_FORBIDDEN');
    }
    const list = await admin('GET', '');
    assert.deepEqual(list.body, { registration_tokens: [] }, 'non-admin POST created nothing');
  });

  test('create, read, list, update and delete', async () => {
    const expiry = Date.now() + 3_600_000;
    const created = await admin('POST', '/new', { token: 'crud.Token_1~-', uses_allowed: 5, expiry_time: expiry });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.deepEqual(created.body, { token: 'crud.Token_1~-', uses_allowed: 5, pending: 0, completed: 0, expiry_time: expiry });

    const generated = await admin('POST', '/new', {});
    assert.equal(generated.status, 200);
    assert.match(generated.body.token, /^[A-Za-z0-9._~-]{16}$/);
    assert.equal(generated.body.uses_allowed, null);
    assert.equal(generated.body.expiry_time, null);
    const long = await admin('POST', '/new', { length: 64, uses_allowed: 0 });
    assert.equal(long.status, 200);
    assert.equal(long.body.token.length, 64);

    assert.deepEqual(await getToken('crud.Token_1~-'), created.body);
    const all = (await admin('GET', '')).body.registration_tokens as TokenObject[];
    assert.deepEqual(all.map((t) => t.token).sort(), [created.body.token, generated.body.token, long.body.token].sort());
    // uses_allowed 0: never usable.
    const valid = (await admin('GET', '?valid=true')).body.registration_tokens as TokenObject[];
    assert.deepEqual(valid.map((t) => t.token).sort(), [created.body.token, generated.body.token].sort());
    const invalid = (await admin('GET', '?valid=false')).body.registration_tokens as TokenObject[];
    assert.deepEqual(invalid.map((t) => t.token), [long.body.token]);

    const updated = await admin('PUT', `/${enc('crud.Token_1~-')}`, { uses_allowed: null });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.deepEqual(updated.body, { ...created.body, uses_allowed: null }, 'only uses_allowed changed');
    const updated2 = await admin('PUT', `/${enc('crud.Token_1~-')}`, { expiry_time: null });
    assert.deepEqual(updated2.body, { ...created.body, uses_allowed: null, expiry_time: null });
    const unchanged = await admin('PUT', `/${enc('crud.Token_1~-')}`, {});
    assert.deepEqual(unchanged.body, updated2.body);

    for (const t of [created.body.token, generated.body.token, long.body.token]) {
      const del = await admin('DELETE', `/${enc(t)}`);
      assert.equal(del.status, 200);
      assert.deepEqual(del.body, {});
    }
    assert.deepEqual((await admin('GET', '')).body, { registration_tokens: [] });
    for (const [method, body] of [['GET', undefined], ['PUT', { uses_allowed: 1 }], ['DELETE', undefined]] as const) {
      const r = await admin(method, '/crud.Token_1~-', body);
      assert.equal(r.status, 404, `${method} of a deleted token`);
      assert.equal(r.body.errcode, 'M_NOT_FOUND');
    }
  });

  test('bad parameters are 400 M_INVALID_PARAM', async () => {
    const past = Date.now() - 1000;
    const badNew: unknown[] = [
      { token: '' },
      { token: 'x'.repeat(65) },
      { token: 'has space' },
      { token: 'slash/' },
      { token: 'ünïcode' },
      { token: 42 },
      { length: 0 },
      { length: 65 },
      { length: 1.5 },
      { length: '8' },
      { uses_allowed: -1 },
      { uses_allowed: 2.5 },
      { uses_allowed: '3' },
      { expiry_time: past },
      { expiry_time: 'tomorrow' },
    ];
    for (const body of badNew) {
      const r = await admin('POST', '/new', body);
      assert.equal(r.status, 400, `POST /new ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.errcode, 'M_INVALID_PARAM', JSON.stringify(body));
    }
    assert.deepEqual((await admin('GET', '')).body, { registration_tokens: [] }, 'nothing was created');

    const ok = await admin('POST', '/new', { token: 'x'.repeat(64) });
    assert.equal(ok.status, 200, '64 characters is allowed');
    const dup = await admin('POST', '/new', { token: 'x'.repeat(64) });
    assert.equal(dup.status, 400);
    assert.equal(dup.body.errcode, 'M_INVALID_PARAM');

    for (const body of [{ uses_allowed: -2 }, { uses_allowed: 'many' }, { expiry_time: past }, { expiry_time: 1.5 }]) {
      const r = await admin('PUT', `/${'x'.repeat(64)}`, body);
      assert.equal(r.status, 400, `PUT ${JSON.stringify(body)}`);
      assert.equal(r.body.errcode, 'M_INVALID_PARAM');
    }
    assert.equal((await getToken('x'.repeat(64))).uses_allowed, null, 'a refused update changes nothing');

    const badQuery = await admin('GET', '?valid=yes');
    assert.equal(badQuery.status, 400);
    assert.equal(badQuery.body.errcode, 'M_INVALID_PARAM');
    await admin('DELETE', `/${'x'.repeat(64)}`);
  });

  test('registration with a token: pending, completed, exhausted', async () => {
    // No token at all: registration and the validity endpoint are closed.
    const closed = await request(srv.url, 'POST', `${CS}/register`, { body: { username: 'nobody', password: PASSWORD } });
    assert.equal(closed.status, 403);
    assert.equal((await request(srv.url, 'GET', `${VALIDITY}?token=abc`)).status, 403);
    assert.equal((await request(srv.url, 'GET', `${CS}/register/available?username=nobody`)).status, 403);

    const made = await admin('POST', '/new', { token: 'one-use', uses_allowed: 1 });
    assert.equal(made.status, 200);
    assert.equal(await validity('one-use'), true);
    assert.equal(await validity('another'), false);
    assert.equal((await request(srv.url, 'GET', `${CS}/register/available?username=nobody`)).status, 200);

    const first = await request(srv.url, 'POST', `${CS}/register`, { body: { username: 'bob', password: PASSWORD } });
    assert.equal(first.status, 401);
    assert.deepEqual(first.body.flows, [{ stages: ['m.login.registration_token'] }]);
    const session = first.body.session as string;

    const wrong = await request(srv.url, 'POST', `${CS}/register`, {
      body: { username: 'bob', password: PASSWORD, auth: { type: 'm.login.registration_token', token: 'another', session } },
    });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.errcode, 'M_UNAUTHORIZED');
    assert.deepEqual(wrong.body.completed, []);

    // The stage succeeds but the request lacks a password: the use stays pending.
    const staged = await request(srv.url, 'POST', `${CS}/register`, {
      body: { username: 'bob', auth: { type: 'm.login.registration_token', token: 'one-use', session } },
    });
    assert.equal(staged.status, 400, JSON.stringify(staged.body));
    assert.equal(staged.body.errcode, 'M_MISSING_PARAM');
    assert.deepEqual(await getToken('one-use'), { token: 'one-use', uses_allowed: 1, pending: 1, completed: 0, expiry_time: null });
    assert.equal(await validity('one-use'), false, 'the only use is taken by a pending registration');

    // No usable token is left, so registration is closed to newcomers...
    const other = await registerRaw(srv.url, { username: 'carol', password: PASSWORD }, tokenAuth('one-use'));
    assert.equal(other.status, 403, JSON.stringify(other.body));
    // ...and with another token open, the pending-only one is refused at its stage.
    assert.equal((await admin('POST', '/new', { token: 'spare' })).status, 200);
    const refused = await registerRaw(srv.url, { username: 'carol', password: PASSWORD }, tokenAuth('one-use'));
    assert.equal(refused.status, 401, JSON.stringify(refused.body));
    assert.equal(refused.body.errcode, 'M_UNAUTHORIZED');
    assert.equal((await admin('DELETE', '/spare')).status, 200);
    assert.equal((await getToken('one-use')).pending, 1, 'a refused attempt takes no use');

    // The session holding the last use can still finish, although no token is valid any more.
    const done = await request(srv.url, 'POST', `${CS}/register`, { body: { username: 'bob', password: PASSWORD, auth: { session } } });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.user_id, '@bob:localhost');
    assert.deepEqual(await getToken('one-use'), { token: 'one-use', uses_allowed: 1, pending: 0, completed: 1, expiry_time: null });
    assert.equal(await validity('one-use'), false);
    assert.equal((await login(srv.url, 'bob', PASSWORD)).status, 200);

    // Exhausted: registration is closed again, but validity answers (false) since a token exists.
    const exhausted = await request(srv.url, 'POST', `${CS}/register`, { body: { username: 'carol', password: PASSWORD } });
    assert.equal(exhausted.status, 403);
    const invalidList = (await admin('GET', '?valid=false')).body.registration_tokens as TokenObject[];
    assert.deepEqual(invalidList.map((t) => t.token), ['one-use']);

    // Raising uses_allowed makes it usable again.
    await admin('PUT', '/one-use', { uses_allowed: 3 });
    const carol = await registerRaw(srv.url, { username: 'carol', password: PASSWORD }, tokenAuth('one-use'));
    assert.equal(carol.status, 200, JSON.stringify(carol.body));
    assert.equal((await getToken('one-use')).completed, 2);
    await admin('DELETE', '/one-use');
  });

  test('concurrent registrations cannot both take the last use', async () => {
    assert.equal((await admin('POST', '/new', { token: 'race', uses_allowed: 1 })).status, 200);
    const names = ['racer1', 'racer2', 'racer3'];
    const results = await Promise.all(names.map((username) => registerRaw(srv.url, { username, password: PASSWORD }, tokenAuth('race'))));
    const ok = results.filter((r) => r.status === 200);
    assert.equal(ok.length, 1, JSON.stringify(results.map((r) => [r.status, r.body?.errcode])));
    for (const r of results.filter((x) => x.status !== 200)) assert.ok(r.status === 401 || r.status === 403, String(r.status));
    assert.deepEqual(await getToken('race'), { token: 'race', uses_allowed: 1, pending: 0, completed: 1, expiry_time: null });
    await admin('DELETE', '/race');
  });

  test('an expired token is refused', async () => {
    const r = await admin('POST', '/new', { token: 'soon-gone', expiry_time: Date.now() + 60_000 });
    assert.equal(r.status, 200);
    assert.equal(await validity('soon-gone'), true);
    const first = await request(srv.url, 'POST', `${CS}/register`, { body: { username: 'dave', password: PASSWORD } });
    assert.equal(first.status, 401);
    const session = first.body.session as string;

    // The API refuses past expiry times, so age the token in the database.
    await srv.ctx.storage.db.updateTable('registration_tokens').set({ expiry_time: Date.now() - 1 }).where('token', '=', 'soon-gone').execute();
    assert.equal(await validity('soon-gone'), false);
    const refused = await request(srv.url, 'POST', `${CS}/register`, {
      body: { username: 'dave', password: PASSWORD, auth: { type: 'm.login.registration_token', token: 'soon-gone', session } },
    });
    // No valid token remains, so registration is closed altogether.
    assert.equal(refused.status, 403, JSON.stringify(refused.body));

    // With another valid token around, the expired one is refused at the stage.
    await admin('POST', '/new', { token: 'still-good' });
    const again = await registerRaw(srv.url, { username: 'dave', password: PASSWORD }, tokenAuth('soon-gone'));
    assert.equal(again.status, 401, JSON.stringify(again.body));
    assert.equal(again.body.errcode, 'M_UNAUTHORIZED');
    const expired = await getToken('soon-gone');
    assert.equal(expired.pending + expired.completed, 0);
    const missing = await request(srv.url, 'GET', `${CS}/profile/${enc('@dave:localhost')}`);
    assert.equal(missing.status, 404, 'dave was not registered');
    const valid = (await admin('GET', '?valid=true')).body.registration_tokens as TokenObject[];
    assert.deepEqual(valid.map((t) => t.token), ['still-good']);
  });
});
