import { randomBytes, randomInt } from 'node:crypto';
import { isValidLocalpart } from '../core/identifiers.js';
import { MatrixError } from '../server/errors.js';

const invalidUsername = (msg: string) => new MatrixError('M_INVALID_USERNAME', 400, msg);

/**
 * Map a requested username onto a localpart (the spec lets the server map
 * "in a logical manner"): surrounding whitespace is trimmed, upper case is
 * folded to lower case, and anything still outside the user id grammar is
 * rejected with M_INVALID_USERNAME. The full id must fit in 255 bytes.
 */
export function normaliseUsername(username: string, serverName: string): string {
  const localpart = username.trim().toLowerCase();
  if (localpart.length === 0) throw invalidUsername('User ID cannot be empty');
  if (!isValidLocalpart(localpart)) {
    throw invalidUsername("User ID can only contain characters a-z, 0-9, or '=_-./+'");
  }
  if (Buffer.byteLength(`@${localpart}:${serverName}`, 'utf8') > 255) {
    throw invalidUsername('User ID is too long');
  }
  return localpart;
}

/** A fresh localpart for registrations that do not ask for one. */
export function randomLocalpart(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0234567890';
  let s = 'u';
  const bytes = randomBytes(11);
  for (const b of bytes) s += alphabet[b % alphabet.length];
  return s;
}

/** Device ids: ten random upper-case letters. */
export function randomDeviceId(): string {
  let s = '';
  for (let i = 0; i < 10; i++) s += String.fromCharCode(65 + randomInt(26));
  return s;
}

/**
 * Candidate user ids for a login identifier: a full user id or a bare
 * localpart. Localparts match case-insensitively (ids registered here are
 * lower case; historical mixed-case ids still match exactly). Returns [] when
 * the id belongs to another server or cannot be a user id at all.
 */
export function loginCandidates(user: string, serverName: string): string[] {
  let localpart = user.trim();
  if (localpart.startsWith('@')) {
    const colon = localpart.indexOf(':');
    if (colon < 0) return [];
    if (localpart.slice(colon + 1) !== serverName) return [];
    localpart = localpart.slice(1, colon);
  }
  if (!localpart || localpart.includes(':')) return [];
  const exact = `@${localpart}:${serverName}`;
  const lower = `@${localpart.toLowerCase()}:${serverName}`;
  return exact === lower ? [exact] : [exact, lower];
}

/** What a user identifier object (or the deprecated top-level `user`/`medium`) names. */
export type LoginIdentifier =
  | { kind: 'user'; user: string }
  | { kind: 'thirdparty' }
  | { kind: 'none' }
  | { kind: 'invalid'; reason: string };

/** Read `identifier` ({type: 'm.id.user', user}) or the legacy top-level `user` from a login or auth dict. */
export function parseIdentifier(body: Record<string, unknown>): LoginIdentifier {
  const id = body.identifier;
  if (id !== undefined && id !== null) {
    if (typeof id !== 'object' || Array.isArray(id)) return { kind: 'invalid', reason: 'identifier must be an object' };
    const o = id as Record<string, unknown>;
    switch (o.type) {
      case 'm.id.user':
        if (typeof o.user !== 'string' || !o.user) return { kind: 'invalid', reason: 'identifier.user must be a string' };
        return { kind: 'user', user: o.user };
      case 'm.id.thirdparty':
      case 'm.id.phone':
        return { kind: 'thirdparty' };
      default:
        return { kind: 'invalid', reason: 'Unknown identifier type' };
    }
  }
  if (typeof body.user === 'string' && body.user) return { kind: 'user', user: body.user };
  if (body.medium !== undefined || body.address !== undefined) return { kind: 'thirdparty' };
  return { kind: 'none' };
}
