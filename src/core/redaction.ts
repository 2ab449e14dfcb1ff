/**
 * The per-room-version redaction algorithm (spec: /rooms/vN "Redactions").
 *
 * Redaction keeps only the keys the protocol needs to authorise and link
 * events. It is also the form that event signatures and reference hashes
 * cover, so any mistake here breaks signature checks with every other server.
 */
import type { RoomVersion } from './room-versions.js';

/** Top-level keys kept by every room version. */
const BASE_TOP_LEVEL_KEYS = [
  'event_id',
  'type',
  'room_id',
  'sender',
  'state_key',
  'content',
  'hashes',
  'signatures',
  'depth',
  'prev_events',
  'auth_events',
  'origin_server_ts',
];
/** Extra top-level keys protected before v11 (MSC2176 dropped them). */
const LEGACY_TOP_LEVEL_KEYS = ['origin', 'membership', 'prev_state'];

function allowedTopLevelKeys(version: RoomVersion): string[] {
  return version.updatedRedactionRules ? BASE_TOP_LEVEL_KEYS : [...BASE_TOP_LEVEL_KEYS, ...LEGACY_TOP_LEVEL_KEYS];
}

/**
 * Content keys kept for an event type, or 'all' to keep everything.
 * Returning [] strips the content entirely (the default for unlisted types).
 */
function allowedContentKeys(eventType: string, version: RoomVersion): string[] | 'all' {
  switch (eventType) {
    case 'm.room.member':
      return version.redactionKeepsAuthorisingUser
        ? ['membership', 'join_authorised_via_users_server']
        : ['membership'];
    case 'm.room.create':
      // v11 keeps the whole content: room_version, m.federate, predecessor,
      // (v12) additional_creators are all needed to interpret the room.
      return version.updatedRedactionRules ? 'all' : ['creator'];
    case 'm.room.join_rules':
      return version.redactionKeepsJoinRulesAllow ? ['join_rule', 'allow'] : ['join_rule'];
    case 'm.room.power_levels': {
      const keys = ['ban', 'events', 'events_default', 'kick', 'redact', 'state_default', 'users', 'users_default'];
      if (version.updatedRedactionRules) keys.push('invite');
      return keys;
    }
    case 'm.room.aliases':
      // Only v1-5 give aliases any meaning in auth, hence protection.
      return version.specialCaseAliasesAuth ? ['aliases'] : [];
    case 'm.room.history_visibility':
      return ['history_visibility'];
    case 'm.room.redaction':
      return version.updatedRedactionRules ? ['redacts'] : [];
    default:
      return [];
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function redactContent(eventType: string, content: unknown, version: RoomVersion): Record<string, unknown> {
  if (!isObject(content)) return {};
  const allowed = allowedContentKeys(eventType, version);
  if (allowed === 'all') return { ...content };
  const out: Record<string, unknown> = {};
  for (const key of allowed) {
    if (Object.hasOwn(content, key)) out[key] = content[key];
  }
  // v11 (MSC3821): keep only `signed` of a third-party invite, which is what
  // the invite's auth check needs to be re-verified after redaction.
  if (eventType === 'm.room.member' && version.updatedRedactionRules && isObject(content.third_party_invite)) {
    const tpi = content.third_party_invite;
    out.third_party_invite = Object.hasOwn(tpi, 'signed') ? { signed: tpi.signed } : {};
  }
  return out;
}

/**
 * Return a redacted copy of `event` per the room version's algorithm. Every
 * key not on the allow-lists is removed, including `unsigned` (servers that
 * want to show `redacted_because` to clients add it back afterwards).
 * Nested values are shared with the input, not deep-copied.
 */
export function redactEvent<T extends object>(event: T, version: RoomVersion): T {
  const source = event as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of allowedTopLevelKeys(version)) {
    if (Object.hasOwn(source, key)) out[key] = source[key];
  }
  if (Object.hasOwn(source, 'content')) {
    out.content = redactContent(String(source.type), source.content, version);
  }
  // The result intentionally lacks most of T's keys; callers treat it as the
  // same event shape with optional fields removed.
  return out as T;
}
