/**
 * Server discovery, every branch of the spec's "Resolving server names",
 * with DNS, the well-known fetch and the clock injected (no network).
 *
 *   node --import tsx --test test/federation/discovery.test.ts
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { loadConfig, type Config } from '../../src/config/config.js';
import {
  ServerDiscovery,
  cacheLifetimeMs,
  parseFederationHosts,
  parseServerName,
  pickSrv,
  WELL_KNOWN_MAX_BYTES,
  WellKnownFetcher,
  type SrvRecord,
  type WellKnownHttpResponse,
} from '../../src/federation/discovery.js';
import type { BaseContext } from '../../src/server/context.js';
import { silentLogger } from '../../src/server/logging.js';
import { createTestCa } from '../helpers/tls.js';

const HOUR = 3600_000;

type WellKnownAnswer = WellKnownHttpResponse | Error;

/** A discovery with scripted DNS and well-known answers, recording every lookup. */
function setup(opts: { srv?: Record<string, SrvRecord[] | Error>; wellKnown?: Record<string, WellKnownAnswer>; config?: Partial<Config> } = {}) {
  const config = loadConfig({ env: {}, overrides: { server_name: 'us.test', log_level: 'silent', data_dir: '/nonexistent', ...opts.config } });
  // Discovery only uses config and log.
  const ctx = { config, log: silentLogger() } as unknown as BaseContext;
  const calls = { srv: [] as string[], wellKnown: [] as string[] };
  const clock = { now: 1_700_000_000_000 };
  const srv = opts.srv ?? {};
  const wellKnown = opts.wellKnown ?? {};
  const discovery = new ServerDiscovery(ctx, {
    now: () => clock.now,
    async resolveSrv(name) {
      calls.srv.push(name);
      const records = srv[name];
      if (!records) throw Object.assign(new Error(`queryNotFound ${name}`), { code: 'ENOTFOUND' });
      if (records instanceof Error) throw records;
      return records;
    },
    async fetchWellKnown(url) {
      calls.wellKnown.push(url);
      const answer = wellKnown[url];
      if (answer === undefined) throw new Error(`connect ECONNREFUSED (${url})`);
      if (answer instanceof Error) throw answer;
      return answer;
    },
  });
  return { discovery, calls, clock, srv, wellKnown };
}

function json(body: unknown, headers: Record<string, string> = {}, status = 200): WellKnownHttpResponse {
  return { status, headers, body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)) };
}

const wk = (host: string) => `https://${host}/.well-known/matrix/server`;
const srvRecord = (name: string, port: number, priority = 10, weight = 0): SrvRecord => ({ name, port, priority, weight });

describe('IP literals', () => {
  test('IPv4 without port: that address, port 8448, Host is the server name', async () => {
    const { discovery, calls } = setup();
    assert.deepEqual(await discovery.resolve('1.2.3.4'), { host: '1.2.3.4', port: 8448, tlsServerName: '1.2.3.4', hostHeader: '1.2.3.4' });
    assert.deepEqual(calls, { srv: [], wellKnown: [] });
  });

  test('IPv4 with port', async () => {
    const { discovery, calls } = setup();
    assert.deepEqual(await discovery.resolve('1.2.3.4:8080'), { host: '1.2.3.4', port: 8080, tlsServerName: '1.2.3.4', hostHeader: '1.2.3.4:8080' });
    assert.deepEqual(calls, { srv: [], wellKnown: [] });
  });

  test('IPv6 without port: brackets removed for connecting, kept in Host', async () => {
    const { discovery, calls } = setup();
    assert.deepEqual(await discovery.resolve('[2001:db8::1]'), { host: '2001:db8::1', port: 8448, tlsServerName: '2001:db8::1', hostHeader: '[2001:db8::1]' });
    assert.deepEqual(calls, { srv: [], wellKnown: [] });
  });

  test('IPv6 with port', async () => {
    const { discovery, calls } = setup();
    assert.deepEqual(await discovery.resolve('[::1]:8443'), { host: '::1', port: 8443, tlsServerName: '::1', hostHeader: '[::1]:8443' });
    assert.deepEqual(calls, { srv: [], wellKnown: [] });
  });
});

test('a hostname with an explicit port is used directly, without well-known or SRV', async () => {
  const { discovery, calls } = setup({
    wellKnown: { [wk('example.org')]: json({ 'm.server': 'elsewhere.org:443' }) },
    srv: { '_matrix-fed._tcp.example.org': [srvRecord('srv.example.org', 1)] },
  });
  assert.deepEqual(await discovery.resolve('example.org:1234'), { host: 'example.org', port: 1234, tlsServerName: 'example.org', hostHeader: 'example.org:1234' });
  assert.deepEqual(calls, { srv: [], wellKnown: [] });
});

describe('well-known delegation', () => {
  test('with a port: the delegated host and port, Host and TLS name the delegated name, no SRV', async () => {
    const { discovery, calls } = setup({ wellKnown: { [wk('example.org')]: json({ 'm.server': 'matrix.example.org:443' }) } });
    assert.deepEqual(await discovery.resolve('example.org'), {
      host: 'matrix.example.org',
      port: 443,
      tlsServerName: 'matrix.example.org',
      hostHeader: 'matrix.example.org:443',
    });
    assert.deepEqual(calls.srv, []);
  });

  test('without a port and without SRV: the delegated name on 8448', async () => {
    const { discovery, calls } = setup({ wellKnown: { [wk('example.org')]: json({ 'm.server': 'matrix.example.org' }) } });
    assert.deepEqual(await discovery.resolve('example.org'), {
      host: 'matrix.example.org',
      port: 8448,
      tlsServerName: 'matrix.example.org',
      hostHeader: 'matrix.example.org',
    });
    // SRV is looked up for the delegated name, never for the original one.
    assert.deepEqual(calls.srv, ['_matrix-fed._tcp.matrix.example.org', '_matrix._tcp.matrix.example.org']);
  });

  test('without a port, with _matrix-fed SRV for the delegated name', async () => {
    const { discovery } = setup({
      wellKnown: { [wk('example.org')]: json({ 'm.server': 'matrix.example.org' }) },
      srv: {
        '_matrix-fed._tcp.matrix.example.org': [srvRecord('fed1.example.net.', 8449)],
        '_matrix._tcp.matrix.example.org': [srvRecord('legacy.example.net', 9999)],
        '_matrix-fed._tcp.example.org': [srvRecord('wrong.example.net', 1)],
      },
    });
    assert.deepEqual(await discovery.resolve('example.org'), {
      host: 'fed1.example.net',
      port: 8449,
      tlsServerName: 'matrix.example.org',
      hostHeader: 'matrix.example.org',
    });
  });

  test('without a port, with only the legacy _matrix SRV for the delegated name', async () => {
    const { discovery } = setup({
      wellKnown: { [wk('example.org')]: json({ 'm.server': 'matrix.example.org' }) },
      srv: { '_matrix._tcp.matrix.example.org': [srvRecord('legacy.example.net', 9999)] },
    });
    assert.deepEqual(await discovery.resolve('example.org'), {
      host: 'legacy.example.net',
      port: 9999,
      tlsServerName: 'matrix.example.org',
      hostHeader: 'matrix.example.org',
    });
  });

  test('to an IP literal: that address, Host and TLS name the address', async () => {
    const { discovery } = setup({
      wellKnown: { [wk('a.org')]: json({ 'm.server': '10.0.0.7' }), [wk('b.org')]: json({ 'm.server': '[2001:db8::7]:8000' }) },
    });
    assert.deepEqual(await discovery.resolve('a.org'), { host: '10.0.0.7', port: 8448, tlsServerName: '10.0.0.7', hostHeader: '10.0.0.7' });
    assert.deepEqual(await discovery.resolve('b.org'), { host: '2001:db8::7', port: 8000, tlsServerName: '2001:db8::7', hostHeader: '[2001:db8::7]:8000' });
  });

  test('follows redirects (absolute and relative), at most 5', async () => {
    const redirect = (location: string, status = 301): WellKnownHttpResponse => ({ status, headers: { location }, body: Buffer.alloc(0) });
    const { discovery, calls } = setup({
      wellKnown: {
        [wk('example.org')]: redirect('https://www.example.org/.well-known/matrix/server'),
        [wk('www.example.org')]: redirect('/other/path', 308),
        'https://www.example.org/other/path': json({ 'm.server': 'matrix.example.org:443' }),
      },
    });
    assert.equal((await discovery.resolve('example.org')).host, 'matrix.example.org');
    assert.deepEqual(calls.wellKnown, [wk('example.org'), wk('www.example.org'), 'https://www.example.org/other/path']);

    // Six hops is one too many: discovery falls back to 8448 on the server name.
    const chain: Record<string, WellKnownAnswer> = {};
    for (let i = 0; i < 6; i++) chain[i === 0 ? wk('far.org') : `https://far.org/${i}`] = redirect(`https://far.org/${i + 1}`, 302);
    chain['https://far.org/6'] = json({ 'm.server': 'matrix.far.org:443' });
    const far = setup({ wellKnown: chain });
    assert.deepEqual(await far.discovery.resolve('far.org'), { host: 'far.org', port: 8448, tlsServerName: 'far.org', hostHeader: 'far.org' });
    assert.equal(far.calls.wellKnown.length, 6);

    // Five hops are fine.
    delete chain[wk('far.org')];
    chain[wk('near.org')] = redirect('https://far.org/2', 302);
    const near = setup({ wellKnown: chain });
    assert.equal((await near.discovery.resolve('near.org')).host, 'matrix.far.org');
  });

  test('a redirect loop or a redirect to plain http is an error', async () => {
    const loop = setup({
      wellKnown: {
        [wk('loop.org')]: { status: 302, headers: { location: 'https://loop.org/a' }, body: Buffer.alloc(0) },
        'https://loop.org/a': { status: 302, headers: { location: wk('loop.org') }, body: Buffer.alloc(0) },
      },
    });
    assert.equal((await loop.discovery.resolve('loop.org')).port, 8448);
    assert.equal(loop.calls.wellKnown.length, 2);

    const insecure = setup({
      wellKnown: {
        [wk('plain.org')]: { status: 301, headers: { location: 'http://plain.org/.well-known/matrix/server' }, body: Buffer.alloc(0) },
      },
    });
    assert.deepEqual(await insecure.discovery.resolve('plain.org'), { host: 'plain.org', port: 8448, tlsServerName: 'plain.org', hostHeader: 'plain.org' });
    assert.equal(insecure.calls.wellKnown.length, 1);
  });

  for (const [what, answer] of [
    ['invalid JSON', json('{"m.server": ')],
    ['a JSON array', json('[]')],
    ['m.server missing', json({ 'm.homeserver': 'x.org' })],
    ['m.server not a server name', json({ 'm.server': 'https://matrix.example.org' })],
    ['a non-200 status', json({ 'm.server': 'matrix.example.org:443' }, {}, 404)],
    ['a body over 64 KiB', json({ 'm.server': 'matrix.example.org:443', pad: 'x'.repeat(WELL_KNOWN_MAX_BYTES) })],
    ['a network error', new Error('connect ECONNREFUSED')],
  ] as const) {
    test(`${what}: falls back to SRV for the server name, then 8448`, async () => {
      const { discovery, calls } = setup({
        wellKnown: { [wk('example.org')]: answer },
        srv: { '_matrix-fed._tcp.example.org': [srvRecord('fed.example.net', 8500)] },
      });
      assert.deepEqual(await discovery.resolve('example.org'), { host: 'fed.example.net', port: 8500, tlsServerName: 'example.org', hostHeader: 'example.org' });
      assert.deepEqual(calls.srv, ['_matrix-fed._tcp.example.org']);
    });
  }
});

describe('well-known caching', () => {
  test('Cache-Control max-age is honoured', async () => {
    const { discovery, calls, clock } = setup({
      wellKnown: { [wk('example.org')]: json({ 'm.server': 'matrix.example.org:443' }, { 'cache-control': 'public, max-age=3600' }) },
    });
    await discovery.resolve('example.org');
    clock.now += HOUR - 1000;
    await discovery.resolve('example.org');
    assert.equal(calls.wellKnown.length, 1, 'still fresh');
    clock.now += 2000;
    await discovery.resolve('example.org');
    assert.equal(calls.wellKnown.length, 2, 'refetched after max-age');
  });

  test('without cache headers: 24 hours', async () => {
    const { discovery, calls, clock } = setup({ wellKnown: { [wk('example.org')]: json({ 'm.server': 'matrix.example.org:443' }) } });
    await discovery.resolve('example.org');
    clock.now += 24 * HOUR - 1000;
    await discovery.resolve('example.org');
    assert.equal(calls.wellKnown.length, 1);
    clock.now += 2000;
    await discovery.resolve('example.org');
    assert.equal(calls.wellKnown.length, 2);
  });

  test('a long max-age is capped at 48 hours', async () => {
    const { discovery, calls, clock } = setup({
      wellKnown: { [wk('example.org')]: json({ 'm.server': 'matrix.example.org:443' }, { 'cache-control': 'max-age=31536000' }) },
    });
    await discovery.resolve('example.org');
    clock.now += 48 * HOUR - 1000;
    await discovery.resolve('example.org');
    assert.equal(calls.wellKnown.length, 1);
    clock.now += 2000;
    await discovery.resolve('example.org');
    assert.equal(calls.wellKnown.length, 2);
  });

  test('Expires is honoured (measured from the Date header)', async () => {
    const { discovery, calls, clock } = setup({
      wellKnown: {
        [wk('example.org')]: json({ 'm.server': 'matrix.example.org:443' }, { date: 'Thu, 01 Jan 2026 00:00:00 GMT', expires: 'Thu, 01 Jan 2026 02:00:00 GMT' }),
      },
    });
    await discovery.resolve('example.org');
    clock.now += 2 * HOUR - 1000;
    await discovery.resolve('example.org');
    assert.equal(calls.wellKnown.length, 1);
    clock.now += 2000;
    await discovery.resolve('example.org');
    assert.equal(calls.wellKnown.length, 2);
  });

  test('errors are cached for an hour, then retried', async () => {
    const { discovery, calls, clock, wellKnown } = setup({ wellKnown: { [wk('example.org')]: json('oops', {}, 500) } });
    assert.equal((await discovery.resolve('example.org')).host, 'example.org');
    // The server gets fixed, but the failure is remembered for a while.
    wellKnown[wk('example.org')] = json({ 'm.server': 'matrix.example.org:443' });
    clock.now += HOUR - 1000;
    assert.equal((await discovery.resolve('example.org')).host, 'example.org');
    assert.equal(calls.wellKnown.length, 1);
    clock.now += 2000;
    assert.equal((await discovery.resolve('example.org')).host, 'matrix.example.org');
    assert.equal(calls.wellKnown.length, 2);
  });

  test('concurrent lookups of one name share one fetch', async () => {
    const { discovery, calls } = setup({ wellKnown: { [wk('example.org')]: json({ 'm.server': 'matrix.example.org:443' }) } });
    const results = await Promise.all([1, 2, 3].map(() => discovery.resolve('example.org')));
    assert.equal(calls.wellKnown.length, 1);
    for (const r of results) assert.equal(r.host, 'matrix.example.org');
  });
});

describe('SRV and fallback (no well-known)', () => {
  test('_matrix-fed._tcp: target host and port; Host and TLS name stay the server name', async () => {
    const { discovery, calls } = setup({ srv: { '_matrix-fed._tcp.example.org': [srvRecord('fed.example.net.', 8500)] } });
    assert.deepEqual(await discovery.resolve('example.org'), { host: 'fed.example.net', port: 8500, tlsServerName: 'example.org', hostHeader: 'example.org' });
    assert.deepEqual(calls.wellKnown, [wk('example.org')]);
    assert.deepEqual(calls.srv, ['_matrix-fed._tcp.example.org']);
  });

  test('legacy _matrix._tcp when there is no _matrix-fed record', async () => {
    const { discovery, calls } = setup({ srv: { '_matrix._tcp.example.org': [srvRecord('old.example.net', 8600)] } });
    assert.deepEqual(await discovery.resolve('example.org'), { host: 'old.example.net', port: 8600, tlsServerName: 'example.org', hostHeader: 'example.org' });
    assert.deepEqual(calls.srv, ['_matrix-fed._tcp.example.org', '_matrix._tcp.example.org']);
  });

  test('no SRV at all: the server name on port 8448', async () => {
    const { discovery } = setup();
    assert.deepEqual(await discovery.resolve('example.org'), { host: 'example.org', port: 8448, tlsServerName: 'example.org', hostHeader: 'example.org' });
  });

  test('a "." target means no service: falls through', async () => {
    const { discovery } = setup({ srv: { '_matrix-fed._tcp.example.org': [srvRecord('.', 0)] } });
    assert.equal((await discovery.resolve('example.org')).port, 8448);
  });

  test('SRV answers are cached for 10 minutes, DNS failures for one', async () => {
    const { discovery, calls, clock } = setup({ srv: { '_matrix-fed._tcp.example.org': [srvRecord('fed.example.net', 8500)] } });
    await discovery.resolve('example.org');
    clock.now += 9 * 60_000;
    await discovery.resolve('example.org');
    assert.deepEqual(calls.srv, ['_matrix-fed._tcp.example.org']);
    clock.now += 2 * 60_000;
    await discovery.resolve('example.org');
    assert.equal(calls.srv.length, 2);

    const servfail = () => Object.assign(new Error('querySrv ESERVFAIL'), { code: 'ESERVFAIL' });
    const flaky = setup({ srv: { '_matrix-fed._tcp.flaky.org': servfail(), '_matrix._tcp.flaky.org': servfail() } });
    await flaky.discovery.resolve('flaky.org');
    flaky.clock.now += 30_000;
    await flaky.discovery.resolve('flaky.org');
    assert.equal(flaky.calls.srv.length, 2, 'a transient failure is remembered briefly');
    flaky.clock.now += 31_000;
    delete flaky.srv['_matrix-fed._tcp.flaky.org'];
    delete flaky.srv['_matrix._tcp.flaky.org'];
    await flaky.discovery.resolve('flaky.org');
    assert.equal(flaky.calls.srv.length, 4, 'and asked again after a minute');
    flaky.clock.now += 5 * 60_000;
    await flaky.discovery.resolve('flaky.org');
    assert.equal(flaky.calls.srv.length, 4, '"no such record" is kept longer');
  });
});

describe('federation_hosts', () => {
  test('an override short-circuits discovery; TLS name and Host stay the server name', async () => {
    const { discovery, calls } = setup({
      config: { federation_hosts: 'remote.test=127.0.0.1:9000, Other.Test:8448 = [::1]:9001 ,bare.test=backend.internal' },
      wellKnown: { [wk('remote.test')]: json({ 'm.server': 'elsewhere:1' }) },
    });
    assert.deepEqual(await discovery.resolve('remote.test'), { host: '127.0.0.1', port: 9000, tlsServerName: 'remote.test', hostHeader: 'remote.test' });
    assert.deepEqual(await discovery.resolve('other.test:8448'), { host: '::1', port: 9001, tlsServerName: 'other.test', hostHeader: 'other.test:8448' });
    assert.deepEqual(await discovery.resolve('bare.test'), { host: 'backend.internal', port: 8448, tlsServerName: 'bare.test', hostHeader: 'bare.test' });
    assert.deepEqual(calls, { srv: [], wellKnown: [] });
    // Names not listed go through normal discovery.
    assert.equal((await discovery.resolve('unlisted.test')).port, 8448);
    assert.equal(calls.wellKnown.length, 1);
  });

  test('a malformed entry is refused', () => {
    assert.throws(() => parseFederationHosts('remote.test'), /federation_hosts/);
    assert.throws(() => parseFederationHosts('remote.test=host:99999'), /federation_hosts/);
    assert.throws(() => parseFederationHosts('=host:1'), /federation_hosts/);
    assert.equal(parseFederationHosts(' , ').size, 0);
  });
});

test('an invalid server name is refused', async () => {
  const { discovery, calls } = setup();
  for (const bad of ['', 'exa mple.org', 'example.org:', 'example.org:99999', '[::1', 'https://example.org']) {
    await assert.rejects(discovery.resolve(bad), /invalid server name/, bad);
  }
  assert.deepEqual(calls, { srv: [], wellKnown: [] });
});

test('parseServerName', () => {
  assert.deepEqual(parseServerName('Example.ORG'), { host: 'example.org', port: undefined, ip: false });
  assert.deepEqual(parseServerName('[::1]:80'), { host: '::1', port: 80, ip: true });
  assert.deepEqual(parseServerName('1.2.3.4'), { host: '1.2.3.4', port: undefined, ip: true });
  // Digits that are not an IPv4 address are a DNS name, as the grammar allows.
  assert.deepEqual(parseServerName('1.2.3.999'), { host: '1.2.3.999', port: undefined, ip: false });
  assert.equal(parseServerName('a.org:0'), undefined);
});

test('pickSrv: lowest priority first, then by weight', () => {
  const records = [srvRecord('backup', 1, 20, 100), srvRecord('light', 2, 10, 1), srvRecord('heavy', 3, 10, 99)];
  assert.equal(pickSrv(records, () => 0)?.name, 'light');
  assert.equal(pickSrv(records, () => 0.5)?.name, 'heavy');
  assert.equal(pickSrv(records, () => 0.999)?.name, 'heavy');
  assert.equal(pickSrv([srvRecord('a', 1, 5, 0), srvRecord('b', 2, 5, 0)], () => 0.9)?.name, 'b');
  assert.equal(pickSrv([]), undefined);
});

test('cacheLifetimeMs', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(cacheLifetimeMs({}, now), undefined);
  assert.equal(cacheLifetimeMs({ 'cache-control': 'max-age=60' }, now), 60_000);
  assert.equal(cacheLifetimeMs({ 'cache-control': 'no-store' }, now), 0);
  assert.equal(cacheLifetimeMs({ 'cache-control': 'max-age=60', expires: 'Thu, 01 Jan 2026 05:00:00 GMT' }, now), 60_000);
  assert.equal(cacheLifetimeMs({ expires: 'Thu, 01 Jan 2026 05:00:00 GMT' }, now), 5 * HOUR);
  assert.equal(cacheLifetimeMs({ expires: 'garbage' }, now), 0);
});

test('WellKnownFetcher: one verified GET, headers lower-cased, body capped at 64 KiB + 1', async () => {
  const ca = await createTestCa();
  const cert = await ca.issue(['localhost']);
  let answer = (res: ServerResponse) => {
    res.setHeader('Cache-Control', 'max-age=60');
    res.end(JSON.stringify({ 'm.server': 'matrix.example.org:443' }));
  };
  const server = createServer({ cert: cert.cert, key: cert.key }, (_req, res) => answer(res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://localhost:${(server.address() as AddressInfo).port}/.well-known/matrix/server`;
  const config = (overrides: Partial<Config>) =>
    loadConfig({ env: {}, overrides: { server_name: 'us.test', log_level: 'silent', data_dir: '/nonexistent', ...overrides } });
  const trusting = new WellKnownFetcher(config({ federation_ca_file: ca.certFile }));
  const strict = new WellKnownFetcher(config({}));
  try {
    const res = await trusting.fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers['cache-control'], 'max-age=60');
    assert.deepEqual(JSON.parse(res.body.toString()), { 'm.server': 'matrix.example.org:443' });

    answer = (res) => {
      res.statusCode = 302;
      res.setHeader('Location', '/elsewhere');
      res.end();
    };
    const redirect = await trusting.fetch(url);
    assert.equal(redirect.status, 302, 'redirects are left to the caller');
    assert.equal(redirect.headers.location, '/elsewhere');

    answer = (res) => res.end(Buffer.alloc(WELL_KNOWN_MAX_BYTES * 4, 0x20));
    const big = await trusting.fetch(url);
    assert.equal(big.body.length, WELL_KNOWN_MAX_BYTES + 1);

    await assert.rejects(strict.fetch(url), 'a certificate from an unknown CA is refused');
  } finally {
    await trusting.close();
    await strict.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await ca.cleanup();
  }
});
