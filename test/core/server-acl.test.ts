import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverAclAllows } from '../../src/core/server-acl.js';

test('no ACL allows everyone', () => {
  assert.equal(serverAclAllows(undefined, 'evil.example'), true);
});

test('allow globs, deny wins, unmatched is denied', () => {
  const acl = { allow: ['*'], deny: ['*.evil.example', 'evil.example'] };
  assert.equal(serverAclAllows(acl, 'good.example'), true);
  assert.equal(serverAclAllows(acl, 'evil.example'), false);
  assert.equal(serverAclAllows(acl, 'sub.EVIL.example'), false);
  assert.equal(serverAclAllows({ allow: ['good.example'] }, 'other.example'), false);
  assert.equal(serverAclAllows({ allow: ['?.example'] }, 'a.example'), true);
  assert.equal(serverAclAllows({ allow: ['?.example'] }, 'ab.example'), false);
});

test('an empty or missing allow list denies everyone', () => {
  assert.equal(serverAclAllows({}, 'good.example'), false);
  assert.equal(serverAclAllows({ allow: [] }, 'good.example'), false);
});

test('ports are ignored and IP literals can be banned', () => {
  const acl = { allow: ['*'], allow_ip_literals: false };
  assert.equal(serverAclAllows(acl, 'good.example:8448'), true);
  assert.equal(serverAclAllows(acl, '1.2.3.4:8448'), false);
  assert.equal(serverAclAllows(acl, '[::1]:8448'), false);
  assert.equal(serverAclAllows({ allow: ['*'] }, '1.2.3.4'), true);
});

test('glob metacharacters other than * and ? are literal', () => {
  assert.equal(serverAclAllows({ allow: ['a.example'] }, 'aXexample'), false);
  assert.equal(serverAclAllows({ allow: ['(a|b).example'] }, 'a.example'), false);
});
