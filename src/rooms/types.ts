import type { PDU } from '../core/events.js';

/** An event as stored locally, with what the database knows about it. */
export interface StoredEvent {
  nid: number;
  /** Full PDU with event_id and room_id set; unsigned carries prev_content/replaces_state for state events. */
  pdu: PDU & { event_id: string; room_id: string };
  streamPos: number;
  /** State group of the state after this event. */
  stateGroup: number | null;
  redactedBy: string | null;
  txnDeviceId: string | null;
  txnId: string | null;
}

/** Client-format event (the spec's ClientEvent). */
export interface ClientEvent {
  event_id: string;
  room_id?: string;
  type: string;
  state_key?: string;
  sender: string;
  content: Record<string, unknown>;
  origin_server_ts: number;
  redacts?: string;
  unsigned?: Record<string, unknown>;
}

export interface Requesting {
  userId: string;
  deviceId?: string;
}
