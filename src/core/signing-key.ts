/**
 * Ed25519 server signing keys.
 *
 * Keys are kept as raw 32-byte seeds (the representation Synapse's
 * `signing.key` file and the spec's test vectors use) and turned into
 * node:crypto KeyObjects by wrapping them in fixed DER prefixes.
 */
import { createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { decodeBase64, encodeBase64 } from './base64.js';

export interface SigningKey {
  algorithm: 'ed25519';
  /** The part after `ed25519:`, e.g. `a_AbCd`. */
  version: string;
  /** `ed25519:<version>`, the identifier used in `signatures` objects. */
  keyId: string;
  /** 32-byte private seed. */
  seed: Buffer;
  /** 32-byte public key. */
  publicKey: Buffer;
}

// RFC 8410 PKCS#8 wrapper for a raw Ed25519 seed: SEQUENCE { INTEGER 0,
// AlgorithmIdentifier { 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
// RFC 8410 SubjectPublicKeyInfo wrapper for a raw Ed25519 public key.
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

const KEY_VERSION_RE = /^[A-Za-z0-9_]+$/;

// KeyObject construction parses DER; cache per key so hot paths (signing every
// outgoing event, verifying every incoming one) don't redo it.
const privateKeyCache = new WeakMap<SigningKey, KeyObject>();
const publicKeyCache = new Map<string, KeyObject>();
const PUBLIC_KEY_CACHE_LIMIT = 1024;

function privateKeyObject(key: SigningKey): KeyObject {
  let obj = privateKeyCache.get(key);
  if (!obj) {
    obj = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, key.seed]), format: 'der', type: 'pkcs8' });
    privateKeyCache.set(key, obj);
  }
  return obj;
}

function publicKeyObject(raw: Buffer): KeyObject {
  const cacheKey = raw.toString('hex');
  let obj = publicKeyCache.get(cacheKey);
  if (!obj) {
    obj = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
    // Crude bound: the set of remote server keys is small in practice, so
    // simply starting over is cheaper than LRU bookkeeping.
    if (publicKeyCache.size >= PUBLIC_KEY_CACHE_LIMIT) publicKeyCache.clear();
    publicKeyCache.set(cacheKey, obj);
  }
  return obj;
}

/** Build a SigningKey from a 32-byte seed. */
export function signingKeyFromSeed(seed: Uint8Array, version: string): SigningKey {
  if (seed.length !== 32) throw new Error(`ed25519 seed must be 32 bytes, got ${seed.length}`);
  if (!KEY_VERSION_RE.test(version)) throw new Error(`invalid key version: ${JSON.stringify(version)}`);
  const seedBuf = Buffer.from(seed);
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seedBuf]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  const key: SigningKey = {
    algorithm: 'ed25519',
    version,
    keyId: `ed25519:${version}`,
    seed: seedBuf,
    publicKey: Buffer.from(spki.subarray(SPKI_PREFIX.length)),
  };
  privateKeyCache.set(key, priv);
  return key;
}

const VERSION_ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** A random key version in Synapse's style: `a_` followed by four letters. */
function randomKeyVersion(): string {
  const bytes = randomBytes(4);
  let suffix = '';
  // 256 % 52 != 0 gives a negligible bias; key versions need uniqueness, not
  // uniform randomness.
  for (const b of bytes) suffix += VERSION_ALPHABET[b % VERSION_ALPHABET.length];
  return `a_${suffix}`;
}

/** Generate a fresh random Ed25519 signing key. */
export function generateSigningKey(version?: string): SigningKey {
  return signingKeyFromSeed(randomBytes(32), version ?? randomKeyVersion());
}

/**
 * Parse Synapse's `signing.key` format: one key per line,
 * `ed25519 <version> <unpadded base64 seed>`. Blank lines are ignored; any
 * other malformed line throws (a silently skipped key would change the
 * server's identity).
 */
export function parseSigningKeyFile(text: string): SigningKey[] {
  const keys: SigningKey[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, index) => {
    const trimmed = line.trim();
    if (trimmed === '') return;
    const parts = trimmed.split(/\s+/);
    if (parts.length !== 3) throw new Error(`signing key file line ${index + 1}: expected 3 fields`);
    const [algorithm, version, seedB64] = parts;
    if (algorithm !== 'ed25519') {
      throw new Error(`signing key file line ${index + 1}: unsupported algorithm ${algorithm}`);
    }
    keys.push(signingKeyFromSeed(decodeBase64(seedB64), version));
  });
  return keys;
}

/** Serialise keys in Synapse's `signing.key` format (newline terminated). */
export function formatSigningKeyFile(keys: SigningKey[]): string {
  return keys.map((k) => `${k.algorithm} ${k.version} ${encodeBase64(k.seed)}\n`).join('');
}

/** The public key as unpadded Base64, as published in `/_matrix/key/v2/server`. */
export function publicKeyBase64(key: SigningKey): string {
  return encodeBase64(key.publicKey);
}

/** Sign raw bytes; returns the signature as unpadded Base64. */
export function signBytes(key: SigningKey, data: Uint8Array): string {
  return encodeBase64(sign(null, data, privateKeyObject(key)));
}

/**
 * Verify an Ed25519 signature. Malformed keys or signatures yield `false`
 * rather than throwing: to a caller they are just invalid signatures.
 */
export function verifyBytes(publicKeyB64: string, data: Uint8Array, signatureB64: string): boolean {
  try {
    const pub = decodeBase64(publicKeyB64);
    const sig = decodeBase64(signatureB64);
    if (pub.length !== 32 || sig.length !== 64) return false;
    return verify(null, data, publicKeyObject(pub), sig);
  } catch {
    return false;
  }
}
