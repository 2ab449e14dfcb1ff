/**
 * End-to-end keys of users on other servers (server-server spec:
 * "End-to-End Encryption"): /keys/query and /keys/claim for remote users
 * ask their servers, one request per server, all servers at once, each
 * with a time limit; a server that fails is named in `failures`.
 *
 * A remote user's whole key set (devices, master and self-signing keys) is
 * cached in memory after a query for all their devices (while they share a
 * room with us), and dropped when
 * their server tells us it changed (m.device_list_update,
 * m.signing_key_update) or after CACHE_TTL_MS, a safety net for an update
 * we missed while we shared no room.
 */
import { serverNameOf } from '../core/identifiers.js';
import { Lru } from '../server/lru.js';
import type { Context } from '../server/services.js';
import { FederationRequestError } from '../federation/client.js';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Per-server time limit when the client gives none (spec default for /keys/query is 10 s). */
export const DEFAULT_REMOTE_KEYS_TIMEOUT_MS = 10_000;
const MAX_TIMEOUT_MS = 60_000;
const CACHE_TTL_MS = 10 * 60_000;
const CACHE_USERS = 10_000;

export interface RemoteQueryResult {
  device_keys: Record<string, Record<string, Json>>;
  master_keys: Record<string, Json>;
  self_signing_keys: Record<string, Json>;
  failures: Record<string, Json>;
}

interface CachedUser {
  devices: Record<string, Json>;
  master?: Json;
  selfSigning?: Json;
  at: number;
}

/** A failure entry as the client API reports it. */
function failureOf(err: unknown): Json {
  if (err instanceof FederationRequestError) {
    return err.status !== undefined ? { status: err.status, errcode: err.errcode, message: `Remote server answered ${err.status}` } : { status: 503, message: 'Remote server unreachable' };
  }
  return { status: 503, message: 'Remote server unreachable' };
}

function clampTimeout(ms: number | undefined): number {
  if (ms === undefined || !Number.isFinite(ms) || ms <= 0) return DEFAULT_REMOTE_KEYS_TIMEOUT_MS;
  return Math.min(ms, MAX_TIMEOUT_MS);
}

/** Group `{user: x}` by the users' servers (invalid user ids dropped). */
function byServer<T>(entries: Record<string, T>): Map<string, Record<string, T>> {
  const out = new Map<string, Record<string, T>>();
  for (const [userId, v] of Object.entries(entries)) {
    const s = serverNameOf(userId);
    if (!s) continue;
    let m = out.get(s);
    if (!m) out.set(s, (m = {}));
    m[userId] = v;
  }
  return out;
}

export class RemoteKeys {
  private cache = new Lru<string, CachedUser>(CACHE_USERS);

  constructor(private readonly ctx: Context) {}

  /** Forget a remote user's cached keys (their server said they changed). */
  invalidate(userId: string): void {
    this.cache.delete(userId);
  }

  private cached(userId: string): CachedUser | undefined {
    const c = this.cache.get(userId);
    if (c && Date.now() - c.at > CACHE_TTL_MS) {
      this.cache.delete(userId);
      return undefined;
    }
    return c;
  }

  /**
   * Only users in a room with us are cached: their server tells us about
   * changes only while we share a room, so anything else could go stale.
   */
  private async sharesRoom(userId: string): Promise<boolean> {
    const row = await this.ctx.storage.db.selectFrom('room_members').select('room_id')
      .where('user_id', '=', userId).where('membership', '=', 'join').limit(1).executeTakeFirst();
    return row !== undefined;
  }

  /** Keys of remote users: `{user: [device ids] (empty: all)}`. */
  async query(wanted: Record<string, string[]>, timeoutMs?: number): Promise<RemoteQueryResult> {
    const out: RemoteQueryResult = { device_keys: {}, master_keys: {}, self_signing_keys: {}, failures: {} };
    const put = (userId: string, u: Omit<CachedUser, 'at'>, devices: string[]) => {
      out.device_keys[userId] = devices.length ? Object.fromEntries(Object.entries(u.devices).filter(([d]) => devices.includes(d))) : u.devices;
      if (u.master) out.master_keys[userId] = u.master;
      if (u.selfSigning) out.self_signing_keys[userId] = u.selfSigning;
    };
    const toFetch: Record<string, string[]> = {};
    for (const [userId, devices] of Object.entries(wanted)) {
      const c = this.cached(userId);
      if (c) put(userId, c, devices);
      else toFetch[userId] = devices;
    }
    const limit = clampTimeout(timeoutMs);
    await Promise.all([...byServer(toFetch)].map(async ([server, users]) => {
      try {
        const res = await this.ctx.federation.client.request<Json>(server, {
          method: 'POST', path: '/_matrix/federation/v1/user/keys/query', body: { device_keys: users }, timeoutMs: limit,
        });
        const dk = isObject(res.device_keys) ? res.device_keys : {};
        const mk = isObject(res.master_keys) ? res.master_keys : {};
        const sk = isObject(res.self_signing_keys) ? res.self_signing_keys : {};
        for (const [userId, devices] of Object.entries(users)) {
          const mine = isObject(dk[userId]) ? dk[userId] : {};
          const u: Omit<CachedUser, 'at'> = { devices: {} };
          // A server answers only for its own users, and each device for itself.
          for (const [deviceId, keys] of Object.entries(mine)) {
            if (isObject(keys) && keys.user_id === userId && keys.device_id === deviceId) u.devices[deviceId] = keys;
          }
          if (isObject(mk[userId]) && mk[userId].user_id === userId) u.master = mk[userId];
          if (isObject(sk[userId]) && sk[userId].user_id === userId) u.selfSigning = sk[userId];
          if (!devices.length && (await this.sharesRoom(userId))) this.cache.set(userId, { ...u, at: Date.now() });
          put(userId, u, devices);
        }
      } catch (err) {
        this.ctx.log.info({ err, server }, 'remote /keys/query failed');
        out.failures[server] = failureOf(err);
      }
    }));
    return out;
  }

  /** One-time keys of remote devices: `{user: {device: algorithm}}`. Never cached (each key is used once). */
  async claim(
    wanted: Record<string, Record<string, string>>,
    timeoutMs?: number,
  ): Promise<{ one_time_keys: Record<string, Record<string, Record<string, unknown>>>; failures: Record<string, Json> }> {
    const one_time_keys: Record<string, Record<string, Record<string, unknown>>> = {};
    const failures: Record<string, Json> = {};
    const limit = clampTimeout(timeoutMs);
    await Promise.all([...byServer(wanted)].map(async ([server, users]) => {
      try {
        const res = await this.ctx.federation.client.request<Json>(server, {
          method: 'POST', path: '/_matrix/federation/v1/user/keys/claim', body: { one_time_keys: users }, timeoutMs: limit,
        });
        const otks = isObject(res.one_time_keys) ? res.one_time_keys : {};
        for (const userId of Object.keys(users)) {
          const byDevice = otks[userId];
          if (!isObject(byDevice)) continue;
          for (const [deviceId, keys] of Object.entries(byDevice)) {
            if (isObject(keys) && users[userId][deviceId] !== undefined) (one_time_keys[userId] ??= {})[deviceId] = keys;
          }
        }
      } catch (err) {
        this.ctx.log.info({ err, server }, 'remote /keys/claim failed');
        failures[server] = failureOf(err);
      }
    }));
    return { one_time_keys, failures };
  }
}
