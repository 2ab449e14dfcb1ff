/**
 * Remote media: mxc://<other server>/<id> served from a local cache that is
 * filled on demand over federation.
 *
 * A miss asks the origin's authenticated federation endpoint
 * (/_matrix/federation/v1/media/download, a multipart/mixed answer whose
 * media part may be a Location to fetch instead) and falls back to the
 * deprecated /_matrix/media/v3 route (allow_remote=false, unsigned) when the
 * origin does not know the new one, as the server-server spec requires.
 * Bytes stream into the content-addressed store under max_upload_size;
 * only then is the remote_media row written, so a failed or oversized
 * fetch leaves nothing behind. Concurrent requests for the same media (or
 * the same thumbnail) share one fetch.
 *
 * Thumbnails are fetched from the origin at the requested size and cached
 * under the requested parameters; when the origin cannot make one, it is
 * made here from the cached original.
 *
 * Errors follow the spec and Synapse: origin says not found -> 404
 * M_NOT_FOUND; not yet uploaded -> 504 M_NOT_YET_UPLOADED; too big -> 502
 * M_TOO_LARGE; unreachable or a malformed answer -> 502 M_UNKNOWN; a server
 * the federation policy refuses -> 403 M_FORBIDDEN.
 */
import { Readable } from 'node:stream';
import type { Selectable } from 'kysely';
import { FederationRequestError, type FederationRequest, type StreamResponse } from '../federation/client.js';
import { MatrixError } from '../server/errors.js';
import type { Context } from '../server/services.js';
import type { Database } from '../storage/schema.js';
import { baseType } from './headers.js';
import { dispositionFilename, readFederationMedia } from './multipart.js';
import { ipPolicy, safeFetch, SafeFetchError, type IpPolicy } from './safe-fetch.js';
import {
  ACCESS_WRITE_INTERVAL_MS, DEFAULT_WAIT_MS, MAX_THUMBNAIL_SOURCE_BYTES, MAX_WAIT_MS, cleanContentType, cleanFilename, mediaNotFound,
  type MediaContent, type MediaService,
} from './service.js';
import { THUMBNAILABLE, chooseSize, imageInfo, makeThumbnail, type ThumbnailMethod } from './thumbnails.js';

/** Time for the transfer itself, on top of the time the origin may wait for a pending upload. */
export const REMOTE_FETCH_TIMEOUT_MS = 60_000;

/** The part of the federation client this module uses (tests pass a fake). */
export interface MediaFederationClient {
  requestStream(destination: string, req: FederationRequest): Promise<StreamResponse>;
}

export interface FetchedLocation {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** GET a URL from a Location part; the default goes through safeFetch (tests replace it). */
export type LocationFetcher = (url: string, maxBytes: number, timeoutMs: number) => Promise<FetchedLocation>;

export interface RemoteRequestOptions {
  /** How long the origin may wait for a pending upload (the client's timeout_ms). */
  timeoutMs?: number;
  /** false: serve only what is cached, never ask the origin. */
  allowRemote?: boolean;
}

type RemoteRow = Selectable<Database['remote_media']>;

/** What an origin answered, before it is stored. */
interface FetchedMedia {
  contentType: string | null;
  filename: string | null;
  body: Readable;
}

// A DNS name, IPv4 literal or bracketed IPv6 literal, with an optional port (spec: server names).
const SERVER_NAME = /^(?:[A-Za-z0-9.-]{1,255}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;
// Spec: media ids are [A-Za-z0-9_-]; anything else could smuggle path segments.
const MEDIA_ID = /^[A-Za-z0-9_-]{1,255}$/;

const enc = encodeURIComponent;

const cannotThumbnail = () => new MatrixError('M_UNKNOWN', 400, 'Cannot generate thumbnails for the requested content');
const remoteTooLarge = (what = 'Remote content is too large to serve') => new MatrixError('M_TOO_LARGE', 502, what);
const fetchFailed = () => new MatrixError('M_UNKNOWN', 502, 'Failed to fetch remote media');

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === name) return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

/** Did the origin say it does not know the federation media route (so the legacy one is worth a try)? */
function isUnrecognizedRoute(err: unknown): boolean {
  if (!(err instanceof FederationRequestError)) return false;
  if (err.status !== 404 && err.status !== 400 && err.status !== 405) return false;
  // No errcode: a server or proxy with no such route at all. Any other errcode (400 M_UNKNOWN
  // "cannot thumbnail", 404 M_NOT_FOUND) is the new route's real answer.
  return err.errcode === 'M_UNRECOGNIZED' || err.errcode === undefined;
}

/** The Matrix error a client gets for a failed fetch. */
function clientError(err: unknown): MatrixError {
  if (err instanceof MatrixError) {
    // The store refuses oversized bytes with 413; for remote content the spec says 502.
    return err.errcode === 'M_TOO_LARGE' ? remoteTooLarge() : err;
  }
  if (err instanceof FederationRequestError) {
    if (err.status === 404) return mediaNotFound();
    if (err.status === 504 && err.errcode === 'M_NOT_YET_UPLOADED') {
      return new MatrixError('M_NOT_YET_UPLOADED', 504, 'Media has not been uploaded yet');
    }
    if (err.errcode === 'M_TOO_LARGE') return remoteTooLarge();
  }
  if (err instanceof SafeFetchError && err.kind === 'too_large') return remoteTooLarge();
  return fetchFailed();
}

function thumbnailName(contentType: string): string {
  return `thumbnail.${contentType.split('/')[1] ?? 'bin'}`;
}

export class RemoteMediaService {
  /** Fetches in progress (originals and thumbnails), so concurrent requests share one. */
  private inflight = new Map<string, Promise<MediaContent>>();
  private ipPolicyCache: IpPolicy | undefined;

  constructor(
    private readonly ctx: Context,
    /** The store and the gate that keeps a purge from deleting bytes between storing them and writing their row. */
    private readonly media: Pick<MediaService, 'store' | 'gate'>,
    private readonly deps: { client?: MediaFederationClient; fetchLocation?: LocationFetcher } = {},
  ) {}

  private get db() {
    return this.ctx.storage.db;
  }

  private get client(): MediaFederationClient {
    // Looked up on use, so whatever client the context holds at the time is the one used.
    return this.deps.client ?? this.ctx.federation.client;
  }

  private get store() {
    return this.media.store;
  }

  private get maxBytes(): number {
    return this.ctx.config.max_upload_size;
  }

  /** Refuse servers the policy refuses (403, as Synapse does) and names or ids that are not well-formed (404). */
  private checkTarget(origin: string, mediaId: string): void {
    if (!SERVER_NAME.test(origin) || !MEDIA_ID.test(mediaId)) throw mediaNotFound();
    this.ctx.federation.policy.check(origin);
  }

  private shared(key: string, job: () => Promise<MediaContent>): Promise<MediaContent> {
    let p = this.inflight.get(key);
    if (!p) {
      p = job().finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private waitMs(timeoutMs: number | undefined): number {
    return Math.max(0, Math.min(timeoutMs ?? DEFAULT_WAIT_MS, MAX_WAIT_MS));
  }

  private async row(origin: string, mediaId: string): Promise<RemoteRow | undefined> {
    return this.db.selectFrom('remote_media').selectAll()
      .where('origin', '=', origin).where('media_id', '=', mediaId)
      .executeTakeFirst();
  }

  /** Record an access for retention; throttled by the stored time itself, so no memory is needed. */
  private async touch(row: RemoteRow): Promise<void> {
    const now = Date.now();
    if (now - Number(row.last_access_ts) < ACCESS_WRITE_INTERVAL_MS) return;
    await this.db.updateTable('remote_media').set({ last_access_ts: now })
      .where('origin', '=', row.origin).where('media_id', '=', row.media_id)
      .execute();
  }

  /** The cached original, or undefined on a miss; 404 when it is quarantined. */
  private async cached(origin: string, mediaId: string): Promise<MediaContent | undefined> {
    const row = await this.row(origin, mediaId);
    if (!row) return undefined;
    if (row.quarantined_by) throw mediaNotFound();
    // The row outlived its bytes (a purge in progress): fetch again.
    if (!(await this.store.has(row.sha256))) return undefined;
    await this.touch(row);
    return { sha256: row.sha256, size: Number(row.size), contentType: row.content_type, filename: row.upload_name };
  }

  /** The content of mxc://origin/mediaId: from the cache, else fetched from the origin and cached. */
  async download(origin: string, mediaId: string, opts: RemoteRequestOptions = {}): Promise<MediaContent> {
    this.checkTarget(origin, mediaId);
    const hit = await this.cached(origin, mediaId);
    if (hit) return hit;
    if (opts.allowRemote === false) throw mediaNotFound();
    const wait = this.waitMs(opts.timeoutMs);
    return this.shared(`download ${origin}/${mediaId}`, () => this.fetchOriginal(origin, mediaId, wait));
  }

  private async fetchOriginal(origin: string, mediaId: string, waitMs: number): Promise<MediaContent> {
    try {
      const fetched = await this.fetchMedia(origin, waitMs, `/_matrix/federation/v1/media/download/${enc(mediaId)}`,
        `/_matrix/media/v3/download/${enc(origin)}/${enc(mediaId)}`, { timeout_ms: String(waitMs) });
      return await this.media.gate.write(async () => {
        const stored = await this.store.put(fetched.body, this.maxBytes);
        const now = Date.now();
        const values = {
          content_type: fetched.contentType, upload_name: fetched.filename, size: stored.size, sha256: stored.sha256,
          fetched_ts: now, last_access_ts: now,
        };
        await this.db.insertInto('remote_media').values({ origin, media_id: mediaId, quarantined_by: null, ...values })
          .onConflict((oc) => oc.columns(['origin', 'media_id']).doUpdateSet(values))
          .execute();
        return { sha256: stored.sha256, size: stored.size, contentType: fetched.contentType, filename: fetched.filename };
      });
    } catch (err) {
      const e = clientError(err);
      this.ctx.log.warn({ origin, mediaId, status: e.status, reason: (err as Error).message }, 'fetching remote media failed');
      throw e;
    }
  }

  /**
   * Ask the origin's federation media route, falling back to the legacy one;
   * returns the media part's type, name and streaming body (not yet stored).
   */
  private async fetchMedia(
    origin: string, waitMs: number, federationPath: string, legacyPath: string, query: Record<string, string>,
  ): Promise<FetchedMedia> {
    const timeoutMs = waitMs + REMOTE_FETCH_TIMEOUT_MS;
    // No maxBytes for the client: the store enforces max_upload_size on the media bytes exactly
    // (so oversize is 502 M_TOO_LARGE), and the multipart parser bounds everything else.
    let res: StreamResponse;
    try {
      res = await this.client.requestStream(origin, {
        method: 'GET', path: federationPath, query, timeoutMs,
      });
    } catch (err) {
      if (!isUnrecognizedRoute(err)) throw err;
      const legacy = await this.client.requestStream(origin, {
        method: 'GET', path: legacyPath, query: { ...query, allow_remote: 'false' }, signed: false, timeoutMs,
      });
      return this.plainMedia(legacy);
    }
    const parts = await readFederationMedia(res.body, header(res.headers, 'content-type'));
    if (parts.location !== undefined) return this.followLocation(parts.location, timeoutMs);
    return {
      contentType: cleanContentType(parts.headers['content-type']),
      filename: cleanFilename(dispositionFilename(parts.headers['content-disposition'])),
      body: parts.body!,
    };
  }

  private plainMedia(res: StreamResponse): FetchedMedia {
    const declared = Number(header(res.headers, 'content-length'));
    if (Number.isFinite(declared) && declared > this.maxBytes) {
      res.body.destroy();
      throw remoteTooLarge();
    }
    return {
      contentType: cleanContentType(header(res.headers, 'content-type')),
      filename: cleanFilename(dispositionFilename(header(res.headers, 'content-disposition'))),
      body: res.body,
    };
  }

  /** A Location part: a plain GET, through the same address checks as URL previews (the origin picks the URL). */
  private async followLocation(url: string, timeoutMs: number): Promise<FetchedMedia> {
    const fetch = this.deps.fetchLocation ?? ((u, maxBytes, ms) => {
      this.ipPolicyCache ??= ipPolicy(this.ctx.config.url_preview_ip_blocklist, this.ctx.config.url_preview_ip_allowlist);
      return safeFetch(u, { ...this.ipPolicyCache, maxBytes, timeoutMs: ms });
    });
    const res = await fetch(url, this.maxBytes, timeoutMs);
    if (res.status !== 200) throw new Error(`Location answered ${res.status}`);
    return {
      contentType: cleanContentType(header(res.headers, 'content-type')),
      filename: cleanFilename(dispositionFilename(header(res.headers, 'content-disposition'))),
      body: Readable.from([res.body]),
    };
  }

  // ---- thumbnails

  /**
   * A thumbnail of remote media for these exact request parameters: cached,
   * else fetched from the origin, else made here from the original.
   */
  async thumbnail(
    origin: string, mediaId: string, width: number, height: number, method: ThumbnailMethod, animated: boolean,
    opts: RemoteRequestOptions = {},
  ): Promise<MediaContent> {
    this.checkTarget(origin, mediaId);
    const original = await this.row(origin, mediaId);
    if (original?.quarantined_by) throw mediaNotFound();
    const hit = await this.findThumbnail(origin, mediaId, width, height, method, animated);
    if (hit) {
      if (original) await this.touch(original);
      return hit;
    }
    const key = `thumbnail ${origin}/${mediaId}/${width}x${height}/${method}/${animated ? 1 : 0}`;
    return this.shared(key, async () => {
      if (opts.allowRemote !== false) {
        try {
          return await this.fetchThumbnail(origin, mediaId, width, height, method, animated, this.waitMs(opts.timeoutMs));
        } catch (err) {
          const e = clientError(err);
          // The origin has no such media, or it is not there yet: making one here cannot help.
          if (e.errcode === 'M_NOT_FOUND' || e.errcode === 'M_NOT_YET_UPLOADED') throw e;
          // Unreachable, and no original cached to work from: asking again for the original would fail too.
          if (err instanceof FederationRequestError && err.status === undefined && !original) throw e;
          this.ctx.log.debug({ origin, mediaId, reason: (err as Error).message }, 'origin gave no thumbnail; making one locally');
        }
      }
      const content = await this.download(origin, mediaId, opts);
      return this.generate(origin, mediaId, content, width, height, method, animated);
    });
  }

  private async findThumbnail(
    origin: string, mediaId: string, width: number, height: number, method: string, animated: boolean,
  ): Promise<MediaContent | undefined> {
    const t = await this.db.selectFrom('remote_media_thumbnails').selectAll()
      .where('origin', '=', origin).where('media_id', '=', mediaId)
      .where('width', '=', width).where('height', '=', height)
      .where('method', '=', method).where('animated', '=', animated ? 1 : 0)
      .executeTakeFirst();
    if (!t || !(await this.store.has(t.sha256))) return undefined;
    return { sha256: t.sha256, size: Number(t.size), contentType: t.content_type, filename: thumbnailName(t.content_type) };
  }

  private async saveThumbnail(
    origin: string, mediaId: string, width: number, height: number, method: string, animated: boolean,
    contentType: string, stored: { sha256: string; size: number },
  ): Promise<MediaContent> {
    const values = { content_type: contentType, size: stored.size, sha256: stored.sha256, created_ts: Date.now() };
    await this.db.insertInto('remote_media_thumbnails')
      .values({ origin, media_id: mediaId, width, height, method, animated: animated ? 1 : 0, ...values })
      .onConflict((oc) => oc.columns(['origin', 'media_id', 'width', 'height', 'method', 'animated']).doUpdateSet(values))
      .execute();
    return { sha256: stored.sha256, size: stored.size, contentType, filename: thumbnailName(contentType) };
  }

  private async fetchThumbnail(
    origin: string, mediaId: string, width: number, height: number, method: ThumbnailMethod, animated: boolean, waitMs: number,
  ): Promise<MediaContent> {
    const query = { width: String(width), height: String(height), method, animated: String(animated), timeout_ms: String(waitMs) };
    const fetched = await this.fetchMedia(origin, waitMs, `/_matrix/federation/v1/media/thumbnail/${enc(mediaId)}`,
      `/_matrix/media/v3/thumbnail/${enc(origin)}/${enc(mediaId)}`, query);
    const type = baseType(fetched.contentType);
    // Only an image we could have made ourselves is served as a thumbnail.
    if (!THUMBNAILABLE.has(type)) {
      fetched.body.destroy();
      throw new Error(`origin sent a thumbnail of type ${type || 'none'}`);
    }
    return this.media.gate.write(async () => {
      const stored = await this.store.put(fetched.body, this.maxBytes);
      return this.saveThumbnail(origin, mediaId, width, height, method, animated, fetched.contentType!, stored);
    });
  }

  /** Make a thumbnail from the cached original, as the local media service does. */
  private async generate(
    origin: string, mediaId: string, original: MediaContent, width: number, height: number, method: ThumbnailMethod, animated: boolean,
  ): Promise<MediaContent> {
    const type = baseType(original.contentType);
    if (!THUMBNAILABLE.has(type)) throw cannotThumbnail();
    if (original.size > MAX_THUMBNAIL_SOURCE_BYTES) throw remoteTooLarge('Remote content is too large to thumbnail');
    const size = chooseSize(width, height, method, this.ctx.config.dynamic_thumbnails);
    if (!size) return original;
    const data = await this.store.read(original.sha256);
    const info = await imageInfo(data).catch(() => {
      throw cannotThumbnail();
    });
    // Never upscale: an original that already fits is its own thumbnail.
    if (info.width <= size.width && info.height <= size.height) return original;
    const thumb = await makeThumbnail(data, type, size, animated && info.animated).catch(() => {
      throw cannotThumbnail();
    });
    return this.media.gate.write(async () => {
      const stored = await this.store.putBuffer(thumb.data);
      return this.saveThumbnail(origin, mediaId, width, height, method, animated, thumb.contentType, stored);
    });
  }
}
