/**
 * A misbehaving server in a federated room: forged, mis-signed and
 * auth-violating events are rejected one by one while the room keeps
 * working; a tampered event is kept only redacted; the room's server ACL
 * and the operator's allow list shut the server out.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- federation-evil
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { computeEventId } from '../../src/core/event-hashing.js';
import { hashAndSignEvent } from '../../src/core/event-signing.js';
import type { PDU } from '../../src/core/events.js';
import { getRoomVersion, type RoomVersion } from '../../src/core/room-versions.js';
import { startFakeServer, type FakeServer } from '../helpers/fake-federation-server.js';
import { registerUser, type TestServer } from './harness.js';
import { startFederation, type Federation } from './federation-harness.js';
import { Api, enc, freePort, waitFor } from './util.js';

const MALLORY = '@mallory:evil.test';

describe('a misbehaving server', { timeout: 90_000 }, () => {
  let fed: Federation;
  let evil: FakeServer;
  let a: TestServer;
  let alice: Api;
  let bob: Api;
  let roomId: string;
  let version: RoomVersion;
  /** State after mallory's join, by "type|state_key". */
  const stateIds = new Map<string, string>();
  let lastEventId: string;
  let depth: number;
  let txn = 0;

  const evilCall = (method: string, path: string, body?: unknown) => evil.call(a.federationUrl!, 'a.test', method, path, body);

  /** An event from mallory (or whoever `sender` is) on top of the last one, signed by evil.test. */
  const build = (type: string, content: Record<string, unknown>, opts: { sender?: string; stateKey?: string } = {}): { id: string; pdu: PDU } => {
    const auth = ['m.room.power_levels|', `m.room.member|${opts.sender ?? MALLORY}`];
    if (!version.roomIdIsCreateEventHash) auth.unshift('m.room.create|');
    const pdu: PDU = {
      room_id: roomId, type, sender: opts.sender ?? MALLORY, content, origin_server_ts: Date.now(), depth: ++depth,
      prev_events: [lastEventId], auth_events: auth.map((k) => stateIds.get(k)).filter((x): x is string => !!x),
    };
    if (opts.stateKey !== undefined) pdu.state_key = opts.stateKey;
    const signed = hashAndSignEvent(pdu, version, 'evil.test', evil.key);
    return { id: computeEventId(signed, version), pdu: signed };
  };

  const sendTxn = async (pdus: PDU[]) => {
    const r = await evilCall('PUT', `/_matrix/federation/v1/send/evil${++txn}`, { origin: 'evil.test', origin_server_ts: Date.now(), pdus, edus: [] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.pdus as Record<string, { error?: string }>;
  };

  const bodies = async (api: Api) => {
    const r = await api.messages(roomId, { limit: 100 });
    return (r.body.chunk as Array<{ type: string; sender: string; content: { body?: string } }>);
  };

  before(async () => {
    const evilPort = await freePort();
    fed = await startFederation(['a.test', 'b.test', 'c.test'], (name) => (name === 'c.test' ? { federation_allow_list: 'a.test' } : {}), { 'evil.test': evilPort });
    evil = await startFakeServer('evil.test', fed.ca, evilPort);
    a = fed.servers[0];
    alice = new Api(a.url, (await registerUser(a.url, 'alice', 'pw-alice-123')).accessToken);
    bob = new Api(fed.servers[1].url, (await registerUser(fed.servers[1].url, 'bob', 'pw-bob-123')).accessToken);
    roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.ok('POST', `/join/${enc(roomId)}?via=a.test`, {});

    // Mallory joins through a.test like any server would.
    const made = await evilCall('GET', `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(MALLORY)}?ver=10&ver=11&ver=12`);
    assert.equal(made.status, 200, JSON.stringify(made.body));
    version = getRoomVersion(made.body.room_version)!;
    const t = made.body.event;
    const join = hashAndSignEvent({ ...t, content: { membership: 'join' }, origin_server_ts: Date.now() }, version, 'evil.test', evil.key);
    const joinId = computeEventId(join, version);
    const sent = await evilCall('PUT', `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(joinId)}`, join);
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    for (const e of sent.body.state as PDU[]) stateIds.set(`${e.type}|${e.state_key}`, computeEventId(e, version));
    stateIds.set(`m.room.member|${MALLORY}`, joinId);
    lastEventId = joinId;
    depth = join.depth;
  });

  after(async () => {
    await evil?.close();
    await fed?.close();
  });

  test('bad events are rejected one by one, good ones in the same transaction kept', async () => {
    const good = build('m.room.message', { msgtype: 'm.text', body: 'hi from mallory' });
    lastEventId = good.id;
    const forged = build('m.room.message', { msgtype: 'm.text', body: 'I am alice' }, { sender: '@alice:a.test' });
    const misSigned = build('m.room.message', { msgtype: 'm.text', body: 'bad signature' });
    const sig = misSigned.pdu.signatures!['evil.test'][evil.key.keyId];
    misSigned.pdu.signatures = { 'evil.test': { [evil.key.keyId]: (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1) } };
    const pl = stateIds.get('m.room.power_levels|')!;
    const plEvent = (await a.ctx.rooms.events.get(pl))!.pdu;
    const grab = build('m.room.power_levels', { ...plEvent.content, users: { ...(plEvent.content.users as object), [MALLORY]: 100 } }, { stateKey: '' });
    const tampered = build('m.room.message', { msgtype: 'm.text', body: 'original' });
    tampered.pdu = { ...tampered.pdu, content: { msgtype: 'm.text', body: 'tampered after signing' } };

    const results = await sendTxn([good.pdu, forged.pdu, misSigned.pdu, grab.pdu, tampered.pdu]);
    assert.deepEqual(results[good.id], {});
    assert.match(results[forged.id]?.error ?? '', /signature/);
    assert.match(results[misSigned.id]?.error ?? '', /signature/);
    assert.match(results[grab.id]?.error ?? '', /auth|power/i);
    assert.deepEqual(results[tampered.id], {});

    // What alice's server shows: mallory's good message, the tampered one only redacted, nothing forged.
    const chunk = await bodies(alice);
    assert.ok(chunk.some((e) => e.content.body === 'hi from mallory'));
    assert.ok(!chunk.some((e) => e.content.body === 'I am alice' || e.content.body === 'bad signature' || e.content.body === 'tampered after signing' || e.content.body === 'original'));
    const tamperedStored = await a.ctx.rooms.events.get(tampered.id);
    assert.deepEqual(tamperedStored?.pdu.content, {});
    const levels = await alice.ok('GET', `/rooms/${enc(roomId)}/state/m.room.power_levels/`);
    assert.equal(levels.users[MALLORY], undefined);
  });

  test('the room keeps working for the honest servers', async () => {
    await alice.send(roomId, 'still here');
    await waitFor('bob sees it', async () => (await bodies(bob)).some((e) => e.content.body === 'still here'), { timeoutMs: 15_000 });
  });

  test('concurrent branches are merged with state resolution', async () => {
    // Fork from a.test's latest event (alice's last message).
    const [fork] = JSON.parse((await a.ctx.rooms.getRoom(roomId))!.forward_extremities) as string[];
    lastEventId = fork;
    depth = (await a.ctx.rooms.events.get(fork))!.pdu.depth;
    const left = build('m.room.member', { membership: 'join', displayname: 'Mallory A' }, { stateKey: MALLORY });
    lastEventId = fork;
    depth = (await a.ctx.rooms.events.get(fork))!.pdu.depth;
    const right = build('m.room.member', { membership: 'join', displayname: 'Mallory B' }, { stateKey: MALLORY });
    assert.deepEqual(await sendTxn([left.pdu]), { [left.id]: {} });
    assert.deepEqual(await sendTxn([right.pdu]), { [right.id]: {} });
    // Both are extremities now; the current state is the resolution of the two branches.
    const room = await a.ctx.rooms.getRoom(roomId);
    assert.deepEqual(JSON.parse(room!.forward_extremities).sort(), [left.id, right.id].sort());
    const member = await alice.ok('GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(MALLORY)}`);
    assert.ok(['Mallory A', 'Mallory B'].includes(member.displayname));
    // Alice's next event closes the fork.
    const merged = await alice.send(roomId, 'merging');
    const ev = await a.ctx.rooms.events.get(merged);
    assert.deepEqual([...(ev!.pdu.prev_events as string[])].sort(), [left.id, right.id].sort());
    lastEventId = merged;
    depth = ev!.pdu.depth;
    stateIds.set(`m.room.member|${MALLORY}`, member.displayname === 'Mallory A' ? left.id : right.id);
  });

  test('a server ACL denying evil.test shuts it out of the room', async () => {
    await alice.sendState(roomId, 'm.room.server_acl', '', { allow: ['*'], deny: ['evil.test'], allow_ip_literals: false });
    const after = build('m.room.message', { msgtype: 'm.text', body: 'after the ACL' });
    const results = await sendTxn([after.pdu]);
    assert.match(results[after.id]?.error ?? '', /ACL/);
    const state = await evilCall('GET', `/_matrix/federation/v1/state_ids/${enc(roomId)}?event_id=${enc(lastEventId)}`);
    assert.equal(state.status, 403);
    assert.equal(state.body.errcode, 'M_FORBIDDEN');
  });

  test('a server outside the allow list is refused, before any room logic', async () => {
    const c = fed.servers[2];
    const r = await evil.call(c.federationUrl!, 'c.test', 'GET', `/_matrix/federation/v1/query/profile?user_id=${enc('@x:c.test')}`);
    assert.equal(r.status, 403);
    assert.equal(r.body.errcode, 'M_FORBIDDEN');
  });

  test('unsigned and wrongly signed requests get 401', async () => {
    const res = await fetch(`${a.url}/_matrix/federation/v1/state_ids/${enc(roomId)}?event_id=x`);
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { errcode: string }).errcode, 'M_UNAUTHORIZED');
  });
});
