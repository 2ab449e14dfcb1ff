/**
 * Send-to-device messaging and MSC3814 dehydrated devices over HTTP:
 * delivery through /sync, `*` fan-out, idempotent retransmission, the
 * acknowledgement (deletion) by the next sync token, the 100-message cap,
 * device deletion, a restart between delivery and acknowledgement, and the
 * errors.
 *
 *   node --import tsx --test test/e2e/to-device.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { adminQuery, startTestServer, registerUser, testEngine, testPostgresAdminUrl, type RegisteredUser, type TestServer } from './harness.js';
import { Api, enc, login } from './util.js';

const PASSWORD = 'to-device password';
const DEHYDRATED = '/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device';

type Body = any;

let txnCounter = 0;
const txn = () => `txn-${Date.now()}-${++txnCounter}`;

function sendToDevice(api: Api, type: string, txnId: string, messages: unknown) {
  return api.put(`/sendToDevice/${enc(type)}/${enc(txnId)}`, { messages });
}

async function okSend(api: Api, type: string, messages: unknown, txnId = txn()): Promise<void> {
  const r = await sendToDevice(api, type, txnId, messages);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, {});
}

/** An incremental sync that returns at once; the to-device events and the token. */
async function syncToDevice(api: Api, since: string | undefined): Promise<{ events: Body[]; token: string }> {
  const s = await api.sync({ since, timeout: 0 });
  return { events: s.to_device?.events ?? [], token: s.next_batch };
}

async function pendingRows(server: TestServer, userId: string, deviceId?: string): Promise<number> {
  let q = server.ctx.storage.db.selectFrom('to_device_messages').select('stream_pos').where('user_id', '=', userId);
  if (deviceId) q = q.where('device_id', '=', deviceId);
  return (await q.execute()).length;
}

describe('send-to-device', { timeout: 120_000 }, () => {
  let server: TestServer;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let a: Api;
  let b: Api;
  let b2: Api;
  let bob2Device: string;

  before(async () => {
    server = await startTestServer();
    alice = await registerUser(server.url, 'alice', PASSWORD);
    bob = await registerUser(server.url, 'bob', PASSWORD);
    a = new Api(server.url, alice.accessToken);
    b = new Api(server.url, bob.accessToken);
    const l = await login(server.url, 'bob', PASSWORD, 'second');
    assert.equal(l.status, 200);
    b2 = new Api(server.url, l.body.access_token);
    bob2Device = l.body.device_id;
  });
  after(() => server?.close());

  test('a message to one device reaches that device only, with sender, type and content', async () => {
    const t1 = (await syncToDevice(b, undefined)).token;
    const t2 = (await syncToDevice(b2, undefined)).token;
    const ta = (await syncToDevice(a, undefined)).token;
    await okSend(a, 'm.test', { [bob.userId]: { [bob.deviceId]: { hello: 'one' } } });
    const got = await syncToDevice(b, t1);
    assert.deepEqual(got.events, [{ sender: alice.userId, type: 'm.test', content: { hello: 'one' } }]);
    assert.deepEqual((await syncToDevice(b2, t2)).events, []);
    assert.deepEqual((await syncToDevice(a, ta)).events, []);
    // Acknowledge.
    assert.deepEqual((await syncToDevice(b, got.token)).events, []);
    assert.equal(await pendingRows(server, bob.userId), 0);
  });

  test('a waiting long-poll returns when a message arrives', async () => {
    const t = (await syncToDevice(b, undefined)).token;
    const poll = b.sync({ since: t, timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    await okSend(a, 'm.wake', { [bob.userId]: { [bob.deviceId]: { n: 1 } } });
    const s = await poll;
    assert.ok(Date.now() - started < 5000);
    assert.deepEqual(s.to_device.events.map((e: Body) => e.type), ['m.wake']);
    await syncToDevice(b, s.next_batch);
  });

  test('* fans out to every device of the user; an explicit device wins over *', async () => {
    const t1 = (await syncToDevice(b, undefined)).token;
    const t2 = (await syncToDevice(b2, undefined)).token;
    await okSend(a, 'm.fan', { [bob.userId]: { '*': { to: 'all' } } });
    await okSend(a, 'm.fan2', { [bob.userId]: { '*': { to: 'all' }, [bob2Device]: { to: 'two' } } });
    const g1 = await syncToDevice(b, t1);
    const g2 = await syncToDevice(b2, t2);
    assert.deepEqual(g1.events.map((e) => [e.type, e.content.to]), [['m.fan', 'all'], ['m.fan2', 'all']]);
    assert.deepEqual(g2.events.map((e) => [e.type, e.content.to]), [['m.fan', 'all'], ['m.fan2', 'two']]);
    await syncToDevice(b, g1.token);
    await syncToDevice(b2, g2.token);
    assert.equal(await pendingRows(server, bob.userId), 0);
  });

  test('retransmitting a txnId delivers once; a new txnId delivers again', async () => {
    const t = (await syncToDevice(b, undefined)).token;
    const id = txn();
    await okSend(a, 'm.idem', { [bob.userId]: { [bob.deviceId]: { n: 1 } } }, id);
    await okSend(a, 'm.idem', { [bob.userId]: { [bob.deviceId]: { n: 1 } } }, id);
    let g = await syncToDevice(b, t);
    assert.equal(g.events.length, 1);
    await okSend(a, 'm.idem', { [bob.userId]: { [bob.deviceId]: { n: 2 } } });
    g = await syncToDevice(b, g.token);
    assert.deepEqual(g.events.map((e) => e.content.n), [2]);
    await syncToDevice(b, g.token);
  });

  test('messages stay until a later token acknowledges them (a retried sync gets them again)', async () => {
    const t0 = (await syncToDevice(b, undefined)).token;
    await okSend(a, 'm.ack', { [bob.userId]: { [bob.deviceId]: { n: 1 } } });
    const first = await syncToDevice(b, t0);
    assert.equal(first.events.length, 1);
    // The response was lost: the client retries with the same token.
    const again = await syncToDevice(b, t0);
    assert.deepEqual(again.events, first.events);
    assert.equal(await pendingRows(server, bob.userId, bob.deviceId), 1);
    const next = await syncToDevice(b, again.token);
    assert.deepEqual(next.events, []);
    assert.equal(await pendingRows(server, bob.userId, bob.deviceId), 0);
    // An initial sync does not see acknowledged messages.
    assert.deepEqual((await syncToDevice(b, undefined)).events, []);
  });

  test('at most 100 per sync; the rest come with the next token, in order, once each', async () => {
    const t0 = (await syncToDevice(b, undefined)).token;
    for (let i = 0; i < 130; i++) await okSend(a, 'm.many', { [bob.userId]: { [bob.deviceId]: { i } } });
    const first = await b.sync({ since: t0, timeout: 0 });
    assert.equal(first.to_device.events.length, 100);
    assert.match(first.next_batch, /^s\d+_\d+_\d+$/);
    // The next sync answers at once even with a timeout: there is more.
    const started = Date.now();
    const second = await b.sync({ since: first.next_batch, timeout: 5000 });
    assert.ok(Date.now() - started < 2000);
    assert.equal(second.to_device.events.length, 30);
    assert.match(second.next_batch, /^s\d+_\d+$/);
    const all = [...first.to_device.events, ...second.to_device.events].map((e: Body) => e.content.i);
    assert.deepEqual(all, Array.from({ length: 130 }, (_, i) => i));
    assert.equal(await pendingRows(server, bob.userId, bob.deviceId), 30);
    assert.deepEqual((await syncToDevice(b, second.next_batch)).events, []);
    assert.equal(await pendingRows(server, bob.userId, bob.deviceId), 0);
  });

  test('unknown users, devices and remote users are ignored', async () => {
    const t = (await syncToDevice(b, undefined)).token;
    await okSend(a, 'm.unknown', {
      '@nobody:localhost': { '*': { x: 1 } },
      '@someone:elsewhere.example': { DEV: { x: 1 } },
      [bob.userId]: { NOSUCHDEVICE: { x: 1 } },
      'not a user id': { D: { x: 1 } },
    });
    assert.deepEqual((await syncToDevice(b, t)).events, []);
    assert.equal(await pendingRows(server, '@nobody:localhost'), 0);
  });

  test('deleting a device deletes its pending messages', async () => {
    const l = await login(server.url, 'bob', PASSWORD, 'third');
    const dev = l.body.device_id as string;
    await okSend(a, 'm.gone', { [bob.userId]: { [dev]: { x: 1 } } });
    await okSend(a, 'm.gone', { [bob.userId]: { [dev]: { x: 2 } } });
    assert.equal(await pendingRows(server, bob.userId, dev), 2);
    const third = new Api(server.url, l.body.access_token);
    assert.equal((await third.post('/logout', {})).status, 200);
    assert.equal(await pendingRows(server, bob.userId, dev), 0);
  });

  test('errors: bad bodies, bad auth, too large', async () => {
    const bad = async (body: unknown, errcode = 'M_BAD_JSON', status = 400) => {
      const r = await a.put(`/sendToDevice/m.x/${txn()}`, body);
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.equal(r.body.errcode, errcode);
    };
    await bad({});
    await bad({ messages: [] });
    await bad({ messages: 'x' });
    await bad({ messages: { [bob.userId]: 'x' } });
    await bad({ messages: { [bob.userId]: { [bob.deviceId]: 'x' } } });
    await bad({ messages: { [bob.userId]: { [bob.deviceId]: [1] } } });
    await bad({ messages: { [bob.userId]: { [bob.deviceId]: { big: 'x'.repeat(70_000) } } } }, 'M_TOO_LARGE', 413);
    const noAuth = await new Api(server.url).put(`/sendToDevice/m.x/${txn()}`, { messages: {} });
    assert.equal(noAuth.status, 401);
    assert.equal(noAuth.body.errcode, 'M_MISSING_TOKEN');
    // A refused request did not burn its transaction id.
    const id = txn();
    await bad({ messages: { [bob.userId]: { [bob.deviceId]: 'x' } } }).catch(() => {});
    const t = (await syncToDevice(b, undefined)).token;
    await okSend(a, 'm.after', { [bob.userId]: { [bob.deviceId]: {} } }, id);
    const g = await syncToDevice(b, t);
    assert.equal(g.events.length, 1);
    await syncToDevice(b, g.token);
  });

  describe('dehydrated devices (MSC3814)', () => {
    let carol: RegisteredUser;
    let c: Api;
    before(async () => {
      carol = await registerUser(server.url, 'carol', PASSWORD);
      c = new Api(server.url, carol.accessToken);
    });

    test('none yet: GET, DELETE and events are 404 M_NOT_FOUND', async () => {
      for (const r of [await c.get(DEHYDRATED), await c.call('DELETE', DEHYDRATED), await c.post(`${DEHYDRATED}/X/events`, {})]) {
        assert.equal(r.status, 404);
        assert.equal(r.body.errcode, 'M_NOT_FOUND');
      }
    });

    test('bad PUT bodies are M_BAD_JSON; a device id of an ordinary device is refused', async () => {
      for (const body of [{}, { device_id: 'DH' }, { device_data: {} }, { device_id: 'DH', device_data: 'x' }, { device_id: 1, device_data: {} }]) {
        const r = await c.put(DEHYDRATED, body);
        assert.equal(r.status, 400, JSON.stringify(body));
        assert.equal(r.body.errcode, 'M_BAD_JSON');
      }
      const r = await c.put(DEHYDRATED, { device_id: carol.deviceId, device_data: {} });
      assert.equal(r.status, 400);
      assert.equal(r.body.errcode, 'M_INVALID_PARAM');
      assert.equal((await c.get(DEHYDRATED)).status, 404);
    });

    test('bad keys are refused and leave no device behind', async () => {
      const r = await c.put(DEHYDRATED, { device_id: 'DHBAD', device_data: {}, device_keys: { nonsense: true } });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal((await c.get(DEHYDRATED)).status, 404);
      const devices = await c.ok('GET', '/devices');
      assert.ok(!devices.devices.some((d: Body) => d.device_id === 'DHBAD'));
    });

    test('PUT, GET, listed as a device, receives to-device messages, paginated events, replace, DELETE', async () => {
      const data = { algorithm: 'org.matrix.msc3814.v1.olm', device_pickle: 'abc' };
      assert.deepEqual(await c.ok('PUT', DEHYDRATED, { device_id: 'DH1', device_data: data, initial_device_display_name: 'Dehydrated' }), { device_id: 'DH1' });
      assert.deepEqual(await c.ok('GET', DEHYDRATED), { device_id: 'DH1', device_data: data });
      const devices = await c.ok('GET', '/devices');
      assert.ok(devices.devices.some((d: Body) => d.device_id === 'DH1' && d.display_name === 'Dehydrated'));
      // Another user (bob) can't see it as his.
      const rb = await b.get(DEHYDRATED);
      assert.equal(rb.status, 404);
      const rbe = await b.post(`${DEHYDRATED}/DH1/events`, {});
      assert.equal(rbe.status, 404);

      await okSend(a, 'm.room.encrypted', { [carol.userId]: { DH1: { n: 0 } } });
      for (let i = 1; i <= 104; i++) await okSend(a, 'm.room.encrypted', { [carol.userId]: { '*': { n: i } } });
      const p1 = await c.ok('POST', `${DEHYDRATED}/DH1/events`, {});
      assert.equal(p1.events.length, 100);
      assert.deepEqual(p1.events[0], { sender: alice.userId, type: 'm.room.encrypted', content: { n: 0 } });
      assert.equal(typeof p1.next_batch, 'string');
      const p2 = await c.ok('POST', `${DEHYDRATED}/DH1/events`, { next_batch: p1.next_batch });
      assert.deepEqual(p2.events.map((e: Body) => e.content.n), [100, 101, 102, 103, 104]);
      assert.equal(await pendingRows(server, carol.userId, 'DH1'), 5);
      const p3 = await c.ok('POST', `${DEHYDRATED}/DH1/events`, { next_batch: p2.next_batch });
      assert.deepEqual(p3.events, []);
      assert.equal(p3.next_batch, p2.next_batch);
      assert.equal(await pendingRows(server, carol.userId, 'DH1'), 0);

      // Wrong device id, bad next_batch.
      const wrong = await c.post(`${DEHYDRATED}/OTHER/events`, {});
      assert.equal(wrong.status, 403);
      assert.equal(wrong.body.errcode, 'M_FORBIDDEN');
      const badBatch = await c.post(`${DEHYDRATED}/DH1/events`, { next_batch: 'abc' });
      assert.equal(badBatch.status, 400);

      // Replace: the old device and its messages go.
      await okSend(a, 'm.room.encrypted', { [carol.userId]: { DH1: { n: 'old' } } });
      assert.deepEqual(await c.ok('PUT', DEHYDRATED, { device_id: 'DH2', device_data: { v: 2 } }), { device_id: 'DH2' });
      assert.deepEqual(await c.ok('GET', DEHYDRATED), { device_id: 'DH2', device_data: { v: 2 } });
      assert.equal(await pendingRows(server, carol.userId, 'DH1'), 0);
      const ids = (await c.ok('GET', '/devices')).devices.map((d: Body) => d.device_id);
      assert.ok(ids.includes('DH2') && !ids.includes('DH1'));

      assert.deepEqual(await c.ok('DELETE', DEHYDRATED), { device_id: 'DH2' });
      assert.equal((await c.get(DEHYDRATED)).status, 404);
      assert.ok(!(await c.ok('GET', '/devices')).devices.some((d: Body) => d.device_id === 'DH2'));
    });
  });
});

describe('send-to-device across a restart', { timeout: 120_000 }, () => {
  let dataDir: string;
  let database: string | undefined;
  let dbName: string | undefined;
  let server: TestServer | undefined;

  const start = () => startTestServer({ data_dir: dataDir, ...(database ? { database } : {}) });

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ranvier-todevice-'));
    if (testEngine() === 'postgres') {
      dbName = `ranvier_td_${randomBytes(6).toString('hex')}`;
      await adminQuery(`CREATE DATABASE ${dbName}`);
      const u = new URL(testPostgresAdminUrl());
      u.pathname = '/' + dbName;
      database = u.toString();
    }
  });
  after(async () => {
    await server?.close();
    await rm(dataDir, { recursive: true, force: true });
    if (dbName) await adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  });

  test('delivered but unacknowledged messages survive a restart; acknowledged ones never come back', async () => {
    server = await start();
    const alice = await registerUser(server.url, 'alice', PASSWORD);
    const bob = await registerUser(server.url, 'bob', PASSWORD);
    let a = new Api(server.url, alice.accessToken);
    let b = new Api(server.url, bob.accessToken);
    const t0 = (await syncToDevice(b, undefined)).token;
    for (let i = 0; i < 120; i++) await okSend(a, 'm.restart', { [bob.userId]: { [bob.deviceId]: { i } } });
    const first = await b.sync({ since: t0, timeout: 0 });
    assert.equal(first.to_device.events.length, 100);

    await server.close();
    server = await start();
    a = new Api(server.url, alice.accessToken);
    b = new Api(server.url, bob.accessToken);

    // The first response was lost: retrying with t0 delivers the same 100 again.
    const retry = await b.sync({ since: t0, timeout: 0 });
    assert.deepEqual(retry.to_device.events, first.to_device.events);
    // Continuing from the capped token delivers the other 20, once.
    const second = await b.sync({ since: first.next_batch, timeout: 0 });
    assert.deepEqual(second.to_device.events.map((e: Body) => e.content.i), Array.from({ length: 20 }, (_, i) => 100 + i));

    await server.close();
    server = await start();
    b = new Api(server.url, bob.accessToken);
    a = new Api(server.url, alice.accessToken);
    const third = await b.sync({ since: second.next_batch, timeout: 0 });
    assert.deepEqual(third.to_device.events, []);
    assert.equal(await pendingRows(server, bob.userId), 0);
    // Sending still works after restarts (positions continue).
    await okSend(a, 'm.restart', { [bob.userId]: { [bob.deviceId]: { i: 'new' } } });
    const fourth = await b.sync({ since: third.next_batch, timeout: 0 });
    assert.deepEqual(fourth.to_device.events.map((e: Body) => e.content.i), ['new']);
  });
});
