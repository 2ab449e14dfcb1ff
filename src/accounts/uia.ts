import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { MatrixError, badJson, forbidden } from '../server/errors.js';
import type { Config } from '../config/config.js';
import type { Db } from '../storage/db.js';
import { verifyPassword } from './passwords.js';
import { MAX_TOKEN_LENGTH, type RegistrationTokens } from './registration-tokens.js';
import { loginCandidates, parseIdentifier } from './usernames.js';

/**
 * User-interactive authentication (UIA), shared by every endpoint that needs
 * it: registration, password change, deactivation, device deletion, and
 * later cross-signing key upload. Sessions live in `uia_sessions` so a
 * multi-request dance survives a restart.
 *
 * Usage from a route:
 *
 *     await ctx.accounts.uia.run(body.auth, { op: 'deactivate', userId, flows }, async () => { ... });
 *
 * `run` throws the spec's 401 (flows, params, session, completed and, after a
 * failed stage, errcode/error) until a flow is complete, then runs the
 * operation and forgets the session once it succeeds.
 */

export interface UiaFlow {
  stages: string[];
}

export interface UiaOptions {
  /**
   * What the session authorises, e.g. 'register', 'deactivate' or
   * 'delete_devices:ABC,DEF'. A session cannot be carried over to another
   * operation.
   */
  op: string;
  /** The authenticated requester the stages must prove to be; null for registration. */
  userId: string | null;
  flows: UiaFlow[];
  /** Per-stage parameters for the 401 body. */
  params?: Record<string, Record<string, unknown>>;
}

/** A stage attempt that failed in a way the client may retry. */
export class StageFailed extends Error {
  constructor(public readonly errcode: string, message: string) {
    super(message);
  }
}

/** Checks one submitted stage; throws StageFailed (or a MatrixError) on failure. */
export type StageChecker = (auth: Record<string, unknown>, opts: UiaOptions, sessionId: string) => Promise<void>;

/** The 401 "more authentication needed" response; its body is not the usual {errcode, error}. */
export class UiaRequired extends MatrixError {
  constructor(public readonly body: Record<string, unknown>) {
    super(typeof body.errcode === 'string' ? body.errcode : 'M_UNAUTHORIZED', 401, typeof body.error === 'string' ? body.error : 'Additional authentication required');
  }

  override toJSON(): Record<string, unknown> {
    return this.body;
  }
}

/** Sessions older than this are forgotten. */
export const UIA_SESSION_TTL_MS = 60 * 60 * 1000;

// ---- pure helpers (unit-tested) ---------------------------------------------

/**
 * Registration flows for the configuration: open registration offers
 * m.login.dummy; a configured token is always required (and also opens
 * registration when allow_registration is off); neither means closed,
 * unless `dbTokens` (a usable admin-made token exists, see
 * registration-tokens.ts), which opens it to token holders.
 */
export function registrationFlows(config: Pick<Config, 'allow_registration' | 'registration_token'>, dbTokens = false): UiaFlow[] {
  if (config.registration_token) return [{ stages: ['m.login.registration_token'] }];
  if (config.allow_registration) return [{ stages: ['m.login.dummy'] }];
  if (dbTokens) return [{ stages: ['m.login.registration_token'] }];
  throw forbidden('Registration is disabled');
}

/**
 * Whether `stage` may be attempted now: it must be the next not-yet-completed
 * stage of some flow (flows are completed in order).
 */
export function stageAllowed(flows: UiaFlow[], completed: readonly string[], stage: string): boolean {
  return flows.some((f) => f.stages.find((s) => !completed.includes(s)) === stage);
}

export function flowComplete(flows: UiaFlow[], completed: readonly string[]): boolean {
  return flows.some((f) => f.stages.every((s) => completed.includes(s)));
}

/** Constant-time string comparison (for shared secrets such as the registration token). */
export function secretEquals(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

// ---- service ------------------------------------------------------------------

interface SessionRow {
  session_id: string;
  user_id: string | null;
  completed: string[];
  op: string;
}

export class UiaService {
  private readonly stages = new Map<string, StageChecker>();

  constructor(private readonly db: Db, private readonly config: Config, private readonly tokens?: RegistrationTokens) {
    this.stages.set('m.login.dummy', async () => {});
    this.stages.set('m.login.password', (auth, opts) => this.checkPassword(auth, opts));
    this.stages.set('m.login.registration_token', async (auth, _opts, sessionId) => {
      const token = auth.token;
      if (typeof token !== 'string' || !token) throw new StageFailed('M_MISSING_PARAM', 'Missing registration token');
      const expected = this.config.registration_token;
      if (expected && secretEquals(token, expected)) return;
      // An admin-made token: the session takes one of its uses (pending until registration completes).
      if (this.tokens && token.length <= MAX_TOKEN_LENGTH && (await this.tokens.reserve(sessionId, token))) return;
      throw new StageFailed('M_UNAUTHORIZED', 'Invalid registration token');
    });
  }

  /** Add (or replace) a stage type, e.g. for a future email or terms stage. */
  registerStage(type: string, checker: StageChecker): void {
    this.stages.set(type, checker);
  }

  /**
   * The flows for re-authenticating an existing user: their password, or a
   * dummy stage for accounts created without one (the access token is then
   * the only credential there is).
   */
  async userFlows(userId: string): Promise<UiaFlow[]> {
    const row = await this.db.selectFrom('users').select('password_hash').where('user_id', '=', userId).executeTakeFirst();
    return row?.password_hash ? [{ stages: ['m.login.password'] }] : [{ stages: ['m.login.dummy'] }];
  }

  /** Authenticate, run `fn`, then forget the session (so it cannot authorise a second run). */
  async run<T>(auth: unknown, opts: UiaOptions, fn: () => Promise<T>): Promise<T> {
    const session = await this.check(auth, opts);
    const result = await fn();
    await this.finish(session);
    return result;
  }

  /**
   * Process the request's `auth` dict. Resolves with the session id once a
   * flow is complete; otherwise throws UiaRequired (401) or another error.
   */
  async check(auth: unknown, opts: UiaOptions): Promise<string> {
    if (auth === undefined || auth === null) {
      const session = await this.create(opts);
      throw this.required(session, opts);
    }
    if (typeof auth !== 'object' || Array.isArray(auth)) throw badJson('auth must be an object');
    const dict = auth as Record<string, unknown>;

    let session: SessionRow;
    if (dict.session !== undefined) {
      if (typeof dict.session !== 'string') throw badJson('auth.session must be a string');
      const found = await this.load(dict.session);
      if (!found) throw new MatrixError('M_UNKNOWN', 400, 'Unknown or expired session');
      if (found.op !== opts.op) {
        throw forbidden('Requested operation has changed during the UI authentication session');
      }
      if (found.user_id !== opts.userId) throw forbidden('Session belongs to another user');
      session = found;
    } else {
      session = await this.create(opts);
    }

    const type = dict.type;
    if (type !== undefined) {
      if (typeof type !== 'string') throw badJson('auth.type must be a string');
      if (!session.completed.includes(type)) {
        const checker = this.stages.get(type);
        if (!checker || !opts.flows.some((f) => f.stages.includes(type))) {
          throw this.required(session, opts, 'M_UNRECOGNIZED', `Authentication type ${type} is not offered`);
        }
        if (!stageAllowed(opts.flows, session.completed, type)) {
          throw this.required(session, opts, 'M_FORBIDDEN', `Stage ${type} attempted out of order`);
        }
        try {
          await checker(dict, opts, session.session_id);
        } catch (err) {
          if (err instanceof StageFailed) throw this.required(session, opts, err.errcode, err.message);
          throw err;
        }
        session.completed.push(type);
        await this.db.updateTable('uia_sessions')
          .set({ completed: JSON.stringify(session.completed) })
          .where('session_id', '=', session.session_id).execute();
      }
    }
    if (flowComplete(opts.flows, session.completed)) return session.session_id;
    throw this.required(session, opts);
  }

  /** Forget a session after the operation it authorised has succeeded. */
  async finish(sessionId: string): Promise<void> {
    await this.db.deleteFrom('uia_sessions').where('session_id', '=', sessionId).execute();
  }

  private required(session: SessionRow, opts: UiaOptions, errcode?: string, error?: string): UiaRequired {
    const body: Record<string, unknown> = {
      flows: opts.flows.map((f) => ({ stages: [...f.stages] })),
      params: opts.params ?? {},
      session: session.session_id,
      completed: [...session.completed],
    };
    if (errcode) {
      body.errcode = errcode;
      body.error = error ?? 'Authentication failed';
    }
    return new UiaRequired(body);
  }

  private async create(opts: UiaOptions): Promise<SessionRow> {
    const now = Date.now();
    // Opportunistic expiry keeps the table small without a timer.
    await this.db.deleteFrom('uia_sessions').where('created_ts', '<', now - UIA_SESSION_TTL_MS).execute();
    const row: SessionRow = { session_id: randomBytes(18).toString('base64url'), user_id: opts.userId, completed: [], op: opts.op };
    await this.db.insertInto('uia_sessions').values({
      session_id: row.session_id,
      user_id: row.user_id,
      completed: '[]',
      params: JSON.stringify({ op: row.op }),
      created_ts: now,
    }).execute();
    return row;
  }

  private async load(sessionId: string): Promise<SessionRow | undefined> {
    const row = await this.db.selectFrom('uia_sessions').selectAll().where('session_id', '=', sessionId).executeTakeFirst();
    if (!row || Number(row.created_ts) < Date.now() - UIA_SESSION_TTL_MS) return undefined;
    let completed: string[] = [];
    let op = '';
    try {
      const c = JSON.parse(row.completed) as unknown;
      if (Array.isArray(c)) completed = c.filter((s): s is string => typeof s === 'string');
      const p = JSON.parse(row.params) as { op?: unknown };
      if (typeof p.op === 'string') op = p.op;
    } catch {
      return undefined;
    }
    return { session_id: row.session_id, user_id: row.user_id, completed, op };
  }

  /** m.login.password: the requester's own password (identifier optional, must name them). */
  private async checkPassword(auth: Record<string, unknown>, opts: UiaOptions): Promise<void> {
    const userId = opts.userId;
    if (!userId) throw new StageFailed('M_FORBIDDEN', 'Password authentication needs a logged-in user');
    const password = auth.password;
    if (typeof password !== 'string' || !password) throw new StageFailed('M_MISSING_PARAM', 'Missing password');
    const ident = parseIdentifier(auth);
    if (ident.kind === 'invalid') throw new StageFailed('M_BAD_JSON', ident.reason);
    if (ident.kind === 'thirdparty') throw new StageFailed('M_FORBIDDEN', 'Third-party identifiers are not supported');
    if (ident.kind === 'user' && !loginCandidates(ident.user, this.config.server_name).includes(userId)) {
      throw new StageFailed('M_FORBIDDEN', 'Identifier does not match the logged-in user');
    }
    const row = await this.db.selectFrom('users').select('password_hash').where('user_id', '=', userId).executeTakeFirst();
    if (!(await verifyPassword(row?.password_hash, password))) throw new StageFailed('M_FORBIDDEN', 'Invalid password');
  }
}
