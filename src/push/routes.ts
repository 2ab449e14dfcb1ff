/**
 * Client-server endpoints of the push domain: push rules, pushers and the
 * notifications list.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { invalidParam } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { parseQuery, queryInt } from '../server/validate.js';
import { parseSetPusher } from './pushers.js';

const V3 = '/_matrix/client/v3';

const params = (req: FastifyRequest) => req.params as Record<string, string>;

/** `global` is the only push rule scope (device scopes were removed from the spec). */
function checkScope(req: FastifyRequest): void {
  const scope = params(req).scope;
  if (scope !== 'global') throw invalidParam(`Unknown push rule scope: ${scope.slice(0, 100)}`);
}

const positionQuery = z.looseObject({ before: z.string().optional(), after: z.string().optional() });

const notificationsQuery = z.looseObject({
  from: z.string().optional(),
  limit: queryInt(0, Number.MAX_SAFE_INTEGER).optional(),
  only: z.string().optional(),
});

export function registerPushRoutes(app: FastifyInstance, ctx: Context): void {
  const auth = (req: FastifyRequest) => ctx.tokens.authenticate(req);
  const push = () => ctx.push;

  // ---- push rules

  app.get(`${V3}/pushrules/`, async (req) => {
    const who = await auth(req);
    return push().rulesContent(who.userId);
  });

  app.get(`${V3}/pushrules/:scope`, async (req) => {
    const who = await auth(req);
    checkScope(req);
    return (await push().rulesContent(who.userId)).global;
  });

  app.get(`${V3}/pushrules/:scope/:kind`, async (req) => {
    const who = await auth(req);
    checkScope(req);
    return push().listKind(who.userId, params(req).kind);
  });

  app.get(`${V3}/pushrules/:scope/:kind/:ruleId`, async (req) => {
    const who = await auth(req);
    checkScope(req);
    const { kind, ruleId } = params(req);
    return push().getRule(who.userId, kind, ruleId);
  });

  app.put(`${V3}/pushrules/:scope/:kind/:ruleId`, async (req) => {
    const who = await auth(req);
    checkScope(req);
    const { kind, ruleId } = params(req);
    const q = parseQuery(positionQuery, req.query);
    await push().putRule(who.userId, kind, ruleId, req.body, { before: q.before, after: q.after });
    return {};
  });

  app.delete(`${V3}/pushrules/:scope/:kind/:ruleId`, async (req) => {
    const who = await auth(req);
    checkScope(req);
    const { kind, ruleId } = params(req);
    await push().deleteRule(who.userId, kind, ruleId);
    return {};
  });

  app.get(`${V3}/pushrules/:scope/:kind/:ruleId/:attr`, async (req) => {
    const who = await auth(req);
    checkScope(req);
    const { kind, ruleId, attr } = params(req);
    if (attr === 'enabled') return { enabled: await push().getEnabled(who.userId, kind, ruleId) };
    if (attr === 'actions') return { actions: await push().getActions(who.userId, kind, ruleId) };
    throw invalidParam(`Unknown push rule attribute: ${attr.slice(0, 100)}`);
  });

  app.put(`${V3}/pushrules/:scope/:kind/:ruleId/:attr`, async (req) => {
    const who = await auth(req);
    checkScope(req);
    const { kind, ruleId, attr } = params(req);
    if (attr === 'enabled') await push().setEnabled(who.userId, kind, ruleId, req.body);
    else if (attr === 'actions') await push().setActions(who.userId, kind, ruleId, req.body);
    else throw invalidParam(`Unknown push rule attribute: ${attr.slice(0, 100)}`);
    return {};
  });

  // ---- pushers

  app.get(`${V3}/pushers`, async (req) => {
    const who = await auth(req);
    return { pushers: await push().pushers.list(who.userId) };
  });

  app.post(`${V3}/pushers/set`, async (req) => {
    const who = await auth(req);
    const input = parseSetPusher(req.body);
    await push().pushers.set(who.userId, who.deviceId, input);
    return {};
  });

  // ---- notifications

  app.get(`${V3}/notifications`, async (req) => {
    const who = await auth(req);
    const q = parseQuery(notificationsQuery, req.query);
    return push().notifications(who.userId, { from: q.from, limit: q.limit, only: q.only });
  });
}
