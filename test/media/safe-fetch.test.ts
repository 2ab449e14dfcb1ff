import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_URL_PREVIEW_IP_BLOCKLIST } from '../../src/config/options.js';
import { loadConfig } from '../../src/config/config.js';
import { ipPolicy, isAddressAllowed, mappedIpv4, parseCidrList, safeFetch } from '../../src/media/safe-fetch.js';
import { parseOpenGraph } from '../../src/media/preview.js';

const policy = ipPolicy(DEFAULT_URL_PREVIEW_IP_BLOCKLIST, '');

test('default blocklist: IPv4', () => {
  for (const a of ['127.0.0.1', '127.255.0.9', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '100.64.0.1', '169.254.169.254', '0.0.0.0', '192.0.0.8', '198.18.0.1', '224.0.0.1', '239.255.255.250', '255.255.255.255']) {
    assert.equal(isAddressAllowed(a, policy), false, a);
  }
  for (const a of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '172.15.255.255', '100.128.0.1', '192.0.1.1', '93.184.216.34']) {
    assert.equal(isAddressAllowed(a, policy), true, a);
  }
});

test('default blocklist: IPv6', () => {
  for (const a of ['::1', '::', 'fe80::1', 'fe80::1%eth0', 'fd00::1', 'fc12:3456::1', 'ff02::1', '64:ff9b::7f00:1', '64:ff9b::808:808', '[::1]']) {
    assert.equal(isAddressAllowed(a, policy), false, a);
  }
  for (const a of ['2001:4860:4860::8888', '2606:4700:4700::1111', '2a00:1450::1']) {
    assert.equal(isAddressAllowed(a, policy), true, a);
  }
});

test('IPv4-mapped IPv6 addresses are judged by the IPv4 rules', () => {
  assert.equal(mappedIpv4('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(mappedIpv4('::ffff:7f00:1'), '127.0.0.1');
  assert.equal(mappedIpv4('0:0:0:0:0:ffff:a00:1'), '10.0.0.1');
  assert.equal(mappedIpv4('2001::1'), undefined);
  for (const a of ['::ffff:127.0.0.1', '::ffff:7f00:1', '::FFFF:10.0.0.1', '0:0:0:0:0:ffff:c0a8:101', '::ffff:169.254.169.254']) {
    assert.equal(isAddressAllowed(a, policy), false, a);
  }
  assert.equal(isAddressAllowed('::ffff:8.8.8.8', policy), true);
  assert.equal(isAddressAllowed('::ffff:808:808', policy), true);
});

test('not an IP address: refused', () => {
  assert.equal(isAddressAllowed('localhost', policy), false);
  assert.equal(isAddressAllowed('', policy), false);
});

test('the allowlist overrides the blocklist, for plain and mapped addresses', () => {
  const p = ipPolicy(DEFAULT_URL_PREVIEW_IP_BLOCKLIST, '127.0.0.1/32, fd00::/8');
  assert.equal(isAddressAllowed('127.0.0.1', p), true);
  assert.equal(isAddressAllowed('::ffff:127.0.0.1', p), true);
  assert.equal(isAddressAllowed('127.0.0.2', p), false);
  assert.equal(isAddressAllowed('fd00::5', p), true);
  assert.equal(isAddressAllowed('fc00::5', p), false);
  assert.equal(isAddressAllowed('::1', p), false);
});

test('CIDR list parsing', () => {
  assert.throws(() => parseCidrList('10.0.0.0/33'));
  assert.throws(() => parseCidrList('nonsense'));
  assert.throws(() => parseCidrList('10.0.0.0/8/1'));
  assert.throws(() => parseCidrList('::/129'));
  const bl = parseCidrList(' 10.0.0.0/8 ,, 2001:db8::/32, 1.2.3.4 ');
  assert.ok(bl.check('10.9.9.9', 'ipv4'));
  assert.ok(bl.check('1.2.3.4', 'ipv4'));
  assert.ok(!bl.check('1.2.3.5', 'ipv4'));
  assert.ok(bl.check('2001:db8::1', 'ipv6'));
});

test('config validates the CIDR lists', () => {
  assert.throws(() => loadConfig({ env: {}, overrides: { url_preview_ip_blocklist: '10.0.0.0/99' } }), /url_preview_ip_blocklist/);
  assert.throws(() => loadConfig({ env: {}, overrides: { url_preview_ip_allowlist: 'example.com' } }), /url_preview_ip_allowlist/);
  const c = loadConfig({ env: {}, overrides: { url_preview_ip_allowlist: '127.0.0.1/32' } });
  assert.equal(c.url_preview_ip_blocklist, DEFAULT_URL_PREVIEW_IP_BLOCKLIST);
});

test('a host name with any blocked address is refused before connecting', async () => {
  const opts = { ...policy, maxBytes: 1000, timeoutMs: 1000 };
  await assert.rejects(
    safeFetch('http://mixed.example/', { ...opts, resolve: async () => [{ address: '8.8.8.8', family: 4 }, { address: '10.0.0.1', family: 4 }] }),
    (e: any) => e.kind === 'blocked',
  );
  await assert.rejects(
    safeFetch('http://rebind.example/', { ...opts, resolve: async () => [{ address: '::ffff:127.0.0.1', family: 6 }] }),
    (e: any) => e.kind === 'blocked',
  );
  await assert.rejects(safeFetch('http://[::1]:1/', opts), (e: any) => e.kind === 'blocked');
  await assert.rejects(safeFetch('http://0x7f.1/', opts), (e: any) => e.kind === 'blocked');
  await assert.rejects(safeFetch('ftp://8.8.8.8/', opts), (e: any) => e.kind === 'invalid_url');
  await assert.rejects(safeFetch('file:///etc/passwd', opts), (e: any) => e.kind === 'invalid_url');
  await assert.rejects(safeFetch('not a url', opts), (e: any) => e.kind === 'invalid_url');
});

test('OpenGraph parsing: og tags, fallbacks, entities, tolerant markup', () => {
  const og = parseOpenGraph(`<!doctype html><html><head>
    <title>Fallback &amp; title</title>
    <!-- <meta property="og:title" content="commented out"> -->
    <script>var s = '<meta property="og:title" content="in script">';</script>
    <meta property="og:title" content="Real &quot;title&quot;" />
    <meta name=description content='A  page
       about &#x263A; things'>
    <META PROPERTY="og:type" CONTENT="website">
    <meta property="og:image" content="https://example.com/a.png">
    <meta property="og:image:width" content="48">
  </head><body>x</body></html>`);
  assert.deepEqual(og, { 'og:title': 'Real "title"', 'og:type': 'website', 'og:description': 'A page about \u263a things' });
  assert.deepEqual(parseOpenGraph('<title>Only <b>a</b> title</title>'), { 'og:title': 'Only a title' });
  assert.deepEqual(parseOpenGraph('<meta property="og:title" content="unterminated'), {});
  assert.deepEqual(parseOpenGraph(''), {});
});

test('the connection goes to the checked address, not a fresh DNS answer', async () => {
  const http = await import('node:http');
  let hostHeader: string | undefined;
  const server = http.createServer((req, res) => {
    hostHeader = req.headers.host;
    res.end('pinned');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  try {
    // rebind.invalid never resolves in real DNS: only the pinned lookup can reach the server.
    const res = await safeFetch(`http://rebind.invalid:${port}/x`, {
      ...ipPolicy(DEFAULT_URL_PREVIEW_IP_BLOCKLIST, '127.0.0.1/32'),
      maxBytes: 100,
      timeoutMs: 2000,
      resolve: async () => [{ address: '127.0.0.1', family: 4 }],
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'pinned');
    assert.equal(hostHeader, `rebind.invalid:${port}`);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
