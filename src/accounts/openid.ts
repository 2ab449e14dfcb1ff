/**
 * OpenID tokens (client-server spec "OpenID"; server-server "OpenID"):
 * a user asks for a short-lived token and hands it to a third party (an
 * integration manager), which exchanges it at our federation endpoint
 * /openid/userinfo for the user's id. The token proves nothing else and
 * grants no access to the client API.
 *
 *   POST /_matrix/client/v3/user/{userId}/openid/request_token
 *
 * Tokens are stored as their SHA-256 (like access tokens), with an expiry;
 * expired rows are purged whenever a new token is issued.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MatrixError, forbidden } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { jsonObject, parseBody } from '../server/validate.js';
import { hashToken, newToken } from './tokens.js';

const V3 = '/_matrix/client/v3';
/** How long a token may be exchanged (the spec leaves it to the server; Synapse uses an hour). */
export const OPENID_TOKEN_LIFETIME_MS = 60 * 60 * 1000;

export interface OpenIdToken {
  access_token: string;
  token_type: 'Bearer';
  matrix_server_name: string;
  expires_in: number;
}

const unknownToken = () => new MatrixError('M_UNKNOWN_TOKEN', 401, 'Access token unknown or expired');

/** Issue a new token for `userId` (the caller has checked who asks). */
export async function issueOpenIdToken(ctx: Context, userId: string, now = Date.now()): Promise<OpenIdToken> {
  const token = newToken('rvoi_');
  await ctx.write(async (tx) => {
    await tx.deleteFrom('openid_tokens').where('expires_ts', '<=', now).execute();
    await tx.insertInto('openid_tokens')
      .values({ token_hash: hashToken(token), user_id: userId, expires_ts: now + OPENID_TOKEN_LIFETIME_MS })
      .execute();
  });
  return {
    access_token: token,
    token_type: 'Bearer',
    matrix_server_name: ctx.config.server_name,
    expires_in: Math.floor(OPENID_TOKEN_LIFETIME_MS / 1000),
  };
}

/** The user a still-valid token belongs to; 401 M_UNKNOWN_TOKEN otherwise. */
export async function openIdUser(ctx: Context, token: string | undefined, now = Date.now()): Promise<string> {
  if (!token) throw unknownToken();
  const row = await ctx.storage.db.selectFrom('openid_tokens').select(['user_id', 'expires_ts'])
    .where('token_hash', '=', hashToken(token)).executeTakeFirst();
  if (!row || Number(row.expires_ts) <= now) throw unknownToken();
  return row.user_id;
}

export function registerOpenIdRoutes(app: FastifyInstance, ctx: Context): void {
  app.post(`${V3}/user/:userId/openid/request_token`, async (req: FastifyRequest) => {
    const who = await ctx.tokens.authenticate(req);
    const { userId } = req.params as { userId: string };
    // The body is an empty object in the spec; anything else JSON is tolerated like other servers do.
    parseBody(jsonObject, req.body);
    if (userId !== who.userId) throw forbidden('You may only request OpenID tokens for yourself');
    return issueOpenIdToken(ctx, who.userId);
  });
}
