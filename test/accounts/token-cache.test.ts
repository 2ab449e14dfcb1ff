/**
 * The access-token cache: changes made outside this process (the CLI writing
 * the database, another worker) reach requests within TOKEN_CACHE_TTL_MS, and
 * locked accounts get 401 M_USER_LOCKED except where the spec keeps logout open.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyRequest } from 'fastify';
import { TOKEN_CACHE_TTL_MS } from '../../src/accounts/tokens.js';
import { MatrixError } from '../../src/server/errors.js';
import { withServiceContext } from '../helpers/service-context.js';

const request = (token: string) => ({ headers: { authorization: `Bearer ${token}` }, query: {}, ip: '127.0.0.1' }) as unknown as FastifyRequest;

async function errcodeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    assert.ok(err instanceof MatrixError, String(err));
    return err.errcode;
  }
}

test('a deactivation written straight to the database applies once the cached lookup expires', async (t) => {
  await withServiceContext(async (ctx) => {
    const userId = await ctx.accounts.createUser('alice', undefined);
    const token = await ctx.storage.db.transaction().execute((tx) => ctx.tokens.issue(tx, userId, 'DEV'));
    const clock = { now: Date.now() };
    t.mock.method(Date, 'now', () => clock.now);

    assert.equal((await ctx.tokens.authenticate(request(token))).userId, userId);
    await ctx.storage.db.updateTable('users').set({ deactivated: 1 }).where('user_id', '=', userId).execute();
    // Within the TTL the cached answer stands (that is what the cache is for)...
    clock.now += TOKEN_CACHE_TTL_MS - 1000;
    assert.equal((await ctx.tokens.authenticate(request(token))).userId, userId);
    // ...and after it the database is asked again.
    clock.now += 2000;
    assert.equal(await errcodeOf(ctx.tokens.authenticate(request(token))), 'M_UNKNOWN_TOKEN');
  });
});

test('a locked account: M_USER_LOCKED with soft_logout, except for logout; forgetUser applies it at once', async () => {
  await withServiceContext(async (ctx) => {
    const userId = await ctx.accounts.createUser('bob', undefined);
    const token = await ctx.storage.db.transaction().execute((tx) => ctx.tokens.issue(tx, userId, 'DEV'));
    assert.equal((await ctx.tokens.authenticate(request(token))).userId, userId);

    await ctx.storage.db.updateTable('users').set({ locked: 1 }).where('user_id', '=', userId).execute();
    ctx.tokens.forgetUser(userId);
    const err = await ctx.tokens.authenticate(request(token)).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof MatrixError);
    assert.equal(err.errcode, 'M_USER_LOCKED');
    assert.equal(err.status, 401);
    assert.equal(err.extra.soft_logout, true);
    assert.equal((await ctx.tokens.authenticate(request(token), { allowLocked: true })).userId, userId);

    await ctx.storage.db.updateTable('users').set({ locked: 0 }).where('user_id', '=', userId).execute();
    ctx.tokens.forgetUser(userId);
    assert.equal((await ctx.tokens.authenticate(request(token))).userId, userId, 'the same token works again once unlocked');
  });
});
