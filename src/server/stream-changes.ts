/**
 * Stream change caches (after Synapse's StreamChangeCache): for one kind of
 * syncable data, the last stream position at which each entity (a user, a
 * room, a user in a room) changed, so a reader can tell without a query
 * that nothing changed for an entity in (since, to].
 *
 * - Writers record changes after their transaction commits, inside the
 *   write lock and before the notifier advances its position (see
 *   `BaseContext.write`). So a reader whose `to` is at most
 *   `notifier.position` finds every change at or below `to` recorded.
 * - Bounded: past `maxEntries`, the oldest entries are dropped and
 *   `earliestKnown` rises to the newest dropped position. Below
 *   `earliestKnown` (also: before this process started) the answer is
 *   "maybe changed", and the caller falls back to its query.
 * - Answers are conservative: "changed" may be a change after `to`, or an
 *   entity that only might have changed; "not changed" is exact.
 */
export class StreamChangeCache {
  /** Entity -> position of its last recorded change; insertion order is (nearly) position order. */
  private last = new Map<string, number>();
  private earliest: number;
  private max: number;

  constructor(readonly name: string, earliestKnown: number, private readonly maxEntries = 10_000) {
    this.earliest = earliestKnown;
    this.max = earliestKnown;
  }

  /** Changes at or below this position are not known individually. */
  get earliestKnown(): number {
    return this.earliest;
  }

  /** The highest position recorded (or `earliestKnown`). */
  get maxPosition(): number {
    return this.max;
  }

  get size(): number {
    return this.last.size;
  }

  /** Record that `entity` changed at `pos` (call once the change has committed). */
  entityChanged(entity: string, pos: number): void {
    if (pos <= this.earliest) return; // already covered by "maybe changed"
    const prev = this.last.get(entity);
    if (prev !== undefined) {
      if (prev >= pos) return;
      this.last.delete(entity);
    }
    this.last.set(entity, pos);
    if (pos > this.max) this.max = pos;
    while (this.last.size > this.maxEntries) {
      const [oldest, p] = this.last.entries().next().value as [string, number];
      this.last.delete(oldest);
      // Every entity no longer in the map last changed at or below `earliest`.
      if (p > this.earliest) this.earliest = p;
    }
  }

  /** May `entity` have changed after `since`? */
  hasEntityChanged(entity: string, since: number): boolean {
    if (since < this.earliest) return true;
    const p = this.last.get(entity);
    return p !== undefined && p > since;
  }

  /** May anything have changed after `since`? */
  hasAnyChanged(since: number): boolean {
    return since < this.earliest || this.max > since;
  }

  /** Those of `entities` that may have changed after `since` (all of them when the cache cannot tell). */
  changedAmong(entities: Iterable<string>, since: number): string[] {
    const out: string[] = [];
    if (since < this.earliest) {
      for (const e of entities) out.push(e);
      return out;
    }
    if (this.max <= since) return out;
    for (const e of entities) {
      const p = this.last.get(e);
      if (p !== undefined && p > since) out.push(e);
    }
    return out;
  }

  /**
   * Every entity that changed after `since`, or undefined when the cache
   * cannot tell or there are more than `limit`.
   */
  allChangedSince(since: number, limit = Infinity): string[] | undefined {
    if (since < this.earliest) return undefined;
    const out: string[] = [];
    if (this.max <= since) return out;
    for (const [e, p] of this.last) {
      if (p <= since) continue;
      if (out.length >= limit) return undefined;
      out.push(e);
    }
    return out;
  }

  /** Forget every entry: changes at or below `pos` may have been missed. */
  reset(pos: number): void {
    this.last.clear();
    if (pos > this.earliest) this.earliest = pos;
    if (this.earliest > this.max) this.max = this.earliest;
  }
}

/** Default bound of each stream change cache. */
export const STREAM_CHANGE_CACHE_SIZE = 10_000;

/**
 * The server's stream change caches, one per kind of change (see each
 * field for its entity). Fed by the writers through `ctx.write`'s
 * `onCommit`; read by /sync and the caches derived from the database.
 */
export class StreamChanges {
  /** Any event, by room id. */
  readonly events: StreamChangeCache;
  /**
   * State events, by room id (and redactions of state events): current
   * state group, member lists and counts, history visibility, and each
   * member's own membership there. (A user's list of rooms is cached by the
   * rooms service and dropped by every write that changes it.)
   */
  readonly roomState: StreamChangeCache;
  /** Global and room account data, by user id. */
  readonly accountData: StreamChangeCache;
  /** Receipts (public and private), by room id. */
  readonly receipts: StreamChangeCache;
  /** A user's own receipts, by `userRoomKey(user, room)`. */
  readonly userReceipts: StreamChangeCache;
  /** Presence, by user id. */
  readonly presence: StreamChangeCache;
  /** Push actions (notification counts), by `userRoomKey(user, room)`. */
  readonly pushActions: StreamChangeCache;
  /** Device lists (devices, device keys, cross-signing keys), by the changed user's id. */
  readonly deviceLists: StreamChangeCache;

  /** To-device messages, by `userRoomKey(user, device)` of the recipient device. */
  readonly toDevice: StreamChangeCache;

  private readonly all: StreamChangeCache[];
  private readonly resetListeners: Array<() => void> = [];

  constructor(head: number, maxEntries = STREAM_CHANGE_CACHE_SIZE) {
    const make = (name: string) => new StreamChangeCache(name, head, maxEntries);
    this.events = make('events');
    this.roomState = make('room_state');
    this.accountData = make('account_data');
    this.receipts = make('receipts');
    this.userReceipts = make('user_receipts');
    this.presence = make('presence');
    this.pushActions = make('push_actions');
    this.deviceLists = make('device_lists');
    this.toDevice = make('to_device');
    this.all = [this.events, this.roomState, this.accountData, this.receipts, this.userReceipts, this.presence, this.pushActions, this.deviceLists, this.toDevice];
  }

  /** Called by `reset`: caches that are invalidated other than by position drop everything. */
  onReset(fn: () => void): void {
    this.resetListeners.push(fn);
  }

  /** Something changed that the caches did not see (e.g. another process wrote): forget everything up to `pos`. */
  reset(pos: number): void {
    for (const c of this.all) c.reset(pos);
    for (const fn of this.resetListeners) fn();
  }
}

/** Key of a (user, room) pair in a change cache. */
export function userRoomKey(userId: string, roomId: string): string {
  return `${userId}\u0000${roomId}`;
}
