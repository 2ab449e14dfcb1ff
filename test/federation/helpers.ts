/**
 * Shared pieces of the federation unit tests: a real service context on a
 * temporary SQLite database with chosen config, and a fake outbound client
 * that plays other servers.
 */
import type { Config } from '../../src/config/config.js';
import { withServiceContext } from '../helpers/service-context.js';
import { signJson } from '../../src/core/json-signing.js';
import { generateSigningKey, publicKeyBase64, type SigningKey } from '../../src/core/signing-key.js';
import { FederationRequestError, type FederationRequest } from '../../src/federation/client.js';
import type { Context } from '../../src/server/services.js';

export function withContext(overrides: Partial<Config>, fn: (ctx: Context) => Promise<void>): Promise<void> {
  return withServiceContext(fn, { server_name: 'us.test', ...overrides });
}

export type Handler = (req: FederationRequest) => unknown;

/** Answers requests per destination; an unknown destination fails like an unreachable server. */
export class FakeClient {
  readonly calls: Array<{ destination: string; req: FederationRequest }> = [];
  readonly handlers = new Map<string, Handler>();

  async request<T = unknown>(destination: string, req: FederationRequest): Promise<T> {
    this.calls.push({ destination, req });
    // Let concurrent callers pile up before answering, as a network would.
    await new Promise((r) => setImmediate(r));
    const h = this.handlers.get(destination);
    if (!h) throw new FederationRequestError(destination, 'connection refused');
    return h(req) as T;
  }

  callsTo(destination: string): number {
    return this.calls.filter((c) => c.destination === destination).length;
  }
}

/** A key response as `serverName` would publish it, signed by `keys` (default: each listed key). */
export function keyResponse(
  serverName: string,
  key: SigningKey,
  validUntilTs: number,
  extra: { old?: Record<string, { key: string; expired_ts: number }> } = {},
): Record<string, unknown> {
  return signJson(
    {
      server_name: serverName,
      verify_keys: { [key.keyId]: { key: publicKeyBase64(key) } },
      old_verify_keys: extra.old ?? {},
      valid_until_ts: validUntilTs,
    },
    serverName,
    key,
  );
}

export { generateSigningKey, publicKeyBase64, signJson };
