/**
 * The Client-Server API's own administration endpoints (spec: "Server
 * administration"), as opposed to Synapse's /_synapse/admin:
 *
 *   GET /_matrix/client/v3/admin/whois/{userId}    the user themself or a server admin
 *   GET /_matrix/client/v1/admin/lock/{userId}     {"locked": bool}   (server admins)
 *   PUT /_matrix/client/v1/admin/lock/{userId}     {"locked": bool}   (server admins)
 *   GET /_matrix/client/v1/admin/suspend/{userId}  {"suspended": bool} (server admins)
 *   PUT /_matrix/client/v1/admin/suspend/{userId}  {"suspended": bool} (server admins)
 *
 * A locked user's tokens keep working only for /logout and /logout/all (see
 * TokenService.authenticate); everything else answers 401 M_USER_LOCKED.
 * What a suspended user may still do is in src/accounts/suspension.ts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { serverNameOf } from '../core/identifiers.js';
import { forbidden, invalidParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { parseBody } from '../server/validate.js';
import { requireServerAdmin } from './auth.js';

const lockBody = z.object({ locked: z.boolean() });
const suspendBody = z.object({ suspended: z.boolean() });

export function registerClientAdminRoutes(app: FastifyInstance, ctx: Context): void {
  const db = ctx.storage.db;

  /** The local, active user named in the path; checked only after the caller's rights (no enumeration). */
  const targetUser = async (req: FastifyRequest) => {
    const userId = (req.params as { userId: string }).userId;
    if (serverNameOf(userId) !== ctx.config.server_name) throw invalidParam('User is not local to this server');
    const row = await db.selectFrom('users').select(['user_id', 'locked', 'suspended', 'deactivated'])
      .where('user_id', '=', userId).executeTakeFirst();
    if (!row || row.deactivated) throw notFound('Unknown user');
    return row;
  };

  app.get('/_matrix/client/v3/admin/whois/:userId', async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const userId = (req.params as { userId: string }).userId;
    if (userId !== who.userId) {
      const me = await db.selectFrom('users').select('is_admin').where('user_id', '=', who.userId).executeTakeFirst();
      if (!me?.is_admin) throw forbidden('You may only look up yourself');
    }
    const row = await targetUser(req);
    const devices: Record<string, { sessions: Array<{ connections: Array<Record<string, unknown>> }> }> = {};
    for (const d of await ctx.accounts.listDevices(row.user_id)) {
      // One last-seen address is kept per device, so each device has one session with one connection.
      const connection: Record<string, unknown> = {};
      if (d.last_seen_ip) connection.ip = d.last_seen_ip;
      if (d.last_seen_ts) connection.last_seen = d.last_seen_ts;
      devices[d.device_id] = { sessions: [{ connections: [connection] }] };
    }
    return { user_id: row.user_id, devices };
  });

  app.get('/_matrix/client/v1/admin/lock/:userId', async (req) => {
    await requireServerAdmin(ctx, req);
    return { locked: !!(await targetUser(req)).locked };
  });

  app.put('/_matrix/client/v1/admin/lock/:userId', async (req) => {
    await requireServerAdmin(ctx, req);
    const body = parseBody(lockBody, req.body);
    const row = await targetUser(req);
    await db.updateTable('users').set({ locked: body.locked ? 1 : 0 }).where('user_id', '=', row.user_id).execute();
    ctx.tokens.forgetUser(row.user_id);
    return { locked: body.locked };
  });

  app.get('/_matrix/client/v1/admin/suspend/:userId', async (req) => {
    await requireServerAdmin(ctx, req);
    return { suspended: !!(await targetUser(req)).suspended };
  });

  app.put('/_matrix/client/v1/admin/suspend/:userId', async (req) => {
    await requireServerAdmin(ctx, req);
    const body = parseBody(suspendBody, req.body);
    const row = await targetUser(req);
    await setSuspended(ctx, row.user_id, body.suspended);
    return { suspended: body.suspended };
  });
}

/** Set or lift a suspension; it applies to the user's next request. */
export async function setSuspended(ctx: Context, userId: string, suspended: boolean): Promise<void> {
  await ctx.storage.db.updateTable('users').set({ suspended: suspended ? 1 : 0 }).where('user_id', '=', userId).execute();
  ctx.tokens.forgetUser(userId);
}
