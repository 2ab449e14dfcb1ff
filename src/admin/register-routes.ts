/**
 * Synapse's shared-secret registration (docs/admin_api/register_api.md),
 * which register_new_matrix_user uses:
 *
 *   GET  /_synapse/admin/v1/register  {"nonce": "..."}
 *   POST /_synapse/admin/v1/register  {nonce, username, password, admin?, displayname?, user_type?, mac}
 *        -> {access_token, user_id, home_server, device_id}
 *
 * mac is the hex HMAC-SHA1, keyed with registration_shared_secret, of
 * nonce NUL username NUL password NUL ("admin" | "notadmin") [NUL user_type].
 * No access token is involved: knowing the secret is the authorisation.
 * Nonces are single use (even when the MAC is wrong), expire after 60 s and
 * the store is bounded, so unauthenticated GETs cannot grow memory.
 *
 * Errors as Synapse gives them: 400 when the secret is not configured,
 * 400 "unrecognised nonce", 400 M_BAD_JSON / "Invalid username" for bad
 * fields, 403 "HMAC incorrect" (Synapse's status, errcode M_UNKNOWN).
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { secretEquals } from '../accounts/uia.js';
import { MAX_PASSWORD_LENGTH } from '../accounts/passwords.js';
import { MatrixError, badJson } from '../server/errors.js';
import type { Context } from '../server/services.js';

const PATH = '/_synapse/admin/v1/register';
export const NONCE_TTL_MS = 60_000;
/** Enough for any real use; beyond it the oldest nonces are dropped. */
const MAX_NONCES = 10_000;

const unknown400 = (msg: string) => new MatrixError('M_UNKNOWN', 400, msg);

/** Outstanding nonces, oldest first (Map keeps insertion order). */
export class NonceStore {
  private nonces = new Map<string, number>();

  constructor(private readonly ttlMs = NONCE_TTL_MS, private readonly max = MAX_NONCES) {}

  issue(now = Date.now()): string {
    this.sweep(now);
    while (this.nonces.size >= this.max) {
      const oldest = this.nonces.keys().next().value;
      if (oldest === undefined) break;
      this.nonces.delete(oldest);
    }
    const nonce = randomBytes(16).toString('hex');
    this.nonces.set(nonce, now + this.ttlMs);
    return nonce;
  }

  /** True if `nonce` was outstanding and unexpired; either way it can never be used again. */
  consume(nonce: string, now = Date.now()): boolean {
    const expires = this.nonces.get(nonce);
    this.nonces.delete(nonce);
    return expires !== undefined && expires > now;
  }

  get size(): number {
    return this.nonces.size;
  }

  private sweep(now: number): void {
    for (const [n, expires] of this.nonces) {
      if (expires > now) break; // insertion order is expiry order
      this.nonces.delete(n);
    }
  }
}

/** The MAC register_new_matrix_user computes. */
export function registrationMac(
  secret: string, nonce: string, username: string, password: string, admin: boolean, userType?: string,
): string {
  const h = createHmac('sha1', secret);
  h.update(nonce).update('\x00').update(username).update('\x00').update(password).update('\x00').update(admin ? 'admin' : 'notadmin');
  if (userType) h.update('\x00').update(userType);
  return h.digest('hex');
}

/** A string field without NUL bytes (they would make the MAC ambiguous), as Synapse checks. */
function textField(body: Record<string, unknown>, name: string, max: number): string {
  const v = body[name];
  if (v === undefined) throw badJson(`${name} must be specified`);
  if (typeof v !== 'string' || v.length > max || v.includes('\x00')) throw unknown400(`Invalid ${name}`);
  return v;
}

function optionalText(body: Record<string, unknown>, name: string): string | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v.includes('\x00')) throw unknown400(`Invalid ${name}`);
  return v;
}

export function registerAdminRegisterRoutes(app: FastifyInstance, ctx: Context): void {
  const nonces = new NonceStore();
  const secret = () => {
    const s = ctx.config.registration_shared_secret;
    if (!s) throw unknown400('Shared secret registration is not enabled');
    return s;
  };

  app.get(PATH, async () => {
    // Refused when off (Synapse hands out nonces anyway): nothing could use them.
    secret();
    return { nonce: nonces.issue() };
  });

  app.post(PATH, async (req: FastifyRequest) => {
    const key = secret();
    const body = req.body;
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new MatrixError('M_NOT_JSON', 400, 'Request body must be a JSON object');
    const b = body as Record<string, unknown>;
    if (typeof b.nonce !== 'string') throw badJson('nonce must be specified');
    if (!nonces.consume(b.nonce)) throw unknown400('unrecognised nonce');
    const username = textField(b, 'username', 512);
    const password = textField(b, 'password', MAX_PASSWORD_LENGTH);
    const displayname = optionalText(b, 'displayname');
    const userType = optionalText(b, 'user_type');
    if (typeof b.mac !== 'string') throw badJson('mac must be specified');
    const admin = !!b.admin;
    const want = registrationMac(key, b.nonce, username, password, admin, userType);
    if (!secretEquals(b.mac.toLowerCase(), want)) throw new MatrixError('M_UNKNOWN', 403, 'HMAC incorrect');

    const userId = await ctx.accounts.createUser(username.toLowerCase(), password, { admin });
    if (userType !== undefined) {
      await ctx.storage.db.updateTable('users').set({ user_type: userType }).where('user_id', '=', userId).execute();
    }
    if (displayname !== undefined) await ctx.accounts.setProfileField(userId, 'displayname', displayname);
    const session = await ctx.accounts.issueSession(userId, req.ip);
    ctx.log.info({ userId, admin }, 'registered user with the shared secret');
    return { user_id: userId, home_server: ctx.config.server_name, ...session };
  });
}
