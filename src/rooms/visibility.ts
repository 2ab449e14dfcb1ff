/**
 * History visibility (spec: "Room History Visibility", server behaviour).
 *
 * Whether a user may see an event depends on the room state *at* the event:
 * the `m.room.history_visibility` in force and the user's own membership.
 * Events in a room are linear on this server (stream order is the room's
 * topological order), so that state is simply "the latest history
 * visibility event and the latest member event of the user before the
 * event". Both change rarely, which lets us describe everything a user may
 * see as a short list of stream-position ranges, computed once per request,
 * instead of loading the state at every event.
 */
import type { Db } from '../storage/db.js';

export type HistoryVisibility = 'world_readable' | 'shared' | 'invited' | 'joined';

const KNOWN: ReadonlySet<string> = new Set(['world_readable', 'shared', 'invited', 'joined']);

/** Unset or not understood means `shared` (spec). */
export function historyVisibilityOf(content: unknown): HistoryVisibility {
  const v = content && typeof content === 'object' ? (content as Record<string, unknown>).history_visibility : undefined;
  return typeof v === 'string' && KNOWN.has(v) ? (v as HistoryVisibility) : 'shared';
}

/** Largest position a range may end at ("until the end of time"). */
export const MAX_POS = Number.MAX_SAFE_INTEGER;
/** Smallest position a range may start at: backfilled history has negative positions (federation/backfill.ts). */
export const MIN_POS = -Number.MAX_SAFE_INTEGER;

/** What the decision depends on, oldest first. */
export interface VisibilityFacts {
  /** The room's `m.room.history_visibility` events. */
  historyVisibility: Array<{ pos: number; value: HistoryVisibility }>;
  /** The user's own `m.room.member` events. */
  membership: Array<{ pos: number; membership: string; eventId: string }>;
  /**
   * In force before the first of `historyVisibility` (default `shared`). A
   * room whose early history is not here yet (joined over federation) has
   * older settings we cannot see: see federation/backfill.ts.
   */
  baseline?: HistoryVisibility;
}

/** The parts of an event the decision looks at. */
export interface EventForVisibility {
  pos: number;
  type: string;
  stateKey?: string;
  content: Record<string, unknown>;
}

/**
 * The spec's rules 1-5 for one (history visibility, membership) pair.
 * `joinedLater`: the user joined the room at some point after the event.
 */
export function allowedBy(hv: HistoryVisibility, membership: string | undefined, joinedLater: boolean): boolean {
  if (hv === 'world_readable') return true;
  if (membership === 'join') return true;
  if (hv === 'shared' && joinedLater) return true;
  if (hv === 'invited' && membership === 'invite') return true;
  return false;
}

/** Index of the last entry with pos < `pos` (entries sorted by pos), or -1. */
function lastBefore<T extends { pos: number }>(list: T[], pos: number): number {
  let lo = 0;
  let hi = list.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].pos < pos) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

export class HistoryVisibilityOracle {
  /** Only the points where the value changes (a repeat cannot change any decision). */
  private readonly hv: Array<{ pos: number; value: HistoryVisibility }> = [];
  private readonly mem: Array<{ pos: number; membership: string; eventId: string }> = [];
  /** Every membership event, for "where did the user stop being joined". */
  private readonly allMem: Array<{ pos: number; membership: string; eventId: string }>;
  private readonly lastJoinPos: number;
  private readonly baseline: HistoryVisibility;
  private ranges?: Array<[number, number]>;

  /**
   * `minPos`: where the ranges start. Reads of room history pass MIN_POS so
   * backfilled events count; /sync never looks below its own positions.
   */
  constructor(readonly userId: string, facts: VisibilityFacts, private readonly minPos = 0) {
    this.baseline = facts.baseline ?? 'shared';
    let prevHv = this.baseline;
    for (const h of [...facts.historyVisibility].sort((a, b) => a.pos - b.pos)) {
      if (h.value !== prevHv) this.hv.push(h);
      prevHv = h.value;
    }
    this.allMem = [...facts.membership].sort((a, b) => a.pos - b.pos);
    let prevMem: string | undefined;
    let lastJoin = -1;
    for (const m of this.allMem) {
      if (m.membership !== prevMem) this.mem.push(m);
      prevMem = m.membership;
      if (m.membership === 'join') lastJoin = m.pos;
    }
    this.lastJoinPos = lastJoin;
  }

  /** History visibility in force just before `pos`. */
  historyVisibilityBefore(pos: number): HistoryVisibility {
    const i = lastBefore(this.hv, pos);
    return i < 0 ? this.baseline : this.hv[i].value;
  }

  /** The user's membership just before `pos` (undefined: never a member). */
  membershipBefore(pos: number): string | undefined {
    const i = lastBefore(this.mem, pos);
    return i < 0 ? undefined : this.mem[i].membership;
  }

  get currentHistoryVisibility(): HistoryVisibility {
    return this.hv.length ? this.hv[this.hv.length - 1].value : this.baseline;
  }

  get currentMembership(): string | undefined {
    return this.mem.length ? this.mem[this.mem.length - 1].membership : undefined;
  }

  get everJoined(): boolean {
    return this.lastJoinPos >= 0;
  }

  /**
   * The member event that ended the user's last stay in the room (the first
   * membership change after their last join), if they joined and then left.
   */
  lastDeparture(): { pos: number; eventId: string } | undefined {
    if (this.lastJoinPos < 0) return undefined;
    return this.allMem.find((m) => m.pos > this.lastJoinPos && m.membership !== 'join');
  }

  /** May the user see this event? */
  canSee(ev: EventForVisibility): boolean {
    const hv = this.historyVisibilityBefore(ev.pos);
    const membership = this.membershipBefore(ev.pos);
    const joinedLater = this.lastJoinPos > ev.pos;
    if (allowedBy(hv, membership, joinedLater)) return true;
    // History visibility events are visible if the setting before *or* after allows it.
    if (ev.type === 'm.room.history_visibility' && ev.stateKey === '') {
      return allowedBy(historyVisibilityOf(ev.content), membership, joinedLater);
    }
    // Likewise for the user's own membership events.
    if (ev.type === 'm.room.member' && ev.stateKey === this.userId) {
      const after = typeof ev.content.membership === 'string' ? ev.content.membership : undefined;
      return allowedBy(hv, after, joinedLater);
    }
    return false;
  }

  /**
   * Every stream position the user may see, as sorted, disjoint, inclusive
   * ranges. Exact: an event is visible iff its position is in a range.
   */
  visibleRanges(): Array<[number, number]> {
    if (this.ranges) return this.ranges;
    const points = new Map<number, EventForVisibility>();
    for (const h of this.hv) {
      points.set(h.pos, { pos: h.pos, type: 'm.room.history_visibility', stateKey: '', content: { history_visibility: h.value } });
    }
    for (const m of this.mem) {
      points.set(m.pos, { pos: m.pos, type: 'm.room.member', stateKey: this.userId, content: { membership: m.membership } });
    }
    const sorted = [...points.keys()].sort((a, b) => a - b);
    const out: Array<[number, number]> = [];
    const add = (lo: number, hi: number, visible: boolean) => {
      if (!visible || lo > hi) return;
      const last = out[out.length - 1];
      if (last && last[1] + 1 >= lo) last[1] = Math.max(last[1], hi);
      else out.push([lo, hi]);
    };
    // Between two change points nothing varies, so any interior point decides the segment.
    const plain = (pos: number) => this.canSee({ pos, type: '', content: {} });
    let next = this.minPos;
    for (const p of sorted) {
      if (next <= p - 1) add(next, p - 1, plain(p - 0.5));
      add(p, p, this.canSee(points.get(p)!));
      next = p + 1;
    }
    add(next, MAX_POS, plain(next + 0.5));
    this.ranges = out;
    return out;
  }
}

/** Load the facts for one user and room (rejected events never count). */
export async function loadVisibility(db: Db, roomId: string, userId: string, baseline?: HistoryVisibility): Promise<HistoryVisibilityOracle> {
  const facts = await loadVisibilityFacts(db, userId, [roomId]);
  return new HistoryVisibilityOracle(userId, { ...facts.get(roomId)!, baseline }, MIN_POS);
}

/**
 * History visibility facts for one user in many rooms (up to stream position
 * `to`), in two queries per 500 rooms. Positions are bounded and sorted here
 * rather than in SQL, which would steer SQLite to the (room_id, stream_pos)
 * index and a scan of every event of the room.
 */
export async function loadVisibilityFacts(db: Db, userId: string, roomIds: string[], to = Number.MAX_SAFE_INTEGER): Promise<Map<string, VisibilityFacts>> {
  const facts = new Map<string, VisibilityFacts>();
  const unique = [...new Set(roomIds)];
  for (const id of unique) facts.set(id, { historyVisibility: [], membership: [] });
  for (let i = 0; i < unique.length; i += 500) {
    const part = unique.slice(i, i + 500);
    const hv = await db.selectFrom('events').select(['room_id', 'stream_pos', 'json'])
      .where('room_id', 'in', part).where('type', '=', 'm.room.history_visibility').where('state_key', '=', '')
      .where('rejected', '=', 0).execute();
    for (const r of hv) {
      if (Number(r.stream_pos) > to) continue;
      const content = (JSON.parse(r.json) as { content?: unknown }).content;
      facts.get(r.room_id)!.historyVisibility.push({ pos: Number(r.stream_pos), value: historyVisibilityOf(content) });
    }
    const mem = await db.selectFrom('events').select(['room_id', 'stream_pos', 'event_id', 'json'])
      .where('room_id', 'in', part).where('type', '=', 'm.room.member').where('state_key', '=', userId)
      .where('rejected', '=', 0).execute();
    for (const r of mem) {
      if (Number(r.stream_pos) > to) continue;
      const m = (JSON.parse(r.json) as { content?: { membership?: unknown } }).content?.membership;
      facts.get(r.room_id)!.membership.push({ pos: Number(r.stream_pos), membership: typeof m === 'string' ? m : 'leave', eventId: r.event_id });
    }
  }
  for (const f of facts.values()) {
    f.historyVisibility.sort((x, y) => x.pos - y.pos);
    f.membership.sort((x, y) => x.pos - y.pos);
  }
  return facts;
}
