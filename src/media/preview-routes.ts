/**
 * URL previews: GET /_matrix/client/v1/media/preview_url (authenticated
 * media) and the deprecated GET /_matrix/media/v3/preview_url, which also
 * requires an access token here.
 *
 * Errors: url_preview_enabled=false answers 404 M_UNRECOGNIZED as if the
 * endpoint did not exist; a missing url is 400 M_MISSING_PARAM; a URL that is
 * not http(s) is 400 M_INVALID_PARAM; a URL whose host resolves to a blocked
 * address (or redirects to one) is 403 M_FORBIDDEN; an oversized page, an
 * unreachable or failing server is 502 M_UNKNOWN, a slow one 504 M_UNKNOWN.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MatrixError, forbidden, invalidParam, missingParam, unrecognized } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { PreviewService, UpstreamError } from './preview.js';
import { SafeFetchError } from './safe-fetch.js';

function toMatrixError(e: unknown): unknown {
  if (e instanceof SafeFetchError) {
    switch (e.kind) {
      case 'invalid_url': return invalidParam(e.message);
      case 'blocked': return forbidden(e.message);
      case 'timeout': return new MatrixError('M_UNKNOWN', 504, e.message);
      default: return new MatrixError('M_UNKNOWN', 502, e.message);
    }
  }
  if (e instanceof UpstreamError) return new MatrixError('M_UNKNOWN', 502, e.message);
  return e;
}

export function registerPreviewRoutes(app: FastifyInstance, ctx: Context): void {
  let service: PreviewService | undefined;
  const handler = async (req: FastifyRequest) => {
    if (!ctx.config.url_preview_enabled) throw unrecognized();
    const who = await ctx.tokens.authenticate(req);
    const q = (req.query ?? {}) as Record<string, unknown>;
    const url = q.url;
    if (typeof url !== 'string' || url === '') throw missingParam('The url query parameter is required');
    if (url.length > 4096) throw invalidParam('url is too long');
    let ts: number | undefined;
    if (q.ts !== undefined) {
      if (typeof q.ts !== 'string' || !/^\d{1,16}$/.test(q.ts)) throw invalidParam('ts must be a timestamp in milliseconds');
      ts = Number(q.ts);
    }
    // Preview images become local media of whoever asked.
    service ??= PreviewService.fromConfig(ctx.config, (userId, data, type) => ctx.media.storeBuffer(userId, data, type));
    try {
      return await service.preview(url, ts, who.userId);
    } catch (e) {
      throw toMatrixError(e);
    }
  };
  app.get('/_matrix/client/v1/media/preview_url', handler);
  app.get('/_matrix/media/v3/preview_url', handler);
}
