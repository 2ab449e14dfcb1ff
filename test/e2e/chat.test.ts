/**
 * End-to-end chat with a real client library (matrix-js-sdk, what Element
 * uses): registration, rooms, messages through /sync, pagination, ephemeral
 * events, profiles, moderation, directory, redaction, account data, tags,
 * login/logout, devices and passwords.
 *
 *   RANVIER_TEST_DB=sqlite node --import tsx --test test/e2e/chat.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import './sdk-setup.js'; // before matrix-js-sdk
import * as sdk from 'matrix-js-sdk';
import { startTestServer, registerUser, type TestServer } from './harness.js';
import { Api, CS, enc, login, makeClient, passwordAuth, request, sdkError, startAndSync, waitFor, type SdkUser } from './util.js';

const PASSWORD = 'correct horse battery staple';

interface Recorded {
  timeline: Array<{ roomId: string; event: sdk.MatrixEvent }>;
  typing: Array<{ roomId: string; userId: string; typing: boolean }>;
  receipts: Array<{ roomId: string; content: Record<string, any> }>;
  accountData: sdk.MatrixEvent[];
}

/** Record what a client's sync delivers, from before it starts (no missed emits). */
function record(client: sdk.MatrixClient): Recorded {
  const r: Recorded = { timeline: [], typing: [], receipts: [], accountData: [] };
  client.on(sdk.RoomEvent.Timeline, (event, room, toStartOfTimeline) => {
    if (!toStartOfTimeline && room) r.timeline.push({ roomId: room.roomId, event });
  });
  client.on(sdk.RoomMemberEvent.Typing, (_event, member) => {
    r.typing.push({ roomId: member.roomId, userId: member.userId, typing: member.typing });
  });
  client.on(sdk.RoomEvent.Receipt, (event, room) => {
    r.receipts.push({ roomId: room.roomId, content: event.getContent() });
  });
  client.on(sdk.ClientEvent.AccountData, (event) => {
    r.accountData.push(event);
  });
  return r;
}

/** Every event the client holds for a room, oldest first (walking linked timelines). */
function roomEvents(room: sdk.Room): sdk.MatrixEvent[] {
  const out: sdk.MatrixEvent[] = [];
  let t: sdk.EventTimeline | null = room.getLiveTimeline();
  const seen = new Set<sdk.EventTimeline>();
  while (t && !seen.has(t)) {
    seen.add(t);
    out.unshift(...t.getEvents());
    t = t.getNeighbouringTimeline(sdk.EventTimeline.BACKWARDS);
  }
  return out;
}

function sawMessage(rec: Recorded, roomId: string, eventId: string, body?: string): boolean {
  return rec.timeline.some(
    (t) => t.roomId === roomId && t.event.getId() === eventId && (body === undefined || t.event.getContent().body === body),
  );
}

describe('chat through matrix-js-sdk', { timeout: 120_000 }, () => {
  let server: TestServer;
  let url: string;
  let alice: SdkUser;
  let bob: SdkUser;
  let aliceRec: Recorded;
  let bobRec: Recorded;
  let bobApi: Api;
  let aliceRegistration: any;
  let roomId: string;
  let lobbyId: string;
  const extraClients: sdk.MatrixClient[] = [];

  before(async () => {
    server = await startTestServer();
    url = server.url;

    // alice registers through the SDK's own registration call (UIA with m.login.dummy) ...
    const anon = makeClient(url).client;
    const first = await sdkError(anon.registerRequest({ username: 'alice', password: PASSWORD }));
    assert.equal(first.status, 401, `first /register must ask for auth: ${JSON.stringify(first.data)}`);
    aliceRegistration = await anon.registerRequest({
      username: 'alice',
      password: PASSWORD,
      initial_device_display_name: 'alice laptop',
      auth: { type: 'm.login.dummy', session: first.data.session },
    });
    alice = makeClient(url, {
      userId: aliceRegistration.user_id,
      accessToken: aliceRegistration.access_token,
      deviceId: aliceRegistration.device_id,
    });
    // ... bob through the harness.
    const b = await registerUser(url, 'bob', PASSWORD);
    bob = makeClient(url, b);
    bobApi = new Api(url, b.accessToken);

    aliceRec = record(alice.client);
    bobRec = record(bob.client);
    await Promise.all([startAndSync(alice), startAndSync(bob)]);
  });

  after(async () => {
    alice?.client.stopClient();
    bob?.client.stopClient();
    for (const c of extraClients) c.stopClient();
    await server?.close();
  });

  test('registration through the SDK returns a usable account', async () => {
    assert.equal(aliceRegistration.user_id, `@alice:${server.serverName}`);
    assert.equal(typeof aliceRegistration.access_token, 'string');
    assert.equal(typeof aliceRegistration.device_id, 'string');
    const who = await alice.client.whoami();
    assert.equal(who.user_id, alice.userId);
    assert.equal(who.device_id, aliceRegistration.device_id);
  });

  test('alice creates a room, invites bob, bob sees the invite and joins', async () => {
    const res = await alice.client.createRoom({ name: 'Tea party', preset: sdk.Preset.PrivateChat });
    roomId = res.room_id;
    assert.match(roomId, /^!/);
    await waitFor('alice sees her new room', () => alice.client.getRoom(roomId)?.getMyMembership() === 'join');

    await alice.client.invite(roomId, bob.userId);
    await waitFor('bob sees the invite through sync', () => bob.client.getRoom(roomId)?.getMyMembership() === 'invite');
    const inviter = bob.client.getRoom(roomId)!.getMember(bob.userId)?.events.member?.getSender();
    assert.equal(inviter, alice.userId);

    await bob.client.joinRoom(roomId);
    await waitFor('bob is joined in his sync', () => bob.client.getRoom(roomId)?.getMyMembership() === 'join');
    await waitFor('alice sees bob join', () => alice.client.getRoom(roomId)?.getMember(bob.userId)?.membership === 'join');
    assert.equal(bob.client.getRoom(roomId)!.name, 'Tea party');
  });

  test('messages in both directions reach the other client through sync', async () => {
    for (let i = 0; i < 5; i++) {
      const a = await alice.client.sendTextMessage(roomId, `alice says ${i}`);
      await waitFor(`bob receives alice's message ${i}`, () => sawMessage(bobRec, roomId, a.event_id, `alice says ${i}`));
      const b = await bob.client.sendTextMessage(roomId, `bob says ${i}`);
      await waitFor(`alice receives bob's message ${i}`, () => sawMessage(aliceRec, roomId, b.event_id, `bob says ${i}`));
      const got = bobRec.timeline.find((t) => t.event.getId() === a.event_id)!.event;
      assert.equal(got.getSender(), alice.userId);
      assert.equal(got.getType(), 'm.room.message');
    }
    // and each sees its own messages come back with their server ids
    const aliceRoom = alice.client.getRoom(roomId)!;
    const bodies = roomEvents(aliceRoom)
      .filter((e) => e.getType() === 'm.room.message')
      .map((e) => e.getContent().body);
    assert.deepEqual(bodies.slice(-10), [0, 1, 2, 3, 4].flatMap((i) => [`alice says ${i}`, `bob says ${i}`]));
  });

  const hundredIds: string[] = [];

  test('alice sends 100 messages; bob scrolls back through all of them in order', async () => {
    for (let i = 0; i < 100; i++) {
      const r = await alice.client.sendTextMessage(roomId, `numbered ${i}`);
      hundredIds.push(r.event_id);
    }
    assert.equal(new Set(hundredIds).size, 100, 'every send got its own event id');
    await waitFor('bob syncs the 100th message', () => bob.client.getRoom(roomId)?.findEventById(hundredIds[99]), {
      timeoutMs: 10_000,
    });

    const room = bob.client.getRoom(roomId)!;
    for (let i = 0; i < 40; i++) {
      const events = roomEvents(room);
      if (events.some((e) => e.getType() === 'm.room.create')) break;
      if (room.getLiveTimeline().getPaginationToken(sdk.EventTimeline.BACKWARDS) === null) break;
      await bob.client.scrollback(room, 30);
    }
    const events = roomEvents(room);
    assert.ok(events.some((e) => e.getType() === 'm.room.create'), 'scrollback reaches the start of the room');
    const numbered = events.filter((e) => e.getType() === 'm.room.message' && /^numbered /.test(e.getContent().body));
    assert.deepEqual(
      numbered.map((e) => e.getId()),
      hundredIds,
      'bob holds exactly the 100 messages, in order, none missing or duplicated',
    );
  });

  test('raw /messages dir=b pages back through the 100 messages in order', async () => {
    const room = bob.client.getRoom(roomId)!;
    let from: string | undefined = bob.client.store.getSyncToken() ?? undefined;
    assert.ok(from, 'bob has a sync token');
    const seen: Array<{ id: string; body: string }> = [];
    for (let page = 0; page < 30; page++) {
      const r = await bobApi.messages(roomId, { from, dir: 'b', limit: 17 });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.ok(Array.isArray(r.body.chunk));
      assert.equal(r.body.start, from, 'start echoes the from token');
      for (const ev of r.body.chunk) {
        assert.equal(ev.room_id, roomId);
        if (ev.type === 'm.room.message') seen.push({ id: ev.event_id, body: ev.content.body });
      }
      if (!r.body.end || r.body.chunk.length === 0) break;
      from = r.body.end;
    }
    const numbered = seen.filter((s) => s.body.startsWith('numbered ')).reverse();
    assert.deepEqual(numbered.map((s) => s.id), hundredIds);
    assert.deepEqual(numbered.map((s) => s.body), hundredIds.map((_, i) => `numbered ${i}`));
    assert.ok(room, 'room exists client side');
  });

  test('typing notifications reach the other member', async () => {
    await alice.client.sendTyping(roomId, true, 20_000);
    await waitFor('bob sees alice typing', () =>
      bobRec.typing.some((t) => t.roomId === roomId && t.userId === alice.userId && t.typing),
    );
    assert.equal(bob.client.getRoom(roomId)!.getMember(alice.userId)!.typing, true);
    await alice.client.sendTyping(roomId, false, 0);
    await waitFor('bob sees alice stop typing', () => bob.client.getRoom(roomId)!.getMember(alice.userId)!.typing === false);
  });

  test('read receipts reach the other member', async () => {
    const target = bob.client.getRoom(roomId)!.findEventById(hundredIds[99]);
    assert.ok(target, 'bob has the event to acknowledge');
    await bob.client.sendReadReceipt(target, sdk.ReceiptType.Read);
    await waitFor('alice sees bob read receipt', () =>
      aliceRec.receipts.some((r) => r.roomId === roomId && r.content[hundredIds[99]]?.['m.read']?.[bob.userId]),
    );
    const rec = aliceRec.receipts.find((r) => r.content[hundredIds[99]]?.['m.read']?.[bob.userId])!;
    assert.equal(typeof rec.content[hundredIds[99]]['m.read'][bob.userId].ts, 'number');
    assert.equal(alice.client.getRoom(roomId)!.getEventReadUpTo(bob.userId), hundredIds[99]);
  });

  test('a display name change shows in the room member event', async () => {
    await alice.client.setDisplayName('Alice Liddell');
    await waitFor('bob sees alice renamed in the room', () => bob.client.getRoom(roomId)!.getMember(alice.userId)?.name === 'Alice Liddell');
    const memberEvent = bobRec.timeline.find(
      (t) =>
        t.roomId === roomId &&
        t.event.getType() === 'm.room.member' &&
        t.event.getStateKey() === alice.userId &&
        t.event.getContent().displayname === 'Alice Liddell',
    );
    assert.ok(memberEvent, 'a new m.room.member event carries the name');
    assert.equal(memberEvent.event.getContent().membership, 'join');
    const profile = await bob.client.getProfileInfo(alice.userId);
    assert.equal(profile.displayname, 'Alice Liddell');
  });

  test('room name and topic changes are state both clients see', async () => {
    await alice.client.setRoomName(roomId, 'Mad Tea Party');
    await alice.client.setRoomTopic(roomId, 'Why is a raven like a writing-desk?');
    await waitFor('bob sees the new name', () => bob.client.getRoom(roomId)!.name === 'Mad Tea Party');
    await waitFor(
      'bob sees the topic',
      () => bob.client.getRoom(roomId)!.currentState.getStateEvents('m.room.topic', '')?.getContent().topic === 'Why is a raven like a writing-desk?',
    );
    const name = await bob.client.getStateEvent(roomId, 'm.room.name', '');
    assert.deepEqual(name, { name: 'Mad Tea Party' });
    const state = await bobApi.ok('GET', `/rooms/${enc(roomId)}/state`);
    const topic = (state as any[]).find((e) => e.type === 'm.room.topic');
    assert.equal(topic.content.topic, 'Why is a raven like a writing-desk?');
    assert.equal(topic.sender, alice.userId);
  });

  test('redaction empties the content on the other client and on the server', async () => {
    const { event_id } = await alice.client.sendTextMessage(roomId, 'something I regret');
    await waitFor('bob sees the message', () => sawMessage(bobRec, roomId, event_id));
    await alice.client.redactEvent(roomId, event_id, undefined, { reason: 'oops' });
    await waitFor('bob sees it redacted', () => bob.client.getRoom(roomId)!.findEventById(event_id)?.isRedacted());
    const ev = bob.client.getRoom(roomId)!.findEventById(event_id)!;
    assert.deepEqual(ev.getContent(), {});
    const raw = await bobApi.ok('GET', `/rooms/${enc(roomId)}/event/${enc(event_id)}`);
    assert.deepEqual(raw.content, {}, 'the server serves the redacted event');
    assert.equal(raw.type, 'm.room.message');
    assert.equal(raw.unsigned?.redacted_because?.type, 'm.room.redaction');
    assert.equal(raw.unsigned?.redacted_because?.sender, alice.userId);
  });

  test('/context returns the event with its neighbours', async () => {
    const target = hundredIds[50];
    const ctx = await bobApi.ok('GET', `/rooms/${enc(roomId)}/context/${enc(target)}?limit=4`);
    assert.equal(ctx.event.event_id, target);
    assert.equal(ctx.event.content.body, 'numbered 50');
    assert.ok(ctx.events_before.length >= 1 && ctx.events_before.length <= 4);
    assert.ok(ctx.events_after.length >= 1 && ctx.events_after.length <= 4);
    assert.equal(ctx.events_before[0].event_id, hundredIds[49], 'events_before is newest first');
    assert.equal(ctx.events_after[0].event_id, hundredIds[51], 'events_after is oldest first');
    assert.equal(typeof ctx.start, 'string');
    assert.equal(typeof ctx.end, 'string');
    assert.ok(Array.isArray(ctx.state));
    // the tokens are usable in /messages
    const older = await bobApi.messages(roomId, { from: ctx.start, dir: 'b', limit: 1 });
    assert.equal(older.status, 200);
    const expectedBefore = hundredIds[50 - ctx.events_before.length - 1];
    assert.equal(older.body.chunk[0].event_id, expectedBefore);
  });

  test('/joined_members and /joined_rooms', async () => {
    const members = await bob.client.getJoinedRoomMembers(roomId);
    assert.deepEqual(Object.keys(members.joined).sort(), [alice.userId, bob.userId].sort());
    assert.equal(members.joined[alice.userId].display_name, 'Alice Liddell');
    const rooms = await bob.client.getJoinedRooms();
    assert.ok(rooms.joined_rooms.includes(roomId));
  });

  test('account data is stored and delivered through sync', async () => {
    const direct = { [bob.userId]: [roomId] };
    await alice.client.setAccountData(sdk.EventType.Direct, direct);
    await waitFor('alice syncs m.direct', () =>
      aliceRec.accountData.some((e) => e.getType() === 'm.direct' && e.getContent()[bob.userId]?.[0] === roomId),
    );
    assert.deepEqual(alice.client.getAccountData(sdk.EventType.Direct)?.getContent(), direct);
    const fromServer = await alice.client.getAccountDataFromServer(sdk.EventType.Direct);
    assert.deepEqual(fromServer, direct);
    // other users cannot read it
    const r = await bobApi.get(`/user/${enc(alice.userId)}/account_data/m.direct`);
    assert.equal(r.status, 403);

    await alice.client.setRoomAccountData(roomId, 'org.ranvier.test.note', { note: 'remember the dormouse' });
    await waitFor(
      'alice syncs room account data',
      () => alice.client.getRoom(roomId)!.getAccountData('org.ranvier.test.note')?.getContent().note === 'remember the dormouse',
    );
  });

  test('room tags are set, synced and removed', async () => {
    await alice.client.setRoomTag(roomId, 'u.work', { order: 0.25 });
    await waitFor('alice syncs the tag', () => alice.client.getRoom(roomId)!.tags['u.work']?.order === 0.25);
    const tags = await alice.client.getRoomTags(roomId);
    assert.deepEqual(tags.tags, { 'u.work': { order: 0.25 } });
    await alice.client.deleteRoomTag(roomId, 'u.work');
    await waitFor('alice syncs the tag removal', () => alice.client.getRoom(roomId)!.tags['u.work'] === undefined);
    assert.deepEqual((await alice.client.getRoomTags(roomId)).tags, {});
  });

  test('public room directory lists public rooms and honours the filter', async () => {
    const lobby = await alice.client.createRoom({
      name: 'Ranvier Lobby',
      topic: 'Say hello',
      visibility: sdk.Visibility.Public,
      preset: sdk.Preset.PublicChat,
      room_alias_name: 'lobby',
    });
    lobbyId = lobby.room_id;
    const secret = await alice.client.createRoom({ name: 'Secret lobby annex', preset: sdk.Preset.PrivateChat });

    const all = await bob.client.publicRooms({});
    const entry = all.chunk.find((r) => r.room_id === lobbyId);
    assert.ok(entry, `the public room is listed: ${JSON.stringify(all)}`);
    assert.equal(entry.name, 'Ranvier Lobby');
    assert.equal(entry.topic, 'Say hello');
    assert.equal(entry.canonical_alias, `#lobby:${server.serverName}`);
    assert.equal(entry.num_joined_members, 1);
    assert.equal(typeof entry.world_readable, 'boolean');
    assert.equal(typeof entry.guest_can_join, 'boolean');
    assert.ok(!all.chunk.some((r) => r.room_id === secret.room_id), 'private rooms are not listed');
    assert.ok(!all.chunk.some((r) => r.room_id === roomId), 'rooms never published are not listed');

    const hit = await bob.client.publicRooms({ filter: { generic_search_term: 'LOBBY' } });
    assert.deepEqual(hit.chunk.map((r) => r.room_id), [lobbyId]);
    const miss = await bob.client.publicRooms({ filter: { generic_search_term: 'no-such-room-xyzzy' } });
    assert.deepEqual(miss.chunk, []);
  });

  test('join by alias', async () => {
    const alias = `#lobby:${server.serverName}`;
    const resolved = await bob.client.getRoomIdForAlias(alias);
    assert.equal(resolved.room_id, lobbyId);
    const room = await bob.client.joinRoom(alias);
    assert.equal(room.roomId, lobbyId);
    await waitFor('bob is joined to the lobby', () => bob.client.getRoom(lobbyId)?.getMyMembership() === 'join');
    const members = await alice.client.getJoinedRoomMembers(lobbyId);
    assert.ok(members.joined[bob.userId]);
  });

  test('leave and forget', async () => {
    const stillJoined = await sdkError(bob.client.forget(lobbyId));
    assert.equal(stillJoined.status, 400, 'forgetting a joined room is refused');

    await bob.client.leave(lobbyId);
    await waitFor('alice sees bob leave', () => alice.client.getRoom(lobbyId)?.getMember(bob.userId)?.membership === 'leave');
    await waitFor('bob syncs his leave', () => bob.client.getRoom(lobbyId)?.getMyMembership() === 'leave');
    assert.ok(!(await bob.client.getJoinedRooms()).joined_rooms.includes(lobbyId));

    await bob.client.forget(lobbyId);
    const send = await sdkError(bob.client.sendTextMessage(lobbyId, 'ghost'));
    assert.equal(send.status, 403);
    assert.equal(send.errcode, 'M_FORBIDDEN');
    // a forgotten room is not offered in a fresh sync's leave section
    const s = await bobApi.sync({ filter: { room: { include_leave: true } } });
    assert.ok(!s.rooms?.leave?.[lobbyId], 'forgotten room absent from rooms.leave');
  });

  let modRoom: string;

  test('kick', async () => {
    modRoom = (await alice.client.createRoom({ name: 'Moderated', preset: sdk.Preset.PublicChat })).room_id;
    await bob.client.joinRoom(modRoom);
    await waitFor('bob joined the moderated room', () => bob.client.getRoom(modRoom)?.getMyMembership() === 'join');

    await alice.client.kick(modRoom, bob.userId, 'too loud');
    await waitFor('bob syncs the kick', () => bob.client.getRoom(modRoom)?.getMyMembership() === 'leave');
    const kick = bobRec.timeline.find(
      (t) => t.roomId === modRoom && t.event.getType() === 'm.room.member' && t.event.getStateKey() === bob.userId && t.event.getContent().membership === 'leave',
    );
    assert.ok(kick, 'bob received the kick event');
    assert.equal(kick.event.getSender(), alice.userId);
    assert.equal(kick.event.getContent().reason, 'too loud');
    const send = await sdkError(bob.client.sendTextMessage(modRoom, 'can I still talk?'));
    assert.equal(send.status, 403);

    // a kick is not a ban: bob can come back to a public room
    await bob.client.joinRoom(modRoom);
    await waitFor('bob rejoined', () => bob.client.getRoom(modRoom)?.getMyMembership() === 'join');
  });

  test('ban and unban', async () => {
    await alice.client.ban(modRoom, bob.userId, 'spam');
    await waitFor('bob syncs the ban', () => bob.client.getRoom(modRoom)?.getMyMembership() === 'ban');
    const rejoin = await sdkError(bob.client.joinRoom(modRoom));
    assert.equal(rejoin.status, 403);
    assert.equal(rejoin.errcode, 'M_FORBIDDEN');
    const state = await alice.client.getStateEvent(modRoom, 'm.room.member', bob.userId);
    assert.equal(state.membership, 'ban');
    assert.equal(state.reason, 'spam');

    await alice.client.unban(modRoom, bob.userId);
    const after = await alice.client.getStateEvent(modRoom, 'm.room.member', bob.userId);
    assert.equal(after.membership, 'leave');
    await bob.client.joinRoom(modRoom);
    await waitFor('bob rejoined after unban', () => bob.client.getRoom(modRoom)?.getMyMembership() === 'join');
  });

  test('user directory search finds users who share a room', async () => {
    const res = await bob.client.searchUserDirectory({ term: 'alice', limit: 10 });
    const hit = res.results.find((r) => r.user_id === alice.userId);
    assert.ok(hit, `alice found: ${JSON.stringify(res)}`);
    assert.equal(hit.display_name, 'Alice Liddell');
    assert.equal(typeof res.limited, 'boolean');
    const byName = await bob.client.searchUserDirectory({ term: 'Liddell' });
    assert.ok(byName.results.some((r) => r.user_id === alice.userId), 'search matches display names too');
    const none = await bob.client.searchUserDirectory({ term: 'nobody-by-this-name' });
    assert.deepEqual(none.results, []);
  });

  test('login with password, then logout invalidates the token', async () => {
    const anon = makeClient(url).client;
    const res = await anon.loginRequest({
      type: 'm.login.password',
      identifier: { type: 'm.id.user', user: 'bob' },
      password: PASSWORD,
      initial_device_display_name: 'bob phone',
    });
    assert.equal(res.user_id, bob.userId);
    assert.equal(typeof res.access_token, 'string');
    assert.notEqual(res.device_id, bob.client.getDeviceId(), 'a login is a new device');

    const phone = makeClient(url, { userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id }).client;
    extraClients.push(phone);
    const who = await phone.whoami();
    assert.equal(who.user_id, bob.userId);
    assert.equal(who.device_id, res.device_id);

    await phone.logout();
    const r = await request(url, 'GET', `${CS}/account/whoami`, { token: res.access_token });
    assert.equal(r.status, 401);
    assert.equal(r.body.errcode, 'M_UNKNOWN_TOKEN');
    // bob's main session is untouched
    assert.equal((await bob.client.whoami()).user_id, bob.userId);
  });

  test('devices: list, rename, delete with password UIA', async () => {
    const second = await login(url, 'bob', PASSWORD, 'bob tablet');
    assert.equal(second.status, 200, JSON.stringify(second.body));
    const tabletId: string = second.body.device_id;

    const list = await bob.client.getDevices();
    const ids = list.devices.map((d) => d.device_id);
    assert.ok(ids.includes(bob.client.getDeviceId()!), 'current device listed');
    assert.ok(ids.includes(tabletId), 'new device listed');
    assert.equal(list.devices.find((d) => d.device_id === tabletId)!.display_name, 'bob tablet');

    await bob.client.setDeviceDetails(tabletId, { display_name: 'kitchen tablet' });
    const renamed = await bob.client.getDevice(tabletId);
    assert.equal(renamed.display_name, 'kitchen tablet');

    const noAuth = await sdkError(bob.client.deleteDevice(tabletId));
    assert.equal(noAuth.status, 401, 'deleting a device requires user-interactive auth');
    assert.equal(typeof noAuth.data.session, 'string');
    assert.ok(
      (noAuth.data.flows as Array<{ stages: string[] }>).some((f) => f.stages.includes('m.login.password')),
      'a password flow is offered',
    );
    const wrong = await sdkError(bob.client.deleteDevice(tabletId, passwordAuth('bob', 'wrong password', noAuth.data.session)));
    assert.equal(wrong.status, 401, 'a wrong password is a failed stage (401)');
    assert.equal(wrong.errcode, 'M_FORBIDDEN');

    await bob.client.deleteDevice(tabletId, passwordAuth(bob.userId, PASSWORD, noAuth.data.session));
    const after = await bob.client.getDevices();
    assert.ok(!after.devices.some((d) => d.device_id === tabletId), 'device gone');
    const r = await request(url, 'GET', `${CS}/account/whoami`, { token: second.body.access_token });
    assert.equal(r.status, 401, "the deleted device's token no longer works");
    assert.equal(r.body.errcode, 'M_UNKNOWN_TOKEN');
  });

  test('change password (UIA), old password stops working, other devices logged out', async () => {
    const carol = await registerUser(url, 'carol', PASSWORD);
    const other = await login(url, 'carol', PASSWORD, 'carol other');
    assert.equal(other.status, 200);
    const client = makeClient(url, carol).client;
    extraClients.push(client);

    const probe = await request(url, 'POST', `${CS}/account/password`, { token: carol.accessToken, body: { new_password: 'new secret 1' } });
    assert.equal(probe.status, 401, 'changing password requires user-interactive auth');
    assert.equal(typeof probe.body.session, 'string');

    await client.setPassword(passwordAuth('carol', PASSWORD, probe.body.session), 'new secret 1');

    const old = await login(url, 'carol', PASSWORD);
    assert.equal(old.status, 403);
    assert.equal(old.body.errcode, 'M_FORBIDDEN');
    const fresh = await login(url, 'carol', 'new secret 1');
    assert.equal(fresh.status, 200);
    assert.equal(fresh.body.user_id, carol.userId);

    const current = await request(url, 'GET', `${CS}/account/whoami`, { token: carol.accessToken });
    assert.equal(current.status, 200, 'the device that changed the password stays logged in');
    const logged = await request(url, 'GET', `${CS}/account/whoami`, { token: other.body.access_token });
    assert.equal(logged.status, 401, 'other devices are logged out (logout_devices defaults to true)');
  });

  test('legacy r0 paths work like v3', async () => {
    const token = bob.client.getAccessToken()!;
    const v3 = await request(url, 'GET', '/_matrix/client/v3/account/whoami', { token });
    const r0 = await request(url, 'GET', '/_matrix/client/r0/account/whoami', { token });
    assert.equal(r0.status, 200);
    assert.deepEqual(r0.body, v3.body);
    assert.equal(r0.body.user_id, bob.userId);
    const r0rooms = await request(url, 'GET', '/_matrix/client/r0/joined_rooms', { token });
    assert.equal(r0rooms.status, 200);
    assert.ok(r0rooms.body.joined_rooms.includes(roomId));
  });
});
