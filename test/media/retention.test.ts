/**
 * The media retention job against the real services: what it deletes (old
 * local and remote media, their thumbnails, bytes no row uses, expired
 * /create ids), what it keeps (recently used media, current avatars,
 * bytes another row shares, bytes an upload in flight is reusing).
 *
 *   node --import tsx --test test/media/retention.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { withServiceContext } from '../helpers/service-context.js';
import type { Context } from '../../src/server/services.js';
import { localMediaId } from '../../src/media/retention.js';

const DAY = 24 * 60 * 60 * 1000;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

async function upload(c: Context, userId: string, body: string): Promise<string> {
  const mxc = await c.media.upload(userId, { body: Readable.from([Buffer.from(body)]), contentType: 'text/plain', filename: undefined, contentLength: undefined });
  return localMediaId(mxc, c.config.server_name)!;
}

/** Pretend the media was uploaded (and last accessed, if given) at these times. */
async function age(c: Context, mediaId: string, uploadedTs: number, lastAccessTs: number | null = null): Promise<void> {
  await c.storage.db.updateTable('media').set({ created_ts: uploadedTs, uploaded_ts: uploadedTs, last_access_ts: lastAccessTs })
    .where('media_id', '=', mediaId).execute();
}

async function exists(c: Context, mediaId: string): Promise<boolean> {
  return !!(await c.storage.db.selectFrom('media').select('media_id').where('media_id', '=', mediaId).executeTakeFirst());
}

async function cacheRemote(c: Context, origin: string, mediaId: string, body: string, lastAccessTs: number): Promise<string> {
  const stored = await c.media.store.putBuffer(Buffer.from(body));
  await c.storage.db.insertInto('remote_media').values({
    origin, media_id: mediaId, content_type: 'text/plain', upload_name: null, size: stored.size, sha256: stored.sha256,
    fetched_ts: lastAccessTs, last_access_ts: lastAccessTs, quarantined_by: null,
  }).execute();
  return stored.sha256;
}

function setConfig(c: Context, values: { media_retention_local_days?: number; media_retention_remote_days?: number }): void {
  Object.assign(c.config, values);
}

test('retention deletes old local and remote media with their bytes, keeps what is used', async () => {
  await withServiceContext(async (c) => {
    setConfig(c, { media_retention_local_days: 30, media_retention_remote_days: 7 });
    const now = Date.now();
    const old = now - 60 * DAY;
    const alice = await c.accounts.createUser('alice', undefined);
    const bob = await c.accounts.createUser('bob', undefined);
    const mxc = (id: string) => `mxc://${c.config.server_name}/${id}`;

    const stale = await upload(c, alice, 'stale bytes');
    await age(c, stale, old);
    // A thumbnail row of its own content, to be deleted along with it.
    const thumb = await c.media.store.putBuffer(Buffer.from('stale thumbnail'));
    await c.storage.db.insertInto('media_thumbnails').values({
      media_id: stale, width: 32, height: 32, method: 'scale', animated: 0, content_type: 'image/png', size: thumb.size, sha256: thumb.sha256, created_ts: old,
    }).execute();
    const usedRecently = await upload(c, alice, 'recently used');
    await age(c, usedRecently, old, now - DAY);
    const newish = await upload(c, alice, 'uploaded last week');
    await age(c, newish, now - 7 * DAY);

    // Avatars: alice's profile, bob's per-room member avatar, a room avatar; and ones no longer current.
    const profileAvatar = await upload(c, alice, 'alice avatar');
    const memberAvatar = await upload(c, bob, 'bob room avatar');
    const oldMemberAvatar = await upload(c, bob, 'bob earlier room avatar');
    const roomAvatar = await upload(c, alice, 'room avatar');
    const oldRoomAvatar = await upload(c, alice, 'earlier room avatar');
    for (const id of [profileAvatar, memberAvatar, oldMemberAvatar, roomAvatar, oldRoomAvatar]) await age(c, id, old);
    await c.accounts.setProfileField(alice, 'avatar_url', mxc(profileAvatar));
    const { room_id: roomId } = await c.rooms.createRoom(alice, { preset: 'public_chat' });
    await c.rooms.changeMembership({ roomId, sender: bob, target: bob, membership: 'join' });
    await c.rooms.send({ roomId, sender: bob, type: 'm.room.member', stateKey: bob, content: { membership: 'join', avatar_url: mxc(oldMemberAvatar) } });
    await c.rooms.send({ roomId, sender: bob, type: 'm.room.member', stateKey: bob, content: { membership: 'join', avatar_url: mxc(memberAvatar) } });
    await c.rooms.send({ roomId, sender: alice, type: 'm.room.avatar', stateKey: '', content: { url: mxc(oldRoomAvatar) } });
    await c.rooms.send({ roomId, sender: alice, type: 'm.room.avatar', stateKey: '', content: { url: mxc(roomAvatar) } });

    // Shared content: an old copy goes, the recent copy (same sha256) keeps the bytes.
    const sharedOld = await upload(c, alice, 'shared bytes');
    const sharedNew = await upload(c, bob, 'shared bytes');
    await age(c, sharedOld, old);
    // An old remote copy of content a kept local row uses.
    await cacheRemote(c, 'remote.example', 'sharedRemote', 'recently used', old);

    const remoteOldSha = await cacheRemote(c, 'remote.example', 'oldRemote', 'remote stale', old);
    const remoteThumb = await c.media.store.putBuffer(Buffer.from('remote thumb'));
    await c.storage.db.insertInto('remote_media_thumbnails').values({
      origin: 'remote.example', media_id: 'oldRemote', width: 32, height: 32, method: 'crop', animated: 0,
      content_type: 'image/png', size: remoteThumb.size, sha256: remoteThumb.sha256, created_ts: old,
    }).execute();
    await cacheRemote(c, 'remote.example', 'freshRemote', 'remote fresh', now - DAY);

    // A /create id that expired without content, and one still waiting.
    // (Both created first: /create itself clears expired ids.)
    const expired = localMediaId((await c.media.create(alice)).content_uri, c.config.server_name)!;
    const waiting = localMediaId((await c.media.create(alice)).content_uri, c.config.server_name)!;
    await c.storage.db.updateTable('media').set({ unused_expires_at: now - 1000 }).where('media_id', '=', expired).execute();

    const counts = await c.mediaRetention.runOnce(now);

    assert.equal(await exists(c, stale), false, 'old media is deleted');
    assert.equal(await c.media.store.has(sha('stale bytes')), false, 'its bytes are gone');
    assert.equal(await c.media.store.has(thumb.sha256), false, 'its thumbnail bytes are gone');
    assert.equal((await c.storage.db.selectFrom('media_thumbnails').selectAll().where('media_id', '=', stale).execute()).length, 0);
    assert.equal(await exists(c, oldMemberAvatar), false, 'an avatar no longer current is deleted');
    assert.equal(await exists(c, oldRoomAvatar), false, 'a room avatar no longer current is deleted');
    assert.equal(await exists(c, sharedOld), false);
    assert.equal(await exists(c, expired), false, 'expired /create id is deleted');

    for (const [id, why] of [[usedRecently, 'recently accessed'], [newish, 'recently uploaded'], [profileAvatar, 'profile avatar'],
      [memberAvatar, 'current member avatar'], [roomAvatar, 'current room avatar'], [sharedNew, 'recent'], [waiting, 'pending /create']] as const) {
      assert.equal(await exists(c, id), true, `${why} media is kept`);
    }
    assert.equal(await c.media.store.has(sha('shared bytes')), true, 'bytes another row uses survive');
    assert.equal(await c.media.store.has(sha('recently used')), true, 'bytes of a kept local row survive the remote copy');
    assert.deepEqual(await c.media.store.read(sha('alice avatar')), Buffer.from('alice avatar'));

    const remotes = (await c.storage.db.selectFrom('remote_media').select('media_id').orderBy('media_id').execute()).map((r) => r.media_id);
    assert.deepEqual(remotes, ['freshRemote']);
    assert.equal(await c.media.store.has(remoteOldSha), false, 'old remote bytes are gone');
    assert.equal(await c.media.store.has(remoteThumb.sha256), false, 'remote thumbnail bytes are gone');
    assert.equal((await c.storage.db.selectFrom('remote_media_thumbnails').selectAll().execute()).length, 0);
    assert.equal(await c.media.store.has(sha('remote fresh')), true);

    assert.deepEqual(counts, { local: 4, remote: 2, expiredCreates: 1, files: 6 });

    // Nothing left to do: a second run deletes nothing.
    assert.deepEqual(await c.mediaRetention.runOnce(now), { local: 0, remote: 0, expiredCreates: 0, files: 0 });

    // Once the last row using shared bytes goes, so do the bytes.
    await c.mediaRetention.deleteLocal([sharedNew]);
    assert.equal(await c.media.store.has(sha('shared bytes')), false);
  });
});

test('local lifetime 0 keeps local media forever; remote still expires', async () => {
  await withServiceContext(async (c) => {
    setConfig(c, { media_retention_local_days: 0, media_retention_remote_days: 1 });
    const now = Date.now();
    const alice = await c.accounts.createUser('alice', undefined);
    const ancient = await upload(c, alice, 'ancient');
    await age(c, ancient, now - 3650 * DAY);
    await cacheRemote(c, 'remote.example', 'r1', 'remote', now - 2 * DAY);
    const counts = await c.mediaRetention.runOnce(now);
    assert.equal(counts.local, 0);
    assert.equal(counts.remote, 1);
    assert.equal(await exists(c, ancient), true);
  });
});

test('accessing media records last_access_ts, which keeps it', async () => {
  await withServiceContext(async (c) => {
    setConfig(c, { media_retention_local_days: 30 });
    const now = Date.now();
    const alice = await c.accounts.createUser('alice', undefined);
    const id = await upload(c, alice, 'downloaded');
    await age(c, id, now - 60 * DAY);
    await c.media.download(c.config.server_name, id);
    const row = await waitForAccess(c, id);
    assert.ok(row >= now, 'download wrote last_access_ts');
    assert.equal((await c.mediaRetention.runOnce(now)).local, 0);
    assert.equal(await exists(c, id), true);
    // Still deleted once it has gone unused for the lifetime.
    assert.equal((await c.mediaRetention.runOnce(now + 31 * DAY)).local, 1);
  });
});

async function waitForAccess(c: Context, id: string): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const r = await c.storage.db.selectFrom('media').select('last_access_ts').where('media_id', '=', id).executeTakeFirst();
    if (r?.last_access_ts != null) return Number(r.last_access_ts);
    await new Promise((res) => setTimeout(res, 10));
  }
  throw new Error('last_access_ts was never written');
}

test('an upload reusing bytes that are being deleted keeps them', async () => {
  await withServiceContext(async (c) => {
    setConfig(c, { media_retention_local_days: 30 });
    const now = Date.now();
    const alice = await c.accounts.createUser('alice', undefined);
    const old = await upload(c, alice, 'same content');
    await age(c, old, now - 60 * DAY);

    // A second upload of the same content is in flight (its body still streaming) while the job runs.
    const body = new PassThrough();
    const pending = c.media.upload(alice, { body, contentType: 'text/plain', filename: undefined, contentLength: undefined });
    const run = c.mediaRetention.runOnce(now);
    await new Promise((r) => setTimeout(r, 100));
    body.end(Buffer.from('same content'));
    const fresh = localMediaId(await pending, c.config.server_name)!;
    const counts = await run;

    assert.equal(counts.local, 1, 'the old row went');
    assert.equal(counts.files, 0, 'but not the bytes the new upload uses');
    assert.equal(await exists(c, old), false);
    const content = await c.media.download(c.config.server_name, fresh);
    assert.deepEqual(await c.media.store.read(content.sha256), Buffer.from('same content'));
  });
});

test('bytes whose deletion waits on a slow upload are deferred, then deleted on a later run', async () => {
  await withServiceContext(async (c) => {
    const alice = await c.accounts.createUser('alice', undefined);
    const id = await upload(c, alice, 'to delete');
    const body = new PassThrough();
    const slow = c.media.upload(alice, { body, contentType: 'text/plain', filename: undefined, contentLength: undefined });
    await new Promise((r) => setTimeout(r, 20));
    await c.storage.db.deleteFrom('media').where('media_id', '=', id).execute();
    const r = await c.media.deleteUnreferencedContent([sha('to delete')], 50);
    assert.deepEqual(r, { deleted: [], deferred: [sha('to delete')] });
    assert.equal(await c.media.store.has(sha('to delete')), true);
    body.end(Buffer.from('something else'));
    await slow;
    const again = await c.media.deleteUnreferencedContent([sha('to delete')], 50);
    assert.deepEqual(again, { deleted: [sha('to delete')], deferred: [] });
    assert.equal(await c.media.store.has(sha('to delete')), false);
  });
});
