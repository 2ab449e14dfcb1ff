import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verifyJsonSignature } from '../../src/core/json-signing.js';
import { ServerKeys } from '../../src/federation/keys.js';
import type { Context } from '../../src/server/services.js';
import { FakeClient, generateSigningKey, keyResponse, publicKeyBase64, signJson, withContext } from './helpers.js';

const HOUR = 3600_000;
const DAY = 24 * HOUR;
const T0 = 1_700_000_000_000;

function setup(ctx: Context) {
  const clock = { t: T0 };
  const client = new FakeClient();
  const keys = new ServerKeys(ctx, client, { now: () => clock.t });
  return { clock, client, keys };
}

test('own key: published, self-signed, valid for about 7 days, answered without I/O', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client, clock } = setup(ctx);
    const own = keys.ownKeyResponse();
    assert.equal(own.server_name, 'us.test');
    assert.deepEqual(own.old_verify_keys, {});
    const pub = own.verify_keys[ctx.signingKey.keyId].key;
    assert.equal(pub, publicKeyBase64(ctx.signingKey));
    assert.ok(verifyJsonSignature(own, 'us.test', ctx.signingKey.keyId, pub));
    assert.ok(own.valid_until_ts >= T0 + 7 * DAY && own.valid_until_ts <= T0 + 7 * DAY + HOUR);
    assert.equal(own.valid_until_ts % HOUR, 0);
    clock.t += 1000;
    assert.equal(keys.ownKeyResponse(), own, 'cached within the hour');
    clock.t += 2 * HOUR;
    assert.notEqual(keys.ownKeyResponse().valid_until_ts, own.valid_until_ts);
    assert.equal(await keys.getVerifyKey('us.test', ctx.signingKey.keyId), pub);
    assert.equal(await keys.getVerifyKey('us.test', 'ed25519:other'), undefined);
    assert.equal(client.calls.length, 0);
  });
});

test('direct fetch, then cache hits (memory-free: also from a new instance)', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client, clock } = setup(ctx);
    const remote = generateSigningKey();
    client.handlers.set('remote.test', () => keyResponse('remote.test', remote, T0 + DAY));
    assert.equal(await keys.getVerifyKey('remote.test', remote.keyId), publicKeyBase64(remote));
    assert.equal(client.calls.length, 1);
    assert.deepEqual(
      { method: client.calls[0].req.method, path: client.calls[0].req.path, signed: client.calls[0].req.signed },
      { method: 'GET', path: '/_matrix/key/v2/server', signed: false },
    );
    assert.equal(await keys.getVerifyKey('remote.test', remote.keyId), publicKeyBase64(remote));
    const again = new ServerKeys(ctx, client, { now: () => clock.t });
    assert.equal(await again.getVerifyKey('remote.test', remote.keyId), publicKeyBase64(remote));
    assert.equal(client.calls.length, 1, 'served from the database cache');
  });
});

test('concurrent lookups for one server share one fetch', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client } = setup(ctx);
    const remote = generateSigningKey();
    client.handlers.set('remote.test', () => keyResponse('remote.test', remote, T0 + DAY));
    const got = await Promise.all(Array.from({ length: 5 }, () => keys.getVerifyKey('remote.test', remote.keyId)));
    assert.deepEqual(got, Array(5).fill(publicKeyBase64(remote)));
    assert.equal(client.calls.length, 1);
  });
});

test('an expired key is refetched; it still verifies what was made while it was valid', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client, clock } = setup(ctx);
    const remote = generateSigningKey();
    client.handlers.set('remote.test', () => keyResponse('remote.test', remote, clock.t + HOUR));
    assert.ok(await keys.getVerifyKey('remote.test', remote.keyId));
    clock.t += 2 * HOUR;
    // An object made at T0 is judged by the key as it was then: no fetch.
    assert.ok(await keys.getVerifyKey('remote.test', remote.keyId, T0 + 1000));
    assert.equal(client.calls.length, 1);
    assert.ok(await keys.getVerifyKey('remote.test', remote.keyId));
    assert.equal(client.calls.length, 2, 'expired: fetched again');

    // Once the server has rotated the key away, it is unknown for new objects.
    client.handlers.set('remote.test', () => keyResponse('remote.test', generateSigningKey(), clock.t + HOUR));
    clock.t += 2 * HOUR;
    assert.equal(await keys.getVerifyKey('remote.test', remote.keyId), undefined);
    assert.equal(client.calls.length, 3);
  });
});

test('valid_until_ts more than 7 days ahead is capped at 7 days', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client } = setup(ctx);
    const remote = generateSigningKey();
    client.handlers.set('remote.test', () => keyResponse('remote.test', remote, T0 + 365 * DAY));
    assert.ok(await keys.getVerifyKey('remote.test', remote.keyId, T0 + 6 * DAY));
    assert.equal(await keys.getVerifyKey('remote.test', remote.keyId, T0 + 8 * DAY), undefined);
  });
});

test('old_verify_keys verify only objects made before they expired', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client } = setup(ctx);
    const current = generateSigningKey();
    const old = generateSigningKey();
    client.handlers.set('remote.test', () =>
      keyResponse('remote.test', current, T0 + DAY, { old: { [old.keyId]: { key: publicKeyBase64(old), expired_ts: T0 - HOUR } } }),
    );
    assert.equal(await keys.getVerifyKey('remote.test', old.keyId, T0 - 2 * HOUR), publicKeyBase64(old));
    assert.equal(await keys.getVerifyKey('remote.test', old.keyId, T0), undefined);
  });
});

test('a response with a bad self-signature is rejected', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client } = setup(ctx);
    const remote = generateSigningKey();
    // Tampered after signing.
    client.handlers.set('remote.test', () => ({ ...keyResponse('remote.test', remote, T0 + DAY), valid_until_ts: T0 + 2 * DAY }));
    assert.equal(await keys.getVerifyKey('remote.test', remote.keyId), undefined);
  });
  await withContext({}, async (ctx) => {
    const { keys, client } = setup(ctx);
    const remote = generateSigningKey();
    const intruder = generateSigningKey();
    // A second listed key that did not sign: the whole response is refused.
    client.handlers.set('remote.test', () =>
      signJson(
        {
          server_name: 'remote.test',
          verify_keys: { [remote.keyId]: { key: publicKeyBase64(remote) }, [intruder.keyId]: { key: publicKeyBase64(intruder) } },
          old_verify_keys: {},
          valid_until_ts: T0 + DAY,
        },
        'remote.test',
        remote,
      ),
    );
    assert.equal(await keys.getVerifyKey('remote.test', remote.keyId), undefined);
    assert.equal(await keys.getVerifyKey('remote.test', intruder.keyId), undefined);
  });
});

test('a response for another server_name is rejected', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client } = setup(ctx);
    const other = generateSigningKey();
    client.handlers.set('remote.test', () => keyResponse('other.test', other, T0 + DAY));
    assert.equal(await keys.getVerifyKey('remote.test', other.keyId), undefined);
    assert.equal(await keys.getVerifyKey('other.test', other.keyId), undefined, 'and not stored for other.test either');
    assert.equal(client.callsTo('remote.test'), 1);
  });
});

test('failed fetches are remembered for a minute', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client, clock } = setup(ctx);
    assert.equal(await keys.getVerifyKey('dead.test', 'ed25519:a'), undefined);
    assert.equal(await keys.getVerifyKey('dead.test', 'ed25519:b'), undefined);
    assert.equal(client.callsTo('dead.test'), 1);
    clock.t += 61_000;
    assert.equal(await keys.getVerifyKey('dead.test', 'ed25519:a'), undefined);
    assert.equal(client.callsTo('dead.test'), 2);
    // Back up: found once the memo has run out.
    const k = generateSigningKey();
    client.handlers.set('dead.test', () => keyResponse('dead.test', k, clock.t + DAY));
    assert.equal(await keys.getVerifyKey('dead.test', k.keyId), undefined);
    clock.t += 61_000;
    assert.equal(await keys.getVerifyKey('dead.test', k.keyId), publicKeyBase64(k));
  });
});

test('unknown key ids do not make us refetch on every request', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client } = setup(ctx);
    const remote = generateSigningKey();
    client.handlers.set('remote.test', () => keyResponse('remote.test', remote, T0 + DAY));
    assert.ok(await keys.getVerifyKey('remote.test', remote.keyId));
    for (let i = 0; i < 5; i++) assert.equal(await keys.getVerifyKey('remote.test', `ed25519:made_up_${i}`), undefined);
    assert.equal(client.calls.length, 1);
  });
});

test('malformed server names and non-ed25519 key ids are never fetched', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client } = setup(ctx);
    assert.equal(await keys.getVerifyKey('evil/../path', 'ed25519:a'), undefined);
    assert.equal(await keys.getVerifyKey('', 'ed25519:a'), undefined);
    assert.equal(await keys.getVerifyKey('remote.test', 'rsa:a'), undefined);
    assert.equal(client.calls.length, 0);
  });
});

test('servers refused by the allow list are never fetched', async () => {
  await withContext({ federation_allow_list: 'friend.test' }, async (ctx) => {
    const { keys, client } = setup(ctx);
    const remote = generateSigningKey();
    client.handlers.set('remote.test', () => keyResponse('remote.test', remote, T0 + DAY));
    assert.equal(await keys.getVerifyKey('remote.test', remote.keyId), undefined);
    assert.equal(client.calls.length, 0);
  });
});

/** A notary answer for `origin`'s response, optionally signed by the notary with `notaryKey`. */
function notaryAnswer(originResp: Record<string, unknown>, notary: string, notaryKey?: ReturnType<typeof generateSigningKey>) {
  return { server_keys: [notaryKey ? signJson(originResp, notary, notaryKey) : originResp] };
}

test('notary fallback: accepted only when signed by the origin and the notary', async () => {
  const remote = generateSigningKey();
  const notaryKey = generateSigningKey();
  const cases: Array<{ name: string; answer: () => unknown; accepted: boolean }> = [
    { name: 'double-signed', answer: () => notaryAnswer(keyResponse('remote.test', remote, T0 + DAY), 'notary.test', notaryKey), accepted: true },
    { name: 'origin only', answer: () => notaryAnswer(keyResponse('remote.test', remote, T0 + DAY), 'notary.test'), accepted: false },
    {
      name: 'notary signature by a key the notary does not publish',
      answer: () => notaryAnswer(keyResponse('remote.test', remote, T0 + DAY), 'notary.test', generateSigningKey(notaryKey.version)),
      accepted: false,
    },
    {
      // The notary swapped in a key of its choosing that the origin never signed with.
      name: 'notary only (origin signature does not match)',
      answer: () => {
        const r = keyResponse('remote.test', remote, T0 + DAY);
        const swapped = { ...r, verify_keys: { [remote.keyId]: { key: publicKeyBase64(generateSigningKey()) } } };
        return notaryAnswer(swapped, 'notary.test', notaryKey);
      },
      accepted: false,
    },
  ];
  for (const c of cases) {
    await withContext({ trusted_key_servers: 'notary.test' }, async (ctx) => {
      const { keys, client } = setup(ctx);
      client.handlers.set('notary.test', (req) => {
        if (req.method === 'GET' && req.path === '/_matrix/key/v2/server') return keyResponse('notary.test', notaryKey, T0 + DAY);
        assert.equal(req.method, 'POST');
        assert.equal(req.path, '/_matrix/key/v2/query');
        assert.deepEqual(req.body, { server_keys: { 'remote.test': {} } });
        return c.answer();
      });
      const got = await keys.getVerifyKey('remote.test', remote.keyId);
      assert.equal(got, c.accepted ? publicKeyBase64(remote) : undefined, c.name);
      assert.equal(client.callsTo('remote.test'), 1, 'asked the server itself first');
      const fetchedNotaryKey = client.calls.some((cl) => cl.destination === 'notary.test' && cl.req.path === '/_matrix/key/v2/server');
      // The notary's key is needed (and then fetched from the notary itself) only once the origin's signatures hold.
      assert.equal(fetchedNotaryKey, c.name === 'double-signed' || c.name.startsWith('notary signature'), `${c.name}: notary key fetched directly`);
    });
  }
});

test('notary is not used while the server answers', async () => {
  await withContext({ trusted_key_servers: 'notary.test' }, async (ctx) => {
    const { keys, client } = setup(ctx);
    const remote = generateSigningKey();
    client.handlers.set('remote.test', () => keyResponse('remote.test', remote, T0 + DAY));
    assert.ok(await keys.getVerifyKey('remote.test', remote.keyId));
    assert.equal(client.callsTo('notary.test'), 0);
  });
});

test('verifySignedJson: any valid signature by the server under a known key', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client } = setup(ctx);
    const remote = generateSigningKey();
    client.handlers.set('remote.test', () => keyResponse('remote.test', remote, T0 + DAY));
    const pdu = signJson({ type: 'm.room.message', content: { body: 'hi' } }, 'remote.test', remote);
    assert.equal(await keys.verifySignedJson(pdu, 'remote.test'), true);
    assert.equal(await keys.verifySignedJson({ ...pdu, content: { body: 'changed' } }, 'remote.test'), false);
    assert.equal(await keys.verifySignedJson(pdu, 'elsewhere.test'), false);
    assert.equal(await keys.verifySignedJson({ type: 'x' }, 'remote.test'), false);
    // A bogus extra signature does not spoil a good one.
    const extra = { ...pdu, signatures: { 'remote.test': { ...pdu.signatures['remote.test'], 'ed25519:bogus': 'AAAA' } } };
    assert.equal(await keys.verifySignedJson(extra, 'remote.test'), true);
    assert.equal(await keys.verifySignedJson(pdu, 'remote.test', T0 + 2 * DAY), false, 'key not valid that late');
    // Our own signatures need no fetch.
    const mine = signJson({ a: 1 }, 'us.test', ctx.signingKey);
    assert.equal(await keys.verifySignedJson(mine, 'us.test'), true);
  });
});

test('notaryKeys: the stored response, still signed by the origin, plus our signature; refreshed when too old', async () => {
  await withContext({}, async (ctx) => {
    const { keys, client, clock } = setup(ctx);
    const remote = generateSigningKey();
    client.handlers.set('remote.test', () => keyResponse('remote.test', remote, clock.t + DAY));
    const first = await keys.notaryKeys('remote.test', [], undefined);
    assert.ok(first);
    assert.ok(verifyJsonSignature(first, 'remote.test', remote.keyId, publicKeyBase64(remote)));
    assert.ok(verifyJsonSignature(first, 'us.test', ctx.signingKey.keyId, publicKeyBase64(ctx.signingKey)));
    assert.equal(client.calls.length, 1);
    await keys.notaryKeys('remote.test', [remote.keyId], T0 + HOUR);
    assert.equal(client.calls.length, 1, 'cached answer good enough');
    clock.t += 60_000;
    const later = await keys.notaryKeys('remote.test', [], T0 + 2 * DAY);
    assert.equal(client.calls.length, 2, 'refetched for a later minimum_valid_until_ts');
    assert.equal(later?.valid_until_ts, clock.t + DAY);
    assert.equal(await keys.notaryKeys('nobody.test', [], undefined), undefined);
    const ours = await keys.notaryKeys('us.test', [], undefined);
    assert.equal(ours?.server_name, 'us.test');
  });
});
