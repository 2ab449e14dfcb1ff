import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkContentHash,
  decodeBase64,
  formatSigningKeyFile,
  generateSigningKey,
  getRoomVersion,
  hashAndSignEvent,
  parseSigningKeyFile,
  publicKeyBase64,
  redactEvent,
  requiredSignatureServers,
  signBytes,
  signingKeyFromSeed,
  signJson,
  verifyBytes,
  verifyEventSignature,
  verifyJsonSignature,
  type PDU,
} from '../../src/core/index.js';

// appendices, "Cryptographic Test Vectors"
const SEED_B64 = 'YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1';
const specKey = signingKeyFromSeed(decodeBase64(SEED_B64), '1');
const v1 = getRoomVersion('1')!;
const v11 = getRoomVersion('11')!;

describe('signing keys', () => {
  test('derives the key id and a 32-byte public key from the spec seed', () => {
    assert.equal(specKey.keyId, 'ed25519:1');
    assert.equal(specKey.publicKey.length, 32);
    assert.equal(publicKeyBase64(specKey), 'XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI');
    // Independent of our signing code: the spec's published signature of `{}`
    // must verify under the derived public key.
    const specSig = 'K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ';
    assert.equal(verifyBytes(publicKeyBase64(specKey), Buffer.from('{}'), specSig), true);
  });

  test('generates random keys with Synapse-style versions', () => {
    const a = generateSigningKey();
    const b = generateSigningKey();
    assert.match(a.version, /^a_[A-Za-z]{4}$/);
    assert.equal(a.keyId, `ed25519:${a.version}`);
    assert.notDeepEqual(a.seed, b.seed);
    assert.equal(generateSigningKey('abc').keyId, 'ed25519:abc');
  });

  test('round-trips the signing.key file format', () => {
    const text = `ed25519 1 ${SEED_B64}\n\ned25519 a_XyZw ${'A'.repeat(43)}\n`;
    const keys = parseSigningKeyFile(text);
    assert.equal(keys.length, 2);
    assert.equal(keys[0].keyId, 'ed25519:1');
    assert.deepEqual(keys[0].publicKey, specKey.publicKey);
    assert.equal(keys[1].version, 'a_XyZw');
    const formatted = formatSigningKeyFile(keys);
    assert.match(formatted, /^ed25519 1 [A-Za-z0-9+/]{43}\ned25519 a_XyZw A{43}\n$/);
    assert.deepEqual(parseSigningKeyFile(formatted).map((k) => k.seed), keys.map((k) => k.seed));
  });

  test('rejects malformed key files instead of silently dropping keys', () => {
    assert.throws(() => parseSigningKeyFile('ed25519 1'), /expected 3 fields/);
    assert.throws(() => parseSigningKeyFile(`rsa 1 ${SEED_B64}`), /unsupported algorithm/);
    assert.throws(() => parseSigningKeyFile('ed25519 1 AAAA'), /32 bytes/);
  });

  test('signs and verifies bytes; tampering breaks verification', () => {
    const data = Buffer.from('hello');
    const sig = signBytes(specKey, data);
    assert.equal(decodeBase64(sig).length, 64);
    assert.equal(verifyBytes(publicKeyBase64(specKey), data, sig), true);
    assert.equal(verifyBytes(publicKeyBase64(specKey), Buffer.from('hellO'), sig), false);
    assert.equal(verifyBytes(publicKeyBase64(generateSigningKey()), data, sig), false);
  });

  test('treats malformed keys and signatures as invalid, not as errors', () => {
    const data = Buffer.from('x');
    const sig = signBytes(specKey, data);
    assert.equal(verifyBytes('not base64!', data, sig), false);
    assert.equal(verifyBytes('AAAA', data, sig), false);
    assert.equal(verifyBytes(publicKeyBase64(specKey), data, sig.slice(0, 20)), false);
  });
});

describe('signJson: spec vectors', () => {
  test('signs an empty object', () => {
    assert.deepEqual(signJson({}, 'domain', specKey), {
      signatures: {
        domain: {
          'ed25519:1': 'K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ',
        },
      },
    });
  });

  test('signs an object with data', () => {
    assert.deepEqual(signJson({ one: 1, two: 'Two' }, 'domain', specKey), {
      one: 1,
      two: 'Two',
      signatures: {
        domain: {
          'ed25519:1': 'KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw',
        },
      },
    });
  });
});

describe('signJson / verifyJsonSignature', () => {
  const pub = publicKeyBase64(specKey);

  test('ignores unsigned and existing signatures, and keeps both', () => {
    const signed = signJson({ one: 1, two: 'Two', unsigned: { age: 5 }, signatures: { other: { 'ed25519:x': 'abc' } } }, 'domain', specKey);
    // Same signature as the plain vector: unsigned and signatures are not covered.
    assert.equal(signed.signatures.domain['ed25519:1'], 'KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw');
    assert.deepEqual(signed.signatures.other, { 'ed25519:x': 'abc' });
    assert.deepEqual(signed.unsigned, { age: 5 });
  });

  test('does not mutate its input', () => {
    const input = { a: 1, signatures: { domain: { 'ed25519:0': 'old' } } };
    const signed = signJson(input, 'domain', specKey);
    assert.deepEqual(input, { a: 1, signatures: { domain: { 'ed25519:0': 'old' } } });
    assert.deepEqual(Object.keys(signed.signatures.domain).sort(), ['ed25519:0', 'ed25519:1']);
  });

  test('verifies its own signatures and rejects modified objects', () => {
    const signed = signJson({ a: 1, nested: { b: [1, 2] } }, 'domain', specKey);
    assert.equal(verifyJsonSignature(signed, 'domain', 'ed25519:1', pub), true);
    assert.equal(verifyJsonSignature({ ...signed, a: 2 }, 'domain', 'ed25519:1', pub), false);
    assert.equal(verifyJsonSignature({ ...signed, unsigned: { extra: true } }, 'domain', 'ed25519:1', pub), true);
  });

  test('fails for a missing entity, key id, or unknown algorithm', () => {
    const signed = signJson({ a: 1 }, 'domain', specKey);
    assert.equal(verifyJsonSignature(signed, 'elsewhere', 'ed25519:1', pub), false);
    assert.equal(verifyJsonSignature(signed, 'domain', 'ed25519:2', pub), false);
    assert.equal(verifyJsonSignature({ ...signed, signatures: { domain: { 'curve25519:1': 'x' } } }, 'domain', 'curve25519:1', pub), false);
    assert.equal(verifyJsonSignature({ a: 1 }, 'domain', 'ed25519:1', pub), false);
    assert.equal(verifyJsonSignature({ a: 1, signatures: {} }, 'constructor', 'ed25519:1', pub), false);
  });

  test('fails (without throwing) on objects that are not canonical JSON', () => {
    const signed = signJson({ a: 1 }, 'domain', specKey);
    assert.equal(verifyJsonSignature({ ...signed, a: 1.5 }, 'domain', 'ed25519:1', pub), false);
  });
});

describe('hashAndSignEvent: spec "Event Signing" vectors', () => {
  test('minimal event', () => {
    const input = {
      room_id: '!x:domain',
      sender: '@a:domain',
      origin: 'domain',
      origin_server_ts: 1000000,
      signatures: {},
      hashes: {},
      type: 'X',
      content: {},
      prev_events: [],
      auth_events: [],
      depth: 3,
      unsigned: { age_ts: 1000000 },
    } as unknown as PDU;
    const signed = hashAndSignEvent(input, v1, 'domain', specKey);
    assert.deepEqual(signed, {
      auth_events: [],
      content: {},
      depth: 3,
      hashes: { sha256: '5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos' },
      origin: 'domain',
      origin_server_ts: 1000000,
      prev_events: [],
      room_id: '!x:domain',
      sender: '@a:domain',
      signatures: {
        domain: {
          'ed25519:1': 'KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg',
        },
      },
      type: 'X',
      unsigned: { age_ts: 1000000 },
    });
  });

  test('event with redactable content', () => {
    const input = {
      content: { body: 'Here is the message content' },
      event_id: '$0:domain',
      origin: 'domain',
      origin_server_ts: 1000000,
      type: 'm.room.message',
      room_id: '!r:domain',
      sender: '@u:domain',
      signatures: {},
      unsigned: { age_ts: 1000000 },
    } as unknown as PDU;
    const signed = hashAndSignEvent(input, v1, 'domain', specKey);
    assert.deepEqual(signed, {
      content: { body: 'Here is the message content' },
      event_id: '$0:domain',
      hashes: { sha256: 'onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g' },
      origin: 'domain',
      origin_server_ts: 1000000,
      type: 'm.room.message',
      room_id: '!r:domain',
      sender: '@u:domain',
      signatures: {
        domain: {
          'ed25519:1': 'Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA',
        },
      },
      unsigned: { age_ts: 1000000 },
    });
  });
});

describe('event signatures and content hashes', () => {
  const pub = publicKeyBase64(specKey);
  const base: PDU = {
    room_id: '!r:domain',
    sender: '@u:domain',
    type: 'm.room.message',
    content: { body: 'secret' },
    origin_server_ts: 5,
    depth: 4,
    prev_events: ['$p'],
    auth_events: ['$a'],
  };

  test('a signed event verifies, and so does its redacted copy', () => {
    const signed = hashAndSignEvent(base, v11, 'domain', specKey);
    assert.equal(verifyEventSignature(signed, v11, 'domain', 'ed25519:1', pub), true);
    assert.equal(verifyEventSignature(redactEvent(signed, v11), v11, 'domain', 'ed25519:1', pub), true);
    assert.equal(checkContentHash(signed, v11), true);
    // Redaction removes the body, which the content hash covers.
    assert.equal(checkContentHash(redactEvent(signed, v11), v11), false);
  });

  test('changing a protected field breaks the signature; changing content breaks only the hash', () => {
    const signed = hashAndSignEvent(base, v11, 'domain', specKey);
    assert.equal(verifyEventSignature({ ...signed, sender: '@evil:domain' }, v11, 'domain', 'ed25519:1', pub), false);
    const edited = { ...signed, content: { body: 'changed' } };
    assert.equal(verifyEventSignature(edited, v11, 'domain', 'ed25519:1', pub), true);
    assert.equal(checkContentHash(edited, v11), false);
  });

  test('a locally attached event_id does not affect v3+ hashes or signatures', () => {
    const signed = hashAndSignEvent(base, v11, 'domain', specKey);
    const withId = { ...signed, event_id: '$local' };
    assert.equal(verifyEventSignature(withId, v11, 'domain', 'ed25519:1', pub), true);
    assert.equal(checkContentHash(withId, v11), true);
  });

  test('a second server can add its signature without disturbing the first', () => {
    const other = generateSigningKey('x');
    const signed = hashAndSignEvent(base, v11, 'domain', specKey);
    const cosigned = hashAndSignEvent(signed, v11, 'other.example', other);
    assert.equal(verifyEventSignature(cosigned, v11, 'domain', 'ed25519:1', pub), true);
    assert.equal(verifyEventSignature(cosigned, v11, 'other.example', 'ed25519:x', publicKeyBase64(other)), true);
  });

  test('checkContentHash is false when hashes are missing or malformed', () => {
    assert.equal(checkContentHash(base, v11), false);
    assert.equal(checkContentHash({ ...base, hashes: { sha256: '!!' } }, v11), false);
  });

  test('requiredSignatureServers lists sender, v1 event id and authorising servers', () => {
    assert.deepEqual(requiredSignatureServers({ ...base, event_id: '$x:elsewhere' }, v1), ['domain', 'elsewhere']);
    assert.deepEqual(requiredSignatureServers({ ...base, event_id: '$x:elsewhere' }, v11), ['domain']);
    const join: PDU = {
      ...base,
      type: 'm.room.member',
      state_key: '@u:domain',
      content: { membership: 'join', join_authorised_via_users_server: '@mod:auth.example' },
    };
    assert.deepEqual(requiredSignatureServers(join, getRoomVersion('9')!), ['domain', 'auth.example']);
    assert.deepEqual(requiredSignatureServers(join, getRoomVersion('7')!), ['domain']);
  });
});

describe('hostile input', () => {
  test('a "__proto__" server name in signatures stays an ordinary entry', () => {
    const input = JSON.parse('{"a":1,"signatures":{"__proto__":{"ed25519:x":"y"}}}') as object;
    const signed = signJson(input, 'domain', specKey);
    assert.deepEqual(Object.keys(signed.signatures).sort(), ['__proto__', 'domain']);
    assert.equal(Object.getPrototypeOf(signed.signatures), Object.prototype);
  });
});
