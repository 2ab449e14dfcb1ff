/**
 * Every configuration option, in one table. The TOML file, the RANVIER_<KEY>
 * environment overrides, validation and `ranvier config generate` are all
 * derived from this list so they can never disagree.
 */
import { isIP } from 'node:net';

export type OptionKind = 'string' | 'integer' | 'number' | 'boolean';

export interface OptionSpec {
  key: string;
  kind: OptionKind;
  default: string | number | boolean;
  help: string;
  /** Extra validation; returns an error message or undefined. */
  check?: (value: never) => string | undefined;
  section: string;
}

const positive = (v: number) => (v > 0 ? undefined : 'must be greater than 0');
const nonNegative = (v: number) => (v >= 0 ? undefined : 'must be 0 or more');

/** Private, loopback, link-local, multicast and other non-public ranges. */
export const DEFAULT_URL_PREVIEW_IP_BLOCKLIST = [
  '127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16',
  '0.0.0.0/8', '192.0.0.0/24', '198.18.0.0/15', '224.0.0.0/4', '240.0.0.0/4',
  '::1/128', '::/128', 'fe80::/10', 'fc00::/7', 'ff00::/8', '64:ff9b::/96',
].join(', ');

/** A comma-separated list of CIDRs (or bare addresses); empty is fine. */
const cidrList = (v: string) => {
  for (const item of v.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const [addr, prefix, extra] = item.split('/');
    const family = isIP(addr);
    const max = family === 4 ? 32 : 128;
    if (family === 0 || extra !== undefined || (prefix !== undefined && !(/^\d{1,3}$/.test(prefix) && Number(prefix) <= max))) {
      return `'${item}' is not an IP address or CIDR range`;
    }
  }
  return undefined;
};

export const OPTIONS = [
  // ---- server
  { section: 'Server', key: 'server_name', kind: 'string', default: 'localhost',
    help: 'The domain part of user ids (@alice:<server_name>). Cannot change once users exist.',
    check: (v: string) => (/^[A-Za-z0-9.\-:[\]]+$/.test(v) ? undefined : 'must be a valid server name') },
  { section: 'Server', key: 'public_baseurl', kind: 'string', default: '',
    help: 'URL clients reach this server at (empty: http://<address>:<port>/). Used in .well-known.' },
  { section: 'Server', key: 'address', kind: 'string', default: '127.0.0.1',
    help: 'Address the HTTP listener binds to. Use 0.0.0.0 to listen on every interface.' },
  { section: 'Server', key: 'port', kind: 'integer', default: 8008, help: 'HTTP listener port.',
    check: (v: number) => (v >= 0 && v <= 65535 ? undefined : 'must be between 0 and 65535') },
  { section: 'Server', key: 'data_dir', kind: 'string', default: './data',
    help: 'Directory for the SQLite database, the signing key and other local state.' },
  { section: 'Server', key: 'signing_key_path', kind: 'string', default: '',
    help: "Signing key file in Synapse's format (empty: <data_dir>/signing.key, generated on first start)." },
  { section: 'Server', key: 'log_level', kind: 'string', default: 'info',
    help: 'One of fatal, error, warn, info, debug, trace, silent.',
    check: (v: string) => (['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(v) ? undefined : 'must be one of fatal, error, warn, info, debug, trace, silent') },
  { section: 'Server', key: 'max_request_size', kind: 'integer', default: 1048576,
    help: 'Largest accepted request body in bytes; bigger bodies get 413 M_TOO_LARGE.', check: positive },

  // ---- database
  { section: 'Database', key: 'database', kind: 'string', default: '',
    help: 'SQLite file path, or a postgres:// URL (empty: <data_dir>/ranvier.db).' },
  { section: 'Database', key: 'sqlite_synchronous', kind: 'string', default: 'normal',
    help: "SQLite durability. 'normal': every acknowledged write survives a crash or kill -9 of Ranvier (WAL, no fsync per commit); 'full': also survives power loss or an OS crash, at the cost of an fsync per write.",
    check: (v: string) => (['normal', 'full'].includes(v) ? undefined : 'must be normal or full') },
  { section: 'Database', key: 'database_pool_size', kind: 'integer', default: 10,
    help: 'PostgreSQL connection pool size.', check: positive },

  // ---- registration
  { section: 'Registration', key: 'allow_registration', kind: 'boolean', default: false,
    help: 'Let anyone register an account. Off by default; setting registration_token also opens registration, but only for holders of the token.' },
  { section: 'Registration', key: 'registration_token', kind: 'string', default: '',
    help: 'Shared token required to register (m.login.registration_token). Empty: no token.' },

  // ---- rooms
  { section: 'Rooms', key: 'default_room_version', kind: 'string', default: '12',
    help: 'Room version for new rooms when the client does not ask for one (the spec recommends 12).' },
  { section: 'Rooms', key: 'encryption_enabled_by_default_for_room_type', kind: 'string', default: 'off',
    help: "Turn on end-to-end encryption (m.room.encryption, megolm) in new rooms. 'off': never; 'invite': rooms created with the private_chat or trusted_private_chat preset; 'all': every new room. A creator's own m.room.encryption in initial_state wins.",
    check: (v: string) => (['off', 'invite', 'all'].includes(v) ? undefined : 'must be off, invite or all') },

  // ---- .well-known
  { section: 'Well-known', key: 'well_known_client', kind: 'string', default: '',
    help: 'm.homeserver base_url served at /.well-known/matrix/client (empty: public_baseurl).' },
  { section: 'Well-known', key: 'well_known_server', kind: 'string', default: '',
    help: 'host:port served at /.well-known/matrix/server (empty: the endpoint answers 404).' },

  // ---- presence and sync
  { section: 'Presence', key: 'presence_enabled', kind: 'boolean', default: true,
    help: 'Track and share presence. Turning it off saves work on busy servers.' },

  // ---- rate limits
  { section: 'Rate limits', key: 'rate_limit_enabled', kind: 'boolean', default: true,
    help: 'Master switch for all rate limits (turn off for load tests).' },
  { section: 'Rate limits', key: 'rate_limit_login_per_second', kind: 'number', default: 0.17,
    help: 'Login attempts per second allowed per client address (token bucket refill).', check: positive },
  { section: 'Rate limits', key: 'rate_limit_login_burst', kind: 'integer', default: 5,
    help: 'Login attempts allowed in a burst.', check: positive },
  { section: 'Rate limits', key: 'rate_limit_registration_per_second', kind: 'number', default: 0.17,
    help: 'Registrations per second per client address.', check: positive },
  { section: 'Rate limits', key: 'rate_limit_registration_burst', kind: 'integer', default: 5,
    help: 'Registrations allowed in a burst.', check: positive },
  { section: 'Rate limits', key: 'rate_limit_message_per_second', kind: 'number', default: 10,
    help: 'Events sent per second per user.', check: positive },
  { section: 'Rate limits', key: 'rate_limit_message_burst', kind: 'integer', default: 50,
    help: 'Events a user may send in a burst.', check: positive },

  // ---- media: URL previews
  { section: 'Media', key: 'url_preview_enabled', kind: 'boolean', default: true,
    help: 'Serve /media/preview_url: the server fetches pages users link to and returns their OpenGraph title, description and so on.' },
  { section: 'Media', key: 'url_preview_ip_blocklist', kind: 'string', default: DEFAULT_URL_PREVIEW_IP_BLOCKLIST,
    help: 'Comma-separated CIDRs URL previews must never connect to (every address a name resolves to is checked, and every redirect). IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are checked against the IPv4 entries.',
    check: cidrList },
  { section: 'Media', key: 'url_preview_ip_allowlist', kind: 'string', default: '',
    help: 'Comma-separated CIDRs URL previews may connect to even when url_preview_ip_blocklist covers them.',
    check: cidrList },
  { section: 'Media', key: 'url_preview_max_bytes', kind: 'integer', default: 10485760,
    help: 'Largest page a URL preview downloads, in bytes; a bigger response is aborted.', check: positive },
  { section: 'Media', key: 'url_preview_timeout_ms', kind: 'integer', default: 10000,
    help: 'Time limit for fetching one URL preview, redirects included, in milliseconds.', check: positive },

  // ---- media
  { section: 'Media', key: 'max_upload_size', kind: 'integer', default: 52428800,
    help: 'Largest media upload in bytes (default 50 MiB); bigger uploads get 413 M_TOO_LARGE. Independent of max_request_size.', check: positive },
  { section: 'Media', key: 'media_quota_per_user', kind: 'integer', default: 0,
    help: 'Total bytes of media one user may upload (0: unlimited); past it uploads get 403 M_FORBIDDEN.', check: nonNegative },
  { section: 'Media', key: 'legacy_media_enabled', kind: 'boolean', default: true,
    help: 'Serve the deprecated unauthenticated /_matrix/media/v3 download, thumbnail and config endpoints for old clients. When off they answer 404 and only the authenticated /_matrix/client/v1/media endpoints serve media.' },
  { section: 'Media', key: 'dynamic_thumbnails', kind: 'boolean', default: false,
    help: "Make thumbnails of exactly the requested size instead of the spec's five preset sizes (more CPU and storage)." },

  // ---- media: storage backend and retention
  { section: 'Media', key: 'media_store', kind: 'string', default: 'local',
    help: "Where media bytes live: 'local' (content-addressed files under media_store_path) or 's3' (an S3-compatible bucket; see the s3_* options).",
    check: (v: string) => (['local', 's3'].includes(v) ? undefined : 'must be local or s3') },
  { section: 'Media', key: 'media_store_path', kind: 'string', default: '',
    help: 'Directory of the local media store (empty: <data_dir>/media).' },
  { section: 'Media', key: 's3_endpoint', kind: 'string', default: '',
    help: 'S3 endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000 for MinIO/Garage.' },
  { section: 'Media', key: 's3_region', kind: 'string', default: 'us-east-1', help: 'S3 region used in request signatures.' },
  { section: 'Media', key: 's3_bucket', kind: 'string', default: '', help: 'S3 bucket holding media (must exist).' },
  { section: 'Media', key: 's3_prefix', kind: 'string', default: '', help: 'Key prefix inside the bucket, e.g. ranvier/.' },
  { section: 'Media', key: 's3_access_key_id', kind: 'string', default: '', help: 'S3 access key id.' },
  { section: 'Media', key: 's3_secret_access_key', kind: 'string', default: '',
    help: 'S3 secret key. Prefer the RANVIER_S3_SECRET_ACCESS_KEY environment variable to keeping it in the file.' },
  { section: 'Media', key: 's3_force_path_style', kind: 'boolean', default: true,
    help: 'Address the bucket as <endpoint>/<bucket>/<key> (MinIO, Garage, most self-hosted stores) instead of <bucket>.<endpoint host>.' },
  { section: 'Media', key: 'media_retention_local_days', kind: 'integer', default: 0,
    help: 'Delete local media not downloaded for this many days (0: keep forever). Media that is a current avatar is always kept.', check: nonNegative },
  { section: 'Media', key: 'media_retention_remote_days', kind: 'integer', default: 30,
    help: 'Delete cached copies of remote media not accessed for this many days (0: keep forever); they are fetched again on demand.', check: nonNegative },
  { section: 'Media', key: 'media_retention_interval_minutes', kind: 'integer', default: 60,
    help: 'How often the media retention job runs, in minutes.', check: positive },

  // ---- federation
  { section: 'Federation', key: 'federation_enabled', kind: 'boolean', default: true,
    help: 'Talk to other Matrix servers. When off, federation endpoints answer 403 and nothing is sent out.' },
  { section: 'Federation', key: 'federation_allow_list', kind: 'string', default: '',
    help: 'Comma-separated server names allowed to federate with this one (empty: every server). Others are refused both ways.' },
  { section: 'Federation', key: 'federation_tls_port', kind: 'integer', default: 0,
    help: 'Port of a TLS listener serving federation and client APIs (e.g. 8448; 0: none — terminate TLS in a reverse proxy instead — unless federation_tls_cert and federation_tls_key are set, then any free port, for tests).',
    check: (v: number) => (v >= 0 && v <= 65535 ? undefined : 'must be between 0 and 65535') },
  { section: 'Federation', key: 'federation_tls_cert', kind: 'string', default: '',
    help: 'PEM certificate chain for the TLS listener.' },
  { section: 'Federation', key: 'federation_tls_key', kind: 'string', default: '',
    help: 'PEM private key for the TLS listener.' },
  { section: 'Federation', key: 'federation_ca_file', kind: 'string', default: '',
    help: 'Extra PEM CA certificates trusted when connecting to other servers (on top of the system ones), e.g. a private CA.' },
  { section: 'Federation', key: 'federation_verify_tls', kind: 'boolean', default: true,
    help: 'Verify other servers\' TLS certificates. Turn off only for testing.' },
  { section: 'Federation', key: 'federation_hosts', kind: 'string', default: '',
    help: 'Comma-separated server_name=host:port pairs that bypass discovery (well-known and SRV), for tests and private deployments. The TLS name checked stays the server name.' },
  { section: 'Federation', key: 'trusted_key_servers', kind: 'string', default: 'matrix.org',
    help: 'Comma-separated notary servers asked for other servers\' signing keys when a server cannot be reached directly (empty: ask only the server itself).' },

  // ---- administration and operations
  { section: 'Administration', key: 'registration_shared_secret', kind: 'string', default: '',
    help: "Shared secret for Synapse-style admin registration (POST /_synapse/admin/v1/register with nonce and HMAC, as register_new_matrix_user does). Empty: that endpoint is off. Prefer RANVIER_REGISTRATION_SHARED_SECRET." },
  { section: 'Administration', key: 'metrics_enabled', kind: 'boolean', default: false,
    help: 'Serve Prometheus metrics at /metrics on a listener of its own (metrics_address:metrics_port).' },
  { section: 'Administration', key: 'metrics_address', kind: 'string', default: '127.0.0.1',
    help: 'Address the metrics listener binds to. Keep it private: metrics reveal activity.' },
  { section: 'Administration', key: 'metrics_port', kind: 'integer', default: 9090, help: 'Port of the metrics listener (0: any free port).',
    check: (v: number) => (v >= 0 && v <= 65535 ? undefined : 'must be between 0 and 65535') },
  { section: 'Administration', key: 'min_free_disk_bytes', kind: 'integer', default: 268435456,
    help: 'When the disk holding data_dir has less free space than this (default 256 MiB), media uploads, message and state sends, room creation, registration and incoming federation transactions get 507 M_RESOURCE_LIMIT_EXCEEDED (a server-side condition, so 5xx) instead of risking a corrupted database; reads keep working (0: never refuse).', check: nonNegative },
  { section: 'Administration', key: 'log_requests', kind: 'boolean', default: true,
    help: 'Log one line per request (method, endpoint, status, time, user) at info level. Tokens and passwords are never logged.' },

  // ---- limits and caches
  { section: 'Caches', key: 'event_cache_size', kind: 'integer', default: 5000,
    help: 'Events kept in memory (bounded LRU).', check: nonNegative },
  { section: 'Caches', key: 'state_cache_size', kind: 'integer', default: 500,
    help: 'Room state snapshots kept in memory (bounded LRU).', check: nonNegative },
] as const satisfies readonly OptionSpec[];

export type OptionKey = (typeof OPTIONS)[number]['key'];
