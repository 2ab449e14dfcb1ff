import type { Generated } from 'kysely';

/**
 * Table types for Kysely. Booleans are stored as 0/1 integers so both
 * engines agree; ids that are interned (events, state keys) are integers.
 */
export interface Database {
  counters: { name: string; value: number };
  users: {
    user_id: string;
    password_hash: string | null;
    is_admin: number;
    is_guest: number;
    deactivated: number;
    created_ts: number;
    displayname: string | null;
    avatar_url: string | null;
  };
  devices: {
    user_id: string;
    device_id: string;
    display_name: string | null;
    created_ts: number;
    last_seen_ts: number | null;
    last_seen_ip: string | null;
  };
  access_tokens: {
    token_hash: string;
    user_id: string;
    device_id: string;
    created_ts: number;
  };
  uia_sessions: {
    session_id: string;
    user_id: string | null;
    completed: string; // JSON array of completed stage types
    params: string; // JSON object of per-stage data
    created_ts: number;
  };
  rooms: {
    room_id: string;
    room_version: string;
    creator: string;
    created_ts: number;
    visibility: string; // 'public' | 'private' (room directory)
    current_state_group: number | null;
    /** JSON array of the room's forward extremities. */
    forward_extremities: string;
    max_depth: number;
  };
  events: {
    nid: Generated<number>;
    event_id: string;
    room_id: string;
    type: string;
    state_key: string | null;
    sender: string;
    origin_server_ts: number;
    depth: number;
    stream_pos: number;
    json: string;
    /** State after this event. */
    state_group: number | null;
    redacted_by: string | null;
    rejected: number;
    /** Device and transaction id of a locally sent event: idempotency and unsigned.transaction_id. */
    txn_device_id: string | null;
    txn_id: string | null;
    /** The path the transaction was sent on (send/<type> or redact/<event id>). */
    txn_scope: string | null;
  };
  event_relations: {
    event_id: string;
    room_id: string;
    relates_to: string;
    rel_type: string;
  };
  state_keys: { nid: Generated<number>; type: string; state_key: string };
  state_groups: {
    id: Generated<number>;
    room_id: string;
    /** Null for a full snapshot; otherwise the entries are a delta on prev_group. */
    prev_group: number | null;
    chain_length: number;
  };
  state_group_entries: { group_id: number; key_nid: number; event_nid: number };
  room_members: {
    room_id: string;
    user_id: string;
    membership: string;
    event_id: string;
    stream_pos: number;
    forgotten: number;
  };
  room_aliases: { alias: string; room_id: string; creator: string; created_ts: number };
  account_data: {
    user_id: string;
    room_id: string; // '' for global account data
    type: string;
    content: string;
    stream_pos: number;
  };
  receipts: {
    room_id: string;
    receipt_type: string;
    user_id: string;
    thread_id: string; // '' for unthreaded
    event_id: string;
    ts: number;
    stream_pos: number;
  };
  filters: { user_id: string; filter_id: Generated<number>; json: string };
  presence: {
    user_id: string;
    state: string;
    status_msg: string | null;
    last_active_ts: number;
    stream_pos: number;
  };
  /** One row per (user, event) that notified the user (push rules said notify). */
  event_push_actions: {
    user_id: string;
    room_id: string;
    event_id: string;
    stream_pos: number;
    notify: number;
    highlight: number;
    /** JSON array: the matching rule's actions. */
    actions: string;
    ts: number;
  };
  pushers: {
    user_id: string;
    app_id: string;
    pushkey: string;
    kind: string;
    app_display_name: string;
    device_display_name: string;
    profile_tag: string | null;
    lang: string;
    /** JSON object (PusherData). */
    data: string;
    device_id: string | null;
    created_ts: number;
  };
}
