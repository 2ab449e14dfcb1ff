import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { SigningKey } from '../core/signing-key.js';
import { nextStreamPos, type Storage, type Tx } from '../storage/db.js';
import { Mutex } from './mutex.js';
import { Notifier } from './notifier.js';
import { RateLimiter } from './rate-limit.js';

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
  limits: { login: RateLimiter; registration: RateLimiter; message: RateLimiter };
  /**
   * Run `fn` in a transaction that may allocate stream positions. Writers are
   * serialised so positions commit in order (a sync never skips a position
   * that commits late); after commit, waiters on `wakeKeys` are notified.
   */
  write<T>(fn: (tx: Tx, alloc: () => Promise<number>) => Promise<T>, wakeKeys?: (result: T) => Iterable<string>): Promise<T>;
}

export function createBaseContext(config: Config, storage: Storage, log: Logger, signingKey: SigningKey): BaseContext {
  const notifier = new Notifier();
  const writeLock = new Mutex();
  const rl = config.rate_limit_enabled;
  return {
    config,
    storage,
    log,
    signingKey,
    notifier,
    limits: {
      login: new RateLimiter(config.rate_limit_login_per_second, config.rate_limit_login_burst, rl),
      registration: new RateLimiter(config.rate_limit_registration_per_second, config.rate_limit_registration_burst, rl),
      message: new RateLimiter(config.rate_limit_message_per_second, config.rate_limit_message_burst, rl),
    },
    async write(fn, wakeKeys) {
      let maxPos = 0;
      const result = await writeLock.run(() =>
        storage.db.transaction().execute(async (tx) => {
          const alloc = async () => (maxPos = await nextStreamPos(tx));
          return fn(tx, alloc);
        }),
      );
      if (maxPos > 0 || wakeKeys) notifier.notify(maxPos, wakeKeys ? wakeKeys(result) : []);
      return result;
    },
  };
}
