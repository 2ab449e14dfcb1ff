/**
 * Synapse's registration token admin API
 * (docs/usage/administration/admin_api/registration_tokens.md), same paths,
 * parameters and answers:
 *
 *   GET    /_synapse/admin/v1/registration_tokens[?valid=true|false]  {"registration_tokens": [...]}
 *   GET    /_synapse/admin/v1/registration_tokens/{token}             token object
 *   POST   /_synapse/admin/v1/registration_tokens/new                 token object
 *          {token?, length?, uses_allowed?, expiry_time?}
 *   PUT    /_synapse/admin/v1/registration_tokens/{token}             token object
 *          {uses_allowed?, expiry_time?}
 *   DELETE /_synapse/admin/v1/registration_tokens/{token}             {}
 *
 * A token object is {token, uses_allowed, pending, completed, expiry_time}.
 * Errors: 401 without a valid token, 403 M_FORBIDDEN for non-admins, 400
 * M_INVALID_PARAM for bad parameters or an existing token, 404 M_NOT_FOUND
 * for unknown tokens.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { badJson, invalidParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { requireServerAdmin } from './auth.js';
import { TokenExists, parseNewToken, parseTokenUpdate } from '../accounts/registration-tokens.js';

const BASE = '/_synapse/admin/v1/registration_tokens';

const tokenParam = (req: FastifyRequest) => (req.params as Record<string, string>).token;

function jsonBody(req: FastifyRequest): Record<string, unknown> {
  const b = req.body ?? {};
  if (typeof b !== 'object' || Array.isArray(b)) throw badJson('Content must be a JSON object');
  return b as Record<string, unknown>;
}

const noSuchToken = (token: string) => notFound(`No such registration token: ${token}`);

export function registerAdminTokenRoutes(app: FastifyInstance, ctx: Context): void {
  const tokens = () => ctx.accounts.registrationTokens;

  app.get(BASE, async (req) => {
    await requireServerAdmin(ctx, req);
    const v = (req.query as Record<string, unknown> | undefined)?.valid;
    if (v !== undefined && v !== 'true' && v !== 'false') {
      throw invalidParam("Boolean query parameter 'valid' must be one of ['true', 'false']");
    }
    return { registration_tokens: await tokens().list(v === undefined ? undefined : v === 'true') };
  });

  // Registered before /:token so that "new" is never read as a token name.
  app.post(`${BASE}/new`, async (req) => {
    await requireServerAdmin(ctx, req);
    const request = parseNewToken(jsonBody(req), Date.now());
    try {
      return await tokens().create(request);
    } catch (err) {
      if (err instanceof TokenExists) throw invalidParam(err.message);
      throw err;
    }
  });

  app.get(`${BASE}/:token`, async (req) => {
    await requireServerAdmin(ctx, req);
    const token = tokenParam(req);
    const t = await tokens().get(token);
    if (!t) throw noSuchToken(token);
    return t;
  });

  app.put(`${BASE}/:token`, async (req) => {
    await requireServerAdmin(ctx, req);
    const token = tokenParam(req);
    const change = parseTokenUpdate(jsonBody(req), Date.now());
    const t = await tokens().update(token, change);
    if (!t) throw noSuchToken(token);
    return t;
  });

  app.delete(`${BASE}/:token`, async (req) => {
    await requireServerAdmin(ctx, req);
    const token = tokenParam(req);
    if (!(await tokens().delete(token))) throw noSuchToken(token);
    return {};
  });
}
