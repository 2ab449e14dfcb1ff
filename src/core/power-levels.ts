/**
 * Power levels: parsing `m.room.power_levels` content with the spec defaults
 * and the per-room-version quirks (string and float values before v10,
 * infinitely powerful creators from v12).
 */
import type { RoomVersion } from './room-versions.js';

export interface PowerLevels {
  ban: number;
  kick: number;
  redact: number;
  invite: number;
  events_default: number;
  state_default: number;
  users_default: number;
  events: Record<string, number>;
  users: Record<string, number>;
  notifications: Record<string, number>;
}

/** The parts of an `m.room.create` event that decide who the creators are. */
export interface CreateEventLike {
  sender: string;
  content: Record<string, unknown>;
}

export type PowerLevelAction = 'invite' | 'kick' | 'ban' | 'redact';

/** Integer-valued top-level properties of `m.room.power_levels` content. */
export const POWER_LEVEL_INT_FIELDS = [
  'users_default',
  'events_default',
  'state_default',
  'ban',
  'redact',
  'kick',
  'invite',
] as const;

/** Defaults when a property (or the whole event) is absent. */
export const DEFAULT_POWER_LEVELS: Readonly<Omit<PowerLevels, 'events' | 'users' | 'notifications'>> = Object.freeze({
  ban: 50,
  kick: 50,
  redact: 50,
  invite: 0,
  events_default: 0,
  state_default: 50,
  users_default: 0,
});

/** Default for `notifications.room` (and any other unlisted notification key). */
export const DEFAULT_NOTIFICATION_LEVEL = 50;

/** Power level of the room creator when there is no power levels event (v1-11). */
export const IMPLICIT_CREATOR_LEVEL = 100;

// Pre-v10 rooms accept strings such as " +100 " or "0050" (spec: "m.room.power_levels
// events accept values as strings").
const STRINGY_INT_RE = /^\s*[+-]?[0-9]+\s*$/;

/**
 * Interpret one power level value under the room version's rules, or return
 * undefined if it is not a valid power level there.
 * - v10+: only JSON integers.
 * - earlier: integers, integer strings, and (v1-5, where canonical JSON is not
 *   enforced) floats truncated towards zero.
 */
export function parsePowerLevelValue(value: unknown, version: RoomVersion): number | undefined {
  if (typeof value === 'number') {
    if (Number.isInteger(value)) return value;
    if (version.integerPowerLevels || !Number.isFinite(value)) return undefined;
    return Math.trunc(value);
  }
  if (typeof value === 'string' && !version.integerPowerLevels && STRINGY_INT_RE.test(value)) {
    const n = Number.parseInt(value.trim(), 10);
    return Number.isSafeInteger(n) ? n : undefined;
  }
  return undefined;
}

/** Set a key as an own data property, so "__proto__" from untrusted JSON stays plain data. */
function defineEntry(target: Record<string, number>, key: string, value: number): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Parse a `{key: level}` map, skipping invalid entries. Look entries up with `Object.hasOwn`. */
function parseLevelMap(value: unknown, version: RoomVersion): Record<string, number> {
  const out: Record<string, number> = {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return out;
  for (const [key, raw] of Object.entries(value as Record<string, unknown>)) {
    const level = parsePowerLevelValue(raw, version);
    if (level !== undefined) defineEntry(out, key, level);
  }
  return out;
}

/**
 * The room creators: v12 counts the create event's sender plus
 * `content.additional_creators`; v11 the sender; v1-10 `content.creator`.
 */
export function roomCreators(createEvent: CreateEventLike | undefined, version: RoomVersion): string[] {
  if (!createEvent) return [];
  if (version.additionalCreators) {
    const extra = createEvent.content.additional_creators;
    const creators = [createEvent.sender];
    if (Array.isArray(extra)) {
      for (const c of extra) if (typeof c === 'string' && !creators.includes(c)) creators.push(c);
    }
    return creators;
  }
  if (version.msc2175ImpliedCreator) return [createEvent.sender];
  const creator = createEvent.content.creator;
  return typeof creator === 'string' ? [creator] : [];
}

/**
 * Power levels in force given the current `m.room.power_levels` content (or
 * undefined when the room has none). Without a power levels event, v1-11 give
 * the creator 100; v12 creators are handled by `userPowerLevel` instead.
 */
export function effectivePowerLevels(
  plContent: Record<string, unknown> | undefined,
  createEvent: CreateEventLike | undefined,
  version: RoomVersion,
): PowerLevels {
  const pl: PowerLevels = {
    ...DEFAULT_POWER_LEVELS,
    events: parseLevelMap(plContent?.events, version),
    users: parseLevelMap(plContent?.users, version),
    notifications: parseLevelMap(plContent?.notifications, version),
  };
  if (plContent === undefined) {
    if (!version.additionalCreators) {
      for (const creator of roomCreators(createEvent, version)) defineEntry(pl.users, creator, IMPLICIT_CREATOR_LEVEL);
    }
    return pl;
  }
  for (const field of POWER_LEVEL_INT_FIELDS) {
    const level = parsePowerLevelValue(plContent[field], version);
    if (level !== undefined) pl[field] = level;
  }
  return pl;
}

/** A user's power level; v12 room creators have `Infinity`. */
export function userPowerLevel(
  pl: PowerLevels,
  userId: string,
  createEvent: CreateEventLike | undefined,
  version: RoomVersion,
): number {
  if (version.additionalCreators && roomCreators(createEvent, version).includes(userId)) return Infinity;
  return Object.hasOwn(pl.users, userId) ? pl.users[userId] : pl.users_default;
}

/** Level needed to send an event of `eventType`: `events[type]`, else state/events default. */
export function requiredLevelForEvent(pl: PowerLevels, eventType: string, isState: boolean): number {
  if (Object.hasOwn(pl.events, eventType)) return pl.events[eventType];
  return isState ? pl.state_default : pl.events_default;
}

/** The invite/kick/ban/redact level. */
export function requiredLevelForAction(pl: PowerLevels, action: PowerLevelAction): number {
  return pl[action];
}

/** Level needed to trigger the notification `key` (e.g. "room" for @room). */
export function notificationLevel(pl: PowerLevels, key: string): number {
  return Object.hasOwn(pl.notifications, key) ? pl.notifications[key] : DEFAULT_NOTIFICATION_LEVEL;
}
