/**
 * Client-server endpoints of server-side key backups: /room_keys/version
 * (backup versions) and /room_keys/keys at three levels (all rooms, one
 * room, one session).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { missingParam } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { jsonObject, parseBody } from '../server/validate.js';
import type { KeyBackupData, RoomsKeys } from './key-backup.js';

const V3 = '/_matrix/client/v3';

const params = (req: FastifyRequest) => req.params as Record<string, string>;

const createVersionBody = z.object({ algorithm: z.string().min(1), auth_data: jsonObject });
const updateVersionBody = z.object({ algorithm: z.string().min(1), auth_data: jsonObject, version: z.string().optional() });

const keyBackupData = z.object({
  first_message_index: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  forwarded_count: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  is_verified: z.boolean(),
  session_data: jsonObject,
});
const roomKeyBackup = z.object({ sessions: z.record(z.string(), keyBackupData) });
const roomsBody = z.object({ rooms: z.record(z.string(), roomKeyBackup) });

/** The required `version` query parameter. */
function versionParam(req: FastifyRequest): string {
  const v = (req.query as Record<string, unknown> | undefined)?.version;
  if (typeof v !== 'string' || v === '') throw missingParam('The version query parameter is required');
  return v;
}

export function registerKeyBackupRoutes(app: FastifyInstance, ctx: Context): void {
  const auth = (req: FastifyRequest) => ctx.tokens.authenticate(req);
  const kb = () => ctx.keyBackup;

  // ---- versions

  app.post(`${V3}/room_keys/version`, async (req) => {
    const who = await auth(req);
    const body = parseBody(createVersionBody, req.body);
    return { version: await kb().createVersion(who.userId, body.algorithm, body.auth_data) };
  });

  app.get(`${V3}/room_keys/version`, async (req) => {
    const who = await auth(req);
    return kb().getVersion(who.userId);
  });

  app.get(`${V3}/room_keys/version/:version`, async (req) => {
    const who = await auth(req);
    return kb().getVersion(who.userId, params(req).version);
  });

  app.put(`${V3}/room_keys/version/:version`, async (req) => {
    const who = await auth(req);
    const body = parseBody(updateVersionBody, req.body);
    await kb().updateVersion(who.userId, params(req).version, body);
    return {};
  });

  app.delete(`${V3}/room_keys/version/:version`, async (req) => {
    const who = await auth(req);
    await kb().deleteVersion(who.userId, params(req).version);
    return {};
  });

  // ---- keys: all rooms

  app.put(`${V3}/room_keys/keys`, async (req) => {
    const who = await auth(req);
    const version = versionParam(req);
    const body = parseBody(roomsBody, req.body);
    return kb().putKeys(who.userId, version, body.rooms as RoomsKeys);
  });

  app.get(`${V3}/room_keys/keys`, async (req) => {
    const who = await auth(req);
    return kb().getKeys(who.userId, versionParam(req));
  });

  app.delete(`${V3}/room_keys/keys`, async (req) => {
    const who = await auth(req);
    return kb().deleteKeys(who.userId, versionParam(req));
  });

  // ---- keys: one room

  app.put(`${V3}/room_keys/keys/:roomId`, async (req) => {
    const who = await auth(req);
    const version = versionParam(req);
    const body = parseBody(roomKeyBackup, req.body);
    return kb().putKeys(who.userId, version, { [params(req).roomId]: body as { sessions: Record<string, KeyBackupData> } });
  });

  app.get(`${V3}/room_keys/keys/:roomId`, async (req) => {
    const who = await auth(req);
    return kb().getKeys(who.userId, versionParam(req), params(req).roomId);
  });

  app.delete(`${V3}/room_keys/keys/:roomId`, async (req) => {
    const who = await auth(req);
    return kb().deleteKeys(who.userId, versionParam(req), params(req).roomId);
  });

  // ---- keys: one session

  app.put(`${V3}/room_keys/keys/:roomId/:sessionId`, async (req) => {
    const who = await auth(req);
    const version = versionParam(req);
    const body = parseBody(keyBackupData, req.body);
    const { roomId, sessionId } = params(req);
    return kb().putKeys(who.userId, version, { [roomId]: { sessions: { [sessionId]: body as KeyBackupData } } });
  });

  app.get(`${V3}/room_keys/keys/:roomId/:sessionId`, async (req) => {
    const who = await auth(req);
    const { roomId, sessionId } = params(req);
    return kb().getKeys(who.userId, versionParam(req), roomId, sessionId);
  });

  app.delete(`${V3}/room_keys/keys/:roomId/:sessionId`, async (req) => {
    const who = await auth(req);
    const { roomId, sessionId } = params(req);
    return kb().deleteKeys(who.userId, versionParam(req), roomId, sessionId);
  });
}
