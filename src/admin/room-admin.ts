/**
 * What the room admin API does to rooms (src/admin/rooms-routes.ts holds the
 * HTTP side): summaries of rooms as Synapse lists them, blocking, and the
 * two slow operations, deleting a room and purging its old history, which
 * run in the background with their status in admin_room_tasks.
 */
import { randomOpaqueId } from '../core/event-hashing.js';
import { serverNameOf } from '../core/identifiers.js';
import { MatrixError, forbidden, notFound } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { splitStateKey } from '../rooms/state-store.js';
import type { StoredEvent } from '../rooms/types.js';

/** One room as GET /_synapse/admin/v1/rooms lists it. */
export interface RoomSummary {
  room_id: string;
  name: string | null;
  canonical_alias: string | null;
  joined_members: number;
  joined_local_members: number;
  version: string;
  creator: string;
  encryption: string | null;
  federatable: boolean;
  public: boolean;
  join_rules: string | null;
  guest_access: string | null;
  history_visibility: string | null;
  state_events: number;
  room_type: string | null;
}

export interface RoomDetails extends RoomSummary {
  topic: string | null;
  avatar: string | null;
  joined_local_devices: number;
  forgotten: boolean;
}

/** Sortable columns and whether Synapse sorts them ascending when dir=f. */
export const ROOM_ORDER = {
  name: true, canonical_alias: true, joined_members: false, joined_local_members: false, version: false,
  creator: true, encryption: true, federatable: true, public: true, join_rules: true, guest_access: true,
  history_visibility: true, state_events: false,
} as const;
export type RoomOrder = keyof typeof ROOM_ORDER;

export interface ShutdownResult {
  kicked_users: string[];
  failed_to_kick_users: string[];
  local_aliases: string[];
  new_room_id: string | null;
}

export interface DeleteRoomOptions {
  /** The admin asking (recorded as the blocker). */
  adminId: string;
  block: boolean;
  purge: boolean;
  forcePurge: boolean;
  message?: string;
  roomName?: string;
  newRoomUserId?: string;
}

export interface PurgeHistoryOptions {
  eventId?: string;
  ts?: number;
  deleteLocalEvents: boolean;
}

/** A task row as the status endpoints need it. */
export interface TaskStatus {
  taskId: string;
  kind: 'delete' | 'purge';
  roomId: string;
  status: string;
  error: string | null;
  result: ShutdownResult | null;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
/** How long a finished task's status stays readable (Synapse: a day). */
const KEEP_FINISHED_MS = 24 * 3600_000;
/** Rows per DELETE ... IN (...): well under both engines' parameter limits. */
const CHUNK = 500;

function chunks<T>(xs: T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += CHUNK) out.push(xs.slice(i, i + CHUNK));
  return out;
}

export class RoomAdmin {
  /** Rooms with a deletion or purge running, so that two never overlap. */
  private busy = new Set<string>();

  constructor(private readonly ctx: Context) {}

  private isLocal(userId: string): boolean {
    return serverNameOf(userId) === this.ctx.config.server_name;
  }

  /** The room as the list shows it; `withDetails` adds what only GET /rooms/{roomId} shows (more queries). */
  async summary(roomId: string, withDetails = true): Promise<RoomDetails | undefined> {
    const room = await this.ctx.rooms.getRoom(roomId);
    if (!room) return undefined;
    const state = await this.ctx.rooms.state.current(roomId);
    const content = (type: string) => state.get(`${type}\u0000`)?.pdu.content ?? {};
    let joined = 0;
    let joinedLocal = 0;
    const localMembers: string[] = [];
    for (const [k, ev] of state) {
      const [type, stateKey] = splitStateKey(k);
      if (type !== 'm.room.member' || ev.pdu.content.membership !== 'join') continue;
      joined++;
      if (this.isLocal(stateKey)) {
        joinedLocal++;
        localMembers.push(stateKey);
      }
    }
    let devices = 0;
    let forgotten = false;
    if (withDetails) {
      const db = this.ctx.storage.db;
      for (const users of chunks(localMembers)) {
        const r = await db.selectFrom('devices').select((eb) => eb.fn.countAll<number>().as('n')).where('user_id', 'in', users).executeTakeFirst();
        devices += Number(r?.n ?? 0);
      }
      // Synapse: true once every local user who was in the room has forgotten it.
      const local = (await db.selectFrom('room_members').select(['user_id', 'forgotten']).where('room_id', '=', roomId).execute())
        .filter((m) => this.isLocal(m.user_id));
      forgotten = local.length > 0 && local.every((m) => !!m.forgotten);
    }
    const create = content('m.room.create');
    return {
      room_id: roomId,
      name: str(content('m.room.name').name),
      canonical_alias: str(content('m.room.canonical_alias').alias),
      joined_members: joined,
      joined_local_members: joinedLocal,
      version: room.room_version,
      creator: room.creator,
      encryption: str(content('m.room.encryption').algorithm),
      federatable: create['m.federate'] !== false,
      public: room.visibility === 'public',
      join_rules: str(content('m.room.join_rules').join_rule),
      guest_access: str(content('m.room.guest_access').guest_access),
      history_visibility: str(content('m.room.history_visibility').history_visibility),
      state_events: state.size,
      room_type: str(create.type),
      topic: str(content('m.room.topic').topic),
      avatar: str(content('m.room.avatar').url),
      joined_local_devices: devices,
      forgotten,
    };
  }

  /**
   * Every room, filtered and sorted in memory: admin listings are rare and
   * need per-room state (name, alias, counts) that no single query holds.
   */
  async list(opts: { searchTerm?: string; order: RoomOrder; reverse: boolean }): Promise<RoomSummary[]> {
    const ids = await this.ctx.storage.db.selectFrom('rooms').select('room_id').execute();
    const out: RoomSummary[] = [];
    const term = opts.searchTerm?.toLowerCase();
    for (const { room_id } of ids) {
      const d = await this.summary(room_id, false);
      if (!d) continue;
      if (term && ![d.name, d.canonical_alias, d.room_id].some((v) => v?.toLowerCase().includes(term))) continue;
      const { topic: _t, avatar: _a, joined_local_devices: _d, forgotten: _f, ...summary } = d;
      out.push(summary);
    }
    const asc = ROOM_ORDER[opts.order] !== opts.reverse;
    out.sort((a, b) => {
      const x = a[opts.order];
      const y = b[opts.order];
      // Missing values (no name, no alias) go last either way, like Postgres' NULLS LAST for ascending order.
      if (x !== y) {
        if (x === null) return 1;
        if (y === null) return -1;
        const c = x < y ? -1 : 1;
        return asc ? c : -c;
      }
      return a.room_id < b.room_id ? -1 : a.room_id > b.room_id ? 1 : 0;
    });
    return out;
  }

  async members(roomId: string): Promise<string[]> {
    const rows = await this.ctx.storage.db.selectFrom('room_members').select('user_id')
      .where('room_id', '=', roomId).where('membership', '=', 'join').orderBy('user_id').execute();
    return rows.map((r) => r.user_id);
  }

  async currentState(roomId: string): Promise<StoredEvent[]> {
    return [...(await this.ctx.rooms.state.current(roomId)).values()];
  }

  // ---- blocking

  async isBlocked(roomId: string): Promise<{ userId: string } | undefined> {
    const row = await this.ctx.storage.db.selectFrom('blocked_rooms').select('user_id').where('room_id', '=', roomId).executeTakeFirst();
    return row ? { userId: row.user_id } : undefined;
  }

  async setBlocked(roomId: string, block: boolean, adminId: string): Promise<void> {
    const db = this.ctx.storage.db;
    if (!block) {
      await db.deleteFrom('blocked_rooms').where('room_id', '=', roomId).execute();
      return;
    }
    await db.insertInto('blocked_rooms').values({ room_id: roomId, user_id: adminId, blocked_ts: Date.now() })
      .onConflict((oc) => oc.column('room_id').doNothing()).execute();
  }

  // ---- background tasks

  /** Tasks a previous run of the server left unfinished can never finish: say so in their status. */
  async failInterrupted(): Promise<void> {
    await this.ctx.storage.db.updateTable('admin_room_tasks')
      .set({ status: 'failed', error: 'Interrupted by a server restart', updated_ts: Date.now() })
      .where('status', 'not in', ['complete', 'failed']).execute();
  }

  async task(taskId: string): Promise<TaskStatus | undefined> {
    const row = await this.ctx.storage.db.selectFrom('admin_room_tasks').selectAll().where('task_id', '=', taskId).executeTakeFirst();
    return row ? toStatus(row) : undefined;
  }

  async roomTasks(roomId: string, kind: 'delete' | 'purge'): Promise<TaskStatus[]> {
    const rows = await this.ctx.storage.db.selectFrom('admin_room_tasks').selectAll()
      .where('room_id', '=', roomId).where('kind', '=', kind).orderBy('created_ts').execute();
    return rows.map(toStatus);
  }

  private async setTask(taskId: string, status: string, extra: { error?: string; result?: ShutdownResult } = {}): Promise<void> {
    const set: { status: string; updated_ts: number; error?: string; result?: string } = { status, updated_ts: Date.now() };
    if (extra.error !== undefined) set.error = extra.error;
    if (extra.result !== undefined) set.result = JSON.stringify(extra.result);
    await this.ctx.storage.db.updateTable('admin_room_tasks').set(set).where('task_id', '=', taskId).execute();
  }

  /** Record the task, then run it without waiting; a failure is recorded as the task's error. */
  private async start(kind: 'delete' | 'purge', roomId: string, status: string, run: (taskId: string) => Promise<void>): Promise<{ taskId: string; done: Promise<void> }> {
    if (this.busy.has(roomId)) {
      throw new MatrixError('M_UNKNOWN', 400, kind === 'purge' ? `History purge already in progress for ${roomId}` : `Room ${roomId} is already being deleted or purged`);
    }
    const taskId = randomOpaqueId(16);
    const now = Date.now();
    // Claimed before the first await, so two requests at once cannot both start.
    this.busy.add(roomId);
    try {
      await this.ctx.storage.db.deleteFrom('admin_room_tasks')
        .where('status', 'in', ['complete', 'failed']).where('updated_ts', '<', now - KEEP_FINISHED_MS).execute();
      await this.ctx.storage.db.insertInto('admin_room_tasks').values({
        task_id: taskId, kind, room_id: roomId, status, error: null, result: null, created_ts: now, updated_ts: now,
      }).execute();
    } catch (err) {
      this.busy.delete(roomId);
      throw err;
    }
    const done = run(taskId)
      .catch(async (err: unknown) => {
        this.ctx.log.error({ err, roomId, kind }, 'admin room task failed');
        await this.setTask(taskId, 'failed', { error: err instanceof Error ? err.message : String(err) }).catch(() => {});
      })
      .finally(() => this.busy.delete(roomId));
    return { taskId, done };
  }

  /** DELETE /_synapse/admin/v1/rooms/{roomId}: the same work as v2, waited for. */
  async deleteRoomNow(roomId: string, opts: DeleteRoomOptions): Promise<ShutdownResult> {
    const { taskId, done } = await this.deleteRoom(roomId, opts);
    await done;
    const t = await this.task(taskId);
    if (!t || t.status === 'failed') throw new MatrixError('M_UNKNOWN', 400, t?.error ?? 'Room deletion failed');
    return t.result ?? { kicked_users: [], failed_to_kick_users: [], local_aliases: [], new_room_id: null };
  }

  /** DELETE /_synapse/admin/v2/rooms/{roomId}: starts the deletion; its id is the delete_id. */
  async deleteRoom(roomId: string, opts: DeleteRoomOptions): Promise<{ taskId: string; done: Promise<void> }> {
    const room = await this.ctx.rooms.getRoom(roomId);
    if (!room && !opts.block) throw notFound(`Unknown room id ${roomId}`);
    if (opts.newRoomUserId !== undefined) {
      if (!this.isLocal(opts.newRoomUserId)) throw new MatrixError('M_UNKNOWN', 400, 'User must be our own: ' + opts.newRoomUserId);
      const u = await this.ctx.storage.db.selectFrom('users').select('user_id').where('user_id', '=', opts.newRoomUserId).executeTakeFirst();
      if (!u) throw notFound(`Unknown user ${opts.newRoomUserId}`);
    }
    return this.start('delete', roomId, 'shutting_down', async (taskId) => {
      const result = await this.shutDown(roomId, opts);
      await this.setTask(taskId, 'shutting_down', { result });
      if (opts.purge && room) {
        const stillJoined = (await this.members(roomId)).filter((u) => this.isLocal(u));
        if (stillJoined.length && !opts.forcePurge) {
          await this.setTask(taskId, 'failed', { error: `Users are still joined to this room: ${stillJoined.join(', ')}` });
          return;
        }
        await this.setTask(taskId, 'purging');
        await this.purgeRoom(roomId);
      }
      await this.setTask(taskId, 'complete');
    });
  }

  /** Block (optionally), move local members out, take the room out of the directory and aliases. */
  private async shutDown(roomId: string, opts: DeleteRoomOptions): Promise<ShutdownResult> {
    const db = this.ctx.storage.db;
    const result: ShutdownResult = { kicked_users: [], failed_to_kick_users: [], local_aliases: [], new_room_id: null };
    // Blocked first, so nobody rejoins while the members are being moved out.
    if (opts.block) await this.setBlocked(roomId, true, opts.adminId);
    if (!(await this.ctx.rooms.getRoom(roomId))) return result;

    if (opts.newRoomUserId !== undefined) {
      const { room_id } = await this.ctx.rooms.createRoom(opts.newRoomUserId, {
        preset: 'public_chat', name: opts.roomName ?? 'Content Violation Notification',
        power_level_content_override: { users_default: -10 },
      });
      result.new_room_id = room_id;
      await this.ctx.rooms.send({
        roomId: room_id, sender: opts.newRoomUserId, type: 'm.room.message',
        content: { msgtype: 'm.text', body: opts.message ?? 'Sharing illegal content on this server is not permitted and rooms in violation will be blocked.' },
      });
    }

    const rows = await db.selectFrom('room_members').select(['user_id', 'membership'])
      .where('room_id', '=', roomId).where('membership', 'in', ['join', 'invite', 'knock']).execute();
    for (const { user_id: userId } of rows) {
      if (!this.isLocal(userId)) continue;
      try {
        // A leave of one's own (like Synapse): always allowed, whatever the power levels.
        await this.ctx.rooms.changeMembership({ roomId, sender: userId, target: userId, membership: 'leave' });
        result.kicked_users.push(userId);
        if (result.new_room_id) {
          await this.ctx.rooms.changeMembership({ roomId: result.new_room_id, sender: userId, target: userId, membership: 'join' })
            .catch((err: unknown) => this.ctx.log.warn({ err, userId }, 'could not move user to the replacement room'));
        }
      } catch (err) {
        this.ctx.log.warn({ err, roomId, userId }, 'could not remove user from deleted room');
        result.failed_to_kick_users.push(userId);
      }
    }

    const aliases = await db.selectFrom('room_aliases').select('alias').where('room_id', '=', roomId).execute();
    result.local_aliases = aliases.map((a) => a.alias);
    if (result.new_room_id) {
      await db.updateTable('room_aliases').set({ room_id: result.new_room_id }).where('room_id', '=', roomId).execute();
    } else {
      await db.deleteFrom('room_aliases').where('room_id', '=', roomId).execute();
    }
    await db.updateTable('rooms').set({ visibility: 'private' }).where('room_id', '=', roomId).execute();
    return result;
  }

  /** Remove every trace of the room from the database (and the caches that hold its rows). */
  private async purgeRoom(roomId: string): Promise<void> {
    const rooms = this.ctx.rooms;
    await rooms.roomLocks.run(roomId, async () => {
      const { eventIds, userIds } = await this.ctx.storage.db.transaction().execute(async (tx) => {
        const evs = await tx.selectFrom('events').select('event_id').where('room_id', '=', roomId).execute();
        const members = await tx.selectFrom('room_members').select('user_id').where('room_id', '=', roomId).execute();
        const groups = await tx.selectFrom('state_groups').select('id').where('room_id', '=', roomId).execute();
        for (const ids of chunks(groups.map((g) => Number(g.id)))) {
          await tx.deleteFrom('state_group_entries').where('group_id', 'in', ids).execute();
        }
        await tx.deleteFrom('state_groups').where('room_id', '=', roomId).execute();
        await tx.deleteFrom('event_relations').where('room_id', '=', roomId).execute();
        await tx.deleteFrom('event_push_actions').where('room_id', '=', roomId).execute();
        await tx.deleteFrom('receipts').where('room_id', '=', roomId).execute();
        await tx.deleteFrom('account_data').where('room_id', '=', roomId).execute();
        await tx.deleteFrom('room_members').where('room_id', '=', roomId).execute();
        await tx.deleteFrom('room_aliases').where('room_id', '=', roomId).execute();
        await tx.deleteFrom('event_reports').where('room_id', '=', roomId).execute();
        await tx.deleteFrom('server_notice_rooms').where('room_id', '=', roomId).execute();
        await tx.deleteFrom('events').where('room_id', '=', roomId).execute();
        await tx.deleteFrom('rooms').where('room_id', '=', roomId).execute();
        return { eventIds: evs.map((e) => e.event_id), userIds: members.map((m) => m.user_id) };
      });
      for (const id of eventIds) rooms.events.invalidate(id);
      for (const u of userIds) rooms.invalidateMemberships(u);
      rooms.recent.clear();
    });
  }

  /** POST /_synapse/admin/v1/purge_history/{roomId}: returns the purge_id. */
  async purgeHistory(roomId: string, opts: PurgeHistoryOptions): Promise<{ taskId: string; done: Promise<void> }> {
    const db = this.ctx.storage.db;
    const room = await this.ctx.rooms.getRoom(roomId);
    if (!room) throw notFound(`There is no room with id ${roomId}`);
    let point: { event_id: string; stream_pos: number } | undefined;
    if (opts.eventId !== undefined) {
      const row = await db.selectFrom('events').select(['event_id', 'room_id', 'stream_pos']).where('event_id', '=', opts.eventId).executeTakeFirst();
      if (!row) throw notFound(`Unknown event ${opts.eventId}`);
      if (row.room_id !== roomId) throw new MatrixError('M_UNKNOWN', 400, 'Event is for wrong room.');
      point = row;
    } else if (opts.ts !== undefined) {
      // Synapse: purge up to the last event before the time, which stays.
      point = await db.selectFrom('events').select(['event_id', 'stream_pos']).where('room_id', '=', roomId)
        .where('origin_server_ts', '<', opts.ts).orderBy('stream_pos', 'desc').limit(1).executeTakeFirst();
      if (!point) throw new MatrixError('M_UNKNOWN', 400, 'There is no event to be purged');
    } else {
      throw new MatrixError('M_UNKNOWN', 400, 'must specify purge_up_to_event_id or purge_up_to_ts');
    }
    const upTo = Number(point.stream_pos);
    return this.start('purge', roomId, 'active', async (taskId) => {
      await this.purgeBefore(roomId, upTo, opts.deleteLocalEvents);
      await this.setTask(taskId, 'complete');
    });
  }

  /**
   * Delete the room's timeline events before `upTo` (stream order) as
   * Synapse does: state events stay (room state at any later point is built
   * from them), so do the forward extremities, which new events will point
   * at; local users' events stay unless `deleteLocal`, as they may be the
   * only copies anywhere.
   */
  private async purgeBefore(roomId: string, upTo: number, deleteLocal: boolean): Promise<number> {
    const rooms = this.ctx.rooms;
    return rooms.roomLocks.run(roomId, async () => {
      const purged = await this.ctx.storage.db.transaction().execute(async (tx) => {
        const room = await tx.selectFrom('rooms').select('forward_extremities').where('room_id', '=', roomId).executeTakeFirstOrThrow();
        const keep = new Set(JSON.parse(room.forward_extremities) as string[]);
        const rows = await tx.selectFrom('events').select(['event_id', 'sender']).where('room_id', '=', roomId)
          .where('state_key', 'is', null).where('stream_pos', '<', upTo).execute();
        const ids = rows.filter((r) => !keep.has(r.event_id) && (deleteLocal || !this.isLocal(r.sender))).map((r) => r.event_id);
        for (const part of chunks(ids)) {
          await tx.deleteFrom('event_relations').where('event_id', 'in', part).execute();
          await tx.deleteFrom('event_push_actions').where('event_id', 'in', part).execute();
          await tx.deleteFrom('event_reports').where('event_id', 'in', part).execute();
          await tx.deleteFrom('events').where('event_id', 'in', part).execute();
        }
        return ids;
      });
      for (const id of purged) rooms.events.invalidate(id);
      rooms.recent.clear();
      return purged.length;
    });
  }
}

function toStatus(row: { task_id: string; kind: string; room_id: string; status: string; error: string | null; result: string | null }): TaskStatus {
  return {
    taskId: row.task_id,
    kind: row.kind === 'purge' ? 'purge' : 'delete',
    roomId: row.room_id,
    status: row.status,
    error: row.error,
    result: row.result ? (JSON.parse(row.result) as ShutdownResult) : null,
  };
}

/** The join path's check: an admin blocked this room on this server. */
export async function assertRoomNotBlocked(ctx: Context, roomId: string): Promise<void> {
  const row = await ctx.storage.db.selectFrom('blocked_rooms').select('room_id').where('room_id', '=', roomId).executeTakeFirst();
  if (row) throw forbidden('This room has been blocked on this server');
}
