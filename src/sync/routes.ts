/**
 * Client-server endpoints of the sync domain: /sync, typing, receipts,
 * read markers, presence, and the legacy /events and initialSync.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isValidRoomId } from '../core/identifiers.js';
import { forbidden, invalidParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { parseBody, parseQuery, queryInt } from '../server/validate.js';
import { legacyEvents, legacyInitialSync, legacyRoomInitialSync } from './legacy.js';
import { isPresenceState } from './presence.js';

const V3 = '/_matrix/client/v3';

const params = (req: FastifyRequest) => req.params as Record<string, string>;

function roomIdParam(req: FastifyRequest): string {
  const roomId = params(req).roomId;
  if (!isValidRoomId(roomId)) throw invalidParam(`Invalid room id: ${roomId.slice(0, 255)}`);
  return roomId;
}

const queryBool = z.enum(['true', 'false']).transform((v) => v === 'true');

const syncQuery = z.object({
  since: z.string().optional(),
  timeout: queryInt(0, Number.MAX_SAFE_INTEGER).optional(),
  filter: z.string().optional(),
  full_state: queryBool.optional(),
  set_presence: z.enum(['online', 'offline', 'unavailable']).optional(),
  use_state_after: queryBool.optional(),
});

const eventsQuery = z.object({
  from: z.string().optional(),
  timeout: queryInt(0, Number.MAX_SAFE_INTEGER).optional(),
  room_id: z.string().optional(),
});

const initialSyncQuery = z.object({
  limit: queryInt(0, Number.MAX_SAFE_INTEGER).optional(),
  archived: queryBool.optional(),
});

const typingBody = z.object({
  typing: z.boolean(),
  timeout: z.number().min(0).optional(),
});

const receiptBody = z.looseObject({ thread_id: z.unknown().optional() });

const readMarkersBody = z.looseObject({
  'm.fully_read': z.string().optional(),
  'm.read': z.string().optional(),
  'm.read.private': z.string().optional(),
});

const presenceBody = z.looseObject({
  presence: z.string(),
  status_msg: z.string().max(4096).nullable().optional(),
});

/** An AbortSignal that fires when the client disconnects before we answer. */
function disconnectSignal(reply: FastifyReply): { signal: AbortSignal; done: () => void } {
  const ac = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) ac.abort();
  };
  reply.raw.on('close', onClose);
  return { signal: ac.signal, done: () => reply.raw.off('close', onClose) };
}

export function registerSyncRoutes(app: FastifyInstance, ctx: Context): void {
  // ---- /sync

  app.get(`${V3}/sync`, async (req, reply) => {
    const who = await ctx.tokens.authenticate(req);
    const q = parseQuery(syncQuery, req.query);
    const { signal, done } = disconnectSignal(reply);
    ctx.metrics?.syncInFlight.inc();
    try {
      return await ctx.sync.sync({
        userId: who.userId,
        deviceId: who.deviceId,
        since: q.since,
        timeoutMs: q.timeout,
        filter: q.filter,
        fullState: q.full_state,
        setPresence: q.set_presence,
        signal,
      });
    } finally {
      ctx.metrics?.syncInFlight.dec();
      done();
    }
  });

  // ---- typing

  app.put(`${V3}/rooms/:roomId/typing/:userId`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    if (params(req).userId !== who.userId) throw forbidden('You may only set your own typing state');
    const body = parseBody(typingBody, req.body);
    await ctx.ephemeral.setTyping(who.userId, roomId, body.typing, body.timeout);
    return {};
  });

  // ---- receipts and read markers

  app.post(`${V3}/rooms/:roomId/receipt/:receiptType/:eventId`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const { receiptType, eventId } = params(req);
    const body = parseBody(receiptBody, req.body);
    await ctx.ephemeral.receipts.send(who.userId, roomId, receiptType, eventId, body.thread_id);
    return {};
  });

  app.post(`${V3}/rooms/:roomId/read_markers`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const body = parseBody(readMarkersBody, req.body);
    await ctx.ephemeral.receipts.setReadMarkers(who.userId, roomId, {
      fullyRead: body['m.fully_read'],
      read: body['m.read'],
      readPrivate: body['m.read.private'],
    });
    return {};
  });

  // ---- presence

  app.put(`${V3}/presence/:userId/status`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    if (params(req).userId !== who.userId) throw forbidden('You may only set your own presence');
    const body = parseBody(presenceBody, req.body);
    if (!isPresenceState(body.presence)) throw invalidParam('presence must be online, offline or unavailable');
    await ctx.ephemeral.presence.set(who.userId, body.presence, { statusMsg: body.status_msg ?? null, active: body.presence === 'online' });
    return {};
  });

  app.get(`${V3}/presence/:userId/status`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const userId = params(req).userId;
    if (userId !== who.userId) {
      if (!(await ctx.accounts.userExists(userId))) throw notFound('Unknown user');
      if (!(await sharesRoom(ctx, who.userId, userId))) throw forbidden('You are not allowed to see their presence');
    }
    // With presence off, what a user sets is kept (and shown to them) but not shared.
    if (!ctx.config.presence_enabled && userId !== who.userId) return { presence: 'offline' };
    const p = await ctx.ephemeral.presence.get(userId);
    if (p) return p;
    if (userId === who.userId || (await ctx.accounts.userExists(userId))) return { presence: 'offline' };
    throw notFound('Unknown user');
  });

  // ---- legacy

  app.get(`${V3}/events`, async (req, reply) => {
    const who = await ctx.tokens.authenticate(req);
    const q = parseQuery(eventsQuery, req.query);
    const { signal, done } = disconnectSignal(reply);
    try {
      return await legacyEvents(ctx, who, { from: q.from, timeoutMs: q.timeout, roomId: q.room_id, signal });
    } finally {
      done();
    }
  });

  app.get(`${V3}/initialSync`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const q = parseQuery(initialSyncQuery, req.query);
    return legacyInitialSync(ctx, who, { limit: q.limit, archived: q.archived });
  });

  app.get(`${V3}/rooms/:roomId/initialSync`, async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const roomId = roomIdParam(req);
    const q = parseQuery(initialSyncQuery, req.query);
    return legacyRoomInitialSync(ctx, who, roomId, { limit: q.limit });
  });
}

async function sharesRoom(ctx: Context, a: string, b: string): Promise<boolean> {
  const row = await ctx.storage.db.selectFrom('room_members as x')
    .innerJoin('room_members as y', 'y.room_id', 'x.room_id')
    .select('x.room_id')
    .where('x.user_id', '=', a).where('x.membership', '=', 'join')
    .where('y.user_id', '=', b).where('y.membership', '=', 'join')
    .limit(1).executeTakeFirst();
  return !!row;
}
