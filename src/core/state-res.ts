/**
 * State resolution (spec: /rooms/v1 and /rooms/v2 "State resolution";
 * room version 12 uses v2 with the MSC4297 changes). Pure and synchronous so
 * that large rooms can be resolved in a worker thread.
 */
import { getRoomVersion, type RoomVersion } from './room-versions.js';
import { resolveV1 } from './state-res/v1.js';
import { resolveV2 } from './state-res/v2.js';
import type { EventLookup, ResolveStateOptions, StateIdMap } from './state-res/types.js';

export type { EventLookup, ResolveStateOptions, StateIdMap, StateResEvent } from './state-res/types.js';
export { lexicographicalTopologicalSort, type SortKey } from './state-res/graph.js';
export {
  authDifference,
  conflictedSubgraph,
  isPowerEvent,
  mainlineOrder,
  reverseTopologicalPowerOrder,
  senderPowerLevel,
  splitConflicted,
} from './state-res/v2.js';

/**
 * Resolve `stateSets` (each a map from `stateMapKey(type, stateKey)` to event
 * id) into one state with the room version's algorithm. `getEvent` must know
 * the events of the state sets and of their auth chains; events it cannot
 * supply are ignored. The input maps are not modified.
 */
export function resolveState(
  roomVersion: RoomVersion | string,
  stateSets: readonly ReadonlyMap<string, string>[],
  getEvent: EventLookup,
  options: ResolveStateOptions = {},
): StateIdMap {
  const version = typeof roomVersion === 'string' ? getRoomVersion(roomVersion) : roomVersion;
  if (!version) throw new Error(`unknown room version ${roomVersion}`);
  if (stateSets.length === 0) return new Map();
  if (stateSets.length === 1) return new Map(stateSets[0]);
  // Each event is looked up many times; the caller's lookup may be costly.
  const cache = new Map<string, ReturnType<EventLookup>>();
  const cachedGetEvent: EventLookup = (id) => {
    if (cache.has(id)) return cache.get(id);
    const ev = getEvent(id);
    cache.set(id, ev);
    return ev;
  };
  return version.stateRes === 'v1'
    ? resolveV1(version, stateSets, cachedGetEvent, options)
    : resolveV2(version, stateSets, cachedGetEvent, options);
}
