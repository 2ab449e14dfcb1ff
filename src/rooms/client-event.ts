import type { ClientEvent, Requesting, StoredEvent } from './types.js';

/**
 * Turn a stored PDU into the client format: federation-only fields
 * (auth_events, prev_events, hashes, signatures, depth, origin) are dropped,
 * `unsigned.age` is computed now, and `transaction_id` is only shown to the
 * device that sent the event (spec: unsigned.transaction_id).
 */
export function toClientEvent(ev: StoredEvent, requester?: Requesting, opts: { omitRoomId?: boolean; redactedBecause?: ClientEvent } = {}): ClientEvent {
  const p = ev.pdu;
  const out: ClientEvent = {
    event_id: p.event_id,
    type: p.type,
    sender: p.sender,
    content: p.content,
    origin_server_ts: p.origin_server_ts,
  };
  if (!opts.omitRoomId) out.room_id = p.room_id;
  if (p.state_key !== undefined) out.state_key = p.state_key;
  const redacts = p.redacts ?? (typeof p.content?.redacts === 'string' ? p.content.redacts : undefined);
  if (p.type === 'm.room.redaction' && redacts) out.redacts = redacts as string;
  const unsigned: Record<string, unknown> = { ...(p.unsigned ?? {}) };
  unsigned.age = Math.max(0, Date.now() - p.origin_server_ts);
  if (requester && ev.txnId && requester.userId === p.sender && requester.deviceId === ev.txnDeviceId) {
    unsigned.transaction_id = ev.txnId;
  }
  if (opts.redactedBecause) unsigned.redacted_because = opts.redactedBecause;
  out.unsigned = unsigned;
  return out;
}

/** Stripped state (for invites and knocks): only type, state_key, sender, content. */
export function toStrippedState(ev: StoredEvent): { type: string; state_key: string; sender: string; content: Record<string, unknown> } {
  return { type: ev.pdu.type, state_key: ev.pdu.state_key ?? '', sender: ev.pdu.sender, content: ev.pdu.content };
}
