/**
 * Synapse's user admin API (docs/admin_api/user_admin_api.md), same paths,
 * parameters and answers, as synadm and synapse-admin send them:
 *
 *   GET    /_synapse/admin/v1/server_version                 {"server_version"}
 *   GET    /_synapse/admin/v2/users?from&limit&guests&deactivated&admins&name&user_id&order_by&dir
 *                                                            {"users": [...], "next_token"?, "total"}
 *   GET    /_synapse/admin/v2/users/{user_id}                one user's details
 *   PUT    /_synapse/admin/v2/users/{user_id}                create (201) or modify (200); answers the details
 *   POST   /_synapse/admin/v1/deactivate/{user_id} {erase}   {"id_server_unbind_result": "success"}
 *   POST   /_synapse/admin/v1/reset_password/{user_id}       {}
 *   GET    /_synapse/admin/v1/whois/{user_id}                sessions (one connection per device)
 *   GET    /_synapse/admin/v1/users/{user_id}/admin          {"admin": bool};  PUT {"admin": bool} -> {}
 *   POST   /_synapse/admin/v1/users/{user_id}/shadow_ban     {}  (DELETE lifts it)
 *   GET    /_synapse/admin/v1/users/{user_id}/override_ratelimit   {messages_per_second, burst_count} or {}
 *          (POST sets, DELETE removes; the message rate limiter honours it at once)
 *   GET    /_synapse/admin/v1/users/{user_id}/joined_rooms   {"joined_rooms": [...], "total"}
 *   GET    /_synapse/admin/v2/users/{user_id}/devices        {"devices": [...], "total"}
 *   GET    /_synapse/admin/v2/users/{user_id}/devices/{id}   one device;  PUT {display_name} -> {};  DELETE -> {}
 *   POST   /_synapse/admin/v2/users/{user_id}/delete_devices {"devices": [...]} -> {}
 *
 * Errors as Synapse gives them: 401 without a token, 403 M_FORBIDDEN for
 * non-admins, 400 for remote users and bad parameters, 404 M_NOT_FOUND for
 * unknown local users.
 *
 * What the flags do here: `shadow_banned` makes the user's room sends answer
 * with a made-up event id and persist nothing (src/rooms/routes.ts);
 * `locked` makes the user's requests answer 401 M_USER_LOCKED (see
 * TokenService.authenticate); `user_type` is stored and reported only; `erased` is set by
 * deactivation with erase=true (the profile is cleared by any deactivation)
 * and cleared on reactivation. Third-party identifiers and external ids do
 * not exist in Ranvier: they are reported empty, and setting them is refused.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sql, type Selectable } from 'kysely';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { hashPassword, MAX_PASSWORD_LENGTH } from '../accounts/passwords.js';
import { serverNameOf } from '../core/identifiers.js';
import { MatrixError, badJson, invalidParam, missingParam, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import type { Database } from '../storage/schema.js';
import { parseBody } from '../server/validate.js';
import type { Requester } from '../accounts/tokens.js';
import { requireServerAdmin } from './auth.js';
import { setAccountFlag } from './client-admin-routes.js';
import { V1, V2, type Query, params, query, intParam } from './params.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
const DEFAULT_LIMIT = 100;


function boolParam(q: Query, name: string): boolean | undefined {
  const v = q[name];
  if (v === undefined) return undefined;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw invalidParam(`Boolean query parameter '${name}' must be one of ['true', 'false']`);
}

function strParam(q: Query, name: string): string | undefined {
  const v = q[name];
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string') throw invalidParam(`Query parameter '${name}' must be a string`);
  return v;
}

/** Escape LIKE wildcards so a search term matches literally. */
const likePattern = (term: string) => `%${term.toLowerCase().replace(/[\\%_]/g, (c) => '\\' + c)}%`;

/** Synapse's order_by values -> our columns. */
const ORDER_COLUMNS = {
  name: 'user_id',
  is_guest: 'is_guest',
  admin: 'is_admin',
  user_type: 'user_type',
  deactivated: 'deactivated',
  shadow_banned: 'shadow_banned',
  displayname: 'displayname',
  avatar_url: 'avatar_url',
  creation_ts: 'created_ts',
  last_seen_ts: 'last_seen_ts',
  locked: 'locked',
} as const;

/** A users row as the admin queries select it, with the newest device activity. */
type UserRow = Selectable<Database['users']> & { last_seen_ts: number | null };

/** The fields GET /v2/users lists for each user. */
function listEntry(r: UserRow) {
  return {
    name: r.user_id,
    user_type: r.user_type,
    is_guest: !!r.is_guest,
    admin: !!r.is_admin,
    deactivated: !!r.deactivated,
    shadow_banned: !!r.shadow_banned,
    displayname: r.displayname,
    avatar_url: r.avatar_url,
    creation_ts: Number(r.created_ts),
    approved: true,
    erased: !!r.erased,
    last_seen_ts: r.last_seen_ts == null ? null : Number(r.last_seen_ts),
    locked: !!r.locked,
  };
}

/** GET /v2/users/{user_id}: the list entry plus what Ranvier does not have (3pids, consent, appservices). */
function details(r: UserRow) {
  return {
    ...listEntry(r),
    threepids: [],
    external_ids: [],
    appservice_id: null,
    consent_server_notice_sent: null,
    consent_version: null,
    consent_ts: null,
    suspended: !!r.suspended,
  };
}

const putUserSchema = z.object({
  password: z.string().max(MAX_PASSWORD_LENGTH).nullable().optional(),
  logout_devices: z.boolean().optional(),
  displayname: z.string().nullable().optional(),
  avatar_url: z.string().nullable().optional(),
  admin: z.boolean().optional(),
  deactivated: z.boolean().optional(),
  locked: z.boolean().optional(),
  user_type: z.string().nullable().optional(),
  threepids: z.array(z.unknown()).optional(),
  external_ids: z.array(z.unknown()).optional(),
}).passthrough();

const deactivateSchema = z.object({ erase: z.boolean({ message: "Param 'erase' must be a boolean, if given" }).optional() }).passthrough();
const resetPasswordSchema = z.object({
  new_password: z.string().max(MAX_PASSWORD_LENGTH).optional(),
  logout_devices: z.boolean().optional(),
}).passthrough();
const deviceUpdateSchema = z.object({ display_name: z.string().max(256).optional() }).passthrough();
const deleteDevicesSchema = z.object({ devices: z.array(z.string()) });

export function registerAdminUsersRoutes(app: FastifyInstance, ctx: Context): void {
  const db = ctx.storage.db;
  const isLocal = (userId: string) => serverNameOf(userId) === ctx.config.server_name;

  const selectUsers = () => db.selectFrom('users').select((eb) => [
    'user_id', 'password_hash', 'is_admin', 'is_guest', 'deactivated', 'created_ts', 'displayname', 'avatar_url',
    'shadow_banned', 'erased', 'locked', 'suspended', 'user_type',
    eb.selectFrom('devices').select((d) => d.fn.max('devices.last_seen_ts').as('m'))
      .whereRef('devices.user_id', '=', 'users.user_id').as('last_seen_ts'),
  ]);

  const findUser = async (userId: string): Promise<UserRow | undefined> =>
    (await selectUsers().where('user_id', '=', userId).executeTakeFirst()) as UserRow | undefined;

  /** The local user named in the path: 400 for remote users, 404 for unknown ones. */
  const localUser = async (req: FastifyRequest, remoteMessage = 'Can only look up local users'): Promise<UserRow> => {
    const userId = params(req).userId;
    if (!isLocal(userId)) throw new MatrixError('M_UNKNOWN', 400, remoteMessage);
    const row = await findUser(userId);
    if (!row) throw notFound('User not found');
    return row;
  };

  const setPassword = async (userId: string, password: string, logoutDevices: boolean) => {
    const passwordHash = await hashPassword(password);
    await db.updateTable('users').set({ password_hash: passwordHash }).where('user_id', '=', userId).execute();
    if (logoutDevices) await ctx.accounts.deleteDevices(userId, undefined);
  };

  // Overrides live in the database; the limiter keeps them in memory, so load them once at start.
  db.selectFrom('ratelimit_overrides').selectAll().execute().then((rows) => {
    for (const r of rows) ctx.limits.message.setOverride(r.user_id, { perSecond: Number(r.messages_per_second), burst: Number(r.burst_count) });
  }).catch((err: unknown) => ctx.log.warn({ err }, 'could not load rate limit overrides'));

  app.get(`${V1}/server_version`, async (req) => {
    await requireServerAdmin(ctx, req);
    return { server_version: `Ranvier ${VERSION}` };
  });

  // ---- accounts

  app.get(`${V2}/users`, async (req) => {
    await requireServerAdmin(ctx, req);
    const q = query(req);
    const from = intParam(q, 'from', 0);
    const limit = intParam(q, 'limit', DEFAULT_LIMIT);
    const guests = boolParam(q, 'guests') ?? true;
    const deactivated = boolParam(q, 'deactivated') ?? false;
    const admins = boolParam(q, 'admins');
    const name = strParam(q, 'name');
    const userIdTerm = strParam(q, 'user_id');
    const orderBy = strParam(q, 'order_by') ?? 'name';
    if (!Object.hasOwn(ORDER_COLUMNS, orderBy)) {
      throw invalidParam(`Query parameter 'order_by' must be one of ${Object.keys(ORDER_COLUMNS).join(', ')}`);
    }
    const dir = strParam(q, 'dir') ?? 'f';
    if (dir !== 'f' && dir !== 'b') throw invalidParam("Query parameter 'dir' must be one of ['b', 'f']");

    let base = selectUsers();
    if (!guests) base = base.where('is_guest', '=', 0);
    if (!deactivated) base = base.where('deactivated', '=', 0);
    if (admins !== undefined) base = base.where('is_admin', '=', admins ? 1 : 0);
    if (userIdTerm !== undefined) base = base.where(sql<boolean>`lower(user_id) LIKE ${likePattern(userIdTerm)} ESCAPE '\\'`);
    if (name !== undefined) {
      // Synapse matches the localpart or the display name.
      const p = likePattern(name);
      base = base.where(sql<boolean>`(lower(substr(user_id, 2)) LIKE ${p} ESCAPE '\\' OR lower(coalesce(displayname, '')) LIKE ${p} ESCAPE '\\')`);
    }
    const total = Number((await db.selectFrom(base.as('u')).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    const direction = dir === 'f' ? 'asc' : 'desc';
    const column = ORDER_COLUMNS[orderBy as keyof typeof ORDER_COLUMNS];
    let ordered = base.orderBy(column, direction);
    if (column !== 'user_id') ordered = ordered.orderBy('user_id', direction);
    const rows = (await ordered.limit(limit).offset(from).execute()) as UserRow[];
    const out: Record<string, unknown> = { users: rows.map(listEntry), total };
    if (from + rows.length < total && rows.length > 0) out.next_token = String(from + rows.length);
    return out;
  });

  app.get(`${V2}/users/:userId`, async (req) => {
    await requireServerAdmin(ctx, req);
    return details(await localUser(req));
  });

  app.put(`${V2}/users/:userId`, async (req, reply) => {
    const who = await requireServerAdmin(ctx, req);
    const userId = params(req).userId;
    if (!isLocal(userId)) throw new MatrixError('M_UNKNOWN', 400, 'This endpoint can only be used with local users');
    const body = parseBody(putUserSchema, req.body);
    if (body.threepids?.length || body.external_ids?.length) {
      throw invalidParam('Ranvier has no third-party identifiers or external ids; leave threepids and external_ids empty');
    }
    let row = await findUser(userId);
    const created = !row;
    if (!row) {
      const localpart = userId.slice(1, userId.indexOf(':'));
      // createUser would lower-case it, creating a user other than the one named in the path.
      if (localpart !== localpart.toLowerCase()) throw new MatrixError('M_INVALID_USERNAME', 400, "User ID can only contain characters a-z, 0-9, or '=_-./+'");
      await ctx.accounts.createUser(localpart, body.password ?? undefined, { admin: body.admin ?? false });
      row = (await findUser(userId))!;
    } else {
      if (body.admin !== undefined && !!row.is_admin !== body.admin) {
        if (userId === who.userId && !body.admin) throw new MatrixError('M_UNKNOWN', 400, 'You may not demote yourself.');
        await db.updateTable('users').set({ is_admin: body.admin ? 1 : 0 }).where('user_id', '=', userId).execute();
      }
      if (typeof body.password === 'string') await setPassword(userId, body.password, body.logout_devices ?? true);
      if (body.deactivated === false && row.deactivated) {
        if (!row.password_hash && typeof body.password !== 'string') {
          throw new MatrixError('M_UNKNOWN', 400, 'Must provide a password to re-activate an account.');
        }
        await db.updateTable('users').set({ deactivated: 0, erased: 0 }).where('user_id', '=', userId).execute();
      }
    }
    if (body.displayname !== undefined) await ctx.accounts.setProfileField(userId, 'displayname', body.displayname);
    if (body.avatar_url !== undefined) await ctx.accounts.setProfileField(userId, 'avatar_url', body.avatar_url);
    if (body.user_type !== undefined) await db.updateTable('users').set({ user_type: body.user_type }).where('user_id', '=', userId).execute();
    if (body.locked !== undefined) await db.updateTable('users').set({ locked: body.locked ? 1 : 0 }).where('user_id', '=', userId).execute();
    if (body.deactivated === true && !row.deactivated) await ctx.accounts.deactivateUser(userId);
    // Admin flag and lock take effect on the user's next request, not after the token cache expires.
    ctx.tokens.forgetUser(userId);
    reply.code(created ? 201 : 200);
    return details((await findUser(userId))!);
  });

  app.post(`${V1}/deactivate/:userId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const body = parseBody(deactivateSchema, req.body);
    const row = await localUser(req, 'Can only deactivate local users');
    await ctx.accounts.deactivateUser(row.user_id);
    if (body.erase) await db.updateTable('users').set({ erased: 1 }).where('user_id', '=', row.user_id).execute();
    return { id_server_unbind_result: 'success' };
  });

  app.post(`${V1}/reset_password/:userId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const body = parseBody(resetPasswordSchema, req.body);
    if (body.new_password === undefined) throw missingParam("Missing params: ['new_password']");
    const row = await localUser(req, 'Can only reset passwords of local users');
    await setPassword(row.user_id, body.new_password, body.logout_devices ?? true);
    return {};
  });

  app.get(`${V1}/whois/:userId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const row = await localUser(req, 'Can only whois a local user');
    // Ranvier keeps one last-seen address per device, not per connection: one connection each.
    const devices = await ctx.accounts.listDevices(row.user_id);
    const sessions = devices.map((d) => ({
      connections: [{ ip: d.last_seen_ip ?? null, last_seen: d.last_seen_ts ?? null, user_agent: null }],
    }));
    return { user_id: row.user_id, devices: { '': { sessions } } };
  });

  // ---- flags

  app.get(`${V1}/users/:userId/admin`, async (req) => {
    await requireServerAdmin(ctx, req);
    const row = await localUser(req, 'Only local users can be admins of this homeserver');
    return { admin: !!row.is_admin };
  });

  app.put(`${V1}/users/:userId/admin`, async (req) => {
    const who = await requireServerAdmin(ctx, req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (!('admin' in body)) throw missingParam("Missing params: ['admin']");
    if (typeof body.admin !== 'boolean') throw badJson("Param 'admin' must be a boolean");
    const row = await localUser(req, 'Only local users can be admins of this homeserver');
    if (row.user_id === who.userId && !body.admin) throw new MatrixError('M_UNKNOWN', 400, 'You may not demote yourself.');
    await db.updateTable('users').set({ is_admin: body.admin ? 1 : 0 }).where('user_id', '=', row.user_id).execute();
    ctx.tokens.forgetUser(row.user_id);
    return {};
  });

  const setShadowBan = (banned: boolean) => async (req: FastifyRequest) => {
    await requireServerAdmin(ctx, req);
    const row = await localUser(req, 'Only local users can be shadow-banned');
    await setAccountFlag(ctx, row.user_id, 'shadow_banned', banned);
    return {};
  };
  app.post(`${V1}/users/:userId/shadow_ban`, setShadowBan(true));
  app.delete(`${V1}/users/:userId/shadow_ban`, setShadowBan(false));

  // Synapse's form of the spec's PUT /_matrix/client/v1/admin/suspend.
  app.put(`${V1}/suspend/:userId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (typeof body.suspend !== 'boolean') throw badJson("Param 'suspend' must be a boolean");
    const row = await localUser(req, 'Can only suspend local users');
    await setAccountFlag(ctx, row.user_id, 'suspended', body.suspend);
    return { [`user_${row.user_id}_suspended`]: body.suspend };
  });

  app.get(`${V1}/users/:userId/override_ratelimit`, async (req) => {
    await requireServerAdmin(ctx, req);
    const row = await localUser(req, 'Can only look up local users');
    const o = await db.selectFrom('ratelimit_overrides').select(['messages_per_second', 'burst_count'])
      .where('user_id', '=', row.user_id).executeTakeFirst();
    return o ? { messages_per_second: Number(o.messages_per_second), burst_count: Number(o.burst_count) } : {};
  });

  app.post(`${V1}/users/:userId/override_ratelimit`, async (req) => {
    await requireServerAdmin(ctx, req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const count = (name: string): number => {
      const v = body[name] ?? 0;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 1_000_000) throw invalidParam(`${name} parameter must be a positive int`);
      return v;
    };
    const mps = count('messages_per_second');
    const burst = count('burst_count');
    const row = await localUser(req, 'Only local users can be ratelimited');
    await db.insertInto('ratelimit_overrides').values({ user_id: row.user_id, messages_per_second: mps, burst_count: burst })
      .onConflict((oc) => oc.column('user_id').doUpdateSet({ messages_per_second: mps, burst_count: burst })).execute();
    ctx.limits.message.setOverride(row.user_id, { perSecond: mps, burst });
    return { messages_per_second: mps, burst_count: burst };
  });

  app.delete(`${V1}/users/:userId/override_ratelimit`, async (req) => {
    await requireServerAdmin(ctx, req);
    const row = await localUser(req, 'Only local users can be ratelimited');
    await db.deleteFrom('ratelimit_overrides').where('user_id', '=', row.user_id).execute();
    ctx.limits.message.setOverride(row.user_id, undefined);
    return {};
  });

  // ---- rooms and devices

  app.get(`${V1}/users/:userId/joined_rooms`, async (req) => {
    await requireServerAdmin(ctx, req);
    const joined = await ctx.rooms.joinedRoomIds(params(req).userId);
    return { joined_rooms: joined, total: joined.length };
  });

  const deviceEntry = (userId: string, d: Awaited<ReturnType<Context['accounts']['getDevice']>>) => ({
    user_id: userId,
    device_id: d.device_id,
    display_name: d.display_name ?? null,
    last_seen_ip: d.last_seen_ip ?? null,
    last_seen_ts: d.last_seen_ts ?? null,
    last_seen_user_agent: null,
  });

  app.get(`${V2}/users/:userId/devices`, async (req) => {
    await requireServerAdmin(ctx, req);
    const row = await localUser(req, 'Can only lookup local users');
    const devices = (await ctx.accounts.listDevices(row.user_id)).map((d) => deviceEntry(row.user_id, d));
    return { devices, total: devices.length };
  });

  app.get(`${V2}/users/:userId/devices/:deviceId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const row = await localUser(req, 'Can only lookup local users');
    return deviceEntry(row.user_id, await ctx.accounts.getDevice(row.user_id, params(req).deviceId));
  });

  app.put(`${V2}/users/:userId/devices/:deviceId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const body = parseBody(deviceUpdateSchema, req.body);
    const row = await localUser(req, 'Can only lookup local users');
    await ctx.accounts.updateDevice(row.user_id, params(req).deviceId, body.display_name);
    return {};
  });

  app.delete(`${V2}/users/:userId/devices/:deviceId`, async (req) => {
    await requireServerAdmin(ctx, req);
    const row = await localUser(req, 'Can only lookup local users');
    await ctx.accounts.deleteDevices(row.user_id, [params(req).deviceId]);
    return {};
  });

  app.post(`${V2}/users/:userId/delete_devices`, async (req) => {
    await requireServerAdmin(ctx, req);
    const body = parseBody(deleteDevicesSchema, req.body);
    const row = await localUser(req, 'Can only lookup local users');
    await ctx.accounts.deleteDevices(row.user_id, body.devices);
    return {};
  });
}

/**
 * Shadow bans: the user's sends "succeed" with an event id that names no
 * event, so a spammer cannot tell their messages reach nobody.
 * Returns the made-up id, or undefined when the user is not shadow-banned.
 */
export function shadowBannedEventId(who: Requester): string | undefined {
  if (!who.shadowBanned) return undefined;
  return '$' + randomBytes(32).toString('base64url');
}
