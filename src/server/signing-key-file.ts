import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { formatSigningKeyFile, generateSigningKey, parseSigningKeyFile, type SigningKey } from '../core/signing-key.js';

/** Read the server's signing key (Synapse's format), generating it on first start. */
export function loadOrCreateSigningKey(file: string): SigningKey {
  if (existsSync(file)) {
    const keys = parseSigningKeyFile(readFileSync(file, 'utf8'));
    if (keys.length === 0) throw new Error(`signing key file ${file} holds no ed25519 key`);
    return keys[0];
  }
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const key = generateSigningKey();
  writeFileSync(file, formatSigningKeyFile([key]), { mode: 0o600 });
  return key;
}
