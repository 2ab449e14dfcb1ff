import { createHash, randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { MatrixError } from '../server/errors.js';
import { Lru } from '../server/lru.js';
import type { Db, Tx } from '../storage/db.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated user, for the request log; set by `TokenService.authenticate`. */
    requesterId?: string;
  }
}

export interface Requester {
  userId: string;
  deviceId: string;
  isAdmin: boolean;
  isGuest: boolean;
  /** Hash of the token used, so logout can revoke exactly this one. */
  tokenHash: string;
  /** Account suspended (src/accounts/suspension.ts); absent means no. */
  suspended?: boolean;
  /** Shadow-banned by an admin (sends get a made-up event id); absent means no. */
  shadowBanned?: boolean;
}

/**
 * Access tokens are random 32-byte strings; only their SHA-256 is stored, so
 * a leaked database does not leak sessions, and lookup by hash makes the
 * comparison independent of how much of a guessed token matches.
 */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

export function newToken(prefix = 'rvat_'): string {
  return prefix + randomBytes(32).toString('base64url');
}

export function tokenFromRequest(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (h) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    if (m) return m[1];
  }
  // Deprecated (removed by MSC4127) but still sent by old clients and bots.
  const q = (req.query as Record<string, unknown> | undefined)?.access_token;
  return typeof q === 'string' && q ? q : undefined;
}

/** How often a device's last-seen time and address are written, at most. */
const LAST_SEEN_INTERVAL_MS = 5 * 60 * 1000;

/**
 * How long a token lookup is trusted. Revocations made through this process
 * forget their entries at once; this bounds how long a change made elsewhere
 * (the CLI, another worker) takes to apply: a deactivated, locked or demoted
 * user's requests change within this time.
 */
export const TOKEN_CACHE_TTL_MS = 30_000;

interface CachedLookup {
  /** Null for an unknown token or a deactivated user. */
  who: Requester | null;
  locked: boolean;
  at: number;
}

export interface AuthenticateOptions {
  /** Logout and logout/all stay open to locked accounts (spec: account locking). */
  allowLocked?: boolean;
}

export class TokenService {
  private cache = new Lru<string, CachedLookup>(10_000);
  /** Token hash -> when its device's last-seen fields were last written. */
  private lastSeen = new Lru<string, number>(10_000);

  constructor(private readonly db: Db) {}

  /** Cached token lookups (metrics). */
  get cacheSize(): number {
    return this.cache.size;
  }

  async issue(tx: Tx, userId: string, deviceId: string): Promise<string> {
    const token = newToken();
    await tx.insertInto('access_tokens').values({ token_hash: hashToken(token), user_id: userId, device_id: deviceId, created_ts: Date.now() }).execute();
    return token;
  }

  /** Resolve a token to its user, or throw the spec's token errors. */
  async authenticate(req: FastifyRequest, opts: AuthenticateOptions = {}): Promise<Requester> {
    const token = tokenFromRequest(req);
    if (!token) throw new MatrixError('M_MISSING_TOKEN', 401, 'Missing access token');
    const hash = hashToken(token);
    const now = Date.now();
    let entry = this.cache.get(hash);
    if (entry === undefined || now - entry.at > TOKEN_CACHE_TTL_MS) {
      const row = await this.db
        .selectFrom('access_tokens as t')
        .innerJoin('users as u', 'u.user_id', 't.user_id')
        .select(['t.user_id', 't.device_id', 'u.is_admin', 'u.is_guest', 'u.deactivated', 'u.locked', 'u.suspended', 'u.shadow_banned'])
        .where('t.token_hash', '=', hash)
        .executeTakeFirst();
      const who = row && !row.deactivated
        ? { userId: row.user_id, deviceId: row.device_id, isAdmin: !!row.is_admin, isGuest: !!row.is_guest, tokenHash: hash, suspended: !!row.suspended, shadowBanned: !!row.shadow_banned }
        : null;
      entry = { who, locked: !!row?.locked, at: now };
      this.cache.set(hash, entry);
    }
    const who = entry.who;
    if (!who) throw new MatrixError('M_UNKNOWN_TOKEN', 401, 'Unrecognised access token', { soft_logout: false });
    if (entry.locked && !opts.allowLocked) {
      throw new MatrixError('M_USER_LOCKED', 401, 'This account has been locked', { soft_logout: true });
    }
    this.touch(who, req.ip);
    req.requesterId = who.userId;
    return who;
  }

  /** Record the device's last use (GET /devices shows it), throttled and off the request path. */
  private touch(who: Requester, ip: string | undefined): void {
    const now = Date.now();
    const last = this.lastSeen.get(who.tokenHash);
    if (last !== undefined && now - last < LAST_SEEN_INTERVAL_MS) return;
    this.lastSeen.set(who.tokenHash, now);
    this.db.updateTable('devices')
      .set({ last_seen_ts: now, last_seen_ip: ip ?? null })
      .where('user_id', '=', who.userId).where('device_id', '=', who.deviceId)
      .execute()
      .catch(() => {});
  }

  /** Forget cached lookups after tokens are revoked (logout, device delete, deactivate). */
  forget(hashes: Iterable<string>): void {
    for (const h of hashes) {
      this.cache.delete(h);
      this.lastSeen.delete(h);
    }
  }

  /** Delete tokens; returns their hashes so the caller can `forget` them again after commit. */
  async revokeWhere(tx: Tx, userId: string, deviceId?: string): Promise<string[]> {
    let q = tx.selectFrom('access_tokens').select('token_hash').where('user_id', '=', userId);
    if (deviceId !== undefined) q = q.where('device_id', '=', deviceId);
    const rows = await q.execute();
    let d = tx.deleteFrom('access_tokens').where('user_id', '=', userId);
    if (deviceId !== undefined) d = d.where('device_id', '=', deviceId);
    await d.execute();
    const hashes = rows.map((r) => r.token_hash);
    this.forget(hashes);
    return hashes;
  }

  /** Forget every cached lookup of one user's tokens (locked, suspended, made admin). */
  forgetUser(userId: string): void {
    for (const [hash, entry] of this.cache.entries()) {
      if (entry.who?.userId === userId) this.cache.delete(hash);
    }
  }

  clearCache(): void {
    this.cache.clear();
    this.lastSeen.clear();
  }
}
