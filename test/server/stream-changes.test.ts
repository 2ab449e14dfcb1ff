import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { StreamChangeCache, StreamChanges, userRoomKey } from '../../src/server/stream-changes.js';
import { WeightedLru } from '../../src/server/lru.js';
import { createBaseContext } from '../../src/server/context.js';
import { loadConfig } from '../../src/config/config.js';
import { silentLogger } from '../../src/server/logging.js';
import { generateSigningKey } from '../../src/core/signing-key.js';
import { currentStreamPos, openStorage } from '../../src/storage/db.js';

test('change cache: nothing is known below the starting position', () => {
  const c = new StreamChangeCache('t', 10);
  assert.equal(c.earliestKnown, 10);
  assert.equal(c.hasEntityChanged('@a', 9), true, 'a token from before the start may have missed changes');
  assert.equal(c.hasEntityChanged('@a', 10), false);
  assert.equal(c.hasAnyChanged(9), true);
  assert.equal(c.hasAnyChanged(10), false);
  assert.deepEqual(c.changedAmong(['@a', '@b'], 9), ['@a', '@b']);
  assert.deepEqual(c.changedAmong(['@a', '@b'], 10), []);
  assert.equal(c.allChangedSince(9), undefined);
  assert.deepEqual(c.allChangedSince(10), []);
});

test('change cache: a change is seen by readers whose since is below it, and only by them', () => {
  const c = new StreamChangeCache('t', 0);
  c.entityChanged('@a', 5);
  c.entityChanged('@b', 7);
  assert.equal(c.hasEntityChanged('@a', 4), true);
  assert.equal(c.hasEntityChanged('@a', 5), false);
  assert.equal(c.hasEntityChanged('@b', 5), true);
  assert.equal(c.hasEntityChanged('@c', 0), false);
  assert.equal(c.hasAnyChanged(6), true);
  assert.equal(c.hasAnyChanged(7), false);
  assert.deepEqual(c.changedAmong(['@a', '@b', '@c'], 4), ['@a', '@b']);
  assert.deepEqual(c.changedAmong(['@a', '@b', '@c'], 5), ['@b']);
  assert.deepEqual(c.allChangedSince(4)?.sort(), ['@a', '@b']);
  assert.deepEqual(c.allChangedSince(4, 1), undefined, 'more than the limit: the caller falls back to its query');
  // A later change moves the entity; an older one recorded late never moves it back.
  c.entityChanged('@a', 9);
  c.entityChanged('@a', 6);
  assert.equal(c.hasEntityChanged('@a', 8), true);
  assert.equal(c.maxPosition, 9);
});

test('change cache: eviction keeps it bounded and raises the earliest known position', () => {
  const c = new StreamChangeCache('t', 0, 3);
  for (let i = 1; i <= 5; i++) c.entityChanged(`@u${i}`, i * 10);
  assert.equal(c.size, 3);
  // @u1 (10) and @u2 (20) were dropped: below 20 nothing is known any more.
  assert.equal(c.earliestKnown, 20);
  assert.equal(c.hasEntityChanged('@u1', 15), true, 'evicted: maybe changed');
  assert.equal(c.hasEntityChanged('@u1', 20), false, 'its change (10) is before 20');
  assert.equal(c.hasEntityChanged('@u2', 19), true);
  assert.equal(c.hasEntityChanged('@u3', 20), true);
  assert.equal(c.hasEntityChanged('@u3', 30), false);
  assert.deepEqual(c.changedAmong(['@u1', '@u4'], 19), ['@u1', '@u4']);
  assert.deepEqual(c.changedAmong(['@u1', '@u4'], 35), ['@u4']);
  // A change re-recorded moves to the newest end and is not the next evicted.
  c.entityChanged('@u3', 60);
  c.entityChanged('@u6', 70);
  assert.equal(c.size, 3);
  assert.equal(c.earliestKnown, 40, '@u4 (40) went, not @u3');
  assert.equal(c.hasEntityChanged('@u3', 50), true);
  // Changes at or below the earliest known position add nothing.
  c.entityChanged('@old', 40);
  assert.equal(c.size, 3);
  assert.equal(c.hasEntityChanged('@old', 40), false);
});

test('change cache: reset forgets everything up to a position', () => {
  const c = new StreamChangeCache('t', 0);
  c.entityChanged('@a', 3);
  c.reset(8);
  assert.equal(c.size, 0);
  assert.equal(c.hasEntityChanged('@b', 7), true);
  assert.equal(c.hasEntityChanged('@b', 8), false);
  assert.equal(c.hasAnyChanged(7), true);
  const all = new StreamChanges(0);
  let resets = 0;
  all.onReset(() => resets++);
  all.accountData.entityChanged('@a', 2);
  all.pushActions.entityChanged(userRoomKey('@a', '!r'), 2);
  all.reset(5);
  assert.equal(resets, 1);
  assert.equal(all.accountData.hasEntityChanged('@z', 4), true);
  assert.equal(all.pushActions.hasEntityChanged(userRoomKey('@z', '!r'), 5), false);
});

test('weighted LRU: bounded by count and by total weight', () => {
  const l = new WeightedLru<string, number[]>(3, 10, (v) => v.length);
  l.set('a', [1, 2]);
  l.set('b', [1, 2]);
  l.set('c', [1, 2]);
  l.set('d', [1]);
  assert.equal(l.size, 3);
  assert.equal(l.get('a'), undefined);
  l.get('b');
  l.set('e', [1, 2]);
  assert.equal(l.size, 3);
  assert.equal(l.weight, 5);
  assert.equal(l.get('c'), undefined, 'least recently used went first');
  assert.deepEqual(l.get('b'), [1, 2]);
  for (let i = 0; i < 5; i++) l.set(`w${i}`, [1, 2]);
  assert.ok(l.weight <= 10);
  l.set('huge', new Array(3).fill(0));
  assert.equal(l.get('huge'), undefined, 'a value heavier than a quarter of the budget is not kept');
  l.delete('b');
  assert.equal(l.get('b'), undefined);
});

async function makeContext() {
  const storage = await openStorage(':memory:');
  const config = loadConfig({ env: {}, overrides: { server_name: 'test.local' } });
  const head = await currentStreamPos(storage.db);
  const ctx = createBaseContext(config, storage, silentLogger(), generateSigningKey(), head);
  return { ctx, storage, head };
}

test('write: changes are recorded after commit and before the notifier advances', async () => {
  const { ctx, storage, head } = await makeContext();
  try {
    assert.equal(ctx.notifier.position, head, 'the notifier starts at the stream head');
    const seen: Array<{ pos: number; notifierAt: number }> = [];
    let woken = false;
    const waiting = ctx.notifier.wait(['@a:test.local'], 5000).then((w) => (woken = w));
    const pos = await ctx.write(async (_tx, alloc, onCommit) => {
      const p = await alloc();
      onCommit(() => {
        seen.push({ pos: p, notifierAt: ctx.notifier.position });
        ctx.streams.accountData.entityChanged('@a:test.local', p);
      });
      assert.equal(seen.length, 0, 'nothing runs before commit');
      return p;
    }, () => ['@a:test.local']);
    await waiting;
    assert.equal(pos, head + 1);
    assert.deepEqual(seen, [{ pos, notifierAt: head }], 'hooks run before the position is published');
    assert.equal(ctx.notifier.position, pos);
    assert.equal(woken, true);
    assert.equal(ctx.streams.accountData.hasEntityChanged('@a:test.local', head), true);
    assert.equal(ctx.streams.accountData.hasEntityChanged('@a:test.local', pos), false);
  } finally {
    await storage.close();
  }
});

test('write: a rolled-back transaction records nothing', async () => {
  const { ctx, storage, head } = await makeContext();
  try {
    let ran = false;
    await assert.rejects(ctx.write(async (_tx, alloc, onCommit) => {
      const p = await alloc();
      onCommit(() => {
        ran = true;
        ctx.streams.receipts.entityChanged('!r', p);
      });
      throw new Error('boom');
    }));
    assert.equal(ran, false);
    assert.equal(ctx.notifier.position, head);
    assert.equal(ctx.streams.receipts.hasAnyChanged(head), false);
    // The position was not used up: the next write gets it, with no gap.
    const p = await ctx.write(async (_tx, alloc) => alloc());
    assert.equal(p, head + 1);
    assert.equal(ctx.streams.receipts.earliestKnown, head);
  } finally {
    await storage.close();
  }
});

test('write: positions allocated behind our back (another process) reset the change caches', async () => {
  const { ctx, storage, head } = await makeContext();
  let resets = 0;
  ctx.streams.onReset(() => resets++);
  try {
    await ctx.write(async (_tx, alloc, onCommit) => {
      const p = await alloc();
      onCommit(() => ctx.streams.presence.entityChanged('@a', p));
    });
    assert.equal(resets, 0);
    // Someone else writes positions head+2 and head+3 with changes we never hear of.
    await sql`UPDATE counters SET value = value + 2 WHERE name = 'stream'`.execute(storage.db);
    const p = await ctx.write(async (_tx, alloc, onCommit) => {
      const pos = await alloc();
      onCommit(() => ctx.streams.presence.entityChanged('@b', pos));
      return pos;
    });
    assert.equal(p, head + 4);
    assert.equal(resets, 1);
    assert.equal(ctx.streams.presence.hasEntityChanged('@c', head + 1), true, 'the unseen changes may concern anyone');
    assert.equal(ctx.streams.presence.hasEntityChanged('@c', head + 3), false);
    assert.equal(ctx.streams.presence.hasEntityChanged('@b', head + 3), true);
  } finally {
    await storage.close();
  }
});
