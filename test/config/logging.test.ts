import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, scrubUrl } from '../../src/server/logging.js';

function capture(level = 'info') {
  const lines: string[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  // pino accepts any object with write(); Writable is one.
  const log = createLogger({ log_level: level }, dest as unknown as Parameters<typeof createLogger>[1]);
  return { log, text: () => lines.join('') };
}

test('log_level decides what is written', () => {
  const { log, text } = capture('warn');
  log.info('hidden');
  log.warn('shown');
  assert.doesNotMatch(text(), /hidden/);
  assert.match(text(), /shown/);
  assert.equal(createLogger({ log_level: 'silent' }).isLevelEnabled('fatal'), false);
});

test('passwords, tokens and authorization headers never reach the log', () => {
  const { log, text } = capture();
  log.info({
    password: 'SECRET-1',
    body: { password: 'SECRET-2', new_password: 'SECRET-3', auth: { type: 'm.login.password', password: 'SECRET-4', session: 'keep-me' } },
    req: { headers: { authorization: 'Bearer SECRET-5', host: 'h' }, query: { access_token: 'SECRET-6' } },
    headers: { authorization: 'Bearer SECRET-7' },
    access_token: 'SECRET-8',
    reply: { access_token: 'SECRET-9', refresh_token: 'SECRET-10' },
    url: '/_matrix/client/v3/sync?access_token=SECRET-11&timeout=0',
  }, 'request');
  const out = text();
  assert.doesNotMatch(out, /SECRET/);
  assert.match(out, /keep-me/);
  assert.match(out, /timeout=0/);
  assert.match(out, /\[redacted\]/);
});

test('scrubUrl removes query tokens only', () => {
  assert.equal(scrubUrl('/a?access_token=abc&b=1'), '/a?access_token=[redacted]&b=1');
  assert.equal(scrubUrl('/a?b=1&access_token=abc'), '/a?b=1&access_token=[redacted]');
  assert.equal(scrubUrl('/a?b=1'), '/a?b=1');
});
