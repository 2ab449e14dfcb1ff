/**
 * The S3 media store against a real S3-compatible server (s3rver, see
 * test/helpers/s3-server.ts): byte-exact round trips, key layout, dedup,
 * the size limit, signature checking, and the factory's choice of store.
 *
 *   node --import tsx --test test/media/s3-store.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { S3MediaStore, S3RequestError, type S3StoreOptions } from '../../src/media/s3-store.js';
import { createMediaStore } from '../../src/media/store-factory.js';
import { LocalMediaStore } from '../../src/media/store.js';
import { MatrixError } from '../../src/server/errors.js';
import { startS3Server, type TestS3Server } from '../helpers/s3-server.js';

const PREFIX = 'ranvier/';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const keyOf = (hash: string) => `${PREFIX}${hash.slice(0, 2)}/${hash.slice(2, 4)}/${hash}`;

/** A body in uneven chunks, as a socket would deliver it. */
function chunked(data: Buffer, size = 65_521): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) parts.push(data.subarray(i, i + size));
  return Readable.from(parts);
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const isNotFound = (e: unknown) => e instanceof MatrixError && e.errcode === 'M_NOT_FOUND' && e.status === 404;

describe('S3 media store', () => {
  let s3: TestS3Server;
  let dir: string;
  let opts: S3StoreOptions;
  let store: S3MediaStore;

  before(async () => {
    s3 = await startS3Server();
    dir = await mkdtemp(path.join(os.tmpdir(), 'ranvier-s3-store-'));
    opts = {
      endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, prefix: PREFIX,
      accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, forcePathStyle: true,
      tmpDir: path.join(dir, 'spool'),
    };
    store = new S3MediaStore(opts);
  });
  after(async () => {
    await s3?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('put, open, read, has, delete round trip, byte-exact, small and multi-MiB', async () => {
    const small = Buffer.from('hello s3 media \x00\xff');
    const big = randomBytes(6 * 1024 * 1024 + 123);
    for (const data of [small, big]) {
      const hash = sha(data);
      const stored = await store.put(chunked(data), data.length);
      assert.deepEqual(stored, { sha256: hash, size: data.length, created: true });
      assert.ok((await s3.objectKeys()).includes(keyOf(hash)), 'object under <prefix>ab/cd/<sha256>');
      assert.equal(await store.has(hash), true);
      assert.ok((await collect(store.open(hash))).equals(data), 'open streams the same bytes');
      assert.ok((await store.read(hash)).equals(data), 'read returns the same bytes');
    }

    const hash = sha(small);
    await store.delete(hash);
    assert.equal(await store.has(hash), false);
    assert.ok(!(await s3.objectKeys()).includes(keyOf(hash)));
    await store.delete(hash); // already gone: not an error
    await assert.rejects(collect(store.open(hash)), isNotFound);
    await assert.rejects(store.read(hash), isNotFound);
    await store.delete(sha(big));
    assert.deepEqual(await s3.objectKeys(), []);
    assert.deepEqual(await readdir(opts.tmpDir), [], 'spooled uploads are removed');
  });

  test('identical content is stored once', async () => {
    const data = Buffer.from(`dedup ${Date.now()}`);
    const hash = sha(data);
    assert.equal((await store.put(chunked(data, 3), 1000)).created, true);
    assert.deepEqual(await store.put(chunked(data, 5), 1000), { sha256: hash, size: data.length, created: false });
    assert.deepEqual(await store.putBuffer(data), { sha256: hash, size: data.length, created: false });
    assert.deepEqual(await s3.objectKeys(), [keyOf(hash)]);
    await store.delete(hash);

    const thumb = randomBytes(5000);
    assert.deepEqual(await store.putBuffer(thumb), { sha256: sha(thumb), size: thumb.length, created: true });
    assert.ok((await store.read(sha(thumb))).equals(thumb));
    await store.delete(sha(thumb));
  });

  test('an oversized upload throws M_TOO_LARGE and leaves no object and no temp file', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    await assert.rejects(store.put(chunked(data), data.length - 1),
      (e: unknown) => e instanceof MatrixError && e.errcode === 'M_TOO_LARGE' && e.status === 413);
    assert.deepEqual(await s3.objectKeys(), []);
    assert.equal(await store.has(sha(data)), false);
    assert.deepEqual(await readdir(opts.tmpDir), []);
  });

  test('a wrong secret key fails with a clear error, stores nothing and does not leak the secret', async () => {
    const secret = 'not-the-right-secret-7f3a';
    const wrong = new S3MediaStore({ ...opts, secretAccessKey: secret });
    const data = Buffer.from('signed or not?');
    const err = await wrong.put(chunked(data), 1000).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof S3RequestError, String(err));
    assert.equal(err.status, 403);
    assert.match(err.message, /^S3 HEAD ranvier\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{64} failed: 403/);
    assert.ok(!err.message.includes(secret));
    // A request with a body carries S3's error code and message.
    const del = await wrong.delete(sha(data)).then(() => undefined, (e: unknown) => e);
    assert.ok(del instanceof S3RequestError);
    assert.equal(del.code, 'SignatureDoesNotMatch');
    assert.match(del.message, /failed: 403 SignatureDoesNotMatch: The request signature we calculated does not match/);
    assert.ok(!del.message.includes(secret));
    assert.deepEqual(await s3.objectKeys(), []);
    assert.deepEqual(await readdir(opts.tmpDir), []);
    // The right key still works, so the failure above was the signature.
    assert.equal((await store.putBuffer(data)).created, true);
    await store.delete(sha(data));
  });

  test('an unreachable endpoint fails with a clear error', async () => {
    // A port that was just free: nothing listens there.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const down = new S3MediaStore({ ...opts, endpoint: `http://127.0.0.1:${port}` });
    await assert.rejects(down.has(sha(Buffer.from('x'))), /^Error: S3 HEAD ranvier\/.* failed: ECONNREFUSED$/);
  });
});

describe('createMediaStore', () => {
  const base = () => loadConfig({ env: {}, overrides: { data_dir: '/srv/ranvier' } });

  test('local by default, under <data_dir>/media or media_store_path', () => {
    const a = createMediaStore(base());
    assert.ok(a instanceof LocalMediaStore);
    assert.equal(a.pathOf('0'.repeat(64)), path.join('/srv/ranvier/media', '00', '00', '0'.repeat(64)));
    const b = createMediaStore({ ...base(), media_store_path: '/mnt/media' });
    assert.ok(b instanceof LocalMediaStore);
    assert.equal(b.pathOf('0'.repeat(64)), path.join('/mnt/media', '00', '00', '0'.repeat(64)));
  });

  test("s3 when media_store is 's3', with the bucket and keys it needs", () => {
    const s3 = { ...base(), media_store: 's3', s3_bucket: 'b', s3_access_key_id: 'id', s3_secret_access_key: 'secret', s3_prefix: 'p/' };
    const store = createMediaStore(s3);
    assert.ok(store instanceof S3MediaStore);
    const h = 'ab'.repeat(32);
    assert.equal(store.keyOf(h), `p/ab/ab/${h}`);
    assert.equal(store.urlOf(store.keyOf(h)), `https://s3.us-east-1.amazonaws.com/b/p/ab/ab/${h}`);
    const vhost = createMediaStore({ ...s3, s3_endpoint: 'https://s3.example.net', s3_force_path_style: false }) as S3MediaStore;
    assert.equal(vhost.urlOf(vhost.keyOf(h)), `https://b.s3.example.net/p/ab/ab/${h}`);
    assert.throws(() => createMediaStore({ ...s3, s3_bucket: '' }), (e: unknown) => e instanceof ConfigError && e.key === 's3_bucket');
    assert.throws(() => createMediaStore({ ...s3, s3_secret_access_key: '' }), (e: unknown) => e instanceof ConfigError && e.key === 's3_secret_access_key');
  });

  test('the secret key can come from RANVIER_S3_SECRET_ACCESS_KEY', () => {
    const config = loadConfig({ env: { RANVIER_S3_SECRET_ACCESS_KEY: 'from-env' }, overrides: { data_dir: '/srv/ranvier' } });
    assert.equal(config.s3_secret_access_key, 'from-env');
  });
});
