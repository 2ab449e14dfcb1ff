/**
 * Typing notifications: in memory only, per room, with expiry timers.
 *
 * Every visible change bumps one process-wide serial (the second field of a
 * sync token). A room remembers the serial of its last change so a sync can
 * tell whether to send a fresh m.typing. Rooms nobody is typing in are
 * remembered in a bounded list; when one is evicted we remember the highest
 * serial we forgot, and a sync older than that gets an (empty, harmless)
 * m.typing for rooms we no longer know about. The same happens for tokens
 * from before a restart.
 */

const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_TIMEOUT_MS = 120_000;

interface ActiveRoom {
  users: Map<string, NodeJS.Timeout>;
  serial: number;
}

export class TypingTracker {
  private _serial: number;
  private active = new Map<string, ActiveRoom>();
  /** Rooms where typing stopped: room -> serial of that change, oldest first. */
  private idle = new Map<string, number>();
  /** Tokens older than this may have missed a change we no longer remember. */
  private forgottenSerial: number;

  /**
   * The serial starts at the current time in milliseconds, so a token from
   * before a restart is (almost always) behind this process's serials: its
   * holder then gets a fresh m.typing for every room, which is right since
   * the old process's typing state is gone.
   */
  constructor(
    private readonly onChange: (roomId: string) => void,
    private readonly maxIdleRooms = 10_000,
    initialSerial = Date.now(),
  ) {
    this._serial = initialSerial;
    this.forgottenSerial = initialSerial;
  }

  get serial(): number {
    return this._serial;
  }

  /** Start (typing=true) or stop typing; returns true if the visible state changed. */
  set(roomId: string, userId: string, typing: boolean, timeoutMs = DEFAULT_TIMEOUT_MS): boolean {
    let room = this.active.get(roomId);
    if (typing) {
      const ms = Math.min(MAX_TIMEOUT_MS, Math.max(0, Number.isFinite(timeoutMs) ? timeoutMs : DEFAULT_TIMEOUT_MS));
      const timer = setTimeout(() => this.expire(roomId, userId, timer), ms);
      timer.unref?.();
      if (!room) {
        room = { users: new Map(), serial: this._serial };
        this.active.set(roomId, room);
        this.idle.delete(roomId);
      }
      const old = room.users.get(userId);
      if (old) {
        clearTimeout(old);
        room.users.set(userId, timer);
        return false; // refreshed, nothing new to tell
      }
      room.users.set(userId, timer);
      room.serial = ++this._serial;
      this.onChange(roomId);
      return true;
    }
    if (!room) return false;
    const old = room.users.get(userId);
    if (!old) return false;
    clearTimeout(old);
    this.remove(roomId, room, userId);
    return true;
  }

  private expire(roomId: string, userId: string, timer: NodeJS.Timeout): void {
    const room = this.active.get(roomId);
    if (!room || room.users.get(userId) !== timer) return;
    this.remove(roomId, room, userId);
  }

  private remove(roomId: string, room: ActiveRoom, userId: string): void {
    room.users.delete(userId);
    const serial = ++this._serial;
    if (room.users.size === 0) {
      this.active.delete(roomId);
      this.idle.delete(roomId);
      this.idle.set(roomId, serial);
      while (this.idle.size > this.maxIdleRooms) {
        const [oldest, s] = this.idle.entries().next().value as [string, number];
        this.idle.delete(oldest);
        if (s > this.forgottenSerial) this.forgottenSerial = s;
      }
    } else {
      room.serial = serial;
    }
    this.onChange(roomId);
  }

  /** User ids currently typing in the room. */
  users(roomId: string): string[] {
    const room = this.active.get(roomId);
    return room ? [...room.users.keys()] : [];
  }

  /** Whether the room's typing list changed after serial `since`. */
  changedSince(roomId: string, since: number): boolean {
    const room = this.active.get(roomId);
    if (room) return room.serial > since;
    const idle = this.idle.get(roomId);
    if (idle !== undefined) return idle > since;
    return since < this.forgottenSerial;
  }

  /** Clamp a client's serial: one from before a restart is ahead of ours and means "nothing known". */
  normalise(since: number): number {
    return since > this._serial ? 0 : since;
  }

  stop(): void {
    for (const room of this.active.values()) for (const t of room.users.values()) clearTimeout(t);
    this.active.clear();
    this.idle.clear();
  }
}
