/**
 * Signing keys over HTTP: a server's own key document, the notary API on
 * itself, its validation errors, /version, and two servers over TLS where
 * one fetches (and vouches for) the other's key.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- federation-keys
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { verifyJsonSignature } from '../../src/core/json-signing.js';
import { publicKeyBase64 } from '../../src/core/signing-key.js';
import { createTestCa, type TestCa } from '../helpers/tls.js';
import { request, startTestServer, type TestServer } from './harness.js';

const DAY = 24 * 3600_000;

interface KeyDoc {
  server_name: string;
  verify_keys: Record<string, { key: string }>;
  old_verify_keys: Record<string, unknown>;
  valid_until_ts: number;
  signatures: Record<string, Record<string, string>>;
}

/** Check `doc` is `name`'s key document, self-signed by every listed key; returns the key id and public key. */
function checkSelfSigned(doc: KeyDoc, name: string): { keyId: string; key: string } {
  assert.equal(doc.server_name, name);
  const entries = Object.entries(doc.verify_keys);
  assert.equal(entries.length, 1);
  for (const [keyId, { key }] of entries) assert.ok(verifyJsonSignature(doc, name, keyId, key), `signed by ${keyId}`);
  return { keyId: entries[0][0], key: entries[0][1].key };
}

describe('one server over plain HTTP', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(() => srv.close());

  test('GET /_matrix/key/v2/server: our key, self-signed, valid for about a week', async () => {
    const before = Date.now();
    const res = await request(srv.url, 'GET', '/_matrix/key/v2/server');
    assert.equal(res.status, 200);
    const doc = res.body as KeyDoc;
    const { keyId, key } = checkSelfSigned(doc, 'localhost');
    assert.equal(keyId, srv.ctx.signingKey.keyId);
    assert.equal(key, publicKeyBase64(srv.ctx.signingKey));
    assert.deepEqual(doc.old_verify_keys, {});
    assert.ok(doc.valid_until_ts >= before + 7 * DAY && doc.valid_until_ts <= Date.now() + 7 * DAY + 3600_000, String(doc.valid_until_ts));
    // The legacy form with a key id answers the same document.
    const legacy = await request(srv.url, 'GET', `/_matrix/key/v2/server/${encodeURIComponent(keyId)}`);
    assert.equal(legacy.status, 200);
    assert.deepEqual(legacy.body, doc);
  });

  test('POST and GET /_matrix/key/v2/query for itself: the key document, signed', async () => {
    const post = await request(srv.url, 'POST', '/_matrix/key/v2/query', {
      body: { server_keys: { localhost: { [srv.ctx.signingKey.keyId]: { minimum_valid_until_ts: Date.now() } } } },
    });
    assert.equal(post.status, 200, JSON.stringify(post.body));
    assert.equal(post.body.server_keys.length, 1);
    checkSelfSigned(post.body.server_keys[0], 'localhost');

    const get = await request(srv.url, 'GET', `/_matrix/key/v2/query/localhost?minimum_valid_until_ts=${Date.now()}`);
    assert.equal(get.status, 200);
    assert.equal(get.body.server_keys.length, 1);
    checkSelfSigned(get.body.server_keys[0], 'localhost');

    const none = await request(srv.url, 'POST', '/_matrix/key/v2/query', { body: { server_keys: {} } });
    assert.deepEqual(none.body, { server_keys: [] });
  });

  test('bad notary queries: 400 with the right errcode', async () => {
    const cases: Array<[unknown, string]> = [
      [{}, 'M_BAD_JSON'],
      [{ server_keys: 5 }, 'M_BAD_JSON'],
      [{ server_keys: [] }, 'M_BAD_JSON'],
      [{ server_keys: { localhost: 'x' } }, 'M_BAD_JSON'],
      [{ server_keys: { localhost: { 'ed25519:a': 1 } } }, 'M_BAD_JSON'],
      [{ server_keys: { localhost: { 'ed25519:a': { minimum_valid_until_ts: 'soon' } } } }, 'M_BAD_JSON'],
      [{ server_keys: { 'not a server!': {} } }, 'M_INVALID_PARAM'],
    ];
    for (const [body, errcode] of cases) {
      const res = await request(srv.url, 'POST', '/_matrix/key/v2/query', { body });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.errcode, errcode, JSON.stringify(body));
    }
    const badTs = await request(srv.url, 'GET', '/_matrix/key/v2/query/localhost?minimum_valid_until_ts=later');
    assert.equal(badTs.status, 400);
    assert.equal(badTs.body.errcode, 'M_INVALID_PARAM');
  });

  test('GET /_matrix/federation/v1/version needs no auth', async () => {
    const res = await request(srv.url, 'GET', '/_matrix/federation/v1/version');
    assert.equal(res.status, 200);
    assert.equal(res.body.server.name, 'Ranvier');
    assert.match(res.body.server.version, /^\d+\.\d+\.\d+/);
  });
});

describe('two servers over TLS', () => {
  let ca: TestCa;
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    ca = await createTestCa();
    const certB = await ca.issue(['b.test']);
    b = await startTestServer({ server_name: 'b.test', federation_tls_port: 0, federation_tls_cert: certB.certFile, federation_tls_key: certB.keyFile });
    assert.ok(b.federationUrl, 'b has a TLS listener');
    const bAddr = new URL(b.federationUrl).host;
    a = await startTestServer({ server_name: 'a.test', federation_hosts: `b.test=${bAddr}`, federation_ca_file: ca.certFile });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await ca?.cleanup();
  });

  test("A fetches B's key through getVerifyKey, and caches it", async () => {
    const keyId = b.ctx.signingKey.keyId;
    const key = await a.ctx.federation.keys.getVerifyKey('b.test', keyId);
    assert.equal(key, publicKeyBase64(b.ctx.signingKey));
    const row = await a.ctx.storage.db.selectFrom('server_keys').selectAll().where('server_name', '=', 'b.test').executeTakeFirst();
    assert.equal(row?.verify_key, key);
    assert.equal(await a.ctx.federation.keys.getVerifyKey('b.test', 'ed25519:nope'), undefined);
  });

  test("A as notary answers for B, signed by both", async () => {
    const res = await request(a.url, 'POST', '/_matrix/key/v2/query', { body: { server_keys: { 'b.test': {} } } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.server_keys.length, 1);
    const doc = res.body.server_keys[0] as KeyDoc;
    checkSelfSigned(doc, 'b.test');
    assert.ok(verifyJsonSignature(doc, 'a.test', a.ctx.signingKey.keyId, publicKeyBase64(a.ctx.signingKey)), 'signed by the notary');
  });

  test('A cannot reach an unknown server: no key, no answer', async () => {
    // federation_hosts pins c.test to a closed port, so this fails fast without DNS.
    const c = await startTestServer({ server_name: 'c.test' });
    const port = new URL(c.url).port;
    await c.close();
    const a2 = await startTestServer({ server_name: 'a2.test', federation_hosts: `c.test=127.0.0.1:${port}`, federation_ca_file: ca.certFile });
    try {
      assert.equal(await a2.ctx.federation.keys.getVerifyKey('c.test', 'ed25519:x'), undefined);
      const res = await request(a2.url, 'POST', '/_matrix/key/v2/query', { body: { server_keys: { 'c.test': {} } } });
      assert.deepEqual(res.body, { server_keys: [] });
    } finally {
      await a2.close();
    }
  });
});
