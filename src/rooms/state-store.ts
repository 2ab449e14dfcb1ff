import type { Db, Tx } from '../storage/db.js';
import { Lru } from '../server/lru.js';
import type { EventStore } from './event-store.js';
import type { StoredEvent } from './types.js';

/** `${type}\u0000${state_key}` — the same key the protocol core's StateMap uses. */
export const stateKeyOf = (type: string, stateKey: string) => `${type}\u0000${stateKey}`;
export const splitStateKey = (k: string): [string, string] => {
  const i = k.indexOf('\u0000');
  return [k.slice(0, i), k.slice(i + 1)];
};

/** A full snapshot after this many deltas, so reading state never walks a long chain. */
const MAX_CHAIN = 50;
/** Rows (or ids) per statement in bulk reads and writes: well under SQLite's and PostgreSQL's parameter limits. */
const BATCH = 500;

/**
 * Room state as state groups: each group is either a full snapshot or a
 * delta on a previous group; (type, state_key) pairs and events are stored
 * as integers. A group is immutable once written, so resolved groups are
 * cached by id.
 */
export class StateStore {
  private groups: Lru<number, Map<string, string>>; // group -> (stateKey -> event_id)
  private keyNidCache = new Lru<string, number>(50_000);

  constructor(private readonly db: Db, private readonly events: EventStore, cacheSize: number) {
    this.groups = new Lru(cacheSize);
  }

  /** Cached state groups (metrics). */
  get cacheSize(): number {
    return this.groups.size;
  }

  /** State of a group as stateKey -> event_id. */
  async groupIds(groupId: number, tx: Tx = this.db): Promise<Map<string, string>> {
    const hit = this.groups.get(groupId);
    if (hit) return hit;
    // Walk to the snapshot, then apply deltas forward.
    const chain: number[] = [];
    let g: number | null = groupId;
    let base: Map<string, string> | undefined;
    while (g != null) {
      const cached = this.groups.get(g);
      if (cached) { base = cached; break; }
      chain.push(g);
      const row: { prev_group: number | null } | undefined = await tx.selectFrom('state_groups').select('prev_group').where('id', '=', g).executeTakeFirst();
      if (!row) throw new Error(`state group ${g} missing`);
      g = row.prev_group == null ? null : Number(row.prev_group);
    }
    const state = new Map(base ?? []);
    for (const id of chain.reverse()) {
      const rows = await tx.selectFrom('state_group_entries as s')
        .innerJoin('state_keys as k', 'k.nid', 's.key_nid')
        .innerJoin('events as e', 'e.nid', 's.event_nid')
        .select(['k.type', 'k.state_key', 'e.event_id'])
        .where('s.group_id', '=', id).execute();
      for (const r of rows) state.set(stateKeyOf(r.type, r.state_key), r.event_id);
    }
    this.groups.set(groupId, state);
    return state;
  }

  /** State of a group as full events. */
  async groupEvents(groupId: number): Promise<Map<string, StoredEvent>> {
    const ids = await this.groupIds(groupId);
    const evs = await this.events.getMany([...ids.values()]);
    const out = new Map<string, StoredEvent>();
    for (const ev of evs) out.set(stateKeyOf(ev.pdu.type, ev.pdu.state_key ?? ''), ev);
    return out;
  }

  async currentGroup(roomId: string): Promise<number | null> {
    const row = await this.db.selectFrom('rooms').select('current_state_group').where('room_id', '=', roomId).executeTakeFirst();
    return row?.current_state_group == null ? null : Number(row.current_state_group);
  }

  async currentIds(roomId: string): Promise<Map<string, string>> {
    const g = await this.currentGroup(roomId);
    return g == null ? new Map() : this.groupIds(g);
  }

  async current(roomId: string): Promise<Map<string, StoredEvent>> {
    const g = await this.currentGroup(roomId);
    return g == null ? new Map() : this.groupEvents(g);
  }

  /** One current state event, e.g. ('m.room.member', userId). */
  async stateEvent(roomId: string, type: string, stateKey = ''): Promise<StoredEvent | undefined> {
    const id = (await this.currentIds(roomId)).get(stateKeyOf(type, stateKey));
    return id ? this.events.get(id) : undefined;
  }

  /** State after `ev` (includes ev itself if it is a state event). */
  async afterEvent(ev: StoredEvent): Promise<Map<string, StoredEvent>> {
    return ev.stateGroup == null ? new Map() : this.groupEvents(ev.stateGroup);
  }

  /**
   * Write the group that results from applying `changes` (stateKey -> event nid)
   * on top of `prevGroup`. Returns the new group id.
   */
  async writeGroup(tx: Tx, roomId: string, prevGroup: number | null, changes: Map<string, { nid: number; eventId: string }>): Promise<number> {
    let chainLength = 0;
    let prev: number | null = prevGroup;
    let entries = changes;
    if (prevGroup != null) {
      const row = await tx.selectFrom('state_groups').select('chain_length').where('id', '=', prevGroup).executeTakeFirstOrThrow();
      chainLength = Number(row.chain_length) + 1;
      if (chainLength > MAX_CHAIN) {
        // Collapse into a fresh snapshot.
        const full = await this.groupIds(prevGroup, tx);
        const ids = [...full.values()];
        const nidOf = new Map<string, number>();
        for (let i = 0; i < ids.length; i += BATCH) {
          const rows = await tx.selectFrom('events').select(['event_id', 'nid']).where('event_id', 'in', ids.slice(i, i + BATCH)).execute();
          for (const r of rows) nidOf.set(r.event_id, Number(r.nid));
        }
        entries = new Map();
        for (const [k, id] of full) entries.set(k, { nid: nidOf.get(id)!, eventId: id });
        for (const [k, v] of changes) entries.set(k, v);
        prev = null;
        chainLength = 0;
      }
    }
    const inserted = await tx.insertInto('state_groups').values({ room_id: roomId, prev_group: prev, chain_length: chainLength }).returning('id').executeTakeFirstOrThrow();
    const groupId = Number(inserted.id);
    // A snapshot of a big room has tens of thousands of entries: one statement per entry would dominate the write.
    const keyNids = await this.keyNids(tx, [...entries.keys()]);
    const rows = [...entries].map(([k, v]) => ({ group_id: groupId, key_nid: keyNids.get(k)!, event_nid: v.nid }));
    for (let i = 0; i < rows.length; i += BATCH) await tx.insertInto('state_group_entries').values(rows.slice(i, i + BATCH)).execute();
    return groupId;
  }

  /** Cache a group computed by the writer so the next read costs nothing. Only call after commit. */
  primeGroup(groupId: number, state: Map<string, string>): void {
    this.groups.set(groupId, state);
  }

  /** nids of state keys (type\u0000state_key), creating the unknown ones. */
  private async keyNids(tx: Tx, keys: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const byType = new Map<string, string[]>();
    for (const k of keys) {
      const hit = this.keyNidCache.get(k);
      if (hit !== undefined) { out.set(k, hit); continue; }
      const [type, stateKey] = splitStateKey(k);
      const list = byType.get(type);
      if (list) list.push(stateKey); else byType.set(type, [stateKey]);
    }
    const fresh: Array<{ type: string; state_key: string }> = [];
    for (const [type, stateKeys] of byType) {
      const found = new Set<string>();
      for (let i = 0; i < stateKeys.length; i += BATCH) {
        const rows = await tx.selectFrom('state_keys').select(['nid', 'state_key'])
          .where('type', '=', type).where('state_key', 'in', stateKeys.slice(i, i + BATCH)).execute();
        for (const r of rows) {
          const k = stateKeyOf(type, r.state_key);
          this.keyNidCache.set(k, Number(r.nid));
          out.set(k, Number(r.nid));
          found.add(r.state_key);
        }
      }
      for (const sk of stateKeys) if (!found.has(sk)) fresh.push({ type, state_key: sk });
    }
    // Fresh nids are not cached: if this transaction rolls back they never existed.
    for (let i = 0; i < fresh.length; i += BATCH) {
      const rows = await tx.insertInto('state_keys').values(fresh.slice(i, i + BATCH)).returning(['nid', 'type', 'state_key']).execute();
      for (const r of rows) out.set(stateKeyOf(r.type, r.state_key), Number(r.nid));
    }
    return out;
  }
}
