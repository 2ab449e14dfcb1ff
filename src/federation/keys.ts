/**
 * Server signing keys (server-server API, "Retrieving server keys"):
 * publishing ours (/_matrix/key/v2/server), fetching and caching other
 * servers' keys (directly, then through trusted notaries), and answering
 * notary queries (/_matrix/key/v2/query).
 */
import type { BaseContext } from '../server/context.js';
import { signJson, verifyJsonSignature } from '../core/json-signing.js';
import { isValidServerName } from '../core/identifiers.js';
import { publicKeyBase64 } from '../core/signing-key.js';
import type { FederationClient } from './client.js';
import { FederationPolicy } from './policy.js';

const DAY_MS = 24 * 60 * 60 * 1000;
const HOUR_MS = 60 * 60 * 1000;
/** Spec: a valid_until_ts further ahead than this is treated as this. */
const MAX_KEY_LIFETIME_MS = 7 * DAY_MS;
/** A server that could not give us keys is not asked again for this long. */
const FAILURE_MEMO_MS = 60_000;
/**
 * After a successful fetch, a key id it did not contain is not looked for
 * again this soon: otherwise requests naming made-up key ids could make us
 * hammer the server.
 */
const REFETCH_MIN_MS = 30_000;
const MEMO_LIMIT = 1000;
const FETCH_TIMEOUT_MS = 15_000;
/** Key responses are small; anything larger is not a key response. */
const MAX_KEY_RESPONSE_BYTES = 256 * 1024;

/** The shape of /_matrix/key/v2/server (and of each notary answer entry). */
export interface ServerKeyResponse {
  server_name: string;
  verify_keys: Record<string, { key: string }>;
  old_verify_keys: Record<string, { key: string; expired_ts: number }>;
  valid_until_ts: number;
  signatures: Record<string, Record<string, string>>;
}

/** What ServerKeys needs of the outbound client (tests pass a fake). */
export type KeyFetchClient = Pick<FederationClient, 'request'>;

export interface ServerKeysOptions {
  /** Clock, for tests. */
  now?: () => number;
}

interface FetchMemo {
  at: number;
  ok: boolean;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const isTimestamp = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Check that `raw` is a well-formed key response for `serverName`, signed by
 * every key in its verify_keys. Returns it with only `serverName`'s
 * signatures (and the rest of the signatures separately), or a reason.
 */
export function checkKeyResponse(raw: unknown, serverName: string): { ok: ServerKeyResponse; allSignatures: Record<string, unknown> } | { error: string } {
  if (!isRecord(raw)) return { error: 'not a JSON object' };
  if (raw.server_name !== serverName) return { error: `server_name is ${JSON.stringify(raw.server_name)}, expected ${serverName}` };
  if (!isTimestamp(raw.valid_until_ts)) return { error: 'valid_until_ts missing or invalid' };
  if (!isRecord(raw.verify_keys) || Object.keys(raw.verify_keys).length === 0) return { error: 'no verify_keys' };
  const old = raw.old_verify_keys ?? {};
  if (!isRecord(old)) return { error: 'old_verify_keys is not an object' };
  if (!isRecord(raw.signatures) || !isRecord(raw.signatures[serverName])) return { error: 'not signed by the server' };
  for (const [keyId, v] of Object.entries(raw.verify_keys)) {
    if (!keyId.startsWith('ed25519:') || !isRecord(v) || typeof v.key !== 'string') return { error: `bad verify key ${keyId}` };
    // Each published key must sign: otherwise anyone could list a key of theirs next to a real one.
    if (!verifyJsonSignature(raw, serverName, keyId, v.key)) return { error: `not self-signed by ${keyId}` };
  }
  for (const [keyId, v] of Object.entries(old)) {
    if (!isRecord(v) || typeof v.key !== 'string' || !isTimestamp(v.expired_ts)) return { error: `bad old verify key ${keyId}` };
  }
  const ok = {
    ...raw,
    old_verify_keys: old,
    signatures: { [serverName]: raw.signatures[serverName] },
  } as unknown as ServerKeyResponse;
  return { ok, allSignatures: raw.signatures };
}

export class ServerKeys {
  private readonly now: () => number;
  private readonly policy: FederationPolicy;
  private readonly inflight = new Map<string, Promise<boolean>>();
  private readonly memo = new Map<string, FetchMemo>();
  private own: ServerKeyResponse | undefined;

  constructor(protected readonly ctx: BaseContext, protected readonly client: KeyFetchClient, options: ServerKeysOptions = {}) {
    this.now = options.now ?? Date.now;
    this.policy = new FederationPolicy(ctx.config);
  }

  private get serverName(): string {
    return this.ctx.config.server_name;
  }

  /**
   * Our /_matrix/key/v2/server answer. valid_until_ts is now + 7 days rounded
   * up to the hour, so the signed object only changes (and is only re-signed)
   * once an hour.
   */
  ownKeyResponse(): ServerKeyResponse {
    const validUntil = Math.ceil((this.now() + MAX_KEY_LIFETIME_MS) / HOUR_MS) * HOUR_MS;
    if (this.own?.valid_until_ts !== validUntil) {
      const key = this.ctx.signingKey;
      this.own = signJson(
        {
          server_name: this.serverName,
          verify_keys: { [key.keyId]: { key: publicKeyBase64(key) } },
          old_verify_keys: {},
          valid_until_ts: validUntil,
        },
        this.serverName,
        key,
      );
    }
    return this.own;
  }

  /**
   * The public key (unpadded base64) of `serverName`'s key `keyId`, valid at
   * least until `validAtTs` (ms; default now), or undefined when it cannot
   * be found. Ours is answered without I/O.
   */
  async getVerifyKey(serverName: string, keyId: string, validAtTs?: number): Promise<string | undefined> {
    const at = validAtTs ?? this.now();
    if (serverName === this.serverName) {
      return keyId === this.ctx.signingKey.keyId ? publicKeyBase64(this.ctx.signingKey) : undefined;
    }
    // Names come from remote input (headers, events): never let a malformed one reach discovery.
    if (!isValidServerName(serverName) || !keyId.startsWith('ed25519:')) return undefined;
    const cached = await this.cachedKey(serverName, keyId, at);
    if (cached !== undefined) return cached;
    if (!this.shouldFetch(serverName)) return undefined;
    await this.fetchKeys(serverName);
    return this.cachedKey(serverName, keyId, at);
  }

  /**
   * True when `obj` carries at least one valid signature by `serverName`
   * under a key valid at `validAtTs` (default now).
   */
  async verifySignedJson(obj: object, serverName: string, validAtTs?: number): Promise<boolean> {
    const signatures = (obj as { signatures?: unknown }).signatures;
    if (!isRecord(signatures) || !Object.hasOwn(signatures, serverName)) return false;
    const mine = signatures[serverName];
    if (!isRecord(mine)) return false;
    for (const keyId of Object.keys(mine)) {
      if (!keyId.startsWith('ed25519:')) continue;
      const key = await this.getVerifyKey(serverName, keyId, validAtTs);
      if (key !== undefined && verifyJsonSignature(obj, serverName, keyId, key)) return true;
    }
    return false;
  }

  /**
   * Notary answer for one server: its last key response (with its own
   * signatures) plus ours, refreshed first when missing, expired, not valid
   * until `minimumValidUntilTs` or lacking a requested key id. Undefined
   * when we have nothing for it.
   */
  async notaryKeys(serverName: string, keyIds: string[], minimumValidUntilTs?: number): Promise<ServerKeyResponse | undefined> {
    if (serverName === this.serverName) return this.ownKeyResponse();
    if (!isValidServerName(serverName)) return undefined;
    const min = minimumValidUntilTs ?? this.now();
    let stored = await this.storedResponse(serverName);
    const lacksKey = (r: ServerKeyResponse) => keyIds.some((k) => !Object.hasOwn(r.verify_keys, k) && !Object.hasOwn(r.old_verify_keys, k));
    if ((!stored || stored.valid_until_ts < min || lacksKey(stored)) && this.shouldFetch(serverName)) {
      await this.fetchKeys(serverName);
      stored = await this.storedResponse(serverName);
    }
    // A stale answer is still given: the asker judges validity itself, and it beats none.
    return stored ? signJson(stored, this.serverName, this.ctx.signingKey) : undefined;
  }

  // ---- cache

  private async cachedKey(serverName: string, keyId: string, at: number): Promise<string | undefined> {
    const row = await this.ctx.storage.db
      .selectFrom('server_keys')
      .select(['verify_key', 'valid_until_ts'])
      .where('server_name', '=', serverName)
      .where('key_id', '=', keyId)
      .executeTakeFirst();
    // Spec: a key may only be used for objects made while it was valid.
    return row && Number(row.valid_until_ts) >= at ? row.verify_key : undefined;
  }

  private async storedResponse(serverName: string): Promise<ServerKeyResponse | undefined> {
    const row = await this.ctx.storage.db
      .selectFrom('server_key_responses')
      .select('key_json')
      .where('server_name', '=', serverName)
      .executeTakeFirst();
    return row ? (JSON.parse(row.key_json) as ServerKeyResponse) : undefined;
  }

  private async store(resp: ServerKeyResponse): Promise<void> {
    const fetched = this.now();
    const cap = fetched + MAX_KEY_LIFETIME_MS;
    const validUntil = Math.min(resp.valid_until_ts, cap);
    const rows = [
      ...Object.entries(resp.verify_keys).map(([keyId, v]) => ({ key_id: keyId, verify_key: v.key, valid_until_ts: validUntil, expired_ts: null as number | null })),
      // An old key verifies only what was signed before it expired.
      ...Object.entries(resp.old_verify_keys).map(([keyId, v]) => ({ key_id: keyId, verify_key: v.key, valid_until_ts: Math.min(v.expired_ts, cap), expired_ts: v.expired_ts })),
    ];
    const db = this.ctx.storage.db;
    await db.transaction().execute(async (tx) => {
      for (const r of rows) {
        await tx
          .insertInto('server_keys')
          .values({ server_name: resp.server_name, ...r, fetched_ts: fetched })
          .onConflict((oc) => oc.columns(['server_name', 'key_id']).doUpdateSet({ verify_key: r.verify_key, valid_until_ts: r.valid_until_ts, expired_ts: r.expired_ts, fetched_ts: fetched }))
          .execute();
      }
      const key_json = JSON.stringify(resp);
      await tx
        .insertInto('server_key_responses')
        .values({ server_name: resp.server_name, key_json, valid_until_ts: resp.valid_until_ts, fetched_ts: fetched })
        .onConflict((oc) => oc.column('server_name').doUpdateSet({ key_json, valid_until_ts: resp.valid_until_ts, fetched_ts: fetched }))
        .execute();
    });
  }

  // ---- fetching

  private shouldFetch(serverName: string): boolean {
    if (!this.policy.allows(serverName)) return false;
    const m = this.memo.get(serverName);
    if (!m) return true;
    return this.now() - m.at >= (m.ok ? REFETCH_MIN_MS : FAILURE_MEMO_MS);
  }

  private remember(serverName: string, ok: boolean): void {
    this.memo.delete(serverName);
    // Oldest first (insertion order): forget the oldest memo to stay bounded.
    if (this.memo.size >= MEMO_LIMIT) this.memo.delete(this.memo.keys().next().value as string);
    this.memo.set(serverName, { at: this.now(), ok });
  }

  /** Fetch and store `serverName`'s keys; concurrent callers share one attempt. Never throws. */
  private fetchKeys(serverName: string): Promise<boolean> {
    let p = this.inflight.get(serverName);
    if (!p) {
      p = this.doFetchKeys(serverName).finally(() => this.inflight.delete(serverName));
      this.inflight.set(serverName, p);
    }
    return p;
  }

  private async doFetchKeys(serverName: string): Promise<boolean> {
    let resp = await this.fetchDirect(serverName);
    if (!resp) {
      for (const notary of this.trustedNotaries()) {
        if (notary === serverName) continue;
        resp = await this.fetchViaNotary(notary, serverName);
        if (resp) break;
      }
    }
    if (resp) {
      try {
        await this.store(resp);
      } catch (err) {
        this.ctx.log.warn({ err, server: serverName }, 'could not store server keys');
        resp = undefined;
      }
    }
    this.remember(serverName, resp !== undefined);
    return resp !== undefined;
  }

  private trustedNotaries(): string[] {
    return this.ctx.config.trusted_key_servers
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '' && s !== this.serverName);
  }

  /** GET the server's own key response, checked; undefined on any failure. */
  private async fetchDirect(serverName: string): Promise<ServerKeyResponse | undefined> {
    let raw: unknown;
    try {
      raw = await this.client.request(serverName, {
        method: 'GET',
        path: '/_matrix/key/v2/server',
        signed: false,
        timeoutMs: FETCH_TIMEOUT_MS,
        maxBytes: MAX_KEY_RESPONSE_BYTES,
      });
    } catch (err) {
      this.ctx.log.info({ server: serverName, err: (err as Error).message }, 'could not fetch server keys directly');
      return undefined;
    }
    const checked = checkKeyResponse(raw, serverName);
    if ('error' in checked) {
      this.ctx.log.warn({ server: serverName, reason: checked.error }, 'rejected server key response');
      return undefined;
    }
    return checked.ok;
  }

  /**
   * Ask `notary` for `serverName`'s keys. An answer counts only when signed
   * by `serverName` itself (every listed key) and by the notary, whose key
   * we fetch directly from the notary, never through another notary.
   */
  private async fetchViaNotary(notary: string, serverName: string): Promise<ServerKeyResponse | undefined> {
    if (!this.policy.allows(notary)) return undefined;
    let raw: unknown;
    try {
      raw = await this.client.request(notary, {
        method: 'POST',
        path: '/_matrix/key/v2/query',
        body: { server_keys: { [serverName]: {} } },
        signed: false,
        timeoutMs: FETCH_TIMEOUT_MS,
        maxBytes: MAX_KEY_RESPONSE_BYTES,
      });
    } catch (err) {
      this.ctx.log.info({ notary, server: serverName, err: (err as Error).message }, 'notary key query failed');
      return undefined;
    }
    if (!isRecord(raw) || !Array.isArray(raw.server_keys)) return undefined;
    let best: ServerKeyResponse | undefined;
    let notaryFetched = false;
    for (const entry of raw.server_keys) {
      const checked = checkKeyResponse(entry, serverName);
      if ('error' in checked) continue;
      const notarySigs = checked.allSignatures[notary];
      if (!isRecord(notarySigs)) continue;
      let signedByNotary = false;
      for (const keyId of Object.keys(notarySigs)) {
        let key = await this.cachedKey(notary, keyId, this.now());
        if (key === undefined && !notaryFetched) {
          notaryFetched = true;
          const own = await this.fetchDirect(notary);
          if (own) await this.store(own).catch((err: unknown) => this.ctx.log.warn({ err, server: notary }, 'could not store notary keys'));
          key = await this.cachedKey(notary, keyId, this.now());
        }
        if (key !== undefined && verifyJsonSignature(entry as object, notary, keyId, key)) {
          signedByNotary = true;
          break;
        }
      }
      if (!signedByNotary) continue;
      if (!best || checked.ok.valid_until_ts > best.valid_until_ts) best = checked.ok;
    }
    if (!best) this.ctx.log.warn({ notary, server: serverName }, 'notary gave no acceptable key response');
    return best;
  }
}
