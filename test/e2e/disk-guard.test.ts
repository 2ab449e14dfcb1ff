/**
 * Low disk over HTTP: with a fake statfs reporting less than
 * min_free_disk_bytes, message and state sends, room creation, registration
 * and media uploads get 507 M_RESOURCE_LIMIT_EXCEEDED and store nothing,
 * while reads keep working; once space is back, writes succeed again.
 *
 *   node --import tsx --test test/e2e/disk-guard.test.ts
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { startTestServer, registerUser, type TestServer } from './harness.js';
import { Api, enc } from './util.js';
import { DiskGuard } from '../../src/server/disk-guard.js';

let srv: TestServer;
let api: Api;
let roomId: string;
let free = 10 * 2 ** 30;

before(async () => {
  // The real disk never refuses here (floor 0); the fake guard below has the floor under test.
  srv = await startTestServer({ min_free_disk_bytes: 0 });
  const alice = await registerUser(srv.url, 'alice', 'pw-alice-1');
  api = new Api(srv.url, alice.accessToken);
  roomId = await api.createRoom({ name: 'full disk' });
  // Swap in a guard whose filesystem we control; no caching so each step sees the new value.
  srv.ctx.disk = new DiskGuard({
    dir: srv.config.data_dir,
    minFreeBytes: 256 * 2 ** 20,
    log: pino({ level: 'silent' }),
    adminContact: () => srv.config.public_baseurl,
    cacheMs: 0,
    statfs: async () => ({ bavail: Math.floor(free / 4096), bsize: 4096 }),
  });
});

after(() => srv?.close());

type ErrorBody = { errcode?: string; admin_contact?: unknown } | undefined;

function assertRefused(r: { status: number; body: ErrorBody }, what: string) {
  assert.equal(r.status, 507, `${what}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body?.errcode, 'M_RESOURCE_LIMIT_EXCEEDED', what);
  assert.equal(typeof r.body?.admin_contact, 'string', `${what}: admin_contact is required by the spec`);
}

async function countRows(table: 'events' | 'media' | 'users'): Promise<number> {
  const row = await srv.ctx.storage.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

test('low disk refuses writes and stores nothing; reads still work; space back: writes work', async () => {
  const before = { events: await countRows('events'), media: await countRows('media'), users: await countRows('users') };
  free = 100 * 2 ** 20;

  assertRefused(await api.put(`/rooms/${enc(roomId)}/send/m.room.message/t1`, { msgtype: 'm.text', body: 'hello' }), 'send');
  assertRefused(await api.put(`/rooms/${enc(roomId)}/state/m.room.topic/`, { topic: 'x' }), 'state');
  assertRefused(await api.put(`/rooms/${enc(roomId)}/state/m.room.topic`, { topic: 'x' }), 'state without key');
  assertRefused(await api.post('/createRoom', {}), 'createRoom');
  assertRefused(await new Api(srv.url).post('/register', { username: 'bob', password: 'pw-bob-12' }), 'register');
  // Legacy r0 paths are aliases and must not slip through.
  assertRefused(await api.call('PUT', `/_matrix/client/r0/rooms/${enc(roomId)}/send/m.room.message/t2`, { msgtype: 'm.text', body: 'r0' }), 'r0 send');

  // Federation transactions too (refused before authentication; the sender retries later).
  assertRefused(await new Api(srv.url).put('/_matrix/federation/v1/send/txn1', { origin: 'remote.example', pdus: [], edus: [] }), 'federation send');

  const up = await fetch(`${srv.url}/_matrix/media/v3/upload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${api.token}`, 'content-type': 'text/plain' },
    body: 'some bytes',
  });
  assertRefused({ status: up.status, body: (await up.json()) as ErrorBody }, 'upload');

  const created = await api.ok('POST', '/_matrix/media/v1/create');
  const mediaId = String(created.content_uri).split('/').pop();
  const put = await fetch(`${srv.url}/_matrix/media/v3/upload/localhost/${mediaId}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${api.token}`, 'content-type': 'text/plain' },
    body: 'some bytes',
  });
  assertRefused({ status: put.status, body: (await put.json()) as ErrorBody }, 'upload to a created id');

  assert.equal(await countRows('events'), before.events, 'no event stored');
  assert.equal(await countRows('users'), before.users, 'no user created');
  assert.equal(await countRows('media'), before.media + 1, 'only the (empty) reservation from /create');

  // Reads keep working so users can still see their rooms.
  const sync = await api.sync({ timeout: 0 });
  assert.ok(sync.rooms.join[roomId], 'sync still answers');
  assert.equal((await api.messages(roomId)).status, 200);

  free = 10 * 2 ** 30;
  const eventId = await api.send(roomId, 'space is back');
  assert.match(eventId, /^\$/);
  assert.equal(await countRows('events'), before.events + 1);
});
