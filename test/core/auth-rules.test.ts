import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  authEventsNeeded,
  AuthError,
  checkAuthEventsSelection,
  checkEventAuth,
  generateSigningKey,
  isEventAuthorized,
  publicKeyBase64,
  signJson,
  stateMapKey,
  type AuthCheckOptions,
  type PDU,
  type StateMap,
} from '../../src/core/index.js';
import { FEDERATION_PDUS } from './fixtures/federation-pdus.js';
import { TestRoom, version } from './helpers.js';

const ALICE = '@alice:a.test'; // creator
const BOB = '@bob:b.test';
const CAROL = '@carol:c.test';
const MOD = '@mod:a.test';

function allowed(room: TestRoom, pdu: PDU, options?: AuthCheckOptions, state: StateMap = room.state): void {
  assert.doesNotThrow(() => checkEventAuth(pdu, state, room.version, options), `expected ${pdu.type} to be allowed`);
}

function rejected(room: TestRoom, pdu: PDU, reason?: RegExp, options?: AuthCheckOptions, state: StateMap = room.state): void {
  assert.throws(
    () => checkEventAuth(pdu, state, room.version, options),
    (err: unknown) => err instanceof AuthError && (!reason || reason.test(err.message)),
    `expected ${pdu.type} ${JSON.stringify(pdu.content)} to be rejected${reason ? ` with ${reason}` : ''}`,
  );
}

const memberEvent = (room: TestRoom, sender: string, target: string, membership: string, extra: Record<string, unknown> = {}) =>
  room.event({ type: 'm.room.member', sender, state_key: target, content: { membership, ...extra } });

const message = (room: TestRoom, sender: string) => room.event({ type: 'm.room.message', sender, content: { body: 'hi' } });

describe('m.room.create', () => {
  const create = (versionId: string, fields: Record<string, unknown> = {}, content: Record<string, unknown> = {}): [TestRoom, PDU] => {
    const room = new TestRoom(versionId);
    return [room, { ...room.create, ...fields, content: { ...room.create.content, ...content } }];
  };

  test('a well-formed create event is allowed in every version', () => {
    for (let i = 1; i <= 12; i++) {
      const [room, ev] = create(String(i));
      allowed(room, ev, undefined, new Map());
    }
  });

  test('rejects prev_events', () => {
    const [room, ev] = create('11', { prev_events: ['$x'] });
    rejected(room, ev, /prev_events/, undefined, new Map());
  });

  test('rejects a room id on another domain than the sender (v1-11)', () => {
    const [room, ev] = create('11', { room_id: '!r:evil.test' });
    rejected(room, ev, /domain/, undefined, new Map());
  });

  test('rejects an unknown content.room_version', () => {
    const [room, ev] = create('11', {}, { room_version: '999' });
    rejected(room, ev, /unrecognised room version/, undefined, new Map());
    allowed(room, ev, { knownRoomVersions: new Set(['999']) }, new Map());
  });

  test('requires content.creator up to v10 but not from v11', () => {
    const [room10, ev10] = create('10');
    delete ev10.content.creator;
    rejected(room10, ev10, /creator/, undefined, new Map());
    const [room11, ev11] = create('11');
    assert.equal('creator' in ev11.content, false);
    allowed(room11, ev11, undefined, new Map());
  });

  test('v12 rejects a room_id on the create event', () => {
    const [room, ev] = create('12', { room_id: '!r:a.test' });
    rejected(room, ev, /room_id/, undefined, new Map());
  });

  test('v12 validates additional_creators', () => {
    const [room, ok] = create('12', {}, { additional_creators: [BOB, CAROL] });
    allowed(room, ok, undefined, new Map());
    for (const bad of ['@bob:b.test', [BOB, 5], ['not-a-user'], ['@bob:bad server']]) {
      const [r, ev] = create('12', {}, { additional_creators: bad });
      rejected(r, ev, /additional_creators/, undefined, new Map());
    }
    // Before v12 the field means nothing and is not validated.
    const [room11, ev11] = create('11', {}, { additional_creators: 'junk' });
    allowed(room11, ev11, undefined, new Map());
  });
});

describe('room consistency checks', () => {
  test('an event must have a create event in its auth state', () => {
    const room = TestRoom.standard('11');
    const state = new Map(room.state);
    state.delete(stateMapKey('m.room.create', ''));
    rejected(room, message(room, ALICE), /m.room.create/, undefined, state);
  });

  test('state from another room is refused', () => {
    const room = TestRoom.standard('11');
    const foreign = room.event({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join' }, room_id: '!other:a.test' });
    const state = new Map(room.state).set(stateMapKey('m.room.member', BOB), foreign);
    rejected(room, message(room, BOB), /belongs to room/, undefined, state);
  });

  test('v12: the room id must be derived from the create event', () => {
    const room = TestRoom.standard('12');
    allowed(room, message(room, ALICE));
    rejected(room, { ...message(room, ALICE), room_id: '!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' }, /not derived from the create event/);
  });

  test('v12: the room id check also works when the create event has no stored event_id', () => {
    const room = TestRoom.standard('12');
    const { event_id: _id, ...bareCreate } = room.create;
    const state = new Map(room.state).set(stateMapKey('m.room.create', ''), bareCreate as PDU);
    allowed(room, message(room, ALICE), undefined, state);
    rejected(room, { ...message(room, ALICE), room_id: '!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' }, /not derived/, undefined, state);
  });

  test('m.federate: false keeps out senders from other servers', () => {
    const room = new TestRoom('11', ALICE, { 'm.federate': false });
    room.member(ALICE, 'join');
    room.joinRules('public');
    rejected(room, memberEvent(room, BOB, BOB, 'join'), /not federated/);
    allowed(room, memberEvent(room, MOD, MOD, 'join'));
  });

  test('rejects content that is not an object', () => {
    const room = TestRoom.standard('11');
    rejected(room, { ...message(room, ALICE), content: 'x' as unknown as Record<string, unknown> }, /content/);
  });
});

describe('joins', () => {
  test("the creator's first join right after the create event is allowed", () => {
    const room = new TestRoom('10');
    allowed(room, { ...memberEvent(room, ALICE, ALICE, 'join'), prev_events: [room.create.event_id!] });
    // Anyone else, or the creator with other prev_events, falls through to the
    // join rules (invite-only by default) and is refused.
    rejected(room, { ...memberEvent(room, BOB, BOB, 'join'), prev_events: [room.create.event_id!] }, /not invited/);
    rejected(room, { ...memberEvent(room, ALICE, ALICE, 'join'), prev_events: ['$other'] }, /not invited/);
  });

  test('v1-10 use content.creator, v11+ the create sender', () => {
    const v10 = new TestRoom('10', ALICE, { creator: BOB });
    allowed(v10, { ...memberEvent(v10, BOB, BOB, 'join'), prev_events: [v10.create.event_id!] });
    rejected(v10, { ...memberEvent(v10, ALICE, ALICE, 'join'), prev_events: [v10.create.event_id!] });
    const v11 = new TestRoom('11', ALICE, { creator: BOB });
    allowed(v11, { ...memberEvent(v11, ALICE, ALICE, 'join'), prev_events: [v11.create.event_id!] });
    rejected(v11, { ...memberEvent(v11, BOB, BOB, 'join'), prev_events: [v11.create.event_id!] });
  });

  test("v12: the creator's first join references the create event implied by the room id", () => {
    const room = new TestRoom('12');
    const join = { ...memberEvent(room, ALICE, ALICE, 'join'), prev_events: [`$${room.roomId.slice(1)}`] };
    allowed(room, join);
  });

  test('public rooms admit anyone who is not banned', () => {
    const room = TestRoom.standard('11', 'public');
    allowed(room, memberEvent(room, BOB, BOB, 'join'));
    room.member(BOB, 'ban', {}, ALICE);
    rejected(room, memberEvent(room, BOB, BOB, 'join'), /banned/);
  });

  test('nobody can join on behalf of someone else', () => {
    const room = TestRoom.standard('11', 'public');
    rejected(room, memberEvent(room, ALICE, BOB, 'join'), /on behalf/);
  });

  test('invite-only rooms need an invite (or an existing join)', () => {
    const room = TestRoom.standard('11', 'invite');
    rejected(room, memberEvent(room, BOB, BOB, 'join'), /not invited/);
    room.member(BOB, 'invite', {}, ALICE);
    allowed(room, memberEvent(room, BOB, BOB, 'join'));
    allowed(room, memberEvent(room, ALICE, ALICE, 'join', { displayname: 'A' }));
  });

  test('a room without join rules behaves as invite-only', () => {
    const room = new TestRoom('11');
    room.member(ALICE, 'join');
    rejected(room, memberEvent(room, BOB, BOB, 'join'), /not invited/);
  });

  test('unknown join rules (e.g. "private") refuse joins', () => {
    const room = TestRoom.standard('11', 'private');
    room.member(BOB, 'invite', {}, ALICE);
    rejected(room, memberEvent(room, BOB, BOB, 'join'), /does not allow/);
  });

  test('knock join rule admits invitees from v7 only', () => {
    const v7 = TestRoom.standard('7', 'knock');
    v7.member(BOB, 'invite', {}, ALICE);
    allowed(v7, memberEvent(v7, BOB, BOB, 'join'));
    rejected(v7, memberEvent(v7, CAROL, CAROL, 'join'), /not invited/);
    const v6 = TestRoom.standard('6', 'knock');
    v6.member(BOB, 'invite', {}, ALICE);
    rejected(v6, memberEvent(v6, BOB, BOB, 'join'), /does not allow/);
  });
});

describe('restricted joins', () => {
  const restrictedRoom = (versionId: string, rule = 'restricted') => {
    const room = new TestRoom(versionId);
    room.member(ALICE, 'join');
    room.powerLevels({ users: { [ALICE]: 100, [MOD]: 50 }, invite: 50 });
    room.joinRules(rule, { allow: [{ type: 'm.room_membership', room_id: '!space:a.test' }] });
    room.member(MOD, 'join');
    room.member(CAROL, 'join');
    return room;
  };
  // A join authorised by @mod:a.test must carry a signature from a.test.
  const authorisedJoin = (room: TestRoom, authoriser = MOD) => {
    const ev = memberEvent(room, BOB, BOB, 'join', { join_authorised_via_users_server: authoriser });
    return { ...ev, signatures: { 'b.test': { 'ed25519:k': 's' }, [authoriser.split(':')[1]]: { 'ed25519:k': 's' } } };
  };

  test('allowed when authorised by a joined user who can invite (v8+)', () => {
    for (const id of ['8', '9', '10', '11', '12']) allowed(restrictedRoom(id), authorisedJoin(restrictedRoom(id)));
  });

  test('the restricted join rule is unknown before v8', () => {
    const room = restrictedRoom('7');
    rejected(room, authorisedJoin(room), /does not allow/);
  });

  test('rejected without an authorising user', () => {
    const room = restrictedRoom('9');
    rejected(room, memberEvent(room, BOB, BOB, 'join'), /lacks join_authorised_via_users_server/);
  });

  test('rejected when the authoriser cannot invite', () => {
    const room = restrictedRoom('9');
    rejected(room, authorisedJoin(room, CAROL), /cannot invite/);
  });

  test('rejected when the authoriser is not joined', () => {
    const room = restrictedRoom('9');
    room.member(MOD, 'leave');
    rejected(room, authorisedJoin(room), /not joined/);
  });

  test("rejected without the authorising server's signature", () => {
    const room = restrictedRoom('9');
    const unsigned = memberEvent(room, BOB, BOB, 'join', { join_authorised_via_users_server: MOD });
    rejected(room, unsigned, /not signed by the authorising/);
    // A caller-provided verifier decides in place of the presence check.
    rejected(room, authorisedJoin(room), /not signed/, { isSignedBy: () => false });
  });

  test('invited or joined users need no authoriser', () => {
    const room = restrictedRoom('9');
    room.member(BOB, 'invite', {}, MOD);
    allowed(room, memberEvent(room, BOB, BOB, 'join'));
  });

  test('knock_restricted works like restricted from v10 and is unknown before', () => {
    allowed(restrictedRoom('10', 'knock_restricted'), authorisedJoin(restrictedRoom('10', 'knock_restricted')));
    const v9 = restrictedRoom('9', 'knock_restricted');
    rejected(v9, authorisedJoin(v9), /does not allow/);
  });
});

describe('invites', () => {
  test('a joined member with the invite level can invite', () => {
    const room = TestRoom.standard('11');
    allowed(room, memberEvent(room, ALICE, BOB, 'invite'));
  });

  test('the inviter must be joined', () => {
    const room = TestRoom.standard('11');
    room.member(CAROL, 'invite', {}, ALICE);
    rejected(room, memberEvent(room, CAROL, BOB, 'invite'), /not joined/);
  });

  test('cannot invite users who are joined or banned', () => {
    const room = TestRoom.standard('11');
    room.member(BOB, 'join');
    rejected(room, memberEvent(room, ALICE, BOB, 'invite'), /already joined/);
    room.member(BOB, 'ban', {}, ALICE);
    rejected(room, memberEvent(room, ALICE, BOB, 'invite'), /banned/);
  });

  test('the invite level is enforced', () => {
    const room = TestRoom.standard('11');
    room.powerLevels({ users: { [ALICE]: 100 }, invite: 50 });
    room.member(CAROL, 'join');
    rejected(room, memberEvent(room, CAROL, BOB, 'invite'), /may not invite/);
    allowed(room, memberEvent(room, ALICE, BOB, 'invite'));
  });
});

describe('third-party invites', () => {
  const idServerKey = generateSigningKey('0');
  const setup = (versionId = '11') => {
    const room = TestRoom.standard(versionId);
    room.set({
      type: 'm.room.third_party_invite',
      sender: ALICE,
      state_key: 'tok123',
      content: { display_name: 'b…@example.com', key_validity_url: 'https://id.test/isvalid', public_key: 'unrelated', public_keys: [{ public_key: publicKeyBase64(idServerKey) }] },
    });
    return room;
  };
  const signedBlock = (mxid = BOB, token = 'tok123', key = idServerKey) =>
    signJson({ mxid, sender: ALICE, token }, 'id.test', key);
  const tpInvite = (room: TestRoom, signed: unknown, sender = ALICE, target = BOB) =>
    memberEvent(room, sender, target, 'invite', { third_party_invite: { display_name: 'bob', signed } });

  test('allowed when the identity server signature matches a listed public key', () => {
    const room = setup();
    allowed(room, tpInvite(room, signedBlock()));
  });

  test('rejected when signed by a key not in the m.room.third_party_invite event', () => {
    const room = setup();
    rejected(room, tpInvite(room, signedBlock(BOB, 'tok123', generateSigningKey('0'))), /signature/);
  });

  test('rejected when the signed block was tampered with', () => {
    const room = setup();
    rejected(room, tpInvite(room, { ...signedBlock(), sender: CAROL }), /signature/);
  });

  test('rejected when mxid does not match the invited user', () => {
    const room = setup();
    rejected(room, tpInvite(room, signedBlock(CAROL), ALICE, BOB), /mxid/);
  });

  test('rejected when no third-party invite event exists for the token', () => {
    const room = setup();
    rejected(room, tpInvite(room, signedBlock(BOB, 'other-token')), /no m.room.third_party_invite/);
  });

  test('rejected when sent by someone other than the third-party inviter', () => {
    const room = setup();
    room.member(CAROL, 'join');
    rejected(room, tpInvite(room, signedBlock(), CAROL), /did not issue/);
  });

  test('rejected when the signed block is missing or incomplete', () => {
    const room = setup();
    rejected(room, memberEvent(room, ALICE, BOB, 'invite', { third_party_invite: { display_name: 'x' } }), /no signed block/);
    rejected(room, tpInvite(room, { mxid: BOB }), /mxid and token/);
  });

  test('rejected when the target is banned', () => {
    const room = setup();
    room.member(BOB, 'ban', {}, ALICE);
    rejected(room, tpInvite(room, signedBlock()), /banned/);
  });

  test('the single public_key property is also honoured', () => {
    const room = setup();
    room.set({ type: 'm.room.third_party_invite', sender: ALICE, state_key: 'tok123', content: { public_key: publicKeyBase64(idServerKey) } });
    allowed(room, tpInvite(room, signedBlock()));
  });
});

describe('leaving, kicking and unbanning', () => {
  const modRoom = (versionId = '11') => {
    const room = TestRoom.standard(versionId, 'public');
    room.powerLevels({ users: { [ALICE]: 100, [MOD]: 50 } });
    room.member(MOD, 'join');
    room.member(BOB, 'join');
    return room;
  };

  test('members can leave; non-members cannot "leave"', () => {
    const room = modRoom();
    allowed(room, memberEvent(room, BOB, BOB, 'leave'));
    rejected(room, memberEvent(room, CAROL, CAROL, 'leave'), /cannot leave/);
  });

  test('invitees can reject their invite', () => {
    const room = modRoom();
    room.member(CAROL, 'invite', {}, ALICE);
    allowed(room, memberEvent(room, CAROL, CAROL, 'leave'));
  });

  test('knockers can rescind their knock from v7', () => {
    const room = TestRoom.standard('7', 'knock');
    room.member(CAROL, 'knock');
    allowed(room, memberEvent(room, CAROL, CAROL, 'leave'));
  });

  test('banned users cannot unban themselves by leaving', () => {
    const room = modRoom();
    room.member(CAROL, 'ban', {}, ALICE);
    rejected(room, memberEvent(room, CAROL, CAROL, 'leave'), /cannot leave/);
  });

  test('kicks need the kick level and a strictly lower target', () => {
    const room = modRoom();
    allowed(room, memberEvent(room, MOD, BOB, 'leave'));
    rejected(room, memberEvent(room, MOD, ALICE, 'leave'), /may not kick/);
    rejected(room, memberEvent(room, BOB, MOD, 'leave'), /may not kick/);
    room.powerLevels({ users: { [ALICE]: 100, [MOD]: 50, [BOB]: 50 } });
    rejected(room, memberEvent(room, MOD, BOB, 'leave'), /may not kick/);
  });

  test('the kicker must be joined', () => {
    const room = modRoom();
    room.member(MOD, 'leave');
    rejected(room, memberEvent(room, MOD, BOB, 'leave'), /not joined/);
  });

  test('unbanning needs the ban level as well as the kick level', () => {
    const room = modRoom();
    room.powerLevels({ users: { [ALICE]: 100, [MOD]: 50 }, ban: 75, kick: 50 });
    room.member(CAROL, 'ban', {}, ALICE);
    rejected(room, memberEvent(room, MOD, CAROL, 'leave'), /may not unban/);
    allowed(room, memberEvent(room, ALICE, CAROL, 'leave'));
  });
});

describe('bans', () => {
  test('a moderator can ban lower users but not equal or higher ones', () => {
    const room = TestRoom.standard('11', 'public');
    room.powerLevels({ users: { [ALICE]: 100, [MOD]: 50 } });
    room.member(MOD, 'join');
    room.member(BOB, 'join');
    allowed(room, memberEvent(room, MOD, BOB, 'ban'));
    allowed(room, memberEvent(room, MOD, CAROL, 'ban'));
    rejected(room, memberEvent(room, MOD, ALICE, 'ban'), /may not ban/);
    rejected(room, memberEvent(room, BOB, MOD, 'ban'), /may not ban/);
  });

  test('the banner must be joined', () => {
    const room = TestRoom.standard('11');
    room.member(ALICE, 'leave');
    rejected(room, memberEvent(room, ALICE, BOB, 'ban'), /not joined/);
  });
});

describe('knocking', () => {
  test('allowed on knock rooms from v7 for users not invited, joined or banned', () => {
    const room = TestRoom.standard('7', 'knock');
    allowed(room, memberEvent(room, BOB, BOB, 'knock'));
    room.member(CAROL, 'leave');
    allowed(room, memberEvent(room, CAROL, CAROL, 'knock'));
  });

  test('refused for the wrong join rule, for others, and for current members', () => {
    const room = TestRoom.standard('7', 'knock');
    rejected(room, memberEvent(room, ALICE, BOB, 'knock'), /on behalf/);
    rejected(room, memberEvent(room, ALICE, ALICE, 'knock'), /membership join/);
    room.member(BOB, 'invite', {}, ALICE);
    rejected(room, memberEvent(room, BOB, BOB, 'knock'), /membership invite/);
    room.member(CAROL, 'ban', {}, ALICE);
    rejected(room, memberEvent(room, CAROL, CAROL, 'knock'), /membership ban/);
    const publicRoom = TestRoom.standard('7', 'public');
    rejected(publicRoom, memberEvent(publicRoom, BOB, BOB, 'knock'), /does not allow knocking/);
  });

  test('knock_restricted allows knocking from v10', () => {
    const v10 = TestRoom.standard('10', 'knock_restricted');
    allowed(v10, memberEvent(v10, BOB, BOB, 'knock'));
    const v9 = TestRoom.standard('9', 'knock_restricted');
    rejected(v9, memberEvent(v9, BOB, BOB, 'knock'), /does not allow knocking/);
  });

  test('knock is an unknown membership before v7', () => {
    const room = TestRoom.standard('6', 'knock');
    rejected(room, memberEvent(room, BOB, BOB, 'knock'), /unknown membership/);
  });
});

describe('member event shape', () => {
  test('requires a state_key and a membership', () => {
    const room = TestRoom.standard('11', 'public');
    const { state_key: _s, ...noStateKey } = memberEvent(room, BOB, BOB, 'join');
    rejected(room, noStateKey as PDU, /state_key and membership/);
    rejected(room, room.event({ type: 'm.room.member', sender: BOB, state_key: BOB, content: {} }), /state_key and membership/);
    rejected(room, memberEvent(room, BOB, BOB, 'dance'), /unknown membership/);
  });
});

describe('non-membership events', () => {
  test('the sender must be joined', () => {
    const room = TestRoom.standard('11');
    allowed(room, message(room, ALICE));
    rejected(room, message(room, BOB), /not joined/);
    room.member(BOB, 'invite', {}, ALICE);
    rejected(room, message(room, BOB), /not joined/);
  });

  test('state events need state_default (50) unless overridden', () => {
    const room = TestRoom.standard('11', 'public');
    room.member(BOB, 'join');
    const topic = (sender: string) => room.event({ type: 'm.room.topic', sender, state_key: '', content: { topic: 't' } });
    rejected(room, topic(BOB), /may not send m.room.topic/);
    allowed(room, topic(ALICE));
    room.powerLevels({ users: { [ALICE]: 100 }, events: { 'm.room.topic': 0 } });
    allowed(room, topic(BOB));
  });

  test('message events can be restricted with events_default and events', () => {
    const room = TestRoom.standard('11', 'public');
    room.member(BOB, 'join');
    room.powerLevels({ users: { [ALICE]: 100 }, events_default: 10 });
    rejected(room, message(room, BOB), /needs 10/);
    room.powerLevels({ users: { [ALICE]: 100 }, events_default: 10, events: { 'm.room.message': 0 } });
    allowed(room, message(room, BOB));
  });

  test("state keyed by another user's id is off limits", () => {
    const room = TestRoom.standard('11');
    const custom = (stateKey: string) => room.event({ type: 'com.example.state', sender: ALICE, state_key: stateKey, content: {} });
    allowed(room, custom(ALICE));
    allowed(room, custom('plain'));
    rejected(room, custom(BOB), /another user/);
  });

  test('without any power levels event the creator has 100 and others 0', () => {
    const room = new TestRoom('11');
    room.member(ALICE, 'join');
    room.joinRules('public');
    room.member(BOB, 'join');
    const name = (sender: string) => room.event({ type: 'm.room.name', sender, state_key: '', content: { name: 'n' } });
    allowed(room, name(ALICE));
    rejected(room, name(BOB), /level 0/);
    allowed(room, message(room, BOB));
  });

  test('m.room.third_party_invite needs the invite level', () => {
    const room = TestRoom.standard('11', 'public');
    room.member(BOB, 'join');
    room.powerLevels({ users: { [ALICE]: 100 }, invite: 50 });
    const tpi = (sender: string) => room.event({ type: 'm.room.third_party_invite', sender, state_key: 'tok', content: {} });
    rejected(room, tpi(BOB), /may not invite/);
    allowed(room, tpi(ALICE));
  });
});

describe('m.room.aliases', () => {
  test('v1-5: only the server in the state key may set them, membership not required', () => {
    const room = TestRoom.standard('5');
    const aliases = (sender: string, stateKey: string) => room.event({ type: 'm.room.aliases', sender, state_key: stateKey, content: { aliases: [] } });
    allowed(room, aliases(BOB, 'b.test'));
    rejected(room, aliases(BOB, 'a.test'), /state_key/);
  });

  test('v6+: ordinary state event rules apply', () => {
    const room = TestRoom.standard('6');
    const aliases = room.event({ type: 'm.room.aliases', sender: BOB, state_key: 'b.test', content: { aliases: [] } });
    rejected(room, aliases, /not joined/);
  });
});

describe('redactions', () => {
  test('v1-2: needs the redact level unless redacting an event from the same server', () => {
    const room = TestRoom.standard('1', 'public');
    room.member(BOB, 'join');
    const redaction = (redacts: string) => room.event({ type: 'm.room.redaction', sender: BOB, content: {}, redacts });
    allowed(room, redaction('$target:b.test'));
    rejected(room, redaction('$target:a.test'), /may not redact/);
    const byAdmin = room.event({ type: 'm.room.redaction', sender: ALICE, content: {}, redacts: '$target:b.test' });
    allowed(room, byAdmin);
  });

  test('v3+: the redact level is not an auth rule, only the send level is', () => {
    const room = TestRoom.standard('3', 'public');
    room.member(BOB, 'join');
    allowed(room, room.event({ type: 'm.room.redaction', sender: BOB, content: {}, redacts: '$target:a.test' }));
    room.powerLevels({ users: { [ALICE]: 100 }, events: { 'm.room.redaction': 20 } });
    rejected(room, room.event({ type: 'm.room.redaction', sender: BOB, content: {}, redacts: '$target:a.test' }), /needs 20/);
  });
});

describe('m.room.power_levels', () => {
  const plRoom = (versionId = '11') => {
    const room = TestRoom.standard(versionId, 'public');
    room.powerLevels({ users: { [ALICE]: 100, [MOD]: 50, [BOB]: 50 }, state_default: 50, events: { 'm.room.power_levels': 50 } });
    room.member(MOD, 'join');
    room.member(BOB, 'join');
    room.member(CAROL, 'join');
    return room;
  };
  const pl = (room: TestRoom, sender: string, content: Record<string, unknown>) =>
    room.event({ type: 'm.room.power_levels', sender, state_key: '', content });
  const current = { [ALICE]: 100, [MOD]: 50, [BOB]: 50 };
  const baseContent = { state_default: 50, events: { 'm.room.power_levels': 50 } };

  test('the first power levels event is allowed (given the send level)', () => {
    const room = TestRoom.standard('11');
    room.state.delete(stateMapKey('m.room.power_levels', ''));
    allowed(room, pl(room, ALICE, { users: { [ALICE]: 100, [BOB]: 100 } }));
  });

  test('users below the send level cannot touch power levels', () => {
    const room = plRoom();
    rejected(room, pl(room, CAROL, { ...baseContent, users: current }), /may not send m.room.power_levels/);
  });

  test('cannot raise anyone (including oneself) above own level', () => {
    const room = plRoom();
    rejected(room, pl(room, MOD, { ...baseContent, users: { ...current, [MOD]: 51 } }), /above own level/);
    rejected(room, pl(room, MOD, { ...baseContent, users: { ...current, [CAROL]: 60 } }), /above own level/);
  });

  test('can promote others up to own level', () => {
    const room = plRoom();
    allowed(room, pl(room, MOD, { ...baseContent, users: { ...current, [CAROL]: 50 } }));
  });

  test('cannot change or remove peers at or above own level, but can demote oneself', () => {
    const room = plRoom();
    rejected(room, pl(room, MOD, { ...baseContent, users: { ...current, [BOB]: 0 } }), /not below the sender/);
    const { [BOB]: _b, ...withoutBob } = current;
    rejected(room, pl(room, MOD, { ...baseContent, users: withoutBob }), /not below the sender/);
    allowed(room, pl(room, MOD, { ...baseContent, users: { ...current, [MOD]: 10 } }));
    allowed(room, pl(room, ALICE, { ...baseContent, users: { ...current, [BOB]: 0 } }));
  });

  test('top-level levels: neither the old nor the new value may exceed the sender', () => {
    const room = plRoom();
    rejected(room, pl(room, MOD, { ...baseContent, users: current, ban: 60 }), /cannot set ban/);
    allowed(room, pl(room, MOD, { ...baseContent, users: current, ban: 40 }));
    room.powerLevels({ ...baseContent, users: current, kick: 80 });
    rejected(room, pl(room, MOD, { ...baseContent, users: current, kick: 10 }), /cannot change kick/);
    // Unchanged high values are fine.
    allowed(room, pl(room, MOD, { ...baseContent, users: current, kick: 80, invite: 5 }));
  });

  test('events entries: neither the old nor the new value may exceed the sender', () => {
    const room = plRoom();
    rejected(room, pl(room, MOD, { ...baseContent, users: current, events: { ...baseContent.events, 'm.room.name': 75 } }), /events\[m.room.name\]/);
    room.powerLevels({ users: current, events: { 'm.room.power_levels': 50, 'm.room.tombstone': 100 } });
    rejected(room, pl(room, MOD, { users: current, events: { 'm.room.power_levels': 50 } }), /events\[m.room.tombstone\]/);
  });

  test('notifications are protected from v6, not before', () => {
    for (const [id, shouldPass] of [['5', true], ['6', false]] as const) {
      const room = plRoom(id);
      const ev = pl(room, MOD, { ...baseContent, users: current, notifications: { room: 99 } });
      if (shouldPass) allowed(room, ev);
      else rejected(room, ev, /notifications\[room\]/);
    }
  });

  test('users keys must be user ids', () => {
    const room = plRoom();
    rejected(room, pl(room, ALICE, { ...baseContent, users: { ...current, 'not-a-user': 10 } }), /invalid user id/);
    rejected(room, pl(room, ALICE, { ...baseContent, users: [] as unknown as Record<string, unknown> }), /must be an object/);
  });

  test('v10+: string values are rejected; earlier versions accept and compare them numerically', () => {
    const v10 = plRoom('10');
    rejected(v10, pl(v10, ALICE, { ...baseContent, users: { ...current, [CAROL]: '10' } }), /not an integer/);
    rejected(v10, pl(v10, ALICE, { ...baseContent, users: current, ban: '50' }), /ban is not an integer/);
    rejected(v10, pl(v10, ALICE, { ...baseContent, users: current, events: { 'm.room.power_levels': '50' } }), /events must map to integers/);
    rejected(v10, pl(v10, ALICE, { ...baseContent, users: current, notifications: { room: 5.5 } }), /notifications must map/);

    const v9 = plRoom('9');
    allowed(v9, pl(v9, ALICE, { ...baseContent, users: { ...current, [CAROL]: '10' }, ban: ' 50 ' }));
    // "50" for a peer at 50 is no change, so the moderator may send it...
    allowed(v9, pl(v9, MOD, { ...baseContent, users: { ...current, [BOB]: '50' } }));
    // ...but "51" for themselves is a raise above their level.
    rejected(v9, pl(v9, MOD, { ...baseContent, users: { ...current, [MOD]: '51' } }), /above own level/);
    rejected(v9, pl(v9, ALICE, { ...baseContent, users: current, ban: 'fifty' }), /ban is not an integer/);
  });

  test('stringy levels in existing state count in old rooms', () => {
    const room = TestRoom.standard('9', 'public');
    room.powerLevels({ users: { [ALICE]: '100', [BOB]: '60' }, state_default: '55' });
    room.member(BOB, 'join');
    allowed(room, room.event({ type: 'm.room.name', sender: BOB, state_key: '', content: { name: 'x' } }));
  });
});

describe('room version 12: creators', () => {
  const v12Room = (additional: string[] = []) => {
    const room = new TestRoom('12', ALICE, additional.length ? { additional_creators: additional } : {});
    room.member(ALICE, 'join');
    room.joinRules('public');
    room.powerLevels({ users: { [MOD]: 100 } });
    room.member(MOD, 'join');
    room.member(BOB, 'join');
    return room;
  };
  const pl = (room: TestRoom, sender: string, content: Record<string, unknown>) =>
    room.event({ type: 'm.room.power_levels', sender, state_key: '', content });

  test('power levels may not list a creator', () => {
    const room = v12Room([BOB]);
    rejected(room, pl(room, ALICE, { users: { [MOD]: 100, [ALICE]: 100 } }), /room creator/);
    rejected(room, pl(room, ALICE, { users: { [MOD]: 100, [BOB]: 1 } }), /room creator/);
    allowed(room, pl(room, ALICE, { users: { [MOD]: 100, [CAROL]: 1000 } }));
  });

  test('creators outrank any power level; admins cannot kick or ban them', () => {
    const room = v12Room([BOB]);
    rejected(room, memberEvent(room, MOD, ALICE, 'ban'), /may not ban/);
    rejected(room, memberEvent(room, MOD, BOB, 'leave'), /may not kick/);
    allowed(room, memberEvent(room, ALICE, MOD, 'ban'));
    allowed(room, memberEvent(room, BOB, MOD, 'leave'));
  });

  test('creators cannot kick each other (both are infinitely powerful)', () => {
    const room = v12Room([BOB]);
    rejected(room, memberEvent(room, ALICE, BOB, 'leave'), /may not kick/);
  });

  test('an admin at 100 cannot touch another admin at 100, but a creator can', () => {
    const room = v12Room();
    room.powerLevels({ users: { [MOD]: 100, [CAROL]: 100 } });
    room.member(CAROL, 'join');
    rejected(room, pl(room, MOD, { users: { [MOD]: 100, [CAROL]: 0 } }), /not below the sender/);
    allowed(room, pl(room, ALICE, { users: { [MOD]: 100, [CAROL]: 0 } }));
  });

  test('creators have power even with no power levels event', () => {
    const room = new TestRoom('12', ALICE, { additional_creators: [BOB] });
    room.member(ALICE, 'join');
    room.joinRules('public');
    room.member(BOB, 'join');
    room.member(CAROL, 'join');
    const name = (sender: string) => room.event({ type: 'm.room.name', sender, state_key: '', content: { name: 'n' } });
    allowed(room, name(BOB));
    rejected(room, name(CAROL), /level 0/);
  });

  test('additional_creators means nothing in v11', () => {
    const room = new TestRoom('11', ALICE, { additional_creators: [BOB] });
    room.member(ALICE, 'join');
    room.joinRules('public');
    room.member(BOB, 'join');
    rejected(room, room.event({ type: 'm.room.name', sender: BOB, state_key: '', content: { name: 'n' } }), /level 0/);
  });
});

describe('auth events selection', () => {
  const sel = (versionId: string, pdu: Parameters<typeof authEventsNeeded>[0]) =>
    authEventsNeeded(pdu, version(versionId)).map(([t, k]) => `${t}|${k}`);

  test('create events need nothing', () => {
    assert.deepEqual(sel('11', { type: 'm.room.create', sender: ALICE, state_key: '', content: {} }), []);
  });

  test('ordinary events need create, power levels and the sender membership', () => {
    assert.deepEqual(sel('11', { type: 'm.room.message', sender: BOB, content: {} }), [
      'm.room.create|',
      'm.room.power_levels|',
      `m.room.member|${BOB}`,
    ]);
  });

  test('v12 never selects the create event', () => {
    assert.deepEqual(sel('12', { type: 'm.room.message', sender: BOB, content: {} }), ['m.room.power_levels|', `m.room.member|${BOB}`]);
  });

  test('memberships add the target, join rules, third-party invite and authoriser', () => {
    assert.deepEqual(sel('11', { type: 'm.room.member', sender: ALICE, state_key: BOB, content: { membership: 'invite', third_party_invite: { signed: { token: 'tok' } } } }), [
      'm.room.create|',
      'm.room.power_levels|',
      `m.room.member|${ALICE}`,
      `m.room.member|${BOB}`,
      'm.room.join_rules|',
      'm.room.third_party_invite|tok',
    ]);
    assert.deepEqual(sel('9', { type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join', join_authorised_via_users_server: MOD } }), [
      'm.room.create|',
      'm.room.power_levels|',
      `m.room.member|${BOB}`,
      'm.room.join_rules|',
      `m.room.member|${MOD}`,
    ]);
    // No restricted rooms before v8, so no authoriser member event either.
    assert.equal(sel('7', { type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join', join_authorised_via_users_server: MOD } }).includes(`m.room.member|${MOD}`), false);
    // Leaves and bans do not consult the join rules.
    assert.equal(sel('11', { type: 'm.room.member', sender: ALICE, state_key: BOB, content: { membership: 'ban' } }).includes('m.room.join_rules|'), false);
  });
});

describe('checkAuthEventsSelection', () => {
  const room = TestRoom.standard('11', 'public');
  const authEvents = (...keys: Array<[string, string]>) => keys.map(([t, k]) => room.state.get(stateMapKey(t, k))!);
  const msg = message(room, ALICE);

  test('accepts exactly the selected events', () => {
    assert.doesNotThrow(() =>
      checkAuthEventsSelection(msg, authEvents(['m.room.create', ''], ['m.room.power_levels', ''], ['m.room.member', ALICE]), room.version),
    );
  });

  test('rejects duplicates, unexpected entries and a missing create event', () => {
    const create = room.state.get(stateMapKey('m.room.create', ''))!;
    const pls = room.state.get(stateMapKey('m.room.power_levels', ''))!;
    const rules = room.state.get(stateMapKey('m.room.join_rules', ''))!;
    assert.throws(() => checkAuthEventsSelection(msg, [create, pls, { ...pls, event_id: '$other' }], room.version), /duplicate/);
    assert.throws(() => checkAuthEventsSelection(msg, [create, rules], room.version), /unexpected auth event/);
    assert.throws(() => checkAuthEventsSelection(msg, [pls], room.version), /no m.room.create/);
    assert.throws(() => checkAuthEventsSelection(msg, [create, { ...pls, room_id: '!x:y' }], room.version), /another room/);
  });

  test('v12 rejects the create event as an auth event', () => {
    const v12 = TestRoom.standard('12', 'public');
    const m = message(v12, ALICE);
    const create = v12.state.get(stateMapKey('m.room.create', ''))!;
    const member = v12.state.get(stateMapKey('m.room.member', ALICE))!;
    assert.doesNotThrow(() => checkAuthEventsSelection(m, [member], v12.version));
    assert.throws(() => checkAuthEventsSelection(m, [create, member], v12.version), AuthError);
  });
});

describe('isEventAuthorized', () => {
  test('returns a boolean instead of throwing', () => {
    const room = TestRoom.standard('11');
    assert.equal(isEventAuthorized(message(room, ALICE), room.state, room.version), true);
    assert.equal(isEventAuthorized(message(room, BOB), room.state, room.version), false);
  });
});

describe('real v12 events from the federation', () => {
  const load = (name: string) => JSON.parse(FEDERATION_PDUS.find((f) => f.name === name)!.json) as PDU;
  const create = load('m.room.create in v12 room');
  const creatorJoin = load('m.room.member of creator in v12 room');
  const v12 = version('12');

  test('the create event and the creator join (with empty auth_events) pass auth', () => {
    assert.doesNotThrow(() => checkEventAuth(create, new Map(), v12));
    const state: StateMap = new Map([[stateMapKey('m.room.create', ''), create]]);
    assert.doesNotThrow(() => checkEventAuth(creatorJoin, state, v12));
    assert.doesNotThrow(() => checkAuthEventsSelection(creatorJoin, [], v12));
  });

  test('the same join by anyone else is refused', () => {
    const state: StateMap = new Map([[stateMapKey('m.room.create', ''), create]]);
    const impostor = { ...creatorJoin, sender: BOB, state_key: BOB };
    assert.throws(() => checkEventAuth(impostor, state, v12), AuthError);
  });
});
