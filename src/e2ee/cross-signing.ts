/**
 * Cross-signing keys (spec: End-to-end encryption, "Cross-signing"): shape
 * checks and signature checks, no I/O. The keys service stores them.
 */
import { MatrixError, badJson, invalidParam } from '../server/errors.js';
import { canonicalJson } from '../core/canonical-json.js';
import { verifyJsonSignature } from '../core/json-signing.js';

export type CrossSigningKeyType = 'master' | 'self_signing' | 'user_signing';
export const CROSS_SIGNING_TYPES: CrossSigningKeyType[] = ['master', 'self_signing', 'user_signing'];

export interface CrossSigningKey {
  user_id: string;
  usage: string[];
  keys: Record<string, string>;
  signatures?: Record<string, Record<string, string>>;
  [extra: string]: unknown;
}

export const invalidSignature = (msg: string) => new MatrixError('M_INVALID_SIGNATURE', 400, msg);

const ED25519_RE = /^[A-Za-z0-9+/]{43}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Check a cross-signing key's shape: owned by `userId`, with `usage`
 * including `type`, and exactly one ed25519 key `ed25519:<pub>` -> `<pub>`.
 * Returns its public key.
 */
export function checkCrossSigningKey(key: unknown, type: CrossSigningKeyType, userId: string): string {
  if (!isObject(key)) throw badJson(`${type} key must be an object`);
  if (key.user_id !== userId) throw invalidParam(`${type} key must belong to ${userId}`);
  if (!Array.isArray(key.usage) || !key.usage.every((u) => typeof u === 'string') || !key.usage.includes(type)) {
    throw invalidParam(`${type} key usage must include "${type}"`);
  }
  if (!isObject(key.keys)) throw badJson(`${type} key has no keys`);
  const entries = Object.entries(key.keys);
  if (entries.length !== 1) throw invalidParam(`${type} key must hold exactly one key`);
  const [id, pub] = entries[0];
  if (typeof pub !== 'string' || id !== `ed25519:${pub}` || !ED25519_RE.test(pub)) {
    throw invalidParam(`${type} key must be ed25519:<public key> -> <public key>`);
  }
  if (key.signatures !== undefined && !isObject(key.signatures)) throw badJson(`${type} key signatures must be an object`);
  return pub;
}

/** The single public key of a (checked) cross-signing key. */
export function publicKeyOf(key: CrossSigningKey): string {
  return Object.values(key.keys)[0];
}

/** Is `obj` signed by `signer` with the ed25519 key `pub` (key id `ed25519:<keyName>`)? */
export function signedBy(obj: object, signer: string, keyName: string, pub: string): boolean {
  return verifyJsonSignature(obj, signer, `ed25519:${keyName}`, pub);
}

/** The same key apart from signatures and unsigned data? */
export function sameSignable(a: object, b: object): boolean {
  const strip = (o: object) => {
    const { signatures: _s, unsigned: _u, ...rest } = o as Record<string, unknown>;
    return rest;
  };
  try {
    return canonicalJson(strip(a)) === canonicalJson(strip(b));
  } catch {
    return false;
  }
}

/** Same JSON, signatures included? */
export function sameJson(a: unknown, b: unknown): boolean {
  try {
    return canonicalJson(a) === canonicalJson(b);
  } catch {
    return false;
  }
}
