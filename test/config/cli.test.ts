import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseToml } from 'smol-toml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const main = path.join(root, 'src', 'main.ts');

let dir: string;
before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ranvier-cli-test-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Run the CLI from source with a clean RANVIER_* environment plus `env`. */
function cli(args: string[], env: Record<string, string> = {}) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RANVIER_')));
  const r = spawnSync(process.execPath, ['--import', 'tsx', main, ...args], {
    cwd: root, // so --import tsx resolves from the repository
    env: { ...base, RANVIER_DATA_DIR: path.join(dir, 'data'), ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('ranvier CLI (config commands)', () => {
  test('config generate prints a TOML file with every option', () => {
    const r = cli(['config', 'generate']);
    assert.equal(r.code, 0, r.stderr);
    const parsed = parseToml(r.stdout);
    assert.equal(parsed.server_name, 'localhost');
    assert.equal(parsed.port, 8008);
  });

  test('config check accepts a valid file', () => {
    const f = path.join(dir, 'ok.toml');
    writeFileSync(f, 'server_name = "example.org"\n');
    const r = cli(['config', 'check', '--config', f]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /configuration OK/);
    assert.match(r.stdout, /example\.org/);
  });

  test('config check reads RANVIER_CONFIG', () => {
    const f = path.join(dir, 'env.toml');
    writeFileSync(f, 'server_name = "from-env-file.example"\n');
    const r = cli(['config', 'check'], { RANVIER_CONFIG: f });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /from-env-file\.example/);
  });

  test('an invalid value stops serve with the key named and exit code 1', () => {
    const r = cli(['serve'], { RANVIER_PORT: 'eighty' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /invalid configuration: port: must be a number/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace for a configuration error');
  });

  test('an unknown key in the file is rejected with exit code 1', () => {
    const f = path.join(dir, 'typo.toml');
    writeFileSync(f, 'sever_name = "x"\n');
    const r = cli(['config', 'check', '--config', f]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /sever_name/);
  });

  test('unknown commands and options exit with code 2 and usage', () => {
    const a = cli(['frobnicate']);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /Usage: ranvier/);
    const b = cli(['config', 'check', '--nope']);
    assert.equal(b.code, 2);
  });
});
