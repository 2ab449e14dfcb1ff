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
    /** Migration 013 (admin API): flags and Synapse's user_type. */
    shadow_banned: Generated<number>;
    erased: Generated<number>;
    locked: Generated<number>;
    /** Migration 016: account suspension (src/accounts/suspension.ts). */
    suspended: Generated<number>;
    user_type: string | null;
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
  /** Server-side key backup versions (per user; deleted ones are kept, marked). */
  e2e_room_keys_versions: {
    user_id: string;
    version: number;
    algorithm: string;
    /** JSON object. */
    auth_data: string;
    /** Bumped whenever the version's stored keys change. */
    etag: number;
    deleted: number;
    created_ts: number;
  };
  /** Backed-up megolm session keys. */
  e2e_room_keys: {
    user_id: string;
    version: number;
    room_id: string;
    session_id: string;
    first_message_index: number;
    forwarded_count: number;
    is_verified: number;
    /** JSON object (algorithm-dependent, encrypted by the client). */
    session_data: string;
  };
  /** E2EE (src/e2ee/keys.ts): a device's signed identity keys (JSON as uploaded). */
  e2e_device_keys: { user_id: string; device_id: string; key_json: string; ts: number };
  /** Unclaimed one-time keys; `key_id` without the algorithm. */
  e2e_one_time_keys: { user_id: string; device_id: string; algorithm: string; key_id: string; key_json: string; ts: number };
  /** The fallback key per device and algorithm. */
  e2e_fallback_keys: { user_id: string; device_id: string; algorithm: string; key_id: string; key_json: string; used: number };
  /** Cross-signing keys: key_type 'master' | 'self_signing' | 'user_signing'. */
  e2e_cross_signing_keys: { user_id: string; key_type: string; public_key: string; key_json: string; stream_pos: number };
  /** Signatures uploaded through /keys/signatures/upload; target_key_id is a device id or a master public key. */
  e2e_signatures: { target_user_id: string; target_key_id: string; signer_user_id: string; signer_key_id: string; signature: string };
  /** One row per change of a user's devices, device keys or cross-signing keys. */
  device_list_changes: { user_id: string; stream_pos: number };
  /** Pending to-device messages, deleted once the recipient device acknowledges them (e2ee/to-device.ts). */
  to_device_messages: {
    user_id: string;
    device_id: string;
    stream_pos: number;
    sender: string;
    type: string;
    /** JSON object. */
    content: string;
  };
  /** Transaction ids of to-device sends, per sending device (idempotency). */
  to_device_txns: { user_id: string; device_id: string; txn_id: string; created_ts: number };
  /** MSC3814: at most one dehydrated device per user (also a row in `devices`). */
  dehydrated_devices: {
    user_id: string;
    device_id: string;
    /** JSON object, opaque to the server. */
    device_data: string;
    /** JSON {device_keys?, one_time_keys?, fallback_keys?} as uploaded with the device, or null. */
    keys: string | null;
    created_ts: number;
  };
  /** Local media (src/media/service.ts): content columns are null until the bytes are uploaded. */
  media: {
    media_id: string;
    user_id: string;
    created_ts: number;
    /** Set for ids from POST /create: after this, an id still without content is gone. */
    unused_expires_at: number | null;
    uploaded_ts: number | null;
    content_type: string | null;
    upload_name: string | null;
    size: number | null;
    /** Address of the bytes in the media store. */
    sha256: string | null;
    /** Last download or thumbnail of it (null: never since upload); drives retention. */
    last_access_ts: number | null;
    /** User id of the admin who quarantined it (null: not quarantined). */
    quarantined_by: string | null;
    /** 1: protected from quarantine (Synapse's protect/unprotect admin routes). */
    safe_from_quarantine: Generated<number>;
  };
  /** Generated thumbnails, stored in the media store as content of their own. */
  media_thumbnails: {
    media_id: string;
    width: number;
    height: number;
    method: string;
    animated: number;
    content_type: string;
    size: number;
    sha256: string;
    created_ts: number;
  };
  /** Cached copies of media from other servers (src/media/remote.ts). */
  remote_media: {
    origin: string;
    media_id: string;
    content_type: string | null;
    upload_name: string | null;
    size: number;
    sha256: string;
    fetched_ts: number;
    last_access_ts: number;
    quarantined_by: string | null;
  };
  /** Thumbnails of remote media, fetched from the origin and cached. */
  remote_media_thumbnails: {
    origin: string;
    media_id: string;
    width: number;
    height: number;
    method: string;
    animated: number;
    content_type: string;
    size: number;
    sha256: string;
    created_ts: number;
  };
  /** Other servers' signing keys (src/federation/keys.ts). valid_until_ts is already capped at fetch time + 7 days; old keys have expired_ts. */
  server_keys: {
    server_name: string;
    key_id: string;
    verify_key: string;
    valid_until_ts: number;
    expired_ts: number | null;
    fetched_ts: number;
  };
  /** The last key response per server, with only the origin's signatures, for notary answers. */
  server_key_responses: {
    server_name: string;
    key_json: string;
    valid_until_ts: number;
    fetched_ts: number;
  };
  /** Outbound PDUs and EDUs, stored once whatever the number of destinations (src/federation/queue.ts). */
  federation_outbound_items: {
    id: Generated<number>;
    /** 'pdu' or 'edu'. */
    kind: string;
    /** JSON: the PDU, or the EDU {edu_type, content}. */
    json: string;
    created_ts: number;
  };
  /** One row per (destination, item) still to deliver; txn_id is set once the item is in a batch (stable across retries). */
  federation_queue: { destination: string; item_id: number; kind: string; txn_id: string | null };
  /** Per destination backoff after failed transactions (no row: healthy). */
  federation_destinations: {
    destination: string;
    failures: number;
    /** Not before this time (ms); null: now. */
    retry_at: number | null;
    last_error: string | null;
    last_failure_ts: number | null;
  };
  /** OpenID tokens for integration managers (src/accounts/openid.ts): SHA-256 of the token, owner, expiry (ms). */
  openid_tokens: { token_hash: string; user_id: string; expires_ts: number };
  /** Users' reports of events (event_id set) or rooms (event_id null), for the admin API (src/admin/reports-routes.ts). */
  event_reports: { id: Generated<number>; received_ts: number; room_id: string; event_id: string | null; user_id: string; reason: string | null; score: number | null };
  /** Rooms an admin blocked: no local user may join them. */
  blocked_rooms: { room_id: string; user_id: string; blocked_ts: number };
  /** Background room deletions ('delete') and history purges ('purge'); status and JSON result as the admin API reports them. */
  admin_room_tasks: { task_id: string; kind: string; room_id: string; status: string; error: string | null; result: string | null; created_ts: number; updated_ts: number };
  /** Each user's server notices room (src/admin/notices.ts). */
  server_notice_rooms: { user_id: string; room_id: string };
  /** Per-user message rate limit overrides (admin API override_ratelimit). */
  ratelimit_overrides: { user_id: string; messages_per_second: number; burst_count: number };
  /** Admin-managed registration tokens (src/accounts/registration-tokens.ts); null uses_allowed/expiry_time: unlimited. */
  registration_tokens: { token: string; uses_allowed: number | null; completed: number; expiry_time: number | null; created_ts: number };
  /** The registration token each UIA session completed its stage with; unexpired rows are the token's pending uses. */
  registration_token_sessions: { session_id: string; token: string; created_ts: number };
}
