/**
 * DiskGuard with a fake statfs and clock: the threshold, the 5 s cache, the
 * warning at most once per minute, the 507 error's shape, and that an
 * unmeasurable disk never blocks writes.
 *
 *   node --import tsx --test test/server/disk-guard.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { DiskGuard, type FsStats } from '../../src/server/disk-guard.js';
import { MatrixError } from '../../src/server/errors.js';

interface Fake {
  guard: DiskGuard;
  /** Set what the fake filesystem reports as available. */
  setFree(bytes: number): void;
  fail(err: Error | undefined): void;
  advance(ms: number): void;
  calls: () => number;
  warnings: () => Array<{ msg: string; freeBytes?: number }>;
}

function fakeGuard(minFreeBytes: number): Fake {
  let free = 10 * 2 ** 30;
  let failure: Error | undefined;
  let now = 1_000_000;
  let calls = 0;
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) });
  const guard = new DiskGuard({
    dir: '/data',
    minFreeBytes,
    log,
    adminContact: () => 'https://matrix.example.org/',
    now: () => now,
    statfs: async (dir: string): Promise<FsStats> => {
      assert.equal(dir, '/data');
      calls++;
      if (failure) throw failure;
      // Node reports blocks; a 4 KiB block size like ext4.
      return { bavail: BigInt(Math.floor(free / 4096)), bsize: 4096 };
    },
  });
  return {
    guard,
    setFree: (b) => void (free = b),
    fail: (e) => void (failure = e),
    advance: (ms) => void (now += ms),
    calls: () => calls,
    warnings: () => lines.map((l) => JSON.parse(l) as { msg: string; freeBytes?: number }),
  };
}

const MiB = 2 ** 20;

test('plenty of space: check passes and the free bytes are exposed', async () => {
  const f = fakeGuard(256 * MiB);
  assert.equal(f.guard.lastFreeBytes, undefined, 'nothing measured yet');
  await f.guard.check();
  assert.equal(f.guard.lastFreeBytes, 10 * 2 ** 30);
  assert.equal(await f.guard.freeBytes(), 10 * 2 ** 30);
  assert.equal(f.warnings().length, 0);
});

test('below the threshold: 507 M_RESOURCE_LIMIT_EXCEEDED with admin_contact', async () => {
  const f = fakeGuard(256 * MiB);
  f.setFree(100 * MiB);
  const err = await f.guard.check().then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof MatrixError, 'a Matrix error');
  assert.equal(err.status, 507);
  assert.equal(err.errcode, 'M_RESOURCE_LIMIT_EXCEEDED');
  const body = err.toJSON();
  assert.equal(body.admin_contact, 'https://matrix.example.org/', 'the spec requires admin_contact');
  assert.match(String(body.error), /disk space/);
});

test('exactly at the threshold is allowed; one byte under is refused', async () => {
  const f = fakeGuard(4096 * 10);
  f.setFree(4096 * 10);
  assert.equal(await f.guard.isLow(), false);
  const g = fakeGuard(4096 * 10 + 1);
  g.setFree(4096 * 10);
  assert.equal(await g.guard.isLow(), true);
});

test('statfs answers are cached for 5 s, and concurrent checks share one call', async () => {
  const f = fakeGuard(256 * MiB);
  await Promise.all([f.guard.check(), f.guard.check(), f.guard.check()]);
  assert.equal(f.calls(), 1);
  f.setFree(1 * MiB);
  f.advance(4_999);
  assert.equal(await f.guard.isLow(), false, 'still the cached measurement');
  assert.equal(f.calls(), 1);
  f.advance(1);
  assert.equal(await f.guard.isLow(), true, 'measured again after 5 s');
  assert.equal(f.calls(), 2);
  assert.equal(f.guard.lastFreeBytes, 1 * MiB);
  // Space freed: writes are accepted again after the next measurement.
  f.setFree(1024 * MiB);
  f.advance(5_000);
  assert.equal(await f.guard.isLow(), false);
});

test('while low, a warning is logged at most once per minute', async () => {
  const f = fakeGuard(256 * MiB);
  f.setFree(10 * MiB);
  for (let i = 0; i < 12; i++) {
    await f.guard.isLow();
    f.advance(5_000); // 12 checks over 60 s
  }
  const low = f.warnings().filter((w) => /disk space low/.test(w.msg));
  assert.equal(low.length, 1, JSON.stringify(f.warnings()));
  assert.equal(low[0].freeBytes, 10 * MiB);
  await f.guard.isLow(); // 60 s after the first warning
  assert.equal(f.warnings().filter((w) => /disk space low/.test(w.msg)).length, 2);
});

test('min_free_disk_bytes = 0 turns the guard off without calling statfs', async () => {
  const f = fakeGuard(0);
  f.setFree(0);
  await f.guard.check();
  assert.equal(f.calls(), 0);
});

test('statfs failing: writes allowed, one warning, free bytes unknown', async () => {
  const f = fakeGuard(256 * MiB);
  f.fail(Object.assign(new Error('ENOENT: no such file or directory'), { code: 'ENOENT' }));
  await f.guard.check();
  f.advance(5_000);
  await f.guard.check();
  assert.equal(f.calls(), 2);
  assert.equal(f.guard.lastFreeBytes, undefined);
  assert.equal(f.warnings().filter((w) => /cannot measure/.test(w.msg)).length, 1);
});

test('the real statfs measures a real directory', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ranvier-disk-'));
  try {
    const guard = new DiskGuard({ dir, minFreeBytes: 1, log: pino({ level: 'silent' }), adminContact: () => '' });
    const free = await guard.freeBytes();
    assert.ok(typeof free === 'number' && free > 0, String(free));
    const huge = new DiskGuard({ dir, minFreeBytes: Number.MAX_SAFE_INTEGER, log: pino({ level: 'silent' }), adminContact: () => '' });
    assert.equal(await huge.isLow(), true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
