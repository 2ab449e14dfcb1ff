/**
 * Thumbnail sizing (pure) and generation with sharp. sharp (libvips) is
 * imported on the first thumbnail only, so a server nobody asks for
 * thumbnails keeps its memory; libvips works off the event loop.
 */
import type SharpNs from 'sharp';

export type ThumbnailMethod = 'crop' | 'scale';

export interface ThumbnailSize {
  width: number;
  height: number;
  method: ThumbnailMethod;
}

/** The sizes the spec recommends, smallest first. */
export const PRESET_SIZES: readonly ThumbnailSize[] = [
  { width: 32, height: 32, method: 'crop' },
  { width: 96, height: 96, method: 'crop' },
  { width: 320, height: 240, method: 'scale' },
  { width: 640, height: 480, method: 'scale' },
  { width: 800, height: 600, method: 'scale' },
];

/** Largest dimension a dynamic thumbnail may ask for. */
export const MAX_DYNAMIC_DIMENSION = 2048;

/**
 * The size to generate for a request: the smallest preset at least as big
 * as asked (same method first, then any), or the exact request when dynamic
 * thumbnails are on; undefined when none fits (serve the original: never
 * return less than was asked for).
 */
export function chooseSize(width: number, height: number, method: ThumbnailMethod, dynamic: boolean): ThumbnailSize | undefined {
  if (dynamic) {
    if (width > MAX_DYNAMIC_DIMENSION || height > MAX_DYNAMIC_DIMENSION) return undefined;
    return { width, height, method };
  }
  const fits = (s: ThumbnailSize) => s.width >= width && s.height >= height;
  return PRESET_SIZES.find((s) => s.method === method && fits(s)) ?? PRESET_SIZES.find(fits);
}

/** Content types we decode for thumbnails (never SVG: it is a document, not an image). */
export const THUMBNAILABLE = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp', 'image/avif', 'image/apng']);
const ANIMATABLE = new Set(['image/gif', 'image/webp', 'image/png', 'image/apng']);

type Sharp = typeof SharpNs;
let sharpModule: Promise<Sharp> | undefined;

export function loadSharp(): Promise<Sharp> {
  return (sharpModule ??= import('sharp').then((m) => {
    const sharp = (m as unknown as { default: Sharp }).default;
    sharp.cache(false); // we store every thumbnail; libvips' cache would only hold memory
    sharp.concurrency(1);
    return sharp;
  }));
}

export interface ImageInfo {
  width: number;
  height: number;
  animated: boolean;
}

export async function imageInfo(data: Buffer): Promise<ImageInfo> {
  const sharp = await loadSharp();
  const meta = await sharp(data, { animated: true, limitInputPixels: 100_000_000 }).metadata();
  const pages = meta.pages ?? 1;
  return { width: meta.width ?? 0, height: meta.pageHeight ?? meta.height ?? 0, animated: pages > 1 };
}

export interface Thumbnail {
  data: Buffer;
  contentType: string;
}

/**
 * Make a thumbnail of `size`. 'scale' keeps the aspect ratio within the box;
 * 'crop' fills the box and crops the middle. Never upscales. Animated output
 * (same format as the original) only when `animated` and the original is.
 */
export async function makeThumbnail(data: Buffer, contentType: string, size: ThumbnailSize, animated: boolean): Promise<Thumbnail> {
  const sharp = await loadSharp();
  const keepAnimation = animated && ANIMATABLE.has(contentType);
  let img = sharp(data, { animated: keepAnimation, limitInputPixels: 100_000_000 })
    .rotate() // honour EXIF orientation
    .resize(size.width, size.height, {
      fit: size.method === 'crop' ? 'cover' : 'inside',
      position: 'centre',
      withoutEnlargement: true,
    });
  if (keepAnimation && contentType === 'image/gif') {
    return { data: await img.gif().toBuffer(), contentType: 'image/gif' };
  }
  if (keepAnimation) {
    return { data: await img.webp().toBuffer(), contentType: 'image/webp' };
  }
  if (contentType === 'image/jpeg') {
    img = img.jpeg({ quality: 80 });
    return { data: await img.toBuffer(), contentType: 'image/jpeg' };
  }
  return { data: await img.png().toBuffer(), contentType: 'image/png' };
}
