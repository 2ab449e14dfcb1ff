import { test } from 'node:test';
import assert from 'node:assert/strict';
import { baseType, contentDisposition, mediaHeaders, MEDIA_CSP } from '../../src/media/headers.js';

test('inline only for the safe types, by base type', () => {
  assert.equal(contentDisposition('image/png', null), 'inline');
  assert.equal(contentDisposition('Text/Plain; charset=utf-8', null), 'inline');
  assert.equal(contentDisposition('video/mp4', null), 'inline');
  assert.equal(contentDisposition('audio/ogg', null), 'inline');
  for (const t of ['image/svg+xml', 'text/html', 'application/xhtml+xml', 'application/javascript', 'application/pdf', '', null, undefined]) {
    assert.equal(contentDisposition(t, null), 'attachment', String(t));
  }
  assert.equal(baseType(' IMAGE/PNG ; x=y'), 'image/png');
});

test('filenames: a plain token as is, anything else RFC 5987-encoded', () => {
  assert.equal(contentDisposition('image/png', 'cat.png'), 'inline; filename=cat.png');
  assert.equal(contentDisposition('image/png', 'my cat.png'), "inline; filename*=utf-8''my%20cat.png");
  assert.equal(contentDisposition('text/html', 'a";b\r\n.html'), "attachment; filename*=utf-8''a%22%3Bb%0D%0A.html");
  assert.equal(contentDisposition(null, '日本.txt'), "attachment; filename*=utf-8''%E6%97%A5%E6%9C%AC.txt");
});

test('every safety header is present', () => {
  const h = mediaHeaders(null, null);
  assert.equal(h['Content-Type'], 'application/octet-stream');
  assert.equal(h['Content-Security-Policy'], MEDIA_CSP);
  assert.match(MEDIA_CSP, /^sandbox; default-src 'none'; script-src 'none'; plugin-types application\/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';$/);
  assert.equal(h['X-Content-Type-Options'], 'nosniff');
  assert.equal(h['Cross-Origin-Resource-Policy'], 'cross-origin');
});
