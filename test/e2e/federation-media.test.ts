/**
 * Remote media between two Ranvier servers over TLS: a user on A uploads, a
 * user on B downloads mxc://a.test/... through B byte-exact, B serves it
 * again from its cache with A stopped, thumbnails of remote images, the
 * signed federation media route itself (multipart/mixed), and 401 for an
 * unsigned request to it.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- federation-media
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { Agent, fetch as undiciFetch } from 'undici';
import { readFederationMedia } from '../../src/media/multipart.js';
import { registerUser, type RegisteredUser, type TestServer } from './harness.js';
import { startFederation, type Federation } from './federation-harness.js';

const CLIENT_MEDIA = '/_matrix/client/v1/media';
const FEDERATION_MEDIA = '/_matrix/federation/v1/media';

async function upload(srv: TestServer, token: string, body: Uint8Array, contentType: string, filename: string): Promise<string> {
  const res = await fetch(`${srv.url}/_matrix/media/v3/upload?filename=${encodeURIComponent(filename)}`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': contentType }, body,
  });
  const json = (await res.json()) as { content_uri: string };
  assert.equal(res.status, 200, JSON.stringify(json));
  return json.content_uri;
}

function get(srv: TestServer, pathAndQuery: string, token: string) {
  return fetch(srv.url + pathAndQuery, { headers: { authorization: `Bearer ${token}` } });
}

async function png(width: number, height: number): Promise<Buffer> {
  // Noise, so the PNG is not trivially small and a thumbnail is clearly smaller.
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 7919) % 251;
  return sharp(raw, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

describe('remote media over federation', () => {
  let fed: Federation;
  let a: TestServer;
  let b: TestServer;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let image: Buffer;
  let imageId: string;
  const file = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 31 + 7) % 256));
  let fileId: string;

  before(async () => {
    fed = await startFederation(['a.test', 'b.test']);
    [a, b] = fed.servers;
    alice = await registerUser(a.url, 'alice', 'password-alice');
    bob = await registerUser(b.url, 'bob', 'password-bob');
    image = await png(800, 600);
    const imageMxc = await upload(a, alice.accessToken, image, 'image/png', 'picture.png');
    const fileMxc = await upload(a, alice.accessToken, file, 'application/octet-stream', 'data.bin');
    assert.match(imageMxc, /^mxc:\/\/a\.test\//);
    imageId = imageMxc.split('/').pop()!;
    fileId = fileMxc.split('/').pop()!;
  });
  after(() => fed?.close());

  test('an unsigned request to the federation media routes gets 401', async () => {
    const dispatcher = new Agent({ connect: { ca: fed.ca.cert } });
    try {
      for (const path of [`${FEDERATION_MEDIA}/download/${fileId}`, `${FEDERATION_MEDIA}/thumbnail/${imageId}?width=32&height=32`]) {
        // undici's own fetch: it takes a dispatcher trusting the test CA.
        const res = await undiciFetch(`${a.federationUrl}${path}`, { dispatcher });
        assert.equal(res.status, 401, path);
        assert.equal(((await res.json()) as { errcode: string }).errcode, 'M_UNAUTHORIZED');
      }
    } finally {
      await dispatcher.close();
    }
  });

  test('the signed federation route answers multipart/mixed: {} then the bytes', async () => {
    const res = await b.ctx.federation.client.requestStream('a.test', { method: 'GET', path: `${FEDERATION_MEDIA}/download/${fileId}` });
    assert.match(res.headers['content-type'], /^multipart\/mixed; boundary=/);
    const parts = await readFederationMedia(res.body, res.headers['content-type']);
    assert.deepEqual(parts.metadata, {});
    assert.equal(parts.headers['content-type'], 'application/octet-stream');
    assert.equal(parts.headers['content-disposition'], 'attachment; filename=data.bin');
    const chunks: Buffer[] = [];
    for await (const c of parts.body!) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), file);

    await assert.rejects(
      b.ctx.federation.client.requestStream('a.test', { method: 'GET', path: `${FEDERATION_MEDIA}/download/doesnotexist` }),
      (err: { status?: number; errcode?: string }) => err.status === 404 && err.errcode === 'M_NOT_FOUND',
    );
  });

  test('a user on B downloads mxc://a.test/... byte-exact through B', async () => {
    const res = await get(b, `${CLIENT_MEDIA}/download/a.test/${fileId}`, bob.accessToken);
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), file);
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    assert.equal(res.headers.get('content-disposition'), 'attachment; filename=data.bin');
    const row = await b.ctx.storage.db.selectFrom('remote_media').selectAll()
      .where('origin', '=', 'a.test').where('media_id', '=', fileId).executeTakeFirst();
    assert.equal(Number(row?.size), file.length);

    const img = await get(b, `${CLIENT_MEDIA}/download/a.test/${imageId}`, bob.accessToken);
    assert.equal(img.status, 200);
    assert.deepEqual(Buffer.from(await img.arrayBuffer()), image);
  });

  test('a thumbnail of a remote image is an image smaller than the original', async () => {
    const res = await get(b, `${CLIENT_MEDIA}/thumbnail/a.test/${imageId}?width=96&height=96&method=crop`, bob.accessToken);
    assert.equal(res.status, 200);
    const thumb = Buffer.from(await res.arrayBuffer());
    assert.match(res.headers.get('content-type') ?? '', /^image\//);
    const meta = await sharp(thumb).metadata();
    assert.ok(meta.width! < 800 && meta.height! < 600, `${meta.width}x${meta.height}`);
    assert.ok(thumb.length < image.length);
    const rows = await b.ctx.storage.db.selectFrom('remote_media_thumbnails').selectAll().where('media_id', '=', imageId).execute();
    assert.equal(rows.length, 1);
  });

  test('unknown remote media is 404; allow_remote=false on the legacy route does not fetch', async () => {
    const res = await get(b, `${CLIENT_MEDIA}/download/a.test/doesnotexist`, bob.accessToken);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { errcode: string }).errcode, 'M_NOT_FOUND');
    const mxc = await upload(a, alice.accessToken, Buffer.from('not fetched yet'), 'text/plain', 'n.txt');
    const legacy = await fetch(`${b.url}/_matrix/media/v3/download/a.test/${mxc.split('/').pop()}?allow_remote=false`);
    assert.equal(legacy.status, 404);
  });

  test('with A stopped, B still serves what it cached; uncached media is 502', async () => {
    const uncached = (await upload(a, alice.accessToken, Buffer.from('never fetched'), 'text/plain', 'x.txt')).split('/').pop()!;
    await a.close();
    const again = await get(b, `${CLIENT_MEDIA}/download/a.test/${fileId}`, bob.accessToken);
    assert.equal(again.status, 200);
    assert.deepEqual(Buffer.from(await again.arrayBuffer()), file);
    const thumb = await get(b, `${CLIENT_MEDIA}/thumbnail/a.test/${imageId}?width=96&height=96&method=crop`, bob.accessToken);
    assert.equal(thumb.status, 200);
    const missing = await get(b, `${CLIENT_MEDIA}/download/a.test/${uncached}?timeout_ms=1000`, bob.accessToken);
    assert.equal(missing.status, 502);
    assert.equal(((await missing.json()) as { errcode: string }).errcode, 'M_UNKNOWN');
  });
});
