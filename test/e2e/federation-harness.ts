/**
 * Several Ranvier servers on loopback that federate with each other over
 * TLS: each gets a certificate for its name from one throwaway CA, a TLS
 * listener on a port chosen up front, and `federation_hosts` pointing every
 * server name at its port (so no DNS or well-known is involved).
 *
 * Each server's data directory (and PostgreSQL database) belongs to the
 * harness, not to the server, so a server can be stopped and started again
 * on the same data and ports.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../../src/config/config.js';
import { createTestCa, type TestCa } from '../helpers/tls.js';
import { adminQuery, startTestServer, testEngine, testPostgresAdminUrl, type TestServer } from './harness.js';
import { freePort } from './util.js';

export interface Federation {
  servers: TestServer[];
  ca: TestCa;
  /** Stop server `index`, keeping its data. */
  stop(index: number): Promise<void>;
  /** Start server `index` again on its data and ports (after stop). */
  start(index: number): Promise<TestServer>;
  close(): Promise<void>;
}

/**
 * Start one Ranvier per name. `extraHosts` maps names of other (fake) servers
 * to ports they will listen on, so the real servers can reach them too.
 */
export async function startFederation(
  names: string[],
  overrides: (name: string) => Partial<Config> = () => ({}),
  extraHosts: Record<string, number> = {},
): Promise<Federation> {
  const ca = await createTestCa();
  const ports = await Promise.all(names.map(() => freePort()));
  const clientPorts = await Promise.all(names.map(() => freePort()));
  const hosts = [...names.map((n, i) => `${n}=127.0.0.1:${ports[i]}`), ...Object.entries(extraHosts).map(([n, p]) => `${n}=127.0.0.1:${p}`)].join(',');
  const configs: Array<Partial<Config>> = [];
  const cleanups: Array<() => Promise<void>> = [() => ca.cleanup()];
  const servers: TestServer[] = [];
  const running = new Set<number>();

  const start = async (i: number) => {
    const server = await startTestServer(configs[i]);
    servers[i] = server;
    running.add(i);
    return server;
  };
  const stop = async (i: number) => {
    running.delete(i);
    await servers[i].close();
  };
  const close = async () => {
    for (const i of [...running]) await stop(i).catch(() => {});
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };

  try {
    for (const [i, name] of names.entries()) {
      const cert = await ca.issue([name]);
      const dataDir = await mkdtemp(path.join(os.tmpdir(), `ranvier-fed-${name}-`));
      cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
      let database: string | undefined;
      if (testEngine() === 'postgres') {
        const dbName = `ranvier_f_${randomBytes(6).toString('hex')}`;
        await adminQuery(`CREATE DATABASE ${dbName}`);
        cleanups.push(() => adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`));
        const u = new URL(testPostgresAdminUrl());
        u.pathname = '/' + dbName;
        database = u.toString();
      }
      configs.push({
        server_name: name,
        data_dir: dataDir,
        port: clientPorts[i],
        ...(database ? { database } : {}),
        federation_tls_port: ports[i],
        federation_tls_cert: cert.certFile,
        federation_tls_key: cert.keyFile,
        federation_ca_file: ca.certFile,
        federation_hosts: hosts,
        ...overrides(name),
      });
      await start(i);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { servers, ca, stop, start, close };
}
