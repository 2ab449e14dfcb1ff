import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Context } from '../server/services.js';
import { parseQuery } from '../server/validate.js';
import { parseRequest } from '../accounts/validation.js';
import { missingParam } from '../server/errors.js';
import { parseSyncToken } from '../sync/tokens.js';

const V3 = '/_matrix/client/v3';

const uploadBody = z.object({
  device_keys: z.unknown().optional(),
  one_time_keys: z.unknown().optional(),
  fallback_keys: z.unknown().optional(),
});
const queryBody = z.object({
  device_keys: z.record(z.string(), z.array(z.string())),
  timeout: z.number().optional(),
});
const claimBody = z.object({
  one_time_keys: z.record(z.string(), z.record(z.string(), z.string())),
  timeout: z.number().optional(),
});
const object = z.record(z.string(), z.unknown());

export function registerKeysRoutes(app: FastifyInstance, ctx: Context): void {
  const auth = (req: FastifyRequest) => ctx.tokens.authenticate(req);

  app.post(`${V3}/keys/upload`, async (req) => {
    const who = await auth(req);
    return ctx.keys.upload(who, parseRequest(uploadBody, req.body));
  });

  app.post(`${V3}/keys/query`, async (req) => {
    const who = await auth(req);
    return ctx.keys.query(who, parseRequest(queryBody, req.body).device_keys);
  });

  app.post(`${V3}/keys/claim`, async (req) => {
    await auth(req);
    return ctx.keys.claim(parseRequest(claimBody, req.body).one_time_keys);
  });

  app.get(`${V3}/keys/changes`, async (req) => {
    const who = await auth(req);
    const q = parseQuery(z.looseObject({ from: z.string().optional(), to: z.string().optional() }), req.query);
    if (q.from === undefined) throw missingParam('Missing parameter: from');
    if (q.to === undefined) throw missingParam('Missing parameter: to');
    return ctx.keys.changes(who, parseSyncToken(q.from).pos, parseSyncToken(q.to).pos);
  });

  app.post(`${V3}/keys/device_signing/upload`, async (req) => {
    const who = await auth(req);
    await ctx.keys.uploadCrossSigning(who, parseRequest(object, req.body));
    return {};
  });

  app.post(`${V3}/keys/signatures/upload`, async (req) => {
    const who = await auth(req);
    return ctx.keys.uploadSignatures(who, parseRequest(object, req.body));
  });
}
