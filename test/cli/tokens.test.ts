/**
 * `ranvier token create | list | revoke` as child processes, with their
 * effects checked in the database.
 *
 *   node --import tsx --test test/cli/tokens.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseExpiry } from '../../src/cli/tokens.js';
import { cliEnv, type CliEnv } from './run-cli.js';

test('parseExpiry: durations and ISO dates', () => {
  const now = Date.UTC(2026, 0, 1);
  assert.equal(parseExpiry('30m', now), now + 30 * 60_000);
  assert.equal(parseExpiry('12h', now), now + 12 * 3_600_000);
  assert.equal(parseExpiry('7d', now), now + 7 * 86_400_000);
  assert.equal(parseExpiry('2w', now), now + 14 * 86_400_000);
  assert.equal(parseExpiry('2026-12-31', now), Date.UTC(2026, 11, 31));
  assert.equal(parseExpiry('2026-06-01T12:30:00Z', now), Date.UTC(2026, 5, 1, 12, 30));
  for (const bad of ['0d', 'soon', '7', '7y', '2025-12-31', '2026-13-45', '']) {
    assert.throws(() => parseExpiry(bad, now), Error, bad);
  }
});

describe('ranvier token', { timeout: 600_000 }, () => {
  let cli: CliEnv;
  const rows = () => cli.withDb((db) => db.selectFrom('registration_tokens').selectAll().orderBy('token').execute());

  before(async () => {
    cli = await cliEnv();
  });
  after(() => cli?.cleanup());

  test('create with uses, expiry and length', async () => {
    const before = Date.now();
    let r = await cli.run('token', 'create', '--uses', '3', '--expires', '7d');
    assert.equal(r.code, 0, r.stderr);
    const token = /^created registration token (\S+) \(3 uses, expires /.exec(r.stdout)?.[1];
    assert.ok(token, r.stdout);
    assert.match(token, /^[A-Za-z0-9._~-]{16}$/);
    let all = await rows();
    assert.equal(all.length, 1);
    assert.equal(all[0].token, token);
    assert.equal(Number(all[0].uses_allowed), 3);
    const expiry = Number(all[0].expiry_time);
    assert.ok(expiry >= before + 7 * 86_400_000 && expiry <= Date.now() + 7 * 86_400_000, String(expiry));

    r = await cli.run('token', 'create', '--length', '40', '--json');
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout) as { token: string; uses_allowed: null; expiry_time: null; pending: number; completed: number };
    assert.equal(json.token.length, 40);
    assert.deepEqual({ ...json, token: '' }, { token: '', uses_allowed: null, pending: 0, completed: 0, expiry_time: null });
    all = await rows();
    assert.equal(all.length, 2);
    const second = all.find((t) => t.token === json.token);
    assert.ok(second);
    assert.equal(second.uses_allowed, null);
    assert.equal(second.expiry_time, null);
  });

  test('bad options create nothing', async () => {
    const count = (await rows()).length;
    for (const args of [
      ['--length', '0'], ['--length', '65'], ['--length', 'ten'],
      ['--uses=-1'], ['--uses', 'lots'],
      ['--expires', 'tomorrow'], ['--expires', '2000-01-01'],
    ]) {
      const r = await cli.run('token', 'create', ...args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^ranvier: cannot create token: /, args.join(' '));
    }
    const r = await cli.run('token', 'create', 'extra');
    assert.equal(r.code, 2);
    assert.equal((await rows()).length, count);
  });

  test('list and revoke', async () => {
    const all = await rows();
    // An exhausted token shows as not valid.
    await cli.withDb((db) => db.updateTable('registration_tokens').set({ uses_allowed: 1, completed: 1 }).where('token', '=', all[0].token).execute());
    let r = await cli.run('token', 'list');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0], /^TOKEN\s+USED\s+PENDING\s+EXPIRES\s+VALID$/);
    assert.equal(lines.at(-1), '2 tokens');
    const line = (t: string) => lines.find((l) => l.startsWith(t + ' '));
    assert.match(line(all[0].token) ?? '', /\s1\/1\s+0\s+\S+\s+no$/);
    assert.match(line(all[1].token) ?? '', /\s0\/(3|unlimited)\s+0\s+\S+\s+yes$/);

    r = await cli.run('token', 'list', '--json');
    const listed = JSON.parse(r.stdout) as Array<{ token: string }>;
    assert.deepEqual(listed.map((t) => t.token), all.map((t) => t.token));

    r = await cli.run('token', 'revoke', all[0].token);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `revoked registration token ${all[0].token}\n`);
    assert.deepEqual((await rows()).map((t) => t.token), [all[1].token]);

    r = await cli.run('token', 'revoke', all[0].token);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no such registration token/);
    r = await cli.run('token', 'revoke');
    assert.equal(r.code, 2);
    r = await cli.run('token', 'frob');
    assert.equal(r.code, 2);
    assert.equal((await rows()).length, 1);
  });
});
