import type { Context } from '../server/services.js';
import { forbidden, invalidParam, notFound } from '../server/errors.js';
import { roomIdOf } from '../rooms/timeline.js';
import { userRoomKey } from '../server/stream-changes.js';
import { serverNameOf } from '../core/identifiers.js';
import { sendReceiptEdu } from '../federation/edus.js';

/**
 * Read receipts (m.read, m.read.private, threaded or not) and the fully
 * read marker. Receipts are rows with a stream position; the fully read
 * marker is room account data (m.fully_read), owned by accounts.
 */

export const RECEIPT_TYPES = ['m.read', 'm.read.private'] as const;
export type ReceiptType = (typeof RECEIPT_TYPES)[number];

/** The content of an m.receipt event: event_id -> receipt type -> user -> {ts, thread_id?}. */
export type ReceiptContent = Record<string, Record<string, Record<string, { ts: number; thread_id?: string }>>>;

export interface ReceiptRow {
  room_id: string;
  receipt_type: string;
  user_id: string;
  thread_id: string;
  event_id: string;
  ts: number;
}

/** Batch rows into one m.receipt content per room. */
export function buildReceiptContents(rows: ReceiptRow[]): Map<string, ReceiptContent> {
  const out = new Map<string, ReceiptContent>();
  for (const r of rows) {
    let content = out.get(r.room_id);
    if (!content) out.set(r.room_id, (content = {}));
    const byType = (content[r.event_id] ??= {});
    const byUser = (byType[r.receipt_type] ??= {});
    const entry: { ts: number; thread_id?: string } = { ts: Number(r.ts) };
    if (r.thread_id) entry.thread_id = r.thread_id;
    byUser[r.user_id] = entry;
  }
  return out;
}

const IN_CHUNK = 500;

function chunks<T>(xs: T[], n = IN_CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

export class ReceiptService {
  constructor(private readonly ctx: Context) {}

  private async requireJoined(userId: string, roomId: string): Promise<void> {
    const m = await this.ctx.rooms.membership(roomId, userId);
    if (m !== 'join') throw forbidden('You are not joined to this room');
  }

  private async requireEventInRoom(roomId: string, eventId: string) {
    const ev = await this.ctx.rooms.events.get(eventId);
    if (!ev || roomIdOf(ev) !== roomId) throw notFound('Event not found in this room');
    return ev;
  }

  /** POST /rooms/{roomId}/receipt/{receiptType}/{eventId}. */
  async send(userId: string, roomId: string, receiptType: string, eventId: string, threadId?: unknown): Promise<void> {
    if (receiptType !== 'm.read' && receiptType !== 'm.read.private' && receiptType !== 'm.fully_read') {
      throw invalidParam(`Receipt type must be m.read, m.read.private or m.fully_read, not ${receiptType.slice(0, 100)}`);
    }
    if (threadId !== undefined) {
      if (typeof threadId !== 'string' || threadId === '') throw invalidParam('thread_id field must be a non-empty string');
      if (receiptType === 'm.fully_read') throw invalidParam('thread_id is not allowed for m.fully_read');
      if (threadId !== 'main' && !threadId.startsWith('$')) throw invalidParam('thread_id must be "main" or an event id');
    }
    await this.requireJoined(userId, roomId);
    await this.requireEventInRoom(roomId, eventId);
    if (receiptType === 'm.fully_read') {
      await this.setFullyRead(userId, roomId, eventId);
      return;
    }
    await this.store(userId, roomId, receiptType, eventId, (threadId as string | undefined) ?? '');
  }

  /** POST /rooms/{roomId}/read_markers. */
  async setReadMarkers(userId: string, roomId: string, markers: { fullyRead?: string; read?: string; readPrivate?: string }): Promise<void> {
    await this.requireJoined(userId, roomId);
    // Check every event first so a bad request changes nothing.
    for (const id of [markers.fullyRead, markers.read, markers.readPrivate]) if (id !== undefined) await this.requireEventInRoom(roomId, id);
    if (markers.fullyRead !== undefined) await this.setFullyRead(userId, roomId, markers.fullyRead);
    if (markers.read !== undefined) await this.store(userId, roomId, 'm.read', markers.read, '');
    if (markers.readPrivate !== undefined) await this.store(userId, roomId, 'm.read.private', markers.readPrivate, '');
  }

  private async setFullyRead(userId: string, roomId: string, eventId: string): Promise<void> {
    await this.ctx.accounts.setAccountData(userId, roomId, 'm.fully_read', { event_id: eventId });
  }

  /** A public read receipt from another server (the caller checked the user is theirs and joined). */
  async receiveRemote(userId: string, roomId: string, eventId: string, threadId: string, ts: number): Promise<void> {
    const ev = await this.ctx.rooms.events.get(eventId);
    if (!ev || roomIdOf(ev) !== roomId) return; // an event we do not have: nothing to show the receipt on
    await this.store(userId, roomId, 'm.read', eventId, threadId, ts);
  }

  /**
   * Persist a receipt with a new stream position. A receipt never moves
   * backwards: one for an event older than the current one is ignored.
   * A local user's public receipt also goes to the room's other servers.
   */
  private async store(userId: string, roomId: string, receiptType: ReceiptType, eventId: string, threadId: string, remoteTs?: number): Promise<void> {
    const ev = await this.requireEventInRoom(roomId, eventId);
    const ts = remoteTs ?? Date.now();
    const changed = await this.ctx.write(
      async (tx, alloc, onCommit) => {
        const existing = await tx
          .selectFrom('receipts as r')
          .innerJoin('events as e', 'e.event_id', 'r.event_id')
          .select('e.stream_pos')
          .where('r.room_id', '=', roomId)
          .where('r.receipt_type', '=', receiptType)
          .where('r.user_id', '=', userId)
          .where('r.thread_id', '=', threadId)
          .executeTakeFirst();
        if (existing && Number(existing.stream_pos) >= ev.streamPos) return false;
        const pos = await alloc();
        await tx
          .insertInto('receipts')
          .values({ room_id: roomId, receipt_type: receiptType, user_id: userId, thread_id: threadId, event_id: eventId, ts, stream_pos: pos })
          .onConflict((oc) => oc.columns(['room_id', 'receipt_type', 'user_id', 'thread_id']).doUpdateSet({ event_id: eventId, ts, stream_pos: pos }))
          .execute();
        onCommit(() => {
          this.ctx.streams.receipts.entityChanged(roomId, pos);
          this.ctx.streams.userReceipts.entityChanged(userRoomKey(userId, roomId), pos);
        });
        return true;
      },
      // Private receipts only matter to their owner.
      (changed) => (changed ? [receiptType === 'm.read.private' ? userId : roomId] : []),
    );
    if (changed && receiptType === 'm.read' && serverNameOf(userId) === this.ctx.config.server_name) {
      await sendReceiptEdu(this.ctx, { roomId, userId, eventId, threadId, ts }).catch((err: unknown) => this.ctx.log.warn({ err, roomId }, 'could not queue m.receipt'));
    }
  }

  /**
   * m.receipt content per room for `userId`: all receipts when `since` is
   * undefined, else those that changed in (since, to]. Private receipts of
   * other users are never included.
   */
  async forRooms(userId: string, roomIds: string[], since: number | undefined, to: number): Promise<Map<string, ReceiptContent>> {
    const rows: ReceiptRow[] = [];
    for (const part of chunks(roomIds)) {
      let q = this.ctx.storage.db
        .selectFrom('receipts')
        .select(['room_id', 'receipt_type', 'user_id', 'thread_id', 'event_id', 'ts'])
        .where('room_id', 'in', part)
        .where('stream_pos', '<=', to)
        .where((eb) => eb.or([eb('receipt_type', '=', 'm.read'), eb.and([eb('receipt_type', '=', 'm.read.private'), eb('user_id', '=', userId)])]));
      if (since !== undefined) q = q.where('stream_pos', '>', since);
      rows.push(...(await q.orderBy('stream_pos').execute()));
    }
    return buildReceiptContents(rows);
  }

  /** Stream position of the newest event the user has read (m.read or m.read.private, unthreaded or main) per room. */
  async readUpTo(userId: string, roomIds: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const part of chunks(roomIds)) {
      const rows = await this.ctx.storage.db
        .selectFrom('receipts as r')
        .innerJoin('events as e', 'e.event_id', 'r.event_id')
        .select(['r.room_id', (eb) => eb.fn.max('e.stream_pos').as('pos')])
        .where('r.user_id', '=', userId)
        .where('r.room_id', 'in', part)
        .where('r.receipt_type', 'in', [...RECEIPT_TYPES])
        .where('r.thread_id', 'in', ['', 'main'])
        .groupBy('r.room_id')
        .execute();
      for (const r of rows) out.set(r.room_id, Number(r.pos));
    }
    return out;
  }
}
