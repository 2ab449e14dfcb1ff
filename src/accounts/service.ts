import { sql } from 'kysely';
import type { Context } from '../server/services.js';
import type { OnCommit } from '../server/context.js';
import { MatrixError, forbidden, missingParam, notFound } from '../server/errors.js';
import type { Tx } from '../storage/db.js';
import type { Requester } from './tokens.js';
import { hashPassword, verifyPassword } from './passwords.js';
import { UIA_SESSION_TTL_MS, UiaService, registrationFlows, secretEquals, type UiaFlow } from './uia.js';
import { RegistrationTokens } from './registration-tokens.js';
import { loginCandidates, normaliseUsername, parseIdentifier, randomDeviceId, randomLocalpart } from './usernames.js';
import { serverNameOf } from '../core/identifiers.js';
import { fetchRemoteProfile } from '../federation/query-routes.js';
import { isUniqueViolation } from '../storage/errors.js';

export interface Profile {
  displayname: string | null;
  avatar_url: string | null;
}

export type ProfileField = keyof Profile;

export interface DeviceInfo {
  device_id: string;
  display_name?: string;
  last_seen_ip?: string;
  last_seen_ts?: number;
}

export interface RegisterInput {
  username?: string;
  password?: string;
  device_id?: string;
  initial_device_display_name?: string;
  inhibit_login?: boolean;
  auth?: Record<string, unknown>;
}

export interface LoginInput {
  type: string;
  identifier?: unknown;
  user?: unknown;
  medium?: unknown;
  address?: unknown;
  password?: string;
  device_id?: string;
  initial_device_display_name?: string;
}

export interface SessionResult {
  user_id: string;
  home_server: string;
  access_token?: string;
  device_id?: string;
}

export interface DirectoryResult {
  results: Array<{ user_id: string; display_name?: string; avatar_url?: string }>;
  limited: boolean;
}

/**
 * Runs inside the transaction that deletes devices (logout, device deletion,
 * password change, deactivation) so other domains can drop per-device data,
 * e.g. end-to-end keys. May allocate stream positions; returns keys to wake.
 */
export type DevicesDeletedHook = (
  tx: Tx,
  alloc: () => Promise<number>,
  userId: string,
  deviceIds: string[],
  /** Run after commit (e.g. record changes in ctx.streams). */
  onCommit: OnCommit,
) => Promise<Iterable<string> | void>;

/** Runs after an account is deactivated (tokens revoked, rooms left). */
export type DeactivatedHook = (userId: string) => Promise<void>;

/** Account data types the server manages itself (PUT is refused with 405). */
export const SERVER_MANAGED_ACCOUNT_DATA = new Set(['m.fully_read', 'm.push_rules']);

const MAX_DISPLAYNAME_LENGTH = 256;
const MAX_AVATAR_URL_LENGTH = 1000;


const userInUse = () => new MatrixError('M_USER_IN_USE', 400, 'Desired user ID is already taken.');

/**
 * The accounts domain: registration, login and sessions, user-interactive
 * auth, devices, profiles, account data, filters and the user directory.
 */
export class AccountsService {
  readonly uia: UiaService;
  /** Admin-managed registration tokens (the configured one lives in uia.ts). */
  readonly registrationTokens: RegistrationTokens;
  private readonly devicesDeletedHooks: DevicesDeletedHook[] = [];
  private readonly deactivatedHooks: DeactivatedHook[] = [];

  constructor(private readonly ctx: Context) {
    this.registrationTokens = new RegistrationTokens(ctx.storage.db, UIA_SESSION_TTL_MS);
    this.uia = new UiaService(ctx.storage.db, ctx.config, this.registrationTokens);
  }

  private get db() {
    return this.ctx.storage.db;
  }

  private get serverName(): string {
    return this.ctx.config.server_name;
  }

  /** Let another domain clean up per-device data when devices are deleted. */
  onDevicesDeleted(hook: DevicesDeletedHook): void {
    this.devicesDeletedHooks.push(hook);
  }

  /** Let another domain clean up when an account is deactivated. */
  onDeactivated(hook: DeactivatedHook): void {
    this.deactivatedHooks.push(hook);
  }

  // ---- users --------------------------------------------------------------------

  async userExists(userId: string): Promise<boolean> {
    const row = await this.db.selectFrom('users').select('user_id').where('user_id', '=', userId).executeTakeFirst();
    return !!row;
  }

  /** Validate a requested username and check it is free; returns the localpart. */
  async checkUsernameAvailable(username: string): Promise<string> {
    const localpart = normaliseUsername(username, this.serverName);
    if (await this.userExists(`@${localpart}:${this.serverName}`)) throw userInUse();
    return localpart;
  }

  /** Admin helper (CLI): create a user directly, without registration being open. */
  async createUser(localpart: string, password: string | undefined, opts: { admin?: boolean } = {}): Promise<string> {
    const lp = await this.checkUsernameAvailable(localpart);
    const userId = `@${lp}:${this.serverName}`;
    const passwordHash = password ? await hashPassword(password) : null;
    await this.db.transaction().execute((tx) => this.insertUser(tx, userId, passwordHash, !!opts.admin));
    return userId;
  }

  async listUsers(): Promise<Array<{ user_id: string; is_admin: boolean; deactivated: boolean; displayname: string | null }>> {
    const rows = await this.db.selectFrom('users')
      .select(['user_id', 'is_admin', 'deactivated', 'displayname'])
      .orderBy('user_id').execute();
    return rows.map((r) => ({ user_id: r.user_id, is_admin: !!r.is_admin, deactivated: !!r.deactivated, displayname: r.displayname }));
  }

  private async insertUser(tx: Tx, userId: string, passwordHash: string | null, isAdmin: boolean): Promise<void> {
    try {
      await tx.insertInto('users').values({
        user_id: userId,
        password_hash: passwordHash,
        is_admin: isAdmin ? 1 : 0,
        is_guest: 0,
        deactivated: 0,
        created_ts: Date.now(),
        // New users are named after their localpart until they choose otherwise.
        displayname: userId.slice(1, userId.indexOf(':')),
        avatar_url: null,
      }).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw userInUse();
      throw err;
    }
  }

  // ---- registration --------------------------------------------------------------

  /**
   * POST /register (kind=user). Username problems are reported before
   * user-interactive auth, as the spec asks; `ip` keys the rate limit.
   */
  async register(input: RegisterInput, ip: string): Promise<SessionResult> {
    const flows = registrationFlows(this.ctx.config, await this.openToTokenHolders(input.auth));
    let localpart: string | undefined;
    if (input.username !== undefined && input.username !== '') localpart = await this.checkUsernameAvailable(input.username);
    // Every attempt at a stage counts (so a registration token cannot be
    // guessed quickly); the first, auth-less request only fetches the flows.
    if (input.auth !== undefined) this.ctx.limits.registration.take(ip);
    const session = await this.uia.check(input.auth, { op: 'register', userId: null, flows });

    if (input.password === undefined) throw missingParam('Missing parameter: password');
    const passwordHash = await hashPassword(input.password);

    let userId: string;
    let result: SessionResult;
    for (let attempt = 0; ; attempt++) {
      userId = `@${localpart ?? randomLocalpart()}:${this.serverName}`;
      try {
        result = await this.db.transaction().execute(async (tx) => {
          await this.insertUser(tx, userId, passwordHash, false);
          await this.registrationTokens.complete(tx, session);
          const out: SessionResult = { user_id: userId, home_server: this.serverName };
          if (!input.inhibit_login) {
            const s = await this.openSession(tx, userId, input.device_id, input.initial_device_display_name, ip);
            out.access_token = s.access_token;
            out.device_id = s.device_id;
          }
          return out;
        });
        break;
      } catch (err) {
        // A generated localpart that collides is retried; a chosen one is the client's problem.
        if (localpart === undefined && err instanceof MatrixError && err.errcode === 'M_USER_IN_USE' && attempt < 5) continue;
        throw err;
      }
    }
    await this.uia.finish(session);
    this.ctx.log.info({ userId }, 'registered user');
    return result;
  }

  /**
   * Whether registration is closed by configuration but open to holders of
   * an admin-made token: one is usable, or the ongoing UIA session (in
   * `auth`) already holds one, perhaps its last use.
   */
  private async openToTokenHolders(auth: unknown): Promise<boolean> {
    const { registration_token, allow_registration } = this.ctx.config;
    if (registration_token || allow_registration) return false;
    if (await this.registrationTokens.anyValid()) return true;
    const session = (auth as { session?: unknown } | null | undefined)?.session;
    return typeof session === 'string' && (await this.registrationTokens.heldBy(session));
  }

  /** Whether anyone may register (openly, or with a configured or admin-made token). */
  async registrationEnabled(): Promise<boolean> {
    const { registration_token, allow_registration } = this.ctx.config;
    return !!(registration_token || allow_registration) || this.registrationTokens.anyValid();
  }

  /** GET /register/m.login.registration_token/validity */
  async registrationTokenValid(token: string): Promise<boolean> {
    const { registration_token, allow_registration } = this.ctx.config;
    if (registration_token && secretEquals(token, registration_token)) return true;
    // Exhausted or expired admin tokens answer false rather than "registration disabled".
    if (!registration_token && !allow_registration && !(await this.registrationTokens.anyExist())) {
      throw forbidden('Registration is not enabled on this homeserver.');
    }
    return this.registrationTokens.isValid(token);
  }

  // ---- login and sessions ----------------------------------------------------------

  loginFlows(): { flows: Array<{ type: string }> } {
    return { flows: [{ type: 'm.login.password' }] };
  }

  async login(input: LoginInput, ip: string): Promise<SessionResult & { well_known: Record<string, unknown> }> {
    this.ctx.limits.login.take(ip);
    if (input.type !== 'm.login.password') throw new MatrixError('M_UNKNOWN', 400, 'Bad login type.');
    const ident = parseIdentifier(input as unknown as Record<string, unknown>);
    if (ident.kind === 'invalid') throw new MatrixError('M_UNKNOWN', 400, ident.reason);
    if (ident.kind === 'none') throw missingParam('Missing parameter: identifier');
    if (ident.kind === 'thirdparty') throw forbidden('Unknown third-party identifier');
    if (typeof input.password !== 'string') throw missingParam('Missing parameter: password');

    const candidates = loginCandidates(ident.user, this.serverName);
    const user = candidates.length
      ? await this.db.selectFrom('users').select(['user_id', 'password_hash', 'deactivated', 'locked'])
        .where('user_id', 'in', candidates).execute()
        .then((rows) => candidates.map((c) => rows.find((r) => r.user_id === c)).find((r) => r !== undefined))
      : undefined;
    // Verify even for unknown users (against a dummy hash) so timing does not reveal which exist.
    const ok = await verifyPassword(user?.password_hash, input.password);
    if (!user || !ok) throw forbidden('Invalid username or password');
    if (user.deactivated) throw new MatrixError('M_USER_DEACTIVATED', 403, 'This account has been deactivated');
    // Spec (account locking): no new access token until the account is unlocked.
    if (user.locked) throw new MatrixError('M_USER_LOCKED', 401, 'This account has been locked', { soft_logout: true });

    const { access_token, device_id, revoked } = await this.db.transaction().execute((tx) =>
      this.openSession(tx, user.user_id, input.device_id, input.initial_device_display_name, ip),
    );
    this.ctx.tokens.forget(revoked);
    return {
      user_id: user.user_id,
      access_token,
      device_id,
      home_server: this.serverName,
      well_known: { 'm.homeserver': { base_url: this.ctx.config.well_known_client || this.ctx.config.public_baseurl } },
    };
  }

  /**
   * Create (or reuse) a device and issue a token for it. Reusing a device id
   * invalidates the tokens previously assigned to it (spec: relationship
   * between access tokens and devices).
   */
  private async openSession(
    tx: Tx, userId: string, deviceId: string | undefined, displayName: string | undefined, ip: string,
  ): Promise<{ access_token: string; device_id: string; revoked: string[] }> {
    const now = Date.now();
    let revoked: string[] = [];
    let id = deviceId;
    const existing = id
      ? await tx.selectFrom('devices').select('device_id').where('user_id', '=', userId).where('device_id', '=', id).executeTakeFirst()
      : undefined;
    if (existing && id) {
      revoked = await this.ctx.tokens.revokeWhere(tx, userId, id);
      await tx.updateTable('devices').set({ last_seen_ts: now, last_seen_ip: ip })
        .where('user_id', '=', userId).where('device_id', '=', id).execute();
    } else {
      if (!id) {
        do id = randomDeviceId();
        while (await tx.selectFrom('devices').select('device_id').where('user_id', '=', userId).where('device_id', '=', id).executeTakeFirst());
      }
      await tx.insertInto('devices').values({
        user_id: userId, device_id: id, display_name: displayName ?? null, created_ts: now, last_seen_ts: now, last_seen_ip: ip,
      }).execute();
    }
    const access_token = await this.ctx.tokens.issue(tx, userId, id);
    return { access_token, device_id: id, revoked };
  }

  /** Admin helper (shared-secret registration): a new device and token for `userId`, no password asked. */
  async issueSession(userId: string, ip: string, deviceDisplayName?: string): Promise<{ access_token: string; device_id: string }> {
    const { access_token, device_id } = await this.db.transaction().execute((tx) =>
      this.openSession(tx, userId, undefined, deviceDisplayName, ip),
    );
    return { access_token, device_id };
  }

  /** POST /logout: revoke this token and delete its device. */
  async logout(requester: Requester): Promise<void> {
    await this.deleteDevices(requester.userId, [requester.deviceId]);
    this.ctx.tokens.forget([requester.tokenHash]);
  }

  /** POST /logout/all: revoke every token and delete every device. */
  async logoutAll(requester: Requester): Promise<void> {
    await this.deleteDevices(requester.userId, undefined);
    this.ctx.tokens.forget([requester.tokenHash]);
  }

  // ---- password and deactivation -------------------------------------------------------

  /** The flows for re-authenticating `userId` (password, or dummy for password-less accounts). */
  userFlows(userId: string): Promise<UiaFlow[]> {
    return this.uia.userFlows(userId);
  }

  /**
   * Run `fn` once the requester has re-authenticated for `op` (shared by
   * every endpoint that asks for the user's password, in any domain).
   */
  async withUserAuth<T>(auth: unknown, requester: Requester, op: string, fn: () => Promise<T>): Promise<T> {
    const flows = await this.userFlows(requester.userId);
    return this.uia.run(auth, { op, userId: requester.userId, flows }, fn);
  }

  async changePassword(requester: Requester, auth: unknown, newPassword: string, logoutDevices: boolean): Promise<void> {
    await this.withUserAuth(auth, requester, 'password', async () => {
      const passwordHash = await hashPassword(newPassword);
      await this.db.updateTable('users').set({ password_hash: passwordHash }).where('user_id', '=', requester.userId).execute();
      if (logoutDevices) {
        const others = await this.db.selectFrom('devices').select('device_id')
          .where('user_id', '=', requester.userId).where('device_id', '!=', requester.deviceId).execute();
        if (others.length) await this.deleteDevices(requester.userId, others.map((d) => d.device_id));
        // Other tokens on the requester's own device go too; the one in use stays.
        const hashes = await this.db.transaction().execute(async (tx) => {
          const rows = await tx.selectFrom('access_tokens').select('token_hash')
            .where('user_id', '=', requester.userId).where('token_hash', '!=', requester.tokenHash).execute();
          if (rows.length) {
            await tx.deleteFrom('access_tokens').where('user_id', '=', requester.userId)
              .where('token_hash', '!=', requester.tokenHash).execute();
          }
          return rows.map((r) => r.token_hash);
        });
        this.ctx.tokens.forget(hashes);
      }
      this.ctx.log.info({ userId: requester.userId }, 'password changed');
    });
  }

  async deactivate(requester: Requester, auth: unknown): Promise<void> {
    await this.withUserAuth(auth, requester, 'deactivate', () => this.deactivateUser(requester.userId));
  }

  /** Deactivate without re-authentication (the user's own request above, or a server admin's). */
  async deactivateUser(userId: string): Promise<void> {
    await this.db.updateTable('users').set({ deactivated: 1, displayname: null, avatar_url: null })
      .where('user_id', '=', userId).execute();
    await this.deleteDevices(userId, undefined);
    try {
      await this.ctx.rooms.leaveAll(userId);
    } catch (err) {
      this.ctx.log.warn({ err, userId }, 'could not leave rooms on deactivation');
    }
    for (const hook of this.deactivatedHooks) {
      try {
        await hook(userId);
      } catch (err) {
        this.ctx.log.warn({ err, userId }, 'deactivation hook failed');
      }
    }
    this.ctx.log.info({ userId }, 'deactivated user');
  }

  /** Admin helper (CLI): set a new password and revoke every access token, as Synapse's reset_password does by default. */
  async resetPassword(userId: string, newPassword: string): Promise<void> {
    const passwordHash = await hashPassword(newPassword);
    const revoked = await this.db.transaction().execute(async (tx) => {
      await tx.updateTable('users').set({ password_hash: passwordHash }).where('user_id', '=', userId).execute();
      return this.ctx.tokens.revokeWhere(tx, userId);
    });
    this.ctx.tokens.forget(revoked);
    this.ctx.log.info({ userId }, 'password reset');
  }

  // ---- devices -----------------------------------------------------------------------------

  async listDevices(userId: string): Promise<DeviceInfo[]> {
    const rows = await this.db.selectFrom('devices').selectAll().where('user_id', '=', userId).orderBy('created_ts').execute();
    return rows.map(deviceInfo);
  }

  async getDevice(userId: string, deviceId: string): Promise<DeviceInfo> {
    const row = await this.db.selectFrom('devices').selectAll()
      .where('user_id', '=', userId).where('device_id', '=', deviceId).executeTakeFirst();
    if (!row) throw notFound('Unknown device');
    return deviceInfo(row);
  }

  async updateDevice(userId: string, deviceId: string, displayName: string | undefined): Promise<void> {
    await this.getDevice(userId, deviceId);
    if (displayName === undefined) return;
    await this.db.updateTable('devices').set({ display_name: displayName })
      .where('user_id', '=', userId).where('device_id', '=', deviceId).execute();
  }

  /** DELETE /devices/{id} and POST /delete_devices, behind user-interactive auth. */
  async deleteDevicesWithAuth(requester: Requester, auth: unknown, deviceIds: string[]): Promise<void> {
    const op = `delete_devices:${[...new Set(deviceIds)].sort().join(',')}`;
    await this.withUserAuth(auth, requester, op, () => this.deleteDevices(requester.userId, deviceIds));
  }

  /**
   * Delete devices (all of the user's when `deviceIds` is undefined) and
   * revoke their tokens. Unknown ids are ignored. Runs the device hooks in
   * the same transaction.
   */
  async deleteDevices(userId: string, deviceIds: string[] | undefined): Promise<void> {
    if (deviceIds && deviceIds.length === 0) return;
    const wake = new Set<string>();
    const revoked = await this.ctx.write(async (tx, alloc, onCommit) => {
      let q = tx.selectFrom('devices').select('device_id').where('user_id', '=', userId);
      if (deviceIds) q = q.where('device_id', 'in', deviceIds);
      const ids = (await q.execute()).map((r) => r.device_id);
      const hashes: string[] = [];
      if (deviceIds) {
        for (const id of new Set(deviceIds)) hashes.push(...await this.ctx.tokens.revokeWhere(tx, userId, id));
      } else {
        hashes.push(...await this.ctx.tokens.revokeWhere(tx, userId));
      }
      if (ids.length) {
        await tx.deleteFrom('devices').where('user_id', '=', userId).where('device_id', 'in', ids).execute();
        for (const hook of this.devicesDeletedHooks) {
          const keys = await hook(tx, alloc, userId, ids, onCommit);
          if (keys) for (const k of keys) wake.add(k);
        }
      }
      return hashes;
    }, () => wake);
    // Forget again after commit: a request racing the transaction may have re-cached a token.
    this.ctx.tokens.forget(revoked);
  }

  // ---- profile --------------------------------------------------------------------------------

  /** Display name and avatar of a user (nulls for unknown users), used when building member events. */
  async getProfile(userId: string): Promise<Profile> {
    const row = await this.db.selectFrom('users').select(['displayname', 'avatar_url']).where('user_id', '=', userId).executeTakeFirst();
    return { displayname: row?.displayname ?? null, avatar_url: row?.avatar_url ?? null };
  }

  /** GET /profile/{userId}: 404 for users this server does not know; remote users are asked of their server. */
  async lookupProfile(userId: string): Promise<Profile> {
    if (serverNameOf(userId) !== this.ctx.config.server_name) return fetchRemoteProfile(this.ctx, userId);
    const row = await this.db.selectFrom('users').select(['displayname', 'avatar_url']).where('user_id', '=', userId).executeTakeFirst();
    if (!row) throw notFound('Profile not found');
    return { displayname: row.displayname, avatar_url: row.avatar_url };
  }

  /**
   * Set (or, with null or '', clear) a profile field, then send fresh member
   * events to every joined room when it changed.
   */
  async setProfileField(userId: string, field: ProfileField, value: string | null): Promise<void> {
    if (value === '') value = null;
    if (value !== null) {
      const max = field === 'displayname' ? MAX_DISPLAYNAME_LENGTH : MAX_AVATAR_URL_LENGTH;
      if (value.length > max) throw new MatrixError('M_INVALID_PARAM', 400, `${field} is too long (at most ${max} characters)`);
    }
    const current = await this.lookupProfile(userId);
    if (current[field] === value) return;
    await this.db.updateTable('users').set(field === 'displayname' ? { displayname: value } : { avatar_url: value })
      .where('user_id', '=', userId).execute();
    try {
      await this.ctx.rooms.propagateProfile(userId);
    } catch (err) {
      this.ctx.log.warn({ err, userId }, 'could not propagate profile change');
    }
  }

  // ---- account data -----------------------------------------------------------------------------

  /** Account data content, or undefined when unset. `roomId` '' is global account data. */
  async getAccountData(userId: string, roomId: string, type: string): Promise<Record<string, unknown> | undefined> {
    const row = await this.db.selectFrom('account_data').select('content')
      .where('user_id', '=', userId).where('room_id', '=', roomId).where('type', '=', type).executeTakeFirst();
    return row ? (JSON.parse(row.content) as Record<string, unknown>) : undefined;
  }

  /** Store account data at a new stream position and wake the user's /sync. Returns the position. */
  async setAccountData(userId: string, roomId: string, type: string, content: Record<string, unknown>): Promise<number> {
    const pos = await this.updateAccountData(userId, roomId, type, () => content);
    return pos ?? 0;
  }

  /**
   * Read-modify-write of one account data entry under the write lock (tags
   * use this). `fn` returns the new content, or undefined to leave it as is.
   * Returns the new stream position, or undefined when nothing changed.
   */
  async updateAccountData(
    userId: string, roomId: string, type: string,
    fn: (current: Record<string, unknown> | undefined) => Record<string, unknown> | undefined,
  ): Promise<number | undefined> {
    return this.ctx.write(async (tx, alloc, onCommit) => {
      const row = await tx.selectFrom('account_data').select('content')
        .where('user_id', '=', userId).where('room_id', '=', roomId).where('type', '=', type).executeTakeFirst();
      const next = fn(row ? (JSON.parse(row.content) as Record<string, unknown>) : undefined);
      if (next === undefined) return undefined;
      const pos = await alloc();
      const content = JSON.stringify(next);
      await tx.insertInto('account_data')
        .values({ user_id: userId, room_id: roomId, type, content, stream_pos: pos })
        .onConflict((oc) => oc.columns(['user_id', 'room_id', 'type']).doUpdateSet({ content, stream_pos: pos }))
        .execute();
      onCommit(() => this.ctx.streams.accountData.entityChanged(userId, pos));
      return pos;
    }, (pos) => (pos === undefined ? [] : [userId]));
  }

  // ---- filters ------------------------------------------------------------------------------------

  async createFilter(userId: string, filter: Record<string, unknown>): Promise<string> {
    const row = await this.db.insertInto('filters').values({ user_id: userId, json: JSON.stringify(filter) })
      .returning('filter_id').executeTakeFirstOrThrow();
    return String(row.filter_id);
  }

  async getFilter(userId: string, filterId: string): Promise<Record<string, unknown> | undefined> {
    if (!/^\d{1,15}$/.test(filterId)) return undefined;
    const row = await this.db.selectFrom('filters').select('json')
      .where('user_id', '=', userId).where('filter_id', '=', Number(filterId)).executeTakeFirst();
    return row ? (JSON.parse(row.json) as Record<string, unknown>) : undefined;
  }

  // ---- user directory ---------------------------------------------------------------------------------

  /**
   * Users whose id or display name contains `term` (case-insensitively) and
   * who share a joined room with the requester or are joined to a public room.
   */
  async searchUserDirectory(requesterId: string, term: string, limit: number): Promise<DirectoryResult> {
    const pattern = `%${term.toLowerCase().replace(/[\\%_]/g, (c) => '\\' + c)}%`;
    const rows = await sql<{ user_id: string; displayname: string | null; avatar_url: string | null }>`
      SELECT u.user_id, u.displayname, u.avatar_url FROM users u
      WHERE u.deactivated = 0 AND u.is_guest = 0
        AND (lower(u.user_id) LIKE ${pattern} ESCAPE '\\' OR lower(coalesce(u.displayname, '')) LIKE ${pattern} ESCAPE '\\')
        AND (
          EXISTS (SELECT 1 FROM room_members a JOIN room_members b ON b.room_id = a.room_id
                  WHERE a.user_id = ${requesterId} AND a.membership = 'join'
                    AND b.user_id = u.user_id AND b.membership = 'join')
          OR EXISTS (SELECT 1 FROM room_members m JOIN rooms r ON r.room_id = m.room_id
                     WHERE m.user_id = u.user_id AND m.membership = 'join' AND r.visibility = 'public')
        )
      ORDER BY u.user_id
      LIMIT ${limit + 1}`.execute(this.db);
    const limited = rows.rows.length > limit;
    const results = rows.rows.slice(0, limit).map((r) => {
      const out: DirectoryResult['results'][number] = { user_id: r.user_id };
      if (r.displayname != null) out.display_name = r.displayname;
      if (r.avatar_url != null) out.avatar_url = r.avatar_url;
      return out;
    });
    return { results, limited };
  }
}

function deviceInfo(row: { device_id: string; display_name: string | null; last_seen_ip: string | null; last_seen_ts: number | null }): DeviceInfo {
  const d: DeviceInfo = { device_id: row.device_id };
  if (row.display_name != null) d.display_name = row.display_name;
  if (row.last_seen_ip != null) d.last_seen_ip = row.last_seen_ip;
  if (row.last_seen_ts != null) d.last_seen_ts = Number(row.last_seen_ts);
  return d;
}
