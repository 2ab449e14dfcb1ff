/**
 * Failure paths over raw HTTP: every request here is wrong in one way, and
 * the server must answer with the spec's status and errcode.
 *
 *   RANVIER_TEST_DB=sqlite node --import tsx --test test/e2e/errors.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, registerUser, type RegisteredUser, type TestServer } from './harness.js';
import { Api, CS, enc, login, registerRaw, request } from './util.js';

const PASSWORD = 'hunter2 but longer';

function assertError(r: { status: number; body: any }, status: number, errcode: string, what: string) {
  assert.equal(r.status, status, `${what}: expected ${status} ${errcode}, got ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(r.body?.errcode, errcode, `${what}: errcode`);
  assert.equal(typeof r.body?.error, 'string', `${what}: error message is a string`);
}

async function rawFetch(url: string, init: RequestInit & { token?: string } = {}) {
  const headers = new Headers(init.headers);
  if (init.token) headers.set('authorization', `Bearer ${init.token}`);
  const res = await fetch(url, { ...init, headers });
  const text = await res.text();
  let body: any;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

describe('error responses', { timeout: 60_000 }, () => {
  let server: TestServer;
  let url: string;
  let alice: RegisteredUser;
  let eve: RegisteredUser;
  let aliceApi: Api;
  let eveApi: Api;
  let roomId: string;
  let messageId: string;

  before(async () => {
    server = await startTestServer();
    url = server.url;
    alice = await registerUser(url, 'alice', PASSWORD);
    eve = await registerUser(url, 'eve', PASSWORD);
    aliceApi = new Api(url, alice.accessToken);
    eveApi = new Api(url, eve.accessToken);
    roomId = await aliceApi.createRoom({ preset: 'private_chat', name: 'Private' });
    messageId = await aliceApi.send(roomId, 'for members only');
  });

  after(async () => {
    await server?.close();
  });

  test('M_NOT_JSON: malformed JSON body is 400', async () => {
    const r = await rawFetch(`${url}${CS}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"type": "m.login.password",' });
    assertError(r, 400, 'M_NOT_JSON', 'POST /login with truncated JSON');
    const s = await rawFetch(`${url}${CS}/rooms/${enc(roomId)}/send/m.room.message/notjson1`, {
      method: 'PUT',
      token: alice.accessToken,
      headers: { 'content-type': 'application/json' },
      body: 'this is not json',
    });
    assertError(s, 400, 'M_NOT_JSON', 'PUT send with a non-JSON body');
  });

  test('M_BAD_JSON: valid JSON with wrong field types is 400', async () => {
    const typing = await aliceApi.put(`/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: 'yes please' });
    assertError(typing, 400, 'M_BAD_JSON', 'typing with a string for a boolean');
    const create = await aliceApi.post('/createRoom', { invite: '@bob:localhost' });
    assertError(create, 400, 'M_BAD_JSON', 'createRoom with a string for the invite list');
    const loginRes = await request(url, 'POST', `${CS}/login`, {
      body: { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'alice' }, password: 12345 },
    });
    assertError(loginRes, 400, 'M_BAD_JSON', 'login with a number for the password');
  });

  test('M_UNRECOGNIZED: unknown endpoint is 404, known endpoint with the wrong method is 405', async () => {
    const unknown = await request(url, 'GET', `${CS}/this/endpoint/does/not/exist`, { token: alice.accessToken });
    assertError(unknown, 404, 'M_UNRECOGNIZED', 'GET of an unknown endpoint');
    const unknownNoAuth = await request(url, 'POST', '/_matrix/client/v3/definitely_not_an_api');
    assertError(unknownNoAuth, 404, 'M_UNRECOGNIZED', 'POST of an unknown endpoint without a token');
    const wrongMethod = await request(url, 'POST', `${CS}/account/whoami`, { token: alice.accessToken, body: {} });
    assertError(wrongMethod, 405, 'M_UNRECOGNIZED', 'POST /account/whoami (GET only)');
    const wrongMethod2 = await request(url, 'DELETE', `${CS}/login`);
    assertError(wrongMethod2, 405, 'M_UNRECOGNIZED', 'DELETE /login');
  });

  test('M_MISSING_TOKEN: no access token is 401', async () => {
    const r = await request(url, 'GET', `${CS}/account/whoami`);
    assertError(r, 401, 'M_MISSING_TOKEN', 'whoami without a token');
    const s = await request(url, 'GET', `${CS}/sync`);
    assertError(s, 401, 'M_MISSING_TOKEN', 'sync without a token');
    const c = await request(url, 'POST', `${CS}/createRoom`, { body: {} });
    assertError(c, 401, 'M_MISSING_TOKEN', 'createRoom without a token');
  });

  test('M_UNKNOWN_TOKEN: an invalid access token is 401', async () => {
    const r = await request(url, 'GET', `${CS}/account/whoami`, { token: 'syt_not_a_real_token' });
    assertError(r, 401, 'M_UNKNOWN_TOKEN', 'whoami with a made-up token');
    const q = await request(url, 'GET', `${CS}/account/whoami?access_token=also_not_real`);
    assertError(q, 401, 'M_UNKNOWN_TOKEN', 'whoami with a made-up token in the query');
    const prefix = await request(url, 'GET', `${CS}/account/whoami`, { token: alice.accessToken.slice(0, -1) });
    assertError(prefix, 401, 'M_UNKNOWN_TOKEN', 'whoami with a truncated real token');
  });

  test('M_FORBIDDEN: wrong password on login is 403', async () => {
    const r = await login(url, 'alice', 'not the password');
    assertError(r, 403, 'M_FORBIDDEN', 'login with a wrong password');
    assert.equal(r.body.access_token, undefined);
    const nobody = await login(url, 'nosuchuser', 'whatever');
    assertError(nobody, 403, 'M_FORBIDDEN', 'login as an unknown user');
  });

  test('M_FORBIDDEN: a user can neither write to nor read a room they are not in', async () => {
    const r = `/rooms/${enc(roomId)}`;
    assertError(await eveApi.put(`${r}/send/m.room.message/eve1`, { msgtype: 'm.text', body: 'let me in' }), 403, 'M_FORBIDDEN', 'send to a room eve is not in');
    assertError(await eveApi.put(`${r}/state/m.room.topic/`, { topic: 'pwned' }), 403, 'M_FORBIDDEN', 'set state in a room eve is not in');
    assertError(await eveApi.post(`${r}/invite`, { user_id: eve.userId }), 403, 'M_FORBIDDEN', 'invite into a room eve is not in');
    assertError(await eveApi.post(`/join/${enc(roomId)}`, {}), 403, 'M_FORBIDDEN', 'join an invite-only room uninvited');
    assertError(await eveApi.get(`${r}/messages?dir=b`), 403, 'M_FORBIDDEN', 'GET /messages of a room eve is not in');
    assertError(await eveApi.get(`${r}/state`), 403, 'M_FORBIDDEN', 'GET /state of a room eve is not in');
    assertError(await eveApi.get(`${r}/state/m.room.name/`), 403, 'M_FORBIDDEN', 'GET /state/m.room.name of a room eve is not in');
    assertError(await eveApi.get(`${r}/members`), 403, 'M_FORBIDDEN', 'GET /members of a room eve is not in');
    assertError(await eveApi.get(`${r}/joined_members`), 403, 'M_FORBIDDEN', 'GET /joined_members of a room eve is not in');

    // The spec lists only 404 for /event and /context ("not found or you do not have
    // permission"); Synapse answers 403. Either is a refusal; what matters is no leak.
    for (const path of [`${r}/event/${enc(messageId)}`, `${r}/context/${enc(messageId)}`]) {
      const res = await eveApi.get(path);
      assert.ok(
        (res.status === 403 && res.body?.errcode === 'M_FORBIDDEN') || (res.status === 404 && res.body?.errcode === 'M_NOT_FOUND'),
        `GET ${path} by a non-member must be refused, got ${res.status} ${JSON.stringify(res.body)}`,
      );
      assert.ok(!JSON.stringify(res.body).includes('for members only'), 'no content leaks');
    }

    // and nothing eve tried landed in the room
    const msgs = await aliceApi.messages(roomId, { dir: 'b', limit: 50 });
    assert.equal(msgs.status, 200);
    assert.ok(!msgs.body.chunk.some((e: any) => e.sender === eve.userId), 'no event from eve in the room');
  });

  test('M_FORBIDDEN: no ephemeral writes (typing, receipts) into a room you are not in', async () => {
    const r = `/rooms/${enc(roomId)}`;
    assertError(await eveApi.put(`${r}/typing/${enc(eve.userId)}`, { typing: true, timeout: 1000 }), 403, 'M_FORBIDDEN', 'typing in a room eve is not in');
    assertError(await eveApi.post(`${r}/receipt/m.read/${enc(messageId)}`, {}), 403, 'M_FORBIDDEN', 'read receipt in a room eve is not in');
    assertError(await eveApi.put(`${r}/redact/${enc(messageId)}/eve-redact-1`, {}), 403, 'M_FORBIDDEN', 'redact in a room eve is not in');
  });

  test("an event id from another room is never served or touched through a room eve is in", async () => {
    const eveRoom = await eveApi.createRoom({ preset: 'private_chat', name: "Eve's room" });
    const r = `/rooms/${enc(eveRoom)}`;
    // messageId belongs to alice's private room, not eve's
    for (const path of [`${r}/event/${enc(messageId)}`, `${r}/context/${enc(messageId)}`]) {
      const res = await eveApi.get(path);
      assert.equal(res.status, 404, `GET ${path} (event of another room): ${res.status} ${JSON.stringify(res.body)}`);
      assert.equal(res.body?.errcode, 'M_NOT_FOUND');
      assert.ok(!JSON.stringify(res.body).includes('for members only'), 'no content leaks');
    }
    // redacting it "through" eve's room must not redact it in alice's room
    const red = await eveApi.put(`${r}/redact/${enc(messageId)}/cross-room-1`, { reason: 'mine now' });
    assert.ok(red.status === 200 || red.status === 400 || red.status === 403 || red.status === 404, `redact: ${red.status}`);
    const still = await aliceApi.ok('GET', `/rooms/${enc(roomId)}/event/${enc(messageId)}`);
    assert.equal(still.content.body, 'for members only', "the other room's event is not redacted");
    assert.equal(still.unsigned?.redacted_because, undefined);
    // a receipt for it in eve's room must not show up in alice's room either
    await eveApi.post(`${r}/receipt/m.read/${enc(messageId)}`, {});
    const s = await aliceApi.sync({ timeout: 0 });
    const ephemeral = s.rooms?.join?.[roomId]?.ephemeral?.events ?? [];
    assert.ok(!JSON.stringify(ephemeral).includes(eve.userId), 'no receipt from eve in alice\'s room');
  });

  test('M_FORBIDDEN: a plain member cannot do what the power levels reserve', async () => {
    const room = await aliceApi.createRoom({ preset: 'public_chat', name: 'Ruled' });
    await eveApi.join(room);
    const r = `/rooms/${enc(room)}`;
    assertError(await eveApi.put(`${r}/state/m.room.name/`, { name: 'Eve rules' }), 403, 'M_FORBIDDEN', 'member renames the room');
    const pl = await aliceApi.ok('GET', `${r}/state/m.room.power_levels/`);
    assertError(
      await eveApi.put(`${r}/state/m.room.power_levels/`, { ...pl, users: { ...pl.users, [eve.userId]: 100 } }),
      403,
      'M_FORBIDDEN',
      'member promotes herself',
    );
    assertError(await eveApi.post(`${r}/kick`, { user_id: alice.userId }), 403, 'M_FORBIDDEN', 'member kicks the creator');
    assertError(await eveApi.post(`${r}/ban`, { user_id: alice.userId }), 403, 'M_FORBIDDEN', 'member bans the creator');
    const aliceMsg = await aliceApi.send(room, 'mine');
    // Room versions 3+ let the redaction event in and decide when applying it; Synapse refuses
    // up front with 403. Either way alice's message must keep its content.
    const red = await eveApi.put(`${r}/redact/${enc(aliceMsg)}/eve-r1`, {});
    assert.ok(red.status === 403 || red.status === 200, `redact someone else's message: ${red.status} ${JSON.stringify(red.body)}`);
    if (red.status === 403) assert.equal(red.body.errcode, 'M_FORBIDDEN');
    const kept = await aliceApi.ok('GET', `${r}/event/${enc(aliceMsg)}`);
    assert.equal(kept.content.body, 'mine', "a plain member cannot redact someone else's message");
    const name = await aliceApi.ok('GET', `${r}/state/m.room.name/`);
    assert.equal(name.name, 'Ruled', 'state unchanged');
  });

  test('M_USER_IN_USE: registering a taken name is 400', async () => {
    const r = await registerRaw(url, { username: 'alice', password: PASSWORD });
    assertError(r, 400, 'M_USER_IN_USE', 'register alice again');
    const avail = await request(url, 'GET', `${CS}/register/available?username=alice`);
    assertError(avail, 400, 'M_USER_IN_USE', 'GET /register/available for a taken name');
    const free = await request(url, 'GET', `${CS}/register/available?username=nobody_yet`);
    assert.equal(free.status, 200);
    assert.deepEqual(free.body, { available: true });
  });

  test('M_INVALID_USERNAME: registering "Bad Name!" is 400', async () => {
    const r = await registerRaw(url, { username: 'Bad Name!', password: PASSWORD });
    assertError(r, 400, 'M_INVALID_USERNAME', 'register "Bad Name!"');
    const avail = await request(url, 'GET', `${CS}/register/available?username=${enc('Bad Name!')}`);
    assertError(avail, 400, 'M_INVALID_USERNAME', 'GET /register/available for "Bad Name!"');
  });

  test('M_NOT_FOUND: unknown room alias and unknown event are 404', async () => {
    const alias = await request(url, 'GET', `${CS}/directory/room/${enc(`#no-such-alias:${server.serverName}`)}`);
    assertError(alias, 404, 'M_NOT_FOUND', 'resolve an unknown alias');
    const joinAlias = await aliceApi.post(`/join/${enc(`#no-such-alias:${server.serverName}`)}`, {});
    assertError(joinAlias, 404, 'M_NOT_FOUND', 'join an unknown alias');
    const ev = await aliceApi.get(`/rooms/${enc(roomId)}/event/${enc('$doesnotexist0000000000000000000000000000000')}`);
    assertError(ev, 404, 'M_NOT_FOUND', 'GET an unknown event in a room alice is in');
    const state = await aliceApi.get(`/rooms/${enc(roomId)}/state/m.room.topic/`);
    assertError(state, 404, 'M_NOT_FOUND', 'GET a state event that was never set');
  });

  test('M_TOO_LARGE: a body over max_request_size and an event over 65536 bytes are 413', async () => {
    const max = server.config.max_request_size;
    const big = JSON.stringify({ msgtype: 'm.text', body: 'x'.repeat(max + 1024) });
    const r = await rawFetch(`${url}${CS}/rooms/${enc(roomId)}/send/m.room.message/huge1`, {
      method: 'PUT',
      token: alice.accessToken,
      headers: { 'content-type': 'application/json' },
      body: big,
    });
    assertError(r, 413, 'M_TOO_LARGE', `PUT of a ${big.length}-byte body (max ${max})`);

    // under max_request_size, but the event would be over the spec's 65536-byte limit
    const event = await aliceApi.put(`/rooms/${enc(roomId)}/send/m.room.message/huge2`, { msgtype: 'm.text', body: 'y'.repeat(70_000) });
    assertError(event, 413, 'M_TOO_LARGE', 'an event of about 70 kB');
    const state = await aliceApi.put(`/rooms/${enc(roomId)}/state/org.example.big/`, { blob: 'z'.repeat(66_000) });
    assertError(state, 413, 'M_TOO_LARGE', 'a state event of about 66 kB');

    // neither landed, and a normal-sized message still works
    const msgs = await aliceApi.messages(roomId, { dir: 'b', limit: 20 });
    assert.ok(!msgs.body.chunk.some((e: any) => (e.content?.body ?? '').length > 60_000), 'no oversized event stored');
    assert.match(await aliceApi.send(roomId, 'x'.repeat(60_000)), /^\$/);
  });

  test('transaction ids make sends idempotent (per device)', async () => {
    const room = await aliceApi.createRoom({ preset: 'private_chat' });
    const path = `/rooms/${enc(room)}/send/m.room.message/same-txn-1`;
    const first = await aliceApi.put(path, { msgtype: 'm.text', body: 'only once' });
    const second = await aliceApi.put(path, { msgtype: 'm.text', body: 'only once' });
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.equal(second.body.event_id, first.body.event_id, 'the retry returns the same event id');

    const msgs = await aliceApi.messages(room, { dir: 'b', limit: 50 });
    assert.equal(msgs.body.chunk.filter((e: any) => e.content?.body === 'only once').length, 1, 'one event in /messages');

    // the same txn id from another device (another access token) is a different transaction
    const other = await login(url, 'alice', PASSWORD);
    const otherApi = new Api(url, other.body.access_token);
    const third = await otherApi.put(path, { msgtype: 'm.text', body: 'only once' });
    assert.equal(third.status, 200);
    assert.notEqual(third.body.event_id, first.body.event_id, 'same txn id from another device is a new event');
  });

  // Spec: a retransmission is the same txn id on the same HTTP path, from the same device.
  describe('transaction id scope is the request path', () => {
    let room: string;
    let firstId: string;
    before(async () => {
      room = await aliceApi.createRoom({ preset: 'private_chat' });
      firstId = await aliceApi.ok('PUT', `/rooms/${enc(room)}/send/m.room.message/scoped-txn`, { msgtype: 'm.text', body: 'first' }).then((b) => b.event_id);
    });

    test('same txn id in another room is a new event in that room', async () => {
      const r = await aliceApi.put(`/rooms/${enc(roomId)}/send/m.room.message/scoped-txn`, { msgtype: 'm.text', body: 'other room' });
      assert.equal(r.status, 200);
      assert.notEqual(r.body.event_id, firstId, "must not return the first room's event");
      const msgs = await aliceApi.messages(roomId, { dir: 'b', limit: 5 });
      assert.ok(msgs.body.chunk.some((e: any) => e.content?.body === 'other room'), 'the message was sent to the other room');
    });

    test('same txn id for another event type is a new event', async () => {
      const r = await aliceApi.put(`/rooms/${enc(room)}/send/org.example.custom/scoped-txn`, { hello: 'custom' });
      assert.equal(r.status, 200);
      assert.notEqual(r.body.event_id, firstId, 'PUT /send/org.example.custom/scoped-txn returned the m.room.message event');
      const msgs = await aliceApi.messages(room, { dir: 'b', limit: 5 });
      assert.ok(msgs.body.chunk.some((e: any) => e.type === 'org.example.custom'), 'the custom event was sent');
    });

    test('the redact endpoint has its own transaction ids', async () => {
      const r = await aliceApi.put(`/rooms/${enc(room)}/redact/${enc(firstId)}/scoped-txn`, { reason: 'txn test' });
      assert.equal(r.status, 200);
      assert.notEqual(r.body.event_id, firstId, 'PUT /redact/{id}/scoped-txn returned the message it should redact');
      const ev = await aliceApi.ok('GET', `/rooms/${enc(room)}/event/${enc(firstId)}`);
      assert.deepEqual(ev.content, {}, 'the redaction was applied');
    });
  });

  test('concurrent retransmissions of one transaction create one event', async () => {
    const room = await aliceApi.createRoom({ preset: 'private_chat' });
    const path = `/rooms/${enc(room)}/send/m.room.message/racing-txn`;
    const results = await Promise.all(Array.from({ length: 5 }, () => aliceApi.put(path, { msgtype: 'm.text', body: 'raced' })));
    for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(new Set(results.map((r) => r.body.event_id)).size, 1, `one event id for all retries: ${results.map((r) => r.body.event_id)}`);
    const msgs = await aliceApi.messages(room, { dir: 'b', limit: 50 });
    assert.equal(msgs.body.chunk.filter((e: any) => e.content?.body === 'raced').length, 1, 'exactly one event stored');
  });

  test('CORS headers on a client endpoint and on an OPTIONS preflight', async () => {
    const get = await fetch(`${url}/_matrix/client/versions`, { headers: { origin: 'https://app.element.io' } });
    assert.equal(get.status, 200);
    assert.equal(get.headers.get('access-control-allow-origin'), '*');
    const authed = await fetch(`${url}${CS}/account/whoami`, { headers: { origin: 'https://app.element.io', authorization: `Bearer ${alice.accessToken}` } });
    assert.equal(authed.status, 200);
    assert.equal(authed.headers.get('access-control-allow-origin'), '*');
    const failed = await fetch(`${url}${CS}/account/whoami`, { headers: { origin: 'https://app.element.io' } });
    assert.equal(failed.status, 401);
    assert.equal(failed.headers.get('access-control-allow-origin'), '*', 'errors carry CORS headers too');

    const pre = await fetch(`${url}${CS}/rooms/${enc(roomId)}/send/m.room.message/abc`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.element.io',
        'access-control-request-method': 'PUT',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    assert.ok(pre.status === 200 || pre.status === 204, `preflight status ${pre.status}`);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    const methods = (pre.headers.get('access-control-allow-methods') ?? '').toUpperCase();
    for (const m of ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS']) assert.ok(methods.includes(m), `allow-methods has ${m}: ${methods}`);
    const allowHeaders = (pre.headers.get('access-control-allow-headers') ?? '').toLowerCase();
    for (const h of ['authorization', 'content-type', 'x-requested-with']) assert.ok(allowHeaders.includes(h), `allow-headers has ${h}: ${allowHeaders}`);
  });
});

describe('rate limits', { timeout: 60_000 }, () => {
  let limited: TestServer;
  let unlimited: TestServer;
  const tight = {
    rate_limit_login_per_second: 0.1,
    rate_limit_login_burst: 3,
    rate_limit_message_per_second: 0.1,
    rate_limit_message_burst: 5,
    rate_limit_registration_per_second: 0.1,
    rate_limit_registration_burst: 20,
  };

  before(async () => {
    [limited, unlimited] = await Promise.all([
      startTestServer({ ...tight, rate_limit_enabled: true }),
      startTestServer({ ...tight, rate_limit_enabled: false }),
    ]);
  });

  after(async () => {
    await Promise.all([limited?.close(), unlimited?.close()]);
  });

  test('M_LIMIT_EXCEEDED: hammering login gets 429 with retry_after_ms', async () => {
    await registerUser(limited.url, 'hammer', PASSWORD);
    const statuses: number[] = [];
    let limitedRes: { status: number; body: any; headers: Headers } | undefined;
    for (let i = 0; i < 10; i++) {
      const r = await login(limited.url, 'hammer', PASSWORD);
      statuses.push(r.status);
      if (r.status === 429) {
        limitedRes = r;
        break;
      }
      assert.equal(r.status, 200, `login ${i}: ${JSON.stringify(r.body)}`);
    }
    assert.ok(limitedRes, `expected a 429 within 10 logins (burst 3), got ${statuses.join(',')}`);
    assertError(limitedRes, 429, 'M_LIMIT_EXCEEDED', 'login over the limit');
    assert.equal(typeof limitedRes.body.retry_after_ms, 'number');
    assert.ok(limitedRes.body.retry_after_ms > 0, 'retry_after_ms is positive');
    assert.ok(statuses.filter((s) => s === 200).length >= 1, 'the first logins of a burst succeed');
  });

  test('M_LIMIT_EXCEEDED: flooding messages gets 429', async () => {
    const u = await registerUser(limited.url, 'flooder', PASSWORD);
    const api = new Api(limited.url, u.accessToken);
    const room = await api.createRoom({ preset: 'private_chat' });
    let got: { status: number; body: any } | undefined;
    let ok = 0;
    for (let i = 0; i < 20; i++) {
      const r = await api.put(`/rooms/${enc(room)}/send/m.room.message/flood${i}`, { msgtype: 'm.text', body: `flood ${i}` });
      if (r.status === 429) {
        got = r;
        break;
      }
      assert.equal(r.status, 200, JSON.stringify(r.body));
      ok++;
    }
    assert.ok(got, `expected a 429 within 20 messages (burst 5), ${ok} succeeded`);
    assertError(got, 429, 'M_LIMIT_EXCEEDED', 'messages over the limit');
    assert.equal(typeof got.body.retry_after_ms, 'number');
  });

  test('an operator can switch rate limits off (rate_limit_enabled=false)', async () => {
    await registerUser(unlimited.url, 'hammer', PASSWORD);
    for (let i = 0; i < 15; i++) {
      const r = await login(unlimited.url, 'hammer', PASSWORD);
      assert.equal(r.status, 200, `login ${i} with limits off: ${r.status} ${JSON.stringify(r.body)}`);
    }
    const u = await registerUser(unlimited.url, 'chatty', PASSWORD);
    const api = new Api(unlimited.url, u.accessToken);
    const room = await api.createRoom({ preset: 'private_chat' });
    for (let i = 0; i < 25; i++) {
      const r = await api.put(`/rooms/${enc(room)}/send/m.room.message/m${i}`, { msgtype: 'm.text', body: `m ${i}` });
      assert.equal(r.status, 200, `message ${i} with limits off: ${r.status} ${JSON.stringify(r.body)}`);
    }
  });
});

describe('registration policy', { timeout: 60_000 }, () => {
  let closed: TestServer;
  let tokenServer: TestServer;
  const TOKEN = 'ranvier-invite-2024';

  before(async () => {
    [closed, tokenServer] = await Promise.all([
      startTestServer({ allow_registration: false }),
      startTestServer({ allow_registration: false, registration_token: TOKEN }),
    ]);
  });

  after(async () => {
    await Promise.all([closed?.close(), tokenServer?.close()]);
  });

  test('registration disabled: 403 M_FORBIDDEN', async () => {
    const first = await request(closed.url, 'POST', `${CS}/register`, { body: { username: 'newbie', password: PASSWORD } });
    assertError(first, 403, 'M_FORBIDDEN', 'register on a closed server');
    const dummy = await request(closed.url, 'POST', `${CS}/register`, {
      body: { username: 'newbie', password: PASSWORD, auth: { type: 'm.login.dummy' } },
    });
    assertError(dummy, 403, 'M_FORBIDDEN', 'register on a closed server with m.login.dummy');
    // nothing was created
    const l = await login(closed.url, 'newbie', PASSWORD);
    assert.equal(l.status, 403);
    const validity = await request(closed.url, 'GET', `/_matrix/client/v1/register/m.login.registration_token/validity?token=anything`);
    assertError(validity, 403, 'M_FORBIDDEN', 'token validity on a server without registration');
  });

  test('registration token: required, checked, and accepted', async () => {
    const url = tokenServer.url;
    const first = await request(url, 'POST', `${CS}/register`, { body: { username: 'invited', password: PASSWORD } });
    assert.equal(first.status, 401, `register without a token: ${JSON.stringify(first.body)}`);
    assert.equal(typeof first.body.session, 'string');
    const flows: Array<{ stages: string[] }> = first.body.flows;
    assert.ok(Array.isArray(flows) && flows.length > 0, 'flows offered');
    assert.ok(
      flows.every((f) => f.stages.includes('m.login.registration_token')),
      `every flow needs the token: ${JSON.stringify(flows)}`,
    );
    const session = first.body.session;

    // m.login.dummy alone must not get around the token
    const bypass = await request(url, 'POST', `${CS}/register`, {
      body: { username: 'invited', password: PASSWORD, auth: { type: 'm.login.dummy', session } },
    });
    assert.equal(bypass.status, 401, `dummy auth must not register: ${JSON.stringify(bypass.body)}`);
    assert.equal(bypass.body.user_id, undefined);

    const wrong = await request(url, 'POST', `${CS}/register`, {
      body: { username: 'invited', password: PASSWORD, auth: { type: 'm.login.registration_token', token: 'wrong-token', session } },
    });
    assert.equal(wrong.status, 401, `wrong token: ${JSON.stringify(wrong.body)}`);
    assert.equal(typeof wrong.body.errcode, 'string', 'a failed stage carries an errcode');
    assert.ok(Array.isArray(wrong.body.flows), 'a failed stage repeats the flows');
    assert.equal(wrong.body.user_id, undefined);

    const right = await registerRaw(url, { username: 'invited', password: PASSWORD }, (stage, s) =>
      stage === 'm.login.registration_token'
        ? { type: stage, token: TOKEN, session: s }
        : stage === 'm.login.dummy'
          ? { type: stage, session: s }
          : undefined,
    );
    assert.equal(right.status, 200, `right token: ${JSON.stringify(right.body)}`);
    assert.equal(right.body.user_id, `@invited:${tokenServer.serverName}`);
    assert.equal(typeof right.body.access_token, 'string');
    const who = await request(url, 'GET', `${CS}/account/whoami`, { token: right.body.access_token });
    assert.equal(who.body.user_id, right.body.user_id);

    const v = '/_matrix/client/v1/register/m.login.registration_token/validity';
    const good = await request(url, 'GET', `${v}?token=${enc(TOKEN)}`);
    assert.equal(good.status, 200);
    assert.deepEqual(good.body, { valid: true });
    const bad = await request(url, 'GET', `${v}?token=nope`);
    assert.equal(bad.status, 200);
    assert.deepEqual(bad.body, { valid: false });
  });
});
