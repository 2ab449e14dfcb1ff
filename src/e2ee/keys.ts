/**
 * End-to-end keys: device keys, one-time and fallback keys, cross-signing
 * keys and signatures, device lists (spec: End-to-end encryption module;
 * /keys/upload, /keys/query, /keys/claim, /keys/changes,
 * /keys/device_signing/upload, /keys/signatures/upload).
 */
import type { Context } from '../server/services.js';
import type { Requester } from '../accounts/tokens.js';
import { badJson, invalidParam, missingParam } from '../server/errors.js';
import type { Tx } from '../storage/db.js';
import { Lru } from '../server/lru.js';
import { parseUserId } from '../core/identifiers.js';
import { recordDeviceListChange, deviceListsBetween } from './device-lists.js';
import { RemoteKeys } from './remote-keys.js';
import {
  CROSS_SIGNING_TYPES, checkCrossSigningKey, invalidSignature, sameJson, sameSignable, signedBy,
  type CrossSigningKey, type CrossSigningKeyType,
} from './cross-signing.js';

type Json = Record<string, unknown>;
type Signatures = Record<string, Record<string, string>>;

function serverNameOf(userId: string): string | undefined {
  return parseUserId(userId)?.serverName;
}

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const KEY_RE = /^[A-Za-z0-9+/=_-]{1,512}$/;

export interface UploadBody {
  device_keys?: unknown;
  one_time_keys?: unknown;
  fallback_keys?: unknown;
}

/** `<algorithm>:<key id>` split at the first colon. */
function splitKeyId(id: string): [string, string] {
  const i = id.indexOf(':');
  if (i <= 0 || i === id.length - 1) throw invalidParam(`Invalid key id ${id.slice(0, 100)}`);
  return [id.slice(0, i), id.slice(i + 1)];
}

function mergeSignatures(obj: Json, extra: Array<{ signer_user_id: string; signer_key_id: string; signature: string }>): Json {
  if (!extra.length) return obj;
  const sigs: Signatures = {};
  for (const [u, s] of Object.entries(isObject(obj.signatures) ? obj.signatures : {})) if (isObject(s)) sigs[u] = { ...(s as Record<string, string>) };
  for (const e of extra) (sigs[e.signer_user_id] ??= {})[e.signer_key_id] = e.signature;
  return { ...obj, signatures: sigs };
}

/** What /sync reports about a device's one-time and fallback keys. */
interface KeyCounts {
  otk: Record<string, number>;
  fallback: string[];
}

export class KeysService {
  /** Keys of users on other servers, asked of their servers (and cached). */
  readonly remote: RemoteKeys;
  /**
   * Key counts per device: every woken /sync reports them, and they change only
   * through upload, claim and device deletion here. `countsGeneration` moves on
   * every change, so a count read while a change committed is not cached.
   */
  private counts = new Lru<string, KeyCounts>(10_000);
  private countsGeneration = 0;

  constructor(private readonly ctx: Context) {
    this.remote = new RemoteKeys(ctx);
    ctx.accounts.onDevicesDeleted(async (tx, alloc, userId, deviceIds, onCommit) => {
      await tx.deleteFrom('e2e_device_keys').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
      await tx.deleteFrom('e2e_one_time_keys').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
      await tx.deleteFrom('e2e_fallback_keys').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
      await tx.deleteFrom('e2e_signatures').where('target_user_id', '=', userId).where('target_key_id', 'in', deviceIds).execute();
      await tx.deleteFrom('e2e_signatures').where('signer_user_id', '=', userId)
        .where('signer_key_id', 'in', deviceIds.map((d) => `ed25519:${d}`)).execute();
      // A device that is gone is a device-list change (even without keys: clients track devices).
      onCommit(() => this.countsChanged(userId, ...deviceIds));
      return recordDeviceListChange(this.ctx, tx, alloc, onCommit, userId, deviceIds);
    });
    ctx.sync.registerExtension(async ({ userId, deviceId, since, to, body }) => {
      const counts = await this.keyCounts(userId, deviceId);
      body.device_one_time_keys_count = counts.otk;
      body.device_unused_fallback_key_types = counts.fallback;
      if (since === undefined) return false;
      const { changed, left } = await deviceListsBetween(this.ctx, userId, since, to);
      body.device_lists = { changed, left };
      return changed.length > 0 || left.length > 0;
    });
  }

  private get db() {
    return this.ctx.storage.db;
  }

  private isLocal(userId: string): boolean {
    return serverNameOf(userId) === this.ctx.config.server_name;
  }

  // ------------------------------------------------------------ counts

  private countsChanged(userId: string, ...deviceIds: string[]): void {
    this.countsGeneration++;
    for (const d of deviceIds) this.counts.delete(`${userId}|${d}`);
  }

  private async keyCounts(userId: string, deviceId: string): Promise<KeyCounts> {
    const key = `${userId}|${deviceId}`;
    const hit = this.counts.get(key);
    if (hit) return hit;
    const generation = this.countsGeneration;
    const counts = { otk: await this.otkCounts(userId, deviceId), fallback: await this.unusedFallbackTypes(userId, deviceId) };
    if (generation === this.countsGeneration) this.counts.set(key, counts);
    return counts;
  }

  async otkCounts(userId: string, deviceId: string): Promise<Record<string, number>> {
    const rows = await this.db.selectFrom('e2e_one_time_keys').select(['algorithm', (eb) => eb.fn.countAll<number>().as('n')])
      .where('user_id', '=', userId).where('device_id', '=', deviceId).groupBy('algorithm').execute();
    const out: Record<string, number> = { signed_curve25519: 0 };
    for (const r of rows) out[r.algorithm] = Number(r.n);
    return out;
  }

  async unusedFallbackTypes(userId: string, deviceId: string): Promise<string[]> {
    const rows = await this.db.selectFrom('e2e_fallback_keys').select('algorithm')
      .where('user_id', '=', userId).where('device_id', '=', deviceId).where('used', '=', 0).execute();
    return rows.map((r) => r.algorithm).sort();
  }

  // ------------------------------------------------------------ upload

  /** Validate device keys: owner, shape, self-signature. Returns the ed25519 key. */
  private checkDeviceKeys(dk: unknown, who: Requester): string {
    if (!isObject(dk)) throw badJson('device_keys must be an object');
    if (dk.user_id !== who.userId || dk.device_id !== who.deviceId) {
      throw invalidParam('device_keys must be for the requesting user and device');
    }
    if (!Array.isArray(dk.algorithms) || !dk.algorithms.every((a) => typeof a === 'string')) throw badJson('device_keys.algorithms must be a list of strings');
    if (!isObject(dk.keys)) throw badJson('device_keys.keys must be an object');
    for (const [id, v] of Object.entries(dk.keys)) {
      const [, name] = splitKeyId(id);
      if (name !== who.deviceId) throw invalidParam(`device key ${id} must be named after the device`);
      if (typeof v !== 'string' || !KEY_RE.test(v)) throw badJson(`device key ${id} must be a base64 string`);
    }
    const ed = dk.keys[`ed25519:${who.deviceId}`];
    if (typeof ed !== 'string') throw invalidParam('device_keys must include ed25519:<device_id>');
    if (!isObject(dk.signatures)) throw invalidParam('device_keys must be signed');
    if (!signedBy(dk, who.userId, who.deviceId, ed)) throw invalidParam('device_keys signature is missing or invalid');
    return ed;
  }

  /** Parse and check one-time or fallback keys: `{alg:id -> key}`; signed_curve25519 needs a device signature. */
  private checkKeyMap(map: unknown, what: string, who: Requester, ed: string | undefined): Array<{ algorithm: string; keyId: string; json: string; value: unknown }> {
    if (!isObject(map)) throw badJson(`${what} must be an object`);
    const out: Array<{ algorithm: string; keyId: string; json: string; value: unknown }> = [];
    for (const [id, v] of Object.entries(map)) {
      const [algorithm, keyId] = splitKeyId(id);
      if (typeof v === 'string') {
        if (algorithm.startsWith('signed_')) throw invalidParam(`${what} ${id} must be a signed key object`);
        if (!KEY_RE.test(v)) throw badJson(`${what} ${id} must be a base64 string`);
      } else if (isObject(v)) {
        if (typeof v.key !== 'string' || !KEY_RE.test(v.key)) throw badJson(`${what} ${id} has no key`);
        if (algorithm.startsWith('signed_')) {
          if (!ed) throw invalidParam(`${what} ${id}: upload device keys first`);
          if (!signedBy(v, who.userId, who.deviceId, ed)) throw invalidParam(`${what} ${id}: signature is missing or invalid`);
        }
      } else {
        throw badJson(`${what} ${id} must be a string or an object`);
      }
      out.push({ algorithm, keyId, json: JSON.stringify(v), value: v });
    }
    return out;
  }

  async upload(who: Requester, body: UploadBody): Promise<{ one_time_key_counts: Record<string, number> }> {
    const { userId, deviceId } = who;
    let newDeviceKeys: Json | undefined;
    let ed: string | undefined;
    if (body.device_keys !== undefined && body.device_keys !== null) {
      ed = this.checkDeviceKeys(body.device_keys, who);
      newDeviceKeys = body.device_keys as Json;
    } else {
      const row = await this.db.selectFrom('e2e_device_keys').select('key_json')
        .where('user_id', '=', userId).where('device_id', '=', deviceId).executeTakeFirst();
      if (row) ed = (JSON.parse(row.key_json) as { keys: Record<string, string> }).keys[`ed25519:${deviceId}`];
    }
    const otks = body.one_time_keys == null ? [] : this.checkKeyMap(body.one_time_keys, 'one_time_keys', who, ed);
    const fallbacks = body.fallback_keys == null ? [] : this.checkKeyMap(body.fallback_keys, 'fallback_keys', who, ed);
    const fbAlgs = new Set<string>();
    for (const f of fallbacks) {
      if (fbAlgs.has(f.algorithm)) throw invalidParam(`Only one fallback key per algorithm (${f.algorithm})`);
      fbAlgs.add(f.algorithm);
    }
    const now = Date.now();
    await this.ctx.write(async (tx, alloc, onCommit) => {
      let wake: string[] = [];
      if (newDeviceKeys) {
        const prev = await tx.selectFrom('e2e_device_keys').select('key_json')
          .where('user_id', '=', userId).where('device_id', '=', deviceId).executeTakeFirst();
        if (!prev || !sameJson(JSON.parse(prev.key_json), newDeviceKeys)) {
          const json = JSON.stringify(newDeviceKeys);
          if (prev) {
            await tx.updateTable('e2e_device_keys').set({ key_json: json, ts: now }).where('user_id', '=', userId).where('device_id', '=', deviceId).execute();
          } else {
            await tx.insertInto('e2e_device_keys').values({ user_id: userId, device_id: deviceId, key_json: json, ts: now }).execute();
          }
          wake = await recordDeviceListChange(this.ctx, tx, alloc, onCommit, userId, [deviceId]);
        }
      }
      for (const k of otks) {
        const prev = await tx.selectFrom('e2e_one_time_keys').select('key_json').where('user_id', '=', userId).where('device_id', '=', deviceId)
          .where('algorithm', '=', k.algorithm).where('key_id', '=', k.keyId).executeTakeFirst();
        if (prev) {
          if (!sameJson(JSON.parse(prev.key_json), k.value)) throw invalidParam(`One-time key ${k.algorithm}:${k.keyId} already exists with different content`);
          continue;
        }
        await tx.insertInto('e2e_one_time_keys').values({ user_id: userId, device_id: deviceId, algorithm: k.algorithm, key_id: k.keyId, key_json: k.json, ts: now }).execute();
      }
      for (const k of fallbacks) {
        const prev = await tx.selectFrom('e2e_fallback_keys').select(['key_id', 'key_json']).where('user_id', '=', userId).where('device_id', '=', deviceId)
          .where('algorithm', '=', k.algorithm).executeTakeFirst();
        if (prev && prev.key_id === k.keyId && sameJson(JSON.parse(prev.key_json), k.value)) continue; // same key: keep its used flag
        await tx.deleteFrom('e2e_fallback_keys').where('user_id', '=', userId).where('device_id', '=', deviceId).where('algorithm', '=', k.algorithm).execute();
        await tx.insertInto('e2e_fallback_keys').values({ user_id: userId, device_id: deviceId, algorithm: k.algorithm, key_id: k.keyId, key_json: k.json, used: 0 }).execute();
      }
      return wake;
    }, (wake) => wake).finally(() => this.countsChanged(userId, deviceId));
    return { one_time_key_counts: await this.otkCounts(userId, deviceId) };
  }

  // ------------------------------------------------------------ query

  private async crossSigningKeys(userId: string): Promise<Map<CrossSigningKeyType, { pub: string; key: CrossSigningKey }>> {
    const rows = await this.db.selectFrom('e2e_cross_signing_keys').select(['key_type', 'public_key', 'key_json']).where('user_id', '=', userId).execute();
    const out = new Map<CrossSigningKeyType, { pub: string; key: CrossSigningKey }>();
    for (const r of rows) out.set(r.key_type as CrossSigningKeyType, { pub: r.public_key, key: JSON.parse(r.key_json) as CrossSigningKey });
    return out;
  }

  private async storedSignatures(userId: string, targets: string[]) {
    if (!targets.length) return [];
    return this.db.selectFrom('e2e_signatures').select(['target_key_id', 'signer_user_id', 'signer_key_id', 'signature'])
      .where('target_user_id', '=', userId).where('target_key_id', 'in', targets).execute();
  }

  /** Local users from the database, remote ones from their servers (`timeoutMs` per server). */
  async query(who: Requester, deviceKeys: Record<string, string[]>, timeoutMs?: number): Promise<Json> {
    const device_keys: Record<string, Record<string, Json>> = {};
    const master_keys: Record<string, Json> = {};
    const self_signing_keys: Record<string, Json> = {};
    const user_signing_keys: Record<string, Json> = {};
    const failures: Record<string, Json> = {};
    const remote: Record<string, string[]> = {};
    for (const [userId, wanted] of Object.entries(deviceKeys)) {
      if (!this.isLocal(userId)) {
        remote[userId] = wanted;
        continue;
      }
      let q = this.db.selectFrom('e2e_device_keys as k').innerJoin('devices as d', (j) => j.onRef('d.user_id', '=', 'k.user_id').onRef('d.device_id', '=', 'k.device_id'))
        .select(['k.device_id', 'k.key_json', 'd.display_name']).where('k.user_id', '=', userId);
      if (wanted.length) q = q.where('k.device_id', 'in', wanted);
      const rows = await q.execute();
      const sigs = await this.storedSignatures(userId, rows.map((r) => r.device_id));
      const mine: Record<string, Json> = {};
      for (const r of rows) {
        let obj = mergeSignatures(JSON.parse(r.key_json) as Json, sigs.filter((s) => s.target_key_id === r.device_id));
        const unsigned = isObject(obj.unsigned) ? obj.unsigned : {};
        obj = { ...obj, unsigned: { ...unsigned, ...(r.display_name != null ? { device_display_name: r.display_name } : {}) } };
        mine[r.device_id] = obj;
      }
      device_keys[userId] = mine;
      const cs = await this.crossSigningKeys(userId);
      const master = cs.get('master');
      if (master) {
        // Signatures by other users' user-signing keys are shown only to their signer.
        const ms = (await this.storedSignatures(userId, [master.pub])).filter((s) => s.signer_user_id === userId || s.signer_user_id === who.userId);
        master_keys[userId] = mergeSignatures(master.key as unknown as Json, ms);
      }
      const ssk = cs.get('self_signing');
      if (ssk) self_signing_keys[userId] = ssk.key as unknown as Json;
      const usk = cs.get('user_signing');
      if (usk && userId === who.userId) user_signing_keys[userId] = usk.key as unknown as Json;
    }
    if (Object.keys(remote).length) {
      const r = await this.remote.query(remote, timeoutMs);
      Object.assign(device_keys, r.device_keys);
      Object.assign(master_keys, r.master_keys);
      Object.assign(self_signing_keys, r.self_signing_keys);
      Object.assign(failures, r.failures);
    }
    return { device_keys, master_keys, self_signing_keys, user_signing_keys, failures };
  }

  // ------------------------------------------------------------ claim

  async claim(request: Record<string, Record<string, string>>, timeoutMs?: number): Promise<Json> {
    const one_time_keys: Record<string, Record<string, Record<string, unknown>>> = {};
    const failures: Record<string, Json> = {};
    const remote: Record<string, Record<string, string>> = {};
    for (const [userId, devices] of Object.entries(request)) {
      if (!this.isLocal(userId)) {
        remote[userId] = devices;
        continue;
      }
      for (const [deviceId, algorithm] of Object.entries(devices)) {
        const got = await this.claimOne(userId, deviceId, algorithm).finally(() => this.countsChanged(userId, deviceId));
        if (got) ((one_time_keys[userId] ??= {})[deviceId] ??= {})[got.id] = got.key;
      }
    }
    if (Object.keys(remote).length) {
      const r = await this.remote.claim(remote, timeoutMs);
      Object.assign(one_time_keys, r.one_time_keys);
      Object.assign(failures, r.failures);
    }
    return { one_time_keys, failures };
  }

  private async claimOne(userId: string, deviceId: string, algorithm: string): Promise<{ id: string; key: unknown } | undefined> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const row = await this.db.selectFrom('e2e_one_time_keys').select(['key_id', 'key_json'])
        .where('user_id', '=', userId).where('device_id', '=', deviceId).where('algorithm', '=', algorithm)
        .orderBy('ts').orderBy('key_id').limit(1).executeTakeFirst();
      if (!row) break;
      // Only the claimer whose delete removed the row gets the key.
      const del = await this.db.deleteFrom('e2e_one_time_keys').where('user_id', '=', userId).where('device_id', '=', deviceId)
        .where('algorithm', '=', algorithm).where('key_id', '=', row.key_id).executeTakeFirst();
      if (Number(del.numDeletedRows) === 1) return { id: `${algorithm}:${row.key_id}`, key: JSON.parse(row.key_json) };
    }
    const fb = await this.db.selectFrom('e2e_fallback_keys').select(['key_id', 'key_json', 'used'])
      .where('user_id', '=', userId).where('device_id', '=', deviceId).where('algorithm', '=', algorithm).executeTakeFirst();
    if (!fb) return undefined;
    if (!fb.used) {
      await this.db.updateTable('e2e_fallback_keys').set({ used: 1 })
        .where('user_id', '=', userId).where('device_id', '=', deviceId).where('algorithm', '=', algorithm).execute();
    }
    return { id: `${algorithm}:${fb.key_id}`, key: JSON.parse(fb.key_json) };
  }

  // ------------------------------------------------------------ changes

  async changes(who: Requester, from: number, to: number): Promise<{ changed: string[]; left: string[] }> {
    return deviceListsBetween(this.ctx, who.userId, from, Math.min(to, this.ctx.notifier.position));
  }

  // ------------------------------------------------------------ cross-signing

  async uploadCrossSigning(who: Requester, body: Json): Promise<void> {
    const userId = who.userId;
    const supplied = new Map<CrossSigningKeyType, { pub: string; key: CrossSigningKey }>();
    for (const type of CROSS_SIGNING_TYPES) {
      const k = body[`${type}_key`];
      if (k === undefined || k === null) continue;
      supplied.set(type, { pub: checkCrossSigningKey(k, type, userId), key: k as CrossSigningKey });
    }
    if (!supplied.size) return;
    const existing = await this.crossSigningKeys(userId);
    const master = supplied.get('master') ?? existing.get('master');
    if (!master) throw missingParam('Must provide a master cross-signing key');
    for (const type of ['self_signing', 'user_signing'] as const) {
      const k = supplied.get(type);
      if (k && !signedBy(k.key, userId, master.pub, master.pub)) throw invalidSignature(`${type} key must be signed by the master key`);
    }
    const unchanged = [...supplied].every(([t, k]) => { const e = existing.get(t); return e && sameJson(e.key, k.key); });
    if (unchanged) return;
    const store = async () => {
      await this.ctx.write(async (tx, alloc, onCommit) => {
        const pos = await alloc();
        const replacingMaster = supplied.has('master') && existing.has('master') && existing.get('master')!.pub !== supplied.get('master')!.pub;
        if (replacingMaster) {
          for (const [t, e] of existing) {
            if (!supplied.has(t)) await tx.deleteFrom('e2e_cross_signing_keys').where('user_id', '=', userId).where('key_type', '=', t).execute();
            await tx.deleteFrom('e2e_signatures').where('signer_user_id', '=', userId).where('signer_key_id', '=', `ed25519:${e.pub}`).execute();
          }
          await tx.deleteFrom('e2e_signatures').where('target_user_id', '=', userId).where('target_key_id', '=', existing.get('master')!.pub).execute();
        }
        for (const [t, k] of supplied) {
          await tx.deleteFrom('e2e_cross_signing_keys').where('user_id', '=', userId).where('key_type', '=', t).execute();
          await tx.insertInto('e2e_cross_signing_keys').values({ user_id: userId, key_type: t, public_key: k.pub, key_json: JSON.stringify(k.key), stream_pos: pos }).execute();
        }
        return recordDeviceListChange(this.ctx, tx, alloc, onCommit, userId);
      }, (wake) => wake);
    };
    // MSC3967: the first upload (no master key yet) needs no user-interactive auth.
    if (!existing.has('master')) return store();
    await this.ctx.accounts.withUserAuth(body.auth, who, 'device_signing_upload', store);
  }

  async uploadSignatures(who: Requester, body: Json): Promise<{ failures: Record<string, Record<string, Json>> }> {
    const me = who.userId;
    const failures: Record<string, Record<string, Json>> = {};
    const fail = (u: string, k: string, errcode: string, error: string) => { (failures[u] ??= {})[k] = { errcode, error }; };
    const toStore: Array<{ target_user_id: string; target_key_id: string; signer_user_id: string; signer_key_id: string; signature: string }> = [];
    const changedUsers = new Set<string>();
    const mine = await this.crossSigningKeys(me);
    for (const [userId, keys] of Object.entries(body)) {
      if (!isObject(keys)) throw badJson(`signatures for ${userId} must be an object`);
      if (!this.isLocal(userId)) {
        for (const k of Object.keys(keys)) fail(userId, k, 'M_UNRECOGNIZED', 'Federation is not available on this server');
        continue;
      }
      const theirs = userId === me ? mine : await this.crossSigningKeys(userId);
      for (const [keyId, obj] of Object.entries(keys)) {
        if (!isObject(obj) || !isObject(obj.signatures) || !isObject(obj.signatures[me])) {
          fail(userId, keyId, 'M_INVALID_SIGNATURE', 'No signatures by the uploading user');
          continue;
        }
        const sigs = obj.signatures[me] as Record<string, unknown>;
        const before = toStore.length;
        const master = theirs.get('master');
        if (userId === me && master && keyId === master.pub) {
          // Own master key, signed by own devices.
          if (!sameSignable(obj, master.key)) { fail(userId, keyId, 'M_INVALID_SIGNATURE', 'Key does not match the stored master key'); continue; }
          for (const sigKeyId of Object.keys(sigs)) {
            const [alg, dev] = splitKeyId(sigKeyId);
            if (alg !== 'ed25519' || dev === master.pub) continue;
            const row = await this.db.selectFrom('e2e_device_keys').select('key_json').where('user_id', '=', me).where('device_id', '=', dev).executeTakeFirst();
            const ed = row ? (JSON.parse(row.key_json) as { keys: Record<string, string> }).keys[`ed25519:${dev}`] : undefined;
            if (!ed || !signedBy(obj, me, dev, ed)) { fail(userId, keyId, 'M_INVALID_SIGNATURE', `Invalid signature by device ${dev}`); toStore.length = before; break; }
            toStore.push({ target_user_id: me, target_key_id: keyId, signer_user_id: me, signer_key_id: sigKeyId, signature: String(sigs[sigKeyId]) });
          }
        } else if (userId === me) {
          // Own device, signed by the self-signing key.
          const row = await this.db.selectFrom('e2e_device_keys').select('key_json').where('user_id', '=', me).where('device_id', '=', keyId).executeTakeFirst();
          if (!row) { fail(userId, keyId, 'M_NOT_FOUND', 'Unknown device or key'); continue; }
          const ssk = mine.get('self_signing');
          if (!ssk) { fail(userId, keyId, 'M_INVALID_SIGNATURE', 'No self-signing key'); continue; }
          if (!sameSignable(obj, JSON.parse(row.key_json) as object)) { fail(userId, keyId, 'M_INVALID_SIGNATURE', 'Key does not match the stored device keys'); continue; }
          if (!signedBy(obj, me, ssk.pub, ssk.pub)) { fail(userId, keyId, 'M_INVALID_SIGNATURE', 'Invalid self-signing signature'); continue; }
          toStore.push({ target_user_id: me, target_key_id: keyId, signer_user_id: me, signer_key_id: `ed25519:${ssk.pub}`, signature: String(sigs[`ed25519:${ssk.pub}`]) });
        } else {
          // Another user's master key, signed by the user-signing key.
          const usk = mine.get('user_signing');
          if (!master || keyId !== master.pub) { fail(userId, keyId, 'M_NOT_FOUND', 'Unknown master key'); continue; }
          if (!usk) { fail(userId, keyId, 'M_INVALID_SIGNATURE', 'No user-signing key'); continue; }
          if (!sameSignable(obj, master.key)) { fail(userId, keyId, 'M_INVALID_SIGNATURE', 'Key does not match the stored master key'); continue; }
          if (!signedBy(obj, me, usk.pub, usk.pub)) { fail(userId, keyId, 'M_INVALID_SIGNATURE', 'Invalid user-signing signature'); continue; }
          toStore.push({ target_user_id: userId, target_key_id: keyId, signer_user_id: me, signer_key_id: `ed25519:${usk.pub}`, signature: String(sigs[`ed25519:${usk.pub}`]) });
        }
        if (toStore.length > before) changedUsers.add(userId);
      }
    }
    if (toStore.length) {
      await this.ctx.write(async (tx: Tx, alloc, onCommit) => {
        for (const s of toStore) {
          await tx.deleteFrom('e2e_signatures').where('target_user_id', '=', s.target_user_id).where('target_key_id', '=', s.target_key_id)
            .where('signer_user_id', '=', s.signer_user_id).where('signer_key_id', '=', s.signer_key_id).execute();
          await tx.insertInto('e2e_signatures').values(s).execute();
        }
        const wake: string[] = [];
        for (const u of changedUsers) wake.push(...await recordDeviceListChange(this.ctx, tx, alloc, onCommit, u));
        return wake;
      }, (wake) => wake);
    }
    return { failures };
  }
}

