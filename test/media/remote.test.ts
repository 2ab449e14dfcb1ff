/**
 * Remote media fetching and caching against a fake federation client: cache
 * hits, the legacy fallback, size limits, shared fetches, error mapping,
 * policy, Location parts, quarantine, access times and thumbnails.
 *
 *   node --import tsx --test test/media/remote.test.ts
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { FederationRequestError, type FederationRequest, type StreamResponse } from '../../src/federation/client.js';
import { buildMultipart } from '../../src/media/multipart.js';
import { RemoteMediaService, type FetchedLocation, type MediaFederationClient } from '../../src/media/remote.js';
import type { MediaContent } from '../../src/media/service.js';
import { MatrixError } from '../../src/server/errors.js';
import type { Context } from '../../src/server/services.js';
import { withServiceContext } from '../helpers/service-context.js';

const ORIGIN = 'remote.example';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

type Handler = (req: FederationRequest) => Promise<StreamResponse> | StreamResponse;

class FakeClient implements MediaFederationClient {
  calls: Array<{ destination: string; req: FederationRequest }> = [];
  constructor(public handler: Handler) {}
  async requestStream(destination: string, req: FederationRequest): Promise<StreamResponse> {
    this.calls.push({ destination, req });
    return this.handler(req);
  }
  paths(): string[] {
    return this.calls.map((c) => c.req.path);
  }
}

function multipart(data: Buffer, contentType = 'application/octet-stream', filename?: string): StreamResponse {
  const headers: Record<string, string> = { 'Content-Type': contentType };
  if (filename) headers['Content-Disposition'] = `attachment; filename="${filename}"`;
  return {
    status: 200,
    headers: { 'content-type': 'multipart/mixed; boundary=zz' },
    body: buildMultipart('zz', [{ headers: { 'Content-Type': 'application/json' }, body: '{}' }, { headers, body: Readable.from([data]) }]),
  };
}

function plain(data: Buffer, contentType: string, extra: Record<string, string> = {}): StreamResponse {
  return { status: 200, headers: { 'content-type': contentType, ...extra }, body: Readable.from([data]) };
}

const fedError = (status?: number, errcode?: string) => new FederationRequestError(ORIGIN, `failed ${status}`, status, errcode);

async function read(ctx: Context, c: MediaContent): Promise<Buffer> {
  return ctx.media.store.read(c.sha256);
}

async function rejectsWith(p: Promise<unknown>, status: number, errcode: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof MatrixError, `not a MatrixError: ${String(err)}`);
    assert.equal(err.status, status, err.message);
    assert.equal(err.errcode, errcode);
    return true;
  });
}

async function rowOf(ctx: Context, mediaId: string) {
  return ctx.storage.db.selectFrom('remote_media').selectAll().where('origin', '=', ORIGIN).where('media_id', '=', mediaId).executeTakeFirst();
}

function withRemote(fn: (ctx: Context, client: FakeClient, remote: RemoteMediaService) => Promise<void>, handler: Handler = () => {
  throw fedError();
}, fetchLocation?: (url: string) => Promise<FetchedLocation>) {
  return withServiceContext(async (ctx) => {
    const client = new FakeClient(handler);
    const remote = new RemoteMediaService(ctx, ctx.media, { client, fetchLocation });
    await fn(ctx, client, remote);
  });
}

async function png(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 10, g: 120, b: 200 } } }).png().toBuffer();
}

describe('remote downloads', () => {
  test('a miss fetches over federation and caches; a hit asks nobody', async () => {
    const data = Buffer.from('remote bytes \r\n--z almost a delimiter');
    await withRemote(async (ctx, client, remote) => {
      const first = await remote.download(ORIGIN, 'abc_-1', { timeoutMs: 5000 });
      assert.deepEqual(await read(ctx, first), data);
      assert.equal(first.contentType, 'text/plain');
      assert.equal(first.filename, 'notes.txt');
      assert.equal(client.calls.length, 1);
      assert.equal(client.calls[0].destination, ORIGIN);
      assert.equal(client.calls[0].req.path, '/_matrix/federation/v1/media/download/abc_-1');
      assert.equal(client.calls[0].req.query?.timeout_ms, '5000');
      assert.notEqual(client.calls[0].req.signed, false);
      const row = await rowOf(ctx, 'abc_-1');
      assert.equal(row?.sha256, sha(data));
      assert.equal(Number(row?.size), data.length);
      assert.equal(row?.upload_name, 'notes.txt');

      const second = await remote.download(ORIGIN, 'abc_-1');
      assert.equal(second.sha256, first.sha256);
      assert.equal(client.calls.length, 1, 'served from the cache');
      // Cached media is served even when fetching is not allowed.
      assert.equal((await remote.download(ORIGIN, 'abc_-1', { allowRemote: false })).sha256, first.sha256);
    }, () => multipart(data, 'text/plain', 'notes.txt'));
  });

  test('the media service sends remote server names here and local ones to the local table', async () => {
    await withServiceContext(async (ctx) => {
      await rejectsWith(ctx.media.download(ORIGIN, 'abc', undefined, false), 404, 'M_NOT_FOUND');
      const mxc = await ctx.media.upload('@u:test.local', { body: Readable.from([Buffer.from('x')]), contentType: 'text/plain', filename: undefined, contentLength: 1 });
      const local = await ctx.media.download('test.local', mxc.split('/').pop()!);
      assert.equal(local.size, 1);
    });
  });

  test('falls back to the legacy route (unsigned, allow_remote=false) on 404 M_UNRECOGNIZED', async () => {
    const data = Buffer.from('legacy bytes');
    await withRemote(async (ctx, client, remote) => {
      const c = await remote.download(ORIGIN, 'leg');
      assert.deepEqual(await read(ctx, c), data);
      assert.equal(c.contentType, 'image/gif');
      assert.equal(c.filename, 'anim.gif');
      assert.deepEqual(client.paths(), ['/_matrix/federation/v1/media/download/leg', '/_matrix/media/v3/download/remote.example/leg']);
      assert.equal(client.calls[1].req.query?.allow_remote, 'false');
      assert.equal(client.calls[1].req.signed, false);
    }, (req) => {
      if (req.path.startsWith('/_matrix/federation')) throw fedError(404, 'M_UNRECOGNIZED');
      return plain(data, 'image/gif', { 'content-disposition': 'inline; filename=anim.gif' });
    });
  });

  for (const [status, errcode] of [[400, undefined], [400, 'M_UNRECOGNIZED'], [405, undefined], [404, undefined]] as const) {
    test(`falls back on ${status} ${errcode ?? 'without errcode'} too`, async () => {
      await withRemote(async (_ctx, client, remote) => {
        await remote.download(ORIGIN, 'x');
        assert.equal(client.calls.length, 2);
      }, (req) => {
        if (req.path.startsWith('/_matrix/federation')) throw fedError(status, errcode);
        return plain(Buffer.from('ok'), 'text/plain');
      });
    });
  }

  test('404 M_NOT_FOUND from the origin is 404, without trying the legacy route', async () => {
    await withRemote(async (ctx, client, remote) => {
      await rejectsWith(remote.download(ORIGIN, 'gone'), 404, 'M_NOT_FOUND');
      assert.equal(client.calls.length, 1);
      assert.equal(await rowOf(ctx, 'gone'), undefined);
    }, () => {
      throw fedError(404, 'M_NOT_FOUND');
    });
  });

  test('oversized media is refused with 502 M_TOO_LARGE and nothing is stored', async () => {
    const data = Buffer.alloc(5000, 7);
    await withRemote(async (ctx, _client, remote) => {
      ctx.config.max_upload_size = 4096;
      await rejectsWith(remote.download(ORIGIN, 'big'), 502, 'M_TOO_LARGE');
      assert.equal(await rowOf(ctx, 'big'), undefined);
      assert.equal(await ctx.media.store.has(sha(data)), false);
      // Exactly at the limit is fine.
      ctx.config.max_upload_size = 5000;
      assert.equal((await remote.download(ORIGIN, 'big')).size, 5000);
    }, () => multipart(data));
  });

  test('legacy answers declaring an oversized Content-Length are refused before reading', async () => {
    let bodyRead = false;
    await withRemote(async (ctx, _client, remote) => {
      ctx.config.max_upload_size = 100;
      await rejectsWith(remote.download(ORIGIN, 'big'), 502, 'M_TOO_LARGE');
      assert.equal(bodyRead, false);
    }, (req) => {
      if (req.path.startsWith('/_matrix/federation')) throw fedError(404, 'M_UNRECOGNIZED');
      async function* body() {
        bodyRead = true;
        yield Buffer.alloc(200);
      }
      return { status: 200, headers: { 'content-type': 'text/plain', 'content-length': '200' }, body: Readable.from(body()) };
    });
  });

  test('concurrent requests for the same media share one fetch', async () => {
    const data = Buffer.from('shared');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    await withRemote(async (ctx, client, remote) => {
      const all = Promise.all(Array.from({ length: 5 }, () => remote.download(ORIGIN, 'same')));
      await new Promise((r) => setTimeout(r, 20));
      release();
      const got = await all;
      assert.equal(client.calls.length, 1);
      assert.ok(got.every((c) => c.sha256 === sha(data)));
      assert.deepEqual(await read(ctx, got[0]), data);
    }, async () => {
      await gate;
      return multipart(data);
    });
  });

  test('a failed shared fetch fails every waiter and is retried by the next request', async () => {
    let fail = true;
    await withRemote(async (_ctx, client, remote) => {
      const results = await Promise.allSettled([remote.download(ORIGIN, 'm'), remote.download(ORIGIN, 'm')]);
      assert.ok(results.every((r) => r.status === 'rejected'));
      assert.equal(client.calls.length, 1);
      fail = false;
      await remote.download(ORIGIN, 'm');
      assert.equal(client.calls.length, 2);
    }, async () => {
      await new Promise((r) => setTimeout(r, 10));
      if (fail) throw fedError();
      return multipart(Buffer.from('ok'));
    });
  });

  test('unreachable origin: 502 M_UNKNOWN; not yet uploaded: 504 M_NOT_YET_UPLOADED', async () => {
    await withRemote(async (_ctx, _client, remote) => {
      await rejectsWith(remote.download(ORIGIN, 'down'), 502, 'M_UNKNOWN');
      await rejectsWith(remote.download(ORIGIN, 'pending'), 504, 'M_NOT_YET_UPLOADED');
      await rejectsWith(remote.download(ORIGIN, 'toolarge'), 502, 'M_TOO_LARGE');
      await rejectsWith(remote.download(ORIGIN, 'servererror'), 502, 'M_UNKNOWN');
    }, (req) => {
      if (req.path.endsWith('/pending')) throw fedError(504, 'M_NOT_YET_UPLOADED');
      if (req.path.endsWith('/toolarge')) throw fedError(502, 'M_TOO_LARGE');
      if (req.path.endsWith('/servererror')) throw fedError(500, 'M_UNKNOWN');
      throw new FederationRequestError(ORIGIN, 'cannot resolve server: ENOTFOUND');
    });
  });

  test('a malformed multipart answer is 502 and stores nothing', async () => {
    await withRemote(async (ctx, _client, remote) => {
      await rejectsWith(remote.download(ORIGIN, 'bad'), 502, 'M_UNKNOWN');
      assert.equal(await rowOf(ctx, 'bad'), undefined);
    }, () => ({
      status: 200,
      headers: { 'content-type': 'multipart/mixed; boundary=zz' },
      body: Readable.from([Buffer.from('--zz\r\nContent-Type: application/json\r\n\r\n{}\r\n--zz\r\n\r\ntruncated')]),
    }));
  });

  test('policy: a server we do not federate with is 403 and never contacted; allow_remote=false is 404', async () => {
    await withRemote(async (ctx, client, remote) => {
      await rejectsWith(remote.download(ORIGIN, 'x', { allowRemote: false }), 404, 'M_NOT_FOUND');
      ctx.config.federation_enabled = false;
      await rejectsWith(remote.download(ORIGIN, 'x'), 403, 'M_FORBIDDEN');
      await rejectsWith(remote.thumbnail(ORIGIN, 'x', 32, 32, 'crop', false), 403, 'M_FORBIDDEN');
      assert.equal(client.calls.length, 0);
    });
  });

  test('malformed server names and media ids are 404 without a request', async () => {
    await withRemote(async (_ctx, client, remote) => {
      await rejectsWith(remote.download(ORIGIN, '../../etc'), 404, 'M_NOT_FOUND');
      await rejectsWith(remote.download('evil/host', 'abc'), 404, 'M_NOT_FOUND');
      await rejectsWith(remote.download(ORIGIN, 'a%2Fb'), 404, 'M_NOT_FOUND');
      assert.equal(client.calls.length, 0);
    });
  });

  test('a Location part is fetched with a plain GET', async () => {
    const data = Buffer.from('from the cdn');
    const fetched: string[] = [];
    await withRemote(async (ctx, _client, remote) => {
      const c = await remote.download(ORIGIN, 'loc');
      assert.deepEqual(await read(ctx, c), data);
      assert.equal(c.contentType, 'audio/ogg');
      assert.deepEqual(fetched, ['https://cdn.example/media/loc?sig=1']);
    }, () => ({
      status: 200,
      headers: { 'content-type': 'multipart/mixed; boundary=zz' },
      body: buildMultipart('zz', [{ headers: { 'Content-Type': 'application/json' }, body: '{}' }, { headers: { Location: 'https://cdn.example/media/loc?sig=1' } }]),
    }), async (url) => {
      fetched.push(url);
      return { status: 200, headers: { 'content-type': 'audio/ogg' }, body: data };
    });
  });

  test('quarantined remote media is 404 and not fetched again', async () => {
    await withRemote(async (ctx, client, remote) => {
      await remote.download(ORIGIN, 'q');
      await ctx.storage.db.updateTable('remote_media').set({ quarantined_by: '@admin:test.local' }).where('media_id', '=', 'q').execute();
      await rejectsWith(remote.download(ORIGIN, 'q'), 404, 'M_NOT_FOUND');
      await rejectsWith(remote.thumbnail(ORIGIN, 'q', 32, 32, 'crop', false), 404, 'M_NOT_FOUND');
      assert.equal(client.calls.length, 1);
    }, () => multipart(Buffer.from('bad stuff')));
  });

  test('serving updates last_access_ts, at most once an hour', async () => {
    await withRemote(async (ctx, _client, remote) => {
      await remote.download(ORIGIN, 't');
      const recent = Date.now() - 60_000;
      await ctx.storage.db.updateTable('remote_media').set({ last_access_ts: recent }).where('media_id', '=', 't').execute();
      await remote.download(ORIGIN, 't');
      assert.equal(Number((await rowOf(ctx, 't'))?.last_access_ts), recent, 'not rewritten within the hour');
      await ctx.storage.db.updateTable('remote_media').set({ last_access_ts: 1000 }).where('media_id', '=', 't').execute();
      const before = Date.now();
      await remote.download(ORIGIN, 't');
      assert.ok(Number((await rowOf(ctx, 't'))?.last_access_ts) >= before);
    }, () => multipart(Buffer.from('t')));
  });

  test('a cache row whose bytes are gone is fetched again', async () => {
    await withRemote(async (ctx, client, remote) => {
      const c = await remote.download(ORIGIN, 'r');
      await ctx.media.store.delete(c.sha256);
      await remote.download(ORIGIN, 'r');
      assert.equal(client.calls.length, 2);
      assert.equal(await ctx.media.store.has(c.sha256), true);
    }, () => multipart(Buffer.from('r')));
  });
});

describe('remote thumbnails', () => {
  test('fetched from the origin with the requested parameters and cached under them', async () => {
    const thumb = await png(40, 30);
    await withRemote(async (ctx, client, remote) => {
      const a = await remote.thumbnail(ORIGIN, 'img', 32, 32, 'crop', true, { timeoutMs: 1000 });
      assert.deepEqual(await read(ctx, a), thumb);
      assert.equal(a.contentType, 'image/png');
      assert.equal(client.calls[0].req.path, '/_matrix/federation/v1/media/thumbnail/img');
      assert.deepEqual(client.calls[0].req.query, { width: '32', height: '32', method: 'crop', animated: 'true', timeout_ms: '1000' });
      await remote.thumbnail(ORIGIN, 'img', 32, 32, 'crop', true);
      assert.equal(client.calls.length, 1, 'second request served from the cache');
      await remote.thumbnail(ORIGIN, 'img', 96, 96, 'crop', true);
      assert.equal(client.calls.length, 2, 'other parameters are another thumbnail');
      const rows = await ctx.storage.db.selectFrom('remote_media_thumbnails').selectAll().execute();
      assert.deepEqual(rows.map((r) => `${r.width}x${r.height}/${r.method}/${r.animated}`).sort(), ['32x32/crop/1', '96x96/crop/1']);
    }, () => multipart(thumb, 'image/png'));
  });

  test('legacy thumbnail route when the origin does not know the federation one', async () => {
    const thumb = await png(20, 20);
    await withRemote(async (_ctx, client, remote) => {
      await remote.thumbnail(ORIGIN, 'img', 32, 32, 'scale', false);
      assert.deepEqual(client.paths(), ['/_matrix/federation/v1/media/thumbnail/img', '/_matrix/media/v3/thumbnail/remote.example/img']);
      assert.equal(client.calls[1].req.query?.allow_remote, 'false');
      assert.equal(client.calls[1].req.query?.width, '32');
    }, (req) => {
      if (req.path.startsWith('/_matrix/federation')) throw fedError(404, 'M_UNRECOGNIZED');
      return plain(thumb, 'image/png');
    });
  });

  test('made locally from the original when the origin cannot make one', async () => {
    const original = await png(1000, 800);
    await withRemote(async (ctx, client, remote) => {
      const t = await remote.thumbnail(ORIGIN, 'big', 320, 240, 'scale', false);
      assert.deepEqual(client.paths(), ['/_matrix/federation/v1/media/thumbnail/big', '/_matrix/federation/v1/media/download/big']);
      const meta = await sharp(await read(ctx, t)).metadata();
      assert.ok(meta.width! <= 320 && meta.height! <= 240, `${meta.width}x${meta.height}`);
      assert.ok(t.size < original.length);
      // Cached: neither the thumbnail nor the original is asked for again.
      await remote.thumbnail(ORIGIN, 'big', 320, 240, 'scale', false);
      assert.equal(client.calls.length, 2);
    }, (req) => {
      if (req.path.includes('/thumbnail/')) throw fedError(400, 'M_UNKNOWN');
      return multipart(original, 'image/png');
    });
  });

  test('a non-image answer to a thumbnail request is not served as a thumbnail', async () => {
    const original = await png(500, 500);
    await withRemote(async (ctx, _client, remote) => {
      const t = await remote.thumbnail(ORIGIN, 'img', 96, 96, 'crop', false);
      assert.equal(t.contentType, 'image/png');
      const meta = await sharp(await read(ctx, t)).metadata();
      assert.equal(meta.width, 96);
    }, (req) => (req.path.includes('/thumbnail/') ? multipart(Buffer.from('<svg onload=alert(1)>'), 'image/svg+xml') : multipart(original, 'image/png')));
  });

  test('unreachable origin: made from the cached original if there is one, else 502 after one attempt', async () => {
    const original = await png(400, 400);
    let up = true;
    await withRemote(async (ctx, client, remote) => {
      await remote.download(ORIGIN, 'cached');
      up = false;
      const t = await remote.thumbnail(ORIGIN, 'cached', 32, 32, 'crop', false);
      assert.equal((await sharp(await read(ctx, t)).metadata()).width, 32);
      const before = client.calls.length;
      await rejectsWith(remote.thumbnail(ORIGIN, 'other', 32, 32, 'crop', false), 502, 'M_UNKNOWN');
      assert.equal(client.calls.length, before + 1);
    }, () => {
      if (!up) throw new FederationRequestError(ORIGIN, 'ECONNREFUSED');
      return multipart(original, 'image/png');
    });
  });

  test('a non-image original cannot be thumbnailed (400) and a missing one is 404', async () => {
    await withRemote(async (_ctx, _client, remote) => {
      await rejectsWith(remote.thumbnail(ORIGIN, 'doc', 32, 32, 'crop', false), 400, 'M_UNKNOWN');
      await rejectsWith(remote.thumbnail(ORIGIN, 'missing', 32, 32, 'crop', false), 404, 'M_NOT_FOUND');
    }, (req) => {
      if (req.path.endsWith('/missing')) throw fedError(404, 'M_NOT_FOUND');
      if (req.path.includes('/thumbnail/')) throw fedError(400, 'M_UNKNOWN');
      return multipart(Buffer.from('%PDF-1.4'), 'application/pdf');
    });
  });
});
