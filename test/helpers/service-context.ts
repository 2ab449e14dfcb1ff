import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config/config.js';
import { silentLogger } from '../../src/server/logging.js';
import { createContext, type Context } from '../../src/server/services.js';

/**
 * Run `fn` against the real services (no HTTP) on a fresh SQLite database in
 * a temporary directory, closing and removing it afterwards.
 */
export async function withServiceContext(fn: (ctx: Context) => Promise<void>, overrides: Partial<Config> = {}): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ranvier-svc-'));
  const config = loadConfig({
    env: {},
    // Service tests never reach the network: no notary servers.
    overrides: { server_name: 'test.local', data_dir: dir, log_level: 'silent', trusted_key_servers: '', min_free_disk_bytes: 0, ...overrides },
  });
  let ctx: Context | undefined;
  try {
    ctx = await createContext(config, silentLogger());
    await fn(ctx);
  } finally {
    await ctx?.close();
    await rm(dir, { recursive: true, force: true });
  }
}
