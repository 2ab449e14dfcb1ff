/**
 * Reporting content (spec: Client-Server API, "Reporting content"): users
 * report an event of a room they are joined to, or a whole room; the
 * reports wait in event_reports for the server admins
 * (src/admin/reports-routes.ts).
 *
 *   POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}  {"reason"?, "score"?}  {}
 *   POST /_matrix/client/v3/rooms/{roomId}/report            {"reason"}             {}
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isValidRoomId } from '../core/identifiers.js';
import { invalidParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { parseBody } from '../server/validate.js';

const V3 = '/_matrix/client/v3';
/** Reasons are free text; this only keeps a single report from being huge. */
const MAX_REASON = 1000;

const eventReportSchema = z.object({
  reason: z.string().max(MAX_REASON).optional(),
  // Removed from the spec in v1.18, still sent by older clients and shown by Synapse's admin API.
  score: z.number().int().min(-100).max(0).optional(),
});
const roomReportSchema = z.object({ reason: z.string().max(MAX_REASON) });

const params = (req: FastifyRequest) => req.params as Record<string, string>;

function roomIdParam(req: FastifyRequest): string {
  const roomId = params(req).roomId;
  if (!isValidRoomId(roomId)) throw invalidParam(`Invalid room id: ${roomId}`);
  return roomId;
}

export function registerReportRoutes(app: FastifyInstance, ctx: Context): void {
  app.post(`${V3}/rooms/:roomId/report/:eventId`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const eventId = params(req).eventId;
    const body = parseBody(eventReportSchema, req.body);
    // One answer for "no such event" and "not yours to see", so reports cannot probe rooms.
    const gone = () => notFound('Unable to report event: it does not exist or you aren\'t able to see it.');
    if ((await ctx.rooms.membership(roomId, who.userId)) !== 'join') throw gone();
    const ev = await ctx.rooms.events.get(eventId);
    if (!ev || ev.pdu.room_id !== roomId) throw gone();
    await ctx.storage.db.insertInto('event_reports').values({
      received_ts: Date.now(), room_id: roomId, event_id: eventId, user_id: who.userId,
      reason: body.reason ?? null, score: body.score ?? null,
    }).execute();
    return {};
  });

  app.post(`${V3}/rooms/:roomId/report`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const body = parseBody(roomReportSchema, req.body);
    if (!(await ctx.rooms.getRoom(roomId))) throw notFound('The room was not found.');
    await ctx.storage.db.insertInto('event_reports').values({
      received_ts: Date.now(), room_id: roomId, event_id: null, user_id: who.userId, reason: body.reason, score: null,
    }).execute();
    return {};
  });
}
