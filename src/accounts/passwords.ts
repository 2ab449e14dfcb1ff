/**
 * argon2 is loaded on first use: its native module costs several MB of
 * resident memory that an idle server never needs.
 */
let argon2: Promise<typeof import('@node-rs/argon2')> | undefined;
const loadArgon2 = () => (argon2 ??= import('@node-rs/argon2'));

/**
 * Password hashing: argon2id with the library's defaults (19 MiB, t=2, p=1,
 * the OWASP baseline). Hashes are PHC strings, so parameters can be raised
 * later without invalidating stored hashes.
 */

/** Longest password accepted; argon2 handles any length, this only bounds request work. */
export const MAX_PASSWORD_LENGTH = 512;

export async function hashPassword(password: string): Promise<string> {
  // Algorithm.Argon2id is a const enum (2); spelled out so isolated transpilers agree.
  return (await loadArgon2()).hash(password, { algorithm: 2 });
}

let dummyHash: Promise<string> | undefined;

/**
 * Check `password` against a stored hash. With no stored hash (unknown user,
 * password-less account) a dummy hash is still verified, so response time
 * does not reveal whether the account exists.
 */
export async function verifyPassword(stored: string | null | undefined, password: string): Promise<boolean> {
  if (!stored || !stored.startsWith('$argon2')) {
    dummyHash ??= hashPassword('ranvier-dummy-password');
    await (await loadArgon2()).verify(await dummyHash, password).catch(() => false);
    return false;
  }
  try {
    return await (await loadArgon2()).verify(stored, password);
  } catch {
    return false;
  }
}
