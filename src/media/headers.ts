/**
 * Response headers for serving user-uploaded content safely (spec: content
 * repository, security considerations and "serving inline content").
 */

/** Content types the spec lists as safe to serve with `Content-Disposition: inline`. */
export const INLINE_SAFE_TYPES = new Set([
  'text/css', 'text/plain', 'text/csv', 'application/json', 'application/ld+json',
  'image/jpeg', 'image/gif', 'image/png', 'image/apng', 'image/webp', 'image/avif',
  'video/mp4', 'video/webm', 'video/ogg', 'video/quicktime',
  'audio/mp4', 'audio/webm', 'audio/aac', 'audio/mpeg', 'audio/ogg', 'audio/wave', 'audio/wav',
  'audio/x-wav', 'audio/x-pn-wav', 'audio/flac', 'audio/x-flac',
]);

export const MEDIA_CSP =
  "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/** The media type without parameters, lowercased ('' when absent). */
export function baseType(contentType: string | null | undefined): string {
  return (contentType ?? '').split(';')[0].trim().toLowerCase();
}

// RFC 6266 / RFC 5987: the characters allowed unencoded in a token / attr-char.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const ATTR_CHAR_SAFE = /[!#$&+\-.^_`|~0-9A-Za-z]/;

/**
 * A Content-Disposition value: `inline` only for the safe types, otherwise
 * `attachment`; the filename as a token when it is one, else as an RFC 5987
 * `filename*` (UTF-8, percent-encoded), which browsers decode.
 */
export function contentDisposition(contentType: string | null | undefined, filename: string | null | undefined): string {
  const kind = INLINE_SAFE_TYPES.has(baseType(contentType)) ? 'inline' : 'attachment';
  if (!filename) return kind;
  if (TOKEN.test(filename)) return `${kind}; filename=${filename}`;
  let encoded = '';
  for (const byte of Buffer.from(filename, 'utf8')) {
    const ch = String.fromCharCode(byte);
    encoded += byte < 0x80 && ATTR_CHAR_SAFE.test(ch) ? ch : '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return `${kind}; filename*=utf-8''${encoded}`;
}

/** Every header for a media response except Content-Length. */
export function mediaHeaders(contentType: string | null | undefined, filename: string | null | undefined): Record<string, string> {
  return {
    'Content-Type': contentType || 'application/octet-stream',
    'Content-Disposition': contentDisposition(contentType, filename),
    'Content-Security-Policy': MEDIA_CSP,
    'X-Content-Type-Options': 'nosniff',
    'Cross-Origin-Resource-Policy': 'cross-origin',
  };
}
