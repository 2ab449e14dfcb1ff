/**
 * Room version capabilities (spec: /rooms).
 *
 * Each room version fixes the algorithms used in the room. Rather than
 * comparing version strings all over the code base, callers consult these
 * feature flags, mirroring how the spec describes each version as a delta on
 * an earlier one.
 */

export interface RoomVersion {
  id: string;
  stable: boolean;
  /** v1: `$random:domain` ids and `[id, hashes]` reference pairs; v3: hash as standard base64; v4: URL-safe base64. */
  eventIdFormat: 'v1' | 'v3' | 'v4';
  stateRes: 'v1' | 'v2';
  /** v12 state resolution tweaks: start iterative auth from an empty state and include the conflicted state subgraph. */
  stateResConflictedSubgraph: boolean;
  /** v5+: enforce `valid_until_ts` of signing keys. */
  enforceKeyValidity: boolean;
  /** v1-5: auth rule for `m.room.aliases`, and `aliases` survives redaction. */
  specialCaseAliasesAuth: boolean;
  /** v6+: events must be canonical JSON (no floats, integer range enforced). */
  strictCanonicalJson: boolean;
  /** v6+: changes to `notifications` in power levels are checked like `events`. */
  limitNotificationsPowerLevels: boolean;
  /** v7+: `knock` membership and join rule. */
  knockJoinRule: boolean;
  /** v8+: `restricted` join rule and `join_authorised_via_users_server`. */
  restrictedJoinRule: boolean;
  /** v10+: `knock_restricted` join rule. */
  knockRestrictedJoinRule: boolean;
  /** v10+: power levels must be integers, not strings. */
  integerPowerLevels: boolean;
  /** v11+ (MSC2175): `content.creator` is gone; the create event's sender is the creator. */
  msc2175ImpliedCreator: boolean;
  /** v11+ (MSC2174): `redacts` lives in `content` of `m.room.redaction`. */
  redactsInContent: boolean;
  /** v12 (MSC4291): room id is `!` + URL-safe reference hash of the create event, which is then never an auth event. */
  roomIdIsCreateEventHash: boolean;
  /** v12 (MSC4289): creators (create sender + `additional_creators`) have infinite power. */
  additionalCreators: boolean;
  /** v1-2: `m.room.redaction` has its own auth rule (redact level or same event-id domain). */
  authChecksRedactions: boolean;
  /** v8+: redaction keeps `allow` in `m.room.join_rules`. */
  redactionKeepsJoinRulesAllow: boolean;
  /** v9+: redaction keeps `join_authorised_via_users_server` in `m.room.member`. */
  redactionKeepsAuthorisingUser: boolean;
  /** v11+ (MSC2176/MSC3821/MSC3989): updated redaction algorithm. */
  updatedRedactionRules: boolean;
}

type Features = Omit<RoomVersion, 'id'>;

const V1: Features = {
  stable: true,
  eventIdFormat: 'v1',
  stateRes: 'v1',
  stateResConflictedSubgraph: false,
  enforceKeyValidity: false,
  specialCaseAliasesAuth: true,
  strictCanonicalJson: false,
  limitNotificationsPowerLevels: false,
  knockJoinRule: false,
  restrictedJoinRule: false,
  knockRestrictedJoinRule: false,
  integerPowerLevels: false,
  msc2175ImpliedCreator: false,
  redactsInContent: false,
  roomIdIsCreateEventHash: false,
  additionalCreators: false,
  authChecksRedactions: true,
  redactionKeepsJoinRulesAllow: false,
  redactionKeepsAuthorisingUser: false,
  updatedRedactionRules: false,
};
// Each version is expressed as the delta the spec describes on its predecessor.
const V2: Features = { ...V1, stateRes: 'v2' };
const V3: Features = { ...V2, eventIdFormat: 'v3', authChecksRedactions: false };
const V4: Features = { ...V3, eventIdFormat: 'v4' };
const V5: Features = { ...V4, enforceKeyValidity: true };
const V6: Features = {
  ...V5,
  specialCaseAliasesAuth: false,
  strictCanonicalJson: true,
  limitNotificationsPowerLevels: true,
};
const V7: Features = { ...V6, knockJoinRule: true };
const V8: Features = { ...V7, restrictedJoinRule: true, redactionKeepsJoinRulesAllow: true };
const V9: Features = { ...V8, redactionKeepsAuthorisingUser: true };
const V10: Features = { ...V9, knockRestrictedJoinRule: true, integerPowerLevels: true };
const V11: Features = { ...V10, msc2175ImpliedCreator: true, redactsInContent: true, updatedRedactionRules: true };
const V12: Features = {
  ...V11,
  stateResConflictedSubgraph: true,
  roomIdIsCreateEventHash: true,
  additionalCreators: true,
};

const FEATURES: Record<string, Features> = {
  '1': V1,
  '2': V2,
  '3': V3,
  '4': V4,
  '5': V5,
  '6': V6,
  '7': V7,
  '8': V8,
  '9': V9,
  '10': V10,
  '11': V11,
  '12': V12,
};

export const ROOM_VERSIONS: Readonly<Record<string, RoomVersion>> = Object.freeze(
  Object.fromEntries(
    Object.entries(FEATURES).map(([id, f]) => [id, Object.freeze({ id, ...f })]),
  ),
);

/** The version servers SHOULD use for new rooms (spec: /rooms). */
export const RECOMMENDED_ROOM_VERSION = '12';

export function getRoomVersion(id: string): RoomVersion | undefined {
  // hasOwn so that e.g. "constructor" is not mistaken for a room version.
  return Object.hasOwn(ROOM_VERSIONS, id) ? ROOM_VERSIONS[id] : undefined;
}

/** Room version grammar: 1-32 chars of `a-z 0-9 . -`. */
export function isValidRoomVersionId(id: string): boolean {
  return /^[a-z0-9.-]{1,32}$/.test(id);
}
