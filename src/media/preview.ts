/**
 * URL previews: fetch a page through safeFetch, pull out its OpenGraph
 * properties (<meta property="og:*">), falling back to <title> and
 * <meta name="description">, and cache the answer in a bounded LRU keyed by
 * (url, ts rounded to the hour).
 *
 * The HTML parser is deliberately small and tolerant: it only looks for
 * <title> and <meta> tags after dropping comments, scripts and styles, and
 * never builds a tree.
 *
 * The page's image (og:image, else twitter:image) is fetched through the
 * same safeFetch, stored as local media owned by the user who asked, and
 * returned as Synapse does: og:image as the mxc:// URI, og:image:type,
 * og:image:width and og:image:height as measured, matrix:image:size in
 * bytes. A URL that is itself an image is previewed the same way. An image
 * that cannot be fetched or stored is left out; the preview still answers.
 */
import type { Config } from '../config/config.js';
import { Lru } from '../server/lru.js';
import { ipPolicy, safeFetch, type IpPolicy, type SafeFetchOptions, type SafeFetchResponse } from './safe-fetch.js';
import { baseType } from './headers.js';
import { imageInfo } from './thumbnails.js';

export type OpenGraph = Record<string, string | number>;

const CACHE_SIZE = 1000;
const CACHE_TTL_MS = 60 * 60 * 1000;
const TS_BUCKET_MS = 60 * 60 * 1000;
const MAX_KEYS = 50;
const MAX_VALUE_CHARS = 1000;
const MAX_DESCRIPTION_CHARS = 500;
/** OpenGraph tags only ever live in <head>; look at the first 1 MiB of decoded text at most. */
const MAX_SCAN_CHARS = 1024 * 1024;

const NAMED_ENTITIES: Record<string, string> = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', ndash: '\u2013', mdash: '\u2014',
  hellip: '\u2026', laquo: '\u00ab', raquo: '\u00bb', lsquo: '\u2018', rsquo: '\u2019', ldquo: '\u201c',
  rdquo: '\u201d', copy: '\u00a9', reg: '\u00ae', trade: '\u2122', middot: '\u00b7', bull: '\u2022',
};

export function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);?/gi, (m, e: string) => {
    if (e[0] === '#') {
      const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : m;
    }
    return NAMED_ENTITIES[e.toLowerCase()] ?? m;
  });
}

const clean = (s: string, max = MAX_VALUE_CHARS) => {
  const t = decodeEntities(s).replace(/\s+/g, ' ').trim();
  return t.length > max ? t.slice(0, max - 1) + '\u2026' : t;
};

/** Attributes of one tag's inner text (after the tag name). Names lower-cased. */
function parseAttributes(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?/g;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const name = m[1].toLowerCase();
    if (!(name in out)) out[name] = m[2] ?? m[3] ?? m[4] ?? '';
  }
  return out;
}

/** The charset a page declares in a <meta> tag, if any. */
function metaCharset(head: string): string | undefined {
  const m = /<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)/i.exec(head);
  return m?.[1];
}

/** Decode a body by the Content-Type charset, else a <meta charset>, else UTF-8. */
export function decodeHtml(body: Buffer, contentType: string | undefined): string {
  const fromHeader = /charset\s*=\s*["']?([\w.:-]+)/i.exec(contentType ?? '')?.[1];
  const label = fromHeader ?? metaCharset(body.subarray(0, 4096).toString('latin1'));
  const bytes = body.subarray(0, MAX_SCAN_CHARS * 4);
  try {
    return new TextDecoder(label ?? 'utf-8').decode(bytes);
  } catch {
    return new TextDecoder('utf-8').decode(bytes);
  }
}

/** The scanned start of a page without comments, scripts and styles, whose text could fake tags. */
function markupOnly(html: string): string {
  return html
    .slice(0, MAX_SCAN_CHARS)
    .replace(/<!--[\s\S]*?(?:-->|$)/g, '')
    .replace(/<(script|style|noscript|template)\b[^>]*>[\s\S]*?(?:<\/\1\s*>|$)/gi, '');
}

/** OpenGraph properties of an HTML document, with <title> and meta description as fallbacks. */
export function parseOpenGraph(html: string): OpenGraph {
  const doc = markupOnly(html);
  const og: OpenGraph = {};
  let count = 0;
  let description: string | undefined;
  const metaRe = /<meta\b([^>]*)>/gi;
  for (let m = metaRe.exec(doc); m; m = metaRe.exec(doc)) {
    const a = parseAttributes(m[1]);
    const content = a.content;
    if (content === undefined) continue;
    const prop = (a.property ?? a.name ?? '').toLowerCase();
    if (prop === 'description' && description === undefined) description = clean(content, MAX_DESCRIPTION_CHARS);
    if (!prop.startsWith('og:') || prop.length > 100 || prop in og || count >= MAX_KEYS) continue;
    const value = clean(content, prop === 'og:description' ? MAX_DESCRIPTION_CHARS : MAX_VALUE_CHARS);
    if (value === '') continue;
    og[prop] = value;
    count++;
  }
  if (og['og:title'] === undefined) {
    const t = /<title\b[^>]*>([\s\S]*?)<\/title\s*>/i.exec(doc);
    const title = t ? clean(t[1].replace(/<[^>]*>/g, '')) : '';
    if (title) og['og:title'] = title;
  }
  if (og['og:description'] === undefined && description) og['og:description'] = description;
  // The page's image properties describe its own URL; the preview's come from the copy we store (see imageUrlOf).
  for (const k of Object.keys(og)) if (k === 'og:image' || k.startsWith('og:image:')) delete og[k];
  return og;
}

/** The page's preview image as an absolute http(s) URL: og:image (or og:image:url), else twitter:image. */
export function imageUrlOf(html: string, pageUrl: string): string | undefined {
  const doc = markupOnly(html);
  const found: Record<string, string> = {};
  const metaRe = /<meta\b([^>]*)>/gi;
  for (let m = metaRe.exec(doc); m; m = metaRe.exec(doc)) {
    const a = parseAttributes(m[1]);
    const prop = (a.property ?? a.name ?? '').toLowerCase();
    if (a.content && !(prop in found) && ['og:image', 'og:image:url', 'og:image:secure_url', 'twitter:image', 'twitter:image:src'].includes(prop)) {
      found[prop] = decodeEntities(a.content).trim();
    }
  }
  const raw = found['og:image'] ?? found['og:image:url'] ?? found['og:image:secure_url'] ?? found['twitter:image'] ?? found['twitter:image:src'];
  if (!raw) return undefined;
  try {
    const u = new URL(raw, pageUrl);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.toString() : undefined;
  } catch {
    return undefined;
  }
}

/** Stores a preview image as local media of `userId`; returns its mxc:// URI. */
export type StoreImage = (userId: string, data: Buffer, contentType: string) => Promise<string>;

export interface PreviewOptions extends Omit<SafeFetchOptions, keyof IpPolicy> {
  policy: IpPolicy;
  /** Without it, previews carry no image. */
  storeImage?: StoreImage;
  /** The largest image stored (max_upload_size); defaults to maxBytes. */
  maxImageBytes?: number;
}

export class PreviewService {
  private cache = new Lru<string, { value: OpenGraph; expires: number }>(CACHE_SIZE);
  private inflight = new Map<string, Promise<OpenGraph>>();
  private readonly policy: IpPolicy;

  constructor(private readonly opts: PreviewOptions) {
    this.policy = opts.policy;
  }

  static fromConfig(config: Config, storeImage?: StoreImage): PreviewService {
    return new PreviewService({
      policy: ipPolicy(config.url_preview_ip_blocklist, config.url_preview_ip_allowlist),
      maxBytes: config.url_preview_max_bytes,
      timeoutMs: config.url_preview_timeout_ms,
      storeImage,
      maxImageBytes: config.max_upload_size,
    });
  }

  /**
   * The OpenGraph data for `url`; throws SafeFetchError when the page cannot
   * be fetched. `userId` owns the stored image (the first asker's, when the
   * answer comes from the cache).
   */
  async preview(url: string, ts?: number, userId?: string): Promise<OpenGraph> {
    const now = Date.now();
    const key = `${Math.floor(Math.min(ts ?? now, now) / TS_BUCKET_MS)}|${url}`;
    const hit = this.cache.get(key);
    if (hit && hit.expires > now) return hit.value;
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const p = this.fetchPreview(url, userId).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    const value = await p;
    this.cache.set(key, { value, expires: Date.now() + CACHE_TTL_MS });
    return value;
  }

  private fetch(url: string, accept: string, maxBytes = this.opts.maxBytes): Promise<SafeFetchResponse> {
    return safeFetch(url, {
      ...this.opts,
      ...this.policy,
      maxBytes,
      headers: { 'user-agent': 'Ranvier URL preview (Matrix homeserver)', accept, ...this.opts.headers },
    });
  }

  private async fetchPreview(url: string, userId: string | undefined): Promise<OpenGraph> {
    const res = await this.fetch(url, 'text/html, application/xhtml+xml;q=0.9, */*;q=0.1');
    if (res.status < 200 || res.status >= 300) throw new UpstreamError(res.status);
    const type = String(res.headers['content-type'] ?? '').toLowerCase();
    if (baseType(type).startsWith('image/')) {
      // The URL is an image: it is its own preview.
      return (await this.storeImage(res, userId).catch(() => undefined)) ?? {};
    }
    if (type && !type.includes('html')) return {};
    const html = decodeHtml(res.body, type);
    const og = parseOpenGraph(html);
    const imageUrl = imageUrlOf(html, res.url);
    if (imageUrl) Object.assign(og, await this.fetchImage(imageUrl, userId));
    return og;
  }

  /** og:image and friends for the image at `url`, or nothing when it cannot be had. */
  private async fetchImage(url: string, userId: string | undefined): Promise<OpenGraph> {
    if (!this.opts.storeImage || userId === undefined) return {};
    try {
      const res = await this.fetch(url, 'image/*', this.opts.maxImageBytes ?? this.opts.maxBytes);
      if (res.status < 200 || res.status >= 300) return {};
      return (await this.storeImage(res, userId)) ?? {};
    } catch {
      // Blocked, too big, slow, unreachable, not storable: the page's preview stands without it.
      return {};
    }
  }

  private async storeImage(res: SafeFetchResponse, userId: string | undefined): Promise<OpenGraph | undefined> {
    const type = baseType(String(res.headers['content-type'] ?? '').toLowerCase());
    if (!this.opts.storeImage || userId === undefined || !type.startsWith('image/') || res.body.length === 0) return undefined;
    if (res.body.length > (this.opts.maxImageBytes ?? this.opts.maxBytes)) return undefined;
    const og: OpenGraph = {};
    try {
      const info = await imageInfo(res.body);
      og['og:image:width'] = info.width;
      og['og:image:height'] = info.height;
    } catch {
      // Not an image after all (or one sharp cannot read): not worth storing.
      return undefined;
    }
    og['og:image'] = await this.opts.storeImage(userId, res.body, type);
    og['og:image:type'] = type;
    og['matrix:image:size'] = res.body.length;
    return og;
  }
}

/** The previewed server answered with a non-2xx status. */
export class UpstreamError extends Error {
  constructor(public readonly status: number) {
    super(`The remote server answered ${status}`);
  }
}
