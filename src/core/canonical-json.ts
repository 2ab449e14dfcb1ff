/**
 * Canonical JSON as defined by the Matrix spec (appendices, "Canonical JSON").
 *
 * The encoding is the shortest UTF-8 JSON with object keys sorted by Unicode
 * codepoint, and numbers restricted to integers in [-(2^53)+1, 2^53-1]. It is
 * the byte representation that every signature and hash in Matrix covers, so
 * any deviation here breaks interoperability silently.
 */

export class CanonicalJsonError extends Error {
  override name = 'CanonicalJsonError';
}

export interface CanonicalJsonOptions {
  /**
   * When false, numbers that are not canonical (floats, integers outside the
   * safe range) are serialised with JavaScript's number formatting instead of
   * throwing. Room versions 1-5 do not enforce canonical JSON and such events
   * exist in the wild; servers must still be able to hash them. Defaults to true.
   */
  strict?: boolean;
}

/** Largest magnitude integer allowed by the spec: 2^53 - 1. */
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/**
 * Compare two strings by Unicode codepoint (not by UTF-16 code unit, which is
 * what `<` and `Array.prototype.sort` do). The two orders differ when one
 * string has an astral character (surrogate pair) where the other has a BMP
 * character in U+E000..U+FFFF.
 */
export function compareCodepoints(a: string, b: string): number {
  const len = Math.min(a.length, b.length);
  for (let i = 0; i < len; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    const aSurrogate = ca >= 0xd800 && ca <= 0xdfff;
    const bSurrogate = cb >= 0xd800 && cb <= 0xdfff;
    // A surrogate (astral codepoint >= U+10000) sorts after every BMP
    // character, even those whose code unit is numerically larger.
    if (aSurrogate && !bSurrogate) return 1;
    if (!aSurrogate && bSurrogate) return -1;
    return ca - cb;
  }
  return a.length - b.length;
}

function hasLoneSurrogate(s: string): boolean {
  // `isWellFormed` is ES2024; do the scan by hand so we work on Node 20.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      return true;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

function encodeString(s: string): string {
  // A lone surrogate cannot be encoded as UTF-8, so there is no canonical form.
  if (hasLoneSurrogate(s)) {
    throw new CanonicalJsonError('string contains a lone surrogate');
  }
  // JSON.stringify already produces the canonical escapes: the short forms
  // \b \t \n \f \r \" \\, lowercase \u00XX for other control characters, and
  // every other codepoint raw.
  return JSON.stringify(s);
}

function encodeNumber(n: number, strict: boolean): string {
  if (Number.isInteger(n) && n >= -MAX_SAFE && n <= MAX_SAFE) {
    // Object.is(-0, 0) is false, but String(-0) is "0": exactly what the spec
    // example asks for ("-0" must not appear).
    return String(n);
  }
  if (!strict && Number.isFinite(n)) return JSON.stringify(n);
  throw new CanonicalJsonError(`number ${n} is not an integer in the canonical JSON range`);
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function encode(value: unknown, strict: boolean, depth: number): string {
  // Guards against cycles (which would otherwise overflow the stack with a
  // less helpful error) and absurdly nested hostile input.
  if (depth > 512) throw new CanonicalJsonError('value is nested too deeply');
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return encodeString(value);
    case 'number':
      return encodeNumber(value, strict);
    case 'object': {
      if (Array.isArray(value)) {
        const parts: string[] = [];
        for (const item of value) {
          if (item === undefined) throw new CanonicalJsonError('undefined in array');
          parts.push(encode(item, strict, depth + 1));
        }
        return `[${parts.join(',')}]`;
      }
      if (!isPlainObject(value)) {
        throw new CanonicalJsonError(`cannot encode ${Object.prototype.toString.call(value)}`);
      }
      const record = value as Record<string, unknown>;
      // Properties whose value is `undefined` are skipped, as JSON.stringify
      // does: TypeScript code commonly spells "absent" that way.
      const keys = Object.keys(record).filter((k) => record[k] !== undefined);
      keys.sort(compareCodepoints);
      const parts = keys.map((k) => `${encodeString(k)}:${encode(record[k], strict, depth + 1)}`);
      return `{${parts.join(',')}}`;
    }
    default:
      throw new CanonicalJsonError(`cannot encode value of type ${typeof value}`);
  }
}

/**
 * Encode `value` as canonical JSON. Throws `CanonicalJsonError` on floats,
 * integers outside [-(2^53)+1, 2^53-1], and non-JSON values (undefined at the
 * top level or in arrays, functions, symbols, bigints, class instances).
 */
export function canonicalJson(value: unknown, options: CanonicalJsonOptions = {}): string {
  return encode(value, options.strict ?? true, 0);
}

/** Canonical JSON as UTF-8 bytes, the form that gets signed and hashed. */
export function canonicalJsonBytes(value: unknown, options: CanonicalJsonOptions = {}): Buffer {
  return Buffer.from(canonicalJson(value, options), 'utf8');
}
