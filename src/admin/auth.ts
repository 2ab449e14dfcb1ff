/**
 * Who may use the Synapse-compatible admin API: a valid access token (401
 * otherwise, like every authenticated endpoint) of a user whose
 * users.is_admin is 1 (403 M_FORBIDDEN otherwise).
 */
import type { FastifyRequest } from 'fastify';
import type { Requester } from '../accounts/tokens.js';
import { forbidden } from '../server/errors.js';
import type { Context } from '../server/services.js';

export async function requireServerAdmin(ctx: Context, req: FastifyRequest): Promise<Requester> {
  const who = await ctx.tokens.authenticate(req);
  // The token cache may hold an older is_admin; admin calls are rare, so ask the database:
  // a demotion takes effect at once and a promotion needs no new login.
  const row = await ctx.storage.db.selectFrom('users').select('is_admin').where('user_id', '=', who.userId).executeTakeFirst();
  if (!row || !row.is_admin) throw forbidden('You are not a server admin');
  return who;
}
