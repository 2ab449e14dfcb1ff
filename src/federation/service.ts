/**
 * Everything this server needs to talk to others, in one place on the
 * context: who we may talk to, how to find them, how to call them, and
 * their signing keys.
 */
import type { BaseContext } from '../server/context.js';
import type { Context } from '../server/services.js';
import { FederationInbound } from './inbound.js';
import { FederationClient } from './client.js';
import { ServerDiscovery } from './discovery.js';
import { ServerKeys } from './keys.js';
import { FederationPolicy } from './policy.js';
import { FederationSender } from './queue.js';

export class FederationService {
  readonly policy: FederationPolicy;
  readonly discovery: ServerDiscovery;
  readonly client: FederationClient;
  readonly keys: ServerKeys;
  /** Outbound transactions: the durable per-destination queue. */
  readonly sender: FederationSender;
  /** Inbound transactions: PDUs into rooms, EDUs to their handlers. */
  readonly inbound: FederationInbound;

  constructor(ctx: BaseContext) {
    this.policy = new FederationPolicy(ctx.config);
    this.discovery = new ServerDiscovery(ctx);
    this.client = new FederationClient(ctx, this.discovery);
    this.sender = new FederationSender(ctx, this.client, this.policy);
    this.keys = new ServerKeys(ctx, this.client);
    // Inbound handling reaches every domain (rooms, typing, receipts...), which
    // exist once the whole context is assembled; it is only used after that.
    this.inbound = new FederationInbound(ctx as Context);
  }

  /** Resume sending what was queued before the last shutdown. */
  async start(): Promise<void> {
    await this.sender.start();
  }

  private stopped: Promise<void> | undefined;

  /** Stop sending and close outbound connections. Idempotent. */
  stop(): Promise<void> {
    return (this.stopped ??= (async () => {
      await this.sender.stop();
      await this.client.close();
      await this.discovery.close();
    })());
  }
}
