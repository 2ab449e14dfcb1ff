/**
 * The content repository over HTTP: upload and byte-exact download through
 * the authenticated and legacy APIs, thumbnails, the size limit (413, nothing
 * stored), quotas, the create-then-upload flow, safe serving headers, and the
 * legacy switch.
 *
 *   node --import tsx --test test/e2e/media.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { startTestServer, registerUser, type RegisteredUser, type TestServer } from './harness.js';
import { Api } from './util.js';

const MEDIA_V3 = '/_matrix/media/v3';
const CLIENT_MEDIA = '/_matrix/client/v1/media';

function upload(srv: TestServer, token: string | undefined, body: Uint8Array | string, contentType?: string, filename?: string) {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (contentType) headers['content-type'] = contentType;
  const q = filename ? `?filename=${encodeURIComponent(filename)}` : '';
  return fetch(`${srv.url}${MEDIA_V3}/upload${q}`, { method: 'POST', headers, body });
}

async function uploadOk(srv: TestServer, token: string, body: Uint8Array | string, contentType?: string, filename?: string): Promise<string> {
  const res = await upload(srv, token, body, contentType, filename);
  const json = (await res.json()) as { content_uri: string };
  assert.equal(res.status, 200, JSON.stringify(json));
  assert.match(json.content_uri, /^mxc:\/\/localhost\/[A-Za-z0-9_-]+$/);
  return json.content_uri;
}

const idOf = (mxc: string) => mxc.slice('mxc://'.length);

function get(srv: TestServer, pathAndQuery: string, token?: string) {
  return fetch(srv.url + pathAndQuery, { headers: token ? { authorization: `Bearer ${token}` } : {} });
}

/** Every regular file under dir (recursively), except the temp directory's. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

async function pngOf(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 200, g: 40, b: 90 } } }).png().toBuffer();
}

describe('media', () => {
  let srv: TestServer;
  let alice: RegisteredUser;
  let bob: RegisteredUser;

  before(async () => {
    srv = await startTestServer({ max_upload_size: 100_000 });
    alice = await registerUser(srv.url, 'alice', 'media password');
    bob = await registerUser(srv.url, 'bob', 'media password');
  });
  after(() => srv?.close());

  test('upload then download byte-exact through both APIs, all byte values', async () => {
    const bytes = new Uint8Array(256 * 4);
    for (let i = 0; i < bytes.length; i++) bytes[i] = i % 256;
    const mxc = await uploadOk(srv, alice.accessToken, bytes, 'application/octet-stream', 'bytes.bin');

    for (const [p, token] of [[`${CLIENT_MEDIA}/download/${idOf(mxc)}`, alice.accessToken], [`${MEDIA_V3}/download/${idOf(mxc)}`, undefined]] as const) {
      const res = await get(srv, p, token);
      assert.equal(res.status, 200, p);
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes, p);
      assert.equal(res.headers.get('content-type'), 'application/octet-stream');
      assert.equal(res.headers.get('content-disposition'), 'attachment; filename=bytes.bin');
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(res.headers.get('cross-origin-resource-policy'), 'cross-origin');
    }
    // Filename override, with a non-ASCII name RFC 5987-encoded.
    const res = await get(srv, `${CLIENT_MEDIA}/download/${idOf(mxc)}/${encodeURIComponent('résumé 1.bin')}`, alice.accessToken);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-disposition'), "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%201.bin");
    await res.arrayBuffer();
  });

  test('identical uploads are stored once', async () => {
    const body = 'the same content ' + Date.now();
    const before = (await filesUnder(path.join(srv.config.data_dir, 'media'))).length;
    const a = await uploadOk(srv, alice.accessToken, body, 'text/plain');
    const b = await uploadOk(srv, bob.accessToken, body, 'text/plain');
    assert.notEqual(a, b);
    const after = (await filesUnder(path.join(srv.config.data_dir, 'media'))).length;
    assert.equal(after, before + 1);
    const res = await get(srv, `${CLIENT_MEDIA}/download/${idOf(b)}`, alice.accessToken);
    assert.equal(await res.text(), body);
    assert.equal(res.headers.get('content-disposition'), 'inline');
  });

  test('unauthenticated v1 download and upload are refused with 401', async () => {
    const mxc = await uploadOk(srv, alice.accessToken, 'secret', 'text/plain');
    const res = await get(srv, `${CLIENT_MEDIA}/download/${idOf(mxc)}`);
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as any).errcode, 'M_MISSING_TOKEN');
    const up = await upload(srv, undefined, 'x', 'text/plain');
    assert.equal(up.status, 401);
    await up.arrayBuffer();
  });

  test('config through both APIs', async () => {
    const api = new Api(srv.url, alice.accessToken);
    assert.deepEqual(await api.ok('GET', `${CLIENT_MEDIA}/config`), { 'm.upload.size': 100_000 });
    assert.deepEqual(await api.ok('GET', `${MEDIA_V3}/config`), { 'm.upload.size': 100_000 });
  });

  test('unknown media is 404 M_NOT_FOUND; an unreachable origin is 502', async () => {
    for (const p of [`${CLIENT_MEDIA}/download/localhost/nope`, `${MEDIA_V3}/download/localhost/nope`, `${CLIENT_MEDIA}/download/other.example/abc?allow_remote=false`]) {
      const res = await get(srv, p, alice.accessToken);
      assert.equal(res.status, 404, p);
      assert.equal(((await res.json()) as any).errcode, 'M_NOT_FOUND');
    }
    // other.example does not exist: the fetch fails, and the client is told so (not that the media is missing).
    const res = await get(srv, `${CLIENT_MEDIA}/download/other.example/abc`, alice.accessToken);
    assert.equal(res.status, 502);
    assert.equal(((await res.json()) as any).errcode, 'M_UNKNOWN');
  });

  test('an upload over max_upload_size gets 413 and leaves nothing behind', async () => {
    const mediaDir = path.join(srv.config.data_dir, 'media');
    const filesBefore = (await filesUnder(mediaDir)).sort();
    const rowsBefore = await srv.ctx.storage.db.selectFrom('media').select('media_id').execute();
    const big = new Uint8Array(100_001).fill(7);
    const res = await upload(srv, alice.accessToken, big, 'application/octet-stream');
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as any).errcode, 'M_TOO_LARGE');
    // Streamed without a Content-Length: stopped while reading.
    const chunks = [new Uint8Array(60_000).fill(1), new Uint8Array(60_000).fill(2)];
    const stream = new ReadableStream({
      pull(c) {
        const next = chunks.shift();
        if (next) c.enqueue(next);
        else c.close();
      },
    });
    const res2 = await fetch(`${srv.url}${MEDIA_V3}/upload`, {
      method: 'POST', headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'application/octet-stream' },
      body: stream, duplex: 'half',
    } as RequestInit).catch((e: Error) => e);
    if (!(res2 instanceof Error)) {
      assert.equal(res2.status, 413);
      await res2.arrayBuffer();
    }
    assert.deepEqual((await filesUnder(mediaDir)).sort(), filesBefore);
    const rowsAfter = await srv.ctx.storage.db.selectFrom('media').select('media_id').execute();
    assert.equal(rowsAfter.length, rowsBefore.length);
    // Exactly the limit is fine, and bigger than max_request_size (the JSON limit) too.
    await uploadOk(srv, alice.accessToken, new Uint8Array(100_000).fill(9));
  });

  test('create then upload: only the creator, only once; download waits for it', async () => {
    const api = new Api(srv.url, alice.accessToken);
    const created = await api.ok('POST', '/_matrix/media/v1/create', {});
    assert.match(created.content_uri, /^mxc:\/\/localhost\//);
    assert.ok(created.unused_expires_at > Date.now());
    const id = idOf(created.content_uri);

    // Not yet uploaded: 504 M_NOT_YET_UPLOADED after timeout_ms.
    const early = await get(srv, `${CLIENT_MEDIA}/download/${id}?timeout_ms=50`, alice.accessToken);
    assert.equal(early.status, 504);
    assert.equal(((await early.json()) as any).errcode, 'M_NOT_YET_UPLOADED');

    // A download already waiting is answered when the upload arrives.
    const waiting = get(srv, `${CLIENT_MEDIA}/download/${id}?timeout_ms=10000`, bob.accessToken);

    const put = (token: string, body: string) =>
      fetch(`${srv.url}${MEDIA_V3}/upload/${id}?filename=late.txt`, {
        method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' }, body,
      });
    const byBob = await put(bob.accessToken, 'bob was here');
    assert.equal(byBob.status, 403);
    assert.equal(((await byBob.json()) as any).errcode, 'M_FORBIDDEN');

    const first = await put(alice.accessToken, 'async content');
    assert.equal(first.status, 200);
    assert.deepEqual(await first.json(), {});

    const again = await put(alice.accessToken, 'overwrite');
    assert.equal(again.status, 409);
    assert.equal(((await again.json()) as any).errcode, 'M_CANNOT_OVERWRITE_MEDIA');

    const res = await waiting;
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'async content');
    assert.equal(res.headers.get('content-disposition'), 'inline; filename=late.txt');

    // Unknown id on PUT.
    const unknown = await fetch(`${srv.url}${MEDIA_V3}/upload/localhost/unknown`, {
      method: 'PUT', headers: { authorization: `Bearer ${alice.accessToken}` }, body: 'x',
    });
    assert.equal(unknown.status, 404);
    await unknown.arrayBuffer();
  });

  test('an expired created id is 404 for upload and download', async () => {
    const api = new Api(srv.url, alice.accessToken);
    const created = await api.ok('POST', '/_matrix/media/v1/create', {});
    const mediaId = created.content_uri.split('/').pop();
    await srv.ctx.storage.db.updateTable('media').set({ unused_expires_at: Date.now() - 1 }).where('media_id', '=', mediaId).execute();
    const put = await fetch(`${srv.url}${MEDIA_V3}/upload/localhost/${mediaId}`, {
      method: 'PUT', headers: { authorization: `Bearer ${alice.accessToken}` }, body: 'late',
    });
    assert.equal(put.status, 404);
    assert.equal(((await put.json()) as any).errcode, 'M_NOT_FOUND');
    const dl = await get(srv, `${CLIENT_MEDIA}/download/localhost/${mediaId}`, alice.accessToken);
    assert.equal(dl.status, 404);
    await dl.arrayBuffer();
  });

  test('thumbnails: a smaller image, generated once; small originals served as they are', async () => {
    const png = await pngOf(400, 300);
    const mxc = await uploadOk(srv, alice.accessToken, png, 'image/png', 'pic.png');
    const p = `${CLIENT_MEDIA}/thumbnail/${idOf(mxc)}?width=64&height=64&method=crop`;
    const res = await get(srv, p, alice.accessToken);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/png');
    assert.equal(res.headers.get('content-disposition'), 'inline; filename=thumbnail.png');
    const thumb = Buffer.from(await res.arrayBuffer());
    const meta = await sharp(thumb).metadata();
    assert.equal(meta.width, 96);
    assert.equal(meta.height, 96);
    assert.ok(thumb.length < png.length);
    const rows = await srv.ctx.storage.db.selectFrom('media_thumbnails').selectAll().where('media_id', '=', mxc.split('/').pop()!).execute();
    assert.equal(rows.length, 1);

    // Served again from the store, and through the legacy API.
    const again = await get(srv, `${MEDIA_V3}/thumbnail/${idOf(mxc)}?width=64&height=64&method=crop`);
    assert.equal(again.status, 200);
    assert.deepEqual(Buffer.from(await again.arrayBuffer()), thumb);
    assert.equal((await srv.ctx.storage.db.selectFrom('media_thumbnails').selectAll().where('media_id', '=', mxc.split('/').pop()!).execute()).length, 1);

    // scale keeps the aspect ratio, never smaller than asked.
    const scaled = await get(srv, `${CLIENT_MEDIA}/thumbnail/${idOf(mxc)}?width=200&height=100&method=scale`, alice.accessToken);
    const sm = await sharp(Buffer.from(await scaled.arrayBuffer())).metadata();
    assert.deepEqual([sm.width, sm.height], [320, 240]);

    // Bigger than the original: the original itself.
    const orig = await get(srv, `${CLIENT_MEDIA}/thumbnail/${idOf(mxc)}?width=600&height=500`, alice.accessToken);
    assert.deepEqual(Buffer.from(await orig.arrayBuffer()), png);

    // Bad parameters and non-images.
    const bad = await get(srv, `${CLIENT_MEDIA}/thumbnail/${idOf(mxc)}?width=abc&height=10`, alice.accessToken);
    assert.equal(bad.status, 400);
    await bad.arrayBuffer();
    const text = await uploadOk(srv, alice.accessToken, 'not an image', 'text/plain');
    const nt = await get(srv, `${CLIENT_MEDIA}/thumbnail/${idOf(text)}?width=32&height=32`, alice.accessToken);
    assert.equal(nt.status, 400);
    await nt.arrayBuffer();
    const unauth = await get(srv, `${CLIENT_MEDIA}/thumbnail/${idOf(mxc)}?width=32&height=32`);
    assert.equal(unauth.status, 401);
    await unauth.arrayBuffer();
  });

  test('animated GIF: animated thumbnail on request, still otherwise', async () => {
    const frames = 3;
    const raw = Buffer.alloc(200 * 200 * 4 * frames);
    for (let f = 0; f < frames; f++) {
      for (let i = f * 200 * 200; i < (f + 1) * 200 * 200; i++) raw.set([f === 0 ? 255 : 0, f === 1 ? 255 : 0, f === 2 ? 255 : 0, 255], i * 4);
    }
    const gif = await sharp(raw, { raw: { width: 200, height: 200 * frames, channels: 4, pageHeight: 200 } }).gif().toBuffer();
    const pages = (await sharp(gif, { animated: true }).metadata()).pages ?? 1;
    assert.ok(pages > 1);
    const mxc = await uploadOk(srv, alice.accessToken, gif, 'image/gif');
    const anim = await get(srv, `${CLIENT_MEDIA}/thumbnail/${idOf(mxc)}?width=96&height=96&method=crop&animated=true`, alice.accessToken);
    assert.equal(anim.status, 200);
    assert.equal(anim.headers.get('content-type'), 'image/gif');
    const am = await sharp(Buffer.from(await anim.arrayBuffer()), { animated: true }).metadata();
    assert.equal(am.pages, pages);
    assert.equal(am.width, 96);
    const still = await get(srv, `${CLIENT_MEDIA}/thumbnail/${idOf(mxc)}?width=96&height=96&method=crop`, alice.accessToken);
    assert.equal(still.headers.get('content-type'), 'image/png');
    await still.arrayBuffer();
  });

  test('SVG and HTML are served as attachments, sandboxed, nosniff', async () => {
    for (const [type, body] of [['image/svg+xml', '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'], ['text/html', '<script>alert(1)</script>']]) {
      const mxc = await uploadOk(srv, alice.accessToken, body, type, 'evil');
      const res = await get(srv, `${CLIENT_MEDIA}/download/${idOf(mxc)}`, alice.accessToken);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), type);
      assert.equal(res.headers.get('content-disposition'), 'attachment; filename=evil');
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /^sandbox; default-src 'none'; script-src 'none';/);
      assert.equal(await res.text(), body);
    }
  });
});

describe('media settings', () => {
  test('legacy endpoints answer 404 M_NOT_FOUND when legacy_media_enabled is off', async () => {
    const srv = await startTestServer({ legacy_media_enabled: false });
    try {
      const alice = await registerUser(srv.url, 'alice', 'media password');
      const png = await pngOf(100, 100);
      const mxc = await uploadOk(srv, alice.accessToken, png, 'image/png');
      for (const p of [`${MEDIA_V3}/download/${idOf(mxc)}`, `${MEDIA_V3}/thumbnail/${idOf(mxc)}?width=32&height=32`, `${MEDIA_V3}/config`]) {
        const res = await get(srv, p, alice.accessToken);
        assert.equal(res.status, 404, p);
        assert.equal(((await res.json()) as any).errcode, 'M_NOT_FOUND');
      }
      const ok = await get(srv, `${CLIENT_MEDIA}/download/${idOf(mxc)}`, alice.accessToken);
      assert.equal(ok.status, 200);
      assert.deepEqual(Buffer.from(await ok.arrayBuffer()), png);
    } finally {
      await srv.close();
    }
  });

  test('per-user quota: 403 M_FORBIDDEN past it; uploads ignore max_request_size', async () => {
    // max_request_size (the JSON body limit) does not apply to uploads.
    const srv = await startTestServer({ media_quota_per_user: 1000, max_request_size: 200 });
    try {
      const alice = await registerUser(srv.url, 'alice', 'media password');
      // No Content-Type at all: stored as given, served as application/octet-stream.
      const first = await uploadOk(srv, alice.accessToken, new Uint8Array(600).fill(1));
      const dl = await get(srv, `${CLIENT_MEDIA}/download/${idOf(first)}`, alice.accessToken);
      assert.equal(dl.headers.get('content-type'), 'application/octet-stream');
      assert.deepEqual(new Uint8Array(await dl.arrayBuffer()), new Uint8Array(600).fill(1));
      const res = await upload(srv, alice.accessToken, new Uint8Array(600).fill(2));
      assert.equal(res.status, 403);
      assert.equal(((await res.json()) as any).errcode, 'M_FORBIDDEN');
      await uploadOk(srv, alice.accessToken, new Uint8Array(400).fill(3));
    } finally {
      await srv.close();
    }
  });
});
