/**
 * Server signing keys: publishing ours (/_matrix/key/v2/server), fetching and
 * caching other servers' keys (directly, then through trusted notaries), and
 * answering notary queries (/_matrix/key/v2/query).
 *
 * SCAFFOLD: implemented by the keys/auth work item.
 */
import type { BaseContext } from '../server/context.js';
import type { FederationClient } from './client.js';

export class ServerKeys {
  constructor(protected readonly ctx: BaseContext, protected readonly client: FederationClient) {}

  /**
   * The public key (unpadded base64) of `serverName`'s key `keyId`, valid at
   * least until `validAtTs` (ms; default now), or undefined when it cannot
   * be found. Ours is answered without I/O.
   */
  async getVerifyKey(serverName: string, keyId: string, validAtTs?: number): Promise<string | undefined> {
    void validAtTs;
    if (serverName === this.ctx.config.server_name && keyId === this.ctx.signingKey.keyId) {
      return this.ctx.signingKey.publicKey.toString('base64').replace(/=+$/, '');
    }
    return undefined;
  }
}
