import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MatrixError } from '../../src/server/errors.js';
import { loginCandidates, normaliseUsername, parseIdentifier, randomDeviceId, randomLocalpart } from '../../src/accounts/usernames.js';
import { isValidLocalpart } from '../../src/core/identifiers.js';

function errcodeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof MatrixError ? e.errcode : 'not a MatrixError';
  }
  return undefined;
}

test('normaliseUsername accepts the user id grammar and folds case', () => {
  assert.equal(normaliseUsername('alice', 'example.org'), 'alice');
  assert.equal(normaliseUsername('Alice', 'example.org'), 'alice');
  assert.equal(normaliseUsername('  bob ', 'example.org'), 'bob');
  assert.equal(normaliseUsername('a.b_c=d-e/f+g', 'example.org'), 'a.b_c=d-e/f+g');
  assert.equal(normaliseUsername('123', 'example.org'), '123');
});

test('normaliseUsername rejects bad localparts with M_INVALID_USERNAME', () => {
  for (const bad of ['', '   ', 'al ice', 'alice:example.org', '@alice', 'ali$ce', 'é', 'a\u0000b', 'a#b']) {
    assert.equal(errcodeOf(() => normaliseUsername(bad, 'example.org')), 'M_INVALID_USERNAME', bad);
  }
  const long = 'a'.repeat(255);
  assert.equal(errcodeOf(() => normaliseUsername(long, 'example.org')), 'M_INVALID_USERNAME');
  const fits = 'a'.repeat(255 - '@:example.org'.length);
  assert.equal(normaliseUsername(fits, 'example.org'), fits);
});

test('random localparts and device ids are well-formed', () => {
  for (let i = 0; i < 50; i++) {
    assert.ok(isValidLocalpart(randomLocalpart()));
    assert.match(randomDeviceId(), /^[A-Z]{10}$/);
  }
});

test('loginCandidates maps full ids and localparts, case-insensitively', () => {
  assert.deepEqual(loginCandidates('alice', 'hs'), ['@alice:hs']);
  assert.deepEqual(loginCandidates('@alice:hs', 'hs'), ['@alice:hs']);
  assert.deepEqual(loginCandidates('Alice', 'hs'), ['@Alice:hs', '@alice:hs']);
  assert.deepEqual(loginCandidates('@ALICE:hs', 'hs'), ['@ALICE:hs', '@alice:hs']);
  assert.deepEqual(loginCandidates('@alice:other', 'hs'), []);
  assert.deepEqual(loginCandidates('@alice', 'hs'), []);
  assert.deepEqual(loginCandidates('', 'hs'), []);
});

test('parseIdentifier reads identifier objects and the legacy user field', () => {
  assert.deepEqual(parseIdentifier({ identifier: { type: 'm.id.user', user: 'bob' } }), { kind: 'user', user: 'bob' });
  assert.deepEqual(parseIdentifier({ user: '@bob:hs' }), { kind: 'user', user: '@bob:hs' });
  assert.deepEqual(parseIdentifier({ identifier: { type: 'm.id.thirdparty', medium: 'email', address: 'a@b' } }), { kind: 'thirdparty' });
  assert.deepEqual(parseIdentifier({ medium: 'email', address: 'a@b' }), { kind: 'thirdparty' });
  assert.deepEqual(parseIdentifier({}), { kind: 'none' });
  assert.equal(parseIdentifier({ identifier: { type: 'm.id.user' } }).kind, 'invalid');
  assert.equal(parseIdentifier({ identifier: { type: 'x.unknown' } }).kind, 'invalid');
  assert.equal(parseIdentifier({ identifier: 'bob' }).kind, 'invalid');
});
