/**
 * The server-server content repository: other servers download our local
 * media (and thumbnails of it) through
 *   GET /_matrix/federation/v1/media/download/{mediaId}
 *   GET /_matrix/federation/v1/media/thumbnail/{mediaId}?width&height&method&animated
 * signed with X-Matrix. The answer is multipart/mixed: an empty JSON
 * metadata part, then the bytes, streamed from the store. Lookups, waiting
 * for pending uploads, quarantine and thumbnail generation are the local
 * media service's, so both APIs answer alike.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { withFederationAuth } from '../federation/auth.js';
import { invalidParam, missingParam } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { contentDisposition } from './headers.js';
import { buildMultipart, newBoundary } from './multipart.js';
import type { MediaContent } from './service.js';
import type { ThumbnailMethod } from './thumbnails.js';

const FEDERATION_MEDIA = '/_matrix/federation/v1/media';

type Query = Record<string, string | undefined>;
const query = (req: FastifyRequest) => (req.query ?? {}) as Query;
const mediaIdOf = (req: FastifyRequest) => (req.params as Record<string, string>).mediaId;

function timeoutParam(q: Query): number | undefined {
  if (q.timeout_ms === undefined) return undefined;
  if (!/^\d+$/.test(q.timeout_ms)) throw invalidParam('timeout_ms must be a non-negative integer');
  return Number(q.timeout_ms);
}

function dimension(q: Query, name: 'width' | 'height'): number {
  const v = q[name];
  if (v === undefined || v === '') throw missingParam(`Missing ${name}`);
  if (!/^\d{1,6}$/.test(v) || Number(v) < 1) throw invalidParam(`${name} must be a positive integer`);
  return Number(v);
}

function sendMultipart(ctx: Context, reply: FastifyReply, content: MediaContent) {
  const boundary = newBoundary();
  const body = buildMultipart(boundary, [
    { headers: { 'Content-Type': 'application/json' }, body: '{}' },
    {
      headers: {
        'Content-Type': content.contentType || 'application/octet-stream',
        'Content-Disposition': contentDisposition(content.contentType, content.filename),
      },
      body: ctx.media.open(content),
    },
  ]);
  reply.header('Content-Type', `multipart/mixed; boundary=${boundary}`);
  return reply.code(200).send(body);
}

export function registerFederationMediaRoutes(app: FastifyInstance, ctx: Context): void {
  const local = ctx.config.server_name;

  // withFederationAuth checks the X-Matrix signature and that we federate with the sender.
  app.get(`${FEDERATION_MEDIA}/download/:mediaId`, withFederationAuth(ctx, async (req, reply) => {
    const content = await ctx.media.download(local, mediaIdOf(req), timeoutParam(query(req)));
    return sendMultipart(ctx, reply, content);
  }));

  app.get(`${FEDERATION_MEDIA}/thumbnail/:mediaId`, withFederationAuth(ctx, async (req, reply) => {
    const q = query(req);
    const width = dimension(q, 'width');
    const height = dimension(q, 'height');
    const method = (q.method ?? 'scale') as ThumbnailMethod;
    if (method !== 'scale' && method !== 'crop') throw invalidParam('method must be crop or scale');
    const content = await ctx.media.thumbnail(local, mediaIdOf(req), width, height, method, q.animated === 'true', timeoutParam(q));
    return sendMultipart(ctx, reply, content);
  }));
}
