/**
 * The "iterative auth checks" of state resolution v2 (and the auth state
 * assembly v1 shares): replay events one by one, keeping those the
 * authorisation rules allow against the state built so far.
 */
import { authEventsNeeded, checkEventAuth, stateMapKey, type AuthCheckOptions, type StateMap } from '../auth-rules.js';
import { createEventIdFromRoomId } from '../event-hashing.js';
import { authEventIds } from '../events.js';
import type { RoomVersion } from '../room-versions.js';
import type { EventLookup, StateIdMap, StateResEvent } from './types.js';

const CREATE_KEY = stateMapKey('m.room.create', '');

/** The event's key in a state map, or undefined for non-state events. */
export function stateKeyOfEvent(ev: StateResEvent): string | undefined {
  return typeof ev.state_key === 'string' ? stateMapKey(ev.type, ev.state_key) : undefined;
}

/**
 * The v12 create event, which is never an auth event but which the
 * authorisation rules need: its id is implied by the room id.
 */
export function impliedCreateEvent(ev: StateResEvent, version: RoomVersion, getEvent: EventLookup): StateResEvent | undefined {
  if (!version.roomIdIsCreateEventHash) return undefined;
  if (ev.type === 'm.room.create') return ev;
  return typeof ev.room_id === 'string' ? getEvent(createEventIdFromRoomId(ev.room_id)) : undefined;
}

/**
 * Whether `ev` passes the authorisation rules. Anything thrown counts as a
 * failure, not only AuthError: the input comes from other servers, and one
 * malformed event must not abort the resolution of a whole room.
 */
export function passesAuth(ev: StateResEvent, authState: StateMap, version: RoomVersion, options?: AuthCheckOptions): boolean {
  try {
    checkEventAuth(ev, authState, version, options);
    return true;
  } catch {
    return false;
  }
}

export interface IterativeAuthContext {
  version: RoomVersion;
  getEvent: EventLookup;
  isRejected: (eventId: string) => boolean;
  authOptions?: AuthCheckOptions;
}

/**
 * Auth state for checking `ev` during resolution: its own (non-rejected) auth
 * events, overridden by the entries of `resolved` for every key the
 * authorisation rules need.
 */
export function authStateFor(ev: StateResEvent, resolved: StateIdMap, ctx: IterativeAuthContext): StateMap {
  const { version, getEvent, isRejected } = ctx;
  const authState: StateMap = new Map();
  for (const aid of authEventIds(ev)) {
    const authEvent = getEvent(aid);
    if (!authEvent || isRejected(aid)) continue;
    const key = stateKeyOfEvent(authEvent);
    if (key !== undefined) authState.set(key, authEvent);
  }
  const keys = authEventsNeeded(ev, version).map(([type, stateKey]) => stateMapKey(type, stateKey));
  if (version.roomIdIsCreateEventHash) keys.push(CREATE_KEY);
  for (const key of keys) {
    const id = resolved.get(key);
    if (id === undefined || isRejected(id)) continue;
    const stateEvent = getEvent(id);
    if (stateEvent) authState.set(key, stateEvent);
  }
  if (!authState.has(CREATE_KEY)) {
    const create = impliedCreateEvent(ev, version, getEvent);
    if (create) authState.set(CREATE_KEY, create);
  }
  return authState;
}

/**
 * Apply `eventIds` in order on top of `base` (which is not modified),
 * keeping each state event the authorisation rules allow.
 */
export function iterativeAuthChecks(eventIds: Iterable<string>, base: StateIdMap, ctx: IterativeAuthContext): StateIdMap {
  const resolved: StateIdMap = new Map(base);
  for (const id of eventIds) {
    // An event rejected against its own auth chain should not be here at all
    // (spec: "Rejected events"); if one is, it must not enter the state.
    const ev = ctx.isRejected(id) ? undefined : ctx.getEvent(id);
    const key = ev && stateKeyOfEvent(ev);
    if (!ev || key === undefined) continue;
    if (passesAuth(ev, authStateFor(ev, resolved, ctx), ctx.version, ctx.authOptions)) resolved.set(key, id);
  }
  return resolved;
}
