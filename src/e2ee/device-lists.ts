/**
 * Device lists: which users' devices, device keys or cross-signing keys
 * changed, as seen by one user (/sync `device_lists`, GET /keys/changes).
 *
 * Every change gets a stream position and a row in `device_list_changes`
 * (user_id, stream_pos); `ctx.streams.deviceLists` caches the latest
 * position per user so an incremental sync usually runs no query. A reader
 * sees the changes of users who share a room with them (and their own),
 * plus every user who newly shares a room (`changed`) or no longer shares
 * any (`left`).
 */
import type { Context } from '../server/services.js';
import type { OnCommit } from '../server/context.js';
import type { Tx } from '../storage/db.js';
import { queueDeviceListEdus } from '../federation/edus.js';

const IN_CHUNK = 500;
/** Above this many changed users, ask the database rather than the change cache. */
const CACHE_LIST_MAX = 1000;

function chunks<T>(xs: T[], n = IN_CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

/**
 * Record that `userId`'s device list changed (inside a `ctx.write`).
 * Returns the keys to wake: the user and the rooms they are joined to
 * (a long-polling /sync waits on its user id and its joined rooms).
 * For a local user, other servers sharing a room are told in the same
 * transaction: about `deviceIds` when given, else about cross-signing keys.
 */
export async function recordDeviceListChange(
  ctx: Context, tx: Tx, alloc: () => Promise<number>, onCommit: OnCommit, userId: string, deviceIds?: string[],
): Promise<string[]> {
  const pos = await alloc();
  await tx.insertInto('device_list_changes').values({ user_id: userId, stream_pos: pos }).execute();
  onCommit(() => ctx.streams.deviceLists.entityChanged(userId, pos));
  await queueDeviceListEdus(ctx, { tx, onCommit }, userId, pos, deviceIds);
  // Through `tx`: on SQLite a query outside the transaction would wait for it.
  const rooms = await tx.selectFrom('room_members').select('room_id').where('user_id', '=', userId).where('membership', '=', 'join').execute();
  return [userId, ...rooms.map((r) => r.room_id)];
}

/** Those of `users` joined to any of `roomIds` (current membership). */
async function joinedIn(ctx: Context, roomIds: string[], users: string[]): Promise<Set<string>> {
  const out = new Set<string>();
  if (!roomIds.length || !users.length) return out;
  for (const rooms of chunks(roomIds)) {
    for (const us of chunks(users)) {
      const rows = await ctx.storage.db.selectFrom('room_members').select('user_id').distinct()
        .where('room_id', 'in', rooms).where('user_id', 'in', us).where('membership', '=', 'join').execute();
      for (const r of rows) out.add(r.user_id);
    }
  }
  return out;
}

/** Members of `roomIds` whose membership is one of `memberships`, changed in (since, to] when `since` is given. */
async function membersOf(ctx: Context, roomIds: string[], memberships: string[], since?: number, to?: number): Promise<Set<string>> {
  const out = new Set<string>();
  for (const rooms of chunks(roomIds)) {
    let q = ctx.storage.db.selectFrom('room_members').select('user_id').distinct()
      .where('room_id', 'in', rooms).where('membership', 'in', memberships);
    if (since !== undefined) q = q.where('stream_pos', '>', since);
    if (to !== undefined) q = q.where('stream_pos', '<=', to);
    for (const r of await q.execute()) out.add(r.user_id);
  }
  return out;
}

/**
 * Device-list changes seen by `userId` in (since, to]: `changed` (users
 * sharing a room, or the user themselves, whose devices changed, and users
 * who newly share a room) and `left` (users who no longer share any room).
 */
export async function deviceListsBetween(ctx: Context, userId: string, since: number, to: number): Promise<{ changed: string[]; left: string[] }> {
  if (to <= since) return { changed: [], left: [] };
  const rows = await ctx.rooms.memberRowsOf(userId);
  const joinedRooms = rows.filter((r) => r.membership === 'join').map((r) => r.room_id);
  const newRooms = rows.filter((r) => r.membership === 'join' && r.stream_pos > since && r.stream_pos <= to).map((r) => r.room_id);
  const leftRooms = rows.filter((r) => (r.membership === 'leave' || r.membership === 'ban') && r.stream_pos > since && r.stream_pos <= to).map((r) => r.room_id);
  const newSet = new Set(newRooms);
  // Rooms whose membership may have changed (state changes cover member events).
  const cacheOk = to <= ctx.notifier.position;
  const stateChanged = (cacheOk ? ctx.streams.roomState.changedAmong(joinedRooms, since) : joinedRooms).filter((r) => !newSet.has(r));

  const changed = new Set<string>();
  // 1. Device changes of users sharing a room (and the user's own).
  const fromCache = cacheOk ? ctx.streams.deviceLists.allChangedSince(since, CACHE_LIST_MAX) : undefined;
  let candidates: string[];
  if (fromCache) {
    candidates = fromCache;
  } else {
    const rs = await ctx.storage.db.selectFrom('device_list_changes').select('user_id').distinct()
      .where('stream_pos', '>', since).where('stream_pos', '<=', to).execute();
    candidates = rs.map((r) => r.user_id);
  }
  if (candidates.length) {
    // The cache may name a change after `to`: confirm in the database (cheap, indexed).
    if (fromCache) {
      const confirmed = new Set<string>();
      for (const us of chunks(candidates)) {
        const rs = await ctx.storage.db.selectFrom('device_list_changes').select('user_id').distinct()
          .where('user_id', 'in', us).where('stream_pos', '>', since).where('stream_pos', '<=', to).execute();
        for (const r of rs) confirmed.add(r.user_id);
      }
      candidates = [...confirmed];
    }
    if (candidates.includes(userId)) changed.add(userId);
    for (const u of await joinedIn(ctx, joinedRooms, candidates.filter((u) => u !== userId))) changed.add(u);
  }
  // 2. Users who newly share a room: everyone in rooms joined since, and joins since in other rooms.
  if (newRooms.length) for (const u of await membersOf(ctx, newRooms, ['join'])) changed.add(u);
  if (stateChanged.length) for (const u of await membersOf(ctx, stateChanged, ['join'], since, to)) changed.add(u);
  changed.delete(userId);
  if (candidates.includes(userId)) changed.add(userId);

  // 3. Users who may no longer share a room.
  const leftCandidates = new Set<string>();
  if (leftRooms.length) for (const u of await membersOf(ctx, leftRooms, ['join', 'leave', 'ban'], since)) leftCandidates.add(u);
  if (leftRooms.length) for (const u of await membersOf(ctx, leftRooms, ['join'])) leftCandidates.add(u);
  if (stateChanged.length) for (const u of await membersOf(ctx, stateChanged, ['leave', 'ban'], since, to)) leftCandidates.add(u);
  leftCandidates.delete(userId);
  const left: string[] = [];
  if (leftCandidates.size) {
    const still = await joinedIn(ctx, joinedRooms, [...leftCandidates]);
    for (const u of leftCandidates) {
      if (still.has(u)) continue;
      left.push(u);
      changed.delete(u);
    }
  }
  return { changed: [...changed].sort(), left: left.sort() };
}
