/**
 * Questions servers ask each other about users and aliases (server-server
 * spec: "Querying for information", "Device Management", "End-to-End
 * Encryption"): both sides.
 *
 * Serving: GET /query/profile, GET /query/directory, GET /user/devices/{userId},
 * POST /user/keys/query, POST /user/keys/claim, for local users and
 * aliases only. (/openid/userinfo lives with the OpenID tokens.)
 *
 * Asking: remote profiles (cached briefly) and remote aliases, for the
 * client API.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Requester } from '../accounts/tokens.js';
import { isValidRoomAlias, isValidServerName, isValidUserId, serverNameOf } from '../core/identifiers.js';
import { resolveAlias } from '../rooms/directory.js';
import { MatrixError, invalidParam, missingParam, notFound } from '../server/errors.js';
import { Lru } from '../server/lru.js';
import type { Context } from '../server/services.js';
import { parseBody, parseQuery } from '../server/validate.js';
import { withFederationAuth } from './auth.js';
import { FederationRequestError } from './client.js';
import { serversInRoom } from './room-routes.js';

const P = '/_matrix/federation/v1';
/** Remote profiles are shown for this long before we ask again. */
const PROFILE_CACHE_MS = 60_000;
const PROFILE_CACHE_SIZE = 10_000;
const QUERY_TIMEOUT_MS = 10_000;
/** Users per /user/keys/query or /user/keys/claim request. */
const MAX_KEY_USERS = 1000;

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

export interface Profile {
  displayname: string | null;
  avatar_url: string | null;
}

const profileQuery = z.looseObject({ user_id: z.string().optional(), field: z.string().optional() });
const directoryQuery = z.looseObject({ room_alias: z.string().optional() });
const keysQueryBody = z.object({ device_keys: z.record(z.string(), z.array(z.string())) });
const keysClaimBody = z.object({ one_time_keys: z.record(z.string(), z.record(z.string(), z.string())) });

/** The requester a federation key query stands for: nobody local, so no private data (user-signing keys) is shown. */
const FEDERATION_REQUESTER: Requester = { userId: '', deviceId: '', isAdmin: false, isGuest: false, tokenHash: '' };

const isLocal = (ctx: Context, id: string) => serverNameOf(id) === ctx.config.server_name;

/** Only our own users' entries of a `{user: x}` map (other servers answer for theirs). */
function localOnly<T>(ctx: Context, m: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [userId, v] of Object.entries(m)) if (isLocal(ctx, userId)) out[userId] = v;
  if (Object.keys(out).length > MAX_KEY_USERS) throw invalidParam(`At most ${MAX_KEY_USERS} users per request`);
  return out;
}

// ---------------------------------------------------------------- serving

export function registerFederationQueryRoutes(app: FastifyInstance, ctx: Context): void {
  app.get(`${P}/query/profile`, withFederationAuth(ctx, async (req: FastifyRequest) => {
    const q = parseQuery(profileQuery, req.query);
    if (q.user_id === undefined) throw missingParam('Missing parameter: user_id');
    if (!isValidUserId(q.user_id) || !isLocal(ctx, q.user_id)) throw invalidParam('User is not hosted on this server');
    if (q.field !== undefined && q.field !== 'displayname' && q.field !== 'avatar_url') throw invalidParam(`Unsupported profile field ${q.field.slice(0, 100)}`);
    const profile = await ctx.accounts.lookupProfile(q.user_id);
    const out: Json = {};
    for (const f of ['displayname', 'avatar_url'] as const) {
      if ((q.field === undefined || q.field === f) && profile[f] != null) out[f] = profile[f];
    }
    return out;
  }));

  app.get(`${P}/query/directory`, withFederationAuth(ctx, async (req: FastifyRequest) => {
    const q = parseQuery(directoryQuery, req.query);
    if (q.room_alias === undefined) throw missingParam('Missing parameter: room_alias');
    const roomId = isValidRoomAlias(q.room_alias) && isLocal(ctx, q.room_alias) ? await resolveAlias(ctx, q.room_alias) : undefined;
    if (!roomId) throw notFound('Room alias not found.');
    const servers = await serversInRoom(ctx, roomId);
    // Ourselves first: we certainly hold the room when our alias points at it and we are in it.
    const ours = ctx.config.server_name;
    return { room_id: roomId, servers: servers.includes(ours) ? [ours, ...servers.filter((s) => s !== ours)] : servers };
  }));

  app.get(`${P}/user/devices/:userId`, withFederationAuth(ctx, async (req: FastifyRequest) => {
    const userId = (req.params as { userId: string }).userId;
    if (!isValidUserId(userId) || !isLocal(ctx, userId)) throw invalidParam('User is not hosted on this server');
    const known = await ctx.storage.db.selectFrom('users').select('user_id').where('user_id', '=', userId).executeTakeFirst();
    if (!known) throw notFound('Unknown user');
    const keys = await ctx.keys.query(FEDERATION_REQUESTER, { [userId]: [] });
    const deviceKeys = isObject(keys.device_keys) && isObject(keys.device_keys[userId]) ? keys.device_keys[userId] : {};
    const devices = Object.entries(deviceKeys).map(([deviceId, k]) => {
      const { unsigned, ...rest } = k as Json;
      const name = isObject(unsigned) ? unsigned.device_display_name : undefined;
      return { device_id: deviceId, keys: rest, ...(typeof name === 'string' ? { device_display_name: name } : {}) };
    });
    const last = await ctx.storage.db.selectFrom('device_list_changes').select((eb) => eb.fn.max('stream_pos').as('pos'))
      .where('user_id', '=', userId).executeTakeFirst();
    const out: Json = { user_id: userId, stream_id: Number(last?.pos ?? 0), devices };
    const master = isObject(keys.master_keys) ? keys.master_keys[userId] : undefined;
    const ssk = isObject(keys.self_signing_keys) ? keys.self_signing_keys[userId] : undefined;
    if (master) out.master_key = master;
    if (ssk) out.self_signing_key = ssk;
    return out;
  }));

  app.post(`${P}/user/keys/query`, withFederationAuth(ctx, async (req: FastifyRequest) => {
    const wanted = localOnly(ctx, parseBody(keysQueryBody, req.body).device_keys);
    const r = await ctx.keys.query(FEDERATION_REQUESTER, wanted);
    return { device_keys: r.device_keys, master_keys: r.master_keys, self_signing_keys: r.self_signing_keys };
  }));

  app.post(`${P}/user/keys/claim`, withFederationAuth(ctx, async (req: FastifyRequest) => {
    const wanted = localOnly(ctx, parseBody(keysClaimBody, req.body).one_time_keys);
    const r = await ctx.keys.claim(wanted);
    return { one_time_keys: r.one_time_keys };
  }));
}

// ---------------------------------------------------------------- asking

/** Our answer when the other server failed us: its 404 stays a 404, anything else is a 502. */
function remoteFailure(err: unknown, what: string): MatrixError {
  if (err instanceof FederationRequestError && err.status === 404) return notFound(`${what} not found`);
  if (err instanceof FederationRequestError && err.status === 403) return new MatrixError('M_FORBIDDEN', 403, `The remote server refused the ${what.toLowerCase()} lookup`);
  return new MatrixError('M_UNKNOWN', 502, `Could not reach the server of this ${what.toLowerCase()}`);
}

const profileCaches = new WeakMap<Context, Lru<string, { profile: Profile; at: number }>>();

/** A remote user's profile via GET /query/profile, cached for PROFILE_CACHE_MS. Throws 404 / 403 / 502. */
export async function fetchRemoteProfile(ctx: Context, userId: string): Promise<Profile> {
  let cache = profileCaches.get(ctx);
  if (!cache) profileCaches.set(ctx, (cache = new Lru(PROFILE_CACHE_SIZE)));
  const hit = cache.get(userId);
  if (hit && Date.now() - hit.at < PROFILE_CACHE_MS) return hit.profile;
  const server = serverNameOf(userId);
  if (!server || !isValidUserId(userId)) throw notFound('Profile not found');
  let res: Json;
  try {
    res = await ctx.federation.client.request<Json>(server, {
      method: 'GET', path: `${P}/query/profile`, query: { user_id: userId }, timeoutMs: QUERY_TIMEOUT_MS,
    });
  } catch (err) {
    throw remoteFailure(err, 'Profile');
  }
  const str = (v: unknown) => (typeof v === 'string' ? v : null);
  const profile: Profile = { displayname: str(res.displayname), avatar_url: str(res.avatar_url) };
  cache.set(userId, { profile, at: Date.now() });
  return profile;
}

/** A remote alias via GET /query/directory: the room and servers to join through. Throws 404 / 502. */
export async function queryRemoteAlias(ctx: Context, alias: string): Promise<{ roomId: string; servers: string[] }> {
  const server = serverNameOf(alias);
  if (!server) throw notFound(`Room alias ${alias} not found`);
  let res: Json;
  try {
    res = await ctx.federation.client.request<Json>(server, {
      method: 'GET', path: `${P}/query/directory`, query: { room_alias: alias }, timeoutMs: QUERY_TIMEOUT_MS,
    });
  } catch (err) {
    throw remoteFailure(err, 'Room alias');
  }
  if (typeof res.room_id !== 'string' || !res.room_id.startsWith('!')) throw new MatrixError('M_UNKNOWN', 502, 'Invalid directory answer from the alias\'s server');
  const servers = Array.isArray(res.servers) ? res.servers.filter((s): s is string => typeof s === 'string' && isValidServerName(s)) : [];
  // The alias's own server knows the room (it answered for it), so it is a join candidate too.
  return { roomId: res.room_id, servers: [...new Set([...servers, server])] };
}
