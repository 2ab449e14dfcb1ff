/**
 * State resolution v2 (spec: /rooms/v2 "State resolution"), with the room
 * version 12 changes ("v2.1", MSC4297): iterative auth checks of the power
 * events start from an empty state, and the conflicted state subgraph joins
 * the full conflicted set.
 */
import { stateMapKey } from '../auth-rules.js';
import { authEventIds, membershipOf } from '../events.js';
import { effectivePowerLevels, userPowerLevel } from '../power-levels.js';
import type { RoomVersion } from '../room-versions.js';
import { compareSortKeys, lexicographicalTopologicalSort, walkAuthChain, type SortKey } from './graph.js';
import { impliedCreateEvent, iterativeAuthChecks, type IterativeAuthContext } from './iterative-auth.js';
import type { EventLookup, ResolveStateOptions, StateIdMap, StateResEvent } from './types.js';

const POWER_LEVELS_KEY = stateMapKey('m.room.power_levels', '');

/**
 * Split the state sets: a key with the same event in every set is
 * unconflicted; every event of any other key (including keys missing from
 * some sets) is in the conflicted state set.
 */
export function splitConflicted(stateSets: readonly ReadonlyMap<string, string>[]): {
  unconflicted: StateIdMap;
  conflicted: Set<string>;
} {
  const unconflicted: StateIdMap = new Map();
  const conflicted = new Set<string>();
  const keys = new Set<string>();
  for (const set of stateSets) for (const key of set.keys()) keys.add(key);
  for (const key of keys) {
    const first = stateSets[0].get(key);
    if (first !== undefined && stateSets.every((set) => set.get(key) === first)) {
      unconflicted.set(key, first);
      continue;
    }
    for (const set of stateSets) {
      const id = set.get(key);
      if (id !== undefined) conflicted.add(id);
    }
  }
  return { unconflicted, conflicted };
}

/**
 * ∪ Cᵢ − ∩ Cᵢ over the full auth chains Cᵢ of the state sets. Each state's
 * own events count as part of its chain, as in Synapse and Ruma; that only
 * removes events already in the conflicted state set.
 */
export function authDifference(
  stateSets: readonly ReadonlyMap<string, string>[],
  getEvent: EventLookup,
  authChainOf?: ResolveStateOptions['authChainOf'],
): Set<string> {
  const counts = new Map<string, number>();
  for (const set of stateSets) {
    const chain = authChainOf ? authChainOf(set.values()) : walkAuthChain(set.values(), getEvent);
    for (const id of set.values()) chain.add(id);
    for (const id of chain) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const difference = new Set<string>();
  for (const [id, count] of counts) if (count < stateSets.length) difference.add(id);
  return difference;
}

/**
 * v12: every event on an `auth_events` path from one conflicted event to
 * another (endpoints included). These are the events reachable from the
 * conflicted set from which some conflicted event is reachable in turn.
 */
export function conflictedSubgraph(conflicted: ReadonlySet<string>, getEvent: EventLookup): Set<string> {
  const reachable = walkAuthChain(conflicted, getEvent);
  const citedBy = new Map<string, string[]>();
  for (const id of reachable) {
    const ev = getEvent(id);
    if (!ev) continue;
    for (const aid of authEventIds(ev)) {
      const list = citedBy.get(aid);
      if (list) list.push(id);
      else citedBy.set(aid, [id]);
    }
  }
  const subgraph = new Set<string>(conflicted);
  const stack = [...conflicted];
  while (stack.length > 0) {
    for (const child of citedBy.get(stack.pop()!) ?? []) {
      if (!subgraph.has(child)) {
        subgraph.add(child);
        stack.push(child);
      }
    }
  }
  return subgraph;
}

/**
 * Power events: events that may take an ability away. Like Synapse and Ruma,
 * this counts the create event and requires an empty state key for power
 * levels and join rules, whose other state keys the auth rules never read.
 */
export function isPowerEvent(ev: StateResEvent): boolean {
  if (ev.state_key === '' && (ev.type === 'm.room.power_levels' || ev.type === 'm.room.join_rules' || ev.type === 'm.room.create')) {
    return true;
  }
  if (ev.type !== 'm.room.member' || typeof ev.state_key !== 'string') return false;
  const membership = membershipOf(ev);
  return (membership === 'leave' || membership === 'ban') && ev.sender !== ev.state_key;
}

/** The first `m.room.power_levels` event among `ev`'s auth events. */
function powerLevelsAuthEvent(ev: StateResEvent, getEvent: EventLookup): StateResEvent | undefined {
  for (const aid of authEventIds(ev)) {
    const authEvent = getEvent(aid);
    if (authEvent && authEvent.type === 'm.room.power_levels' && authEvent.state_key === '') return authEvent;
  }
  return undefined;
}

/** The sender's power level according to the event's own auth events (v12: creators are infinite). */
export function senderPowerLevel(ev: StateResEvent, version: RoomVersion, getEvent: EventLookup): number {
  let create = impliedCreateEvent(ev, version, getEvent);
  if (!create) {
    for (const aid of authEventIds(ev)) {
      const authEvent = getEvent(aid);
      if (authEvent && authEvent.type === 'm.room.create' && authEvent.state_key === '') {
        create = authEvent;
        break;
      }
    }
  }
  const levels = effectivePowerLevels(powerLevelsAuthEvent(ev, getEvent)?.content, create, version);
  return userPowerLevel(levels, ev.sender, create, version);
}

const timestampOf = (ev: StateResEvent): number => (typeof ev.origin_server_ts === 'number' ? ev.origin_server_ts : 0);

/**
 * Reverse topological power ordering of `graph` (event -> its auth events
 * within the graph): higher sender power first, then older timestamp, then
 * smaller event id.
 */
export function reverseTopologicalPowerOrder(
  graph: ReadonlyMap<string, Iterable<string>>,
  version: RoomVersion,
  getEvent: EventLookup,
): string[] {
  return lexicographicalTopologicalSort(graph, (id): SortKey => {
    const ev = getEvent(id)!;
    return [-senderPowerLevel(ev, version, getEvent), timestampOf(ev), id];
  });
}

/**
 * Mainline ordering of `eventIds` based on the power levels event
 * `resolvedPowerLevels`. An event's mainline position is that of the first
 * mainline event reached by following power levels auth events from it (the
 * event itself excluded); events reaching none sort first.
 */
export function mainlineOrder(eventIds: Iterable<string>, resolvedPowerLevels: string | undefined, getEvent: EventLookup): string[] {
  const mainline: string[] = [];
  const onMainline = new Set<string>();
  for (let id = resolvedPowerLevels; id !== undefined && !onMainline.has(id); ) {
    mainline.push(id);
    onMainline.add(id);
    const ev = getEvent(id);
    id = ev && powerLevelsAuthEvent(ev, getEvent)?.event_id;
  }
  // Rank: 0 when off the mainline, else larger for later (newer) mainline
  // events, so sorting ascending puts the spec's "greater position" first.
  const rankOfPowerLevels = new Map<string, number>();
  mainline.forEach((id, position) => rankOfPowerLevels.set(id, mainline.length - position));

  const rankOf = (ev: StateResEvent): number => {
    const path: string[] = [];
    const onPath = new Set<string>();
    let rank = 0;
    for (let pl = powerLevelsAuthEvent(ev, getEvent); pl; pl = powerLevelsAuthEvent(pl, getEvent)) {
      const known = rankOfPowerLevels.get(pl.event_id);
      if (known !== undefined) {
        rank = known;
        break;
      }
      if (onPath.has(pl.event_id)) break; // a cycle: forged ids
      onPath.add(pl.event_id);
      path.push(pl.event_id);
    }
    // Memoise the walk so shared power levels chains are followed once.
    for (const id of path) rankOfPowerLevels.set(id, rank);
    return rank;
  };

  const keyed: Array<{ id: string; key: SortKey }> = [];
  for (const id of eventIds) {
    const ev = getEvent(id);
    if (ev) keyed.push({ id, key: [rankOf(ev), timestampOf(ev), id] });
  }
  keyed.sort((a, b) => compareSortKeys(a.key, b.key));
  return keyed.map((k) => k.id);
}

export function resolveV2(
  version: RoomVersion,
  stateSets: readonly ReadonlyMap<string, string>[],
  getEvent: EventLookup,
  options: ResolveStateOptions,
): StateIdMap {
  const { unconflicted, conflicted } = splitConflicted(stateSets);
  if (conflicted.size === 0) return unconflicted;

  const full = new Set<string>(conflicted);
  for (const id of authDifference(stateSets, getEvent, options.authChainOf)) full.add(id);
  if (version.stateResConflictedSubgraph) {
    for (const id of conflictedSubgraph(conflicted, getEvent)) full.add(id);
  }
  for (const id of full) if (!getEvent(id)) full.delete(id);

  // Step 1: power events and their auth chains within the full conflicted
  // set. Like Synapse and Ruma, the walk only passes through events that are
  // themselves in the full conflicted set.
  const powerGraph = new Map<string, string[]>();
  const stack: string[] = [];
  for (const id of full) {
    if (isPowerEvent(getEvent(id)!)) stack.push(id);
  }
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (powerGraph.has(id)) continue;
    const edges = authEventIds(getEvent(id)!).filter((aid) => full.has(aid));
    powerGraph.set(id, edges);
    for (const aid of edges) if (!powerGraph.has(aid)) stack.push(aid);
  }
  const powerOrder = reverseTopologicalPowerOrder(powerGraph, version, getEvent);

  // Step 2 (v12: from an empty state, so only the auth chains count).
  const ctx: IterativeAuthContext = {
    version,
    getEvent,
    isRejected: options.isRejected ?? (() => false),
    authOptions: options.authOptions,
  };
  const partial = iterativeAuthChecks(powerOrder, version.stateResConflictedSubgraph ? new Map() : unconflicted, ctx);

  // Steps 3-4: everything else, in mainline order.
  const others = [...full].filter((id) => !powerGraph.has(id));
  const resolved = iterativeAuthChecks(mainlineOrder(others, partial.get(POWER_LEVELS_KEY), getEvent), partial, ctx);

  // Step 5.
  for (const [key, id] of unconflicted) resolved.set(key, id);
  return resolved;
}
