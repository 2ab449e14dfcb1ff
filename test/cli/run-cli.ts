/**
 * Run the `ranvier` CLI as a child process against a temporary data
 * directory, the way an operator would (RANVIER_* environment, no config
 * file), and read its database afterwards.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStorage, type Db } from '../../src/storage/db.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface CliResult { code: number; stdout: string; stderr: string }

export interface CliEnv {
  dataDir: string;
  run(...args: string[]): Promise<CliResult>;
  /** Open the database, run `fn`, close it again (so the CLI's next run is not blocked). */
  withDb<T>(fn: (db: Db) => Promise<T>): Promise<T>;
  cleanup(): Promise<void>;
}

export async function cliEnv(): Promise<CliEnv> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ranvier-cli-'));
  // The test's own RANVIER_* settings (config file, test database) must not leak in.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RANVIER_')));
  Object.assign(env, { RANVIER_DATA_DIR: dataDir, RANVIER_SERVER_NAME: 'example.org', RANVIER_LOG_LEVEL: 'silent' });
  return {
    dataDir,
    run: (...args) =>
      new Promise((resolve) => {
        // stdin closed (not a terminal): commands generate passwords instead of prompting.
        const child = execFile(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], { cwd: root, env, timeout: 30_000 }, (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
          resolve({ code, stdout, stderr });
        });
        child.stdin?.end();
      }),
    async withDb(fn) {
      const storage = await openStorage(path.join(dataDir, 'ranvier.db'));
      try {
        return await fn(storage.db);
      } finally {
        await storage.close();
      }
    },
    cleanup: () => rm(dataDir, { recursive: true, force: true }),
  };
}
