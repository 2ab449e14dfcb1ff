import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isValidRoomId } from '../core/identifiers.js';
import { MatrixError, forbidden, invalidParam, missingParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { jsonObject, parseQuery } from '../server/validate.js';
import { filterDefinition } from './filters.js';
import { MAX_PASSWORD_LENGTH } from './passwords.js';
import { SERVER_MANAGED_ACCOUNT_DATA, type ProfileField } from './service.js';
import type { Requester } from './tokens.js';
import { authDict, parseRequest } from './validation.js';
import { refuseIfSuspended } from './suspension.js';

const V3 = '/_matrix/client/v3';

const password = z.string().max(MAX_PASSWORD_LENGTH);

const registerBody = z.object({
  auth: authDict,
  username: z.string().max(255).optional(),
  password: password.optional(),
  device_id: z.string().min(1).max(255).optional(),
  initial_device_display_name: z.string().max(1000).optional(),
  inhibit_login: z.boolean().optional(),
  refresh_token: z.boolean().optional(),
});

const loginBody = z.object({
  type: z.string(),
  identifier: z.unknown().optional(),
  user: z.unknown().optional(),
  medium: z.unknown().optional(),
  address: z.unknown().optional(),
  password: password.optional(),
  token: z.string().optional(),
  device_id: z.string().min(1).max(255).optional(),
  initial_device_display_name: z.string().max(1000).optional(),
  refresh_token: z.boolean().optional(),
});

const passwordBody = z.object({
  auth: authDict,
  new_password: password,
  logout_devices: z.boolean().optional(),
});

const deactivateBody = z.object({
  auth: authDict,
  id_server: z.string().optional(),
  erase: z.boolean().optional(),
});

const authOnlyBody = z.object({ auth: authDict });
const deleteDevicesBody = z.object({ auth: authDict, devices: z.array(z.string()) });
const updateDeviceBody = z.object({ display_name: z.string().max(1000).optional() });
const directoryBody = z.object({
  search_term: z.string().max(1000),
  limit: z.number().int().min(0).optional(),
});

const PROFILE_FIELDS = new Set<string>(['displayname', 'avatar_url']);
const PROFILE_KEY_RE = /^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$/;

/** The profile key of a URL, or an error: unknown-but-valid keys are not supported here. */
function profileField(keyName: string, write = false): ProfileField {
  if (PROFILE_FIELDS.has(keyName)) return keyName as ProfileField;
  if (!PROFILE_KEY_RE.test(keyName) || Buffer.byteLength(keyName) > 255) throw invalidParam('Invalid profile key.');
  if (write) throw forbidden(`Profile field ${keyName} cannot be set on this server`);
  throw notFound(`No ${keyName} set for this user`);
}

const weakPassword = () => new MatrixError('M_WEAK_PASSWORD', 400, 'Password must not be empty');

function clientIp(req: FastifyRequest): string {
  return req.ip || req.socket.remoteAddress || 'unknown';
}

/** Account data, filters and tags may only be read or written by their owner. */
function requireSelf(requester: Requester, userId: string, what: string): void {
  if (requester.userId !== userId) throw forbidden(`Cannot ${what} for other users.`);
}

function checkRoomId(roomId: string): void {
  if (!isValidRoomId(roomId)) throw invalidParam(`Invalid room ID: ${roomId}`);
}

export function registerAccountRoutes(app: FastifyInstance, ctx: Context): void {
  const accounts = () => ctx.accounts;
  const auth = (req: FastifyRequest) => ctx.tokens.authenticate(req);

  // ---- registration -----------------------------------------------------------------

  app.post(`${V3}/register`, async (req) => {
    const { kind } = parseQuery(z.looseObject({ kind: z.string().optional() }), req.query);
    if (kind === 'guest') throw new MatrixError('M_GUEST_ACCESS_FORBIDDEN', 403, 'Guest access is not allowed');
    if (kind !== undefined && kind !== 'user') throw invalidParam(`Unknown account kind ${kind}`);
    const body = parseRequest(registerBody, req.body);
    if (body.password === '') throw weakPassword();
    return accounts().register(body, clientIp(req));
  });

  app.get(`${V3}/register/available`, async (req) => {
    const { username } = parseQuery(z.looseObject({ username: z.string().optional() }), req.query);
    if (username === undefined) throw missingParam('Missing parameter: username');
    if (!(await accounts().registrationEnabled())) throw forbidden('Registration is disabled');
    await accounts().checkUsernameAvailable(username);
    return { available: true };
  });

  app.get('/_matrix/client/v1/register/m.login.registration_token/validity', async (req) => {
    const { token } = parseQuery(z.looseObject({ token: z.string().optional() }), req.query);
    if (token === undefined) throw missingParam('Missing parameter: token');
    ctx.limits.registration.take(`validity:${clientIp(req)}`);
    return { valid: await accounts().registrationTokenValid(token) };
  });

  // ---- login and sessions -------------------------------------------------------------

  app.get(`${V3}/login`, async () => accounts().loginFlows());

  app.post(`${V3}/login`, async (req) => {
    const body = parseRequest(loginBody, req.body);
    return accounts().login(body, clientIp(req));
  });

  app.post(`${V3}/logout`, async (req) => {
    await accounts().logout(await ctx.tokens.authenticate(req, { allowLocked: true }));
    return {};
  });

  app.post(`${V3}/logout/all`, async (req) => {
    await accounts().logoutAll(await ctx.tokens.authenticate(req, { allowLocked: true }));
    return {};
  });

  app.get(`${V3}/account/whoami`, async (req) => {
    const who = await auth(req);
    return { user_id: who.userId, device_id: who.deviceId, is_guest: who.isGuest };
  });

  // No third-party identifiers are kept; clients still list them in their settings.
  app.get(`${V3}/account/3pid`, async (req) => {
    await auth(req);
    return { threepids: [] };
  });

  app.post(`${V3}/account/password`, async (req) => {
    const who = await auth(req);
    const body = parseRequest(passwordBody, req.body);
    if (body.new_password === '') throw weakPassword();
    await accounts().changePassword(who, body.auth, body.new_password, body.logout_devices ?? true);
    return {};
  });

  app.post(`${V3}/account/deactivate`, async (req) => {
    const who = await auth(req);
    const body = parseRequest(deactivateBody, req.body);
    await accounts().deactivate(who, body.auth);
    return { id_server_unbind_result: 'success' };
  });

  // ---- devices --------------------------------------------------------------------------

  app.get(`${V3}/devices`, async (req) => {
    const who = await auth(req);
    return { devices: await accounts().listDevices(who.userId) };
  });

  app.get<{ Params: { deviceId: string } }>(`${V3}/devices/:deviceId`, async (req) => {
    const who = await auth(req);
    return accounts().getDevice(who.userId, req.params.deviceId);
  });

  app.put<{ Params: { deviceId: string } }>(`${V3}/devices/:deviceId`, async (req) => {
    const who = await auth(req);
    const body = parseRequest(updateDeviceBody, req.body);
    await accounts().updateDevice(who.userId, req.params.deviceId, body.display_name);
    return {};
  });

  app.delete<{ Params: { deviceId: string } }>(`${V3}/devices/:deviceId`, async (req) => {
    const who = await auth(req);
    const body = parseRequest(authOnlyBody, req.body);
    await accounts().deleteDevicesWithAuth(who, body.auth, [req.params.deviceId]);
    return {};
  });

  app.post(`${V3}/delete_devices`, async (req) => {
    const who = await auth(req);
    const body = parseRequest(deleteDevicesBody, req.body);
    await accounts().deleteDevicesWithAuth(who, body.auth, body.devices);
    return {};
  });

  // ---- profile ----------------------------------------------------------------------------

  app.get<{ Params: { userId: string } }>(`${V3}/profile/:userId`, async (req) => {
    const profile = await accounts().lookupProfile(req.params.userId);
    const out: Record<string, string> = {};
    if (profile.displayname != null) out.displayname = profile.displayname;
    if (profile.avatar_url != null) out.avatar_url = profile.avatar_url;
    return out;
  });

  app.get<{ Params: { userId: string; keyName: string } }>(`${V3}/profile/:userId/:keyName`, async (req) => {
    const field = profileField(req.params.keyName);
    const profile = await accounts().lookupProfile(req.params.userId);
    const value = profile[field];
    if (value == null) throw notFound(`No ${field} set for this user`);
    return { [field]: value };
  });

  app.put<{ Params: { userId: string; keyName: string } }>(`${V3}/profile/:userId/:keyName`, async (req) => {
    const who = await auth(req);
    const field = profileField(req.params.keyName, true);
    if (who.userId !== req.params.userId) throw forbidden("Cannot change another user's profile");
    refuseIfSuspended(who);
    const body = parseRequest(jsonObject, req.body);
    if (!(field in body)) throw missingParam(`Missing parameter: ${field}`);
    const value = body[field];
    if (value !== null && typeof value !== 'string') throw new MatrixError('M_BAD_JSON', 400, `${field} must be a string`);
    await accounts().setProfileField(who.userId, field, value);
    return {};
  });

  app.delete<{ Params: { userId: string; keyName: string } }>(`${V3}/profile/:userId/:keyName`, async (req) => {
    const who = await auth(req);
    const field = profileField(req.params.keyName, true);
    if (who.userId !== req.params.userId) throw forbidden("Cannot change another user's profile");
    refuseIfSuspended(who);
    await accounts().setProfileField(who.userId, field, null);
    return {};
  });

  // ---- account data and tags ---------------------------------------------------------------

  const putAccountData = async (req: FastifyRequest, userId: string, roomId: string, type: string) => {
    const who = await auth(req);
    requireSelf(who, userId, 'add account data');
    if (roomId) checkRoomId(roomId);
    if (SERVER_MANAGED_ACCOUNT_DATA.has(type)) {
      throw new MatrixError('M_BAD_JSON', 405, `Cannot set ${type} through this API.`);
    }
    const content = parseRequest(jsonObject, req.body);
    await accounts().setAccountData(userId, roomId, type, content);
    return {};
  };

  const getAccountData = async (req: FastifyRequest, userId: string, roomId: string, type: string) => {
    const who = await auth(req);
    requireSelf(who, userId, 'get account data');
    if (roomId) checkRoomId(roomId);
    let content = await accounts().getAccountData(userId, roomId, type);
    // Push rules exist (the server defaults) before the user first changes them.
    if (content === undefined && !roomId && type === 'm.push_rules') content = (await ctx.push.rulesContent(userId)) as unknown as Record<string, unknown>;
    if (content === undefined) throw notFound('Account data not found.');
    return content;
  };

  type AdParams = { userId: string; type: string };
  type RoomAdParams = AdParams & { roomId: string };
  app.put<{ Params: AdParams }>(`${V3}/user/:userId/account_data/:type`, (req) =>
    putAccountData(req, req.params.userId, '', req.params.type));
  app.get<{ Params: AdParams }>(`${V3}/user/:userId/account_data/:type`, (req) =>
    getAccountData(req, req.params.userId, '', req.params.type));
  app.put<{ Params: RoomAdParams }>(`${V3}/user/:userId/rooms/:roomId/account_data/:type`, (req) =>
    putAccountData(req, req.params.userId, req.params.roomId, req.params.type));
  app.get<{ Params: RoomAdParams }>(`${V3}/user/:userId/rooms/:roomId/account_data/:type`, (req) =>
    getAccountData(req, req.params.userId, req.params.roomId, req.params.type));

  type TagsParams = { userId: string; roomId: string };
  type TagParams = TagsParams & { tag: string };

  app.get<{ Params: TagsParams }>(`${V3}/user/:userId/rooms/:roomId/tags`, async (req) => {
    const who = await auth(req);
    requireSelf(who, req.params.userId, 'get tags');
    checkRoomId(req.params.roomId);
    const content = await accounts().getAccountData(req.params.userId, req.params.roomId, 'm.tag');
    const tags = content?.tags;
    return { tags: tags && typeof tags === 'object' && !Array.isArray(tags) ? tags : {} };
  });

  app.put<{ Params: TagParams }>(`${V3}/user/:userId/rooms/:roomId/tags/:tag`, async (req) => {
    const who = await auth(req);
    const { userId, roomId, tag } = req.params;
    requireSelf(who, userId, 'add tags');
    checkRoomId(roomId);
    if (!tag || Buffer.byteLength(tag) > 255) throw invalidParam('Tag names must be 1 to 255 bytes');
    const info = parseRequest(jsonObject, req.body);
    if (info.order !== undefined && typeof info.order !== 'number') throw new MatrixError('M_BAD_JSON', 400, 'order must be a number');
    await accounts().updateAccountData(userId, roomId, 'm.tag', (current) => ({
      ...(current ?? {}),
      tags: { ...tagsOf(current), [tag]: info },
    }));
    return {};
  });

  app.delete<{ Params: TagParams }>(`${V3}/user/:userId/rooms/:roomId/tags/:tag`, async (req) => {
    const who = await auth(req);
    const { userId, roomId, tag } = req.params;
    requireSelf(who, userId, 'remove tags');
    checkRoomId(roomId);
    await accounts().updateAccountData(userId, roomId, 'm.tag', (current) => {
      const tags = tagsOf(current);
      if (!(tag in tags)) return undefined;
      delete tags[tag];
      return { ...(current ?? {}), tags };
    });
    return {};
  });

  // ---- filters ----------------------------------------------------------------------------

  app.post<{ Params: { userId: string } }>(`${V3}/user/:userId/filter`, async (req) => {
    const who = await auth(req);
    requireSelf(who, req.params.userId, 'create filters');
    const filter = parseRequest(filterDefinition, req.body);
    return { filter_id: await accounts().createFilter(who.userId, filter) };
  });

  app.get<{ Params: { userId: string; filterId: string } }>(`${V3}/user/:userId/filter/:filterId`, async (req) => {
    const who = await auth(req);
    requireSelf(who, req.params.userId, 'get filters');
    const filter = await accounts().getFilter(who.userId, req.params.filterId);
    if (!filter) throw notFound('No such filter');
    return filter;
  });

  // ---- user directory -------------------------------------------------------------------------

  app.post(`${V3}/user_directory/search`, async (req) => {
    const who = await auth(req);
    const body = parseRequest(directoryBody, req.body);
    return accounts().searchUserDirectory(who.userId, body.search_term, Math.min(body.limit ?? 10, 100));
  });
}

function tagsOf(content: Record<string, unknown> | undefined): Record<string, unknown> {
  const tags = content?.tags;
  return tags && typeof tags === 'object' && !Array.isArray(tags) ? { ...(tags as Record<string, unknown>) } : {};
}
