/**
 * POST /pushers/set body validation (spec: pusher.yaml).
 *
 *   node --import tsx --test test/push/pushers.test.ts
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MatrixError } from '../../src/server/errors.js';
import { parseSetPusher } from '../../src/push/pushers.js';

const good = () => ({
  lang: 'en',
  kind: 'http',
  app_display_name: 'Mat Rix',
  device_display_name: 'iPhone 9',
  profile_tag: 'xxyyzz',
  app_id: 'com.example.app.ios',
  pushkey: 'APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ',
  data: { url: 'https://push-gateway.location.here/_matrix/push/v1/notify', format: 'event_id_only' },
  append: false,
});

function errcode(body: unknown): string {
  try {
    parseSetPusher(body);
  } catch (e) {
    assert.ok(e instanceof MatrixError);
    assert.equal(e.status, 400);
    return e.errcode;
  }
  assert.fail('expected an error');
}

describe('parseSetPusher', () => {
  test('the spec example is accepted', () => {
    const p = parseSetPusher(good());
    assert.equal(p.kind, 'http');
    assert.equal(p.app_id, 'com.example.app.ios');
    assert.deepEqual(p.data, good().data);
    assert.equal(p.append, false);
    assert.equal(p.profile_tag, 'xxyyzz');
  });

  test('kind null deletes and needs only app_id and pushkey', () => {
    assert.deepEqual(parseSetPusher({ kind: null, app_id: 'a', pushkey: 'k' }), { kind: null, app_id: 'a', pushkey: 'k', append: false });
  });

  test('missing parameters', () => {
    const { kind: _k, ...noKind } = good();
    assert.equal(errcode(noKind), 'M_MISSING_PARAM');
    const { app_id: _a, ...noApp } = good();
    assert.equal(errcode(noApp), 'M_MISSING_PARAM');
    const { lang: _l, data: _d, ...noLangData } = good();
    assert.equal(errcode(noLangData), 'M_MISSING_PARAM');
    assert.equal(errcode({ ...good(), data: {} }), 'M_MISSING_PARAM', 'http needs data.url');
  });

  test('wrong types and bad values', () => {
    assert.equal(errcode([]), 'M_NOT_JSON');
    assert.equal(errcode({ ...good(), kind: 5 }), 'M_BAD_JSON');
    assert.equal(errcode({ ...good(), pushkey: 5 }), 'M_BAD_JSON');
    assert.equal(errcode({ ...good(), data: 'x' }), 'M_BAD_JSON');
    assert.equal(errcode({ ...good(), append: 'yes' }), 'M_BAD_JSON');
    assert.equal(errcode({ ...good(), app_id: 'a'.repeat(65) }), 'M_INVALID_PARAM');
    assert.equal(parseSetPusher({ ...good(), app_id: 'a'.repeat(64) }).app_id.length, 64);
    assert.equal(errcode({ ...good(), pushkey: 'é'.repeat(257) }), 'M_INVALID_PARAM', '514 bytes');
    assert.equal(parseSetPusher({ ...good(), pushkey: 'k'.repeat(512) }).pushkey.length, 512);
    assert.equal(errcode({ ...good(), data: { url: 'https://gw.example/other/path' } }), 'M_INVALID_PARAM');
    assert.equal(errcode({ ...good(), data: { url: 'not a url' } }), 'M_INVALID_PARAM');
    assert.equal(errcode({ ...good(), data: { url: 'ftp://gw.example/_matrix/push/v1/notify' } }), 'M_INVALID_PARAM');
    assert.equal(errcode({ ...good(), kind: 'carrier-pigeon' }), 'M_INVALID_PARAM');
  });
});
