/**
 * Content repository endpoints: uploads (/_matrix/media/v3/upload, v1/create),
 * authenticated downloads and thumbnails (/_matrix/client/v1/media/...), and
 * the deprecated unauthenticated /_matrix/media/v3 download, thumbnail and
 * config endpoints (off with legacy_media_enabled = false).
 *
 * Uploads are raw bytes, not JSON: they are registered in a plugin scope of
 * their own with a pass-through body parser, so the body streams into the
 * media store under max_upload_size, not the global max_request_size.
 */
import { once } from 'node:events';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import { MatrixError, missingParam, invalidParam } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { mediaHeaders } from './headers.js';
import { mediaNotFound, type MediaContent, type UploadInput } from './service.js';
import type { ThumbnailMethod } from './thumbnails.js';

const MEDIA_V3 = '/_matrix/media/v3';
const MEDIA_V1 = '/_matrix/media/v1';
const CLIENT_V1_MEDIA = '/_matrix/client/v1/media';

type Params = Record<string, string>;
type Query = Record<string, string | undefined>;

const params = (req: FastifyRequest) => req.params as Params;
const query = (req: FastifyRequest) => (req.query ?? {}) as Query;

function uploadInput(req: FastifyRequest): UploadInput {
  const body = req.body instanceof Readable ? req.body : Readable.from([]);
  const len = req.headers['content-length'];
  const ct = req.headers['content-type'];
  const filename = query(req).filename;
  return {
    body,
    contentType: typeof ct === 'string' ? ct : undefined,
    filename: typeof filename === 'string' ? filename : undefined,
    contentLength: len !== undefined && /^\d+$/.test(len) ? Number(len) : undefined,
  };
}

function timeoutParam(req: FastifyRequest): number | undefined {
  const t = query(req).timeout_ms;
  if (t === undefined) return undefined;
  if (!/^\d+$/.test(t)) throw invalidParam('timeout_ms must be a non-negative integer');
  return Number(t);
}

/** allow_remote=false: serve remote media only from the cache (it prevents fetch loops). */
function allowRemote(req: FastifyRequest): boolean {
  return query(req).allow_remote !== 'false';
}

function dimension(req: FastifyRequest, name: 'width' | 'height'): number {
  const v = query(req)[name];
  if (v === undefined || v === '') throw missingParam(`Missing ${name}`);
  if (!/^\d{1,6}$/.test(v) || Number(v) < 1) throw invalidParam(`${name} must be a positive integer`);
  return Number(v);
}

async function send(ctx: Context, reply: FastifyReply, content: MediaContent, filename?: string) {
  const stream = ctx.media.open(content);
  // Wait for the first byte (or the end, or an error) before committing to a
  // 200 with media headers: content missing from the store must become a
  // clean JSON 404, not a broken response.
  if (stream.readableLength === 0 && !stream.readableEnded) {
    try {
      await Promise.race([once(stream, 'readable'), once(stream, 'end')]);
    } catch (err) {
      stream.destroy();
      ctx.log.warn({ err, sha256: content.sha256 }, 'media content missing from the store');
      throw mediaNotFound();
    }
  }
  reply.headers(mediaHeaders(content.contentType, filename ?? content.filename));
  reply.header('Content-Length', String(content.size));
  return reply.code(200).send(stream);
}

export function registerMediaRoutes(app: FastifyInstance, ctx: Context): void {
  const auth = (req: FastifyRequest) => ctx.tokens.authenticate(req);
  const legacyOn = () => {
    if (!ctx.config.legacy_media_enabled) throw new MatrixError('M_NOT_FOUND', 404, 'Unauthenticated media is disabled on this server');
  };

  // ---- uploads: raw bodies, in their own scope
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    // Hand the request stream to the route; the store enforces max_upload_size while reading.
    scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    const bodyLimit = ctx.config.max_upload_size;
    const tooLargeClose = (reply: FastifyReply, err: unknown) => {
      // A body we stopped reading cannot be drained cheaply: close the connection after the 413.
      if (err instanceof MatrixError && err.status === 413) reply.header('Connection', 'close');
      throw err;
    };

    scope.post(`${MEDIA_V3}/upload`, { bodyLimit }, async (req, reply) => {
      const who = await auth(req);
      try {
        return { content_uri: await ctx.media.upload(who.userId, uploadInput(req)) };
      } catch (err) {
        return tooLargeClose(reply, err);
      }
    });

    scope.put(`${MEDIA_V3}/upload/:serverName/:mediaId`, { bodyLimit }, async (req, reply) => {
      const who = await auth(req);
      const p = params(req);
      try {
        await ctx.media.uploadTo(who.userId, p.serverName, p.mediaId, uploadInput(req));
      } catch (err) {
        return tooLargeClose(reply, err);
      }
      return {};
    });
  });

  app.post(`${MEDIA_V1}/create`, async (req) => {
    const who = await auth(req);
    return ctx.media.create(who.userId);
  });

  // ---- downloads and thumbnails
  const download = async (req: FastifyRequest, reply: FastifyReply) => {
    const p = params(req);
    const content = await ctx.media.download(p.serverName, p.mediaId, timeoutParam(req), allowRemote(req));
    return send(ctx, reply, content, p.fileName || undefined);
  };

  const thumbnail = async (req: FastifyRequest, reply: FastifyReply) => {
    const p = params(req);
    const q = query(req);
    const width = dimension(req, 'width');
    const height = dimension(req, 'height');
    const method = (q.method ?? 'scale') as ThumbnailMethod;
    if (method !== 'scale' && method !== 'crop') throw invalidParam('method must be crop or scale');
    const animated = q.animated === 'true';
    const content = await ctx.media.thumbnail(p.serverName, p.mediaId, width, height, method, animated, timeoutParam(req), allowRemote(req));
    return send(ctx, reply, content);
  };

  app.get(`${CLIENT_V1_MEDIA}/config`, async (req) => {
    await auth(req);
    return ctx.media.config();
  });
  app.get(`${CLIENT_V1_MEDIA}/download/:serverName/:mediaId`, async (req, reply) => {
    await auth(req);
    return download(req, reply);
  });
  app.get(`${CLIENT_V1_MEDIA}/download/:serverName/:mediaId/:fileName`, async (req, reply) => {
    await auth(req);
    return download(req, reply);
  });
  app.get(`${CLIENT_V1_MEDIA}/thumbnail/:serverName/:mediaId`, async (req, reply) => {
    await auth(req);
    return thumbnail(req, reply);
  });

  // ---- deprecated, unauthenticated (config keeps the access token the spec requires)
  app.get(`${MEDIA_V3}/config`, async (req) => {
    legacyOn();
    await auth(req);
    return ctx.media.config();
  });
  app.get(`${MEDIA_V3}/download/:serverName/:mediaId`, async (req, reply) => {
    legacyOn();
    return download(req, reply);
  });
  app.get(`${MEDIA_V3}/download/:serverName/:mediaId/:fileName`, async (req, reply) => {
    legacyOn();
    return download(req, reply);
  });
  app.get(`${MEDIA_V3}/thumbnail/:serverName/:mediaId`, async (req, reply) => {
    legacyOn();
    return thumbnail(req, reply);
  });
}
