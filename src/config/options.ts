/**
 * Every configuration option, in one table. The TOML file, the RANVIER_<KEY>
 * environment overrides, validation and `ranvier config generate` are all
 * derived from this list so they can never disagree.
 */
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

  // ---- limits and caches
  { section: 'Caches', key: 'event_cache_size', kind: 'integer', default: 5000,
    help: 'Events kept in memory (bounded LRU).', check: nonNegative },
  { section: 'Caches', key: 'state_cache_size', kind: 'integer', default: 500,
    help: 'Room state snapshots kept in memory (bounded LRU).', check: nonNegative },
] as const satisfies readonly OptionSpec[];

export type OptionKey = (typeof OPTIONS)[number]['key'];
