/**
 * The Synapse-compatible room admin API over HTTP, with the requests synadm
 * sends (room list/details/members/state/delete, history purge with status
 * polling) and their effects on the database and on clients; room blocks;
 * content reports (client and admin side); federation destinations; server
 * notices; and 401/403 on every admin route.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- admin-rooms
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, registerUser, type RegisteredUser, type TestServer } from './harness.js';
import { Api, enc, expectError, request, waitFor } from './util.js';

const PASSWORD = 'hunter2 but longer';
const V1 = '/_synapse/admin/v1';
const V2 = '/_synapse/admin/v2';
const CS = '/_matrix/client/v3';

describe('room admin API', { timeout: 120_000 }, () => {
  let srv: TestServer;
  let admin: RegisteredUser;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let carol: RegisteredUser;
  let aliceApi: Api;
  let bobApi: Api;
  let carolApi: Api;

  function adm(method: string, path: string, body?: unknown) {
    return request(srv.url, method, path, { token: admin.accessToken, body: body ?? (method === 'GET' ? undefined : {}) });
  }

  async function admOk(method: string, path: string, body?: unknown): Promise<any> {
    const r = await adm(method, path, body);
    assert.equal(r.status, 200, `${method} ${path}: ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async function messageBodies(api: Api, roomId: string): Promise<string[]> {
    const r = await api.messages(roomId, { limit: 100 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return (r.body.chunk as Array<{ type: string; content: { body?: string } }>)
      .filter((e) => e.type === 'm.room.message').map((e) => e.content.body ?? '');
  }

  async function pollPurge(purgeId: string): Promise<any> {
    return waitFor('purge to finish', async () => {
      const s = await admOk('GET', `${V1}/purge_history_status/${enc(purgeId)}`);
      return s.status === 'active' ? undefined : s;
    }, { timeoutMs: 15_000 });
  }

  async function pollDelete(deleteId: string): Promise<any> {
    return waitFor('delete to finish', async () => {
      const s = await admOk('GET', `${V2}/rooms/delete_status/${enc(deleteId)}`);
      return s.status === 'complete' || s.status === 'failed' ? s : undefined;
    }, { timeoutMs: 15_000 });
  }

  before(async () => {
    srv = await startTestServer();
    admin = await registerUser(srv.url, 'admin', PASSWORD);
    alice = await registerUser(srv.url, 'alice', PASSWORD);
    bob = await registerUser(srv.url, 'bob', PASSWORD);
    carol = await registerUser(srv.url, 'carol', PASSWORD);
    await srv.ctx.storage.db.updateTable('users').set({ is_admin: 1 }).where('user_id', '=', admin.userId).execute();
    aliceApi = new Api(srv.url, alice.accessToken);
    bobApi = new Api(srv.url, bob.accessToken);
    carolApi = new Api(srv.url, carol.accessToken);
  });

  after(async () => {
    await srv?.close();
  });

  test('every route: 401 without a token, 403 M_FORBIDDEN for a non-admin', async () => {
    const roomId = await aliceApi.createRoom({ name: 'guarded' });
    const eventId = await aliceApi.send(roomId, 'hello');
    const r = enc(roomId);
    const routes: Array<[string, string, unknown?]> = [
      ['GET', `${V1}/rooms`],
      ['GET', `${V1}/rooms/${r}`],
      ['GET', `${V1}/rooms/${r}/members`],
      ['GET', `${V1}/rooms/${r}/state`],
      ['GET', `${V1}/rooms/${r}/block`],
      ['PUT', `${V1}/rooms/${r}/block`, { block: true }],
      ['DELETE', `${V1}/rooms/${r}`, {}],
      ['POST', `${V1}/rooms/${r}/delete`, {}],
      ['DELETE', `${V2}/rooms/${r}`, {}],
      ['GET', `${V2}/rooms/delete_status/abc`],
      ['GET', `${V2}/rooms/${r}/delete_status`],
      ['POST', `${V1}/purge_history/${r}`, { purge_up_to_event_id: eventId }],
      ['POST', `${V1}/purge_history/${r}/${enc(eventId)}`, {}],
      ['GET', `${V1}/purge_history_status/abc`],
      ['GET', `${V1}/event_reports`],
      ['GET', `${V1}/event_reports/1`],
      ['DELETE', `${V1}/event_reports/1`],
      ['GET', `${V1}/federation/destinations`],
      ['GET', `${V1}/federation/destinations/example.org`],
      ['POST', `${V1}/federation/destinations/example.org/reset_connection`, {}],
      ['POST', `${V1}/send_server_notice`, { user_id: alice.userId, content: { msgtype: 'm.text', body: 'x' } }],
      ['PUT', `${V1}/send_server_notice/t1`, { user_id: alice.userId, content: { msgtype: 'm.text', body: 'x' } }],
    ];
    for (const [method, path, body] of routes) {
      expectError(await request(srv.url, method, path, { body }), 401, 'M_MISSING_TOKEN', `${method} ${path} without token`);
      expectError(await request(srv.url, method, path, { token: alice.accessToken, body }), 403, 'M_FORBIDDEN', `${method} ${path} as non-admin`);
    }
    // Nothing above took effect.
    assert.deepEqual(await admOk('GET', `${V1}/rooms/${r}/block`), { block: false });
    assert.ok((await messageBodies(aliceApi, roomId)).includes('hello'));
  });

  test('synadm room list, details, members, state', async () => {
    const big = await aliceApi.createRoom({ name: 'Alpha listing room', preset: 'public_chat', room_alias_name: 'alpha-listing' });
    await bobApi.join(big);
    await carolApi.join(big);
    const small = await aliceApi.createRoom({ name: 'Beta listing room', topic: 'small talk' });

    // synadm room list: from, limit, search_term, order_by, dir.
    const all = await admOk('GET', `${V1}/rooms?from=0&limit=100`);
    assert.ok(all.total_rooms >= 2);
    assert.equal(all.offset, 0);
    assert.equal(all.next_batch, undefined);
    const entry = all.rooms.find((x: { room_id: string }) => x.room_id === big);
    assert.deepEqual(
      { ...entry },
      {
        room_id: big, name: 'Alpha listing room', canonical_alias: `#alpha-listing:${srv.serverName}`,
        joined_members: 3, joined_local_members: 3, version: entry.version, creator: alice.userId,
        encryption: null, federatable: true, public: false, join_rules: 'public', guest_access: 'forbidden',
        history_visibility: 'shared', state_events: entry.state_events, room_type: null,
      },
    );
    assert.ok(entry.state_events >= 8, `state events ${entry.state_events}`);

    const search = await admOk('GET', `${V1}/rooms?search_term=${enc('alpha LISTING')}`);
    assert.deepEqual(search.rooms.map((x: { room_id: string }) => x.room_id), [big]);
    assert.equal(search.total_rooms, 1);

    const bySize = await admOk('GET', `${V1}/rooms?order_by=joined_members`);
    assert.equal(bySize.rooms[0].room_id, big, 'largest first');
    const bySizeRev = await admOk('GET', `${V1}/rooms?order_by=joined_members&dir=b`);
    assert.equal(bySizeRev.rooms[bySizeRev.rooms.length - 1].room_id, big, 'dir=b: largest last');

    const names = (await admOk('GET', `${V1}/rooms?order_by=name&search_term=listing`)).rooms.map((x: { name: string }) => x.name);
    assert.deepEqual(names, ['Alpha listing room', 'Beta listing room']);

    const page1 = await admOk('GET', `${V1}/rooms?limit=1`);
    assert.equal(page1.rooms.length, 1);
    assert.equal(page1.next_batch, 1);
    const page2 = await admOk('GET', `${V1}/rooms?limit=1&from=1`);
    assert.equal(page2.prev_batch, 0);
    assert.notEqual(page2.rooms[0].room_id, page1.rooms[0].room_id);

    expectError(await adm('GET', `${V1}/rooms?order_by=colour`), 400, 'M_INVALID_PARAM', 'bad order_by');
    expectError(await adm('GET', `${V1}/rooms?dir=x`), 400, 'M_INVALID_PARAM', 'bad dir');
    expectError(await adm('GET', `${V1}/rooms?limit=-1`), 400, 'M_INVALID_PARAM', 'bad limit');

    const details = await admOk('GET', `${V1}/rooms/${enc(small)}`);
    assert.equal(details.name, 'Beta listing room');
    assert.equal(details.topic, 'small talk');
    assert.equal(details.joined_members, 1);
    assert.equal(details.joined_local_devices, 1);
    expectError(await adm('GET', `${V1}/rooms/${enc('!nope:' + srv.serverName)}`), 404, 'M_NOT_FOUND', 'unknown room');

    const members = await admOk('GET', `${V1}/rooms/${enc(big)}/members`);
    assert.deepEqual(members, { members: [alice.userId, bob.userId, carol.userId].sort(), total: 3 });

    const state = await admOk('GET', `${V1}/rooms/${enc(big)}/state`);
    const types = new Set(state.state.map((e: { type: string }) => e.type));
    for (const t of ['m.room.create', 'm.room.power_levels', 'm.room.name', 'm.room.member', 'm.room.canonical_alias']) assert.ok(types.has(t), t);
    assert.equal(state.state.length, entry.state_events);
  });

  test('a blocked room refuses joins until unblocked', async () => {
    const roomId = await aliceApi.createRoom({ preset: 'public_chat' });
    assert.deepEqual(await admOk('PUT', `${V1}/rooms/${enc(roomId)}/block`, { block: true }), { block: true });
    assert.deepEqual(await admOk('GET', `${V1}/rooms/${enc(roomId)}/block`), { block: true, user_id: admin.userId });
    expectError(await bobApi.post(`/join/${enc(roomId)}`), 403, 'M_FORBIDDEN', 'join a blocked room');
    expectError(await bobApi.post(`/rooms/${enc(roomId)}/join`), 403, 'M_FORBIDDEN', 'join a blocked room by id');
    assert.equal(await srv.ctx.rooms.membership(roomId, bob.userId), undefined);
    expectError(await adm('PUT', `${V1}/rooms/${enc(roomId)}/block`, { block: 'yes' }), 400, 'M_BAD_JSON', 'block must be a boolean');

    assert.deepEqual(await admOk('PUT', `${V1}/rooms/${enc(roomId)}/block`, { block: false }), { block: false });
    assert.deepEqual(await admOk('GET', `${V1}/rooms/${enc(roomId)}/block`), { block: false });
    await bobApi.join(roomId);
  });

  test('synadm history purge: old messages leave the database and /messages; state and newer events stay', async () => {
    const roomId = await aliceApi.createRoom({ name: 'Purged history', preset: 'public_chat' });
    await bobApi.join(roomId);
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) ids.push(await (i % 2 ? aliceApi : bobApi).send(roomId, `m${i}`));

    // Without delete_local_events (synadm's default) nothing of local users goes.
    const keep = await admOk('POST', `${V1}/purge_history/${enc(roomId)}`, { delete_local_events: false, purge_up_to_event_id: ids[3] });
    assert.equal((await pollPurge(keep.purge_id)).status, 'complete');
    assert.deepEqual(await messageBodies(aliceApi, roomId), ['m5', 'm4', 'm3', 'm2', 'm1']);

    const { purge_id: purgeId } = await admOk('POST', `${V1}/purge_history/${enc(roomId)}`, { delete_local_events: true, purge_up_to_event_id: ids[3] });
    assert.equal(typeof purgeId, 'string');
    assert.deepEqual(await pollPurge(purgeId), { status: 'complete' });

    assert.deepEqual(await messageBodies(aliceApi, roomId), ['m5', 'm4']);
    assert.deepEqual(await messageBodies(bobApi, roomId), ['m5', 'm4']);
    const left = await srv.ctx.storage.db.selectFrom('events').select('event_id').where('event_id', 'in', ids).execute();
    assert.deepEqual(left.map((e) => e.event_id).sort(), [ids[3], ids[4]].sort());
    expectError(await aliceApi.get(`/rooms/${enc(roomId)}/event/${enc(ids[0])}`), 404, 'M_NOT_FOUND', 'purged event');
    // State survives: the room still has its name and members, and works.
    const details = await admOk('GET', `${V1}/rooms/${enc(roomId)}`);
    assert.equal(details.name, 'Purged history');
    assert.equal(details.joined_members, 2);
    await bobApi.send(roomId, 'm6');
    assert.deepEqual(await messageBodies(aliceApi, roomId), ['m6', 'm5', 'm4']);

    // The path form with the event id, and purge_up_to_ts.
    const byPath = await admOk('POST', `${V1}/purge_history/${enc(roomId)}/${enc(ids[4])}`, { delete_local_events: true });
    assert.equal((await pollPurge(byPath.purge_id)).status, 'complete');
    assert.deepEqual(await messageBodies(aliceApi, roomId), ['m6', 'm5']);
    const byTs = await admOk('POST', `${V1}/purge_history/${enc(roomId)}`, { delete_local_events: true, purge_up_to_ts: Date.now() + 60_000 });
    assert.equal((await pollPurge(byTs.purge_id)).status, 'complete');
    // The newest event is the room's extremity: it stays.
    assert.deepEqual(await messageBodies(aliceApi, roomId), ['m6']);

    const other = await aliceApi.createRoom({});
    const otherEvent = await aliceApi.send(other, 'elsewhere');
    expectError(await adm('POST', `${V1}/purge_history/${enc(roomId)}`, { purge_up_to_event_id: otherEvent }), 400, 'M_UNKNOWN', 'event of another room');
    expectError(await adm('POST', `${V1}/purge_history/${enc(roomId)}`, {}), 400, 'M_UNKNOWN', 'no purge point');
    expectError(await adm('POST', `${V1}/purge_history/${enc(roomId)}`, { purge_up_to_ts: 1000 }), 400, 'M_UNKNOWN', 'nothing before the time');
    expectError(await adm('POST', `${V1}/purge_history/${enc('!unknown:' + srv.serverName)}`, { purge_up_to_ts: Date.now() }), 404, 'M_NOT_FOUND', 'unknown room');
    expectError(await adm('GET', `${V1}/purge_history_status/nope`), 404, 'M_NOT_FOUND', 'unknown purge id');
    assert.deepEqual(await messageBodies(aliceApi, other), ['elsewhere']);
  });

  test('delete room (v2, background): members leave, room blocked, everything purged', async () => {
    const roomId = await aliceApi.createRoom({ name: 'Doomed', preset: 'public_chat', room_alias_name: 'doomed' });
    await bobApi.join(roomId);
    const msg = await bobApi.send(roomId, 'bad content');
    await aliceApi.ok('POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(msg)}`, {});
    await aliceApi.invite(roomId, carol.userId);
    await bobApi.post(`/rooms/${enc(roomId)}/report/${enc(msg)}`, { reason: 'spam' });

    const before = (await bobApi.sync({ timeout: 0 })).next_batch as string;
    const { delete_id: deleteId } = await admOk('DELETE', `${V2}/rooms/${enc(roomId)}`, { block: true, purge: true });
    const status = await pollDelete(deleteId);
    assert.equal(status.status, 'complete', JSON.stringify(status));
    assert.deepEqual([...status.shutdown_room.kicked_users].sort(), [alice.userId, bob.userId, carol.userId].sort());
    assert.deepEqual(status.shutdown_room.failed_to_kick_users, []);
    assert.deepEqual(status.shutdown_room.local_aliases, [`#doomed:${srv.serverName}`]);
    assert.equal(status.shutdown_room.new_room_id, null);

    const byRoom = await admOk('GET', `${V2}/rooms/${enc(roomId)}/delete_status`);
    assert.equal(byRoom.results.length, 1);
    assert.equal(byRoom.results[0].delete_id, deleteId);
    assert.equal(byRoom.results[0].status, 'complete');

    const db = srv.ctx.storage.db;
    for (const table of ['events', 'room_members', 'state_groups', 'receipts', 'event_relations', 'event_reports', 'room_aliases', 'rooms'] as const) {
      const rows = await db.selectFrom(table).select('room_id').where('room_id', '=', roomId).execute();
      assert.equal(rows.length, 0, `${table} rows left`);
    }
    expectError(await adm('GET', `${V1}/rooms/${enc(roomId)}`), 404, 'M_NOT_FOUND', 'deleted room details');
    assert.ok(!(await bobApi.ok('GET', '/joined_rooms')).joined_rooms.includes(roomId));
    // Clients keep syncing: the room is no longer among bob's joined rooms, incrementally or from scratch.
    assert.equal((await bobApi.sync({ since: before, timeout: 0 })).rooms?.join?.[roomId], undefined);
    assert.equal((await bobApi.sync({ timeout: 0 })).rooms?.join?.[roomId], undefined);
    expectError(await bobApi.post(`/join/${enc(roomId)}`), 403, 'M_FORBIDDEN', 'rejoin a deleted, blocked room');
    expectError(await aliceApi.get(`/directory/room/${enc('#doomed:' + srv.serverName)}`), 404, 'M_NOT_FOUND', 'alias removed');

    expectError(await adm('GET', `${V2}/rooms/delete_status/nope`), 404, 'M_NOT_FOUND', 'unknown delete id');
    expectError(await adm('DELETE', `${V2}/rooms/${enc('!unknown:' + srv.serverName)}`, {}), 404, 'M_NOT_FOUND', 'unknown room');
  });

  test('synadm room delete (v1, synchronous) with a replacement room', async () => {
    const roomId = await aliceApi.createRoom({ name: 'Replaced' , preset: 'public_chat' });
    await bobApi.join(roomId);
    const res = await admOk('DELETE', `${V1}/rooms/${enc(roomId)}`, {
      block: false, purge: true, new_room_user_id: admin.userId, room_name: 'Moved', message: 'This room was removed',
    });
    assert.deepEqual([...res.kicked_users].sort(), [alice.userId, bob.userId].sort());
    assert.equal(typeof res.new_room_id, 'string');
    assert.equal(await srv.ctx.rooms.getRoom(roomId), undefined);
    // Not blocked this time, but gone: nothing to join.
    assert.deepEqual(await admOk('GET', `${V1}/rooms/${enc(roomId)}/block`), { block: false });
    assert.ok((await bobApi.ok('GET', '/joined_rooms')).joined_rooms.includes(res.new_room_id));
    assert.deepEqual(await messageBodies(bobApi, res.new_room_id), ['This room was removed']);
    const moved = await admOk('GET', `${V1}/rooms/${enc(res.new_room_id)}`);
    assert.equal(moved.name, 'Moved');

    // Without purge the room stays (empty of local users).
    const kept = await aliceApi.createRoom({});
    const r2 = await admOk('POST', `${V1}/rooms/${enc(kept)}/delete`, { block: false, purge: false });
    assert.deepEqual(r2.kicked_users, [alice.userId]);
    const keptDetails = await admOk('GET', `${V1}/rooms/${enc(kept)}`);
    assert.equal(keptDetails.joined_members, 0);
    assert.equal(keptDetails.forgotten, false);
    await aliceApi.ok('POST', `/rooms/${enc(kept)}/forget`, {});
    assert.equal((await admOk('GET', `${V1}/rooms/${enc(kept)}`)).forgotten, true);
  });

  test('event reports: users report, admins list, read and delete', async () => {
    const roomId = await aliceApi.createRoom({ name: 'Reported room', preset: 'public_chat' });
    await bobApi.join(roomId);
    const bad = await aliceApi.send(roomId, 'offensive');
    const worse = await aliceApi.send(roomId, 'worse');

    assert.deepEqual(await bobApi.ok('POST', `/rooms/${enc(roomId)}/report/${enc(bad)}`, { reason: 'rude', score: -100 }), {});
    await bobApi.ok('POST', `/rooms/${enc(roomId)}/report/${enc(worse)}`, { reason: 'ruder' });
    // Not joined, unknown event, event of another room: all the same 404.
    expectError(await carolApi.post(`/rooms/${enc(roomId)}/report/${enc(bad)}`, { reason: 'x' }), 404, 'M_NOT_FOUND', 'not joined');
    expectError(await bobApi.post(`/rooms/${enc(roomId)}/report/${enc('$nope')}`, { reason: 'x' }), 404, 'M_NOT_FOUND', 'unknown event');
    expectError(await bobApi.post(`/rooms/${enc(roomId)}/report/${enc(bad)}`, { score: 5 }), 400, 'M_BAD_JSON', 'score out of range');
    // Room reports.
    assert.deepEqual(await carolApi.ok('POST', `/rooms/${enc(roomId)}/report`, { reason: 'whole room' }), {});
    expectError(await carolApi.post(`/rooms/${enc('!nope:' + srv.serverName)}/report`, { reason: 'x' }), 404, 'M_NOT_FOUND', 'unknown room');

    const list = await admOk('GET', `${V1}/event_reports?room_id=${enc(roomId)}`);
    assert.equal(list.total, 2);
    assert.deepEqual(list.event_reports.map((r: { event_id: string }) => r.event_id), [worse, bad], 'newest first');
    const first = list.event_reports[1];
    assert.equal(first.user_id, bob.userId);
    assert.equal(first.sender, alice.userId);
    assert.equal(first.reason, 'rude');
    assert.equal(first.score, -100);
    assert.equal(first.name, 'Reported room');
    assert.equal(first.room_id, roomId);
    assert.equal(typeof first.received_ts, 'number');

    const fwd = await admOk('GET', `${V1}/event_reports?room_id=${enc(roomId)}&dir=f&limit=1`);
    assert.equal(fwd.event_reports[0].event_id, bad);
    assert.equal(fwd.next_token, 1);
    assert.equal((await admOk('GET', `${V1}/event_reports?user_id=${enc(carol.userId)}`)).total, 0);

    const one = await admOk('GET', `${V1}/event_reports/${first.id}`);
    assert.equal(one.event_json.event_id, bad);
    assert.equal(one.event_json.content.body, 'offensive');
    assert.deepEqual(await admOk('DELETE', `${V1}/event_reports/${first.id}`), {});
    expectError(await adm('GET', `${V1}/event_reports/${first.id}`), 404, 'M_NOT_FOUND', 'deleted report');
    expectError(await adm('DELETE', `${V1}/event_reports/${first.id}`), 404, 'M_NOT_FOUND', 'deleted twice');
    expectError(await adm('GET', `${V1}/event_reports/abc`), 400, 'M_INVALID_PARAM', 'bad id');
    assert.equal((await admOk('GET', `${V1}/event_reports?room_id=${enc(roomId)}`)).total, 1);
  });

  test('federation destinations: a failing server is listed, shown and reset', async () => {
    const dest = 'does-not-resolve.invalid';
    expectError(await adm('GET', `${V1}/federation/destinations/${dest}`), 404, 'M_NOT_FOUND', 'unknown destination');
    await srv.ctx.federation.sender.enqueueEdu([dest], { edu_type: 'm.test', content: {} });
    const listed = await waitFor('the destination to fail', async () => {
      const l = await admOk('GET', `${V1}/federation/destinations`);
      const d = l.destinations.find((x: { destination: string }) => x.destination === dest);
      return d && d.failure_ts !== null ? { l, d } : undefined;
    }, { timeoutMs: 20_000, intervalMs: 100 });
    assert.ok(listed.d.retry_last_ts > 0);
    assert.ok(listed.d.retry_interval > 0);
    assert.equal(listed.d.last_successful_stream_ordering, null);
    assert.equal(listed.l.total, listed.l.destinations.length);

    const filtered = await admOk('GET', `${V1}/federation/destinations?destination=not-resolve`);
    assert.deepEqual(filtered.destinations.map((x: { destination: string }) => x.destination), [dest]);
    assert.deepEqual(await admOk('GET', `${V1}/federation/destinations/${dest}`), listed.d);
    expectError(await adm('GET', `${V1}/federation/destinations?order_by=nope`), 400, 'M_INVALID_PARAM', 'bad order');

    assert.deepEqual(await admOk('POST', `${V1}/federation/destinations/${dest}/reset_connection`, {}), {});
    const stats = srv.ctx.federation.sender.destinations().find((d) => d.destination === dest);
    assert.ok(!stats || stats.failures <= 1, `backoff reset (${JSON.stringify(stats)})`);
    expectError(await adm('POST', `${V1}/federation/destinations/${srv.serverName}/reset_connection`, {}), 400, 'M_UNKNOWN', 'own server');
    expectError(await adm('POST', `${V1}/federation/destinations/unknown.example/reset_connection`, {}), 404, 'M_NOT_FOUND', 'unknown destination');
  });

  test('server notices: a tagged room from the system user, reused, idempotent with txnId', async () => {
    const notice = { msgtype: 'm.text', body: 'Maintenance tonight' };
    const { event_id: first } = await admOk('POST', `${V1}/send_server_notice`, { user_id: alice.userId, content: notice });
    const systemUser = `@server:${srv.serverName}`;
    const ev = await srv.ctx.rooms.events.get(first);
    assert.ok(ev);
    assert.equal(ev.pdu.sender, systemUser);
    const roomId = ev.pdu.room_id;
    assert.equal(await srv.ctx.rooms.membership(roomId, alice.userId), 'invite');
    const tags = await aliceApi.ok('GET', `/user/${enc(alice.userId)}/rooms/${enc(roomId)}/tags`);
    assert.ok('m.server_notice' in tags.tags, JSON.stringify(tags));

    await aliceApi.join(roomId);
    const { event_id: second } = await admOk('POST', `${V1}/send_server_notice`, { user_id: alice.userId, content: { msgtype: 'm.text', body: 'Done' } });
    assert.equal((await srv.ctx.rooms.events.get(second))?.pdu.room_id, roomId, 'same room again');
    assert.deepEqual(await messageBodies(aliceApi, roomId), ['Done', 'Maintenance tonight']);
    // Alice may read but not write.
    assert.equal((await aliceApi.put(`/rooms/${enc(roomId)}/send/m.room.message/x1`, { msgtype: 'm.text', body: 'hi' })).status, 403);

    const a = await admOk('PUT', `${V1}/send_server_notice/txn-1`, { user_id: alice.userId, content: { msgtype: 'm.text', body: 'once' } });
    const b = await admOk('PUT', `${V1}/send_server_notice/txn-1`, { user_id: alice.userId, content: { msgtype: 'm.text', body: 'once' } });
    assert.equal(a.event_id, b.event_id);
    assert.deepEqual((await messageBodies(aliceApi, roomId)).filter((x) => x === 'once'), ['once']);

    // After leaving, the next notice invites her back into the same room.
    await aliceApi.leave(roomId);
    const { event_id: third } = await admOk('POST', `${V1}/send_server_notice`, { user_id: alice.userId, content: notice });
    assert.equal((await srv.ctx.rooms.events.get(third))?.pdu.room_id, roomId);
    assert.equal(await srv.ctx.rooms.membership(roomId, alice.userId), 'invite');

    // A different user gets a room of their own.
    const { event_id: bobs } = await admOk('POST', `${V1}/send_server_notice`, { user_id: bob.userId, content: notice });
    assert.notEqual((await srv.ctx.rooms.events.get(bobs))?.pdu.room_id, roomId);

    expectError(await adm('POST', `${V1}/send_server_notice`, { user_id: '@x:elsewhere.example', content: notice }), 400, 'M_UNKNOWN', 'remote user');
    expectError(await adm('POST', `${V1}/send_server_notice`, { user_id: `@ghost:${srv.serverName}`, content: notice }), 404, 'M_NOT_FOUND', 'unknown user');
    expectError(await adm('POST', `${V1}/send_server_notice`, { user_id: alice.userId }), 400, 'M_MISSING_PARAM', 'no content');
    // The system account cannot log in.
    const login = await request(srv.url, 'POST', `${CS}/login`, { body: { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'server' }, password: '' } });
    assert.notEqual(login.status, 200);
  });
});
