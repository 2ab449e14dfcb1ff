/**
 * Media bytes in an S3-compatible bucket (AWS S3, MinIO, Garage, Backblaze
 * B2, ...), with the same content addressing as the local store: the object
 * key is <prefix><sha256[0:2]>/<sha256[2:4]>/<sha256>.
 *
 * An upload is spooled to a temporary file while it is hashed and counted,
 * so memory stays bounded, an oversized upload is refused before anything
 * reaches the bucket, and the PUT can carry a Content-Length (which S3
 * requires) and the SHA-256 as its signed payload hash (so the server checks
 * the bytes it received are the ones we hashed). Requests are signed with
 * aws4fetch, loaded only when the first request is made.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { AwsClient } from 'aws4fetch';
import { notFound } from '../server/errors.js';
import { spoolHashed, type MediaStore, type StoredContent } from './store.js';

export interface S3StoreOptions {
  /** e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000 */
  endpoint: string;
  region: string;
  bucket: string;
  /** Prepended to every key as is, e.g. "ranvier/". */
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** <endpoint>/<bucket>/<key> rather than <bucket>.<endpoint host>/<key>. */
  forcePathStyle: boolean;
  /** Local directory for uploads being spooled; emptied on first use. */
  tmpDir: string;
}

/** A non-2xx answer from the S3 server. The message never carries credentials. */
export class S3RequestError extends Error {
  constructor(
    readonly method: string,
    readonly key: string,
    readonly status: number,
    /** S3's error code (NoSuchKey, SignatureDoesNotMatch, ...), or '' when the answer had none (HEAD). */
    readonly code: string,
    detail: string,
  ) {
    super(`S3 ${method} ${key} failed: ${status}${code ? ` ${code}` : ''}${detail ? `: ${detail}` : ''}`);
    this.name = 'S3RequestError';
  }
}

const HEX64 = /^[0-9a-f]{64}$/;
/** Attempts for one request: S3 answers 500/503 (SlowDown) now and then and expects a retry. */
const ATTEMPTS = 3;
const RETRY_BASE_MS = 100;

type Body = Buffer | (() => Readable);

interface SendOptions {
  body?: Body;
  headers?: Record<string, string>;
}

function xmlField(xml: string, name: string): string {
  const m = new RegExp(`<${name}>([^<]{0,300})</${name}>`).exec(xml);
  return m ? m[1].trim() : '';
}

function retryable(status: number): boolean {
  return status >= 500 || status === 429;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class S3MediaStore implements MediaStore {
  private client: Promise<AwsClient> | undefined;
  private ready: Promise<void> | undefined;

  constructor(private readonly opts: S3StoreOptions) {
    if (!opts.bucket) throw new Error('S3 media store: a bucket is required');
  }

  keyOf(sha256: string): string {
    if (!HEX64.test(sha256)) throw new Error(`bad content hash ${sha256}`);
    return `${this.opts.prefix}${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`;
  }

  urlOf(key: string): string {
    const base = new URL(this.opts.endpoint);
    const basePath = base.pathname.replace(/\/+$/, '');
    const encodedKey = key.split('/').map(encodeURIComponent).join('/');
    if (this.opts.forcePathStyle) {
      base.pathname = `${basePath}/${encodeURIComponent(this.opts.bucket)}/${encodedKey}`;
    } else {
      base.hostname = `${this.opts.bucket}.${base.hostname}`;
      base.pathname = `${basePath}/${encodedKey}`;
    }
    return base.toString();
  }

  private aws(): Promise<AwsClient> {
    return (this.client ??= import('aws4fetch').then(
      ({ AwsClient }) =>
        new AwsClient({
          accessKeyId: this.opts.accessKeyId,
          secretAccessKey: this.opts.secretAccessKey,
          service: 's3',
          region: this.opts.region,
          // Retries are ours (send), since a streamed body cannot be replayed by the client.
          retries: 0,
        }),
    ));
  }

  private init(): Promise<void> {
    // Leftovers of a crash mid-upload are incomplete by definition.
    return (this.ready ??= mkdir(this.opts.tmpDir, { recursive: true })
      .then(() => readdir(this.opts.tmpDir))
      .then((names) => Promise.all(names.map((n) => rm(path.join(this.opts.tmpDir, n), { force: true }))))
      .then(() => undefined));
  }

  /**
   * One signed request, retried on 5xx/429 and network failures (every
   * request here is idempotent: keys are content hashes). Resolves with any
   * response the caller must judge itself (2xx, 404, other 4xx).
   */
  private async send(method: string, key: string, options: SendOptions = {}): Promise<Response> {
    const client = await this.aws();
    const url = this.urlOf(key);
    for (let attempt = 1; ; attempt++) {
      let body: Buffer | WebReadableStream | undefined;
      if (Buffer.isBuffer(options.body)) body = options.body;
      else if (options.body) body = Readable.toWeb(options.body());
      let res: Response;
      try {
        // A stream body needs duplex 'half'; the signer passes it through to the Request.
        const request = await client.sign(url, { method, headers: options.headers, body: body as RequestInit['body'], duplex: 'half' } as RequestInit);
        res = await fetch(request);
      } catch (err) {
        if (attempt < ATTEMPTS) {
          await sleep(RETRY_BASE_MS * 2 ** attempt);
          continue;
        }
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        throw new Error(`S3 ${method} ${key} failed: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
      }
      if (retryable(res.status) && attempt < ATTEMPTS) {
        await res.body?.cancel();
        await sleep(RETRY_BASE_MS * 2 ** attempt);
        continue;
      }
      return res;
    }
  }

  /** Turn a non-2xx response into an S3RequestError, reading S3's XML error body if there is one. */
  private async failure(method: string, key: string, res: Response): Promise<S3RequestError> {
    const text = method === 'HEAD' ? '' : await res.text().catch(() => '');
    return new S3RequestError(method, key, res.status, xmlField(text, 'Code'), xmlField(text, 'Message'));
  }

  async put(source: Readable, maxBytes: number): Promise<StoredContent> {
    await this.init();
    const tmp = path.join(this.opts.tmpDir, randomBytes(12).toString('hex'));
    const { sha256, size } = await spoolHashed(source, maxBytes, tmp);
    try {
      return await this.upload(sha256, size, () => createReadStream(tmp));
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }

  async putBuffer(data: Buffer): Promise<StoredContent> {
    const sha256 = createHash('sha256').update(data).digest('hex');
    return this.upload(sha256, data.length, data);
  }

  private async upload(sha256: string, size: number, body: Body): Promise<StoredContent> {
    if (await this.has(sha256)) return { sha256, size, created: false };
    const key = this.keyOf(sha256);
    const res = await this.send('PUT', key, {
      body,
      headers: {
        'Content-Length': String(size),
        'Content-Type': 'application/octet-stream',
        // The content hash is the payload hash: signing it lets the server reject corrupted bodies.
        'X-Amz-Content-Sha256': sha256,
      },
    });
    if (!res.ok) throw await this.failure('PUT', key, res);
    await res.body?.cancel();
    return { sha256, size, created: true };
  }

  private async get(sha256: string): Promise<Response> {
    const key = this.keyOf(sha256);
    const res = await this.send('GET', key);
    if (res.ok && res.body) return res;
    if (res.status === 404) {
      await res.body?.cancel();
      throw notFound('Media content not found');
    }
    throw await this.failure('GET', key, res);
  }

  /** Streams the object; a missing object or an S3 failure is emitted as the stream's error (404: M_NOT_FOUND). */
  open(sha256: string): Readable {
    const key = this.keyOf(sha256);
    const out = new PassThrough();
    this.get(sha256).then(
      (res) => {
        const body = res.body as unknown as WebReadableStream<Uint8Array>;
        if (out.destroyed) {
          void body.cancel().catch(() => {});
          return;
        }
        // pipeline destroys both sides on failure: a reader going away cancels the GET.
        pipeline(Readable.fromWeb(body), out).catch((err: Error) => {
          if (!out.destroyed) out.destroy(new Error(`S3 GET ${key} failed while streaming: ${err.message}`));
        });
      },
      (err: Error) => out.destroy(err),
    );
    return out;
  }

  async read(sha256: string): Promise<Buffer> {
    const res = await this.get(sha256);
    return Buffer.from(await res.arrayBuffer());
  }

  async has(sha256: string): Promise<boolean> {
    const key = this.keyOf(sha256);
    const res = await this.send('HEAD', key);
    await res.body?.cancel();
    if (res.ok) return true;
    if (res.status === 404) return false;
    throw await this.failure('HEAD', key, res);
  }

  async delete(sha256: string): Promise<void> {
    const key = this.keyOf(sha256);
    const res = await this.send('DELETE', key);
    if (res.ok || res.status === 404) {
      await res.body?.cancel();
      return;
    }
    throw await this.failure('DELETE', key, res);
  }
}
