import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Base64Error, decodeBase64, encodeBase64, encodeBase64Url } from '../../src/core/index.js';

describe('unpadded base64', () => {
  // The spec's examples (appendices, "Unpadded Base64").
  const examples: Array<[string, string]> = [
    ['', ''],
    ['f', 'Zg'],
    ['fo', 'Zm8'],
    ['foo', 'Zm9v'],
    ['foob', 'Zm9vYg'],
    ['fooba', 'Zm9vYmE'],
    ['foobar', 'Zm9vYmFy'],
  ];
  for (const [plain, encoded] of examples) {
    test(`UNPADDED_BASE64(${JSON.stringify(plain)}) = ${JSON.stringify(encoded)}`, () => {
      assert.equal(encodeBase64(Buffer.from(plain)), encoded);
      assert.equal(decodeBase64(encoded).toString(), plain);
    });
  }

  test('url-safe variant uses - and _ and no padding', () => {
    const bytes = Uint8Array.from([0xfb, 0xff, 0xbf]);
    assert.equal(encodeBase64(bytes), '+/+/');
    assert.equal(encodeBase64Url(bytes), '-_-_');
    assert.equal(encodeBase64Url(Uint8Array.from([0xff])), '_w');
  });

  test('encodes only the viewed bytes of a Uint8Array slice', () => {
    const backing = Buffer.from('xxfooxx');
    assert.equal(encodeBase64(backing.subarray(2, 5)), 'Zm9v');
  });

  test('decodes padded, unpadded, standard and url-safe input alike', () => {
    for (const s of ['+/+/', '-_-_', '+/8', '+/8=', '-_8']) {
      assert.ok(decodeBase64(s).length >= 2, s);
    }
    assert.deepEqual(decodeBase64('Zg=='), Buffer.from('f'));
    assert.deepEqual(decodeBase64('-_-_'), Buffer.from([0xfb, 0xff, 0xbf]));
  });

  test('rejects characters outside the alphabets and impossible lengths', () => {
    for (const bad of ['Zm9v!', 'Zm 9v', 'Z', 'Zm9vY', 'Zg===', 'Zg=']) {
      assert.throws(() => decodeBase64(bad), Base64Error, bad);
    }
  });

  test('tolerates non-zero trailing bits (the spec test seed has them)', () => {
    assert.equal(decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1').length, 32);
  });
});
