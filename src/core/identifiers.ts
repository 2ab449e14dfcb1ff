/**
 * Identifier grammar (appendices, "Identifier Grammar").
 *
 * Two strictness levels exist for user ids: the current grammar, which this
 * server must enforce for ids it creates, and the historical grammar, which
 * every server must still accept in events from the wider federation.
 */
import type { RoomVersion } from './room-versions.js';

/** All identifiers (with sigil and domain) are capped at 255 bytes. */
const MAX_ID_BYTES = 255;

function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

const LOCALPART_RE = /^[a-z0-9._=\-/+]+$/;
const PORT_RE = /^[0-9]{1,5}$/;
const IPV4_RE = /^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$/;
const IPV6_CHARS_RE = /^[0-9A-Fa-f:.]{2,45}$/;
const DNS_NAME_RE = /^[A-Za-z0-9.-]{1,255}$/;

/** Current user id localpart grammar: `a-z 0-9 . _ = - / +`, non-empty. */
export function isValidLocalpart(s: string): boolean {
  return LOCALPART_RE.test(s);
}

function isValidHostname(host: string): boolean {
  if (host.startsWith('[')) {
    if (!host.endsWith(']')) return false;
    const inner = host.slice(1, -1);
    // The grammar only constrains the character set; RFC 3513 adds structure.
    // Requiring at least one colon rules out things like "[1.2]".
    return IPV6_CHARS_RE.test(inner) && inner.includes(':');
  }
  const v4 = IPV4_RE.exec(host);
  if (v4 && v4.slice(1).every((octet) => Number(octet) <= 255)) return true;
  // Anything else (including digit-only names such as "1.2.3.999", which the
  // grammar's dns-name production also admits) must be a DNS name.
  return DNS_NAME_RE.test(host);
}

/** `hostname [":" port]` where hostname is IPv4, `[IPv6]` or a DNS name. */
export function isValidServerName(s: string): boolean {
  if (typeof s !== 'string' || s.length === 0) return false;
  let host = s;
  // The port separator is the last colon outside an IPv6 literal.
  const bracketEnd = s.lastIndexOf(']');
  const colon = s.lastIndexOf(':');
  if (colon > bracketEnd) {
    host = s.slice(0, colon);
    if (!PORT_RE.test(s.slice(colon + 1))) return false;
  }
  return host.length > 0 && isValidHostname(host);
}

/** Split `<sigil>localpart:domain` at the first colon; domain must be a valid server name. */
function splitSigilId(s: string, sigil: string): { localpart: string; serverName: string } | null {
  if (typeof s !== 'string' || !s.startsWith(sigil)) return null;
  const colon = s.indexOf(':');
  if (colon < 0) return null;
  const serverName = s.slice(colon + 1);
  if (!isValidServerName(serverName)) return null;
  return { localpart: s.slice(1, colon), serverName };
}

/**
 * Parse a user id leniently, as servers must for ids found in events: the
 * localpart may be any codepoints except `:` and NUL (historical user ids),
 * even empty. Returns null if the id is not a user id at all.
 */
export function parseUserId(s: string): { localpart: string; serverName: string } | null {
  const parts = splitSigilId(s, '@');
  if (!parts || parts.localpart.includes('\u0000')) return null;
  return parts;
}

/** Accepts historical user ids (see parseUserId) within the 255-byte limit. */
export function isValidHistoricalUserId(s: string): boolean {
  return parseUserId(s) !== null && byteLength(s) <= MAX_ID_BYTES;
}

/** Strict, current grammar: what this server allows for new users. */
export function isValidUserId(s: string): boolean {
  const parts = parseUserId(s);
  return parts !== null && isValidLocalpart(parts.localpart) && byteLength(s) <= MAX_ID_BYTES;
}

// 32-byte SHA-256 in unpadded Base64 is always 43 characters.
const URLSAFE_HASH_RE = /^[A-Za-z0-9_-]{43}$/;
const STANDARD_HASH_RE = /^[A-Za-z0-9+/]{43}$/;

/**
 * Room ids: `!opaque:domain` up to v11, `!<url-safe reference hash>` from v12.
 * Without a version, either form is accepted.
 */
export function isValidRoomId(s: string, version?: RoomVersion): boolean {
  if (typeof s !== 'string' || !s.startsWith('!') || byteLength(s) > MAX_ID_BYTES) return false;
  const hashForm = URLSAFE_HASH_RE.test(s.slice(1));
  const domainForm = (() => {
    const parts = splitSigilId(s, '!');
    return parts !== null && !parts.localpart.includes('\u0000');
  })();
  if (!version) return hashForm || domainForm;
  return version.roomIdIsCreateEventHash ? hashForm : domainForm;
}

/** `#alias:domain`; the alias localpart may hold any codepoint but `:` and NUL. */
export function isValidRoomAlias(s: string): boolean {
  const parts = splitSigilId(s, '#');
  return parts !== null && !parts.localpart.includes('\u0000') && byteLength(s) <= MAX_ID_BYTES;
}

/**
 * Event ids: `$opaque:domain` for v1/v2, `$` + 43 characters of standard
 * (v3) or URL-safe (v4+) Base64 otherwise. Without a version, any non-empty
 * `$` id within the length limit is accepted.
 */
export function isValidEventId(s: string, version?: RoomVersion): boolean {
  if (typeof s !== 'string' || !s.startsWith('$') || s.length < 2 || byteLength(s) > MAX_ID_BYTES) return false;
  if (s.includes('\u0000')) return false;
  if (!version) return true;
  switch (version.eventIdFormat) {
    case 'v1':
      return splitSigilId(s, '$') !== null;
    case 'v3':
      return STANDARD_HASH_RE.test(s.slice(1));
    case 'v4':
      return URLSAFE_HASH_RE.test(s.slice(1));
  }
}

/**
 * The server name part of a sigil-prefixed id (everything after the first
 * colon), or null if there is none. For user ids this is the user's server.
 */
export function serverNameOf(id: string): string | null {
  if (typeof id !== 'string') return null;
  const colon = id.indexOf(':');
  if (colon < 0 || colon === id.length - 1) return null;
  return id.slice(colon + 1);
}
