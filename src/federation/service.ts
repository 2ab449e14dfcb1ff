/**
 * Everything this server needs to talk to others, in one place on the
 * context: who we may talk to, how to find them, how to call them, and
 * their signing keys.
 */
import type { BaseContext } from '../server/context.js';
import { FederationClient } from './client.js';
import { ServerDiscovery } from './discovery.js';
import { ServerKeys } from './keys.js';
import { FederationPolicy } from './policy.js';

export class FederationService {
  readonly policy: FederationPolicy;
  readonly discovery: ServerDiscovery;
  readonly client: FederationClient;
  readonly keys: ServerKeys;

  constructor(ctx: BaseContext) {
    this.policy = new FederationPolicy(ctx.config);
    this.discovery = new ServerDiscovery(ctx);
    this.client = new FederationClient(ctx, this.discovery);
    this.keys = new ServerKeys(ctx, this.client);
  }
}
