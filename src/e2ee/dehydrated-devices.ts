/**
 * MSC3814 dehydrated devices (the unstable `org.matrix.msc3814.v1`
 * endpoints as Element uses them). A user has at most one; it is a row in
 * `devices` (so others find it and send it to-device messages, `*`
 * included) plus a row in `dehydrated_devices` with its opaque
 * `device_data`. Its to-device messages are read through
 * POST .../dehydrated_device/{device_id}/events, paginated by `next_batch`
 * (a stream position; the messages at or below it are deleted).
 *
 * Keys uploaded with the device (device_keys, one_time_keys,
 * fallback_keys) are handed to the keys service as the device's own upload
 * (bad keys: the device is removed again and the error returned), and kept
 * with the row as JSON for reference.
 */
import type { Context } from '../server/services.js';
import { MatrixError, badJson, forbidden, invalidParam, notFound } from '../server/errors.js';
import type { ToDeviceEvent, ToDeviceService } from './to-device.js';
import { TO_DEVICE_SYNC_LIMIT } from './to-device.js';
import { recordDeviceListChange } from './device-lists.js';
import { isUniqueViolation } from '../storage/errors.js';

const MAX_DEVICE_ID_LENGTH = 255;
const MAX_DISPLAY_NAME_LENGTH = 256;
const MAX_DEVICE_DATA_BYTES = 1024 * 1024;

export interface PutDehydratedDevice {
  device_id: string;
  device_data: Record<string, unknown>;
  initial_device_display_name?: string;
  keys?: { device_keys?: unknown; one_time_keys?: unknown; fallback_keys?: unknown };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parsePutDehydratedDevice(body: unknown): PutDehydratedDevice {
  if (!isObject(body)) throw badJson('Request body must be a JSON object');
  const { device_id, device_data, initial_device_display_name } = body;
  if (typeof device_id !== 'string' || !device_id || device_id.length > MAX_DEVICE_ID_LENGTH) {
    throw badJson('device_id: must be a non-empty string');
  }
  if (!isObject(device_data)) throw badJson('device_data: must be an object');
  if (initial_device_display_name !== undefined
    && (typeof initial_device_display_name !== 'string' || initial_device_display_name.length > MAX_DISPLAY_NAME_LENGTH)) {
    throw badJson('initial_device_display_name: must be a string');
  }
  const out: PutDehydratedDevice = { device_id, device_data };
  if (initial_device_display_name !== undefined) out.initial_device_display_name = initial_device_display_name;
  const keys: NonNullable<PutDehydratedDevice['keys']> = {};
  for (const k of ['device_keys', 'one_time_keys', 'fallback_keys'] as const) {
    if (body[k] === undefined) continue;
    if (!isObject(body[k])) throw badJson(`${k}: must be an object`);
    keys[k] = body[k];
  }
  if (Object.keys(keys).length) out.keys = keys;
  return out;
}

export class DehydratedDevicesService {
  constructor(private readonly ctx: Context, private readonly toDevice: ToDeviceService) {}

  private get db() {
    return this.ctx.storage.db;
  }

  /** GET: the user's dehydrated device, or 404 M_NOT_FOUND. */
  async get(userId: string): Promise<{ device_id: string; device_data: Record<string, unknown> }> {
    const row = await this.db.selectFrom('dehydrated_devices').select(['device_id', 'device_data'])
      .where('user_id', '=', userId).executeTakeFirst();
    if (!row) throw notFound('No dehydrated device available');
    return { device_id: row.device_id, device_data: JSON.parse(row.device_data) as Record<string, unknown> };
  }

  /**
   * PUT: create the user's dehydrated device, replacing (deleting) the
   * previous one with its pending messages. Refuses a device id that is
   * one of the user's ordinary devices.
   */
  async put(userId: string, body: unknown): Promise<{ device_id: string }> {
    const req = parsePutDehydratedDevice(body);
    const data = JSON.stringify(req.device_data);
    if (Buffer.byteLength(data) > MAX_DEVICE_DATA_BYTES) throw new MatrixError('M_TOO_LARGE', 413, 'device_data is too large');
    const old = await this.db.selectFrom('dehydrated_devices').select('device_id').where('user_id', '=', userId).executeTakeFirst();
    const clash = await this.db.selectFrom('devices').select('device_id')
      .where('user_id', '=', userId).where('device_id', '=', req.device_id).executeTakeFirst();
    if (clash && clash.device_id !== old?.device_id) throw invalidParam('device_id is already in use by another device');
    // Replace: the old device goes with everything attached to it (device hooks run).
    if (old) await this.ctx.accounts.deleteDevices(userId, [old.device_id]);
    const now = Date.now();
    await this.ctx.write(async (tx, alloc, onCommit) => {
      await tx.insertInto('devices').values({
        user_id: userId, device_id: req.device_id, display_name: req.initial_device_display_name ?? null,
        created_ts: now, last_seen_ts: null, last_seen_ip: null,
      }).execute();
      await tx.insertInto('dehydrated_devices').values({
        user_id: userId, device_id: req.device_id, device_data: data,
        keys: req.keys ? JSON.stringify(req.keys) : null, created_ts: now,
      }).execute();
      // A new device: the user's device list changed (others' clients re-query keys).
      return recordDeviceListChange(this.ctx, tx, alloc, onCommit, userId);
    }, (wake) => wake).catch((err: unknown) => {
      if (isUniqueViolation(err)) {
        throw new MatrixError('M_UNKNOWN', 409, 'Concurrent dehydrated device update; try again');
      }
      throw err;
    });
    if (req.keys) {
      // The device's keys go to the keys service as if the device had uploaded them.
      try {
        await this.ctx.keys.upload({ userId, deviceId: req.device_id, isAdmin: false, isGuest: false, tokenHash: '' }, req.keys);
      } catch (err) {
        await this.ctx.accounts.deleteDevices(userId, [req.device_id]);
        throw err;
      }
    }
    return { device_id: req.device_id };
  }

  /** DELETE: remove the dehydrated device (and its messages); 404 when there is none. */
  async delete(userId: string): Promise<{ device_id: string }> {
    const row = await this.db.selectFrom('dehydrated_devices').select('device_id').where('user_id', '=', userId).executeTakeFirst();
    if (!row) throw notFound('No dehydrated device available');
    await this.ctx.accounts.deleteDevices(userId, [row.device_id]);
    return { device_id: row.device_id };
  }

  /**
   * POST .../dehydrated_device/{device_id}/events: the device's to-device
   * messages after `next_batch`, at most TO_DEVICE_SYNC_LIMIT; the ones at
   * or below `next_batch` are deleted (the client has them). The returned
   * `next_batch` is the last returned message's position (the given one, or
   * "0", when there are none).
   */
  async events(userId: string, deviceId: string, body: unknown): Promise<{ events: ToDeviceEvent[]; next_batch: string }> {
    if (body !== undefined && body !== null && !isObject(body)) throw badJson('Request body must be a JSON object');
    const nb = isObject(body) ? body.next_batch : undefined;
    if (nb !== undefined && nb !== null && (typeof nb !== 'string' || !/^\d{1,16}$/.test(nb))) {
      throw invalidParam('Invalid next_batch');
    }
    const row = await this.db.selectFrom('dehydrated_devices').select('device_id').where('user_id', '=', userId).executeTakeFirst();
    if (!row) throw notFound('No dehydrated device available');
    if (row.device_id !== deviceId) throw forbidden('That is not your dehydrated device');
    const to = this.ctx.notifier.position;
    const after = Math.min(typeof nb === 'string' ? Number(nb) : 0, to);
    await this.toDevice.acknowledge(userId, deviceId, after);
    const batch = await this.toDevice.fetch(userId, deviceId, after, to, TO_DEVICE_SYNC_LIMIT);
    return { events: batch.events, next_batch: String(batch.lastPos ?? after) };
  }
}
