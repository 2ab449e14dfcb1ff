import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSigningKey, publicKeyBase64, signingKeyFromSeed } from '../../src/core/signing-key.js';
import { parseXMatrix, requestSigningObject, signRequest, verifyRequestSignature } from '../../src/core/x-matrix.js';

test('parses the spec example header', () => {
  const h = 'X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."';
  assert.deepEqual(parseXMatrix(h), {
    origin: 'origin.hs.example.com',
    destination: 'destination.hs.example.com',
    key: 'ed25519:key1',
    sig: 'ABCDEF...',
  });
});

test('unquoted values, case-insensitive names and scheme, spaces and tabs around commas', () => {
  assert.deepEqual(parseXMatrix('x-matrix   ORIGIN=a.example:8448 ,\tKey="ed25519:k" ,  Sig=c2lnbmF0dXJl,Destination=b.example'), {
    origin: 'a.example:8448',
    destination: 'b.example',
    key: 'ed25519:k',
    sig: 'c2lnbmF0dXJl',
  });
});

test('quoted values with backslash escapes; unknown parameters ignored', () => {
  const parsed = parseXMatrix('X-Matrix origin="we\\"ird\\\\name",key="ed25519:k",sig="s",extra="x, y"');
  assert.deepEqual(parsed, { origin: 'we"ird\\name', key: 'ed25519:k', sig: 's' });
});

test('destination is optional (servers before v1.3)', () => {
  const parsed = parseXMatrix('X-Matrix origin=a.example,key="ed25519:k",sig="s"');
  assert.ok(parsed);
  assert.equal(parsed.destination, undefined);
});

test('missing origin, key or sig, another scheme, or garbage: undefined', () => {
  for (const h of [
    'X-Matrix key="ed25519:k",sig="s"',
    'X-Matrix origin=a,sig="s"',
    'X-Matrix origin=a,key="ed25519:k"',
    'X-Matrix origin="",key="ed25519:k",sig="s"',
    'Bearer abc',
    'X-Matrix',
    'X-Matrixorigin=a,key=k,sig=s',
    'X-Matrix origin="unterminated,key="ed25519:k",sig="s',
    'X-Matrix origin=a key=k sig=s',
    '',
  ]) {
    assert.equal(parseXMatrix(h), undefined, h);
  }
});

test('a repeated parameter keeps its first value', () => {
  assert.equal(parseXMatrix('X-Matrix origin=a,origin=b,key=k,sig=s')?.origin, 'a');
});

test('the signed object: method upper-cased, content only when present', () => {
  assert.deepEqual(requestSigningObject({ method: 'get', uri: '/x?y=1', origin: 'o', destination: 'd' }), {
    method: 'GET',
    uri: '/x?y=1',
    origin: 'o',
    destination: 'd',
  });
  assert.deepEqual(requestSigningObject({ method: 'PUT', uri: '/x', origin: 'o', destination: 'd', content: { a: 1 } }).content, { a: 1 });
});

const key = signingKeyFromSeed(Buffer.alloc(32, 7), 'key1');
const req = {
  method: 'PUT',
  uri: '/_matrix/federation/v1/send/123?foo=bar%20baz',
  origin: 'origin.hs.example.com',
  destination: 'destination.hs.example.com',
  content: { pdus: [], edus: [{ edu_type: 'm.typing', content: { typing: true } }] },
};

test('sign then verify round trip, through the header text', () => {
  const header = signRequest(key, req);
  assert.match(header, /^X-Matrix origin=origin\.hs\.example\.com,destination=destination\.hs\.example\.com,key="ed25519:key1",sig="[A-Za-z0-9+/]+"$/);
  const auth = parseXMatrix(header);
  assert.ok(auth);
  assert.equal(auth.origin, req.origin);
  assert.equal(auth.key, 'ed25519:key1');
  assert.equal(verifyRequestSignature(auth, req, publicKeyBase64(key)), true);
  // Without a body.
  const get = { method: 'GET', uri: '/_matrix/federation/v1/version', origin: 'o.example', destination: 'd.example' };
  assert.equal(verifyRequestSignature(parseXMatrix(signRequest(key, get))!, get, publicKeyBase64(key)), true);
});

test('tampered uri, method, content, destination, origin or key fail', () => {
  const auth = parseXMatrix(signRequest(key, req))!;
  const pub = publicKeyBase64(key);
  assert.equal(verifyRequestSignature(auth, { ...req, uri: '/_matrix/federation/v1/send/124?foo=bar%20baz' }, pub), false);
  assert.equal(verifyRequestSignature(auth, { ...req, uri: '/_matrix/federation/v1/send/123' }, pub), false, 'query string is signed');
  assert.equal(verifyRequestSignature(auth, { ...req, method: 'POST' }, pub), false);
  assert.equal(verifyRequestSignature(auth, { ...req, content: { pdus: [], edus: [] } }, pub), false);
  assert.equal(verifyRequestSignature(auth, { ...req, content: undefined }, pub), false);
  assert.equal(verifyRequestSignature(auth, { ...req, destination: 'evil.example' }, pub), false);
  assert.equal(verifyRequestSignature({ ...auth, origin: 'other.example' }, req, pub), false);
  assert.equal(verifyRequestSignature({ ...auth, sig: auth.sig.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) }, req, pub), false);
  assert.equal(verifyRequestSignature(auth, req, publicKeyBase64(generateSigningKey())), false);
  assert.equal(verifyRequestSignature({ ...auth, key: 'curve25519:key1' }, req, pub), false);
});

test('values that are not tokens are quoted and survive the round trip', () => {
  const odd = { method: 'GET', uri: '/x', origin: '[::1]:8448', destination: 'd.example' };
  const header = signRequest(key, odd);
  assert.match(header, /origin="\[::1\]:8448"/);
  const auth = parseXMatrix(header)!;
  assert.equal(auth.origin, '[::1]:8448');
  assert.equal(verifyRequestSignature(auth, odd, publicKeyBase64(key)), true);
});
