/**
 * Synapse's room admin API (docs/admin_api/rooms.md, purge_history_api.md),
 * same paths, parameters and answers:
 *
 *   GET    /_synapse/admin/v1/rooms?from&limit&order_by&dir&search_term
 *          {"rooms": [...], "offset", "total_rooms", "next_batch"?, "prev_batch"?}
 *   GET    /_synapse/admin/v1/rooms/{roomId}            room details
 *   GET    /_synapse/admin/v1/rooms/{roomId}/members    {"members": [...], "total"}
 *   GET    /_synapse/admin/v1/rooms/{roomId}/state      {"state": [...]}
 *   GET    /_synapse/admin/v1/rooms/{roomId}/block      {"block", "user_id"?}
 *   PUT    /_synapse/admin/v1/rooms/{roomId}/block      {"block": bool} -> {"block"}
 *   DELETE /_synapse/admin/v2/rooms/{roomId}            {"delete_id"} (background)
 *   GET    /_synapse/admin/v2/rooms/delete_status/{id}  {"status", "error"?, "shutdown_room"}
 *   GET    /_synapse/admin/v2/rooms/{roomId}/delete_status  {"results": [...]}
 *   POST   /_synapse/admin/v1/purge_history/{roomId}[/{eventId}]  {"purge_id"} (background)
 *   GET    /_synapse/admin/v1/purge_history_status/{purge_id}     {"status", "error"?}
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { MatrixError, invalidParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { parseBody } from '../server/validate.js';
import { toClientEvent } from '../rooms/client-event.js';
import { requireServerAdmin } from './auth.js';
import { ROOM_ORDER, RoomAdmin, type DeleteRoomOptions, type RoomOrder, type TaskStatus } from './room-admin.js';
import { V1, V2, params, query, intParam } from './params.js';



function roomIdOf(req: FastifyRequest): string {
  const roomId = params(req).roomId;
  if (!/^![^:]*(:.+)?$/.test(roomId) || roomId.length < 2) throw invalidParam(`${roomId} is not a legal room ID`);
  return roomId;
}

const blockSchema = z.object({ block: z.boolean() });
const deleteSchema = z.object({
  new_room_user_id: z.string().optional(),
  room_name: z.string().optional(),
  message: z.string().optional(),
  block: z.boolean().optional(),
  purge: z.boolean().optional(),
  force_purge: z.boolean().optional(),
});
const purgeSchema = z.object({
  delete_local_events: z.boolean().optional(),
  purge_up_to_event_id: z.string().optional(),
  purge_up_to_ts: z.number().int().optional(),
});

function deleteStatus(t: TaskStatus): Record<string, unknown> {
  const out: Record<string, unknown> = {
    status: t.status,
    shutdown_room: t.result ?? { kicked_users: [], failed_to_kick_users: [], local_aliases: [], new_room_id: null },
  };
  if (t.error) out.error = t.error;
  return out;
}

export function registerAdminRoomsRoutes(app: FastifyInstance, ctx: Context): void {
  const admin = new RoomAdmin(ctx);
  // Routes are registered once per process, before any task of this run exists.
  admin.failInterrupted().catch((err: unknown) => ctx.log.warn({ err }, 'could not mark interrupted room admin tasks'));

  app.get(`${V1}/rooms`, async (req) => {
    await requireServerAdmin(ctx, req);
    const q = query(req);
    const from = intParam(q, 'from', 0);
    const limit = intParam(q, 'limit', 100);
    let order: RoomOrder = 'name';
    if (q.order_by !== undefined) {
      // Synapse's deprecated aliases of two orders.
      const o = q.order_by === 'size' ? 'joined_members' : q.order_by === 'alphabetical' ? 'name' : q.order_by;
      if (typeof o !== 'string' || !Object.hasOwn(ROOM_ORDER, o)) {
        throw invalidParam(`Query parameter 'order_by' must be one of [${Object.keys(ROOM_ORDER).map((k) => `'${k}'`).join(', ')}]`);
      }
      order = o as RoomOrder;
    }
    if (q.dir !== undefined && q.dir !== 'f' && q.dir !== 'b') throw invalidParam("Query parameter 'dir' must be one of ['b', 'f']");
    const searchTerm = typeof q.search_term === 'string' && q.search_term !== '' ? q.search_term : undefined;
    const all = await admin.list({ order, reverse: q.dir === 'b', searchTerm });
    const rooms = all.slice(from, from + limit);
    const out: Record<string, unknown> = { rooms, offset: from, total_rooms: all.length };
    if (from + rooms.length < all.length) out.next_batch = from + rooms.length;
    if (from > 0) out.prev_batch = Math.max(0, from - limit);
    return out;
  });

  app.get(`${V1}/rooms/:roomId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const d = await admin.summary(roomIdOf(req));
    if (!d) throw notFound('Room not found');
    return d;
  });

  app.get(`${V1}/rooms/:roomId/members`, async (req) => {
    await requireServerAdmin(ctx, req);
    const roomId = roomIdOf(req);
    if (!(await ctx.rooms.getRoom(roomId))) throw notFound('Room not found');
    const members = await admin.members(roomId);
    return { members, total: members.length };
  });

  app.get(`${V1}/rooms/:roomId/state`, async (req) => {
    await requireServerAdmin(ctx, req);
    const roomId = roomIdOf(req);
    if (!(await ctx.rooms.getRoom(roomId))) throw notFound('Room not found');
    return { state: (await admin.currentState(roomId)).map((ev) => toClientEvent(ev)) };
  });

  app.get(`${V1}/rooms/:roomId/block`, async (req) => {
    await requireServerAdmin(ctx, req);
    const b = await admin.isBlocked(roomIdOf(req));
    return b ? { block: true, user_id: b.userId } : { block: false };
  });

  app.put(`${V1}/rooms/:roomId/block`, async (req) => {
    const who = await requireServerAdmin(ctx, req);
    const roomId = roomIdOf(req);
    const body = parseBody(blockSchema, req.body);
    await admin.setBlocked(roomId, body.block, who.userId);
    return { block: body.block };
  });

  const deleteOptions = (req: FastifyRequest, adminId: string): DeleteRoomOptions => {
    const body = parseBody(deleteSchema, req.body);
    return {
      adminId,
      block: body.block ?? false,
      purge: body.purge ?? true,
      forcePurge: body.force_purge ?? false,
      message: body.message,
      roomName: body.room_name,
      newRoomUserId: body.new_room_user_id,
    };
  };

  app.delete(`${V2}/rooms/:roomId`, async (req) => {
    const who = await requireServerAdmin(ctx, req);
    const { taskId } = await admin.deleteRoom(roomIdOf(req), deleteOptions(req, who.userId));
    return { delete_id: taskId };
  });

  // The synchronous v1 forms synadm sends (DELETE, and the older POST .../delete).
  const deleteNow = async (req: FastifyRequest) => {
    const who = await requireServerAdmin(ctx, req);
    return admin.deleteRoomNow(roomIdOf(req), deleteOptions(req, who.userId));
  };
  app.delete(`${V1}/rooms/:roomId`, deleteNow);
  app.post(`${V1}/rooms/:roomId/delete`, deleteNow);

  app.get(`${V2}/rooms/delete_status/:deleteId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const t = await admin.task(params(req).deleteId);
    if (!t || t.kind !== 'delete') throw notFound('delete id not found');
    return deleteStatus(t);
  });

  app.get(`${V2}/rooms/:roomId/delete_status`, async (req) => {
    await requireServerAdmin(ctx, req);
    const tasks = await admin.roomTasks(roomIdOf(req), 'delete');
    if (!tasks.length) throw notFound('No delete task for room');
    return { results: tasks.map((t) => ({ delete_id: t.taskId, ...deleteStatus(t) })) };
  });

  const purge = async (req: FastifyRequest) => {
    await requireServerAdmin(ctx, req);
    const roomId = roomIdOf(req);
    const body = parseBody(purgeSchema, req.body);
    const eventId = params(req).eventId ?? body.purge_up_to_event_id;
    if (eventId === undefined && body.purge_up_to_ts === undefined) {
      throw new MatrixError('M_UNKNOWN', 400, 'must specify purge_up_to_event_id or purge_up_to_ts');
    }
    const { taskId } = await admin.purgeHistory(roomId, { eventId, ts: eventId === undefined ? body.purge_up_to_ts : undefined, deleteLocalEvents: body.delete_local_events ?? false });
    return { purge_id: taskId };
  };
  app.post(`${V1}/purge_history/:roomId`, purge);
  app.post(`${V1}/purge_history/:roomId/:eventId`, purge);

  app.get(`${V1}/purge_history_status/:purgeId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const t = await admin.task(params(req).purgeId);
    if (!t || t.kind !== 'purge') throw notFound('purge id not found');
    return t.error ? { status: t.status, error: t.error } : { status: t.status };
  });
}
