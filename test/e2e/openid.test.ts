/**
 * OpenID tokens: a user on a.test asks for a token, and another party
 * (here b.test's federation client, unsigned as an integration manager
 * would call it; and a plain HTTP request) exchanges it at a.test's
 * /openid/userinfo for the user's id. Unknown, expired and other users'
 * tokens are refused.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- openid
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { registerUser, type RegisteredUser } from './harness.js';
import { Api, enc } from './util.js';
import { startFederation, type Federation } from './federation-harness.js';
import { FederationRequestError } from '../../src/federation/client.js';
import { issueOpenIdToken, OPENID_TOKEN_LIFETIME_MS } from '../../src/accounts/openid.js';
import { hashToken } from '../../src/accounts/tokens.js';

const USERINFO = '/_matrix/federation/v1/openid/userinfo';

describe('openid tokens', { timeout: 90_000 }, () => {
  let fed: Federation;
  let aliceUser: RegisteredUser;
  let alice: Api;
  let carol: Api;

  before(async () => {
    fed = await startFederation(['a.test', 'b.test']);
    const [a] = fed.servers;
    aliceUser = await registerUser(a.url, 'alice', 'pw-alice-123');
    alice = new Api(a.url, aliceUser.accessToken);
    carol = new Api(a.url, (await registerUser(a.url, 'carol', 'pw-carol-123')).accessToken);
  });

  after(async () => {
    await fed?.close();
  });

  /** b.test asking a.test, without an X-Matrix signature (the route needs none). */
  const userinfoFromB = (token: string) =>
    fed.servers[1].ctx.federation.client.request<{ sub: string }>('a.test', { method: 'GET', path: USERINFO, query: { access_token: token }, signed: false });

  const failureOf = async (p: Promise<unknown>): Promise<{ status?: number; errcode?: string }> => {
    try {
      await p;
    } catch (err) {
      assert.ok(err instanceof FederationRequestError, String(err));
      return { status: err.status, errcode: err.errcode };
    }
    assert.fail('expected the request to fail');
  };

  test('a token requested on a.test resolves to its user over federation and plain HTTP', async () => {
    const t = await alice.ok('POST', `/user/${enc(aliceUser.userId)}/openid/request_token`, {});
    assert.equal(t.token_type, 'Bearer');
    assert.equal(t.matrix_server_name, 'a.test');
    assert.equal(t.expires_in, 3600);
    assert.equal(typeof t.access_token, 'string');
    assert.ok(t.access_token.length >= 32);

    assert.deepEqual(await userinfoFromB(t.access_token), { sub: aliceUser.userId });

    const plain = await fetch(`${fed.servers[0].url}${USERINFO}?access_token=${enc(t.access_token)}`);
    assert.equal(plain.status, 200);
    assert.deepEqual(await plain.json(), { sub: aliceUser.userId });

    // Only the hash is stored.
    const rows = await fed.servers[0].ctx.storage.db.selectFrom('openid_tokens').selectAll().execute();
    assert.ok(rows.some((r) => r.token_hash === hashToken(t.access_token) && r.user_id === aliceUser.userId));
    assert.ok(!rows.some((r) => r.token_hash === t.access_token));
  });

  test('an OpenID token is not an access token, and an access token is not an OpenID token', async () => {
    const t = await alice.ok('POST', `/user/${enc(aliceUser.userId)}/openid/request_token`, {});
    const asClient = await new Api(fed.servers[0].url, t.access_token).get('/account/whoami');
    assert.equal(asClient.status, 401);
    assert.deepEqual(await failureOf(userinfoFromB(aliceUser.accessToken)), { status: 401, errcode: 'M_UNKNOWN_TOKEN' });
  });

  test('unknown, missing and expired tokens are 401 M_UNKNOWN_TOKEN; expired ones get purged', async () => {
    assert.deepEqual(await failureOf(userinfoFromB('rvoi_not-a-token')), { status: 401, errcode: 'M_UNKNOWN_TOKEN' });
    const missing = await fetch(`${fed.servers[0].url}${USERINFO}`);
    assert.equal(missing.status, 401);
    assert.equal(((await missing.json()) as { errcode: string }).errcode, 'M_UNKNOWN_TOKEN');

    const ctx = fed.servers[0].ctx;
    const old = await issueOpenIdToken(ctx, aliceUser.userId, Date.now() - OPENID_TOKEN_LIFETIME_MS - 1000);
    assert.deepEqual(await failureOf(userinfoFromB(old.access_token)), { status: 401, errcode: 'M_UNKNOWN_TOKEN' });
    const stored = () => ctx.storage.db.selectFrom('openid_tokens').select('user_id').where('token_hash', '=', hashToken(old.access_token)).executeTakeFirst();
    assert.ok(await stored(), 'expired token row is there until the next issue');
    await alice.ok('POST', `/user/${enc(aliceUser.userId)}/openid/request_token`, {});
    assert.equal(await stored(), undefined);
  });

  test('a user may not request a token for someone else; the request needs authentication', async () => {
    const other = await carol.post(`/user/${enc(aliceUser.userId)}/openid/request_token`, {});
    assert.equal(other.status, 403);
    assert.equal(other.body.errcode, 'M_FORBIDDEN');
    const remote = await carol.post(`/user/${enc('@bob:b.test')}/openid/request_token`, {});
    assert.equal(remote.status, 403);
    const anon = await new Api(fed.servers[0].url).post(`/user/${enc(aliceUser.userId)}/openid/request_token`, {});
    assert.equal(anon.status, 401);
  });
});
