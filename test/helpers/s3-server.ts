/**
 * A real S3-compatible server for tests: @20minutes/s3rver (a maintained
 * fork of s3rver) in this process, on 127.0.0.1 and a free port, storing in
 * a temporary directory, with one bucket. Unlike s3rver 3.x, which accepts
 * any SigV4 signature from a known access key id, the fork recomputes SigV4
 * signatures and answers SignatureDoesNotMatch, so a test with a wrong
 * secret proves requests are really signed. It does not verify payload
 * hashes, multipart edge cases or AWS's consistency and permission models.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

/** The part of the (untyped, CommonJS) s3rver API used here. */
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
  store: {
    listObjects(bucket: string, options: Record<string, never>): Promise<{ objects: Array<{ key: string }> }>;
  };
}
type S3rverClass = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: Array<{ name: string }>;
}) => S3rverInstance;

export interface TestS3Server {
  /** e.g. http://127.0.0.1:43123 */
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Every key in the bucket, read from the server's own store (not through S3 requests). */
  objectKeys(): Promise<string[]>;
  close(): Promise<void>;
}

export async function startS3Server(bucket = 'ranvier-media'): Promise<TestS3Server> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'ranvier-s3-'));
  const S3rver = createRequire(import.meta.url)('@20minutes/s3rver') as S3rverClass;
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
  let addr: AddressInfo;
  try {
    addr = await server.run();
  } catch (err) {
    await rm(directory, { recursive: true, force: true });
    throw err;
  }
  let closed: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${addr.port}`,
    bucket,
    region: 'us-east-1',
    // The key pair s3rver always knows.
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    async objectKeys() {
      const { objects } = await server.store.listObjects(bucket, {});
      return objects.map((o) => o.key).sort();
    },
    close: () =>
      (closed ??= (async () => {
        try {
          const stopped = server.close();
          // fetch keeps connections alive; without this, close() would wait for them to time out.
          server.httpServer?.closeAllConnections();
          await stopped;
        } finally {
          await rm(directory, { recursive: true, force: true });
        }
      })()),
  };
}
