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
import { invalidParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { parseBody } from '../server/validate.js';
import { requireServerAdmin } from './auth.js';

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
    // Anyone may look themselves up; anyone else takes a server admin.
    if ((req.params as { userId: string }).userId !== who.userId) await requireServerAdmin(ctx, req);
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

  /** GET and PUT for one reversible account flag: `{"<flag>": bool}` in and out. */
  const flagRoutes = (path: string, flag: 'locked' | 'suspended') => {
    const body = z.object({ [flag]: z.boolean() });
    app.get(`/_matrix/client/v1/admin/${path}/:userId`, async (req) => {
      await requireServerAdmin(ctx, req);
      return { [flag]: !!(await targetUser(req))[flag] };
    });
    app.put(`/_matrix/client/v1/admin/${path}/:userId`, async (req) => {
      await requireServerAdmin(ctx, req);
      const value = parseBody(body, req.body)[flag] as boolean;
      const row = await targetUser(req);
      await setAccountFlag(ctx, row.user_id, flag, value);
      return { [flag]: value };
    });
  };
  flagRoutes('lock', 'locked');
  flagRoutes('suspend', 'suspended');
}

/** Flags that change what a user's own requests may do (see TokenService.authenticate). */
export type AccountFlag = 'locked' | 'suspended' | 'shadow_banned';

/** Set or clear an account flag; it applies to the user's next request, not after the token cache expires. */
export async function setAccountFlag(ctx: Context, userId: string, flag: AccountFlag, value: boolean): Promise<void> {
  await ctx.storage.db.updateTable('users').set({ [flag]: value ? 1 : 0 }).where('user_id', '=', userId).execute();
  ctx.tokens.forgetUser(userId);
}
