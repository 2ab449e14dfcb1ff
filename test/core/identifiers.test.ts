import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  getRoomVersion,
  isValidEventId,
  isValidHistoricalUserId,
  isValidLocalpart,
  isValidRoomAlias,
  isValidRoomId,
  isValidServerName,
  isValidUserId,
  parseUserId,
  serverNameOf,
} from '../../src/core/index.js';

describe('server names', () => {
  test('accepts the spec examples', () => {
    for (const s of ['matrix.org', 'matrix.org:8888', '1.2.3.4', '1.2.3.4:1234', '[1234:5678::abcd]', '[1234:5678::abcd]:5678', 'localhost', 'a-b.example']) {
      assert.ok(isValidServerName(s), s);
    }
  });
  test('rejects malformed names', () => {
    for (const s of ['', ':80', 'matrix.org:', 'matrix.org:123456', 'matrix.org:http', 'exa mple.org', 'ex_ample.org', '[1234:5678::abcd', '[zz::1]', 'matrix.org/path', 'x'.repeat(256)]) {
      assert.equal(isValidServerName(s), false, s);
    }
  });
});

describe('user ids', () => {
  test('current grammar: a-z 0-9 . _ = - / +', () => {
    assert.ok(isValidLocalpart('alice.b_c=d-e/f+g9'));
    for (const bad of ['', 'Alice', 'al ice', 'al:ice', 'ali*ce', 'é']) assert.equal(isValidLocalpart(bad), false, bad);
    assert.ok(isValidUserId('@alice:example.org'));
    assert.ok(isValidUserId('@a:[::1]:8448'));
    assert.equal(isValidUserId('@Alice:example.org'), false);
    assert.equal(isValidUserId('alice:example.org'), false);
    assert.equal(isValidUserId('@alice'), false);
    assert.equal(isValidUserId('@alice:bad_server'), false);
  });

  test('255-byte limit counts the sigil and the server name', () => {
    const server = 'example.org';
    const fits = `@${'a'.repeat(255 - 2 - server.length)}:${server}`;
    assert.equal(Buffer.byteLength(fits), 255);
    assert.ok(isValidUserId(fits));
    assert.equal(isValidUserId(`@a${fits.slice(1)}`), false);
  });

  test('historical ids are accepted leniently for federation', () => {
    assert.ok(isValidHistoricalUserId('@Alice Smith!:example.org'));
    assert.ok(isValidHistoricalUserId('@:example.org'));
    assert.equal(isValidHistoricalUserId('@a\u0000b:example.org'), false);
    assert.equal(isValidHistoricalUserId('@alice:not a server'), false);
  });

  test('parseUserId splits at the first colon', () => {
    assert.deepEqual(parseUserId('@alice:example.org:8448'), { localpart: 'alice', serverName: 'example.org:8448' });
    assert.deepEqual(parseUserId('@Bob:[::1]'), { localpart: 'Bob', serverName: '[::1]' });
    assert.equal(parseUserId('#alias:example.org'), null);
    assert.equal(parseUserId('@nocolon'), null);
  });
});

describe('room ids, aliases and event ids', () => {
  const v4 = getRoomVersion('4')!;
  const v1 = getRoomVersion('1')!;
  const v3 = getRoomVersion('3')!;
  const v12 = getRoomVersion('12')!;
  const hash = 'mauT12AzsoqxV7Abvy_ApA-HNPK1LcT4GbP70_AOPyQ';

  test('room ids have a domain before v12 and are hashes from v12', () => {
    assert.ok(isValidRoomId('!abc:example.org'));
    assert.ok(isValidRoomId(`!${hash}`));
    assert.ok(isValidRoomId('!abc:example.org', v4));
    assert.equal(isValidRoomId(`!${hash}`, v4), false);
    assert.ok(isValidRoomId(`!${hash}`, v12));
    assert.equal(isValidRoomId('!abc:example.org', v12), false);
    assert.equal(isValidRoomId('$abc:example.org'), false);
    assert.equal(isValidRoomId('!abc'), false);
  });

  test('aliases allow any localpart except colon and NUL', () => {
    assert.ok(isValidRoomAlias('#Some Room!:example.org'));
    assert.equal(isValidRoomAlias('#room'), false);
    assert.equal(isValidRoomAlias('#ro\u0000om:example.org'), false);
    assert.equal(isValidRoomAlias('!room:example.org'), false);
  });

  test('event id formats per room version', () => {
    assert.ok(isValidEventId('$abc:example.org', v1));
    assert.equal(isValidEventId(`$${hash}`, v1), false);
    assert.ok(isValidEventId('$RrGxF28UrHLmoASHndYb9Jb/1SFww2ptmtur9INS438', v3));
    assert.equal(isValidEventId('$RrGxF28UrHLmoASHndYb9Jb/1SFww2ptmtur9INS438', v4), false);
    assert.ok(isValidEventId(`$${hash}`, v4));
    assert.ok(isValidEventId('$anything'));
    assert.equal(isValidEventId('$'), false);
    assert.equal(isValidEventId(`$${'a'.repeat(255)}`), false);
  });

  test('serverNameOf returns what follows the first colon', () => {
    assert.equal(serverNameOf('@alice:example.org'), 'example.org');
    assert.equal(serverNameOf('!r:example.org:8448'), 'example.org:8448');
    assert.equal(serverNameOf(`$${hash}`), null);
    assert.equal(serverNameOf('@alice:'), null);
  });
});
