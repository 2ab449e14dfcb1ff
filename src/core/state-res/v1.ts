/**
 * The original state resolution algorithm of room version 1 (spec: /rooms/v1
 * "State resolution"). Where the spec is silent, this follows Synapse, whose
 * behaviour defines what v1 rooms converge on:
 * - keys missing from some state sets are not conflicts (the union is taken);
 * - each conflicted key of a pass is resolved against R as it was at the start
 *   of that pass (power levels, then join rules, then all member keys);
 * - when no event of an ordinary key passes auth, the lowest-depth one is kept.
 */
import { createHash } from 'node:crypto';
import { stateMapKey, type StateMap } from '../auth-rules.js';
import type { RoomVersion } from '../room-versions.js';
import { compareSortKeys } from './graph.js';
import { passesAuth } from './iterative-auth.js';
import type { EventLookup, ResolveStateOptions, StateIdMap, StateResEvent } from './types.js';

const POWER_LEVELS_KEY = stateMapKey('m.room.power_levels', '');
const JOIN_RULES_KEY = stateMapKey('m.room.join_rules', '');
const MEMBER_KEY_PREFIX = stateMapKey('m.room.member', '');

const sha1Hex = (s: string): string => createHash('sha1').update(s, 'utf8').digest('hex');
const depthOf = (ev: StateResEvent): number => (typeof ev.depth === 'number' ? ev.depth : 0);

/** Highest depth first, then lowest sha1(event_id). */
function byDepthDescending(events: StateResEvent[]): StateResEvent[] {
  const keyed = events.map((ev) => ({ ev, key: [-depthOf(ev), sha1Hex(ev.event_id)] }));
  keyed.sort((a, b) => compareSortKeys(a.key, b.key));
  return keyed.map((k) => k.ev);
}

/**
 * Power levels, join rules and membership: walk up from the lowest depth,
 * accepting each event while it is allowed on top of the previous one.
 */
function resolveAuthKey(events: StateResEvent[], r: StateMap, key: string, version: RoomVersion, options: ResolveStateOptions): StateResEvent {
  const ascending = byDepthDescending(events).reverse();
  const authState: StateMap = new Map(r);
  let accepted = ascending[0];
  for (const ev of ascending.slice(1)) {
    authState.set(key, accepted);
    if (!passesAuth(ev, authState, version, options.authOptions)) break;
    accepted = ev;
  }
  return accepted;
}

/** Any other key: the highest-depth event allowed in R. */
function resolveOrdinaryKey(events: StateResEvent[], r: StateMap, version: RoomVersion, options: ResolveStateOptions): StateResEvent {
  const ordered = byDepthDescending(events);
  return ordered.find((ev) => passesAuth(ev, r, version, options.authOptions)) ?? ordered[ordered.length - 1];
}

export function resolveV1(
  version: RoomVersion,
  stateSets: readonly ReadonlyMap<string, string>[],
  getEvent: EventLookup,
  options: ResolveStateOptions,
): StateIdMap {
  const resolved: StateIdMap = new Map();
  const candidates = new Map<string, Set<string>>();
  for (const set of stateSets) {
    for (const [key, id] of set) {
      const ids = candidates.get(key);
      if (ids) ids.add(id);
      else candidates.set(key, new Set([id]));
    }
  }
  const conflicts = new Map<string, StateResEvent[]>();
  for (const [key, ids] of candidates) {
    if (ids.size === 1) {
      resolved.set(key, ids.values().next().value!);
      continue;
    }
    // Unavailable events cannot take part; a single survivor is no conflict.
    const events = [...ids].map(getEvent).filter((ev): ev is StateResEvent => ev !== undefined);
    if (events.length === 1) resolved.set(key, events[0].event_id);
    else if (events.length > 1) conflicts.set(key, events);
  }
  if (conflicts.size === 0) return resolved;

  const r: StateMap = new Map();
  for (const [key, id] of resolved) {
    const ev = getEvent(id);
    if (ev) r.set(key, ev);
  }
  const passes: Array<(key: string) => boolean> = [
    (key) => key === POWER_LEVELS_KEY,
    (key) => key === JOIN_RULES_KEY,
    (key) => key.startsWith(MEMBER_KEY_PREFIX),
  ];
  for (const inPass of passes) {
    const picked: Array<[string, StateResEvent]> = [];
    for (const [key, events] of conflicts) {
      if (inPass(key)) picked.push([key, resolveAuthKey(events, r, key, version, options)]);
    }
    for (const [key, ev] of picked) {
      conflicts.delete(key);
      r.set(key, ev);
      resolved.set(key, ev.event_id);
    }
  }
  for (const [key, events] of conflicts) {
    const ev = resolveOrdinaryKey(events, r, version, options);
    resolved.set(key, ev.event_id);
  }
  return resolved;
}
