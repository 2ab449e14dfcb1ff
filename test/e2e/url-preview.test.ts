/**
 * URL previews over HTTP: the SSRF guards (blocked addresses, names that
 * resolve to them, redirects to them), size and time limits, and the happy
 * path against a local page on a server whose allowlist lets 127.0.0.1 in.
 *
 *   RANVIER_TEST_DB=sqlite node --import tsx --test test/e2e/url-preview.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestServer, registerUser, type TestServer } from './harness.js';

const PASSWORD = 'hunter2 but longer';
const V1 = '/_matrix/client/v1/media/preview_url';
const LEGACY = '/_matrix/media/v3/preview_url';

async function get(base: string, path: string, token?: string) {
  const res = await fetch(base + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

const q = (url: string, ts?: number) => `?url=${encodeURIComponent(url)}${ts === undefined ? '' : `&ts=${ts}`}`;

function assertError(r: { status: number; body: any }, status: number, errcode: string, what: string) {
  assert.equal(r.status, status, `${what}: expected ${status} ${errcode}, got ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(r.body?.errcode, errcode, `${what}: errcode`);
}

describe('URL previews', { timeout: 60_000 }, () => {
  let site: http.Server;
  let siteUrl: string;
  let sitePort: number;
  const hits: Record<string, number> = {};
  const pending: http.ServerResponse[] = [];
  let guarded: TestServer;
  let open: TestServer;
  let disabled: TestServer;
  let guardedToken: string;
  let openToken: string;
  let disabledToken: string;

  before(async () => {
    site = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      hits[path] = (hits[path] ?? 0) + 1;
      switch (path) {
        case '/':
        case '/counted':
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
          res.end(`<!doctype html><html><head><title>Local &amp; page</title>
            <meta name="description" content="A page served for the test">
            <meta property="og:type" content="article"></head><body>hello</body></html>`);
          return;
        case '/hop':
          res.writeHead(302, { location: '/' });
          res.end();
          return;
        case '/to-private':
          res.writeHead(302, { location: 'http://10.0.0.1/' });
          res.end();
          return;
        case '/to-v6-loopback':
          res.writeHead(301, { location: `http://[::1]:${sitePort}/` });
          res.end();
          return;
        case '/to-other-loopback':
          res.writeHead(307, { location: `http://127.0.0.2:${sitePort}/` });
          res.end();
          return;
        case '/loop':
          res.writeHead(302, { location: '/loop' });
          res.end();
          return;
        case '/big': {
          // No content-length: the limit must hold while streaming.
          res.writeHead(200, { 'content-type': 'text/html' });
          const chunk = '<p>' + 'x'.repeat(16 * 1024) + '</p>';
          let sent = 0;
          const write = () => {
            while (sent < 200) {
              sent++;
              if (!res.write(chunk)) return void res.once('drain', write);
            }
            res.end();
          };
          res.on('error', () => {});
          write();
          return;
        }
        case '/big-declared':
          res.writeHead(200, { 'content-type': 'text/html', 'content-length': String(10 * 1024 * 1024) });
          res.write('<title>');
          res.on('error', () => {});
          return;
        case '/slow':
          pending.push(res);
          return;
        case '/missing':
          res.writeHead(404, { 'content-type': 'text/html' });
          res.end('<title>Not here</title>');
          return;
        case '/json':
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"a":1}');
          return;
        default:
          res.writeHead(500);
          res.end();
      }
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    sitePort = (site.address() as AddressInfo).port;
    siteUrl = `http://127.0.0.1:${sitePort}`;

    guarded = await startTestServer();
    open = await startTestServer({ url_preview_ip_allowlist: '127.0.0.1/32', url_preview_max_bytes: 64 * 1024, url_preview_timeout_ms: 1000 });
    disabled = await startTestServer({ url_preview_enabled: false });
    guardedToken = (await registerUser(guarded.url, 'alice', PASSWORD)).accessToken;
    openToken = (await registerUser(open.url, 'alice', PASSWORD)).accessToken;
    disabledToken = (await registerUser(disabled.url, 'alice', PASSWORD)).accessToken;
  });

  after(async () => {
    for (const r of pending) r.destroy();
    await Promise.all([guarded?.close(), open?.close(), disabled?.close()]);
    site?.closeAllConnections();
    await new Promise((resolve) => site?.close(resolve));
  });

  test('a loopback address is refused by default, before any connection', async () => {
    const before = hits['/'] ?? 0;
    assertError(await get(guarded.url, V1 + q(`${siteUrl}/`), guardedToken), 403, 'M_FORBIDDEN', '127.0.0.1');
    assertError(await get(guarded.url, LEGACY + q(`${siteUrl}/`), guardedToken), 403, 'M_FORBIDDEN', 'legacy endpoint');
    assertError(await get(guarded.url, V1 + q(`http://[::1]:${sitePort}/`), guardedToken), 403, 'M_FORBIDDEN', '[::1]');
    assertError(await get(guarded.url, V1 + q(`http://[::ffff:127.0.0.1]:${sitePort}/`), guardedToken), 403, 'M_FORBIDDEN', 'mapped');
    assertError(await get(guarded.url, V1 + q('http://169.254.169.254/latest/meta-data/'), guardedToken), 403, 'M_FORBIDDEN', 'link-local');
    assertError(await get(guarded.url, V1 + q(`http://2130706433:${sitePort}/`), guardedToken), 403, 'M_FORBIDDEN', 'decimal IPv4');
    assert.equal(hits['/'] ?? 0, before, 'the page was never fetched');
  });

  test('a host name resolving to loopback is refused', async () => {
    const before = hits['/'] ?? 0;
    assertError(await get(guarded.url, V1 + q(`http://localhost:${sitePort}/`), guardedToken), 403, 'M_FORBIDDEN', 'localhost');
    assertError(await get(guarded.url, V1 + q(`http://LocalHost:${sitePort}/`), guardedToken), 403, 'M_FORBIDDEN', 'LocalHost');
    assert.equal(hits['/'] ?? 0, before, 'the page was never fetched');
  });

  test('happy path: title and description extracted, then cached', async () => {
    const r = await get(open.url, V1 + q(`${siteUrl}/counted`, 1700000000000), openToken);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { 'og:title': 'Local & page', 'og:description': 'A page served for the test', 'og:type': 'article' });
    assert.equal(hits['/counted'], 1);
    const again = await get(open.url, V1 + q(`${siteUrl}/counted`, 1700000000000 + 1000), openToken);
    assert.deepEqual(again.body, r.body);
    assert.equal(hits['/counted'], 1, 'the second preview came from the cache');
    const legacy = await get(open.url, LEGACY + q(`${siteUrl}/counted`, 1700000000000), openToken);
    assert.deepEqual(legacy.body, r.body);
    assert.equal(hits['/counted'], 1);
  });

  test('redirects are followed and each hop re-checked', async () => {
    const ok = await get(open.url, V1 + q(`${siteUrl}/hop`), openToken);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body['og:title'], 'Local & page');
    assertError(await get(open.url, V1 + q(`${siteUrl}/to-private`), openToken), 403, 'M_FORBIDDEN', 'redirect to 10.0.0.1');
    assertError(await get(open.url, V1 + q(`${siteUrl}/to-v6-loopback`), openToken), 403, 'M_FORBIDDEN', 'redirect to [::1]');
    assertError(await get(open.url, V1 + q(`${siteUrl}/to-other-loopback`), openToken), 403, 'M_FORBIDDEN', 'redirect to 127.0.0.2');
    const before = hits['/loop'] ?? 0;
    assertError(await get(open.url, V1 + q(`${siteUrl}/loop`), openToken), 502, 'M_UNKNOWN', 'redirect loop');
    assert.equal(hits['/loop'] - before, 6, 'the first request and 5 redirects');
  });

  test('an oversized page is aborted', async () => {
    assertError(await get(open.url, V1 + q(`${siteUrl}/big`), openToken), 502, 'M_UNKNOWN', 'streamed');
    assertError(await get(open.url, V1 + q(`${siteUrl}/big-declared`), openToken), 502, 'M_UNKNOWN', 'declared');
  });

  test('a slow page hits the time limit', async () => {
    const t0 = Date.now();
    assertError(await get(open.url, V1 + q(`${siteUrl}/slow`), openToken), 504, 'M_UNKNOWN', 'slow');
    assert.ok(Date.now() - t0 < 5000);
  });

  test('upstream errors and non-HTML content', async () => {
    assertError(await get(open.url, V1 + q(`${siteUrl}/missing`), openToken), 502, 'M_UNKNOWN', '404 upstream');
    const r = await get(open.url, V1 + q(`${siteUrl}/json`), openToken);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, {});
  });

  test('bad parameters', async () => {
    assertError(await get(open.url, V1 + q('ftp://127.0.0.1/'), openToken), 400, 'M_INVALID_PARAM', 'ftp');
    assertError(await get(open.url, V1 + q('file:///etc/passwd'), openToken), 400, 'M_INVALID_PARAM', 'file');
    assertError(await get(open.url, V1 + q('javascript:alert(1)'), openToken), 400, 'M_INVALID_PARAM', 'javascript');
    assertError(await get(open.url, V1 + q('not a url'), openToken), 400, 'M_INVALID_PARAM', 'garbage');
    assertError(await get(open.url, V1, openToken), 400, 'M_MISSING_PARAM', 'no url');
    assertError(await get(open.url, `${V1}${q(`${siteUrl}/`)}&ts=yesterday`, openToken), 400, 'M_INVALID_PARAM', 'bad ts');
  });

  test('authentication is required on both endpoints', async () => {
    assertError(await get(open.url, V1 + q(`${siteUrl}/`)), 401, 'M_MISSING_TOKEN', 'v1');
    assertError(await get(open.url, LEGACY + q(`${siteUrl}/`)), 401, 'M_MISSING_TOKEN', 'legacy');
    assertError(await get(open.url, V1 + q(`${siteUrl}/`), 'rvat_nonsense'), 401, 'M_UNKNOWN_TOKEN', 'bad token');
  });

  test('url_preview_enabled=false: the endpoint does not exist', async () => {
    assertError(await get(disabled.url, V1 + q('https://example.com/'), disabledToken), 404, 'M_UNRECOGNIZED', 'v1');
    assertError(await get(disabled.url, LEGACY + q('https://example.com/'), disabledToken), 404, 'M_UNRECOGNIZED', 'legacy');
  });
});
