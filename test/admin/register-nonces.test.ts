/** Shared-secret registration pieces: the nonce store and the MAC register_new_matrix_user computes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NonceStore, registrationMac } from '../../src/admin/register-routes.js';

test('a nonce works once', () => {
  const s = new NonceStore();
  const n = s.issue(1000);
  assert.equal(s.consume(n, 1001), true);
  assert.equal(s.consume(n, 1002), false);
  assert.equal(s.consume('never-issued', 1002), false);
});

test('nonces expire after the TTL and are swept', () => {
  const s = new NonceStore(60_000);
  const old = s.issue(0);
  assert.equal(s.consume(old, 60_000), false, 'expired at exactly the TTL');
  const a = s.issue(0);
  s.issue(70_000); // sweeps `a`
  assert.equal(s.size, 1);
  assert.equal(s.consume(a, 10), false);
});

test('the store is bounded: the oldest nonces give way', () => {
  const s = new NonceStore(60_000, 3);
  const first = s.issue(0);
  const second = s.issue(1);
  s.issue(2);
  s.issue(3);
  assert.equal(s.size, 3);
  assert.equal(s.consume(first, 4), false);
  assert.equal(s.consume(second, 4), true);
});

test('registrationMac matches a known HMAC-SHA1 and covers every field', () => {
  // echo -n 'abc\0bob\0pw\0notadmin' | openssl dgst -sha1 -hmac secret
  const base = registrationMac('secret', 'abc', 'bob', 'pw', false);
  assert.equal(base, '8ea9b87daa4e529ce4a0832f09be19bbe837a0af');
  assert.notEqual(registrationMac('secret', 'abc', 'bob', 'pw', true), base);
  assert.notEqual(registrationMac('secret', 'abd', 'bob', 'pw', false), base);
  assert.notEqual(registrationMac('secret', 'abc', 'bob', 'pw', false, 'bot'), base);
  assert.notEqual(registrationMac('other', 'abc', 'bob', 'pw', false), base);
  // NUL separators: moving a character between fields changes the MAC.
  assert.notEqual(registrationMac('secret', 'abc', 'bo', 'bpw', false), base);
});
