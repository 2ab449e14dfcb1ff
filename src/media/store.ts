/**
 * Where media bytes live. Content is addressed by its SHA-256, so identical
 * files are stored once; which media ids point at which content is kept in
 * the database (media, media_thumbnails), not here.
 *
 * The local implementation writes each upload to a temporary file while
 * hashing and counting it, flushes it, then renames it into place: a failed
 * or oversized upload leaves nothing behind, and a file under its hash name
 * is always complete.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, unlink, readdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tooLarge } from '../server/errors.js';

export interface StoredContent {
  /** Lowercase hex SHA-256 of the content: its address in the store. */
  sha256: string;
  size: number;
  /** False when identical content was already stored (nothing new was written). */
  created: boolean;
}

export interface MediaStore {
  /** Store a stream; throws M_TOO_LARGE (and stores nothing) once it exceeds maxBytes. */
  put(source: Readable, maxBytes: number): Promise<StoredContent>;
  putBuffer(data: Buffer): Promise<StoredContent>;
  open(sha256: string): Readable;
  read(sha256: string): Promise<Buffer>;
  has(sha256: string): Promise<boolean>;
  delete(sha256: string): Promise<void>;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Write `source` to the file `tmp` while hashing and counting it; past
 * `maxBytes` it stops with M_TOO_LARGE. On any failure the file is removed.
 */
export async function spoolHashed(source: Readable, maxBytes: number, tmp: string, opts: { flush?: boolean } = {}): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > maxBytes) return cb(tooLarge(`Upload is larger than ${maxBytes} bytes`));
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(source, meter, createWriteStream(tmp, { flush: opts.flush ?? false }));
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  return { sha256: hash.digest('hex'), size };
}

export class LocalMediaStore implements MediaStore {
  private readonly tmpDir: string;
  private ready: Promise<void> | undefined;

  constructor(private readonly root: string) {
    this.tmpDir = path.join(root, 'tmp');
  }

  /** <root>/ab/cd/<sha256>: two levels of fan-out keep directories small. */
  pathOf(sha256: string): string {
    if (!HEX64.test(sha256)) throw new Error(`bad content hash ${sha256}`);
    return path.join(this.root, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  private init(): Promise<void> {
    // Leftovers of a crash mid-upload are incomplete by definition.
    return (this.ready ??= mkdir(this.tmpDir, { recursive: true })
      .then(() => readdir(this.tmpDir))
      .then((names) => Promise.all(names.map((n) => rm(path.join(this.tmpDir, n), { force: true }))))
      .then(() => undefined));
  }

  async put(source: Readable, maxBytes: number): Promise<StoredContent> {
    await this.init();
    const tmp = path.join(this.tmpDir, randomBytes(12).toString('hex'));
    const { sha256, size } = await spoolHashed(source, maxBytes, tmp, { flush: true });
    return this.commit(tmp, sha256, size);
  }

  async putBuffer(data: Buffer): Promise<StoredContent> {
    return this.put(Readable.from([data]), Infinity);
  }

  private async commit(tmp: string, sha256: string, size: number): Promise<StoredContent> {
    const dest = this.pathOf(sha256);
    if (await this.has(sha256)) {
      await unlink(tmp).catch(() => {});
      return { sha256, size, created: false };
    }
    await mkdir(path.dirname(dest), { recursive: true });
    await rename(tmp, dest);
    return { sha256, size, created: true };
  }

  open(sha256: string): Readable {
    return createReadStream(this.pathOf(sha256));
  }

  read(sha256: string): Promise<Buffer> {
    return readFile(this.pathOf(sha256));
  }

  async has(sha256: string): Promise<boolean> {
    try {
      return (await stat(this.pathOf(sha256))).isFile();
    } catch {
      return false;
    }
  }

  async delete(sha256: string): Promise<void> {
    await rm(this.pathOf(sha256), { force: true });
  }
}
