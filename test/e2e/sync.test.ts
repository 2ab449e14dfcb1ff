/**
 * /sync over raw HTTP: long-polling wakes promptly, incremental syncs carry
 * only what is new, limited timelines link to /messages, filters are
 * honoured, invites and leaves appear in their sections, and a user who left
 * a room sees nothing of it afterwards.
 *
 *   RANVIER_TEST_DB=sqlite node --import tsx --test test/e2e/sync.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, registerUser, type RegisteredUser, type TestServer } from './harness.js';
import { Api, caughtUp, enc } from './util.js';

const PASSWORD = 'sync test password';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type SyncBody = any;

function joinedTimeline(s: SyncBody, roomId: string): any[] {
  return s?.rooms?.join?.[roomId]?.timeline?.events ?? [];
}

/** Every event (timeline and state, all sections) a sync response carries for a room. */
function allRoomEvents(s: SyncBody, roomId: string): any[] {
  const out: any[] = [];
  for (const section of ['join', 'leave']) {
    const r = s?.rooms?.[section]?.[roomId];
    if (!r) continue;
    out.push(...(r.timeline?.events ?? []), ...(r.state?.events ?? []));
  }
  out.push(...(s?.rooms?.invite?.[roomId]?.invite_state?.events ?? []));
  return out;
}

/**
 * Incremental-sync from `since` until `done` holds for the responses so far
 * (each request long-polls up to 1 s). Returns every response and the last token.
 */
async function syncUntil(api: Api, since: string, done: (all: SyncBody[]) => boolean, timeoutMs = 5000, filter?: unknown) {
  const all: SyncBody[] = [];
  const deadline = Date.now() + timeoutMs;
  let token = since;
  while (!done(all)) {
    if (Date.now() > deadline) throw new Error(`sync condition not met within ${timeoutMs} ms; got ${JSON.stringify(all).slice(0, 2000)}`);
    const s = await api.sync({ since: token, timeout: 1000, filter });
    all.push(s);
    assert.equal(typeof s.next_batch, 'string');
    token = s.next_batch;
  }
  return { all, token };
}

describe('/sync', { timeout: 90_000 }, () => {
  let server: TestServer;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let carol: RegisteredUser;
  let aliceApi: Api;
  let bobApi: Api;
  let carolApi: Api;
  let roomId: string;

  before(async () => {
    server = await startTestServer();
    alice = await registerUser(server.url, 'alice', PASSWORD);
    bob = await registerUser(server.url, 'bob', PASSWORD);
    carol = await registerUser(server.url, 'carol', PASSWORD);
    aliceApi = new Api(server.url, alice.accessToken);
    bobApi = new Api(server.url, bob.accessToken);
    carolApi = new Api(server.url, carol.accessToken);
    roomId = await aliceApi.createRoom({ preset: 'private_chat', name: 'Sync room' });
    await aliceApi.invite(roomId, bob.userId);
    await bobApi.join(roomId);
  });

  after(async () => {
    await server?.close();
  });

  test('initial sync shows the joined room with its state and timeline', async () => {
    const s = await bobApi.sync({ timeout: 0 });
    assert.equal(typeof s.next_batch, 'string');
    const room = s.rooms?.join?.[roomId];
    assert.ok(room, 'room in rooms.join');
    const events = [...(room.state?.events ?? []), ...(room.timeline?.events ?? [])];
    assert.ok(events.some((e: any) => e.type === 'm.room.create'), 'create event present');
    assert.ok(events.some((e: any) => e.type === 'm.room.name' && e.content.name === 'Sync room'));
    assert.ok(
      events.some((e: any) => e.type === 'm.room.member' && e.state_key === bob.userId && e.content.membership === 'join'),
      "bob's own join present",
    );
    for (const e of room.timeline.events) {
      assert.equal(typeof e.event_id, 'string');
      assert.equal(typeof e.origin_server_ts, 'number');
      assert.equal(typeof e.sender, 'string');
    }
  });

  test('a long-poll returns within 1 s of another user sending a message', async () => {
    let since = await caughtUp(bobApi);
    let settled = false;
    const startPoll = (token: string) => {
      settled = false;
      return bobApi.sync({ since: token, timeout: 10_000 }).then((body) => {
        settled = true;
        return { body, at: Date.now() };
      });
    };
    let poll = startPoll(since);
    const pollStarted = Date.now();
    await sleep(300);
    // The poll must still be waiting (nothing happened). Tolerate one early answer
    // carrying something unrelated (e.g. presence) by polling again.
    for (let i = 0; i < 3 && settled; i++) {
      const early = await poll;
      assert.equal(joinedTimeline(early.body, roomId).length, 0, 'nothing was sent yet');
      since = early.body.next_batch;
      poll = startPoll(since);
      await sleep(300);
    }
    assert.equal(settled, false, 'the long-poll waits while nothing happens');

    const sentAt = Date.now();
    const eventId = await aliceApi.send(roomId, 'wake up bob');
    let { body, at } = await poll;
    // The wake-up may be for something else first; keep polling until the message arrives.
    while (!joinedTimeline(body, roomId).some((e: any) => e.event_id === eventId) && at - sentAt < 1000) {
      ({ body, at } = await startPoll(body.next_batch));
    }
    const latency = at - sentAt;
    assert.ok(joinedTimeline(body, roomId).some((e: any) => e.event_id === eventId), 'the message is in the woken sync');
    assert.ok(latency < 1000, `long-poll answered ${latency} ms after the send (limit 1000)`);
    assert.ok(at - pollStarted >= 250, 'the poll really waited before the send');
  });

  test('a long-poll with nothing to say returns after about its timeout', async () => {
    const since = await caughtUp(bobApi);
    let quiet: { ms: number; body: SyncBody } | undefined;
    for (let i = 0; i < 3 && !quiet; i++) {
      const t0 = Date.now();
      const body = await bobApi.sync({ since, timeout: 600 });
      const ms = Date.now() - t0;
      if (!body.rooms?.join?.[roomId]?.timeline?.events?.length) quiet = { ms, body };
    }
    assert.ok(quiet, 'a sync with nothing new');
    assert.ok(quiet.ms >= 500, `returned after ${quiet.ms} ms, before its 600 ms timeout`);
    assert.ok(quiet.ms < 3000, `returned after ${quiet.ms} ms, long after its 600 ms timeout`);
  });

  test('incremental sync returns only new events', async () => {
    const old1 = await aliceApi.send(roomId, 'old one');
    const old2 = await aliceApi.send(roomId, 'old two');
    const since = await caughtUp(bobApi);
    const fresh = await aliceApi.send(roomId, 'brand new');
    const { all, token } = await syncUntil(bobApi, since, (all) => all.some((s) => joinedTimeline(s, roomId).some((e: any) => e.event_id === fresh)));
    const ids = all.flatMap((s) => joinedTimeline(s, roomId).map((e: any) => e.event_id));
    assert.ok(ids.includes(fresh));
    assert.ok(!ids.includes(old1) && !ids.includes(old2), `old events repeated in incremental sync: ${JSON.stringify(ids)}`);
    assert.equal(ids.filter((id) => id === fresh).length, 1, 'the new event is delivered once');
    const last = all[all.length - 1].rooms.join[roomId].timeline;
    assert.equal(last.limited ?? false, false, 'one new event is not a limited timeline');

    // and once delivered, it is not delivered again
    const again = await bobApi.sync({ since: token, timeout: 0 });
    assert.ok(!joinedTimeline(again, roomId).some((e: any) => e.event_id === fresh), 'not repeated in the next sync');
  });

  test('a limited timeline has a prev_batch that /messages continues from', async () => {
    const since = await caughtUp(bobApi);
    const sent: string[] = [];
    for (let i = 0; i < 15; i++) sent.push(await aliceApi.send(roomId, `burst ${i}`));
    const s = await bobApi.sync({ since, timeout: 0, filter: { room: { timeline: { limit: 5 } } } });
    const tl = s.rooms?.join?.[roomId]?.timeline;
    assert.ok(tl, 'room in the incremental sync');
    assert.equal(tl.limited, true, 'more events than the limit: limited');
    assert.deepEqual(tl.events.map((e: any) => e.event_id), sent.slice(10), 'the last 5 events, oldest first');
    assert.equal(typeof tl.prev_batch, 'string');

    const page = await bobApi.messages(roomId, { from: tl.prev_batch, dir: 'b', limit: 10 });
    assert.equal(page.status, 200, JSON.stringify(page.body));
    assert.deepEqual(
      page.body.chunk.map((e: any) => e.event_id),
      sent.slice(0, 10).reverse(),
      'the 10 events before the sync window, newest first, no gap and no overlap',
    );
    // paging forward from the sync token that came before the burst reaches the same events
    const fwd = await bobApi.messages(roomId, { from: since, dir: 'f', limit: 20 });
    assert.equal(fwd.status, 200, JSON.stringify(fwd.body));
    assert.deepEqual(fwd.body.chunk.map((e: any) => e.event_id), sent);
  });

  test('filters: inline JSON timeline limit and types, uploaded filter ids', async () => {
    const other = await aliceApi.createRoom({ preset: 'private_chat', name: 'Other room' });
    await aliceApi.invite(other, bob.userId);
    await bobApi.join(other);
    await aliceApi.sendState(roomId, 'm.room.topic', '', { topic: 'filters' });
    const m1 = await aliceApi.send(roomId, 'filter one');
    const m2 = await aliceApi.send(roomId, 'filter two');
    await aliceApi.sendState(roomId, 'm.room.topic', '', { topic: 'after the messages' });

    const filter = { room: { rooms: [roomId], timeline: { limit: 2, types: ['m.room.message'] } } };
    const s = await bobApi.sync({ timeout: 0, filter });
    const tl = s.rooms?.join?.[roomId]?.timeline;
    assert.ok(tl, 'filtered room present');
    assert.deepEqual(tl.events.map((e: any) => e.event_id), [m1, m2], 'only the last 2 m.room.message events');
    assert.equal(tl.limited, true);
    assert.equal(s.rooms.join[other], undefined, 'rooms outside filter.room.rooms are left out');

    const notTypes = await bobApi.sync({ timeout: 0, filter: { room: { rooms: [roomId], timeline: { limit: 5, not_types: ['m.room.message'] } } } });
    const nt = joinedTimeline(notTypes, roomId);
    assert.ok(nt.length > 0, 'some non-message events');
    assert.ok(nt.every((e: any) => e.type !== 'm.room.message'), 'not_types excludes messages');

    const up = await bobApi.post(`/user/${enc(bob.userId)}/filter`, filter);
    assert.equal(up.status, 200, JSON.stringify(up.body));
    assert.equal(typeof up.body.filter_id, 'string');
    const stored = await bobApi.get(`/user/${enc(bob.userId)}/filter/${enc(up.body.filter_id)}`);
    assert.equal(stored.status, 200);
    assert.deepEqual(stored.body.room.timeline, filter.room.timeline);
    const byId = await bobApi.sync({ timeout: 0, filter: up.body.filter_id });
    assert.deepEqual(joinedTimeline(byId, roomId).map((e: any) => e.event_id), [m1, m2], 'the uploaded filter gives the same result');
    assert.equal(byId.rooms.join[other], undefined);
  });

  test('an invite appears in rooms.invite and a rejected invite in rooms.leave', async () => {
    const since = await caughtUp(carolApi);
    await aliceApi.invite(roomId, carol.userId);
    const { all, token } = await syncUntil(carolApi, since, (all) => all.some((s) => s.rooms?.invite?.[roomId]));
    const inv = all.find((s) => s.rooms?.invite?.[roomId]).rooms.invite[roomId];
    const stripped: any[] = inv.invite_state?.events ?? [];
    const me = stripped.find((e) => e.type === 'm.room.member' && e.state_key === carol.userId);
    assert.ok(me, `carol's invite member event in invite_state: ${JSON.stringify(stripped)}`);
    assert.equal(me.content.membership, 'invite');
    assert.equal(me.sender, alice.userId);
    assert.ok(stripped.some((e) => e.type === 'm.room.name' && e.content.name === 'Sync room'), 'room name in invite_state');
    assert.equal(all.some((s) => s.rooms?.join?.[roomId]), false, 'an invited room is not in rooms.join');

    await carolApi.leave(roomId);
    const left = await syncUntil(carolApi, token, (all) => all.some((s) => s.rooms?.leave?.[roomId]));
    const leaveRoom = left.all.find((s) => s.rooms?.leave?.[roomId]).rooms.leave[roomId];
    const evs = [...(leaveRoom.timeline?.events ?? []), ...(leaveRoom.state?.events ?? [])];
    assert.ok(
      evs.some((e: any) => e.type === 'm.room.member' && e.state_key === carol.userId && e.content.membership === 'leave'),
      `carol's leave event in rooms.leave: ${JSON.stringify(leaveRoom)}`,
    );
    assert.ok(!left.all.some((s) => s.rooms?.invite?.[roomId]), 'no longer in rooms.invite');
  });

  const departures = [
    { how: 'leaves', membership: 'leave', act: (room: string) => bobApi.leave(room) },
    { how: 'is kicked', membership: 'leave', act: (room: string) => aliceApi.ok('POST', `/rooms/${enc(room)}/kick`, { user_id: bob.userId, reason: 'bye' }) },
    { how: 'is banned', membership: 'ban', act: (room: string) => aliceApi.ok('POST', `/rooms/${enc(room)}/ban`, { user_id: bob.userId, reason: 'bye' }) },
  ];

  for (const { how, membership, act } of departures) {
    test(`when the user ${how}, the room moves to rooms.leave and nothing later reaches them`, async () => {
      const room = await aliceApi.createRoom({ preset: 'public_chat', name: `Departure: ${how}` });
      await bobApi.join(room);
      const before = await aliceApi.send(room, `before bob ${how}`);
      const since = await caughtUp(bobApi);

      await act(room);
      const left = await syncUntil(bobApi, since, (all) => all.some((s) => s.rooms?.leave?.[room]));
      const lr = left.all.find((s) => s.rooms?.leave?.[room]).rooms.leave[room];
      assert.ok(
        (lr.timeline?.events ?? []).some((e: any) => e.type === 'm.room.member' && e.state_key === bob.userId && e.content.membership === membership),
        `the ${membership} event is in the leave section timeline: ${JSON.stringify(lr)}`,
      );
      assert.equal(left.all[left.all.length - 1].rooms?.join?.[room], undefined, 'not in rooms.join any more');

      // things happen after bob is gone
      const secret = await aliceApi.send(room, 'SECRET after bob went');
      await aliceApi.sendState(room, 'm.room.topic', '', { topic: 'SECRET topic' });
      const aliceView = await aliceApi.ok('GET', `/rooms/${enc(room)}/event/${enc(secret)}`);
      assert.equal(aliceView.content.body, 'SECRET after bob went', 'control: the secret exists for members');

      // incremental sync after the departure: nothing of the room
      const later = await bobApi.sync({ since: left.token, timeout: 500 });
      assert.ok(!JSON.stringify(later).includes('SECRET'), `secret leaked into incremental sync: ${JSON.stringify(later.rooms)}`);
      // a sync from before the departure: the departure, but nothing after it
      const fromBefore = await bobApi.sync({ since, timeout: 0 });
      assert.ok(!JSON.stringify(fromBefore).includes('SECRET'), `secret leaked into a sync spanning the departure: ${JSON.stringify(fromBefore.rooms)}`);
      assert.ok(allRoomEvents(fromBefore, room).length > 0, 'the departure itself is reported');
      // an initial sync that includes left rooms: history up to the departure only
      const full = await bobApi.sync({ timeout: 0, filter: { room: { include_leave: true } } });
      assert.ok(!JSON.stringify(full).includes('SECRET'), 'secret leaked into an include_leave initial sync');

      // the room APIs refuse, or show only what bob could see while he was there
      for (const q of [
        { from: left.token, dir: 'b' as const },
        { from: since, dir: 'f' as const },
      ]) {
        const msgs = await bobApi.messages(room, { ...q, limit: 50 });
        if (msgs.status === 200) {
          assert.ok(!JSON.stringify(msgs.body).includes('SECRET'), `/messages dir=${q.dir} leaks events after the departure`);
          if (q.dir === 'b') assert.ok(msgs.body.chunk.some((e: any) => e.event_id === before), 'history before the departure is still readable');
        } else {
          assert.equal(msgs.status, 403, JSON.stringify(msgs.body));
        }
      }
      for (const path of [`/rooms/${enc(room)}/event/${enc(secret)}`, `/rooms/${enc(room)}/context/${enc(secret)}`]) {
        const r = await bobApi.get(path);
        assert.ok(r.status === 403 || r.status === 404, `GET ${path} after departure: ${r.status} ${JSON.stringify(r.body)}`);
        assert.ok(!JSON.stringify(r.body).includes('SECRET'));
      }
      for (const path of [`/rooms/${enc(room)}/state`, `/rooms/${enc(room)}/state/m.room.topic/`, `/rooms/${enc(room)}/members`]) {
        const r = await bobApi.get(path);
        assert.ok(r.status === 200 || r.status === 403 || r.status === 404, `GET ${path}: ${r.status}`);
        assert.ok(!JSON.stringify(r.body).includes('SECRET'), `GET ${path} after departure leaks later state: ${JSON.stringify(r.body)}`);
      }
      // and bob cannot write there
      const send = await bobApi.put(`/rooms/${enc(room)}/send/m.room.message/after-${membership}-${how.length}`, { msgtype: 'm.text', body: 'hello?' });
      assert.equal(send.status, 403);
    });
  }

  test('history_visibility "joined": a newcomer sees nothing from before they joined', async () => {
    const room = await aliceApi.createRoom({
      preset: 'public_chat',
      name: 'Joined-only history',
      initial_state: [{ type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } }],
    });
    const hv = await aliceApi.ok('GET', `/rooms/${enc(room)}/state/m.room.history_visibility/`);
    assert.equal(hv.history_visibility, 'joined');
    const early = await aliceApi.send(room, 'EARLY words before carol');
    const since = await caughtUp(carolApi);
    await carolApi.join(room);
    const after = await aliceApi.send(room, 'after carol joined');

    const { all } = await syncUntil(carolApi, since, (all) => all.some((s) => joinedTimeline(s, room).some((e: any) => e.event_id === after)));
    assert.ok(!JSON.stringify(all).includes('EARLY words'), 'incremental sync shows history from before the join');
    const initial = await carolApi.sync({ timeout: 0 });
    assert.ok(!JSON.stringify(initial.rooms?.join?.[room] ?? {}).includes('EARLY words'), 'initial sync shows history from before the join');
    const msgs = await carolApi.messages(room, { dir: 'b', limit: 50, from: initial.next_batch });
    assert.equal(msgs.status, 200);
    assert.ok(msgs.body.chunk.some((e: any) => e.event_id === after), 'carol reads what came after her join');
    assert.ok(!msgs.body.chunk.some((e: any) => e.event_id === early), '/messages shows history from before the join');
    const ev = await carolApi.get(`/rooms/${enc(room)}/event/${enc(early)}`);
    assert.ok(ev.status === 403 || ev.status === 404, `GET /event of a message before the join: ${ev.status} ${JSON.stringify(ev.body)}`);
    const ctx = await carolApi.get(`/rooms/${enc(room)}/context/${enc(after)}?limit=10`);
    assert.equal(ctx.status, 200);
    assert.ok(!JSON.stringify(ctx.body.events_before).includes('EARLY words'), '/context shows history from before the join');
  });
});
