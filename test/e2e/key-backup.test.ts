/**
 * Server-side key backups over HTTP: versions, keys at the three levels,
 * etag/count semantics, the better-session rule and every error path; plus
 * encryption by default for new rooms (encryption_enabled_by_default_for_room_type).
 *
 *   RANVIER_TEST_DB=sqlite node --import tsx --test test/e2e/key-backup.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, registerUser, type TestServer } from './harness.js';
import { Api, enc } from './util.js';

const PASSWORD = 'hunter2 but longer';
const ALG = 'm.megolm_backup.v1.curve25519-aes-sha2';
const ROOM = '!room:localhost';
const ROOM2 = '!other:localhost';

function assertError(r: { status: number; body: any }, status: number, errcode: string, what: string) {
  assert.equal(r.status, status, `${what}: expected ${status} ${errcode}, got ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(r.body?.errcode, errcode, `${what}: errcode`);
  assert.equal(typeof r.body?.error, 'string', `${what}: error message is a string`);
}

const key = (is_verified: boolean, first_message_index: number, forwarded_count: number, tag = 'x') => ({
  first_message_index, forwarded_count, is_verified,
  session_data: { ephemeral: 'eph', ciphertext: `ct-${tag}`, mac: 'mac' },
});

describe('server-side key backups', { timeout: 60_000 }, () => {
  let server: TestServer;
  let api: Api;
  let bob: Api;

  before(async () => {
    server = await startTestServer();
    api = new Api(server.url, (await registerUser(server.url, 'alice', PASSWORD)).accessToken);
    bob = new Api(server.url, (await registerUser(server.url, 'bob', PASSWORD)).accessToken);
  });

  after(async () => {
    await server?.close();
  });

  const create = async (a: Api, authData: Record<string, unknown> = { public_key: 'pk' }) =>
    (await a.ok('POST', '/room_keys/version', { algorithm: ALG, auth_data: authData })).version as string;

  test('versions: none, create, get latest and by id, update, delete', async () => {
    assertError(await bob.get('/room_keys/version'), 404, 'M_NOT_FOUND', 'no backup yet');

    const v1 = await create(bob, { public_key: 'one' });
    assert.equal(typeof v1, 'string');
    const v2 = await create(bob, { public_key: 'two' });
    assert.ok(Number(v2) > Number(v1), 'versions increase');

    const latest = await bob.ok('GET', '/room_keys/version');
    assert.deepEqual(latest, { algorithm: ALG, auth_data: { public_key: 'two' }, count: 0, etag: latest.etag, version: v2 });
    assert.equal(typeof latest.etag, 'string');
    const first = await bob.ok('GET', `/room_keys/version/${v1}`);
    assert.equal(first.version, v1);
    assert.deepEqual(first.auth_data, { public_key: 'one' });

    assert.deepEqual(await bob.ok('PUT', `/room_keys/version/${v2}`, { algorithm: ALG, auth_data: { public_key: 'two', signatures: {} }, version: v2 }), {});
    assert.deepEqual((await bob.ok('GET', `/room_keys/version/${v2}`)).auth_data, { public_key: 'two', signatures: {} });
    // version in the body is optional
    await bob.ok('PUT', `/room_keys/version/${v2}`, { algorithm: ALG, auth_data: { public_key: 'three' } });
    assert.deepEqual((await bob.ok('GET', '/room_keys/version')).auth_data, { public_key: 'three' });

    // deleting the latest makes the previous one current again; deleting twice succeeds
    assert.deepEqual(await bob.ok('DELETE', `/room_keys/version/${v2}`), {});
    assert.deepEqual(await bob.ok('DELETE', `/room_keys/version/${v2}`), {});
    assertError(await bob.get(`/room_keys/version/${v2}`), 404, 'M_NOT_FOUND', 'deleted version');
    assert.equal((await bob.ok('GET', '/room_keys/version')).version, v1);

    // a new version never reuses a deleted number
    const v3 = await create(bob);
    assert.ok(Number(v3) > Number(v2));

    // backups are per user
    assertError(await api.get(`/room_keys/version/${v3}`), 404, 'M_NOT_FOUND', "another user's version");
  });

  test('version errors', async () => {
    const v = await create(api);
    assertError(await api.post('/room_keys/version', { auth_data: {} }), 400, 'M_BAD_JSON', 'create without algorithm');
    assertError(await api.post('/room_keys/version', { algorithm: ALG }), 400, 'M_BAD_JSON', 'create without auth_data');
    assertError(await api.post('/room_keys/version', { algorithm: ALG, auth_data: 'nope' }), 400, 'M_BAD_JSON', 'auth_data not an object');
    assertError(await api.get('/room_keys/version/9999'), 404, 'M_NOT_FOUND', 'unknown version');
    assertError(await api.get('/room_keys/version/abc'), 404, 'M_NOT_FOUND', 'malformed version');
    assertError(await api.put('/room_keys/version/9999', { algorithm: ALG, auth_data: {} }), 404, 'M_NOT_FOUND', 'update unknown version');
    assertError(await api.put(`/room_keys/version/${v}`, { algorithm: 'm.other', auth_data: {} }), 400, 'M_INVALID_PARAM', 'algorithm mismatch');
    assertError(await api.put(`/room_keys/version/${v}`, { algorithm: ALG, auth_data: {}, version: '9999' }), 400, 'M_INVALID_PARAM', 'body version mismatch');
    assertError(await api.put(`/room_keys/version/${v}`, { algorithm: ALG }), 400, 'M_BAD_JSON', 'update without auth_data');
    assertError(await api.call('DELETE', '/room_keys/version/9999'), 404, 'M_NOT_FOUND', 'delete unknown version');
    const noAuth = new Api(server.url);
    assertError(await noAuth.get('/room_keys/version'), 401, 'M_MISSING_TOKEN', 'no token');
    assertError(await noAuth.post('/room_keys/version', { algorithm: ALG, auth_data: {} }), 401, 'M_MISSING_TOKEN', 'no token');
    await api.ok('DELETE', `/room_keys/version/${v}`);
  });

  test('keys at three levels, with etag and count', async () => {
    const v = await create(api);
    const q = `?version=${v}`;
    const info0 = await api.ok('GET', `/room_keys/version/${v}`);
    assert.equal(info0.count, 0);

    // all rooms
    const r1 = await api.ok('PUT', `/room_keys/keys${q}`, {
      rooms: { [ROOM]: { sessions: { s1: key(false, 0, 0, 'a'), s2: key(false, 0, 0, 'b') } }, [ROOM2]: { sessions: { s3: key(true, 1, 0, 'c') } } },
    });
    assert.equal(r1.count, 3);
    assert.equal(typeof r1.etag, 'string');
    assert.notEqual(r1.etag, info0.etag, 'etag changes when keys are stored');
    const info1 = await api.ok('GET', `/room_keys/version/${v}`);
    assert.equal(info1.count, 3);
    assert.equal(info1.etag, r1.etag);

    // one room
    const r2 = await api.ok('PUT', `/room_keys/keys/${enc(ROOM)}${q}`, { sessions: { s4: key(false, 2, 1, 'd') } });
    assert.equal(r2.count, 4);
    assert.notEqual(r2.etag, r1.etag);

    // one session
    const r3 = await api.ok('PUT', `/room_keys/keys/${enc(ROOM)}/s5${q}`, key(false, 0, 0, 'e'));
    assert.equal(r3.count, 5);
    assert.notEqual(r3.etag, r2.etag);

    // reads
    const all = await api.ok('GET', `/room_keys/keys${q}`);
    assert.deepEqual(Object.keys(all.rooms).sort(), [ROOM2, ROOM].sort());
    assert.deepEqual(Object.keys(all.rooms[ROOM].sessions).sort(), ['s1', 's2', 's4', 's5']);
    assert.deepEqual(all.rooms[ROOM2].sessions.s3, key(true, 1, 0, 'c'));
    const room = await api.ok('GET', `/room_keys/keys/${enc(ROOM)}${q}`);
    assert.deepEqual(room, all.rooms[ROOM]);
    assert.deepEqual(await api.ok('GET', `/room_keys/keys/${enc(ROOM)}/s4${q}`), key(false, 2, 1, 'd'));

    // missing room and session
    assert.deepEqual(await api.ok('GET', `/room_keys/keys/${enc('!none:localhost')}${q}`), { sessions: {} });
    assertError(await api.get(`/room_keys/keys/${enc(ROOM)}/nope${q}`), 404, 'M_NOT_FOUND', 'missing session');
    assertError(await api.get(`/room_keys/keys/${enc('!none:localhost')}/s1${q}`), 404, 'M_NOT_FOUND', 'session in missing room');

    // a PUT that stores nothing keeps the etag
    const same = await api.ok('PUT', `/room_keys/keys/${enc(ROOM)}/s4${q}`, key(false, 2, 1, 'worse-tie'));
    assert.deepEqual(same, { etag: r3.etag, count: 5 });

    // deletes: session, room, all
    const d1 = await api.ok('DELETE', `/room_keys/keys/${enc(ROOM)}/s5${q}`);
    assert.equal(d1.count, 4);
    assert.notEqual(d1.etag, r3.etag);
    assertError(await api.get(`/room_keys/keys/${enc(ROOM)}/s5${q}`), 404, 'M_NOT_FOUND', 'deleted session');
    const d1again = await api.ok('DELETE', `/room_keys/keys/${enc(ROOM)}/s5${q}`);
    assert.deepEqual(d1again, d1, 'deleting nothing keeps etag and count');
    const d2 = await api.ok('DELETE', `/room_keys/keys/${enc(ROOM)}${q}`);
    assert.equal(d2.count, 1);
    assert.notEqual(d2.etag, d1.etag);
    assert.deepEqual(await api.ok('GET', `/room_keys/keys/${enc(ROOM)}${q}`), { sessions: {} });
    const d3 = await api.ok('DELETE', `/room_keys/keys${q}`);
    assert.equal(d3.count, 0);
    assert.notEqual(d3.etag, d2.etag);
    assert.deepEqual(await api.ok('GET', `/room_keys/keys${q}`), { rooms: {} });
    const info = await api.ok('GET', `/room_keys/version/${v}`);
    assert.equal(info.count, 0);
    assert.equal(info.etag, d3.etag);

    await api.ok('DELETE', `/room_keys/version/${v}`);
  });

  test('a stored session is replaced only by a better one', async () => {
    const v = await create(api);
    const q = `?version=${v}`;
    const path = `/room_keys/keys/${enc(ROOM)}/sess${q}`;
    const get = () => api.ok('GET', path);
    let last = await api.ok('PUT', path, key(false, 5, 3, 'start'));
    const expectKept = async (k: ReturnType<typeof key>, stored: ReturnType<typeof key>, what: string) => {
      const r = await api.ok('PUT', path, k);
      assert.equal(r.etag, last.etag, `${what}: etag unchanged`);
      assert.deepEqual(await get(), stored, what);
    };
    const expectReplaced = async (k: ReturnType<typeof key>, what: string) => {
      const r = await api.ok('PUT', path, k);
      assert.notEqual(r.etag, last.etag, `${what}: etag changed`);
      assert.equal(r.count, 1);
      assert.deepEqual(await get(), k, what);
      last = r;
    };
    await expectKept(key(false, 6, 0, 'later index'), key(false, 5, 3, 'start'), 'higher first_message_index loses');
    await expectKept(key(false, 5, 4, 'more forwarded'), key(false, 5, 3, 'start'), 'higher forwarded_count loses');
    await expectKept(key(false, 5, 3, 'tie'), key(false, 5, 3, 'start'), 'a tie keeps the stored key');
    await expectReplaced(key(false, 5, 2, 'less forwarded'), 'lower forwarded_count wins');
    await expectReplaced(key(false, 1, 9, 'earlier index'), 'lower first_message_index wins over forwarded_count');
    await expectReplaced(key(true, 50, 50, 'verified'), 'verified wins over everything');
    await expectKept(key(false, 0, 0, 'unverified'), key(true, 50, 50, 'verified'), 'unverified never replaces verified');
    await expectReplaced(key(true, 10, 50, 'verified earlier'), 'among verified keys the lower index wins');

    // the rule also applies through the room and all-rooms forms
    const r = await api.ok('PUT', `/room_keys/keys${q}`, { rooms: { [ROOM]: { sessions: { sess: key(true, 11, 0, 'nope'), new1: key(false, 0, 0) } } } });
    assert.equal(r.count, 2);
    assert.deepEqual(await get(), key(true, 10, 50, 'verified earlier'));
    await api.ok('DELETE', `/room_keys/version/${v}`);
  });

  test('key errors: missing/unknown version, superseded version, bad bodies', async () => {
    const old = await create(api);
    const current = await create(api);
    const paths = ['/room_keys/keys', `/room_keys/keys/${enc(ROOM)}`, `/room_keys/keys/${enc(ROOM)}/s1`];
    const bodies = [{ rooms: { [ROOM]: { sessions: { s1: key(false, 0, 0) } } } }, { sessions: { s1: key(false, 0, 0) } }, key(false, 0, 0)];
    for (const [i, p] of paths.entries()) {
      for (const m of ['GET', 'PUT', 'DELETE']) {
        const body = m === 'PUT' ? bodies[i] : undefined;
        assertError(await api.call(m, p, body), 400, 'M_MISSING_PARAM', `${m} ${p} without version`);
        assertError(await api.call(m, `${p}?version=9999`, body), 404, 'M_NOT_FOUND', `${m} ${p} unknown version`);
        assertError(await api.call(m, `${p}?version=abc`, body), 404, 'M_NOT_FOUND', `${m} ${p} malformed version`);
      }
      const r = await api.call('PUT', `${p}?version=${old}`, bodies[i]);
      assertError(r, 403, 'M_WRONG_ROOM_KEYS_VERSION', `PUT ${p} to a superseded version`);
      assert.equal(r.body.current_version, current);
      assertError(await bob.call('PUT', `${p}?version=${current}`, bodies[i]), 404, 'M_NOT_FOUND', `PUT ${p} to another user's version`);
    }
    // reading and deleting keys of an older (live) version is allowed
    assert.deepEqual(await api.ok('GET', `/room_keys/keys?version=${old}`), { rooms: {} });
    assert.equal((await api.ok('DELETE', `/room_keys/keys?version=${old}`)).count, 0);

    const q = `?version=${current}`;
    assertError(await api.put(`/room_keys/keys${q}`, {}), 400, 'M_BAD_JSON', 'rooms missing');
    assertError(await api.put(`/room_keys/keys${q}`, { rooms: { [ROOM]: { sessions: { s1: { ...key(false, 0, 0), is_verified: 'yes' } } } } }), 400, 'M_BAD_JSON', 'is_verified not a boolean');
    assertError(await api.put(`/room_keys/keys/${enc(ROOM)}${q}`, { sessions: { s1: { first_message_index: 0, forwarded_count: 0, is_verified: false } } }), 400, 'M_BAD_JSON', 'session_data missing');
    assertError(await api.put(`/room_keys/keys/${enc(ROOM)}/s1${q}`, { ...key(false, 0, 0), first_message_index: -1 }), 400, 'M_BAD_JSON', 'negative index');
    assertError(await api.put(`/room_keys/keys/${enc(ROOM)}/s1${q}`, { ...key(false, 0, 0), forwarded_count: 1.5 }), 400, 'M_BAD_JSON', 'fractional count');
    assert.equal((await api.ok('GET', `/room_keys/version/${current}`)).count, 0, 'nothing stored by failed requests');

    // deleting a version deletes its keys: writing to it is then 404
    await api.ok('PUT', `/room_keys/keys/${enc(ROOM)}/s1${q}`, key(false, 0, 0));
    await api.ok('DELETE', `/room_keys/version/${current}`);
    assertError(await api.get(`/room_keys/keys${q}`), 404, 'M_NOT_FOUND', 'keys of a deleted version');
    assertError(await api.put(`/room_keys/keys/${enc(ROOM)}/s1${q}`, key(false, 0, 0)), 404, 'M_NOT_FOUND', 'write to a deleted version');
    const row = await server.ctx.storage.db.selectFrom('e2e_room_keys').select('session_id').where('version', '=', Number(current)).execute();
    assert.equal(row.length, 0, 'keys of a deleted version are gone from storage');
    // the older version is current again and accepts keys
    assert.equal((await api.ok('PUT', `/room_keys/keys/${enc(ROOM)}/s1?version=${old}`, key(false, 0, 0))).count, 1);
    await api.ok('DELETE', `/room_keys/version/${old}`);
  });

  test('special room and session ids round-trip', async () => {
    const v = await create(api);
    const q = `?version=${v}`;
    await api.ok('PUT', `/room_keys/keys/__proto__/${enc('a/b+c=')}${q}`, key(false, 0, 0, 'p'));
    assert.deepEqual(await api.ok('GET', `/room_keys/keys/__proto__/${enc('a/b+c=')}${q}`), key(false, 0, 0, 'p'));
    const all = await api.ok('GET', `/room_keys/keys${q}`);
    assert.deepEqual(Object.keys(all.rooms), ['__proto__']);
    await api.ok('DELETE', `/room_keys/version/${v}`);
  });
});

describe('encryption by default for new rooms', { timeout: 60_000 }, () => {
  const encryptionOf = async (a: Api, roomId: string) => {
    const r = await a.get(`/rooms/${enc(roomId)}/state/m.room.encryption/`);
    return r.status === 200 ? r.body : undefined;
  };

  test("'off' (default): no room is encrypted", async () => {
    const server = await startTestServer();
    try {
      const a = new Api(server.url, (await registerUser(server.url, 'alice', PASSWORD)).accessToken);
      assert.equal(await encryptionOf(a, await a.createRoom({ preset: 'private_chat' })), undefined);
      assert.equal(await encryptionOf(a, await a.createRoom({ preset: 'trusted_private_chat' })), undefined);
    } finally {
      await server.close();
    }
  });

  test("'invite': private rooms are encrypted, public ones are not; initial_state wins", async () => {
    const server = await startTestServer({ encryption_enabled_by_default_for_room_type: 'invite' });
    try {
      const a = new Api(server.url, (await registerUser(server.url, 'alice', PASSWORD)).accessToken);
      const megolm = { algorithm: 'm.megolm.v1.aes-sha2' };
      assert.deepEqual(await encryptionOf(a, await a.createRoom({ preset: 'private_chat' })), megolm);
      assert.deepEqual(await encryptionOf(a, await a.createRoom({ preset: 'trusted_private_chat' })), megolm);
      assert.deepEqual(await encryptionOf(a, await a.createRoom({})), megolm, 'default preset (private_chat)');
      assert.equal(await encryptionOf(a, await a.createRoom({ preset: 'public_chat' })), undefined);
      assert.equal(await encryptionOf(a, await a.createRoom({ visibility: 'public' })), undefined);
      const own = { algorithm: 'm.megolm.v1.aes-sha2', rotation_period_ms: 1000 };
      const roomId = await a.createRoom({ preset: 'private_chat', initial_state: [{ type: 'm.room.encryption', state_key: '', content: own }] });
      assert.deepEqual(await encryptionOf(a, roomId), own);
      // exactly one m.room.encryption event in the room
      const state = await a.ok('GET', `/rooms/${enc(roomId)}/state`);
      assert.equal(state.filter((e: any) => e.type === 'm.room.encryption').length, 1);
    } finally {
      await server.close();
    }
  });

  test("'all': every new room is encrypted", async () => {
    const server = await startTestServer({ encryption_enabled_by_default_for_room_type: 'all' });
    try {
      const a = new Api(server.url, (await registerUser(server.url, 'alice', PASSWORD)).accessToken);
      const megolm = { algorithm: 'm.megolm.v1.aes-sha2' };
      assert.deepEqual(await encryptionOf(a, await a.createRoom({ preset: 'public_chat' })), megolm);
      assert.deepEqual(await encryptionOf(a, await a.createRoom({ preset: 'private_chat' })), megolm);
    } finally {
      await server.close();
    }
  });
});
