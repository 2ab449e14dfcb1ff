/**
 * Send-to-device messaging (client-server spec, "Send-to-Device messaging").
 *
 * - PUT /sendToDevice/{type}/{txnId} stores one row per recipient device in
 *   `to_device_messages`, all at one stream position (a device gets at most
 *   one message per request, so (user, device, stream_pos) is unique). The
 *   transaction id is stored in the same transaction: a retransmission is
 *   answered without delivering again.
 * - /sync delivers the requesting device's messages with stream_pos in
 *   (after, to], at most TO_DEVICE_SYNC_LIMIT of them, where `after` is the
 *   since token's to-device position (its stream position unless the token
 *   has a to-device part). Syncing with a token is the acknowledgement: rows
 *   at or below `after` are deleted. When a batch is capped, next_batch
 *   carries the last delivered position as its to-device part
 *   (`s<pos>_<typing>_<toDevice>`, sync/tokens.ts) so the rest comes next
 *   time. Everything is in the database and the ack is derived from the
 *   client's token, so a restart neither loses nor repeats a message.
 * - Deleting a device deletes its pending messages and send transactions.
 */
import type { Context } from '../server/services.js';
import { userRoomKey } from '../server/stream-changes.js';
import { Lru } from '../server/lru.js';
import { badJson, tooLarge } from '../server/errors.js';
import type { Tx } from '../storage/db.js';
import { makeSyncToken, parseSyncToken } from '../sync/tokens.js';
import { DehydratedDevicesService } from './dehydrated-devices.js';
import { queueToDeviceEdus } from '../federation/edus.js';

/** Messages per /sync response (and per dehydrated-device events page). */
export const TO_DEVICE_SYNC_LIMIT = 100;
/** Recipient devices per send request, after `*` fan-out. */
export const MAX_TO_DEVICE_RECIPIENTS = 10_000;
/** Serialized size of one message's content. */
export const MAX_TO_DEVICE_CONTENT_BYTES = 64 * 1024;
const MAX_TXN_ID_LENGTH = 255;
/** How long a send's transaction id is remembered. */
const TXN_RETENTION_MS = 24 * 60 * 60 * 1000;
const MAX_TYPE_LENGTH = 255;
/** Rows per INSERT (both engines' bound-parameter limits). */
const INSERT_BATCH = 500;

export interface ToDeviceEvent {
  sender: string;
  type: string;
  content: Record<string, unknown>;
}

export interface ToDeviceBatch {
  events: ToDeviceEvent[];
  /** Stream position of the last message returned (undefined when none). */
  lastPos: number | undefined;
  /** More messages remain after `lastPos` (within the range asked for). */
  limited: boolean;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `@localpart:server`: the server part, or undefined when not a user id. */
function serverOf(userId: string): string | undefined {
  if (!userId.startsWith('@')) return undefined;
  const i = userId.indexOf(':');
  return i > 1 && i < userId.length - 1 ? userId.slice(i + 1) : undefined;
}

/** Validate a sendToDevice body: {messages: {user: {device | '*': object}}}. */
export function parseSendToDeviceBody(body: unknown): Record<string, Record<string, Record<string, unknown>>> {
  if (!isObject(body)) throw badJson('Request body must be a JSON object');
  const messages = body.messages;
  if (!isObject(messages)) throw badJson('messages: must be an object');
  for (const [userId, byDevice] of Object.entries(messages)) {
    if (!isObject(byDevice)) throw badJson(`messages.${userId.slice(0, 100)}: must be an object`);
    for (const [deviceId, content] of Object.entries(byDevice)) {
      if (!isObject(content)) throw badJson(`messages.${userId.slice(0, 100)}.${deviceId.slice(0, 100)}: must be an object`);
    }
  }
  return messages as Record<string, Record<string, Record<string, unknown>>>;
}

export class ToDeviceService {
  /** MSC3814 dehydrated devices (their messages are to-device messages too). */
  readonly dehydrated: DehydratedDevicesService;
  /**
   * Per `userRoomKey(user, device)`: a position at or below which the
   * device is known to have no rows left, so an acknowledgement that is
   * not new runs no SQL. Dropped when the change caches reset.
   */
  private ackedUpTo = new Lru<string, number>(10_000);

  constructor(private readonly ctx: Context) {
    this.dehydrated = new DehydratedDevicesService(ctx, this);
    ctx.streams.onReset(() => this.ackedUpTo.clear());
    ctx.sync.registerExtension(async ({ userId, deviceId, since, to, body, sinceToken }) => {
      // Ack position: the token's to-device part, never beyond its stream position or `to`.
      const after = since === undefined ? 0 : Math.min(sinceToken?.toDevice ?? since, since);
      if (since !== undefined) await this.acknowledge(userId, deviceId, after);
      const batch = await this.fetch(userId, deviceId, after, to, TO_DEVICE_SYNC_LIMIT);
      if (batch.events.length === 0) return false;
      body.to_device.events.push(...batch.events);
      if (batch.limited) {
        const t = parseSyncToken(body.next_batch);
        body.next_batch = makeSyncToken(t.pos, t.typing, Math.min(batch.lastPos!, t.toDevice ?? t.pos));
      }
      return true;
    });
    ctx.accounts.onDevicesDeleted(async (tx, _alloc, userId, deviceIds) => {
      await this.deleteForDevices(tx, userId, deviceIds);
    });
  }

  private get db() {
    return this.ctx.storage.db;
  }

  /** Drop pending messages, send transactions and dehydrated-device rows of deleted devices. */
  async deleteForDevices(tx: Tx, userId: string, deviceIds: string[]): Promise<void> {
    if (!deviceIds.length) return;
    await tx.deleteFrom('to_device_messages').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
    await tx.deleteFrom('to_device_txns').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
    await tx.deleteFrom('dehydrated_devices').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
    for (const d of deviceIds) this.ackedUpTo.delete(userRoomKey(userId, d));
  }

  /**
   * PUT /sendToDevice/{eventType}/{txnId}. Local recipients get rows here;
   * remote ones go to their servers as m.direct_to_device EDUs queued in the
   * same transaction. Unknown users and devices are ignored. Idempotent per
   * (sender device, txnId).
   */
  async send(sender: { userId: string; deviceId: string }, eventType: string, txnId: string, body: unknown): Promise<void> {
    if (!eventType || eventType.length > MAX_TYPE_LENGTH) throw badJson('Invalid event type');
    if (!txnId || txnId.length > MAX_TXN_ID_LENGTH) throw badJson('Invalid transaction id');
    const messages = parseSendToDeviceBody(body);

    // Serialize and size-check first.
    const local = new Map<string, Record<string, Record<string, unknown>>>();
    const remote = new Map<string, Record<string, Record<string, unknown>>>();
    const serialized = new Map<Record<string, unknown>, string>();
    let requested = 0;
    for (const [userId, byDevice] of Object.entries(messages)) {
      const server = serverOf(userId);
      if (server === undefined) {
        this.ctx.log.debug({ userId: userId.slice(0, 255) }, 'to-device: not a user id, ignored');
        continue;
      }
      for (const content of Object.values(byDevice)) {
        requested++;
        if (!serialized.has(content)) {
          const json = JSON.stringify(content);
          if (Buffer.byteLength(json) > MAX_TO_DEVICE_CONTENT_BYTES) throw tooLarge('To-device message content is too large');
          serialized.set(content, json);
        }
      }
      if (server !== this.ctx.config.server_name) {
        remote.set(userId, byDevice);
        continue;
      }
      local.set(userId, byDevice);
    }
    if (requested > MAX_TO_DEVICE_RECIPIENTS) throw tooLarge('Too many to-device recipients');

    const recipients = new Set<string>();
    await this.ctx.write(async (tx, alloc, onCommit) => {
      const seen = await tx.selectFrom('to_device_txns').select('txn_id')
        .where('user_id', '=', sender.userId).where('device_id', '=', sender.deviceId).where('txn_id', '=', txnId)
        .executeTakeFirst();
      if (seen) return;
      // Transaction ids are remembered for a day (retransmissions come within seconds).
      await tx.deleteFrom('to_device_txns').where('user_id', '=', sender.userId).where('device_id', '=', sender.deviceId)
        .where('created_ts', '<', Date.now() - TXN_RETENTION_MS).execute();
      await tx.insertInto('to_device_txns')
        .values({ user_id: sender.userId, device_id: sender.deviceId, txn_id: txnId, created_ts: Date.now() }).execute();
      if (remote.size > 0) await queueToDeviceEdus(this.ctx, { tx, onCommit }, sender.userId, eventType, remote);
      if (local.size === 0) return;

      // Existing devices of the recipients.
      const devices = new Map<string, string[]>();
      const users = [...local.keys()];
      for (let i = 0; i < users.length; i += INSERT_BATCH) {
        const rows = await tx.selectFrom('devices').select(['user_id', 'device_id'])
          .where('user_id', 'in', users.slice(i, i + INSERT_BATCH)).execute();
        for (const r of rows) {
          let l = devices.get(r.user_id);
          if (!l) devices.set(r.user_id, (l = []));
          l.push(r.device_id);
        }
      }
      // One message per device: an explicit device id wins over '*'.
      const rows: Array<{ user_id: string; device_id: string; content: string }> = [];
      for (const [userId, byDevice] of local) {
        const have = devices.get(userId);
        if (!have) continue;
        const chosen = new Map<string, Record<string, unknown>>();
        const all = byDevice['*'];
        if (all !== undefined) for (const d of have) chosen.set(d, all);
        const haveSet = new Set(have);
        for (const [d, content] of Object.entries(byDevice)) {
          if (d !== '*' && haveSet.has(d)) chosen.set(d, content);
        }
        for (const [d, content] of chosen) rows.push({ user_id: userId, device_id: d, content: serialized.get(content)! });
      }
      if (rows.length > MAX_TO_DEVICE_RECIPIENTS) throw tooLarge('Too many to-device recipients');
      if (rows.length === 0) return;
      const pos = await alloc();
      for (let i = 0; i < rows.length; i += INSERT_BATCH) {
        await tx.insertInto('to_device_messages')
          .values(rows.slice(i, i + INSERT_BATCH).map((r) => ({ ...r, stream_pos: pos, sender: sender.userId, type: eventType })))
          .execute();
      }
      for (const r of rows) recipients.add(r.user_id);
      onCommit(() => {
        for (const r of rows) this.ctx.streams.toDevice.entityChanged(userRoomKey(r.user_id, r.device_id), pos);
      });
    }, () => recipients);
  }

  /**
   * The device's messages with stream_pos in (after, upTo], oldest first,
   * at most `limit`. Uses the change cache to skip the query when nothing
   * arrived after `after`.
   */
  async fetch(userId: string, deviceId: string, after: number, upTo: number, limit: number): Promise<ToDeviceBatch> {
    const empty: ToDeviceBatch = { events: [], lastPos: undefined, limited: false };
    if (upTo <= after) return empty;
    if (!this.ctx.streams.toDevice.hasEntityChanged(userRoomKey(userId, deviceId), after)) return empty;
    const rows = await this.db.selectFrom('to_device_messages').select(['stream_pos', 'sender', 'type', 'content'])
      .where('user_id', '=', userId).where('device_id', '=', deviceId)
      .where('stream_pos', '>', after).where('stream_pos', '<=', upTo)
      .orderBy('stream_pos').limit(limit + 1).execute();
    const limited = rows.length > limit;
    const taken = limited ? rows.slice(0, limit) : rows;
    return {
      events: taken.map((r) => ({ sender: r.sender, type: r.type, content: JSON.parse(r.content) as Record<string, unknown> })),
      lastPos: taken.length ? Number(taken[taken.length - 1].stream_pos) : undefined,
      limited,
    };
  }

  /**
   * The device has received everything up to `upTo`: delete those rows.
   * Runs no SQL when an earlier acknowledgement already covered `upTo`.
   * (Positions at or below a committed `upTo` are never written later:
   * writes are serialized and allocate increasing positions.)
   */
  async acknowledge(userId: string, deviceId: string, upTo: number): Promise<void> {
    if (upTo <= 0) return;
    const key = userRoomKey(userId, deviceId);
    const known = this.ackedUpTo.get(key);
    if (known !== undefined && known >= upTo) return;
    // Nothing arrived for this device since the last acknowledgement: no rows to delete. Without
    // this every woken /sync of every device would run a DELETE.
    if (known !== undefined && !this.ctx.streams.toDevice.hasEntityChanged(key, known)) {
      this.ackedUpTo.set(key, upTo);
      return;
    }
    await this.db.deleteFrom('to_device_messages')
      .where('user_id', '=', userId).where('device_id', '=', deviceId).where('stream_pos', '<=', upTo).execute();
    this.ackedUpTo.set(key, upTo);
  }
}
