/**
 * The content repository for local media: uploads (direct and the
 * create-then-upload flow), quotas, downloads that wait for pending
 * uploads, and thumbnails generated once and kept. Remote media (fetched
 * over federation and cached) is handled by remote.ts.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { sql, type Selectable } from 'kysely';
import { MatrixError, forbidden } from '../server/errors.js';
import { Lru } from '../server/lru.js';
import type { Context } from '../server/services.js';
import type { Database } from '../storage/schema.js';
import type { MediaStore } from './store.js';
import { createMediaStore } from './store-factory.js';
import { baseType } from './headers.js';
import { RemoteMediaService } from './remote.js';
import { THUMBNAILABLE, chooseSize, imageInfo, makeThumbnail, type ThumbnailMethod } from './thumbnails.js';

/** How long an id from POST /create waits for its content (the spec's recommended 24 hours). */
export const UNUSED_EXPIRY_MS = 24 * 60 * 60 * 1000;
/** Created-but-not-uploaded ids one user may hold at once. */
export const MAX_PENDING_UPLOADS = 50;
/** Default and ceiling of the download's timeout_ms (waiting for a pending upload). */
export const DEFAULT_WAIT_MS = 20_000;
export const MAX_WAIT_MS = 60_000;
/** Originals bigger than this are not decoded for thumbnails. */
export const MAX_THUMBNAIL_SOURCE_BYTES = 64 * 1024 * 1024;
/** A media id's last_access_ts is written at most this often: retention counts in days, not seconds. */
export const ACCESS_WRITE_INTERVAL_MS = 60 * 60 * 1000;

export interface UploadInput {
  body: Readable;
  contentType: string | undefined;
  filename: string | undefined;
  /** The request's Content-Length, when it had one: lets an oversized upload fail before any byte is read. */
  contentLength: number | undefined;
}

/** What a download or thumbnail response serves. */
export interface MediaContent {
  sha256: string;
  size: number;
  contentType: string | null;
  filename: string | null;
}

type MediaRow = Selectable<Database['media']>;

export function mediaNotFound(): MatrixError {
  return new MatrixError('M_NOT_FOUND', 404, 'Media not found');
}

/** Keep only a printable, header-safe content type. */
export function cleanContentType(ct: string | undefined): string | null {
  if (!ct) return null;
  const t = ct.trim();
  return t.length <= 255 && /^[\x20-\x7e]+$/.test(t) && /^[\w.+-]+\/[\w.+-]+/.test(t) ? t : null;
}

export function cleanFilename(name: string | undefined): string | null {
  if (!name) return null;
  // No path separators or control characters; bounded length.
  // eslint-disable-next-line no-control-regex
  const n = name.replace(/[\x00-\x1f\x7f/\\]/g, '_').slice(0, 255);
  return n || null;
}

/**
 * Writers of content (bytes into the store, then the row that references
 * them) hold this gate shared; deleting unreferenced bytes holds it alone.
 * Without it, an upload whose bytes the store already had (same sha256)
 * could lose them between the store finding the file and its row being
 * written. Deleting waits only briefly for writers (a slow upload must not
 * stall everyone else's behind it) and otherwise gives up, to try again later.
 */
export class ContentGate {
  private writers = 0;
  private deleting: Promise<void> | undefined;
  private idle: Array<() => void> = [];

  async write<T>(fn: () => Promise<T>): Promise<T> {
    while (this.deleting) await this.deleting;
    this.writers++;
    try {
      return await fn();
    } finally {
      if (--this.writers === 0) for (const f of this.idle.splice(0)) f();
    }
  }

  /** Run `fn` with no writer active, waiting up to `waitMs` for one; undefined when they did not finish in time. */
  async alone<T>(fn: () => Promise<T>, waitMs: number): Promise<T | undefined> {
    while (this.deleting) await this.deleting;
    const deadline = Date.now() + waitMs;
    while (this.writers > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          this.idle = this.idle.filter((f) => f !== done);
          resolve();
        }, left);
        this.idle.push(done);
      });
      // Another deleter may have got in first.
      while (this.deleting) await this.deleting;
    }
    let release!: () => void;
    this.deleting = new Promise((r) => (release = r));
    try {
      return await fn();
    } finally {
      this.deleting = undefined;
      release();
    }
  }
}

export class MediaService {
  readonly store: MediaStore;
  /** Shared by everything that stores bytes and references them (see ContentGate). */
  readonly gate = new ContentGate();
  /** media id -> when its last_access_ts was last written by this process. */
  private accessWritten = new Lru<string, number>(10_000);
  /** media id -> callbacks waiting for its content. */
  private waiters = new Map<string, Set<() => void>>();
  /** Thumbnails being generated, so concurrent requests share one job. */
  private inflight = new Map<string, Promise<MediaContent>>();

  /** mxc://<other server>/... : fetched over federation and cached (remote.ts). */
  readonly remote: RemoteMediaService;

  constructor(private readonly ctx: Context, store?: MediaStore) {
    this.store = store ?? createMediaStore(ctx.config);
    this.remote = new RemoteMediaService(ctx, this);
  }

  private get db() {
    return this.ctx.storage.db;
  }

  private get serverName(): string {
    return this.ctx.config.server_name;
  }

  mxc(mediaId: string): string {
    return `mxc://${this.serverName}/${mediaId}`;
  }

  config(): Record<string, unknown> {
    return { 'm.upload.size': this.ctx.config.max_upload_size };
  }

  private checkDeclaredSize(contentLength: number | undefined): void {
    if (contentLength !== undefined && contentLength > this.ctx.config.max_upload_size) {
      throw new MatrixError('M_TOO_LARGE', 413, `Upload is larger than ${this.ctx.config.max_upload_size} bytes`);
    }
  }

  private async usedBytes(userId: string): Promise<number> {
    const row = await this.db.selectFrom('media')
      .select(sql<number>`COALESCE(SUM(size), 0)`.as('used'))
      .where('user_id', '=', userId)
      .executeTakeFirst();
    return Number(row?.used ?? 0);
  }

  private async checkQuota(userId: string, adding: number): Promise<void> {
    const quota = this.ctx.config.media_quota_per_user;
    if (quota <= 0) return;
    if ((await this.usedBytes(userId)) + adding > quota) throw forbidden('Media quota exceeded');
  }

  /** Stream the body into the store, enforcing the size limit and the quota; returns the stored content. */
  private async receive(userId: string, input: UploadInput) {
    this.checkDeclaredSize(input.contentLength);
    await this.checkQuota(userId, input.contentLength ?? 0);
    const stored = await this.store.put(input.body, this.ctx.config.max_upload_size);
    try {
      await this.checkQuota(userId, stored.size);
    } catch (err) {
      if (stored.created && !(await this.referenced(stored.sha256))) await this.store.delete(stored.sha256);
      throw err;
    }
    return stored;
  }

  /** Whether any row (local or remote media, or a thumbnail of either) still points at these bytes. */
  async referenced(sha256: string): Promise<boolean> {
    const db = this.db;
    const hit = await db.selectFrom('media').select(sql<number>`1`.as('x')).where('sha256', '=', sha256)
      .unionAll(db.selectFrom('media_thumbnails').select(sql<number>`1`.as('x')).where('sha256', '=', sha256))
      .unionAll(db.selectFrom('remote_media').select(sql<number>`1`.as('x')).where('sha256', '=', sha256))
      .unionAll(db.selectFrom('remote_media_thumbnails').select(sql<number>`1`.as('x')).where('sha256', '=', sha256))
      .limit(1)
      .executeTakeFirst();
    return !!hit;
  }

  /**
   * Delete the bytes of each sha256 that no row references any more. Returns
   * those deleted and those skipped because uploads were in flight for too
   * long (the caller tries them again later); referenced ones are in neither.
   */
  async deleteUnreferencedContent(sha256s: Iterable<string>, waitMs = 5_000): Promise<{ deleted: string[]; deferred: string[] }> {
    const list = [...new Set(sha256s)];
    const deleted: string[] = [];
    if (list.length === 0) return { deleted, deferred: [] };
    const done = await this.gate.alone(async () => {
      for (const sha of list) {
        // Checked again here, under the gate: an upload may have reused the bytes since the rows went.
        if (await this.referenced(sha)) continue;
        await this.store.delete(sha);
        deleted.push(sha);
      }
      return true;
    }, waitMs);
    return done ? { deleted, deferred: [] } : { deleted, deferred: list };
  }

  private newMediaId(): string {
    return randomBytes(18).toString('base64url');
  }

  /** POST /_matrix/media/v3/upload */
  async upload(userId: string, input: UploadInput): Promise<string> {
    await this.ctx.disk.check();
    return this.gate.write(async () => {
      const stored = await this.receive(userId, input);
      const mediaId = await this.insertUploaded(userId, stored, input.contentType, input.filename);
      return this.mxc(mediaId);
    });
  }

  private async insertUploaded(userId: string, stored: { size: number; sha256: string }, contentType: string | undefined, filename: string | undefined): Promise<string> {
    const mediaId = this.newMediaId();
    const now = Date.now();
    await this.db.insertInto('media').values({
      media_id: mediaId, user_id: userId, created_ts: now, unused_expires_at: null, uploaded_ts: now,
      content_type: cleanContentType(contentType), upload_name: cleanFilename(filename),
      size: stored.size, sha256: stored.sha256, last_access_ts: null, quarantined_by: null,
    }).execute();
    return mediaId;
  }

  /**
   * Store bytes the server fetched on a user's behalf (a URL preview's image)
   * as local media owned by that user, under max_upload_size and the quota.
   */
  async storeBuffer(userId: string, data: Buffer, contentType: string | undefined, filename?: string): Promise<string> {
    if (data.length > this.ctx.config.max_upload_size) throw new MatrixError('M_TOO_LARGE', 413, `Content is larger than ${this.ctx.config.max_upload_size} bytes`);
    await this.ctx.disk.check();
    return this.gate.write(async () => {
      await this.checkQuota(userId, data.length);
      const stored = await this.store.putBuffer(data);
      return this.mxc(await this.insertUploaded(userId, stored, contentType, filename));
    });
  }

  /** POST /_matrix/media/v1/create */
  async create(userId: string): Promise<{ content_uri: string; unused_expires_at: number }> {
    const now = Date.now();
    const pending = await this.db.selectFrom('media')
      .select(sql<number>`COUNT(*)`.as('n'))
      .where('user_id', '=', userId).where('uploaded_ts', 'is', null).where('unused_expires_at', '>', now)
      .executeTakeFirst();
    if (Number(pending?.n ?? 0) >= MAX_PENDING_UPLOADS) {
      throw new MatrixError('M_LIMIT_EXCEEDED', 429, 'Too many pending uploads', { retry_after_ms: 60_000 });
    }
    // Expired ids nobody uploaded to are of no further use.
    await this.db.deleteFrom('media').where('uploaded_ts', 'is', null).where('unused_expires_at', '<=', now).execute();
    const mediaId = this.newMediaId();
    const expires = now + UNUSED_EXPIRY_MS;
    await this.db.insertInto('media').values({
      media_id: mediaId, user_id: userId, created_ts: now, unused_expires_at: expires, uploaded_ts: null,
      content_type: null, upload_name: null, size: null, sha256: null, last_access_ts: null, quarantined_by: null,
    }).execute();
    return { content_uri: this.mxc(mediaId), unused_expires_at: expires };
  }

  /** The checks PUT /upload/{serverName}/{mediaId} makes before reading the body. */
  private async checkPutTarget(userId: string, serverName: string, mediaId: string): Promise<void> {
    if (serverName !== this.serverName) throw mediaNotFound();
    const row = await this.db.selectFrom('media').selectAll().where('media_id', '=', mediaId).executeTakeFirst();
    if (!row) throw mediaNotFound();
    if (row.uploaded_ts !== null) throw new MatrixError('M_CANNOT_OVERWRITE_MEDIA', 409, 'Media already uploaded');
    if (row.unused_expires_at !== null && Number(row.unused_expires_at) <= Date.now()) throw mediaNotFound();
    if (row.user_id !== userId) throw forbidden('Only the creator of this media id may upload to it');
  }

  /** PUT /_matrix/media/v3/upload/{serverName}/{mediaId} */
  async uploadTo(userId: string, serverName: string, mediaId: string, input: UploadInput): Promise<void> {
    await this.checkPutTarget(userId, serverName, mediaId);
    await this.ctx.disk.check();
    await this.gate.write(() => this.receiveInto(userId, mediaId, input));
    this.wake(mediaId);
  }

  private async receiveInto(userId: string, mediaId: string, input: UploadInput): Promise<void> {
    const stored = await this.receive(userId, input);
    const res = await this.db.updateTable('media')
      .set({
        uploaded_ts: Date.now(), content_type: cleanContentType(input.contentType), upload_name: cleanFilename(input.filename),
        size: stored.size, sha256: stored.sha256,
      })
      .where('media_id', '=', mediaId).where('user_id', '=', userId).where('uploaded_ts', 'is', null)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 0) {
      // Someone (a concurrent PUT) got there first.
      if (stored.created && !(await this.referenced(stored.sha256))) await this.store.delete(stored.sha256);
      throw new MatrixError('M_CANNOT_OVERWRITE_MEDIA', 409, 'Media already uploaded');
    }
  }

  private wake(mediaId: string): void {
    const set = this.waiters.get(mediaId);
    if (!set) return;
    this.waiters.delete(mediaId);
    for (const f of set) f();
  }

  private waitForUpload(mediaId: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(mediaId);
      if (!set) this.waiters.set(mediaId, (set = new Set()));
      const s = set;
      const done = () => {
        clearTimeout(timer);
        s.delete(done);
        if (s.size === 0 && this.waiters.get(mediaId) === s) this.waiters.delete(mediaId);
        resolve();
      };
      const timer = setTimeout(done, ms);
      s.add(done);
    });
  }

  /**
   * The uploaded row of a local media id, waiting up to `timeoutMs` for a
   * pending upload (then 504 M_NOT_YET_UPLOADED). Local only: download and
   * thumbnail send remote media to `remote`.
   */
  async getMedia(serverName: string, mediaId: string, timeoutMs = DEFAULT_WAIT_MS): Promise<MediaRow> {
    if (serverName !== this.serverName) throw mediaNotFound();
    const deadline = Date.now() + Math.max(0, Math.min(timeoutMs, MAX_WAIT_MS));
    for (;;) {
      const row = await this.db.selectFrom('media').selectAll().where('media_id', '=', mediaId).executeTakeFirst();
      // Quarantined media is gone for everyone, admins included.
      if (!row || row.quarantined_by !== null) throw mediaNotFound();
      if (row.uploaded_ts !== null && row.sha256) {
        this.touch(mediaId);
        return row;
      }
      if (row.unused_expires_at !== null && Number(row.unused_expires_at) <= Date.now()) throw mediaNotFound();
      const left = deadline - Date.now();
      if (left <= 0) throw new MatrixError('M_NOT_YET_UPLOADED', 504, 'Media has not been uploaded yet');
      // Woken by a local upload; the periodic re-check covers other processes.
      await this.waitForUpload(mediaId, Math.min(left, 1000));
    }
  }

  /** Record an access for retention, at most once per ACCESS_WRITE_INTERVAL_MS per media id and off the request path. */
  private touch(mediaId: string): void {
    const now = Date.now();
    const last = this.accessWritten.get(mediaId);
    if (last !== undefined && now - last < ACCESS_WRITE_INTERVAL_MS) return;
    this.accessWritten.set(mediaId, now);
    this.db.updateTable('media').set({ last_access_ts: now }).where('media_id', '=', mediaId).execute()
      .catch((err: unknown) => this.ctx.log.warn({ err, mediaId }, 'could not record media access'));
  }

  async download(serverName: string, mediaId: string, timeoutMs?: number, allowRemote = true): Promise<MediaContent> {
    if (serverName !== this.serverName) return this.remote.download(serverName, mediaId, { timeoutMs, allowRemote });
    const row = await this.getMedia(serverName, mediaId, timeoutMs);
    return { sha256: row.sha256!, size: Number(row.size), contentType: row.content_type, filename: row.upload_name };
  }

  /**
   * A thumbnail of at least width x height (see thumbnails.ts for the size
   * chosen), generated on first request and stored; the original when it is
   * no bigger than that size or no preset is big enough.
   */
  async thumbnail(
    serverName: string, mediaId: string, width: number, height: number, method: ThumbnailMethod, animated: boolean, timeoutMs?: number,
    allowRemote = true,
  ): Promise<MediaContent> {
    if (serverName !== this.serverName) {
      return this.remote.thumbnail(serverName, mediaId, width, height, method, animated, { timeoutMs, allowRemote });
    }
    const row = await this.getMedia(serverName, mediaId, timeoutMs);
    const original: MediaContent = { sha256: row.sha256!, size: Number(row.size), contentType: row.content_type, filename: row.upload_name };
    const type = baseType(row.content_type);
    if (!THUMBNAILABLE.has(type)) {
      throw new MatrixError('M_UNKNOWN', 400, 'Cannot generate thumbnails for the requested content');
    }
    if (original.size > MAX_THUMBNAIL_SOURCE_BYTES) throw new MatrixError('M_TOO_LARGE', 413, 'Content is too large to thumbnail');
    const size = chooseSize(width, height, method, this.ctx.config.dynamic_thumbnails);
    if (!size) return original;
    const key = `${mediaId}/${size.width}x${size.height}/${size.method}/${animated ? 1 : 0}`;
    const existing = await this.findThumbnail(mediaId, size.width, size.height, size.method, animated);
    if (existing) return { ...existing, filename: thumbnailName(existing.contentType ?? 'application/octet-stream') };
    let job = this.inflight.get(key);
    if (!job) {
      job = this.generate(row, original, size, animated).finally(() => this.inflight.delete(key));
      this.inflight.set(key, job);
    }
    return job;
  }

  private async findThumbnail(mediaId: string, width: number, height: number, method: string, animated: boolean): Promise<MediaContent | undefined> {
    const t = await this.db.selectFrom('media_thumbnails').selectAll()
      .where('media_id', '=', mediaId).where('width', '=', width).where('height', '=', height)
      .where('method', '=', method).where('animated', '=', animated ? 1 : 0)
      .executeTakeFirst();
    if (!t || !(await this.store.has(t.sha256))) return undefined;
    return { sha256: t.sha256, size: Number(t.size), contentType: t.content_type, filename: null };
  }

  private async generate(
    row: MediaRow, original: MediaContent, size: { width: number; height: number; method: ThumbnailMethod }, animated: boolean,
  ): Promise<MediaContent> {
    const type = baseType(row.content_type);
    const data = await this.store.read(original.sha256);
    let info;
    try {
      info = await imageInfo(data);
    } catch {
      throw new MatrixError('M_UNKNOWN', 400, 'Cannot generate thumbnails for the requested content');
    }
    // Never upscale: an original that already fits is its own thumbnail.
    if (info.width <= size.width && info.height <= size.height) return original;
    // An animated original asked for animated: keep the animation.
    const thumb = await makeThumbnail(data, type, size, animated && info.animated).catch(() => {
      throw new MatrixError('M_UNKNOWN', 400, 'Cannot generate thumbnails for the requested content');
    });
    const stored = await this.gate.write(async () => {
      const s = await this.store.putBuffer(thumb.data);
      await this.db.insertInto('media_thumbnails').values({
        media_id: row.media_id, width: size.width, height: size.height, method: size.method, animated: animated ? 1 : 0,
        content_type: thumb.contentType, size: s.size, sha256: s.sha256, created_ts: Date.now(),
      }).onConflict((oc) => oc.doNothing()).execute();
      return s;
    });
    return { sha256: stored.sha256, size: stored.size, contentType: thumb.contentType, filename: thumbnailName(thumb.contentType) };
  }

  open(content: MediaContent): Readable {
    return this.store.open(content.sha256);
  }
}

/** "thumbnail.png" style name for a thumbnail download. */
function thumbnailName(contentType: string): string {
  return `thumbnail.${contentType.split('/')[1] ?? 'bin'}`;
}
