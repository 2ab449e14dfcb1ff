import { invalidParam } from '../server/errors.js';

/**
 * Stream tokens.
 *
 * - Sync tokens (`next_batch`, `/events` `end`): `s<streamPos>_<typingSerial>`,
 *   plus `_<toDevicePos>` when a capped to-device batch is behind streamPos.
 *   The global stream position covers every persisted syncable row; typing
 *   is in memory and has its own serial, which restarts at 0 with the
 *   process (a token from before a restart is detected by its serial being
 *   ahead of the server's, and read as 0).
 * - Room tokens (`prev_batch`, `/messages` `from`/`to`): `t<streamPos>`.
 *   Paginating backwards from `t<n>` returns events with stream_pos <= n.
 *   Wherever a room token is accepted, a sync token is accepted too (its
 *   stream position is used).
 */

export interface SyncToken {
  pos: number;
  typing: number;
  /**
   * To-device position, when behind `pos`: a capped to-device batch left
   * messages after it to deliver next time (e2ee/to-device.ts). Absent
   * means `pos`.
   */
  toDevice?: number;
}

const MAX = Number.MAX_SAFE_INTEGER;

function toInt(s: string): number | undefined {
  if (!/^\d{1,16}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX ? n : undefined;
}

export function makeSyncToken(pos: number, typing: number, toDevice?: number): string {
  return toDevice === undefined || toDevice >= pos ? `s${pos}_${typing}` : `s${pos}_${typing}_${toDevice}`;
}

/**
 * Parse a sync token; throws M_INVALID_PARAM when malformed. Extra `_n`
 * fields (from a later token format) are ignored.
 */
export function parseSyncToken(token: string): SyncToken {
  const m = /^s(\d+)(?:_(\d+))?(?:_(\d+))?((?:_\d+)*)$/.exec(token);
  const pos = m ? toInt(m[1]) : undefined;
  const typing = m ? (m[2] === undefined ? 0 : toInt(m[2])) : undefined;
  const toDevice = m && m[3] !== undefined ? toInt(m[3]) : undefined;
  if (pos === undefined || typing === undefined || (m![3] !== undefined && toDevice === undefined)) {
    throw invalidParam(`Invalid sync token: ${token.slice(0, 100)}`);
  }
  return toDevice === undefined || toDevice >= pos ? { pos, typing } : { pos, typing, toDevice };
}

export function makeRoomToken(pos: number): string {
  return `t${Math.max(0, pos)}`;
}

/** Parse a room pagination token (`t<n>`, or a sync token) to its stream position; throws M_INVALID_PARAM. */
export function parseRoomToken(token: string): number {
  const t = /^t(\d+)$/.exec(token);
  if (t) {
    const n = toInt(t[1]);
    if (n !== undefined) return n;
    throw invalidParam(`Invalid pagination token: ${token.slice(0, 100)}`);
  }
  if (token.startsWith('s')) {
    try {
      return parseSyncToken(token).pos;
    } catch {
      // fall through to the generic error
    }
  }
  throw invalidParam(`Invalid pagination token: ${token.slice(0, 100)}`);
}
