import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, generateConfigToml, isPostgresUrl, loadConfig } from '../../src/config/config.js';
import { OPTIONS } from '../../src/config/options.js';

let dir: string;
before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ranvier-config-test-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** Assert `fn` throws a ConfigError naming `key`; returns its message. */
function configError(fn: () => unknown, key: string): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    assert.equal(e.key, key);
    assert.match(e.message, new RegExp(key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    return e.message;
  }
  assert.fail(`expected a ConfigError for ${key}`);
}

describe('loadConfig', () => {
  test('defaults, with derived paths filled in', () => {
    const c = loadConfig({ env: {} });
    for (const o of OPTIONS) {
      if (['signing_key_path', 'database', 'public_baseurl'].includes(o.key)) continue;
      assert.deepEqual((c as Record<string, unknown>)[o.key], o.default, o.key);
    }
    assert.equal(c.server_name, 'localhost');
    assert.equal(c.address, '127.0.0.1');
    assert.equal(c.port, 8008);
    assert.equal(c.data_dir, './data');
    assert.equal(c.allow_registration, false);
    assert.equal(c.signing_key_path, path.join('./data', 'signing.key'));
    assert.equal(c.database, path.join('./data', 'ranvier.db'));
    assert.equal(c.public_baseurl, 'http://127.0.0.1:8008/');
  });

  test('reads a TOML file', () => {
    const f = file('a.toml', [
      'server_name = "example.org"',
      'port = 8448',
      'allow_registration = true',
      'rate_limit_login_per_second = 0.5',
      'data_dir = "/var/lib/ranvier"',
      'database = "postgres://u:p@db/ranvier"',
    ].join('\n'));
    const c = loadConfig({ file: f, env: {} });
    assert.equal(c.server_name, 'example.org');
    assert.equal(c.port, 8448);
    assert.equal(c.allow_registration, true);
    assert.equal(c.rate_limit_login_per_second, 0.5);
    assert.equal(c.signing_key_path, path.join('/var/lib/ranvier', 'signing.key'));
    assert.equal(c.database, 'postgres://u:p@db/ranvier');
    assert.ok(isPostgresUrl(c.database));
    assert.equal(c.public_baseurl, 'http://127.0.0.1:8448/');
  });

  test('an environment variable wins over the file', () => {
    const f = file('b.toml', 'server_name = "file.example"\nport = 9000\nallow_registration = true\n');
    const c = loadConfig({
      file: f,
      env: { RANVIER_SERVER_NAME: 'env.example', RANVIER_PORT: '9001', RANVIER_ALLOW_REGISTRATION: 'false' },
    });
    assert.equal(c.server_name, 'env.example');
    assert.equal(c.port, 9001);
    assert.equal(c.allow_registration, false);
  });

  test('environment booleans accept the usual spellings', () => {
    for (const [raw, want] of [['1', true], ['yes', true], ['ON', true], ['0', false], ['no', false], ['off', false]] as const) {
      assert.equal(loadConfig({ env: { RANVIER_PRESENCE_ENABLED: raw } }).presence_enabled, want, raw);
    }
  });

  test('an invalid value names the key', () => {
    configError(() => loadConfig({ env: { RANVIER_PORT: 'eighty' } }), 'port');
    configError(() => loadConfig({ env: { RANVIER_PORT: '70000' } }), 'port');
    configError(() => loadConfig({ env: { RANVIER_PORT: '80.5' } }), 'port');
    configError(() => loadConfig({ env: { RANVIER_LOG_LEVEL: 'loud' } }), 'log_level');
    configError(() => loadConfig({ env: { RANVIER_ALLOW_REGISTRATION: 'maybe' } }), 'allow_registration');
    configError(() => loadConfig({ env: { RANVIER_SERVER_NAME: 'not a name' } }), 'server_name');
    configError(() => loadConfig({ file: file('c.toml', 'port = true\n'), env: {} }), 'port');
    configError(() => loadConfig({ file: file('d.toml', 'max_request_size = 0\n'), env: {} }), 'max_request_size');
    const msg = configError(() => loadConfig({ env: { RANVIER_EVENT_CACHE_SIZE: '-1' } }), 'event_cache_size');
    assert.match(msg, /0 or more/);
  });

  test('an environment error says it came from the environment', () => {
    const msg = configError(() => loadConfig({ env: { RANVIER_PORT: 'x' } }), 'port');
    assert.match(msg, /RANVIER_PORT/);
  });

  test('an unknown key in the file is rejected', () => {
    const msg = configError(() => loadConfig({ file: file('e.toml', 'server_nmae = "typo.example"\n'), env: {} }), 'server_nmae');
    assert.match(msg, /unknown/);
  });

  test('unreadable or malformed files are config errors', () => {
    configError(() => loadConfig({ file: path.join(dir, 'missing.toml'), env: {} }), 'config');
    configError(() => loadConfig({ file: file('f.toml', 'server_name = \n'), env: {} }), 'config');
  });

  test('overrides win over the environment', () => {
    const c = loadConfig({ env: { RANVIER_PORT: '9001' }, overrides: { port: 0 } });
    assert.equal(c.port, 0);
  });

  test('generateConfigToml round-trips to the defaults', () => {
    const text = generateConfigToml();
    for (const o of OPTIONS) assert.match(text, new RegExp(`^${o.key} = `, 'm'), o.key);
    const fromFile = loadConfig({ file: file('generated.toml', text), env: {} });
    assert.deepEqual(fromFile, loadConfig({ env: {} }));
  });
});
