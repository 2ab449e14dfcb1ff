/** Cross-signing key checks (src/e2ee/cross-signing.ts): shapes, owners and signatures. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSigningKey, publicKeyBase64, type SigningKey } from '../../src/core/signing-key.js';
import { signJson } from '../../src/core/json-signing.js';
import { MatrixError } from '../../src/server/errors.js';
import { checkCrossSigningKey, sameJson, sameSignable, signedBy } from '../../src/e2ee/cross-signing.js';

const USER = '@alice:example.org';

function csKey(): { key: SigningKey; pub: string } {
  const k = generateSigningKey();
  const pub = publicKeyBase64(k);
  return { key: { ...k, keyId: `ed25519:${pub}` }, pub };
}

function obj(usage: string, pub: string, userId = USER) {
  return { user_id: userId, usage: [usage], keys: { [`ed25519:${pub}`]: pub } };
}

function errcode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof MatrixError) return err.errcode;
    throw err;
  }
  return undefined;
}

test('a well-formed key returns its public key', () => {
  const { pub } = csKey();
  assert.equal(checkCrossSigningKey(obj('master', pub), 'master', USER), pub);
});

test('rejects another owner, wrong usage, bad key ids and non-objects', () => {
  const { pub } = csKey();
  assert.equal(errcode(() => checkCrossSigningKey(obj('master', pub, '@bob:example.org'), 'master', USER)), 'M_INVALID_PARAM');
  assert.equal(errcode(() => checkCrossSigningKey(obj('self_signing', pub), 'master', USER)), 'M_INVALID_PARAM');
  assert.equal(errcode(() => checkCrossSigningKey({ ...obj('master', pub), keys: { 'ed25519:other': pub } }, 'master', USER)), 'M_INVALID_PARAM');
  assert.equal(errcode(() => checkCrossSigningKey({ ...obj('master', pub), keys: {} }, 'master', USER)), 'M_INVALID_PARAM');
  assert.equal(errcode(() => checkCrossSigningKey({ ...obj('master', pub), keys: { [`ed25519:${pub}`]: pub, 'ed25519:x': 'x' } }, 'master', USER)), 'M_INVALID_PARAM');
  assert.equal(errcode(() => checkCrossSigningKey('nope', 'master', USER)), 'M_BAD_JSON');
  assert.equal(errcode(() => checkCrossSigningKey({ ...obj('master', pub), keys: 3 }, 'master', USER)), 'M_BAD_JSON');
});

test('signedBy verifies the master key signature on a self-signing key', () => {
  const master = csKey();
  const ssk = csKey();
  const signed = signJson(obj('self_signing', ssk.pub), USER, master.key);
  assert.equal(signedBy(signed, USER, master.pub, master.pub), true);
  assert.equal(signedBy(obj('self_signing', ssk.pub), USER, master.pub, master.pub), false, 'unsigned');
  const other = csKey();
  const wrong = signJson(obj('self_signing', ssk.pub), USER, other.key);
  assert.equal(signedBy(wrong, USER, master.pub, master.pub), false, 'signed by another key');
  const tampered = { ...signed, usage: ['user_signing'] };
  assert.equal(signedBy(tampered, USER, master.pub, master.pub), false, 'tampered');
});

test('sameSignable ignores signatures and unsigned; sameJson does not', () => {
  const { key, pub } = csKey();
  const a = obj('master', pub);
  const b = signJson(a, USER, key);
  assert.equal(sameSignable(a, { ...b, unsigned: { x: 1 } }), true);
  assert.equal(sameJson(a, b), false);
  assert.equal(sameJson(b, JSON.parse(JSON.stringify(b))), true);
  assert.equal(sameSignable(a, obj('master', csKey().pub)), false);
});
