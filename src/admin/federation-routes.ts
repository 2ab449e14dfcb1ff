/**
 * Synapse's federation admin API (docs/admin_api/federation.md): the
 * servers we send to that are failing or have a queue, from the outbound
 * sender (src/federation/queue.ts) and its persisted backoff.
 *
 *   GET  /_synapse/admin/v1/federation/destinations?from&limit&order_by&dir&destination
 *        {"destinations": [...], "total", "next_token"?}
 *   GET  /_synapse/admin/v1/federation/destinations/{destination}
 *   POST /_synapse/admin/v1/federation/destinations/{destination}/reset_connection  {}
 *
 * A destination as Synapse reports it: retry_last_ts (the last failed
 * attempt), retry_interval (the wait after it, ms), failure_ts (Synapse: when
 * the failures started; here the last failure, the only time kept) and
 * last_successful_stream_ordering (not tracked: null).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MatrixError, invalidParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { requireServerAdmin } from './auth.js';
import { V1, type Query, intParam } from './params.js';


interface DestinationInfo {
  destination: string;
  retry_last_ts: number;
  retry_interval: number;
  failure_ts: number | null;
  last_successful_stream_ordering: number | null;
}

const ORDERS = ['destination', 'retry_last_ts', 'retry_interval', 'failure_ts', 'last_successful_stream_ordering'] as const;
type Order = (typeof ORDERS)[number];


export function registerAdminFederationRoutes(app: FastifyInstance, ctx: Context): void {
  /** Every destination the sender knows about (queue or backoff), joined with the stored failure times. */
  async function all(): Promise<DestinationInfo[]> {
    const stats = ctx.federation.sender.destinations();
    const rows = await ctx.storage.db.selectFrom('federation_destinations').selectAll().execute();
    const stored = new Map(rows.map((r) => [r.destination, r]));
    const names = new Set([...stats.map((s) => s.destination), ...stored.keys()]);
    const live = new Map(stats.map((s) => [s.destination, s]));
    const out: DestinationInfo[] = [];
    for (const name of names) {
      const row = stored.get(name);
      const lastFailure = row?.last_failure_ts == null ? null : Number(row.last_failure_ts);
      const retryAt = live.get(name)?.retryAt ?? (row?.retry_at == null ? null : Number(row.retry_at));
      out.push({
        destination: name,
        retry_last_ts: lastFailure ?? 0,
        retry_interval: lastFailure !== null && retryAt !== null ? Math.max(0, retryAt - lastFailure) : 0,
        failure_ts: lastFailure,
        last_successful_stream_ordering: null,
      });
    }
    return out;
  }

  const destinationOf = (req: FastifyRequest) => (req.params as Record<string, string>).destination;

  app.get(`${V1}/federation/destinations`, async (req) => {
    await requireServerAdmin(ctx, req);
    const q = (req.query ?? {}) as Query;
    const from = intParam(q, 'from', 0);
    const limit = intParam(q, 'limit', 100);
    let order: Order = 'destination';
    if (q.order_by !== undefined) {
      if (typeof q.order_by !== 'string' || !(ORDERS as readonly string[]).includes(q.order_by)) {
        throw invalidParam(`Query parameter 'order_by' must be one of [${ORDERS.map((o) => `'${o}'`).join(', ')}]`);
      }
      order = q.order_by as Order;
    }
    if (q.dir !== undefined && q.dir !== 'f' && q.dir !== 'b') throw invalidParam("Query parameter 'dir' must be one of ['b', 'f']");
    let list = await all();
    if (typeof q.destination === 'string') list = list.filter((d) => d.destination.includes(q.destination as string));
    const sign = q.dir === 'b' ? -1 : 1;
    list.sort((a, b) => {
      const x = a[order];
      const y = b[order];
      if (x !== y) {
        if (x === null) return 1;
        if (y === null) return -1;
        return (x < y ? -1 : 1) * sign;
      }
      return a.destination < b.destination ? -1 : 1;
    });
    const page = list.slice(from, from + limit);
    const out: Record<string, unknown> = { destinations: page, total: list.length };
    if (from + page.length < list.length) out.next_token = String(from + page.length);
    return out;
  });

  app.get(`${V1}/federation/destinations/:destination`, async (req) => {
    await requireServerAdmin(ctx, req);
    const name = destinationOf(req);
    const d = (await all()).find((x) => x.destination === name);
    if (!d) throw notFound('Unknown destination');
    return d;
  });

  app.post(`${V1}/federation/destinations/:destination/reset_connection`, async (req) => {
    await requireServerAdmin(ctx, req);
    const name = destinationOf(req);
    if (name === ctx.config.server_name) throw new MatrixError('M_UNKNOWN', 400, 'Cannot reset connection to own server');
    if (!(await all()).some((x) => x.destination === name)) throw notFound('Unknown destination');
    await ctx.federation.sender.resetBackoff(name);
    return {};
  });
}
