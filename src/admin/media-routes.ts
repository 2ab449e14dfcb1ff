/**
 * Synapse's media admin API (docs/admin_api/media_admin_api.md and the
 * user media part of user_admin_api.md), same paths, parameters and
 * answers:
 *
 *   POST   /_synapse/admin/v1/purge_media_cache?before_ts=     {"deleted": n}
 *   POST   /_synapse/admin/v1/media/quarantine/{server}/{id}   {}
 *   POST   /_synapse/admin/v1/media/unquarantine/{server}/{id} {}
 *   POST   /_synapse/admin/v1/room/{room_id}/media/quarantine  {"num_quarantined": n}
 *          (and the legacy /quarantine_media/{room_id})
 *   POST   /_synapse/admin/v1/user/{user_id}/media/quarantine  {"num_quarantined": n}
 *   POST   /_synapse/admin/v1/media/protect/{id}, .../unprotect/{id}  {}
 *   DELETE /_synapse/admin/v1/media/{server}/{id}              {"deleted_media": [id], "total": 1}
 *   POST   /_synapse/admin/v1/media/delete?before_ts=&size_gt=&keep_profiles=
 *          (and the deprecated /media/{server}/delete)         {"deleted_media": [...], "total": n}
 *   GET    /_synapse/admin/v1/media/{server}/{id}              {"media_info": {...}}
 *   GET    /_synapse/admin/v1/users/{user_id}/media            {"media": [...], "total": n, "next_token"?: n}
 *
 * Errors as Synapse gives them: 401 without a valid token, 403 M_FORBIDDEN
 * for non-admins, 400 M_MISSING_PARAM / M_INVALID_PARAM for parameters,
 * 400 for deleting remote media or listing a remote user's, 404 for unknown
 * media (info, delete) and unknown users.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MatrixError, invalidParam } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { requireServerAdmin } from './auth.js';
import { MEDIA_ORDER, MediaAdmin, type MediaOrder } from './media-admin.js';
import { V1, type Query, params, query, intParam } from './params.js';

/** Below this a "millisecond" timestamp is December 1970: surely seconds by mistake (Synapse's check). */
const MIN_BEFORE_TS = 30_000_000_000;


/** A non-negative integer query parameter; `fallback` when absent, M_MISSING_PARAM when required. */
function boolParam(q: Query, name: string, fallback: boolean): boolean {
  const v = q[name];
  if (v === undefined) return fallback;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw invalidParam(`Boolean query parameter '${name}' must be one of ['true', 'false']`);
}

function beforeTs(q: Query): number {
  const ts = intParam(q, 'before_ts');
  if (ts < MIN_BEFORE_TS) {
    throw invalidParam('Query parameter before_ts you provided is from the year 1970. Double check that you are providing a timestamp in milliseconds.');
  }
  return ts;
}

const onlyLocal = () => new MatrixError('M_UNKNOWN', 400, 'Can only delete local media');

export function registerAdminMediaRoutes(app: FastifyInstance, ctx: Context): void {
  const admin = new MediaAdmin(ctx);

  app.post(`${V1}/purge_media_cache`, async (req) => {
    await requireServerAdmin(ctx, req);
    const before = beforeTs(query(req));
    const { deleted } = await ctx.mediaRetention.purgeRemote(before);
    return { deleted };
  });

  app.post(`${V1}/media/quarantine/:serverName/:mediaId`, async (req) => {
    const who = await requireServerAdmin(ctx, req);
    const p = params(req);
    await admin.setQuarantine(p.serverName, p.mediaId, who.userId);
    return {};
  });

  app.post(`${V1}/media/unquarantine/:serverName/:mediaId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const p = params(req);
    await admin.setQuarantine(p.serverName, p.mediaId, null);
    return {};
  });

  const quarantineRoom = async (req: FastifyRequest) => {
    const who = await requireServerAdmin(ctx, req);
    const roomId = params(req).roomId;
    if (!roomId.startsWith('!')) throw invalidParam(`${roomId} is not a room id`);
    return { num_quarantined: await admin.quarantineRoom(roomId, who.userId) };
  };
  app.post(`${V1}/room/:roomId/media/quarantine`, quarantineRoom);
  app.post(`${V1}/quarantine_media/:roomId`, quarantineRoom);

  app.post(`${V1}/user/:userId/media/quarantine`, async (req) => {
    const who = await requireServerAdmin(ctx, req);
    const userId = params(req).userId;
    if (!/^@[^:]+:.+$/.test(userId)) throw invalidParam(`${userId} is not a user id`);
    return { num_quarantined: await admin.quarantineUser(userId, who.userId) };
  });

  app.post(`${V1}/media/protect/:mediaId`, async (req) => {
    await requireServerAdmin(ctx, req);
    await admin.setProtected(params(req).mediaId, true);
    return {};
  });

  app.post(`${V1}/media/unprotect/:mediaId`, async (req) => {
    await requireServerAdmin(ctx, req);
    await admin.setProtected(params(req).mediaId, false);
    return {};
  });

  app.delete(`${V1}/media/:serverName/:mediaId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const p = params(req);
    if (!admin.isLocal(p.serverName)) throw onlyLocal();
    if (!(await admin.localExists(p.mediaId))) throw new MatrixError('M_NOT_FOUND', 404, 'Unknown media');
    const { deleted } = await ctx.mediaRetention.deleteLocal([p.mediaId]);
    return { deleted_media: deleted, total: deleted.length };
  });

  const deleteByDateSize = async (req: FastifyRequest) => {
    await requireServerAdmin(ctx, req);
    const q = query(req);
    const before = beforeTs(q);
    const sizeGt = intParam(q, 'size_gt', 0);
    const keepProfiles = boolParam(q, 'keep_profiles', true);
    const serverName = params(req).serverName;
    if (serverName !== undefined && !admin.isLocal(serverName)) throw onlyLocal();
    const { deleted } = await ctx.mediaRetention.deleteLocalBefore({ beforeTs: before, sizeGt, keepProfiles });
    return { deleted_media: deleted, total: deleted.length };
  };
  app.post(`${V1}/media/delete`, deleteByDateSize);
  app.post(`${V1}/media/:serverName/delete`, deleteByDateSize);

  app.get(`${V1}/media/:serverName/:mediaId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const p = params(req);
    return { media_info: await admin.info(p.serverName, p.mediaId) };
  });

  app.get(`${V1}/users/:userId/media`, async (req) => {
    await requireServerAdmin(ctx, req);
    const userId = params(req).userId;
    if (!/^@[^:]+:.+$/.test(userId)) throw invalidParam(`${userId} is not a user id`);
    if (userId.slice(userId.indexOf(':') + 1) !== ctx.config.server_name) {
      throw new MatrixError('M_UNKNOWN', 400, 'Can only look up local users');
    }
    const q = query(req);
    const from = intParam(q, 'from', 0);
    const limit = intParam(q, 'limit', 100);
    let order: MediaOrder = 'created_ts';
    let dir: 'f' | 'b' = 'f';
    if (q.order_by === undefined && q.dir === undefined) {
      // Synapse's default: newest first.
      dir = 'b';
    } else {
      if (q.order_by !== undefined) {
        if (typeof q.order_by !== 'string' || !Object.hasOwn(MEDIA_ORDER, q.order_by)) {
          throw invalidParam(`Query parameter 'order_by' must be one of [${Object.keys(MEDIA_ORDER).map((k) => `'${k}'`).join(', ')}]`);
        }
        order = q.order_by as MediaOrder;
      }
      if (q.dir !== undefined) {
        if (q.dir !== 'f' && q.dir !== 'b') throw invalidParam("Query parameter 'dir' must be one of ['b', 'f']");
        dir = q.dir;
      }
    }
    return admin.userMedia(userId, from, limit, order, dir);
  });
}
