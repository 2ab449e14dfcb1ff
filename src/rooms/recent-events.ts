import { Lru } from '../server/lru.js';

/** Recent event positions kept per room, and rooms kept. */
const PER_ROOM = 64;
const ROOMS = 2_000;

interface RoomTail {
  /** Every accepted event of the room after this position is in `pos` / `ids`. */
  completeAfter: number;
  /** Ascending. */
  pos: number[];
  ids: string[];
}

/**
 * The newest events of recently active rooms, in stream order, so that an
 * incremental /sync can find a room's new events without a query (their
 * content then comes from the event cache).
 *
 * Fed by the event write path after commit, in commit (= stream) order;
 * only accepted events are recorded. A room's list starts with the first
 * event recorded for it: nothing is claimed about earlier positions, and
 * positions dropped from the front raise `completeAfter`.
 */
export class RecentEvents {
  private rooms: Lru<string, RoomTail>;

  constructor(private readonly perRoom = PER_ROOM, rooms = ROOMS) {
    this.rooms = new Lru(rooms);
  }

  /** Rooms with a cached tail (metrics). */
  get cacheSize(): number {
    return this.rooms.size;
  }

  /** Record an accepted event (call after its transaction commits). */
  add(roomId: string, pos: number, eventId: string): void {
    let t = this.rooms.get(roomId);
    if (!t) {
      this.rooms.set(roomId, (t = { completeAfter: pos - 1, pos: [], ids: [] }));
    } else if (t.pos.length && t.pos[t.pos.length - 1] >= pos) {
      // Out of order (cannot happen with ordered commits): stop trusting this room.
      this.rooms.delete(roomId);
      return;
    }
    t.pos.push(pos);
    t.ids.push(eventId);
    if (t.pos.length > this.perRoom) {
      t.completeAfter = t.pos.shift()!;
      t.ids.shift();
    }
  }

  /**
   * Ids of the room's newest `limit` events in [lo, hi], newest first; all
   * of them when fewer. Undefined when the room's events from `lo` on are
   * not all known here.
   */
  range(roomId: string, lo: number, hi: number, limit: number): string[] | undefined {
    const t = this.rooms.get(roomId);
    if (!t || lo <= t.completeAfter) return undefined;
    const out: string[] = [];
    for (let i = t.pos.length - 1; i >= 0 && out.length < limit; i--) {
      const p = t.pos[i];
      if (p < lo) break;
      if (p <= hi) out.push(t.ids[i]);
    }
    return out;
  }

  clear(): void {
    this.rooms.clear();
  }
}
