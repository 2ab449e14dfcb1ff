/**
 * The real synadm (Debian's package, which .ci/run installs) against Ranvier:
 * the admin tool self-hosters already use must work unchanged. Each command
 * is checked by its effect through the client API, not just by its exit code.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- synadm
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startTestServer, registerUser, request, type RegisteredUser, type TestServer } from './harness.js';
import { CS, enc, login } from './util.js';

const PASSWORD = 'a long enough password';
const installed = spawnSync('synadm', ['-h'], { stdio: 'ignore' }).status === 0;

describe('synadm against Ranvier', { timeout: 120_000, skip: installed ? false : 'synadm is not installed (apt-get install synadm; .ci/run does)' }, () => {
  let srv: TestServer;
  let admin: RegisteredUser;
  let alice: RegisteredUser;
  let home: string;
  let roomId: string;

  /** Run synadm in batch mode with JSON output; resolves to its stdout (it exits 0 even on API errors). */
  function synadm(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile('synadm', ['-c', path.join(home, 'synadm.yaml'), '--batch', '-o', 'json', ...args],
        { env: { ...process.env, HOME: home }, timeout: 30_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`synadm ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout)));
    });
  }
  /** The last line of synadm's output that is JSON (some commands print a preview first). */
  async function synadmJson(...args: string[]): Promise<any> {
    const out = await synadm(...args);
    const lines = out.trim().split('\n').filter((l) => /^[[{]/.test(l));
    assert.ok(lines.length, `synadm ${args.join(' ')} printed no JSON: ${out}`);
    return JSON.parse(lines[lines.length - 1]);
  }

  before(async () => {
    srv = await startTestServer();
    admin = await registerUser(srv.url, 'admin', PASSWORD);
    alice = await registerUser(srv.url, 'alice', PASSWORD);
    await srv.ctx.storage.db.updateTable('users').set({ is_admin: 1 }).where('user_id', '=', admin.userId).execute();
    home = await mkdtemp(path.join(os.tmpdir(), 'ranvier-synadm-'));
    await writeFile(path.join(home, 'synadm.yaml'), [
      `user: "${admin.userId}"`, `token: "${admin.accessToken}"`, `base_url: ${srv.url}`,
      'admin_path: /_synapse/admin', 'matrix_path: /_matrix', 'timeout: 30', 'server_discovery: well-known',
      'homeserver: localhost', 'ssl_verify: true', 'format: json', '',
    ].join('\n'));
    const room = await request(srv.url, 'POST', `${CS}/createRoom`, { token: alice.accessToken, body: { name: 'Synadm room', room_alias_name: 'synadm' } });
    roomId = room.body.room_id;
    for (let i = 0; i < 3; i++) {
      await request(srv.url, 'PUT', `${CS}/rooms/${enc(roomId)}/send/m.room.message/s${i}`, { token: alice.accessToken, body: { msgtype: 'm.text', body: `old ${i}` } });
    }
  });

  after(async () => {
    await srv?.close();
    if (home) await rm(home, { recursive: true, force: true });
  });

  test('version, user list, user details', async () => {
    assert.match((await synadmJson('version')).server_version, /^Ranvier /);
    const list = await synadmJson('user', 'list');
    assert.deepEqual(list.users.map((u: { name: string }) => u.name).sort(), [admin.userId, alice.userId].sort());
    const details = await synadmJson('user', 'details', alice.userId);
    assert.equal(details.name, alice.userId);
    assert.equal(details.admin, false);
  });

  test('user modify changes the display name users see', async () => {
    await synadm('user', 'modify', alice.userId, '--display-name', 'Alice by synadm');
    const profile = await request(srv.url, 'GET', `${CS}/profile/${enc(alice.userId)}`);
    assert.equal(profile.body.displayname, 'Alice by synadm');
  });

  test('room list, details and members', async () => {
    const rooms = await synadmJson('room', 'list');
    const mine = rooms.rooms.find((r: { room_id: string }) => r.room_id === roomId);
    assert.ok(mine, JSON.stringify(rooms));
    assert.equal(mine.name, 'Synadm room');
    assert.equal((await synadmJson('room', 'details', roomId)).canonical_alias, '#synadm:localhost');
    assert.deepEqual((await synadmJson('room', 'members', roomId)).members, [alice.userId]);
  });

  test('history purge removes the old messages; purge-status reports it complete', async () => {
    const started = await synadmJson('history', 'purge', '--before-ts', String(Date.now() + 1000), '--delete-local', roomId);
    assert.equal(typeof started.purge_id, 'string', JSON.stringify(started));
    let status = '';
    for (let i = 0; i < 50 && status !== 'complete'; i++) {
      status = (await synadmJson('history', 'purge-status', started.purge_id)).status;
      if (status !== 'complete') await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 'complete');
    const msgs = await request(srv.url, 'GET', `${CS}/rooms/${enc(roomId)}/messages?dir=b&limit=50`, { token: alice.accessToken });
    const bodies = msgs.body.chunk.map((e: { content?: { body?: string } }) => e.content?.body).filter(Boolean);
    assert.deepEqual(bodies.filter((b: string) => b.startsWith('old ')), [], `purged: ${JSON.stringify(bodies)}`);
  });

  test('registration tokens: regtok new, then list', async () => {
    const made = await synadmJson('regtok', 'new', '--uses-allowed', '2');
    assert.equal(made.uses_allowed, 2);
    const list = await synadmJson('regtok', 'list');
    assert.ok(list.registration_tokens.some((t: { token: string }) => t.token === made.token));
  });

  test('media list, quarantine and delete', async () => {
    const up = await fetch(`${srv.url}/_matrix/media/v3/upload?filename=a.txt`, {
      method: 'POST', headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'text/plain' }, body: 'hello synadm',
    });
    const mediaId = ((await up.json()) as { content_uri: string }).content_uri.split('/').pop()!;
    const listed = await synadmJson('media', 'list', '-u', alice.userId);
    assert.ok(listed.media.some((m: { media_id: string }) => m.media_id === mediaId), JSON.stringify(listed));
    await synadm('media', 'quarantine', '-i', mediaId);
    const download = (auth: boolean) => fetch(`${srv.url}/_matrix/client/v1/media/download/localhost/${mediaId}`,
      { headers: auth ? { authorization: `Bearer ${alice.accessToken}` } : {} });
    assert.equal((await download(true)).status, 404, 'quarantined media is not served');
    const deleted = await synadmJson('media', 'delete', '-i', mediaId);
    assert.deepEqual(deleted.deleted_media, [mediaId]);
    assert.equal((await synadmJson('media', 'purge', '--before-days', '1')).deleted, 0, 'no remote media to purge');
  });

  test('notice send: the user is invited to the notices room and reads the notice there', async () => {
    const sent = await synadmJson('notice', 'send', alice.userId, 'Maintenance tonight');
    const eventId = (Array.isArray(sent) ? sent[0] : sent).event_id as string;
    assert.match(eventId, /^\$/);
    const sync = await request(srv.url, 'GET', `${CS}/sync?timeout=0`, { token: alice.accessToken });
    const invited = Object.keys(sync.body.rooms?.invite ?? {});
    assert.equal(invited.length, 1, JSON.stringify(sync.body.rooms?.invite));
    assert.equal((await request(srv.url, 'POST', `${CS}/join/${enc(invited[0])}`, { token: alice.accessToken, body: {} })).status, 200);
    const ev = await request(srv.url, 'GET', `${CS}/rooms/${enc(invited[0])}/event/${enc(eventId)}`, { token: alice.accessToken });
    assert.equal(ev.status, 200, JSON.stringify(ev.body));
    assert.equal(ev.body.content.body, 'Maintenance tonight');
    const tags = await request(srv.url, 'GET', `${CS}/user/${enc(alice.userId)}/rooms/${enc(invited[0])}/tags`, { token: alice.accessToken });
    assert.ok(tags.body.tags['m.server_notice'], JSON.stringify(tags.body));
  });

  test('user password: the new password logs in, the old one does not', async () => {
    await synadm('user', 'password', alice.userId, '-p', 'a new password from synadm');
    assert.equal((await login(srv.url, 'alice', 'a new password from synadm')).status, 200);
    assert.equal((await login(srv.url, 'alice', PASSWORD)).status, 403);
  });

  test('room delete empties the room; user deactivate locks the account out', async () => {
    const shutdown = await synadmJson('room', 'delete', roomId);
    assert.deepEqual(shutdown.kicked_users, [alice.userId]);
    assert.deepEqual((await synadmJson('user', 'membership', alice.userId)).joined_rooms.filter((r: string) => r === roomId || r === '#synadm:localhost'), []);

    const res = await synadmJson('user', 'deactivate', alice.userId);
    assert.equal(res.id_server_unbind_result, 'success');
    const again = await login(srv.url, 'alice', 'a new password from synadm');
    assert.equal(again.status, 403);
    assert.equal(again.body.errcode, 'M_USER_DEACTIVATED');
    assert.equal((await synadmJson('user', 'details', alice.userId)).deactivated, true);
  });
});
