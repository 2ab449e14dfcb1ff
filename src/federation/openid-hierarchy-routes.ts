/**
 * Federation routes for space hierarchies and OpenID:
 *
 *   GET /_matrix/federation/v1/hierarchy/{roomId}   (X-Matrix; rooms/hierarchy.ts)
 *   GET /_matrix/federation/v1/openid/userinfo      (no X-Matrix: integration managers
 *                                                    call it with the token alone; accounts/openid.ts)
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { openIdUser } from '../accounts/openid.js';
import { isValidRoomId } from '../core/identifiers.js';
import { federationHierarchy } from '../rooms/hierarchy.js';
import { notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { parseQuery } from '../server/validate.js';
import { requireRoomAllowsServer } from './acl.js';
import { withFederationAuth } from './auth.js';

const P = '/_matrix/federation/v1';

const hierarchyQuery = z.looseObject({ suggested_only: z.enum(['true', 'false']).optional() });
const userinfoQuery = z.looseObject({ access_token: z.string().optional() });

export function registerFederationOpenIdHierarchyRoutes(app: FastifyInstance, ctx: Context): void {
  app.get(`${P}/hierarchy/:roomId`, withFederationAuth(ctx, async (req: FastifyRequest, _reply, origin) => {
    const { roomId } = req.params as { roomId: string };
    const q = parseQuery(hierarchyQuery, req.query);
    if (!isValidRoomId(roomId) || !(await ctx.rooms.getRoom(roomId))) throw notFound('Unknown room');
    await requireRoomAllowsServer(ctx, roomId, origin);
    const answer = await federationHierarchy(ctx, roomId, origin, q.suggested_only === 'true');
    if (!answer) throw notFound('Unknown room, or your server cannot peek or join it');
    return answer;
  }));

  app.get(`${P}/openid/userinfo`, async (req: FastifyRequest) => {
    const q = parseQuery(userinfoQuery, req.query);
    return { sub: await openIdUser(ctx, q.access_token) };
  });
}
