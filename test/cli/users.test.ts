/**
 * `ranvier user reset-password | deactivate | make-admin` as child
 * processes, with their effects checked in the database.
 *
 *   node --import tsx --test test/cli/users.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { verifyPassword } from '../../src/accounts/passwords.js';
import { cliEnv, type CliEnv } from './run-cli.js';

describe('ranvier user (admin commands)', { timeout: 600_000 }, () => {
  let cli: CliEnv;
  const user = (id: string) => cli.withDb((db) => db.selectFrom('users').selectAll().where('user_id', '=', id).executeTakeFirstOrThrow());

  before(async () => {
    cli = await cliEnv();
    for (const name of ['alice', 'bob']) {
      const r = await cli.run('user', 'create', name, '--password', 'first password');
      assert.equal(r.code, 0, r.stderr);
    }
  });
  after(() => cli?.cleanup());

  test('make-admin and make-admin --revoke', async () => {
    let r = await cli.run('user', 'make-admin', 'alice');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '@alice:example.org is now a server admin\n');
    assert.equal((await user('@alice:example.org')).is_admin, 1);
    assert.equal((await user('@bob:example.org')).is_admin, 0, 'only alice changed');

    r = await cli.run('user', 'make-admin', '@alice:example.org');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /already a server admin/);

    r = await cli.run('user', 'make-admin', 'alice', '--revoke');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '@alice:example.org is no longer a server admin\n');
    assert.equal((await user('@alice:example.org')).is_admin, 0);
  });

  test('reset-password with --password and generated, revoking access tokens', async () => {
    await cli.withDb((db) => db.insertInto('access_tokens').values({ token_hash: 'h1', user_id: '@bob:example.org', device_id: 'D1', created_ts: Date.now() }).execute());
    let r = await cli.run('user', 'reset-password', 'bob', '--password', 'second password');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^reset the password of @bob:example\.org/);
    let row = await user('@bob:example.org');
    assert.equal(await verifyPassword(row.password_hash, 'second password'), true);
    assert.equal(await verifyPassword(row.password_hash, 'first password'), false);
    const tokens = await cli.withDb((db) => db.selectFrom('access_tokens').select('token_hash').where('user_id', '=', '@bob:example.org').execute());
    assert.deepEqual(tokens, [], 'sessions signed out');

    r = await cli.run('user', 'reset-password', 'bob');
    assert.equal(r.code, 0, r.stderr);
    const generated = /^password: (\S+)$/m.exec(r.stdout)?.[1];
    assert.ok(generated, r.stdout);
    row = await user('@bob:example.org');
    assert.equal(await verifyPassword(row.password_hash, generated), true);

    r = await cli.run('user', 'reset-password', 'bob', '--password', '');
    assert.equal(r.code, 1);
    assert.equal(await verifyPassword((await user('@bob:example.org')).password_hash, generated), true, 'unchanged');
  });

  test('unknown users, foreign servers and bad usage', async () => {
    let r = await cli.run('user', 'deactivate', 'nobody');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no such user @nobody:example\.org/);
    r = await cli.run('user', 'make-admin', 'nobody');
    assert.equal(r.code, 1);
    r = await cli.run('user', 'reset-password', 'nobody', '--password', 'x y z w v');
    assert.equal(r.code, 1);
    r = await cli.run('user', 'make-admin', '@alice:elsewhere.org');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /belongs to elsewhere\.org/);
    r = await cli.run('user', 'deactivate');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /usage: ranvier user deactivate NAME/);
    r = await cli.run('user', 'frobnicate', 'alice');
    assert.equal(r.code, 2);
    const count = await cli.withDb(async (db) => (await db.selectFrom('users').select('user_id').execute()).length);
    assert.equal(count, 2, 'no user was created by the failures');
  });

  test('deactivate', async () => {
    await cli.withDb((db) => db.insertInto('access_tokens').values({ token_hash: 'h2', user_id: '@alice:example.org', device_id: 'D2', created_ts: Date.now() }).execute());
    let r = await cli.run('user', 'deactivate', 'alice');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'deactivated user @alice:example.org\n');
    const row = await user('@alice:example.org');
    assert.equal(row.deactivated, 1);
    const tokens = await cli.withDb((db) => db.selectFrom('access_tokens').select('token_hash').where('user_id', '=', '@alice:example.org').execute());
    assert.deepEqual(tokens, []);
    assert.equal((await user('@bob:example.org')).deactivated, 0, 'only alice changed');

    r = await cli.run('user', 'deactivate', 'alice');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /already deactivated/);
    r = await cli.run('user', 'reset-password', 'alice', '--password', 'a new one here');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /deactivated/);
    r = await cli.run('user', 'list');
    assert.match(r.stdout, /@alice:example\.org\s+deactivated/);
  });
});
