/**
 * `ranvier check federation` against real servers over TLS: a correctly set
 * up server passes every check, and one whose certificate names another
 * host fails the TLS name check with its fix (the key checks still run).
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- federation-check
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Config } from '../../src/config/config.js';
import { checkFederation, formatReport, type Report } from '../../src/federation/check.js';
import { startFederation, type Federation } from './federation-harness.js';
import { startTestServer, type TestServer } from './harness.js';

function check(report: Report, name: string) {
  const c = report.checks.find((x) => x.name === name);
  assert.ok(c, `no check named ${name} in:\n${formatReport(report)}`);
  return c;
}

describe('check federation over TLS', { timeout: 60_000 }, () => {
  let fed: Federation;
  let wrongName: TestServer;
  /** a.test's configuration, plus where b.test (certificate for wrong.test) listens. */
  let config: Config;

  before(async () => {
    fed = await startFederation(['a.test']);
    const cert = await fed.ca.issue(['wrong.test']);
    wrongName = await startTestServer({ server_name: 'b.test', federation_tls_port: 0, federation_tls_cert: cert.certFile, federation_tls_key: cert.keyFile });
    const a = fed.servers[0].config;
    config = { ...a, federation_hosts: `${a.federation_hosts},b.test=127.0.0.1:${new URL(wrongName.federationUrl!).port}` };
  });

  after(async () => {
    await wrongName?.close();
    await fed?.close();
  });

  test('a correctly set up server passes every check, as seen with its own configuration', async () => {
    const report = await checkFederation(config, 'a.test');
    assert.equal(report.ok, true, formatReport(report));
    assert.deepEqual(
      report.checks.map((c) => c.name),
      ['server name', 'discovery', 'resolution', 'TCP connect', 'TLS handshake', 'TLS certificate name', 'TLS certificate chain', 'TLS certificate expiry', 'federation version', 'server keys', 'key validity', 'signing key'],
    );
    assert.equal(report.resolved?.host, '127.0.0.1');
    assert.equal(String(report.resolved?.port), new URL(fed.servers[0].federationUrl!).port);
    assert.match(check(report, 'TLS handshake').detail, /^TLSv1\.[23]$/);
    assert.match(check(report, 'TLS certificate name').detail, /valid for a\.test \(DNS:a\.test/);
    // The test CA's certificates last a day: a warning, not a failure.
    assert.match(check(report, 'TLS certificate expiry').warning ?? '', /expires in/);
    assert.match(check(report, 'federation version').detail, /^Ranvier /);
    assert.match(check(report, 'server keys').detail, new RegExp(`^${fed.servers[0].ctx.signingKey.keyId}, each self-signed`));
    assert.match(check(report, 'signing key').detail, /is the key in .*signing\.key/);
  });

  test('a certificate for another name fails the TLS name check with the fix', async () => {
    const report = await checkFederation(config, 'b.test');
    assert.equal(report.ok, false);
    assert.deepEqual(report.checks.filter((c) => !c.ok).map((c) => c.name), ['TLS certificate name']);
    const name = check(report, 'TLS certificate name');
    assert.match(name.detail, /the certificate is for DNS:wrong\.test.*check it against b\.test/);
    assert.match(name.fix ?? '', /Get a certificate that names b\.test/);
    // The chain itself is fine (same CA), and the key endpoint was still checked.
    assert.equal(check(report, 'TLS certificate chain').ok, true);
    assert.match(check(report, 'server keys').detail, /over an unverified connection/);
    assert.match(formatReport(report), /\n✗ TLS certificate name +the certificate is for DNS:wrong\.test/);
  });

  test('nothing listening: the connect check fails quickly', async () => {
    const down = { ...config, federation_hosts: 'c.test=127.0.0.1:1' };
    const report = await checkFederation(down, 'c.test');
    assert.equal(report.ok, false);
    const tcp = check(report, 'TCP connect');
    assert.equal(tcp.ok, false);
    assert.match(tcp.detail, /ECONNREFUSED/);
    assert.match(tcp.fix ?? '', /listens on 127\.0\.0\.1:1/);
  });
});
