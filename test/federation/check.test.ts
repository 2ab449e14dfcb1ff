/**
 * `ranvier check federation` against scripted networks: each failure comes
 * out as a failed check with the right detail and fix, and the rest of the
 * report still runs where it can.
 *
 *   node --import tsx --test test/federation/check.test.ts
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, type Config } from '../../src/config/config.js';
import type { SigningKey } from '../../src/core/signing-key.js';
import { checkFederation, formatReport, type CertInfo, type CheckDeps, type HttpResponse, type Report, type TlsProbe } from '../../src/federation/check.js';
import type { ResolvedServer, SrvRecord, WellKnownHttpResponse } from '../../src/federation/discovery.js';
import { generateSigningKey, keyResponse, publicKeyBase64, signJson } from './helpers.js';

const NOW = 1_700_000_000_000;
const HOUR = 3600_000;
const DAY = 24 * HOUR;

const wk = (host: string) => `https://${host}/.well-known/matrix/server`;

function json(body: unknown, status = 200, headers: Record<string, string> = {}): HttpResponse {
  return { status, headers, body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)) };
}

function cert(names: string[], over: Partial<CertInfo> = {}): CertInfo {
  return { subject: names[0], altNames: names.map((n) => `DNS:${n}`), issuer: 'Test CA', validFrom: NOW - DAY, validTo: NOW + 90 * DAY, ...over };
}

interface Scenario {
  config?: Partial<Config>;
  wellKnown?: Record<string, WellKnownHttpResponse | Error>;
  srv?: Record<string, SrvRecord[]>;
  probe?: TlsProbe | ((target: ResolvedServer) => Promise<TlsProbe>);
  /** path -> answer; default: a good version and the key response of `key`. */
  routes?: Record<string, HttpResponse | Error>;
  key?: SigningKey;
  ownKeys?: SigningKey[] | Error;
  timeoutMs?: number;
}

/** Run the checker on a scripted network; returns the report and what the fakes saw. */
async function run(serverName: string, s: Scenario = {}) {
  const config = loadConfig({ env: {}, overrides: { server_name: 'us.test', log_level: 'silent', data_dir: '/nonexistent', ...s.config } });
  const key = s.key ?? generateSigningKey();
  const seen = { targets: [] as ResolvedServer[], gets: [] as Array<{ path: string; verify: boolean }>, wellKnown: [] as string[] };
  const routes: Record<string, HttpResponse | Error> = {
    '/_matrix/federation/v1/version': json({ server: { name: 'Synapse', version: '1.120.0' } }),
    '/_matrix/key/v2/server': json(keyResponse(serverName, key, NOW + 7 * DAY)),
    ...s.routes,
  };
  const deps: Partial<CheckDeps> = {
    now: () => NOW,
    timeoutMs: s.timeoutMs ?? 1000,
    discovery: {
      async resolveSrv(name) {
        const records = s.srv?.[name];
        if (!records) throw Object.assign(new Error(`queryNotFound ${name}`), { code: 'ENOTFOUND' });
        return records;
      },
      async fetchWellKnown(url) {
        seen.wellKnown.push(url);
        const answer = s.wellKnown?.[url];
        if (answer === undefined) return json({ errcode: 'M_NOT_FOUND' }, 404);
        if (answer instanceof Error) throw answer;
        return answer;
      },
    },
    async probeTls(target) {
      seen.targets.push(target);
      if (typeof s.probe === 'function') return s.probe(target);
      return s.probe ?? { connectMs: 3, protocol: 'TLSv1.3', cert: cert([target.tlsServerName]) };
    },
    async get(_target, path, opts) {
      seen.gets.push({ path, verify: opts.verify });
      const answer = routes[path];
      if (!answer) return json({ errcode: 'M_UNRECOGNIZED' }, 404);
      if (answer instanceof Error) throw answer;
      return answer;
    },
    ownSigningKeys() {
      if (s.ownKeys instanceof Error) throw s.ownKeys;
      return s.ownKeys ?? [key];
    },
  };
  const report = await checkFederation(config, serverName, deps);
  return { report, seen, key };
}

function check(report: Report, name: string) {
  const c = report.checks.find((x) => x.name === name);
  assert.ok(c, `no check named ${name} in ${report.checks.map((x) => x.name).join(', ')}`);
  return c;
}

const failed = (r: Report) => r.checks.filter((c) => !c.ok).map((c) => c.name);

describe('a healthy server', () => {
  test('well-known delegation with cache headers: every check passes, in order', async () => {
    const { report, seen } = await run('remote.test', {
      wellKnown: { [wk('remote.test')]: json({ 'm.server': 'fed.remote.test:443' }, 200, { 'cache-control': 'max-age=7200' }) },
    });
    assert.deepEqual(failed(report), []);
    assert.equal(report.ok, true);
    assert.deepEqual(report.resolved, { host: 'fed.remote.test', port: 443, tlsServerName: 'fed.remote.test', hostHeader: 'fed.remote.test:443' });
    assert.deepEqual(
      report.checks.map((c) => c.name),
      ['server name', 'well-known', 'resolution', 'TCP connect', 'TLS handshake', 'TLS certificate name', 'TLS certificate chain', 'TLS certificate expiry', 'federation version', 'server keys', 'key validity'],
    );
    assert.match(check(report, 'well-known').detail, /"m.server": "fed.remote.test:443".*max-age=7200.*2 hours/);
    assert.match(check(report, 'resolution').detail, /fed\.remote\.test:443 \(well-known delegation to fed\.remote\.test:443\)/);
    assert.match(check(report, 'federation version').detail, /^Synapse 1\.120\.0$/);
    assert.deepEqual(seen.gets, [
      { path: '/_matrix/federation/v1/version', verify: true },
      { path: '/_matrix/key/v2/server', verify: true },
    ]);
  });

  test('SRV _matrix-fed._tcp: connects to the target, TLS name stays the server name', async () => {
    const { report } = await run('remote.test', { srv: { '_matrix-fed._tcp.remote.test': [{ name: 'fed.host.test', port: 8449, priority: 10, weight: 0 }] } });
    assert.deepEqual(failed(report), []);
    assert.deepEqual(report.resolved, { host: 'fed.host.test', port: 8449, tlsServerName: 'remote.test', hostHeader: 'remote.test' });
    assert.match(check(report, 'SRV records').detail, /_matrix-fed\._tcp\.remote\.test: 10 0 8449 fed\.host\.test/);
    assert.equal(check(report, 'SRV records').warning, undefined);
  });

  test('only the legacy _matrix._tcp record: passes with a warning to publish _matrix-fed._tcp', async () => {
    const { report } = await run('remote.test', { srv: { '_matrix._tcp.remote.test': [{ name: 'fed.host.test', port: 8449, priority: 10, weight: 0 }] } });
    assert.equal(report.ok, true);
    const srv = check(report, 'SRV records');
    assert.match(srv.warning ?? '', /deprecated _matrix\._tcp\.remote\.test/);
    assert.match(srv.fix ?? '', /_matrix-fed\._tcp\.remote\.test/);
  });
});

describe('discovery failures', () => {
  test('invalid server name: one failed check, nothing else attempted', async () => {
    const { report, seen } = await run('bad name!');
    assert.deepEqual(report.checks.map((c) => [c.name, c.ok]), [['server name', false]]);
    assert.match(report.checks[0].fix ?? '', /example\.org:8448/);
    assert.equal(seen.targets.length, 0);
  });

  test('no well-known, no SRV, nothing on 8448: the connect failure says how to listen or delegate', async () => {
    const { report } = await run('remote.test', { probe: { tcpError: 'connect ECONNREFUSED 1.2.3.4:8448', tcpCode: 'ECONNREFUSED' } });
    assert.equal(report.ok, false);
    const wellKnown = check(report, 'well-known');
    assert.equal(wellKnown.ok, true, 'a missing well-known is allowed');
    assert.match(wellKnown.detail, /404; not delegated/);
    assert.match(check(report, 'SRV records').detail, /_matrix-fed\._tcp\.remote\.test: none; _matrix\._tcp\.remote\.test: none/);
    assert.match(check(report, 'resolution').detail, /remote\.test:8448 \(default port 8448\)/);
    const tcp = check(report, 'TCP connect');
    assert.equal(tcp.ok, false);
    assert.match(tcp.detail, /ECONNREFUSED/);
    assert.match(tcp.fix ?? '', /federation_tls_port = 8448/);
    assert.match(tcp.fix ?? '', /well-known\/matrix\/server.*well_known_server.*_matrix-fed\._tcp\.remote\.test/);
    assert.equal(report.checks.at(-1)?.name, 'TCP connect', 'nothing after a failed connect');
  });

  test('a well-known that answers 200 with garbage is a failure with a fix', async () => {
    const { report } = await run('remote.test', { wellKnown: { [wk('remote.test')]: json('<html>hello</html>') } });
    const c = check(report, 'well-known');
    assert.equal(c.ok, false);
    assert.match(c.detail, /not JSON/);
    assert.match(c.fix ?? '', /\{"m.server": "host:port"\}/);
    // Other servers fall back to 8448, and so does the check.
    assert.equal(report.resolved?.port, 8448);
  });

  test('a host name without an address', async () => {
    const { report } = await run('remote.test', { probe: { tcpError: 'getaddrinfo ENOTFOUND remote.test', tcpCode: 'ENOTFOUND' } });
    assert.match(check(report, 'TCP connect').fix ?? '', /no address in DNS: add an A or AAAA record/);
  });

  test('each network step is time-limited', async () => {
    const started = Date.now();
    const { report } = await run('remote.test', { timeoutMs: 50, probe: () => new Promise(() => {}) });
    assert.ok(Date.now() - started < 2000);
    const tcp = check(report, 'TCP connect');
    assert.equal(tcp.ok, false);
    assert.match(tcp.detail, /timed out/);
  });
});

describe('TLS failures', () => {
  test('certificate for another name: fails with the name to get, later checks still run unverified', async () => {
    const { report, seen } = await run('remote.test', { probe: { connectMs: 1, protocol: 'TLSv1.3', cert: cert(['other.test']) } });
    assert.equal(report.ok, false);
    assert.deepEqual(failed(report), ['TLS certificate name']);
    const c = check(report, 'TLS certificate name');
    assert.match(c.detail, /DNS:other\.test, but other servers check it against remote\.test/);
    assert.match(c.fix ?? '', /Get a certificate that names remote\.test/);
    assert.ok(seen.gets.every((g) => g.verify === false));
    assert.match(check(report, 'server keys').detail, /over an unverified connection/);
  });

  test('delegated: the fix says the certificate must be for the m.server name', async () => {
    const { report } = await run('remote.test', {
      wellKnown: { [wk('remote.test')]: json({ 'm.server': 'fed.remote.test' }) },
      probe: { connectMs: 1, protocol: 'TLSv1.3', cert: cert(['remote.test']) },
    });
    const c = check(report, 'TLS certificate name');
    assert.equal(c.ok, false);
    assert.match(c.fix ?? '', /fed\.remote\.test.*name in m\.server/);
  });

  test('untrusted chain: missing intermediates and self-signed have their own fixes', async () => {
    const a = await run('remote.test', { probe: { connectMs: 1, protocol: 'TLSv1.3', chainError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', cert: cert(['remote.test']) } });
    assert.match(check(a.report, 'TLS certificate chain').fix ?? '', /full chain \(fullchain\.pem/);
    const b = await run('remote.test', { probe: { connectMs: 1, protocol: 'TLSv1.3', chainError: 'DEPTH_ZERO_SELF_SIGNED_CERT', cert: cert(['remote.test']) } });
    assert.match(check(b.report, 'TLS certificate chain').fix ?? '', /self-signed/);
    assert.equal(b.report.ok, false);
  });

  test('expired certificate fails; one expiring within 14 days warns', async () => {
    const expired = await run('remote.test', { probe: { connectMs: 1, protocol: 'TLSv1.3', cert: cert(['remote.test'], { validTo: NOW - HOUR }) } });
    const e = check(expired.report, 'TLS certificate expiry');
    assert.equal(e.ok, false);
    assert.match(e.fix ?? '', /Renew/);
    const soon = await run('remote.test', { probe: { connectMs: 1, protocol: 'TLSv1.3', cert: cert(['remote.test'], { validTo: NOW + 5 * DAY }) } });
    const w = check(soon.report, 'TLS certificate expiry');
    assert.equal(w.ok, true);
    assert.match(w.warning ?? '', /expires in 5 days/);
    assert.equal(soon.report.ok, true);
  });

  test('plain HTTP where TLS is expected', async () => {
    const { report } = await run('remote.test', { probe: { connectMs: 1, tlsError: 'EPROTO wrong version number' } });
    const c = check(report, 'TLS handshake');
    assert.equal(c.ok, false);
    assert.match(c.fix ?? '', /not at Ranvier's plain HTTP port/);
  });
});

describe('key endpoint', () => {
  test('a key that does not sign the response', async () => {
    const real = generateSigningKey('real');
    const extra = generateSigningKey('extra');
    const body = signJson(
      { server_name: 'remote.test', verify_keys: { [real.keyId]: { key: publicKeyBase64(real) }, [extra.keyId]: { key: publicKeyBase64(extra) } }, old_verify_keys: {}, valid_until_ts: NOW + DAY * 7 },
      'remote.test',
      real,
    );
    const { report } = await run('remote.test', { routes: { '/_matrix/key/v2/server': json(body) } });
    const c = check(report, 'server keys');
    assert.equal(c.ok, false);
    assert.match(c.detail, /not self-signed by ed25519:extra/);
    assert.match(c.fix ?? '', /Every key in verify_keys must sign/);
  });

  test('keys of another server name', async () => {
    const key = generateSigningKey();
    const { report } = await run('remote.test', { routes: { '/_matrix/key/v2/server': json(keyResponse('elsewhere.test', key, NOW + DAY)) } });
    const c = check(report, 'server keys');
    assert.equal(c.ok, false);
    assert.match(c.detail, /server_name is "elsewhere.test", expected remote.test/);
    assert.match(c.fix ?? '', /answers for another server/);
  });

  test('expired key response fails; one valid for less than a day warns', async () => {
    const key = generateSigningKey();
    const expired = await run('remote.test', { key, routes: { '/_matrix/key/v2/server': json(keyResponse('remote.test', key, NOW - HOUR)) } });
    const e = check(expired.report, 'key validity');
    assert.equal(e.ok, false);
    assert.match(e.detail, /in the past/);
    assert.match(e.fix ?? '', /clock/);
    const soon = await run('remote.test', { key, routes: { '/_matrix/key/v2/server': json(keyResponse('remote.test', key, NOW + 3 * HOUR)) } });
    const w = check(soon.report, 'key validity');
    assert.equal(w.ok, true);
    assert.match(w.warning ?? '', /expires in 3 hours/);
  });

  test('the version endpoint missing behind a proxy', async () => {
    const { report } = await run('remote.test', { routes: { '/_matrix/federation/v1/version': json('<h1>Not Found</h1>', 404) } });
    const c = check(report, 'federation version');
    assert.equal(c.ok, false);
    assert.match(c.detail, /HTTP 404/);
    assert.match(c.fix ?? '', /Forward \/_matrix\//);
  });
});

describe('our own server', () => {
  test('published key matches signing_key_path', async () => {
    const { report } = await run('us.test');
    assert.equal(report.ok, true);
    assert.match(check(report, 'signing key').detail, /is the key in/);
    assert.match(check(report, 'server name').detail, /\(this server\)/);
  });

  test('published key differs from signing_key_path: other servers will reject our events', async () => {
    const { report } = await run('us.test', { ownKeys: [generateSigningKey('mine')] });
    const c = check(report, 'signing key');
    assert.equal(c.ok, false);
    assert.match(c.detail, /holds ed25519:mine .* publishes ed25519:.*reject events/);
    assert.match(c.fix ?? '', /run with this configuration/);
    assert.equal(report.ok, false);
  });

  test('unreadable signing key file', async () => {
    const { report } = await run('us.test', { ownKeys: new Error('ENOENT: no such file') });
    const c = check(report, 'signing key');
    assert.equal(c.ok, false);
    assert.match(c.detail, /cannot read signing_key_path.*ENOENT/);
  });

  test('well-known must say what well_known_server says', async () => {
    const good = await run('us.test', {
      config: { well_known_server: 'matrix.us.test:443' },
      wellKnown: { [wk('us.test')]: json({ 'm.server': 'matrix.us.test:443' }) },
    });
    assert.deepEqual(failed(good.report), []);
    assert.match(check(good.report, 'well-known config').detail, /says matrix\.us\.test:443/);

    const stale = await run('us.test', {
      config: { well_known_server: 'matrix.us.test:443' },
      wellKnown: { [wk('us.test')]: json({ 'm.server': 'old.us.test:8448' }) },
    });
    const c = check(stale.report, 'well-known config');
    assert.equal(c.ok, false);
    assert.match(c.detail, /well_known_server is matrix\.us\.test:443, but .* says old\.us\.test:8448/);
    assert.match(c.fix ?? '', /Forward \/\.well-known\/matrix\//);

    const missing = await run('us.test', { config: { well_known_server: 'matrix.us.test:443' } });
    assert.match(check(missing.report, 'well-known config').detail, /not usable \(status 404\)/);
  });

  test('pinned by federation_hosts: the well-known is still fetched to compare with the config', async () => {
    const { report, seen } = await run('us.test', {
      config: { well_known_server: 'matrix.us.test:443', federation_hosts: 'us.test=127.0.0.1:9999' },
      wellKnown: { [wk('us.test')]: json({ 'm.server': 'matrix.us.test:443' }) },
    });
    assert.match(check(report, 'discovery').detail, /federation_hosts pins us\.test to 127\.0\.0\.1:9999/);
    assert.deepEqual(seen.wellKnown, [wk('us.test')]);
    assert.equal(check(report, 'well-known config').ok, true);
  });
});

test('formatReport: ✓ and ✗ lines, fixes under failures and warnings, a summary', async () => {
  const { report } = await run('remote.test', {
    probe: { connectMs: 1, protocol: 'TLSv1.3', cert: cert(['other.test'], { validTo: NOW + 2 * DAY }) },
  });
  const text = formatReport(report);
  assert.match(text, /^Federation check for remote\.test\n/);
  assert.match(text, /\n✓ server name +remote\.test is a valid server name\n/);
  assert.match(text, /\n✗ TLS certificate name +the certificate is for DNS:other\.test/);
  assert.match(text, /\n +fix: Get a certificate that names remote\.test/);
  assert.match(text, /\n +warning: expires in 2 days\n +fix: Renew/);
  assert.match(text, /\n1 check failed, 1 warning\.\n$/);
  // Passing checks without a warning carry no fix line.
  assert.equal(text.split('\n').filter((l) => l.includes('fix:')).length, 2);
});
