/**
 * The TLS listener (federation_tls_port): same routes over https with the
 * configured certificate, and one server calling another through the
 * federation client (federation_hosts + federation_ca_file).
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- federation-tls
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request as undiciRequest } from 'undici';
import { FederationRequestError } from '../../src/federation/client.js';
import { createTestCa, type TestCa, type TestCertificate } from '../helpers/tls.js';
import { startTestServer, type TestServer } from './harness.js';

describe('federation TLS listener', { timeout: 60_000 }, () => {
  let ca: TestCa;
  let certA: TestCertificate;
  let certB: TestCertificate;
  let b: TestServer;
  let a: TestServer;
  let agent: Agent;

  before(async () => {
    ca = await createTestCa();
    certA = await ca.issue(['a.test']);
    certB = await ca.issue(['b.test']);
    b = await startTestServer({ server_name: 'b.test', federation_tls_port: 0, federation_tls_cert: certB.certFile, federation_tls_key: certB.keyFile });
    const bPort = new URL(b.federationUrl!).port;
    a = await startTestServer({
      server_name: 'a.test',
      federation_tls_port: 0,
      federation_tls_cert: certA.certFile,
      federation_tls_key: certA.keyFile,
      federation_hosts: `b.test=127.0.0.1:${bPort}`,
      federation_ca_file: ca.certFile,
    });
    agent = new Agent({ connect: { ca: ca.cert } });
  });

  after(async () => {
    await agent?.close();
    await a?.close();
    await b?.close();
    await ca?.cleanup();
  });

  test('answers the client API over https with the configured certificate', async () => {
    assert.match(b.federationUrl!, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(new URL(b.federationUrl!).port, '0');
    const res = await undiciRequest(`${b.federationUrl}/_matrix/client/versions`, { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    const body = (await res.body.json()) as { versions?: unknown };
    assert.ok(Array.isArray(body.versions) && body.versions.length > 0);
    // The plain listener still works alongside.
    const plain = await fetch(`${b.url}/_matrix/client/versions`);
    assert.equal(plain.status, 200);
  });

  test('the certificate is the configured one (not trusted without the test CA)', async () => {
    const strict = new Agent();
    try {
      await assert.rejects(undiciRequest(`${b.federationUrl}/_matrix/client/versions`, { dispatcher: strict }));
    } finally {
      await strict.close();
    }
  });

  test('one server reaches another through the federation client', async () => {
    const res = await a.ctx.federation.client.request<{ versions: string[] }>('b.test', { method: 'GET', path: '/_matrix/client/versions' });
    assert.ok(Array.isArray(res.versions));
    await assert.rejects(
      a.ctx.federation.client.request('b.test', { method: 'GET', path: '/_matrix/client/v3/nonexistent' }),
      (err: unknown) => err instanceof FederationRequestError && err.status === 404 && err.errcode === 'M_UNRECOGNIZED',
    );
  });

  test('start-up fails with a clear error when the certificate is missing', async () => {
    // Files are checked before anything binds, so the port is never opened.
    await assert.rejects(startTestServer({ federation_tls_port: 1 }), /federation_tls_cert/);
    await assert.rejects(startTestServer({ federation_tls_port: 1, federation_tls_cert: certA.certFile }), /federation_tls_key/);
    await assert.rejects(startTestServer({ federation_tls_port: 1, federation_tls_cert: '/nonexistent/cert.pem', federation_tls_key: certA.keyFile }), /federation_tls_cert: cannot read/);
    // Without a listener, there is no federationUrl.
    const plain = await startTestServer();
    try {
      assert.equal(plain.federationUrl, undefined);
    } finally {
      await plain.close();
    }
  });
});
