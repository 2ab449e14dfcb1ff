/**
 * Synapse's event reports admin API (docs/admin_api/event_reports.md):
 * what users reported through POST /rooms/{roomId}/report/{eventId}.
 *
 *   GET    /_synapse/admin/v1/event_reports?from&limit&dir&room_id&user_id
 *          {"event_reports": [...], "total", "next_token"?}  (newest first by default)
 *   GET    /_synapse/admin/v1/event_reports/{id}   one report with "event_json"
 *   DELETE /_synapse/admin/v1/event_reports/{id}   {}
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Selectable } from 'kysely';
import { invalidParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import type { Database } from '../storage/schema.js';
import { requireServerAdmin } from './auth.js';
import { V1, type Query, intParam } from './params.js';


type ReportRow = Selectable<Database['event_reports']>;

function reportIdOf(req: FastifyRequest): number {
  const id = (req.params as Record<string, string>).reportId;
  if (!/^\d{1,16}$/.test(id)) throw invalidParam('The report_id parameter must be a string representing a positive integer.');
  return Number(id);
}

export function registerAdminReportsRoutes(app: FastifyInstance, ctx: Context): void {
  const db = ctx.storage.db;

  /** A report as Synapse shows it: with the room's name and alias and the reported event's sender. */
  async function present(row: ReportRow, withEvent: boolean): Promise<Record<string, unknown>> {
    const name = await ctx.rooms.state.stateEvent(row.room_id, 'm.room.name').catch(() => undefined);
    const alias = await ctx.rooms.state.stateEvent(row.room_id, 'm.room.canonical_alias').catch(() => undefined);
    const ev = row.event_id ? await ctx.rooms.events.get(row.event_id) : undefined;
    const out: Record<string, unknown> = {
      id: Number(row.id),
      received_ts: Number(row.received_ts),
      room_id: row.room_id,
      name: typeof name?.pdu.content.name === 'string' ? name.pdu.content.name : null,
      event_id: row.event_id,
      user_id: row.user_id,
      reason: row.reason,
      score: row.score == null ? null : Number(row.score),
      sender: ev?.pdu.sender ?? null,
      canonical_alias: typeof alias?.pdu.content.alias === 'string' ? alias.pdu.content.alias : null,
    };
    if (withEvent) out.event_json = ev?.pdu ?? null;
    return out;
  }

  app.get(`${V1}/event_reports`, async (req) => {
    await requireServerAdmin(ctx, req);
    const q = (req.query ?? {}) as Query;
    const from = intParam(q, 'from', 0);
    const limit = intParam(q, 'limit', 100);
    if (q.dir !== undefined && q.dir !== 'f' && q.dir !== 'b') throw invalidParam("Query parameter 'dir' must be one of ['b', 'f']");
    const dir = q.dir === 'f' ? 'asc' : 'desc';
    let base = db.selectFrom('event_reports').where('event_id', 'is not', null);
    // Synapse matches both filters as substrings.
    if (typeof q.room_id === 'string') base = base.where('room_id', 'like', `%${q.room_id}%`);
    if (typeof q.user_id === 'string') base = base.where('user_id', 'like', `%${q.user_id}%`);
    const total = Number((await base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst())?.n ?? 0);
    const rows = await base.selectAll().orderBy('received_ts', dir).orderBy('id', dir).offset(from).limit(limit).execute();
    const out: Record<string, unknown> = { event_reports: await Promise.all(rows.map((r) => present(r, false))), total };
    if (from + rows.length < total) out.next_token = from + rows.length;
    return out;
  });

  app.get(`${V1}/event_reports/:reportId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const row = await db.selectFrom('event_reports').selectAll().where('id', '=', reportIdOf(req)).where('event_id', 'is not', null).executeTakeFirst();
    if (!row) throw notFound('Event report not found');
    return present(row, true);
  });

  app.delete(`${V1}/event_reports/:reportId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const res = await db.deleteFrom('event_reports').where('id', '=', reportIdOf(req)).where('event_id', 'is not', null).executeTakeFirst();
    if (Number(res.numDeletedRows) === 0) throw notFound('Event report not found');
    return {};
  });
}
