/**
 * FederationClient against real https servers on loopback, with
 * certificates from a throwaway CA: SNI, Host, X-Matrix signing, TLS
 * verification, policy, errors, timeouts and size limits.
 *
 *   node --import tsx --test test/federation/client.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { loadConfig, type Config } from '../../src/config/config.js';
import { generateSigningKey, publicKeyBase64 } from '../../src/core/signing-key.js';
import { parseXMatrix, verifyRequestSignature } from '../../src/core/x-matrix.js';
import { FederationClient, FederationRequestError, buildUri } from '../../src/federation/client.js';
import { ServerDiscovery } from '../../src/federation/discovery.js';
import type { BaseContext } from '../../src/server/context.js';
import { silentLogger } from '../../src/server/logging.js';
import { createTestCa, type TestCa, type TestCertificate } from '../helpers/tls.js';

interface Seen {
  method: string;
  url: string;
  host: string | undefined;
  sni: string | false | null;
  authorization: string | undefined;
  body: string;
}

/** An https server recording what arrives; `handler` answers (default 200 {"ok":true}). */
class TestHttpsServer {
  server: Server;
  seen: Seen[] = [];
  connections = 0;
  handler: (req: IncomingMessage, res: ServerResponse, body: string) => void = defaultHandler;

  constructor(cert: TestCertificate) {
    this.server = createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        this.seen.push({
          method: req.method ?? '',
          url: req.url ?? '',
          host: req.headers.host,
          sni: (req.socket as TLSSocket).servername,
          authorization: req.headers.authorization,
          body,
        });
        this.handler(req, res, body);
      });
    });
    this.server.on('secureConnection', () => this.connections++);
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const ORIGIN = 'origin.test';

function makeClient(overrides: Partial<Config>): { client: FederationClient; ctx: BaseContext; discovery: ServerDiscovery } {
  const config = loadConfig({ env: {}, overrides: { server_name: ORIGIN, log_level: 'silent', data_dir: '/nonexistent', ...overrides } });
  // The client and discovery only use config, log and signingKey; storage and the rest stay unset.
  const ctx = { config, log: silentLogger(), signingKey: generateSigningKey('t1') } as unknown as BaseContext;
  const discovery = new ServerDiscovery(ctx);
  return { client: new FederationClient(ctx, discovery), ctx, discovery };
}

describe('FederationClient', { timeout: 60_000 }, () => {
  let ca: TestCa;
  let otherCa: TestCa;
  let good: TestHttpsServer;
  let untrusted: TestHttpsServer;
  let wrongName: TestHttpsServer;
  let goodPort: number;
  let untrustedPort: number;
  let wrongNamePort: number;
  let fed: ReturnType<typeof makeClient>;
  const clients: FederationClient[] = [];

  const client = (overrides: Partial<Config> = {}) => {
    const c = makeClient({
      federation_hosts: `remote.test=127.0.0.1:${goodPort},untrusted.test=127.0.0.1:${untrustedPort},wrongname.test=127.0.0.1:${wrongNamePort}`,
      federation_ca_file: ca.certFile,
      ...overrides,
    });
    clients.push(c.client);
    return c;
  };

  before(async () => {
    ca = await createTestCa('Ranvier Test CA');
    otherCa = await createTestCa('Someone Else CA');
    good = new TestHttpsServer(await ca.issue(['remote.test']));
    untrusted = new TestHttpsServer(await otherCa.issue(['untrusted.test']));
    wrongName = new TestHttpsServer(await ca.issue(['somebody-else.test']));
    goodPort = await good.listen();
    untrustedPort = await untrusted.listen();
    wrongNamePort = await wrongName.listen();
    fed = client();
  });

  after(async () => {
    for (const c of clients) await c.close();
    await Promise.all([good?.close(), untrusted?.close(), wrongName?.close()]);
    await ca?.cleanup();
    await otherCa?.cleanup();
  });

  test('a signed GET arrives with the server name as Host and SNI, and a valid X-Matrix header', async () => {
    good.seen = [];
    const res = await fed.client.request<{ ok: boolean }>('remote.test', {
      method: 'GET',
      path: '/_matrix/federation/v1/query/profile',
      query: { user_id: '@a:remote.test', field: ['displayname', 'avatar url'], skip: undefined },
    });
    assert.deepEqual(res, { ok: true });
    assert.equal(good.seen.length, 1);
    const seen = good.seen[0];
    assert.equal(seen.host, 'remote.test');
    assert.equal(seen.sni, 'remote.test');
    assert.equal(seen.url, '/_matrix/federation/v1/query/profile?user_id=%40a%3Aremote.test&field=displayname&field=avatar%20url');
    const auth = parseXMatrix(seen.authorization ?? '');
    assert.ok(auth, `X-Matrix header expected, got ${seen.authorization}`);
    assert.equal(auth.origin, ORIGIN);
    assert.equal(auth.destination, 'remote.test');
    assert.equal(auth.key, fed.ctx.signingKey.keyId);
    const pub = publicKeyBase64(fed.ctx.signingKey);
    assert.ok(verifyRequestSignature(auth, { method: 'GET', uri: seen.url, destination: 'remote.test' }, pub));
    // The check can fail: another URI does not verify.
    assert.ok(!verifyRequestSignature(auth, { method: 'GET', uri: '/_matrix/federation/v1/query/profile', destination: 'remote.test' }, pub));
  });

  test('a PUT carries its JSON body, and the signature covers it', async () => {
    good.seen = [];
    const content = { pdus: [], edus: [{ edu_type: 'm.typing', content: { typing: true } }] };
    await fed.client.request('remote.test', { method: 'PUT', path: '/_matrix/federation/v1/send/txn1', body: content });
    const seen = good.seen[0];
    assert.equal(seen.method, 'PUT');
    assert.deepEqual(JSON.parse(seen.body), content);
    const auth = parseXMatrix(seen.authorization ?? '')!;
    const pub = publicKeyBase64(fed.ctx.signingKey);
    assert.ok(verifyRequestSignature(auth, { method: 'PUT', uri: seen.url, destination: 'remote.test', content: JSON.parse(seen.body) }, pub));
    assert.ok(!verifyRequestSignature(auth, { method: 'PUT', uri: seen.url, destination: 'remote.test', content: { pdus: [] } }, pub));
  });

  test('signed: false sends no Authorization header', async () => {
    good.seen = [];
    await fed.client.request('remote.test', { method: 'GET', path: '/_matrix/key/v2/server', signed: false });
    assert.equal(good.seen[0].authorization, undefined);
  });

  test('an IP literal server name connects there, sends it as Host, and checks the IP in the certificate', async () => {
    good.seen = [];
    const name = `127.0.0.1:${goodPort}`;
    const { client: c } = client();
    await c.request(name, { method: 'GET', path: '/_matrix/federation/v1/version' });
    assert.equal(good.seen[0].host, name);
    // No SNI for IP addresses (RFC 6066).
    assert.equal(good.seen[0].sni, false);
    const auth = parseXMatrix(good.seen[0].authorization ?? '')!;
    assert.equal(auth.destination, name);
  });

  test('a certificate from an untrusted CA is refused', async () => {
    untrusted.seen = [];
    await assert.rejects(
      fed.client.request('untrusted.test', { method: 'GET', path: '/_matrix/federation/v1/version' }),
      (err: unknown) => err instanceof FederationRequestError && err.status === undefined && /certificate/i.test(err.message),
    );
    assert.equal(untrusted.seen.length, 0, 'no request may be sent over an unverified connection');
  });

  test('a trusted certificate for another name is refused', async () => {
    await assert.rejects(
      fed.client.request('wrongname.test', { method: 'GET', path: '/_matrix/federation/v1/version' }),
      (err: unknown) => err instanceof FederationRequestError && /altnames|certificate|host/i.test(err.message),
    );
    assert.equal(wrongName.seen.length, 0);
  });

  test('without the CA file the test CA is not trusted', async () => {
    const { client: c } = client({ federation_ca_file: '' });
    await assert.rejects(c.request('remote.test', { method: 'GET', path: '/x' }), FederationRequestError);
  });

  test('federation_verify_tls = false accepts any certificate', async () => {
    untrusted.seen = [];
    const { client: c } = client({ federation_verify_tls: false });
    await c.request('untrusted.test', { method: 'GET', path: '/_matrix/federation/v1/version' });
    assert.equal(untrusted.seen.length, 1);
  });

  test('a destination outside the allow list is refused before any I/O', async () => {
    const { client: c, discovery } = client({ federation_allow_list: 'elsewhere.test' });
    let resolved = 0;
    const orig = discovery.resolve.bind(discovery);
    discovery.resolve = (name: string) => {
      resolved++;
      return orig(name);
    };
    const before = good.connections;
    good.seen = [];
    await assert.rejects(c.request('remote.test', { method: 'GET', path: '/x' }), (err: unknown) => {
      return err instanceof FederationRequestError && err.destination === 'remote.test' && /not allowed/.test(err.message);
    });
    await assert.rejects(c.requestStream('remote.test', { method: 'GET', path: '/x' }), FederationRequestError);
    assert.equal(resolved, 0);
    assert.equal(good.connections, before);
    assert.equal(good.seen.length, 0);
  });

  test('federation_enabled = false refuses every other server', async () => {
    const { client: c } = client({ federation_enabled: false });
    await assert.rejects(c.request('remote.test', { method: 'GET', path: '/x' }), /not allowed/);
  });

  test('a 404 JSON error gives status and errcode', async () => {
    good.handler = (_req, res) => {
      res.statusCode = 404;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ errcode: 'M_NOT_FOUND', error: 'No such room' }));
    };
    try {
      await assert.rejects(fed.client.request('remote.test', { method: 'GET', path: '/_matrix/federation/v1/state/!r' }), (err: unknown) => {
        assert.ok(err instanceof FederationRequestError);
        assert.equal(err.status, 404);
        assert.equal(err.errcode, 'M_NOT_FOUND');
        assert.deepEqual(err.body, { errcode: 'M_NOT_FOUND', error: 'No such room' });
        assert.match(err.message, /No such room/);
        return true;
      });
      // A non-JSON error still carries the status.
      good.handler = (_req, res) => {
        res.statusCode = 502;
        res.end('<html>Bad gateway</html>');
      };
      await assert.rejects(fed.client.request('remote.test', { method: 'GET', path: '/x' }), (err: unknown) => {
        return err instanceof FederationRequestError && err.status === 502 && err.errcode === undefined;
      });
    } finally {
      good.handler = defaultHandler;
    }
  });

  test('a body that is not JSON is an error', async () => {
    good.handler = (_req, res) => res.end('not json {');
    try {
      await assert.rejects(fed.client.request('remote.test', { method: 'GET', path: '/x' }), (err: unknown) => {
        return err instanceof FederationRequestError && err.status === 200 && /not valid JSON/.test(err.message);
      });
    } finally {
      good.handler = defaultHandler;
    }
  });

  test('a response over maxBytes is refused, with and without Content-Length', async () => {
    const big = JSON.stringify({ data: 'x'.repeat(5000) });
    good.handler = (_req, res) => res.end(big);
    try {
      await assert.rejects(fed.client.request('remote.test', { method: 'GET', path: '/x', maxBytes: 1000 }), /exceeds the 1000-byte limit/);
      good.handler = (_req, res) => {
        // Chunked: the size is only known while reading.
        res.write(big.slice(0, 2500));
        res.end(big.slice(2500));
      };
      await assert.rejects(fed.client.request('remote.test', { method: 'GET', path: '/x', maxBytes: 1000 }), /exceeds the 1000-byte limit/);
      // Within the limit it is fine.
      const ok = await fed.client.request<{ data: string }>('remote.test', { method: 'GET', path: '/x', maxBytes: 10_000 });
      assert.equal(ok.data.length, 5000);
    } finally {
      good.handler = defaultHandler;
    }
  });

  test('a server that does not answer times out', async () => {
    good.handler = () => {
      /* never answer */
    };
    try {
      const started = Date.now();
      await assert.rejects(fed.client.request('remote.test', { method: 'GET', path: '/slow', timeoutMs: 300 }), (err: unknown) => {
        return err instanceof FederationRequestError && /timed out/.test(err.message);
      });
      assert.ok(Date.now() - started < 5000, 'timeout honoured');
    } finally {
      good.handler = defaultHandler;
    }
  });

  test('the deadline covers discovery too', async () => {
    const { client: c, discovery } = client();
    discovery.resolve = () => new Promise(() => {});
    await assert.rejects(c.request('remote.test', { method: 'GET', path: '/x', timeoutMs: 200 }), (err: unknown) => {
      return err instanceof FederationRequestError && /timed out after 200 ms/.test(err.message);
    });
  });

  test('a body that stalls half-way times out too', async () => {
    good.handler = (_req, res) => {
      res.setHeader('content-length', '100');
      res.write('{"partial":');
    };
    try {
      await assert.rejects(fed.client.request('remote.test', { method: 'GET', path: '/stall', timeoutMs: 300 }), /timed out/);
    } finally {
      good.handler = defaultHandler;
    }
  });

  test('requestStream hands back status, headers and the body as a stream', async () => {
    const payload = Buffer.alloc(200_000, 7);
    good.handler = (_req, res) => {
      res.setHeader('content-type', 'image/png');
      res.setHeader('content-disposition', 'inline; filename="a.png"');
      res.end(payload);
    };
    try {
      const res = await fed.client.requestStream('remote.test', { method: 'GET', path: '/_matrix/federation/v1/media/download/abc' });
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'image/png');
      assert.equal(res.headers['content-disposition'], 'inline; filename="a.png"');
      const chunks: Buffer[] = [];
      for await (const c of res.body) chunks.push(c as Buffer);
      assert.ok(Buffer.concat(chunks).equals(payload));

      // maxBytes applies to streams when given.
      await assert.rejects(fed.client.requestStream('remote.test', { method: 'GET', path: '/m', maxBytes: 1000 }), /exceeds/);
      good.handler = (_req, res) => {
        res.write(payload.subarray(0, 100_000));
        res.end(payload.subarray(100_000));
      };
      const limited = await fed.client.requestStream('remote.test', { method: 'GET', path: '/m', maxBytes: 1000 });
      await assert.rejects(async () => {
        for await (const c of limited.body) void c;
      }, /exceeds/);

      // A caller that stops reading early just destroys the stream: no error surfaces anywhere
      // (an uncaught one would fail this test file).
      const early = await fed.client.requestStream('remote.test', { method: 'GET', path: '/m' });
      early.body.once('data', () => early.body.destroy());
      await new Promise((resolve) => early.body.once('close', resolve));

      // A body that stalls errors after the idle timeout.
      good.handler = (_req, res) => {
        res.setHeader('content-length', '1000');
        res.write('abc');
      };
      const stalled = await fed.client.requestStream('remote.test', { method: 'GET', path: '/m', timeoutMs: 2000 });
      await assert.rejects(async () => {
        for await (const c of stalled.body) void c;
      }, (err: unknown) => err instanceof FederationRequestError && /timed out/.test(err.message));

      // Non-2xx throws like request().
      good.handler = (_req, res) => {
        res.statusCode = 404;
        res.end(JSON.stringify({ errcode: 'M_NOT_FOUND', error: 'gone' }));
      };
      await assert.rejects(fed.client.requestStream('remote.test', { method: 'GET', path: '/m' }), (err: unknown) => {
        return err instanceof FederationRequestError && err.status === 404 && err.errcode === 'M_NOT_FOUND';
      });
    } finally {
      good.handler = defaultHandler;
    }
  });

  test('an unresolvable or invalid destination is a FederationRequestError', async () => {
    await assert.rejects(fed.client.request('not a server name', { method: 'GET', path: '/x' }), (err: unknown) => {
      return err instanceof FederationRequestError && /cannot resolve/.test(err.message);
    });
  });
});

function defaultHandler(_req: IncomingMessage, res: ServerResponse): void {
  res.setHeader('content-type', 'application/json');
  res.end('{"ok":true}');
}

test('buildUri encodes the query as sent on the wire', () => {
  assert.equal(buildUri('/p'), '/p');
  assert.equal(buildUri('/p', { a: 'x y', b: ['1', '2'], c: undefined }), '/p?a=x%20y&b=1&b=2');
  assert.equal(buildUri('/p?v=1', { a: '&' }), '/p?v=1&a=%26');
});
