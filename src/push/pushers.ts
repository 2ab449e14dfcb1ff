import { MatrixError, invalidParam, missingParam } from '../server/errors.js';
import type { Db, Tx } from '../storage/db.js';

/**
 * Pushers (spec: POST /pushers/set, GET /pushers): where a user's
 * notifications would be sent. Stored only; delivery to push gateways is
 * not implemented yet.
 */

export interface Pusher {
  pushkey: string;
  kind: string;
  app_id: string;
  app_display_name: string;
  device_display_name: string;
  profile_tag?: string;
  lang: string;
  data: Record<string, unknown>;
}

/** Spec limits: app_id at most 64 characters, pushkey at most 512 bytes. */
export const MAX_APP_ID_LENGTH = 64;
export const MAX_PUSHKEY_BYTES = 512;
/** The only path an HTTP pusher URL may have (spec: PusherData.url). */
export const PUSH_GATEWAY_PATH = '/_matrix/push/v1/notify';

/** Keep what we store bounded: display strings and the data object. */
const MAX_STRING = 1000;
const MAX_DATA_BYTES = 16_384;

const SUPPORTED_KINDS = new Set(['http']);

export interface SetPusherInput {
  kind: string | null;
  app_id: string;
  pushkey: string;
  app_display_name?: string;
  device_display_name?: string;
  profile_tag?: string;
  lang?: string;
  data?: Record<string, unknown>;
  append: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validate the body of POST /pushers/set: M_NOT_JSON for a non-object,
 * M_MISSING_PARAM naming every missing field, M_BAD_JSON for wrong types,
 * M_INVALID_PARAM for values out of bounds.
 */
export function parseSetPusher(body: unknown): SetPusherInput {
  if (!isObject(body)) throw new MatrixError('M_NOT_JSON', 400, 'Request body must be a JSON object');
  const missing = ['kind', 'app_id', 'pushkey'].filter((k) => !Object.hasOwn(body, k));
  if (missing.length) throw missingParam(`Missing parameters: ${missing.join(', ')}`);
  const { kind, app_id, pushkey } = body;
  if (kind !== null && typeof kind !== 'string') throw new MatrixError('M_BAD_JSON', 400, 'kind must be a string or null');
  if (typeof app_id !== 'string') throw new MatrixError('M_BAD_JSON', 400, 'app_id must be a string');
  if (typeof pushkey !== 'string') throw new MatrixError('M_BAD_JSON', 400, 'pushkey must be a string');
  if (app_id.length === 0 || [...app_id].length > MAX_APP_ID_LENGTH) throw invalidParam(`app_id must be 1 to ${MAX_APP_ID_LENGTH} characters`);
  if (pushkey.length === 0 || Buffer.byteLength(pushkey) > MAX_PUSHKEY_BYTES) throw invalidParam(`pushkey must be 1 to ${MAX_PUSHKEY_BYTES} bytes`);
  if (body.append !== undefined && typeof body.append !== 'boolean') throw new MatrixError('M_BAD_JSON', 400, 'append must be a boolean');
  const out: SetPusherInput = { kind, app_id, pushkey, append: body.append === true };
  if (kind === null) return out;

  const required = ['app_display_name', 'device_display_name', 'lang', 'data'].filter((k) => body[k] === undefined || body[k] === null);
  if (required.length) throw missingParam(`Missing parameters: ${required.join(', ')}`);
  for (const k of ['app_display_name', 'device_display_name', 'lang'] as const) {
    const v = body[k];
    if (typeof v !== 'string') throw new MatrixError('M_BAD_JSON', 400, `${k} must be a string`);
    if (v.length > MAX_STRING) throw invalidParam(`${k} is too long`);
    out[k] = v;
  }
  if (body.profile_tag !== undefined && body.profile_tag !== null) {
    if (typeof body.profile_tag !== 'string') throw new MatrixError('M_BAD_JSON', 400, 'profile_tag must be a string');
    if (body.profile_tag.length > MAX_STRING) throw invalidParam('profile_tag is too long');
    out.profile_tag = body.profile_tag;
  }
  if (!isObject(body.data)) throw new MatrixError('M_BAD_JSON', 400, 'data must be an object');
  if (Buffer.byteLength(JSON.stringify(body.data)) > MAX_DATA_BYTES) throw invalidParam('data is too large');
  out.data = body.data;

  if (!SUPPORTED_KINDS.has(kind)) throw invalidParam(`Unsupported pusher kind: ${kind.slice(0, 100)}`);
  if (kind === 'http') {
    const url = body.data.url;
    if (url === undefined) throw missingParam('Missing parameter: data.url');
    if (typeof url !== 'string') throw new MatrixError('M_BAD_JSON', 400, 'data.url must be a string');
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw invalidParam('data.url must be an absolute URL');
    }
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw invalidParam('data.url must be an HTTP(S) URL');
    if (parsed.pathname !== PUSH_GATEWAY_PATH) throw invalidParam(`data.url must have the path ${PUSH_GATEWAY_PATH}`);
    if (body.data.format !== undefined && typeof body.data.format !== 'string') throw new MatrixError('M_BAD_JSON', 400, 'data.format must be a string');
  }
  return out;
}

export class PusherStore {
  constructor(private readonly db: Db) {}

  async list(userId: string): Promise<Pusher[]> {
    const rows = await this.db.selectFrom('pushers').selectAll().where('user_id', '=', userId).orderBy('created_ts').execute();
    return rows.map((r) => {
      const p: Pusher = {
        pushkey: r.pushkey, kind: r.kind, app_id: r.app_id, app_display_name: r.app_display_name,
        device_display_name: r.device_display_name, lang: r.lang, data: JSON.parse(r.data) as Record<string, unknown>,
      };
      if (r.profile_tag !== null) p.profile_tag = r.profile_tag;
      return p;
    });
  }

  /** Create, update (kind non-null) or delete (kind null) the user's pusher for (app_id, pushkey). */
  async set(userId: string, deviceId: string | null, input: SetPusherInput): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      if (input.kind === null) {
        await tx.deleteFrom('pushers').where('user_id', '=', userId)
          .where('app_id', '=', input.app_id).where('pushkey', '=', input.pushkey).execute();
        return;
      }
      // Without append, the same app and pushkey belong to this user alone now.
      if (!input.append) {
        await tx.deleteFrom('pushers').where('app_id', '=', input.app_id).where('pushkey', '=', input.pushkey)
          .where('user_id', '!=', userId).execute();
      }
      const values = {
        kind: input.kind,
        app_display_name: input.app_display_name!,
        device_display_name: input.device_display_name!,
        profile_tag: input.profile_tag ?? null,
        lang: input.lang!,
        data: JSON.stringify(input.data ?? {}),
        device_id: deviceId,
      };
      await tx.insertInto('pushers')
        .values({ user_id: userId, app_id: input.app_id, pushkey: input.pushkey, created_ts: Date.now(), ...values })
        .onConflict((oc) => oc.columns(['user_id', 'app_id', 'pushkey']).doUpdateSet(values))
        .execute();
    });
  }

  /** Drop the pushers registered from these devices (logout, device deletion). */
  async deleteForDevices(tx: Tx, userId: string, deviceIds: string[] | undefined): Promise<void> {
    let q = tx.deleteFrom('pushers').where('user_id', '=', userId);
    if (deviceIds) {
      if (deviceIds.length === 0) return;
      q = q.where('device_id', 'in', deviceIds);
    }
    await q.execute();
  }

  async deleteAll(userId: string): Promise<void> {
    await this.db.deleteFrom('pushers').where('user_id', '=', userId).execute();
  }
}
