/**
 * Signing JSON objects (appendices, "Signing JSON" and "Checking for a
 * Signature").
 *
 * The signature covers the canonical JSON of the object without its
 * `signatures` and `unsigned` members, so other parties can add their own
 * signatures or unsigned data without invalidating ours.
 */
import { canonicalJsonBytes, type CanonicalJsonOptions } from './canonical-json.js';
import { signBytes, verifyBytes, type SigningKey } from './signing-key.js';

export type Signatures = Record<string, Record<string, string>>;

/** Copy of `obj` without the members that signatures never cover. */
function signablePart(obj: object): Record<string, unknown> {
  // The rest-spread copies own enumerable properties as data properties, so a
  // hostile "__proto__" key is carried along as a plain key, never as a prototype.
  const { signatures: _signatures, unsigned: _unsigned, ...rest } = obj as Record<string, unknown>;
  return rest;
}

/**
 * Deep-enough copy of a `signatures` object. Built with Object.fromEntries,
 * which defines own properties, so a hostile "__proto__" server name cannot
 * swap the copy's prototype.
 */
function copySignatures(value: unknown): Signatures {
  if (value === null || typeof value !== 'object') return {};
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>)
      .filter(([, sigs]) => sigs !== null && typeof sigs === 'object')
      .map(([server, sigs]) => [server, { ...(sigs as Record<string, string>) }]),
  );
}

/**
 * Sign `obj` as `signingName` with `key`, returning a new object whose
 * `signatures` holds the existing signatures plus the new one. `unsigned` is
 * preserved but not signed. The input is not modified.
 */
export function signJson<T extends object>(
  obj: T,
  signingName: string,
  key: SigningKey,
  options: CanonicalJsonOptions = {},
): T & { signatures: Signatures } {
  const signature = signBytes(key, canonicalJsonBytes(signablePart(obj), options));
  const existing = copySignatures((obj as { signatures?: unknown }).signatures);
  const mine = Object.hasOwn(existing, signingName) ? existing[signingName] : {};
  // Computed keys in literals define own properties, so "__proto__" is safe here too.
  const signatures: Signatures = { ...existing, [signingName]: { ...mine, [key.keyId]: signature } };
  return { ...obj, signatures };
}

/**
 * Check that `obj` carries a valid signature from `signingName` under
 * `keyId`, verified with the given public key (unpadded Base64). Returns false
 * for a missing signature, a bad signature, or a non-canonicalisable object.
 */
export function verifyJsonSignature(
  obj: object,
  signingName: string,
  keyId: string,
  publicKeyB64: string,
  options: CanonicalJsonOptions = {},
): boolean {
  if (!keyId.startsWith('ed25519:')) return false;
  const signatures = (obj as { signatures?: unknown }).signatures;
  if (signatures === null || typeof signatures !== 'object') return false;
  // hasOwn: names like "constructor" must not resolve through the prototype.
  if (!Object.hasOwn(signatures, signingName)) return false;
  const byServer = (signatures as Record<string, unknown>)[signingName];
  if (byServer === null || typeof byServer !== 'object' || !Object.hasOwn(byServer, keyId)) return false;
  const signature = (byServer as Record<string, unknown>)[keyId];
  if (typeof signature !== 'string') return false;
  let bytes: Buffer;
  try {
    bytes = canonicalJsonBytes(signablePart(obj), options);
  } catch {
    return false;
  }
  return verifyBytes(publicKeyB64, bytes, signature);
}
