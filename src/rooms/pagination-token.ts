/**
 * Room pagination tokens (/messages, /context, /members?at=).
 *
 * A token names a point in a room's timeline: `t<pos>` is "just after the
 * event at stream position <pos>". Paginating backwards from `t<P>` returns
 * events with stream_pos <= P (newest first); forwards returns stream_pos > P
 * (oldest first). Sync tokens (`s<pos>_<typing>...`, handed out as
 * prev_batch/next_batch) are accepted too: only their stream position counts.
 */

const ROOM_TOKEN_RE = /^t(\d{1,16})$/;
const SYNC_TOKEN_RE = /^s(\d{1,16})(?:_.*)?$/;

/** The stream position a room or sync token stands for, or null if it is not one. */
export function parseRoomToken(token: string): number | null {
  if (typeof token !== 'string') return null;
  const m = ROOM_TOKEN_RE.exec(token) ?? SYNC_TOKEN_RE.exec(token);
  if (!m) return null;
  const pos = Number(m[1]);
  return Number.isSafeInteger(pos) ? pos : null;
}

export function makeRoomToken(pos: number): string {
  return `t${Math.max(0, Math.trunc(pos))}`;
}
