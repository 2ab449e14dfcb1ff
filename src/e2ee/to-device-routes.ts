/**
 * Client-server endpoints for send-to-device messaging and MSC3814
 * dehydrated devices (unstable prefix, as Element uses them).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Context } from '../server/services.js';

const V3 = '/_matrix/client/v3';
const MSC3814 = '/_matrix/client/unstable/org.matrix.msc3814.v1';

const params = (req: FastifyRequest) => req.params as Record<string, string>;

export function registerToDeviceRoutes(app: FastifyInstance, ctx: Context): void {
  const auth = (req: FastifyRequest) => ctx.tokens.authenticate(req);

  app.put(`${V3}/sendToDevice/:eventType/:txnId`, async (req) => {
    const who = await auth(req);
    const { eventType, txnId } = params(req);
    await ctx.toDevice.send(who, eventType, txnId, req.body);
    return {};
  });

  app.get(`${MSC3814}/dehydrated_device`, async (req) => {
    const who = await auth(req);
    return ctx.toDevice.dehydrated.get(who.userId);
  });

  app.put(`${MSC3814}/dehydrated_device`, async (req) => {
    const who = await auth(req);
    return ctx.toDevice.dehydrated.put(who.userId, req.body);
  });

  app.delete(`${MSC3814}/dehydrated_device`, async (req) => {
    const who = await auth(req);
    return ctx.toDevice.dehydrated.delete(who.userId);
  });

  app.post(`${MSC3814}/dehydrated_device/:deviceId/events`, async (req) => {
    const who = await auth(req);
    return ctx.toDevice.dehydrated.events(who.userId, params(req).deviceId, req.body);
  });
}
