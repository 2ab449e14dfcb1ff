/**
 * The content repository on the S3 store, over HTTP: a server configured
 * with media_store = 's3' against a real S3-compatible server (s3rver)
 * uploads through the media API into the bucket, and downloads byte-exactly
 * from it; nothing lands in the local media directory.
 *
 *   node --import tsx --test test/e2e/media-s3.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { startS3Server, type TestS3Server } from '../helpers/s3-server.js';
import { startTestServer, registerUser, type RegisteredUser, type TestServer } from './harness.js';

const MEDIA_V3 = '/_matrix/media/v3';
const CLIENT_MEDIA = '/_matrix/client/v1/media';
const PREFIX = 'media/';

async function uploadOk(srv: TestServer, token: string, body: Uint8Array, contentType: string): Promise<string> {
  const res = await fetch(`${srv.url}${MEDIA_V3}/upload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
    body,
  });
  const json = (await res.json()) as { content_uri: string };
  assert.equal(res.status, 200, JSON.stringify(json));
  return json.content_uri.slice('mxc://'.length);
}

describe('media on the S3 store', () => {
  let s3: TestS3Server;
  let srv: TestServer;
  let alice: RegisteredUser;

  before(async () => {
    s3 = await startS3Server();
    srv = await startTestServer({
      media_store: 's3',
      s3_endpoint: s3.endpoint,
      s3_region: s3.region,
      s3_bucket: s3.bucket,
      s3_prefix: PREFIX,
      s3_access_key_id: s3.accessKeyId,
      s3_secret_access_key: s3.secretAccessKey,
      s3_force_path_style: true,
      max_upload_size: 8 * 1024 * 1024,
    });
    alice = await registerUser(srv.url, 's3alice', 's3 media password');
  });
  after(async () => {
    await srv?.close();
    await s3?.close();
  });

  test('upload then download byte-exact through the authenticated API, stored in the bucket', async () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 7);
    const hash = createHash('sha256').update(bytes).digest('hex');
    const id = await uploadOk(srv, alice.accessToken, bytes, 'application/octet-stream');

    assert.deepEqual(await s3.objectKeys(), [`${PREFIX}${hash.slice(0, 2)}/${hash.slice(2, 4)}/${hash}`]);
    assert.equal(existsSync(path.join(srv.config.data_dir, 'media')), false, 'nothing in the local store');

    const res = await fetch(`${srv.url}${CLIENT_MEDIA}/download/${id}`, { headers: { authorization: `Bearer ${alice.accessToken}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), String(bytes.length));
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes), 'downloaded bytes equal uploaded bytes');
  });

  test('an upload over max_upload_size is refused with 413 and reaches neither the bucket nor the spool', async () => {
    const before = await s3.objectKeys();
    // Streamed without a Content-Length, so it is the store that stops it while reading.
    const chunks = [randomBytes(5 * 1024 * 1024), randomBytes(5 * 1024 * 1024)];
    const stream = new ReadableStream({
      pull(c) {
        const next = chunks.shift();
        if (next) c.enqueue(next);
        else c.close();
      },
    });
    const res = await fetch(`${srv.url}${MEDIA_V3}/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'application/octet-stream' },
      body: stream,
      duplex: 'half',
    } as RequestInit).catch((e: Error) => e);
    // The server closes the connection after its 413; the client may see that first.
    if (!(res instanceof Error)) {
      assert.equal(res.status, 413);
      assert.equal(((await res.json()) as { errcode: string }).errcode, 'M_TOO_LARGE');
    }
    assert.deepEqual(await s3.objectKeys(), before);
    assert.deepEqual(await readdir(path.join(srv.config.data_dir, 'media-spool')), []);
  });

  test('content missing from the bucket is never a 200 with a broken body', async () => {
    const res = await downloadLost();
    assert.notEqual(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    await res.arrayBuffer();
  });

  // Fails today with a 500 (FST_ERR_REP_INVALID_PAYLOAD_TYPE): the download route hands the store's stream to
  // fastify before it has started, fastify copies the media headers onto the raw response, and the error
  // handler's JSON body then clashes with them. The local store has the same gap for a missing file.
  test('content missing from the bucket is a 404 M_NOT_FOUND', async () => {
    const res = await downloadLost();
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { errcode: string }).errcode, 'M_NOT_FOUND');
  });

  /** Upload, lose the bytes behind the server's back (bucket lifecycle rule, operator error...), download. */
  async function downloadLost(): Promise<Response> {
    const bytes = randomBytes(1000);
    const hash = createHash('sha256').update(bytes).digest('hex');
    const id = await uploadOk(srv, alice.accessToken, bytes, 'application/octet-stream');
    await srv.ctx.media.store.delete(hash);
    assert.equal(await srv.ctx.media.store.has(hash), false);
    return fetch(`${srv.url}${CLIENT_MEDIA}/download/${id}`, { headers: { authorization: `Bearer ${alice.accessToken}` } });
  }
});
