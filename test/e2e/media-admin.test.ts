/**
 * The Synapse-compatible media admin API over HTTP (auth, purge of the remote
 * cache, quarantine and protection, deletion, media info, a user's media
 * list), and URL preview images stored as local media.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- media-admin
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { startTestServer, registerUser, type RegisteredUser, type TestServer } from './harness.js';
import { Api, enc, expectError, request } from './util.js';

const PASSWORD = 'hunter2 but longer';
const ADMIN = '/_synapse/admin/v1';
const CLIENT_MEDIA = '/_matrix/client/v1/media';

/** One entry of GET /users/{user_id}/media. */
interface MediaItem { media_id: string; media_length: number }

const idOf = (mxc: string) => mxc.slice(mxc.lastIndexOf('/') + 1);

describe('media admin API', { timeout: 90_000 }, () => {
  let srv: TestServer;
  let admin: RegisteredUser;
  let alice: RegisteredUser;
  let aliceApi: Api;
  let site: http.Server;
  let siteUrl: string;
  let png: Buffer;

  async function upload(user: RegisteredUser, body: Buffer | string, contentType = 'application/octet-stream'): Promise<string> {
    const res = await fetch(`${srv.url}/_matrix/media/v3/upload`, {
      method: 'POST', headers: { authorization: `Bearer ${user.accessToken}`, 'content-type': contentType }, body,
    });
    const json = (await res.json()) as { content_uri: string };
    assert.equal(res.status, 200, JSON.stringify(json));
    return json.content_uri;
  }

  async function download(user: RegisteredUser, mxc: string): Promise<{ status: number; bytes: Buffer; errcode?: string }> {
    const res = await fetch(`${srv.url}${CLIENT_MEDIA}/download/${mxc.slice('mxc://'.length)}`, { headers: { authorization: `Bearer ${user.accessToken}` } });
    const bytes = Buffer.from(await res.arrayBuffer());
    let errcode: string | undefined;
    if (res.status !== 200) errcode = (JSON.parse(bytes.toString()) as { errcode?: string }).errcode;
    return { status: res.status, bytes, errcode };
  }

  async function thumbnailStatus(user: RegisteredUser, mxc: string): Promise<number> {
    const res = await fetch(`${srv.url}${CLIENT_MEDIA}/thumbnail/${mxc.slice('mxc://'.length)}?width=32&height=32`, { headers: { authorization: `Bearer ${user.accessToken}` } });
    await res.arrayBuffer();
    return res.status;
  }

  async function cacheRemote(origin: string, mediaId: string, body: string, lastAccessTs: number): Promise<string> {
    const stored = await srv.ctx.media.store.putBuffer(Buffer.from(body));
    await srv.ctx.storage.db.insertInto('remote_media').values({
      origin, media_id: mediaId, content_type: 'text/plain', upload_name: null, size: stored.size, sha256: stored.sha256,
      fetched_ts: lastAccessTs, last_access_ts: lastAccessTs, quarantined_by: null,
    }).execute();
    return stored.sha256;
  }

  /** An admin API call as the admin (Api.call would put /_synapse paths under the client API). */
  function adm(method: string, path: string) {
    return request(srv.url, method, path, { token: admin.accessToken, body: method === 'GET' ? undefined : {} });
  }

  before(async () => {
    png = await sharp({ create: { width: 10, height: 7, channels: 3, background: { r: 10, g: 200, b: 30 } } }).png().toBuffer();
    site = http.createServer((req, res) => {
      switch ((req.url ?? '/').split('?')[0]) {
        case '/article':
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
          res.end(`<html><head><title>With image</title><meta property="og:image" content="/pic.png">
            <meta property="og:image:width" content="9999"></head><body></body></html>`);
          return;
        case '/twitter':
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end(`<html><head><title>Tweet</title><meta name="twitter:image" content="/pic.png"></head></html>`);
          return;
        case '/broken':
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end(`<html><head><title>Broken image</title><meta property="og:image" content="/missing.png"></head></html>`);
          return;
        case '/pic.png':
          res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(png.length) });
          res.end(png);
          return;
        default:
          res.writeHead(404);
          res.end();
      }
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;

    srv = await startTestServer({ url_preview_ip_allowlist: '127.0.0.1' });
    admin = await registerUser(srv.url, 'admin', PASSWORD);
    alice = await registerUser(srv.url, 'alice', PASSWORD);
    await srv.ctx.storage.db.updateTable('users').set({ is_admin: 1 }).where('user_id', '=', admin.userId).execute();
    aliceApi = new Api(srv.url, alice.accessToken);
  });

  after(async () => {
    await srv?.close();
    site?.closeAllConnections();
    await new Promise((resolve) => site?.close(resolve));
  });

  test('every route: 401 without a token, 403 M_FORBIDDEN for a non-admin', async () => {
    const mxc = await upload(alice, 'untouchable');
    const id = idOf(mxc);
    const now = Date.now();
    const routes: Array<[string, string]> = [
      ['POST', `${ADMIN}/purge_media_cache?before_ts=${now}`],
      ['POST', `${ADMIN}/media/quarantine/localhost/${id}`],
      ['POST', `${ADMIN}/media/unquarantine/localhost/${id}`],
      ['POST', `${ADMIN}/room/${enc('!nowhere:localhost')}/media/quarantine`],
      ['POST', `${ADMIN}/user/${enc(alice.userId)}/media/quarantine`],
      ['POST', `${ADMIN}/media/protect/${id}`],
      ['POST', `${ADMIN}/media/unprotect/${id}`],
      ['DELETE', `${ADMIN}/media/localhost/${id}`],
      ['POST', `${ADMIN}/media/delete?before_ts=${now + 60_000}`],
      ['POST', `${ADMIN}/media/localhost/delete?before_ts=${now + 60_000}`],
      ['GET', `${ADMIN}/media/localhost/${id}`],
      ['GET', `${ADMIN}/users/${enc(alice.userId)}/media`],
    ];
    for (const [method, path] of routes) {
      const body = method === 'GET' ? undefined : {};
      expectError(await request(srv.url, method, path, { body }), 401, 'M_MISSING_TOKEN', `${method} ${path} without a token`);
      expectError(await request(srv.url, method, path, { token: alice.accessToken, body }), 403, 'M_FORBIDDEN', `${method} ${path} as alice`);
    }
    // Nothing happened on alice's behalf.
    const d = await download(alice, mxc);
    assert.equal(d.status, 200);
    assert.equal(d.bytes.toString(), 'untouchable');
  });

  test('purge_media_cache deletes cached remote media last used before before_ts, bytes too', async () => {
    const now = Date.now();
    const oldSha = await cacheRemote('remote.example', 'oldOne', 'old remote', now - 10 * 86_400_000);
    await cacheRemote('remote.example', 'freshOne', 'fresh remote', now);
    const local = await upload(alice, 'local is not remote cache');

    expectError(await adm('POST', `${ADMIN}/purge_media_cache`), 400, 'M_MISSING_PARAM', 'no before_ts');
    expectError(await adm('POST', `${ADMIN}/purge_media_cache?before_ts=soon`), 400, 'M_INVALID_PARAM', 'not a number');
    expectError(await adm('POST', `${ADMIN}/purge_media_cache?before_ts=-5`), 400, 'M_INVALID_PARAM', 'negative');
    expectError(await adm('POST', `${ADMIN}/purge_media_cache?before_ts=1700000000`), 400, 'M_INVALID_PARAM', 'seconds, not ms');

    const r = await adm('POST', `${ADMIN}/purge_media_cache?before_ts=${now - 86_400_000}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { deleted: 1 });
    const left = (await srv.ctx.storage.db.selectFrom('remote_media').select('media_id').execute()).map((x) => x.media_id);
    assert.deepEqual(left, ['freshOne']);
    assert.equal(await srv.ctx.media.store.has(oldSha), false, 'the bytes went with the row');
    assert.equal((await download(alice, local)).status, 200, 'local media is not touched');

    const info = await adm('GET', `${ADMIN}/media/remote.example/freshOne`);
    assert.equal(info.status, 200);
    assert.equal(info.body.media_info.media_origin, 'remote.example');
    expectError(await adm('GET', `${ADMIN}/media/remote.example/oldOne`), 404, 'M_NOT_FOUND', 'purged remote media info');
  });

  test('quarantine by id: download and thumbnail answer 404 until unquarantined; protected media is exempt', async () => {
    const mxc = await upload(alice, png, 'image/png');
    const id = idOf(mxc);
    assert.equal((await download(alice, mxc)).status, 200);

    let r = await adm('POST', `${ADMIN}/media/quarantine/localhost/${id}`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, {});
    const d = await download(alice, mxc);
    assert.equal(d.status, 404);
    assert.equal(d.errcode, 'M_NOT_FOUND');
    assert.equal((await download(admin, mxc)).status, 404, 'admins too');
    assert.equal(await thumbnailStatus(alice, mxc), 404);
    const legacy = await fetch(`${srv.url}/_matrix/media/v3/download/localhost/${id}`);
    await legacy.arrayBuffer();
    assert.equal(legacy.status, 404, 'legacy download too');

    const info = await adm('GET', `${ADMIN}/media/localhost/${id}`);
    assert.equal(info.body.media_info.quarantined_by, admin.userId);
    assert.equal(info.body.media_info.user_id, alice.userId);

    r = await adm('POST', `${ADMIN}/media/unquarantine/localhost/${id}`);
    assert.equal(r.status, 200);
    const back = await download(alice, mxc);
    assert.equal(back.status, 200);
    assert.deepEqual(back.bytes, png);

    // Protected media cannot be quarantined, not even with the rest of its uploader's media.
    assert.equal((await adm('POST', `${ADMIN}/media/protect/${id}`)).status, 200);
    await adm('POST', `${ADMIN}/media/quarantine/localhost/${id}`);
    assert.equal((await download(alice, mxc)).status, 200);
    assert.equal((await adm('GET', `${ADMIN}/media/localhost/${id}`)).body.media_info.safe_from_quarantine, true);
    assert.equal((await adm('POST', `${ADMIN}/media/unprotect/${id}`)).status, 200);
    await adm('POST', `${ADMIN}/media/quarantine/localhost/${id}`);
    assert.equal((await download(alice, mxc)).status, 404);
    await adm('POST', `${ADMIN}/media/unquarantine/localhost/${id}`);
  });

  test('quarantine a room\'s media and a user\'s media', async () => {
    const bob = await registerUser(srv.url, 'bob', PASSWORD);
    const bobApi = new Api(srv.url, bob.accessToken);
    const inRoom = await upload(bob, 'posted in the room');
    const thumb = await upload(bob, 'its thumbnail');
    const elsewhere = await upload(bob, 'never posted');
    const roomId = await bobApi.createRoom({});
    await bobApi.send(roomId, { msgtype: 'm.file', body: 'file', url: inRoom, info: { thumbnail_url: thumb } });

    let r = await adm('POST', `${ADMIN}/room/${enc(roomId)}/media/quarantine`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { num_quarantined: 2 });
    assert.equal((await download(bob, inRoom)).status, 404);
    assert.equal((await download(bob, thumb)).status, 404);
    assert.equal((await download(bob, elsewhere)).status, 200, 'media not in the room is untouched');
    expectError(await adm('POST', `${ADMIN}/room/not-a-room/media/quarantine`), 400, 'M_INVALID_PARAM', 'bad room id');

    r = await adm('POST', `${ADMIN}/user/${enc(bob.userId)}/media/quarantine`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { num_quarantined: 3 });
    assert.equal((await download(bob, elsewhere)).status, 404);
  });

  test('delete by id and by date and size', async () => {
    const carol = await registerUser(srv.url, 'carol', PASSWORD);
    const mxc = await upload(carol, 'delete me');
    const id = idOf(mxc);
    const sha = (await srv.ctx.storage.db.selectFrom('media').select('sha256').where('media_id', '=', id).executeTakeFirstOrThrow()).sha256!;

    expectError(await adm('DELETE', `${ADMIN}/media/elsewhere.example/${id}`), 400, 'M_UNKNOWN', 'remote media');
    let r = await adm('DELETE', `${ADMIN}/media/localhost/${id}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { deleted_media: [id], total: 1 });
    assert.equal((await download(carol, mxc)).status, 404);
    assert.equal(await srv.ctx.media.store.has(sha), false, 'bytes deleted');
    expectError(await adm('DELETE', `${ADMIN}/media/localhost/${id}`), 404, 'M_NOT_FOUND', 'already deleted');
    expectError(await adm('GET', `${ADMIN}/media/localhost/${id}`), 404, 'M_NOT_FOUND', 'info of deleted media');

    // By date and size: only big files (the rest of this suite's uploads are small).
    const big = (fill: string) => Buffer.alloc(6000, fill);
    const big1 = await upload(carol, big('a'));
    const big2 = await upload(carol, big('b'));
    const avatar = await upload(carol, big('c'));
    const small = await upload(carol, 'small');
    await new Api(srv.url, carol.accessToken).put(`/profile/${enc(carol.userId)}/avatar_url`, { avatar_url: avatar });
    const until = Date.now() + 60_000;

    expectError(await adm('POST', `${ADMIN}/media/delete`), 400, 'M_MISSING_PARAM', 'no before_ts');
    expectError(await adm('POST', `${ADMIN}/media/delete?before_ts=${until}&size_gt=big`), 400, 'M_INVALID_PARAM', 'bad size_gt');
    expectError(await adm('POST', `${ADMIN}/media/delete?before_ts=${until}&keep_profiles=maybe`), 400, 'M_INVALID_PARAM', 'bad keep_profiles');
    expectError(await adm('POST', `${ADMIN}/media/elsewhere.example/delete?before_ts=${until}`), 400, 'M_UNKNOWN', 'legacy path, other server');

    r = await adm('POST', `${ADMIN}/media/delete?before_ts=${until}&size_gt=5000`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual([...r.body.deleted_media].sort(), [idOf(big1), idOf(big2)].sort());
    assert.equal(r.body.total, 2);
    assert.equal((await download(carol, big1)).status, 404);
    assert.equal((await download(carol, avatar)).status, 200, 'profile avatar kept (keep_profiles defaults to true)');
    assert.equal((await download(carol, small)).status, 200, 'small file kept');

    r = await adm('POST', `${ADMIN}/media/localhost/delete?before_ts=${until}&size_gt=5000&keep_profiles=false`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { deleted_media: [idOf(avatar)], total: 1 });
    assert.equal((await download(carol, avatar)).status, 404);
  });

  test('a user\'s media list: pages, order, errors', async () => {
    const dave = await registerUser(srv.url, 'dave', PASSWORD);
    const ids: string[] = [];
    for (const body of ['x', 'xxx', 'xx']) {
      ids.push(idOf(await upload(dave, body, 'text/plain')));
      await new Promise((r) => setTimeout(r, 5));
    }
    const path = `${ADMIN}/users/${enc(dave.userId)}/media`;
    let r = await adm('GET', path);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.total, 3);
    assert.equal(r.body.next_token, undefined);
    assert.deepEqual(r.body.media.map((m: MediaItem) => m.media_id), [...ids].reverse(), 'newest first by default');
    const m0 = r.body.media[2];
    assert.deepEqual(Object.keys(m0).sort(), ['created_ts', 'last_access_ts', 'media_id', 'media_length', 'media_type', 'quarantined_by', 'safe_from_quarantine', 'upload_name']);
    assert.equal(m0.media_length, 1);
    assert.equal(m0.media_type, 'text/plain');
    assert.equal(m0.safe_from_quarantine, false);

    r = await adm('GET', `${path}?limit=2`);
    assert.equal(r.body.media.length, 2);
    assert.equal(r.body.next_token, 2);
    r = await adm('GET', `${path}?limit=2&from=${r.body.next_token}`);
    assert.deepEqual(r.body.media.map((m: MediaItem) => m.media_id), [ids[0]]);
    assert.equal(r.body.next_token, undefined);

    r = await adm('GET', `${path}?order_by=media_length&dir=f`);
    assert.deepEqual(r.body.media.map((m: MediaItem) => m.media_length), [1, 2, 3]);
    r = await adm('GET', `${path}?order_by=media_length&dir=b`);
    assert.deepEqual(r.body.media.map((m: MediaItem) => m.media_length), [3, 2, 1]);

    expectError(await adm('GET', `${path}?order_by=colour`), 400, 'M_INVALID_PARAM', 'bad order_by');
    expectError(await adm('GET', `${path}?dir=up`), 400, 'M_INVALID_PARAM', 'bad dir');
    expectError(await adm('GET', `${path}?limit=-1`), 400, 'M_INVALID_PARAM', 'negative limit');
    expectError(await adm('GET', `${path}?from=x`), 400, 'M_INVALID_PARAM', 'bad from');
    expectError(await adm('GET', `${ADMIN}/users/${enc('@dave:elsewhere.example')}/media`), 400, 'M_UNKNOWN', 'remote user');
    expectError(await adm('GET', `${ADMIN}/users/${enc('@nobody:localhost')}/media`), 404, 'M_NOT_FOUND', 'unknown user');
  });

  test('URL preview images become local media of the requester', async () => {
    const preview = (url: string) => aliceApi.get(`${CLIENT_MEDIA}/preview_url?url=${enc(url)}`);
    const r = await preview(`${siteUrl}/article`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body['og:title'], 'With image');
    assert.match(r.body['og:image'], /^mxc:\/\/localhost\/[A-Za-z0-9_-]+$/);
    assert.equal(r.body['og:image:width'], 10, 'measured, not the page\'s claim');
    assert.equal(r.body['og:image:height'], 7);
    assert.equal(r.body['og:image:type'], 'image/png');
    assert.equal(r.body['matrix:image:size'], png.length);
    const d = await download(alice, r.body['og:image']);
    assert.equal(d.status, 200);
    assert.deepEqual(d.bytes, png, 'the stored image is the page\'s image, byte for byte');
    const info = await adm('GET', `${ADMIN}/media/localhost/${idOf(r.body['og:image'])}`);
    assert.equal(info.body.media_info.user_id, alice.userId, 'owned by the user who asked');

    const tw = await preview(`${siteUrl}/twitter`);
    assert.equal(tw.status, 200);
    assert.match(tw.body['og:image'], /^mxc:\/\//, 'twitter:image is used when there is no og:image');

    const broken = await preview(`${siteUrl}/broken`);
    assert.equal(broken.status, 200, 'an image that cannot be fetched does not fail the preview');
    assert.deepEqual(broken.body, { 'og:title': 'Broken image' });
  });
});
