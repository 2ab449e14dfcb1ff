import { statfs as fsStatfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import { MatrixError } from './errors.js';

/** The part of fs.statfs's answer the guard needs (numbers or bigints, as Node may return either). */
export interface FsStats {
  bavail: number | bigint;
  bsize: number | bigint;
}
export type StatFs = (path: string) => Promise<FsStats>;

export interface DiskGuardOptions {
  /** Directory whose filesystem is watched (data_dir: database, media, signing key). */
  dir: string;
  /** Below this many free bytes, writes are refused; 0 turns the guard off. */
  minFreeBytes: number;
  log: Logger;
  /** Where refused users are sent (the spec requires `admin_contact` with M_RESOURCE_LIMIT_EXCEEDED). */
  adminContact: () => string;
  statfs?: StatFs;
  /** How long one statfs answer is trusted; writes are frequent, statfs is a syscall. */
  cacheMs?: number;
  /** At most one "disk low" warning per this interval while the disk stays low. */
  warnEveryMs?: number;
  now?: () => number;
}

/**
 * Refuses writes while the disk holding data_dir is nearly full. SQLite and
 * the media store fail in awkward ways on ENOSPC (a half-written upload, a
 * WAL that cannot grow); refusing early with a clear error leaves the admin
 * room to act and the data intact.
 *
 * Status 507 Insufficient Storage rather than Synapse's 403: this is the
 * server's condition, not the client's lack of permission, so monitoring
 * that counts 5xx answers flags it, and clients that retry 5xx with backoff
 * succeed once space is freed. Clients that understand the errcode (the spec
 * says to prefer it to the status) show the resource-limit notice either way.
 */
export class DiskGuard {
  private readonly statfs: StatFs;
  private readonly cacheMs: number;
  private readonly warnEveryMs: number;
  private readonly now: () => number;
  private cached: { at: number; free: number | undefined } | undefined;
  private inflight: Promise<number | undefined> | undefined;
  private lastWarnAt = -Infinity;
  private statFailed = false;

  constructor(private readonly opts: DiskGuardOptions) {
    this.statfs = opts.statfs ?? fsStatfs;
    this.cacheMs = opts.cacheMs ?? 5_000;
    this.warnEveryMs = opts.warnEveryMs ?? 60_000;
    this.now = opts.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.opts.minFreeBytes > 0;
  }

  /** The free bytes last measured, for metrics; undefined before the first measurement or when statfs fails. */
  get lastFreeBytes(): number | undefined {
    return this.cached?.free;
  }

  /** Free bytes available to this process on data_dir's filesystem (cached for cacheMs); undefined if unknown. */
  async freeBytes(): Promise<number | undefined> {
    const c = this.cached;
    if (c && this.now() - c.at < this.cacheMs) return c.free;
    return (this.inflight ??= this.measure().finally(() => (this.inflight = undefined)));
  }

  private async measure(): Promise<number | undefined> {
    let free: number | undefined;
    try {
      const s = await this.statfs(this.opts.dir);
      free = Number(s.bavail) * Number(s.bsize);
      this.statFailed = false;
    } catch (err) {
      // Unknown free space must not take the server down: allow writes, say so once.
      if (!this.statFailed) this.opts.log.warn({ err, dir: this.opts.dir }, 'cannot measure free disk space; min_free_disk_bytes not enforced');
      this.statFailed = true;
    }
    this.cached = { at: this.now(), free };
    return free;
  }

  /** True when the disk is known to be below the threshold. Logs a warning at most once per warnEveryMs. */
  async isLow(): Promise<boolean> {
    if (!this.enabled) return false;
    const free = await this.freeBytes();
    if (free === undefined || free >= this.opts.minFreeBytes) return false;
    const t = this.now();
    if (t - this.lastWarnAt >= this.warnEveryMs) {
      this.lastWarnAt = t;
      this.opts.log.warn({ dir: this.opts.dir, freeBytes: free, minFreeBytes: this.opts.minFreeBytes }, 'disk space low: refusing uploads and other writes');
    }
    return true;
  }

  /** Throw 507 M_RESOURCE_LIMIT_EXCEEDED when the disk is low. */
  async check(): Promise<void> {
    if (await this.isLow()) {
      throw new MatrixError('M_RESOURCE_LIMIT_EXCEEDED', 507, 'The server is low on disk space; try again later or contact its administrator.', {
        admin_contact: this.opts.adminContact(),
      });
    }
  }
}
