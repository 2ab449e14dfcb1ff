import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { LocalMediaStore } from '../../src/media/store.js';
import { MatrixError } from '../../src/server/errors.js';

/** Regular files under root, relative to it. */
async function files(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(root, p)));
    else out.push(path.relative(root, p));
  }
  return out.sort();
}

test('content-addressed, stored once, nothing left by an oversized upload', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ranvier-media-'));
  try {
    const store = new LocalMediaStore(root);
    const data = Buffer.from('hello media');
    const sha = createHash('sha256').update(data).digest('hex');
    const a = await store.put(Readable.from([data.subarray(0, 3), data.subarray(3)]), 100);
    assert.deepEqual(a, { sha256: sha, size: data.length, created: true });
    const b = await store.putBuffer(data);
    assert.deepEqual(b, { sha256: sha, size: data.length, created: false });
    assert.deepEqual(await store.read(sha), data);
    assert.deepEqual(await files(root), [path.join(sha.slice(0, 2), sha.slice(2, 4), sha)]);

    await assert.rejects(store.put(Readable.from([Buffer.alloc(60), Buffer.alloc(60)]), 100),
      (e: unknown) => e instanceof MatrixError && e.errcode === 'M_TOO_LARGE' && e.status === 413);
    assert.deepEqual(await files(root), [path.join(sha.slice(0, 2), sha.slice(2, 4), sha)]);

    assert.equal(await store.has(sha), true);
    await store.delete(sha);
    assert.equal(await store.has(sha), false);
    assert.throws(() => store.pathOf('../etc/passwd'));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
