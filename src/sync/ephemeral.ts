import type { Context } from '../server/services.js';
import { forbidden } from '../server/errors.js';
import { TypingTracker } from './typing.js';
import { ReceiptService } from './receipts.js';
import { PresenceService } from './presence.js';
import { sendTypingEdu } from '../federation/edus.js';

/**
 * Typing notifications, read receipts / markers and presence: the data
 * /sync shows beside the timeline.
 */
export class EphemeralService {
  readonly typing: TypingTracker;
  readonly receipts: ReceiptService;
  readonly presence: PresenceService;

  constructor(private readonly ctx: Context) {
    // Typing has no stream position: wake the room's waiters at the current head.
    this.typing = new TypingTracker((roomId) => ctx.notifier.notify(ctx.notifier.position, [roomId]));
    this.receipts = new ReceiptService(ctx);
    this.presence = new PresenceService(ctx);
  }

  /** PUT /rooms/{roomId}/typing/{userId} (the route checks the user is the requester). */
  async setTyping(userId: string, roomId: string, typing: boolean, timeoutMs?: number): Promise<void> {
    const m = await this.ctx.rooms.membership(roomId, userId);
    if (m !== 'join') throw forbidden('You are not joined to this room');
    this.typing.set(roomId, userId, typing, timeoutMs);
    // Every call, refreshes included: other servers time typing out on their own.
    sendTypingEdu(this.ctx, roomId, userId, typing).catch((err: unknown) => this.ctx.log.warn({ err, roomId }, 'could not queue m.typing'));
  }

  /** Stop showing a user as typing (e.g. when they leave a room). */
  clearTyping(userId: string, roomId: string): void {
    this.typing.set(roomId, userId, false);
  }

  stop(): void {
    this.typing.stop();
    this.presence.stop();
  }
}
