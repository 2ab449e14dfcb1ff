/**
 * Ephemeral data units between servers (server-server spec: "Typing
 * Notifications", "Receipts", "Presence", "Device Management",
 * "End-to-End Encryption", "Send-to-device messaging").
 *
 * Outbound: small senders the client-facing services call when a local
 * user types, reads, changes presence, changes devices or cross-signing
 * keys, or sends a to-device message to a remote user. They go to every
 * other server that shares a room (or, for to-device, to the recipients'
 * servers) through the durable queue.
 *
 * Inbound: one handler per EDU type. Every EDU is about a user, and only
 * that user's own server may speak for them: an EDU naming a user of
 * another server than the transaction's origin is dropped.
 */
import { randomBytes } from 'node:crypto';
import { serverNameOf } from '../core/identifiers.js';
import type { Context } from '../server/services.js';
import type { Tx } from '../storage/db.js';
import { recordDeviceListChange } from '../e2ee/device-lists.js';
import { isPresenceState } from '../sync/presence.js';
import type { EnqueueIn } from './queue.js';
import type { Edu } from './inbound.js';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);
const IN_CHUNK = 500;
/** Entries of one m.presence push handled per EDU (the rest is dropped). */
const MAX_PRESENCE_PUSH = 100;
/**
 * Remote typing lasts this long unless refreshed or stopped. m.typing carries
 * no timeout; the sender refreshes while the user types (Synapse uses 60 s too).
 */
const REMOTE_TYPING_TIMEOUT_MS = 60_000;

type Reader = Pick<Tx, 'selectFrom'>;

/** Other servers with a joined member in any of `roomIds` (through `db`, which may be a transaction). */
export async function serversSharingRooms(ctx: Context, db: Reader, roomIds: string[]): Promise<string[]> {
  const out = new Set<string>();
  for (let i = 0; i < roomIds.length; i += IN_CHUNK) {
    const rows = await db.selectFrom('room_members').select('user_id').distinct()
      .where('room_id', 'in', roomIds.slice(i, i + IN_CHUNK)).where('membership', '=', 'join').execute();
    for (const r of rows) {
      const s = serverNameOf(r.user_id);
      if (s && s !== ctx.config.server_name) out.add(s);
    }
  }
  return [...out];
}

/** Other servers sharing a room with `userId`. */
async function serversSharingWithUser(ctx: Context, db: Reader, userId: string): Promise<string[]> {
  const rooms = await db.selectFrom('room_members').select('room_id').where('user_id', '=', userId).where('membership', '=', 'join').execute();
  return serversSharingRooms(ctx, db, rooms.map((r) => r.room_id));
}

const isLocalUser = (ctx: Context, userId: string) => serverNameOf(userId) === ctx.config.server_name;

// ---------------------------------------------------------------- outbound

/** A local user started or stopped typing (m.typing to the room's other servers). */
export async function sendTypingEdu(ctx: Context, roomId: string, userId: string, typing: boolean): Promise<void> {
  const servers = await serversSharingRooms(ctx, ctx.storage.db, [roomId]);
  if (!servers.length) return;
  await ctx.federation.sender.enqueueEdu(servers, { edu_type: 'm.typing', content: { room_id: roomId, user_id: userId, typing } });
}

/** A local user's public read receipt (m.receipt). */
export async function sendReceiptEdu(ctx: Context, r: { roomId: string; userId: string; eventId: string; threadId: string; ts: number }): Promise<void> {
  const servers = await serversSharingRooms(ctx, ctx.storage.db, [r.roomId]);
  if (!servers.length) return;
  const data: Json = { ts: r.ts };
  if (r.threadId) data.thread_id = r.threadId;
  await ctx.federation.sender.enqueueEdu(servers, {
    edu_type: 'm.receipt',
    content: { [r.roomId]: { 'm.read': { [r.userId]: { event_ids: [r.eventId], data } } } },
  });
}

/** A local user's presence changed (m.presence to servers sharing a room with them). */
export async function sendPresenceEdu(
  ctx: Context,
  userId: string,
  p: { state: string; statusMsg: string | null; lastActiveTs: number },
  roomIds: string[],
): Promise<void> {
  if (!ctx.config.presence_enabled || !isLocalUser(ctx, userId) || !roomIds.length) return;
  const servers = await serversSharingRooms(ctx, ctx.storage.db, roomIds);
  if (!servers.length) return;
  const now = Date.now();
  const entry: Json = {
    user_id: userId,
    presence: p.state,
    last_active_ago: p.lastActiveTs > 0 ? Math.max(0, now - p.lastActiveTs) : 0,
    currently_active: p.state === 'online',
  };
  if (p.statusMsg != null) entry.status_msg = p.statusMsg;
  await ctx.federation.sender.enqueueEdu(servers, { edu_type: 'm.presence', content: { push: [entry] } });
}

/**
 * Tell servers sharing a room with a local user that their devices or
 * cross-signing keys changed, in the write that records the change (so the
 * EDU commits with it). With `deviceIds`, one m.device_list_update per
 * device (with its keys, or `deleted`); without, the change is to
 * cross-signing keys or signatures: m.signing_key_update with the current
 * keys. `prev_id` is left empty: the receiver (Synapse too) then refetches
 * the whole list with GET /user/devices, which is always right.
 */
export async function queueDeviceListEdus(
  ctx: Context,
  within: EnqueueIn,
  userId: string,
  streamId: number,
  deviceIds?: string[],
): Promise<void> {
  if (!isLocalUser(ctx, userId) || !ctx.federation.policy.enabled) return;
  const { tx } = within;
  const servers = await serversSharingWithUser(ctx, tx, userId);
  if (!servers.length) return;
  if (deviceIds) {
    for (const deviceId of deviceIds) {
      const row = await tx.selectFrom('devices as d').leftJoin('e2e_device_keys as k', (j) => j.onRef('k.user_id', '=', 'd.user_id').onRef('k.device_id', '=', 'd.device_id'))
        .select(['d.display_name', 'k.key_json']).where('d.user_id', '=', userId).where('d.device_id', '=', deviceId).executeTakeFirst();
      const content: Json = { user_id: userId, device_id: deviceId, stream_id: streamId, prev_id: [] };
      if (!row) content.deleted = true;
      else {
        if (row.display_name != null) content.device_display_name = row.display_name;
        if (row.key_json) content.keys = JSON.parse(row.key_json) as Json;
      }
      await ctx.federation.sender.enqueueEdu(servers, { edu_type: 'm.device_list_update', content }, within);
    }
    return;
  }
  const rows = await tx.selectFrom('e2e_cross_signing_keys').select(['key_type', 'key_json']).where('user_id', '=', userId).execute();
  const content: Json = { user_id: userId };
  for (const r of rows) {
    if (r.key_type === 'master') content.master_key = JSON.parse(r.key_json) as Json;
    if (r.key_type === 'self_signing') content.self_signing_key = JSON.parse(r.key_json) as Json;
  }
  await ctx.federation.sender.enqueueEdu(servers, { edu_type: 'm.signing_key_update', content }, within);
}

/**
 * To-device messages for remote users: one m.direct_to_device per
 * destination server, queued in the sender's write (so a retransmitted
 * request, answered from its stored transaction id, sends nothing twice).
 */
export async function queueToDeviceEdus(
  ctx: Context,
  within: EnqueueIn,
  sender: string,
  type: string,
  remote: Map<string, Record<string, Record<string, unknown>>>,
): Promise<void> {
  const byServer = new Map<string, Record<string, Record<string, Record<string, unknown>>>>();
  for (const [userId, byDevice] of remote) {
    const server = serverNameOf(userId);
    if (!server || server === ctx.config.server_name) continue;
    let messages = byServer.get(server);
    if (!messages) byServer.set(server, (messages = {}));
    messages[userId] = byDevice;
  }
  for (const [server, messages] of byServer) {
    const message_id = randomBytes(12).toString('hex');
    await ctx.federation.sender.enqueueEdu([server], { edu_type: 'm.direct_to_device', content: { sender, type, message_id, messages } }, within);
  }
}

// ---------------------------------------------------------------- inbound

/** The user id of an EDU if it is a user of `origin`, else undefined (the EDU is then dropped). */
function userOfOrigin(origin: string, userId: unknown): string | undefined {
  return typeof userId === 'string' && serverNameOf(userId) === origin ? userId : undefined;
}

async function isJoined(ctx: Context, roomId: string, userId: string): Promise<boolean> {
  return (await ctx.rooms.membership(roomId, userId)) === 'join';
}

async function onTyping(ctx: Context, origin: string, edu: Edu): Promise<void> {
  const { room_id: roomId, typing } = edu.content;
  const userId = userOfOrigin(origin, edu.content.user_id);
  if (!userId || typeof roomId !== 'string' || typeof typing !== 'boolean') return;
  if (!(await isJoined(ctx, roomId, userId))) return;
  ctx.ephemeral.typing.set(roomId, userId, typing, REMOTE_TYPING_TIMEOUT_MS);
}

async function onReceipt(ctx: Context, origin: string, edu: Edu): Promise<void> {
  for (const [roomId, byType] of Object.entries(edu.content)) {
    if (!isObject(byType) || !isObject(byType['m.read'])) continue;
    for (const [rawUser, receipt] of Object.entries(byType['m.read'])) {
      const userId = userOfOrigin(origin, rawUser);
      if (!userId || !isObject(receipt) || !Array.isArray(receipt.event_ids)) continue;
      if (!(await isJoined(ctx, roomId, userId))) continue;
      const data = isObject(receipt.data) ? receipt.data : {};
      const threadId = typeof data.thread_id === 'string' ? data.thread_id : '';
      const ts = typeof data.ts === 'number' && Number.isFinite(data.ts) ? data.ts : Date.now();
      // Receipts name one event in practice; the last is the newest when there are several.
      const eventId = receipt.event_ids.filter((e): e is string => typeof e === 'string').pop();
      if (eventId) await ctx.ephemeral.receipts.receiveRemote(userId, roomId, eventId, threadId, ts);
    }
  }
}

async function onPresence(ctx: Context, origin: string, edu: Edu): Promise<void> {
  if (!ctx.config.presence_enabled || !Array.isArray(edu.content.push)) return;
  for (const p of edu.content.push.slice(0, MAX_PRESENCE_PUSH)) {
    if (!isObject(p)) continue;
    const userId = userOfOrigin(origin, p.user_id);
    if (!userId || !isPresenceState(p.presence)) continue;
    const statusMsg = typeof p.status_msg === 'string' ? p.status_msg : null;
    await ctx.ephemeral.presence.set(userId, p.presence, { statusMsg, active: p.currently_active === true });
  }
}

/**
 * A remote user's devices or cross-signing keys changed: forget what we
 * cached and record a device-list change, so local users sharing a room see
 * them in /sync `device_lists.changed` and query again (which refetches).
 */
async function onDeviceListChange(ctx: Context, origin: string, edu: Edu): Promise<void> {
  const userId = userOfOrigin(origin, edu.content.user_id);
  if (!userId) return;
  ctx.keys.remote.invalidate(userId);
  const shared = await ctx.storage.db.selectFrom('room_members').select('room_id')
    .where('user_id', '=', userId).where('membership', '=', 'join').limit(1).executeTakeFirst();
  if (!shared) return; // nobody here tracks them
  await ctx.write((tx, alloc, onCommit) => recordDeviceListChange(ctx, tx, alloc, onCommit, userId), (wake) => wake);
}

async function onDirectToDevice(ctx: Context, origin: string, edu: Edu): Promise<void> {
  const { type, message_id: messageId, messages } = edu.content;
  const sender = userOfOrigin(origin, edu.content.sender);
  if (!sender || typeof type !== 'string' || typeof messageId !== 'string' || !isObject(messages)) return;
  // Only our own users: the remote server has no business routing messages elsewhere through us.
  const local: Json = {};
  for (const [userId, byDevice] of Object.entries(messages)) if (isLocalUser(ctx, userId)) local[userId] = byDevice;
  if (!Object.keys(local).length) return;
  // The send path stores the message id as a transaction id of a per-origin pseudo-device, deduplicating retransmissions durably.
  await ctx.toDevice.send({ userId: sender, deviceId: `federation:${origin}` }, type, messageId, { messages: local });
}

/** Register the inbound handler of every EDU type above (once, after the context is built). */
export function registerEduHandlers(ctx: Context): void {
  const inbound = ctx.federation.inbound;
  inbound.onEdu('m.typing', (origin, edu) => onTyping(ctx, origin, edu));
  inbound.onEdu('m.receipt', (origin, edu) => onReceipt(ctx, origin, edu));
  inbound.onEdu('m.presence', (origin, edu) => onPresence(ctx, origin, edu));
  inbound.onEdu('m.device_list_update', (origin, edu) => onDeviceListChange(ctx, origin, edu));
  inbound.onEdu('m.signing_key_update', (origin, edu) => onDeviceListChange(ctx, origin, edu));
  inbound.onEdu('m.direct_to_device', (origin, edu) => onDirectToDevice(ctx, origin, edu));
}
