import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalJson, CanonicalJsonError, compareCodepoints } from '../../src/core/index.js';

describe('canonicalJson: spec appendix examples', () => {
  // Each pair is (input JSON text as written in the spec, expected canonical output).
  const examples: Array<[string, string]> = [
    ['{}', '{}'],
    ['{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'],
    ['{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'],
    ['{"b":"2","a":"1"}', '{"a":"1","b":"2"}'],
    [
      '{"auth":{"success":true,"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"medium":"email","address":"john.doe@example.org"},{"medium":"msisdn","address":"123456789"}]}}}',
      '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}',
    ],
    ['{"a": "日本語"}', '{"a":"日本語"}'],
    ['{"本": 2, "日": 1}', '{"日":1,"本":2}'],
    ['{"a": "\\u65E5"}', '{"a":"日"}'],
    ['{"a": null}', '{"a":null}'],
    ['{"a": -0, "b": 1e10}', '{"a":0,"b":10000000000}'],
  ];
  for (const [input, expected] of examples) {
    test(`${input.replace(/\s+/g, ' ').slice(0, 50)} -> ${expected.slice(0, 40)}`, () => {
      assert.equal(canonicalJson(JSON.parse(input)), expected);
    });
  }
});

describe('canonicalJson: escaping', () => {
  test('uses short escapes and lowercase \\u00XX for other control characters', () => {
    assert.equal(canonicalJson('\b\t\n\f\r"\\'), '"\\b\\t\\n\\f\\r\\"\\\\"');
    assert.equal(canonicalJson('\u0000\u001f\u000b'), '"\\u0000\\u001f\\u000b"');
  });
  test('leaves DEL, non-ASCII and U+2028 raw', () => {
    assert.equal(canonicalJson('\u007f\u00e9\u2028😀'), '"\u007f\u00e9\u2028😀"');
  });
  test('does not escape forward slashes', () => {
    assert.equal(canonicalJson('a/b'), '"a/b"');
  });
  test('rejects lone surrogates, which have no UTF-8 encoding', () => {
    assert.throws(() => canonicalJson('\ud800'), CanonicalJsonError);
    assert.throws(() => canonicalJson({ '\udc00': 1 }), CanonicalJsonError);
  });
});

describe('canonicalJson: key order', () => {
  test('sorts by codepoint, not by UTF-16 code unit', () => {
    // U+FF61 is a single code unit 0xFF61; U+1F600 is the pair 0xD83D 0xDE00.
    // By code unit the emoji sorts first, by codepoint it sorts last.
    const value = { '😀': 1, '\uff61': 2, a: 3 };
    assert.equal(canonicalJson(value), '{"a":3,"\uff61":2,"😀":1}');
    assert.ok(compareCodepoints('😀', '\uff61') > 0);
    assert.ok(compareCodepoints('a', 'ab') < 0);
    assert.equal(compareCodepoints('x', 'x'), 0);
  });
  test('sorts nested objects and keeps array order', () => {
    assert.equal(canonicalJson({ z: [3, 1, { y: 1, x: 2 }], a: {} }), '{"a":{},"z":[3,1,{"x":2,"y":1}]}');
  });
  test('treats a "__proto__" key from JSON.parse as ordinary data', () => {
    assert.equal(canonicalJson(JSON.parse('{"__proto__":{"x":1},"a":1}')), '{"__proto__":{"x":1},"a":1}');
  });
});

describe('canonicalJson: numbers', () => {
  test('accepts the extremes of the integer range', () => {
    assert.equal(canonicalJson([2 ** 53 - 1, -(2 ** 53) + 1]), '[9007199254740991,-9007199254740991]');
  });
  test('rejects integers outside the range', () => {
    assert.throws(() => canonicalJson(2 ** 53), CanonicalJsonError);
    assert.throws(() => canonicalJson(-(2 ** 53)), CanonicalJsonError);
  });
  test('rejects floats, NaN and infinities', () => {
    for (const n of [1.5, Number.NaN, Infinity, -Infinity]) {
      assert.throws(() => canonicalJson({ n }), CanonicalJsonError, String(n));
    }
  });
  test('non-strict mode serialises floats for legacy (v1-5) events', () => {
    assert.equal(canonicalJson({ n: 50.57 }, { strict: false }), '{"n":50.57}');
    assert.throws(() => canonicalJson({ n: Infinity }, { strict: false }), CanonicalJsonError);
  });
});

describe('canonicalJson: non-JSON values', () => {
  test('rejects values JSON cannot represent', () => {
    for (const bad of [undefined, () => 1, Symbol('s'), 10n, new Date(0), new Map(), Buffer.from('x')]) {
      assert.throws(() => canonicalJson(bad), CanonicalJsonError);
    }
    assert.throws(() => canonicalJson([undefined]), CanonicalJsonError);
  });
  test('omits object properties whose value is undefined', () => {
    assert.equal(canonicalJson({ a: undefined, b: 1 }), '{"b":1}');
  });
  test('rejects cyclic structures instead of overflowing the stack', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => canonicalJson(cyclic), CanonicalJsonError);
  });
  test('accepts null-prototype objects', () => {
    const o = Object.create(null) as Record<string, unknown>;
    o.b = true;
    o.a = false;
    assert.equal(canonicalJson(o), '{"a":false,"b":true}');
  });
});
