import type { Selectable } from 'kysely';
import type { Database } from '../storage/schema.js';
import type { Db } from '../storage/db.js';
import { Lru } from '../server/lru.js';
import type { StoredEvent } from './types.js';

type EventRow = Selectable<Database['events']>;

export const EVENT_COLUMNS = ['nid', 'event_id', 'room_id', 'json', 'stream_pos', 'state_group', 'redacted_by', 'txn_device_id', 'txn_id'] as const;

export function rowToStoredEvent(row: Pick<EventRow, (typeof EVENT_COLUMNS)[number]>): StoredEvent {
  const pdu = JSON.parse(row.json);
  // v12 create events carry no room_id on the wire; locally every event knows its room.
  pdu.room_id ??= row.room_id;
  return {
    nid: Number(row.nid),
    pdu,
    streamPos: Number(row.stream_pos),
    stateGroup: row.state_group == null ? null : Number(row.state_group),
    redactedBy: row.redacted_by,
    txnDeviceId: row.txn_device_id,
    txnId: row.txn_id,
  };
}

/** Reads events by id or nid through a bounded cache. Events are immutable except for redaction, which calls `invalidate`. */
export class EventStore {
  private byId: Lru<string, StoredEvent>;

  constructor(private readonly db: Db, cacheSize: number) {
    this.byId = new Lru(cacheSize);
  }

  /** Cached events (metrics). */
  get cacheSize(): number {
    return this.byId.size;
  }

  async get(eventId: string): Promise<StoredEvent | undefined> {
    const hit = this.byId.get(eventId);
    if (hit) return hit;
    const row = await this.db.selectFrom('events').select(EVENT_COLUMNS).where('event_id', '=', eventId).executeTakeFirst();
    if (!row) return undefined;
    const ev = rowToStoredEvent(row);
    this.byId.set(eventId, ev);
    return ev;
  }

  /** Fetch many; the result keeps the order of `ids` and skips unknown ones. */
  async getMany(ids: string[]): Promise<StoredEvent[]> {
    const out = new Map<string, StoredEvent>();
    const missing: string[] = [];
    for (const id of ids) {
      const hit = this.byId.get(id);
      if (hit) out.set(id, hit); else missing.push(id);
    }
    for (let i = 0; i < missing.length; i += 500) {
      const rows = await this.db.selectFrom('events').select(EVENT_COLUMNS).where('event_id', 'in', missing.slice(i, i + 500)).execute();
      for (const row of rows) {
        const ev = rowToStoredEvent(row);
        this.byId.set(ev.pdu.event_id, ev);
        out.set(ev.pdu.event_id, ev);
      }
    }
    return ids.map((id) => out.get(id)).filter((e): e is StoredEvent => !!e);
  }

  async getByNids(nids: number[]): Promise<StoredEvent[]> {
    const out: StoredEvent[] = [];
    for (let i = 0; i < nids.length; i += 500) {
      const rows = await this.db.selectFrom('events').select(EVENT_COLUMNS).where('nid', 'in', nids.slice(i, i + 500)).execute();
      for (const row of rows) out.push(rowToStoredEvent(row));
    }
    return out;
  }

  remember(ev: StoredEvent): void {
    this.byId.set(ev.pdu.event_id, ev);
  }

  invalidate(eventId: string): void {
    this.byId.delete(eventId);
  }
}
