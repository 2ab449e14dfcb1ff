import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../src/config/config.js';
import { generateSigningKey, publicKeyBase64, type SigningKey } from '../../src/core/signing-key.js';
import { signRequest } from '../../src/core/x-matrix.js';
import { withFederationAuth } from '../../src/federation/auth.js';
import type { ServerKeys } from '../../src/federation/keys.js';
import { buildApp } from '../../src/server/app.js';
import type { Context } from '../../src/server/services.js';
import { withContext } from './helpers.js';

const remoteKey = generateSigningKey();
const ECHO = '/_matrix/federation/v1/test_echo';

/**
 * A server whose key source knows only remote.test's `remoteKey`, with one
 * authenticated test route that echoes the origin and body.
 */
async function withApp(overrides: Partial<Config>, fn: (app: FastifyInstance, ctx: Context) => Promise<void>): Promise<void> {
  await withContext(overrides, async (ctx) => {
    const lookups: string[] = [];
    const fakeKeys: Pick<ServerKeys, 'getVerifyKey'> = {
      async getVerifyKey(serverName, keyId) {
        lookups.push(`${serverName} ${keyId}`);
        return serverName === 'remote.test' && keyId === remoteKey.keyId ? publicKeyBase64(remoteKey) : undefined;
      },
    };
    // The service's key source is swapped for the fake; readonly is only a compile-time guard.
    Object.defineProperty(ctx.federation, 'keys', { value: fakeKeys });
    const app = await buildApp(ctx);
    const handler = withFederationAuth(ctx, async (req, _reply, origin) => ({ origin, body: req.body ?? null }));
    app.get(ECHO, handler);
    app.put(`${ECHO}/:id`, handler);
    await app.ready();
    try {
      await fn(app, ctx);
    } finally {
      await app.close();
    }
  });
}

function authHeader(key: SigningKey, opts: { method: string; uri: string; origin?: string; destination?: string; content?: unknown }): string {
  return signRequest(key, { origin: 'remote.test', destination: 'us.test', ...opts });
}

test('a correctly signed request passes, with query string and body', async () => {
  await withApp({}, async (app) => {
    const uri = `${ECHO}/txn1?a=1&b=%20x`;
    const content = { pdus: [], edus: [{ edu_type: 'm.typing' }] };
    const res = await app.inject({
      method: 'PUT',
      url: uri,
      headers: { authorization: authHeader(remoteKey, { method: 'PUT', uri, content }), 'content-type': 'application/json' },
      payload: JSON.stringify(content),
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), { origin: 'remote.test', body: content });

    const get = await app.inject({ method: 'GET', url: ECHO, headers: { authorization: authHeader(remoteKey, { method: 'GET', uri: ECHO }) } });
    assert.equal(get.statusCode, 200, get.body);
    assert.equal(get.json().origin, 'remote.test');
  });
});

test('a header without destination (older servers) passes', async () => {
  await withApp({}, async (app) => {
    const header = authHeader(remoteKey, { method: 'GET', uri: ECHO }).replace(',destination=us.test', '');
    assert.doesNotMatch(header, /destination/);
    const res = await app.inject({ method: 'GET', url: ECHO, headers: { authorization: header } });
    assert.equal(res.statusCode, 200, res.body);
  });
});

async function expectError(app: FastifyInstance, opts: { method: 'GET' | 'PUT'; url: string; headers?: Record<string, string>; payload?: string }, status: number, errcode: string) {
  const res = await app.inject(opts);
  assert.equal(res.statusCode, status, res.body);
  assert.equal(res.json().errcode, errcode);
}

test('rejections: each with the right status and errcode', async () => {
  await withApp({}, async (app) => {
    const uri = `${ECHO}/txn1`;
    const content = { pdus: [] };
    const put = (authorization: string | undefined, payload = content) => ({
      method: 'PUT' as const,
      url: uri,
      headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
      payload: JSON.stringify(payload),
    });
    await expectError(app, put(undefined), 401, 'M_UNAUTHORIZED');
    await expectError(app, put('Bearer abc'), 401, 'M_UNAUTHORIZED');
    await expectError(app, put('X-Matrix origin=remote.test,key="ed25519:x"'), 401, 'M_UNAUTHORIZED');
    // Signed for another destination.
    await expectError(app, put(authHeader(remoteKey, { method: 'PUT', uri, content, destination: 'elsewhere.test' })), 401, 'M_UNAUTHORIZED');
    // Body changed after signing.
    await expectError(app, put(authHeader(remoteKey, { method: 'PUT', uri, content }), { pdus: [{}] } as typeof content), 401, 'M_UNAUTHORIZED');
    // URI changed after signing (the query string counts).
    const sigForPlain = authHeader(remoteKey, { method: 'PUT', uri, content });
    await expectError(app, { ...put(sigForPlain), url: `${uri}?x=1` }, 401, 'M_UNAUTHORIZED');
    // A key the origin does not publish.
    const stranger = generateSigningKey();
    await expectError(app, put(authHeader(stranger, { method: 'PUT', uri, content })), 401, 'M_UNAUTHORIZED');
    // A malformed origin never reaches key lookup.
    await expectError(app, put(authHeader(remoteKey, { method: 'PUT', uri, content, origin: 'bad/origin' })), 401, 'M_UNAUTHORIZED');
    // Signed by remote.test's key but claiming another origin.
    await expectError(app, put(authHeader(remoteKey, { method: 'PUT', uri, content, origin: 'other.test' })), 401, 'M_UNAUTHORIZED');
  });
});

test('several X-Matrix headers: any valid one suffices', async () => {
  await withApp({}, async (app) => {
    const bad = authHeader(generateSigningKey(), { method: 'GET', uri: ECHO });
    const good = authHeader(remoteKey, { method: 'GET', uri: ECHO });
    // Node keeps only the first duplicated Authorization header in req.headers; auth reads the raw list.
    const res = await app.inject({ method: 'GET', url: ECHO, headers: { authorization: [bad, good] as unknown as string } });
    assert.equal(res.statusCode, 200, res.body);
    const onlyBad = await app.inject({ method: 'GET', url: ECHO, headers: { authorization: [bad, bad] as unknown as string } });
    assert.equal(onlyBad.statusCode, 401);
  });
});

test('an origin outside the allow list: 403 M_FORBIDDEN', async () => {
  await withApp({ federation_allow_list: 'friend.test' }, async (app) => {
    await expectError(app, { method: 'GET', url: ECHO, headers: { authorization: authHeader(remoteKey, { method: 'GET', uri: ECHO }) } }, 403, 'M_FORBIDDEN');
  });
});

test('federation disabled: 403 M_FORBIDDEN on federation routes, even /version and validly signed ones', async () => {
  await withApp({ federation_enabled: false }, async (app) => {
    await expectError(app, { method: 'GET', url: ECHO, headers: { authorization: authHeader(remoteKey, { method: 'GET', uri: ECHO }) } }, 403, 'M_FORBIDDEN');
    await expectError(app, { method: 'GET', url: '/_matrix/federation/v1/version' }, 403, 'M_FORBIDDEN');
  });
});

test('/version needs no auth and names Ranvier with the package version', async () => {
  await withApp({}, async (app) => {
    const res = await app.inject({ method: 'GET', url: '/_matrix/federation/v1/version' });
    assert.equal(res.statusCode, 200);
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.deepEqual(res.json(), { server: { name: 'Ranvier', version: pkg.version } });
  });
});
