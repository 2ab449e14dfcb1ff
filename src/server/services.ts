import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { loadOrCreateSigningKey } from './signing-key-file.js';
import { currentStreamPos, openStorage } from '../storage/db.js';
import { createBaseContext, type BaseContext } from './context.js';
import { TokenService } from '../accounts/tokens.js';
import { AccountsService } from '../accounts/service.js';
import { RoomsService } from '../rooms/service.js';
import { SyncService } from '../sync/service.js';
import { EphemeralService } from '../sync/ephemeral.js';
import { PushService } from '../push/service.js';
import { ToDeviceService } from '../e2ee/to-device.js';
import { KeysService } from '../e2ee/keys.js';
import { KeyBackupService } from '../e2ee/key-backup.js';
import { MediaService } from '../media/service.js';
import { MediaRetention } from '../media/retention.js';
import { FederationService } from '../federation/service.js';
import { registerEduHandlers } from '../federation/edus.js';
import { createMetrics, type Metrics } from './metrics.js';

/** The full context: base plumbing plus one service per domain. */
export interface Context extends BaseContext {
  tokens: TokenService;
  accounts: AccountsService;
  rooms: RoomsService;
  sync: SyncService;
  /** Typing, receipts, presence. */
  ephemeral: EphemeralService;
  /** Push rules, pushers, notification counts. */
  push: PushService;
  /** End-to-end keys, cross-signing, device lists. */
  keys: KeysService;
  /** Server-side key backups (room_keys). */
  keyBackup: KeyBackupService;
  /** Send-to-device messages and MSC3814 dehydrated devices. */
  toDevice: ToDeviceService;
  /** Content repository: uploads, downloads, thumbnails. */
  media: MediaService;
  /** Media lifetimes (a timer while the server runs) and the admin API's deletions. */
  mediaRetention: MediaRetention;
  /** Server-server plumbing: policy, discovery, outbound client, signing keys. */
  federation: FederationService;
  /** Prometheus metrics, only when metrics_enabled. */
  metrics?: Metrics;
  close(): Promise<void>;
}

export async function createContext(config: Config, log: Logger): Promise<Context> {
  const signingKey = loadOrCreateSigningKey(config.signing_key_path);
  const metrics = config.metrics_enabled ? await createMetrics(config) : undefined;
  const storage = await openStorage(config.database, { poolSize: config.database_pool_size, sqliteSynchronous: config.sqlite_synchronous, onQuery: metrics?.observeQuery });
  const base = createBaseContext(config, storage, log, signingKey, await currentStreamPos(storage.db));
  const ctx = base as Context;
  ctx.tokens = new TokenService(storage.db);
  ctx.accounts = new AccountsService(ctx);
  ctx.rooms = new RoomsService(ctx);
  ctx.sync = new SyncService(ctx);
  ctx.ephemeral = new EphemeralService(ctx);
  ctx.push = new PushService(ctx);
  ctx.keys = new KeysService(ctx);
  ctx.keyBackup = new KeyBackupService(ctx);
  ctx.toDevice = new ToDeviceService(ctx);
  ctx.federation = new FederationService(ctx);
  ctx.media = new MediaService(ctx);
  ctx.mediaRetention = new MediaRetention(ctx);
  registerEduHandlers(ctx);
  if (metrics) (ctx.metrics = metrics).watch(ctx);
  ctx.mediaRetention.start();
  await ctx.federation.start();
  ctx.close = async () => {
    await ctx.federation.stop();
    ctx.notifier.wakeAll();
    ctx.ephemeral.stop();
    await ctx.mediaRetention.stop();
    await storage.close();
  };
  return ctx;
}
