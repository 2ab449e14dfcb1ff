/**
 * Unpadded Base64 as used throughout Matrix (appendices, "Unpadded Base64").
 *
 * Matrix emits unpadded standard Base64 almost everywhere, and URL-safe
 * unpadded Base64 for event IDs (room version 4+) and room IDs (v12+).
 */

export class Base64Error extends Error {
  override name = 'Base64Error';
}

/** Unpadded standard Base64 (alphabet `A-Za-z0-9+/`). */
export function encodeBase64(buf: Uint8Array): string {
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('base64').replace(/=+$/, '');
}

/** Unpadded URL-safe Base64 (alphabet `A-Za-z0-9-_`). */
export function encodeBase64Url(buf: Uint8Array): string {
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('base64url');
}

// Either alphabet (Matrix allows decoders to be liberal), optional padding.
const BASE64_RE = /^[A-Za-z0-9+/_-]*={0,2}$/;

/**
 * Decode Base64 in any of its common shapes: padded or unpadded, standard or
 * URL-safe. Throws `Base64Error` on characters outside those alphabets or an
 * impossible length, rather than silently skipping them as Node's decoder
 * does: a signature that "decodes" from garbage must not be trusted.
 */
export function decodeBase64(s: string): Buffer {
  if (!BASE64_RE.test(s)) throw new Base64Error('invalid base64 characters');
  const unpadded = s.replace(/=+$/, '');
  // 4n+1 characters cannot encode a whole number of bytes.
  if (unpadded.length % 4 === 1) throw new Base64Error('invalid base64 length');
  if (s.length !== unpadded.length && s.length % 4 !== 0) {
    throw new Base64Error('invalid base64 padding');
  }
  // Node's 'base64' decoder accepts both alphabets. Non-zero trailing bits are
  // tolerated on purpose: the spec's own test seed ends in such a character.
  return Buffer.from(unpadded, 'base64');
}
