/**
 * Glue between stored room state and the pure state resolution algorithm
 * (core/state-res.ts): the fast path when the states agree, and loading the
 * conflicted events with their auth chains so the algorithm runs without I/O.
 */
import { authEventIds, type PDU } from '../core/events.js';
import type { RoomVersion } from '../core/room-versions.js';
import { resolveState } from '../core/state-res.js';
import type { Db } from '../storage/db.js';
import type { EventStore } from './event-store.js';
import { EventStatus } from './event-status.js';
import { WORKER_THRESHOLD, resolveInWorker } from './state-res-pool.js';

/** Unconflicted entries, and whether any key differs between the states (including absence). */
function splitStates(states: Map<string, string>[]): { merged: Map<string, string>; conflicted: Set<string> } {
  const merged = new Map<string, string>();
  const conflicted = new Set<string>();
  const keys = new Set<string>();
  for (const s of states) for (const k of s.keys()) keys.add(k);
  for (const k of keys) {
    const first = states[0].get(k);
    if (states.every((s) => s.get(k) === first)) merged.set(k, first!);
    else conflicted.add(k);
  }
  return { merged, conflicted };
}

/**
 * Resolve several states of one room into one, per the room version's
 * algorithm. Events that cannot be loaded are left out of the auth chains,
 * as the algorithm allows.
 */
export async function resolveStateIds(db: Db, events: EventStore, version: RoomVersion, states: Map<string, string>[]): Promise<Map<string, string>> {
  if (states.length === 1) return states[0];
  const { merged, conflicted } = splitStates(states);
  if (conflicted.size === 0) return merged;

  // Every event of every state, plus the full auth chains of all of them:
  // the algorithm needs the auth difference and the power events' chains.
  const loaded = new Map<string, PDU & { event_id: string }>();
  let frontier = new Set<string>();
  for (const s of states) for (const id of s.values()) frontier.add(id);
  while (frontier.size > 0) {
    const batch = [...frontier].filter((id) => !loaded.has(id));
    frontier = new Set();
    for (const ev of await events.getMany(batch)) {
      loaded.set(ev.pdu.event_id, ev.pdu);
      for (const a of authEventIds(ev.pdu)) if (!loaded.has(a)) frontier.add(a);
    }
  }
  // Rejected events may sit in auth chains; the algorithm must never admit or use them.
  const rejected = new Set<string>();
  const ids = [...loaded.keys()];
  for (let i = 0; i < ids.length; i += 500) {
    const rows = await db.selectFrom('events').select('event_id').where('event_id', 'in', ids.slice(i, i + 500)).where('rejected', '=', EventStatus.REJECTED).execute();
    for (const r of rows) rejected.add(r.event_id);
  }
  if (loaded.size > WORKER_THRESHOLD) return resolveInWorker(version.id, states, loaded.values(), rejected);
  return resolveState(version, states, (id) => loaded.get(id), { isRejected: (id) => rejected.has(id) });
}
