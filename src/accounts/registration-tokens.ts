/**
 * Admin-managed registration tokens (Synapse's model): each token may be
 * limited in uses and in time. A use is "pending" while a UIA session holds
 * the token (the m.login.registration_token stage is done, the account not
 * yet created) and "completed" once registration succeeds; a token is valid
 * while it has not expired and pending + completed < uses_allowed.
 *
 * Pending uses are the unexpired rows of registration_token_sessions, so an
 * abandoned registration gives its use back when its UIA session expires
 * without any cleanup job.
 *
 * The configured `registration_token` is separate (src/accounts/uia.ts) and
 * keeps working unchanged.
 */
import { randomInt } from 'node:crypto';
import type { Db, Tx } from '../storage/db.js';
import { invalidParam } from '../server/errors.js';

export interface RegistrationToken {
  token: string;
  /** null: unlimited. */
  uses_allowed: number | null;
  pending: number;
  completed: number;
  /** Milliseconds since the epoch; null: never expires. */
  expiry_time: number | null;
}

export const TOKEN_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-';
export const MAX_TOKEN_LENGTH = 64;
export const DEFAULT_TOKEN_LENGTH = 16;
const TOKEN_RE = /^[A-Za-z0-9._~-]+$/;

export function generateToken(length = DEFAULT_TOKEN_LENGTH): string {
  let out = '';
  for (let i = 0; i < length; i++) out += TOKEN_ALPHABET[randomInt(TOKEN_ALPHABET.length)];
  return out;
}

/** Whether `t` can still be used to register at `now`. */
export function tokenUsable(t: Pick<RegistrationToken, 'uses_allowed' | 'pending' | 'completed' | 'expiry_time'>, now: number): boolean {
  if (t.expiry_time !== null && t.expiry_time <= now) return false;
  return t.uses_allowed === null || t.pending + t.completed < t.uses_allowed;
}

export interface NewTokenRequest {
  /** Absent: generate one of `length` characters. */
  token?: string;
  length: number;
  uses_allowed: number | null;
  expiry_time: number | null;
}

export interface TokenUpdate {
  uses_allowed?: number | null;
  expiry_time?: number | null;
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

function usesAllowed(v: unknown): number | null {
  if (v === null || (isInt(v) && v >= 0)) return v;
  throw invalidParam('uses_allowed must be a non-negative integer or null');
}

function expiryTime(v: unknown, now: number): number | null {
  if (v !== null && !isInt(v)) throw invalidParam('expiry_time must be an integer or null');
  if (v !== null && v < now) throw invalidParam('expiry_time must not be in the past');
  return v;
}

/** The body of POST /registration_tokens/new, checked as Synapse checks it (400 M_INVALID_PARAM). */
export function parseNewToken(body: Record<string, unknown>, now: number): NewTokenRequest {
  const out: NewTokenRequest = { length: DEFAULT_TOKEN_LENGTH, uses_allowed: null, expiry_time: null };
  if (body.token !== undefined) {
    const token = body.token;
    if (typeof token !== 'string') throw invalidParam('token must be a string');
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw invalidParam(`token must not be empty and must not be longer than ${MAX_TOKEN_LENGTH} characters`);
    }
    if (!TOKEN_RE.test(token)) throw invalidParam('token must consist only of characters matched by the regex [A-Za-z0-9._~-]');
    out.token = token;
  } else if (body.length !== undefined) {
    if (!isInt(body.length)) throw invalidParam('length must be an integer');
    if (body.length < 1 || body.length > MAX_TOKEN_LENGTH) {
      throw invalidParam(`length must be greater than zero and not greater than ${MAX_TOKEN_LENGTH}`);
    }
    out.length = body.length;
  }
  if (body.uses_allowed !== undefined) out.uses_allowed = usesAllowed(body.uses_allowed);
  if (body.expiry_time !== undefined) out.expiry_time = expiryTime(body.expiry_time, now);
  return out;
}

/** The body of PUT /registration_tokens/{token}: only the fields present change. */
export function parseTokenUpdate(body: Record<string, unknown>, now: number): TokenUpdate {
  const out: TokenUpdate = {};
  if (body.uses_allowed !== undefined) out.uses_allowed = usesAllowed(body.uses_allowed);
  if (body.expiry_time !== undefined) out.expiry_time = expiryTime(body.expiry_time, now);
  return out;
}

export class TokenExists extends Error {}

type TokenRow = { token: string; uses_allowed: number | null; completed: number; expiry_time: number | null };

export class RegistrationTokens {
  /** `sessionTtlMs`: how long a UIA session lives, hence how long a pending use lasts. */
  constructor(private readonly db: Db, private readonly sessionTtlMs: number) {}

  /** All tokens, or with `valid` only the usable (true) or unusable (false) ones; ordered by token. */
  async list(valid?: boolean): Promise<RegistrationToken[]> {
    const rows = await this.db.selectFrom('registration_tokens')
      .select(['token', 'uses_allowed', 'completed', 'expiry_time']).orderBy('token').execute();
    const pending = await this.pendingCounts(this.db);
    const now = Date.now();
    const all = rows.map((r) => toToken(r, pending.get(r.token) ?? 0));
    return valid === undefined ? all : all.filter((t) => tokenUsable(t, now) === valid);
  }

  async get(token: string, db: Tx = this.db): Promise<RegistrationToken | undefined> {
    const row = await db.selectFrom('registration_tokens')
      .select(['token', 'uses_allowed', 'completed', 'expiry_time']).where('token', '=', token).executeTakeFirst();
    if (!row) return undefined;
    const pending = await this.pendingCounts(db, token);
    return toToken(row, pending.get(token) ?? 0);
  }

  /** Create a token; throws TokenExists when a chosen token is taken (generated ones are retried). */
  async create(req: NewTokenRequest): Promise<RegistrationToken> {
    for (let attempt = 0; ; attempt++) {
      const token = req.token ?? generateToken(req.length);
      const inserted = await this.db.insertInto('registration_tokens').values({
        token, uses_allowed: req.uses_allowed, completed: 0, expiry_time: req.expiry_time, created_ts: Date.now(),
      }).onConflict((oc) => oc.column('token').doNothing()).executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1) {
        return { token, uses_allowed: req.uses_allowed, pending: 0, completed: 0, expiry_time: req.expiry_time };
      }
      if (req.token !== undefined || attempt >= 5) throw new TokenExists(`Token already exists: ${token}`);
    }
  }

  /** Apply an update; undefined for an unknown token. */
  async update(token: string, change: TokenUpdate): Promise<RegistrationToken | undefined> {
    if (Object.keys(change).length) {
      await this.db.updateTable('registration_tokens').set(change).where('token', '=', token).execute();
    }
    return this.get(token);
  }

  /** Delete a token; false if there was none. Sessions holding it may still finish registering. */
  async delete(token: string): Promise<boolean> {
    const res = await this.db.deleteFrom('registration_tokens').where('token', '=', token).executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }

  async isValid(token: string): Promise<boolean> {
    const t = await this.get(token);
    return !!t && tokenUsable(t, Date.now());
  }

  /** Whether UIA session `sessionId` holds an unexpired use of a token. */
  async heldBy(sessionId: string): Promise<boolean> {
    const row = await this.db.selectFrom('registration_token_sessions').select('session_id')
      .where('session_id', '=', sessionId).where('created_ts', '>=', Date.now() - this.sessionTtlMs).executeTakeFirst();
    return !!row;
  }

  /** Whether any token is usable now (registration is then open to token holders). */
  async anyValid(): Promise<boolean> {
    return (await this.list(true)).length > 0;
  }

  /** Whether any token exists at all, usable or not. */
  async anyExist(): Promise<boolean> {
    return !!(await this.db.selectFrom('registration_tokens').select('token').limit(1).executeTakeFirst());
  }

  /**
   * Take one use of `token` for UIA session `sessionId` if it is still
   * usable; false otherwise. Check and reservation are one transaction that
   * first writes the token row, so concurrent reservations of the last use
   * queue on its row lock (PostgreSQL) or the write lock (SQLite).
   */
  async reserve(sessionId: string, token: string): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      const locked = await tx.updateTable('registration_tokens').set({ completed: (eb) => eb.ref('completed') })
        .where('token', '=', token).executeTakeFirst();
      if (Number(locked.numUpdatedRows) === 0) return false;
      const now = Date.now();
      await tx.deleteFrom('registration_token_sessions').where('created_ts', '<', now - this.sessionTtlMs).execute();
      const t = await this.get(token, tx);
      if (!t || !tokenUsable(t, now)) return false;
      await tx.insertInto('registration_token_sessions').values({ session_id: sessionId, token, created_ts: now })
        .onConflict((oc) => oc.column('session_id').doUpdateSet({ token, created_ts: now })).execute();
      return true;
    });
  }

  /** Registration for `sessionId` succeeded: its pending use becomes a completed one (no-op without a DB token). */
  async complete(tx: Tx, sessionId: string): Promise<void> {
    const row = await tx.selectFrom('registration_token_sessions').select('token').where('session_id', '=', sessionId).executeTakeFirst();
    if (!row) return;
    await tx.deleteFrom('registration_token_sessions').where('session_id', '=', sessionId).execute();
    await tx.updateTable('registration_tokens').set({ completed: (eb) => eb('completed', '+', 1) })
      .where('token', '=', row.token).execute();
  }

  private async pendingCounts(db: Tx, token?: string): Promise<Map<string, number>> {
    let q = db.selectFrom('registration_token_sessions')
      .select((eb) => ['token', eb.fn.countAll<number | string>().as('n')])
      .where('created_ts', '>=', Date.now() - this.sessionTtlMs)
      .groupBy('token');
    if (token !== undefined) q = q.where('token', '=', token);
    const rows = await q.execute();
    return new Map(rows.map((r) => [r.token, Number(r.n)]));
  }
}

function toToken(r: TokenRow, pending: number): RegistrationToken {
  return {
    token: r.token,
    uses_allowed: r.uses_allowed === null ? null : Number(r.uses_allowed),
    pending,
    completed: Number(r.completed),
    expiry_time: r.expiry_time === null ? null : Number(r.expiry_time),
  };
}
