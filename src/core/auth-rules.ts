/**
 * Event authorisation rules (spec: /rooms/vN "Authorisation rules") and the
 * auth events selection algorithm (server-server API).
 *
 * `checkEventAuth` is a pure function of the event, a state map and the room
 * version. The caller chooses the state: the event's auth events, the state
 * before the event, or the current state (for soft-failure), as the spec's
 * "Checks performed on receipt of a PDU" requires. The state must include the
 * `m.room.create` event even in v12 rooms, where it is not an auth event.
 *
 * Rule numbers in comments follow room version 11 (v12 inserts a rule 2 and
 * shifts the rest by one; v1-5 have an extra rule 4 for `m.room.aliases`).
 */
import { computeRoomIdFromCreateEvent, createEventIdFromRoomId, computeEventId } from './event-hashing.js';
import { membershipOf, prevEventIds, type PDU } from './events.js';
import { isValidHistoricalUserId, serverNameOf } from './identifiers.js';
import { verifyJsonSignature } from './json-signing.js';
import {
  effectivePowerLevels,
  parsePowerLevelValue,
  POWER_LEVEL_INT_FIELDS,
  requiredLevelForEvent,
  roomCreators,
  userPowerLevel,
  type PowerLevels,
} from './power-levels.js';
import { ROOM_VERSIONS, type RoomVersion } from './room-versions.js';

/** Room state keyed by `stateMapKey(type, stateKey)`. */
export type StateMap = Map<string, PDU>;

/** Key for a StateMap entry. NUL cannot occur in event types, so it is an unambiguous separator. */
export function stateMapKey(type: string, stateKey: string): string {
  return `${type}\u0000${stateKey}`;
}

/** Build a StateMap from state events (later events win on duplicate keys). */
export function stateMapFromEvents(events: Iterable<PDU>): StateMap {
  const map: StateMap = new Map();
  for (const ev of events) {
    if (typeof ev.state_key === 'string') map.set(stateMapKey(ev.type, ev.state_key), ev);
  }
  return map;
}

/** Thrown when an event is not allowed; `message` is a human-readable reason. */
export class AuthError extends Error {
  override name = 'AuthError';
}

export interface AuthCheckOptions {
  /**
   * Room versions accepted in `m.room.create` `content.room_version`
   * (rule 1.3). Defaults to every version this module knows.
   */
  knownRoomVersions?: ReadonlySet<string>;
  /**
   * Whether `pdu` is validly signed by `serverName`, for the
   * `join_authorised_via_users_server` rule. Signatures are cryptographically
   * checked on receipt, before auth, where keys are at hand; the default here
   * only requires that a signature from that server is present.
   */
  isSignedBy?: (pdu: PDU, serverName: string) => boolean;
}

type Membership = 'join' | 'invite' | 'leave' | 'ban' | 'knock';

function reject(reason: string): never {
  throw new AuthError(reason);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function defaultIsSignedBy(pdu: PDU, serverName: string): boolean {
  const sigs = pdu.signatures;
  return isObject(sigs) && Object.hasOwn(sigs, serverName) && isObject(sigs[serverName]) && Object.keys(sigs[serverName]).length > 0;
}

// ---------------------------------------------------------------------------
// Auth events selection
// ---------------------------------------------------------------------------

/**
 * The (type, state_key) pairs whose current state events should be the
 * event's `auth_events` (server-server API, "Auth events selection"). The
 * create event is listed except in v12+, where the room id stands for it.
 */
export function authEventsNeeded(
  pdu: { type: string; sender: string; state_key?: string; content: Record<string, unknown> },
  version: RoomVersion,
): Array<[type: string, stateKey: string]> {
  if (pdu.type === 'm.room.create') return [];
  const out: Array<[string, string]> = [];
  const seen = new Set<string>();
  const add = (type: string, stateKey: string): void => {
    const key = stateMapKey(type, stateKey);
    if (!seen.has(key)) {
      seen.add(key);
      out.push([type, stateKey]);
    }
  };
  if (!version.roomIdIsCreateEventHash) add('m.room.create', '');
  add('m.room.power_levels', '');
  add('m.room.member', pdu.sender);
  if (pdu.type === 'm.room.member') {
    const content = isObject(pdu.content) ? pdu.content : {};
    const membership = content.membership;
    if (typeof pdu.state_key === 'string') add('m.room.member', pdu.state_key);
    if (membership === 'join' || membership === 'invite' || membership === 'knock') add('m.room.join_rules', '');
    if (membership === 'invite' && isObject(content.third_party_invite)) {
      const signed = content.third_party_invite.signed;
      if (isObject(signed) && typeof signed.token === 'string') add('m.room.third_party_invite', signed.token);
    }
    const authoriser = content.join_authorised_via_users_server;
    if (membership === 'join' && version.restrictedJoinRule && typeof authoriser === 'string') {
      add('m.room.member', authoriser);
    }
  }
  return out;
}

/**
 * Rule 2 (v12: rule 3): checks on the event's actual `auth_events`, which a
 * StateMap cannot express: no duplicate (type, state_key) pairs, nothing
 * outside the auth events selection, a create event present (v1-11) and all
 * in the same room. Whether any auth event was itself rejected is for the
 * caller to know.
 */
export function checkAuthEventsSelection(pdu: PDU, authEvents: readonly PDU[], version: RoomVersion): void {
  if (pdu.type === 'm.room.create') {
    if (authEvents.length > 0) reject('m.room.create must not have auth events');
    return;
  }
  const allowed = new Set(authEventsNeeded(pdu, version).map(([t, k]) => stateMapKey(t, k)));
  const seen = new Set<string>();
  let hasCreate = false;
  for (const ev of authEvents) {
    if (typeof ev.state_key !== 'string') reject(`auth event of type ${ev.type} is not a state event`);
    const key = stateMapKey(ev.type, ev.state_key);
    if (seen.has(key)) reject(`duplicate auth event for (${ev.type}, ${JSON.stringify(ev.state_key)})`);
    seen.add(key);
    if (!allowed.has(key)) reject(`unexpected auth event (${ev.type}, ${JSON.stringify(ev.state_key)})`);
    if (ev.type === 'm.room.create') hasCreate = true;
    if (ev.room_id !== pdu.room_id) reject(`auth event ${ev.event_id ?? ev.type} is from another room`);
  }
  if (!version.roomIdIsCreateEventHash && !hasCreate) reject('no m.room.create event among the auth events');
}

// ---------------------------------------------------------------------------
// The authorisation rules proper
// ---------------------------------------------------------------------------

/** Everything the rules look up, computed lazily from the state map. */
class AuthContext {
  readonly create: PDU;
  private powerLevelsCache: PowerLevels | undefined;

  constructor(
    readonly pdu: PDU,
    private readonly state: StateMap,
    readonly version: RoomVersion,
  ) {
    const create = state.get(stateMapKey('m.room.create', ''));
    if (!create) reject('no m.room.create event in the auth state');
    this.create = create;
  }

  /**
   * A state event, checked to belong to the event's room (rule 2.5): powers
   * granted in one room must not leak into another. v12 create events carry
   * no room_id; rule 2 ties them to the room instead.
   */
  get(type: string, stateKey: string): PDU | undefined {
    const ev = this.state.get(stateMapKey(type, stateKey));
    if (ev && ev !== this.create && ev.room_id !== this.pdu.room_id) {
      reject(`state event (${type}, ${JSON.stringify(stateKey)}) belongs to room ${String(ev.room_id)}`);
    }
    return ev;
  }

  membership(userId: string): string | undefined {
    return membershipOf(this.get('m.room.member', userId));
  }

  get powerLevels(): PowerLevels {
    this.powerLevelsCache ??= effectivePowerLevels(
      this.get('m.room.power_levels', '')?.content,
      this.create,
      this.version,
    );
    return this.powerLevelsCache;
  }

  level(userId: string): number {
    return userPowerLevel(this.powerLevels, userId, this.create, this.version);
  }

  get joinRule(): unknown {
    // With no join rules event (or one without a join_rule) the room behaves
    // as invite-only, as Synapse does; the spec leaves this case implicit.
    const rule = this.get('m.room.join_rules', '')?.content.join_rule;
    return rule === undefined ? 'invite' : rule;
  }

  /** The create event's id, which (v12) is implied by the room id. */
  get createEventId(): string | undefined {
    if (typeof this.create.event_id === 'string') return this.create.event_id;
    if (this.version.roomIdIsCreateEventHash && typeof this.pdu.room_id === 'string') {
      return createEventIdFromRoomId(this.pdu.room_id);
    }
    if (this.version.eventIdFormat !== 'v1') return computeEventId(this.create, this.version);
    return undefined;
  }
}

/** Rule 1: `m.room.create`. */
function checkCreateEvent(pdu: PDU, version: RoomVersion, options: AuthCheckOptions): void {
  if (Array.isArray(pdu.prev_events) && pdu.prev_events.length > 0) reject('m.room.create must not have prev_events');
  if (version.roomIdIsCreateEventHash) {
    if (pdu.room_id !== undefined) reject('m.room.create must not have a room_id in this room version');
  } else {
    const roomServer = typeof pdu.room_id === 'string' ? serverNameOf(pdu.room_id) : null;
    if (roomServer === null || roomServer !== serverNameOf(pdu.sender)) {
      reject("m.room.create room_id domain does not match the sender's");
    }
  }
  const content = isObject(pdu.content) ? pdu.content : {};
  if (content.room_version !== undefined) {
    const known = options.knownRoomVersions ?? new Set(Object.keys(ROOM_VERSIONS));
    if (typeof content.room_version !== 'string' || !known.has(content.room_version)) {
      reject(`unrecognised room version ${JSON.stringify(content.room_version)}`);
    }
  }
  if (!version.msc2175ImpliedCreator && !Object.hasOwn(content, 'creator')) {
    reject('m.room.create has no creator property');
  }
  if (version.additionalCreators && content.additional_creators !== undefined) {
    const extra = content.additional_creators;
    if (!Array.isArray(extra) || !extra.every((c) => typeof c === 'string' && isValidHistoricalUserId(c))) {
      reject('additional_creators must be an array of valid user ids');
    }
  }
}

/** v12 rule 2: the room id must be the create event's id with a `!` sigil. */
function checkRoomIdMatchesCreate(ctx: AuthContext): void {
  const { pdu, create, version } = ctx;
  const expected =
    typeof create.event_id === 'string'
      ? `!${create.event_id.slice(1)}`
      : computeRoomIdFromCreateEvent(create, version);
  if (pdu.room_id !== expected) reject(`room id ${String(pdu.room_id)} is not derived from the create event`);
}

/** Rule 3: `m.federate: false` keeps other servers out. */
function checkFederate(ctx: AuthContext): void {
  if (ctx.create.content['m.federate'] === false && serverNameOf(ctx.pdu.sender) !== serverNameOf(ctx.create.sender)) {
    reject('room is not federated and the sender is from another server');
  }
}

/** v1-5 rule 4: `m.room.aliases` may only be set by the server named in the state key. */
function checkAliases(pdu: PDU): void {
  if (typeof pdu.state_key !== 'string') reject('m.room.aliases must have a state_key');
  if (pdu.state_key !== serverNameOf(pdu.sender)) reject("m.room.aliases state_key must be the sender's server");
}

/** Rule 4.4.1: an invite backed by a third-party invite token. */
function checkThirdPartyInvite(ctx: AuthContext, target: string): void {
  const { pdu } = ctx;
  if (ctx.membership(target) === 'ban') reject(`${target} is banned`);
  const tpi = pdu.content.third_party_invite;
  const signed = isObject(tpi) ? tpi.signed : undefined;
  if (!isObject(signed)) reject('third_party_invite has no signed block');
  if (typeof signed.mxid !== 'string' || typeof signed.token !== 'string') {
    reject('third_party_invite.signed needs mxid and token');
  }
  if (signed.mxid !== target) reject('third_party_invite mxid does not match the invited user');
  const inviteEvent = ctx.get('m.room.third_party_invite', signed.token);
  if (!inviteEvent) reject('no m.room.third_party_invite event for this token');
  if (inviteEvent.sender !== pdu.sender) reject('sender did not issue the third-party invite');
  if (!thirdPartySignatureMatches(signed, inviteEvent.content)) {
    reject('third-party invite signature does not match any of its public keys');
  }
}

/** Public keys of an `m.room.third_party_invite`: `public_key` and `public_keys[].public_key`. */
function thirdPartyPublicKeys(content: Record<string, unknown>): string[] {
  const keys: string[] = [];
  if (typeof content.public_key === 'string') keys.push(content.public_key);
  if (Array.isArray(content.public_keys)) {
    for (const entry of content.public_keys) {
      if (isObject(entry) && typeof entry.public_key === 'string') keys.push(entry.public_key);
    }
  }
  return keys;
}

/** Whether any ed25519 signature in `signed` verifies with any of the invite's public keys. */
function thirdPartySignatureMatches(signed: Record<string, unknown>, inviteContent: Record<string, unknown>): boolean {
  const signatures = signed.signatures;
  if (!isObject(signatures)) return false;
  const publicKeys = thirdPartyPublicKeys(inviteContent);
  for (const [signer, byKey] of Object.entries(signatures)) {
    if (!isObject(byKey)) continue;
    for (const keyId of Object.keys(byKey)) {
      if (!keyId.startsWith('ed25519:')) continue;
      for (const publicKey of publicKeys) {
        if (verifyJsonSignature(signed, signer, keyId, publicKey)) return true;
      }
    }
  }
  return false;
}

/** Rule 4.3 `join`. */
function checkJoin(ctx: AuthContext, target: string): void {
  const { pdu, version } = ctx;
  // 4.3.1: the creator's own join straight after the create event.
  const prevs = prevEventIds(pdu);
  const creator = version.msc2175ImpliedCreator ? ctx.create.sender : ctx.create.content.creator;
  if (prevs.length === 1 && prevs[0] === ctx.createEventId && target === creator) return;

  if (pdu.sender !== target) reject('cannot join on behalf of another user');
  const current = ctx.membership(target);
  if (current === 'ban') reject(`${target} is banned`);
  const joinRule = ctx.joinRule;

  if (joinRule === 'invite' || (version.knockJoinRule && joinRule === 'knock')) {
    if (current === 'invite' || current === 'join') return;
    reject(`${target} is not invited to this room`);
  }
  if (
    (version.restrictedJoinRule && joinRule === 'restricted') ||
    (version.knockRestrictedJoinRule && joinRule === 'knock_restricted')
  ) {
    if (current === 'invite' || current === 'join') return;
    const authoriser = pdu.content.join_authorised_via_users_server;
    if (typeof authoriser !== 'string') reject('restricted join lacks join_authorised_via_users_server');
    if (ctx.membership(authoriser) !== 'join') reject(`authorising user ${authoriser} is not joined`);
    if (ctx.level(authoriser) < ctx.powerLevels.invite) reject(`authorising user ${authoriser} cannot invite`);
    return;
  }
  if (joinRule === 'public') return;
  reject(`join rule ${JSON.stringify(joinRule)} does not allow ${target} to join`);
}

/** Rule 4.4 `invite`. */
function checkInvite(ctx: AuthContext, target: string): void {
  const { pdu } = ctx;
  if (Object.hasOwn(pdu.content, 'third_party_invite')) {
    checkThirdPartyInvite(ctx, target);
    return;
  }
  if (ctx.membership(pdu.sender) !== 'join') reject(`${pdu.sender} is not joined`);
  const current = ctx.membership(target);
  if (current === 'join') reject(`${target} is already joined`);
  if (current === 'ban') reject(`${target} is banned`);
  if (ctx.level(pdu.sender) < ctx.powerLevels.invite) reject(`${pdu.sender} may not invite`);
}

/** Rule 4.5 `leave` (leaving, rejecting an invite, rescinding a knock, kicking, unbanning). */
function checkLeave(ctx: AuthContext, target: string): void {
  const { pdu, version } = ctx;
  if (pdu.sender === target) {
    const current = ctx.membership(target);
    if (current === 'join' || current === 'invite' || (version.knockJoinRule && current === 'knock')) return;
    reject(`${target} cannot leave with membership ${String(current)}`);
  }
  if (ctx.membership(pdu.sender) !== 'join') reject(`${pdu.sender} is not joined`);
  const senderLevel = ctx.level(pdu.sender);
  if (ctx.membership(target) === 'ban' && senderLevel < ctx.powerLevels.ban) {
    reject(`${pdu.sender} may not unban`);
  }
  if (senderLevel >= ctx.powerLevels.kick && ctx.level(target) < senderLevel) return;
  reject(`${pdu.sender} may not kick ${target}`);
}

/** Rule 4.6 `ban`. */
function checkBan(ctx: AuthContext, target: string): void {
  const { pdu } = ctx;
  if (ctx.membership(pdu.sender) !== 'join') reject(`${pdu.sender} is not joined`);
  const senderLevel = ctx.level(pdu.sender);
  if (senderLevel >= ctx.powerLevels.ban && ctx.level(target) < senderLevel) return;
  reject(`${pdu.sender} may not ban ${target}`);
}

/** Rule 4.7 `knock` (v7+). */
function checkKnock(ctx: AuthContext, target: string): void {
  const { pdu, version } = ctx;
  const joinRule = ctx.joinRule;
  if (joinRule !== 'knock' && !(version.knockRestrictedJoinRule && joinRule === 'knock_restricted')) {
    reject(`join rule ${JSON.stringify(joinRule)} does not allow knocking`);
  }
  if (pdu.sender !== target) reject('cannot knock on behalf of another user');
  const current = ctx.membership(target);
  if (current === 'ban' || current === 'invite' || current === 'join') {
    reject(`${target} cannot knock with membership ${current}`);
  }
}

/** Rule 4: `m.room.member`. */
function checkMemberEvent(ctx: AuthContext, options: AuthCheckOptions): void {
  const { pdu, version } = ctx;
  const target = pdu.state_key;
  const membership = isObject(pdu.content) ? pdu.content.membership : undefined;
  if (typeof target !== 'string' || membership === undefined) reject('member event needs a state_key and membership');

  // 4.2 (v8+): a join authorised by another server must carry its signature.
  if (version.restrictedJoinRule && Object.hasOwn(pdu.content, 'join_authorised_via_users_server')) {
    const authoriser = pdu.content.join_authorised_via_users_server;
    const server = typeof authoriser === 'string' ? serverNameOf(authoriser) : null;
    const isSignedBy = options.isSignedBy ?? defaultIsSignedBy;
    if (server === null || !isSignedBy(pdu, server)) {
      reject("event is not signed by the authorising user's server");
    }
  }

  switch (membership as Membership) {
    case 'join':
      return checkJoin(ctx, target);
    case 'invite':
      return checkInvite(ctx, target);
    case 'leave':
      return checkLeave(ctx, target);
    case 'ban':
      return checkBan(ctx, target);
    case 'knock':
      if (version.knockJoinRule) return checkKnock(ctx, target);
      break;
  }
  reject(`unknown membership ${JSON.stringify(membership)}`);
}

/** Structural validation of new power levels content (rules 9.1-9.3, and the v12 rule barring creators). */
function validatePowerLevelsContent(ctx: AuthContext): void {
  const { pdu, version } = ctx;
  const content = pdu.content;
  // v10+ require JSON integers. Earlier versions allow integer strings (and
  // v1-5 floats); values that are not even that are rejected too, since every
  // implementation would fail to interpret them.
  for (const field of POWER_LEVEL_INT_FIELDS) {
    if (content[field] !== undefined && parsePowerLevelValue(content[field], version) === undefined) {
      reject(`power level ${field} is not an integer`);
    }
  }
  for (const field of ['events', 'notifications'] as const) {
    const map = content[field];
    if (map === undefined) continue;
    if (!isObject(map) || !Object.values(map).every((v) => parsePowerLevelValue(v, version) !== undefined)) {
      reject(`power levels ${field} must map to integers`);
    }
  }
  const users = content.users;
  if (users !== undefined) {
    if (!isObject(users)) reject('power levels users must be an object');
    for (const [userId, level] of Object.entries(users)) {
      if (!isValidHistoricalUserId(userId)) reject(`power levels users has invalid user id ${JSON.stringify(userId)}`);
      if (parsePowerLevelValue(level, version) === undefined) reject(`power level of ${userId} is not an integer`);
    }
    if (version.additionalCreators) {
      for (const creator of roomCreators(ctx.create, version)) {
        if (Object.hasOwn(users, creator)) reject(`room creator ${creator} cannot be given a power level`);
      }
    }
  }
}

/** Rule 9: `m.room.power_levels`, after the generic send-level checks passed. */
function checkPowerLevelsEvent(ctx: AuthContext): void {
  validatePowerLevelsContent(ctx);
  const previous = ctx.get('m.room.power_levels', '');
  if (!previous) return;

  const { pdu, version } = ctx;
  const senderLevel = ctx.level(pdu.sender);
  const level = (container: unknown, key: string): number | undefined =>
    isObject(container) && Object.hasOwn(container, key) ? parsePowerLevelValue(container[key], version) : undefined;
  const oldContent = previous.content;
  const newContent = pdu.content;

  // 9.5: top-level levels may only be changed between values the sender holds.
  for (const field of POWER_LEVEL_INT_FIELDS) {
    const before = level(oldContent, field);
    const after = level(newContent, field);
    if (before === after) continue;
    if (before !== undefined && before > senderLevel) reject(`cannot change ${field} from above own level`);
    if (after !== undefined && after > senderLevel) reject(`cannot set ${field} above own level`);
  }

  // 9.6/9.7: same for per-event (and, v6+, per-notification) levels.
  const maps: Array<'events' | 'notifications'> = version.limitNotificationsPowerLevels
    ? ['events', 'notifications']
    : ['events'];
  for (const field of maps) {
    const oldMap = isObject(oldContent[field]) ? oldContent[field] : {};
    const newMap = isObject(newContent[field]) ? newContent[field] : {};
    for (const key of new Set([...Object.keys(oldMap), ...Object.keys(newMap)])) {
      const before = level(oldMap, key);
      const after = level(newMap, key);
      if (before === after) continue;
      if (before !== undefined && before > senderLevel) reject(`cannot change ${field}[${key}] from above own level`);
      if (after !== undefined && after > senderLevel) reject(`cannot set ${field}[${key}] above own level`);
    }
  }

  // 9.8/9.9: other users at or above the sender are untouchable; nobody can
  // be raised above the sender.
  const oldUsers = isObject(oldContent.users) ? oldContent.users : {};
  const newUsers = isObject(newContent.users) ? newContent.users : {};
  for (const userId of new Set([...Object.keys(oldUsers), ...Object.keys(newUsers)])) {
    const before = level(oldUsers, userId);
    const after = level(newUsers, userId);
    if (before === after) continue;
    if (userId !== pdu.sender && before !== undefined && before >= senderLevel) {
      reject(`cannot change the level of ${userId}, who is not below the sender`);
    }
    if (after !== undefined && after > senderLevel) reject(`cannot raise ${userId} above own level`);
  }
}

/** v1-2 rule 11: redactions need the redact level or the same origin server. */
function checkRedactionV1(ctx: AuthContext): void {
  const { pdu } = ctx;
  if (ctx.level(pdu.sender) >= ctx.powerLevels.redact) return;
  const redacterServer = typeof pdu.event_id === 'string' ? serverNameOf(pdu.event_id) : null;
  const redacteeServer = typeof pdu.redacts === 'string' ? serverNameOf(pdu.redacts) : null;
  if (redacterServer !== null && redacterServer === redacteeServer) return;
  reject(`${pdu.sender} may not redact that event`);
}

/**
 * Throw `AuthError` unless `pdu` is allowed by the authorisation rules of
 * `version` against `authState`.
 */
export function checkEventAuth(
  pdu: PDU,
  authState: StateMap,
  version: RoomVersion,
  options: AuthCheckOptions = {},
): void {
  if (!isObject(pdu.content)) reject('event content is not an object');
  if (pdu.type === 'm.room.create') {
    checkCreateEvent(pdu, version, options);
    return;
  }

  const ctx = new AuthContext(pdu, authState, version);
  if (version.roomIdIsCreateEventHash) checkRoomIdMatchesCreate(ctx);
  else if (ctx.create.room_id !== pdu.room_id) reject('m.room.create event is from another room');

  checkFederate(ctx);

  if (version.specialCaseAliasesAuth && pdu.type === 'm.room.aliases') {
    checkAliases(pdu);
    return;
  }

  if (pdu.type === 'm.room.member') {
    checkMemberEvent(ctx, options);
    return;
  }

  // Rule 5: everything else requires the sender to be in the room.
  if (ctx.membership(pdu.sender) !== 'join') reject(`${pdu.sender} is not joined to the room`);

  // Rule 6: third-party invites need only the invite level.
  if (pdu.type === 'm.room.third_party_invite') {
    if (ctx.level(pdu.sender) < ctx.powerLevels.invite) reject(`${pdu.sender} may not invite`);
    return;
  }

  // Rule 7: the event type's required power level.
  const stateKey = pdu.state_key;
  const isState = typeof stateKey === 'string';
  const required = requiredLevelForEvent(ctx.powerLevels, pdu.type, isState);
  const senderLevel = ctx.level(pdu.sender);
  if (required > senderLevel) {
    reject(`${pdu.sender} (level ${senderLevel}) may not send ${pdu.type} (needs ${required})`);
  }

  // Rule 8: state keyed by a user id is owned by that user.
  if (isState && stateKey.startsWith('@') && stateKey !== pdu.sender) {
    reject("cannot set state keyed by another user's id");
  }

  if (pdu.type === 'm.room.power_levels') checkPowerLevelsEvent(ctx);
  if (version.authChecksRedactions && pdu.type === 'm.room.redaction') checkRedactionV1(ctx);
}

/** `checkEventAuth` as a predicate. */
export function isEventAuthorized(
  pdu: PDU,
  authState: StateMap,
  version: RoomVersion,
  options: AuthCheckOptions = {},
): boolean {
  try {
    checkEventAuth(pdu, authState, version, options);
    return true;
  } catch (err) {
    if (err instanceof AuthError) return false;
    throw err;
  }
}
