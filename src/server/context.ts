import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { SigningKey } from '../core/signing-key.js';
import { nextStreamPos, type Storage, type Tx } from '../storage/db.js';
import { DiskGuard } from './disk-guard.js';
import { Mutex } from './mutex.js';
import { Notifier } from './notifier.js';
import { RateLimiter } from './rate-limit.js';
import { StreamChanges } from './stream-changes.js';

/** Register a function to run once the write's transaction has committed. */
export type OnCommit = (fn: () => void) => void;

/**
 * What every service and route can reach. Services are attached by
 * `createServices` (services.ts); they find each other through the context,
 * which keeps construction order free of cycles.
 */
export interface BaseContext {
  config: Config;
  storage: Storage;
  log: Logger;
  signingKey: SigningKey;
  notifier: Notifier;
  /** Where each kind of syncable data last changed (fed by writers through `write`'s onCommit). */
  streams: StreamChanges;
  limits: { login: RateLimiter; registration: RateLimiter; message: RateLimiter };
  /** Refuses uploads and other writes while data_dir's disk is below min_free_disk_bytes; exposes free bytes for metrics. */
  disk: DiskGuard;
  /**
   * Run `fn` in a transaction that may allocate stream positions. Writers are
   * serialised so positions commit in order (a sync never skips a position
   * that commits late). After commit, still under the write lock and in one
   * synchronous step: the `onCommit` functions run (they record changes in
   * `streams` and invalidate caches), the notifier's position advances and
   * waiters on `wakeKeys` are woken. So anyone reading `notifier.position`
   * finds every change up to it recorded.
   */
  write<T>(fn: (tx: Tx, alloc: () => Promise<number>, onCommit: OnCommit) => Promise<T>, wakeKeys?: (result: T) => Iterable<string>): Promise<T>;
}

/** `streamHead`: the committed stream position when the process starts. */
export function createBaseContext(config: Config, storage: Storage, log: Logger, signingKey: SigningKey, streamHead: number): BaseContext {
  const notifier = new Notifier();
  notifier.notify(streamHead, []);
  const streams = new StreamChanges(streamHead);
  const writeLock = new Mutex();
  const rl = config.rate_limit_enabled;
  /** The last position this process committed (or found at start). */
  let committed = streamHead;
  return {
    config,
    storage,
    log,
    signingKey,
    notifier,
    streams,
    limits: {
      login: new RateLimiter(config.rate_limit_login_per_second, config.rate_limit_login_burst, rl),
      registration: new RateLimiter(config.rate_limit_registration_per_second, config.rate_limit_registration_burst, rl),
      message: new RateLimiter(config.rate_limit_message_per_second, config.rate_limit_message_burst, rl),
    },
    disk: new DiskGuard({ dir: config.data_dir, minFreeBytes: config.min_free_disk_bytes, log, adminContact: () => config.public_baseurl }),
    write(fn, wakeKeys) {
      return writeLock.run(async () => {
        let maxPos = 0;
        /** First position allocated after a gap: someone else (another process) wrote positions we never saw. */
        let gapAt = 0;
        const hooks: Array<() => void> = [];
        const result = await storage.db.transaction().execute(async (tx) => {
          const alloc = async () => {
            const pos = await nextStreamPos(tx);
            if (pos !== (maxPos || committed) + 1 && !gapAt) gapAt = pos;
            return (maxPos = pos);
          };
          return fn(tx, alloc, (h) => hooks.push(h));
        });
        // Committed. Until the notifier advances below, readers use older positions.
        if (maxPos > committed) committed = maxPos;
        if (gapAt) {
          log.warn({ position: gapAt }, 'stream positions were allocated outside this process; change caches reset');
          streams.reset(gapAt - 1);
        }
        for (const h of hooks) {
          try {
            h();
          } catch (err) {
            log.error({ err }, 'post-commit hook failed; change caches reset');
            streams.reset(Math.max(maxPos, notifier.position));
          }
        }
        if (maxPos > 0 || wakeKeys) notifier.notify(maxPos, wakeKeys ? wakeKeys(result) : []);
        return result;
      });
    },
  };
}
