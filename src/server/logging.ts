import pino, { type DestinationStream, type Logger } from 'pino';
import type { Config } from '../config/config.js';

export type { Logger };

/** Replacement text for anything secret that reaches a log call. */
const REDACTED = '[redacted]';

/**
 * Field paths that never reach a log line. pino's redaction matches exact
 * paths, with `*` standing for exactly one level, so each secret is listed at
 * the depths it can appear: top level (`log.info({ password })`), one level
 * down (`{ body: { password } }`) and inside a UIA `auth` dict.
 */
const SECRET_FIELDS = ['password', 'new_password', 'access_token', 'refresh_token', 'token', 'registration_token', 'login_token'];
export const REDACT_PATHS: string[] = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'request.headers.authorization',
  'req.query.access_token',
  'query.access_token',
  ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.auth.${f}`, `auth.${f}`, `*.*.${f}`]),
];

/** Remove `access_token=...` (deprecated query authentication) from a URL before it is logged. */
export function scrubUrl(url: string): string {
  return url.replace(/([?&](?:access_token|token|login_token)=)[^&#]*/gi, `$1${REDACTED}`);
}

/**
 * The server's logger: JSON lines on stdout (or `dest`), level from
 * `log_level`, with passwords and tokens redacted wherever they appear in a
 * logged object and stripped from logged URLs.
 */
export function createLogger(config: Pick<Config, 'log_level'>, dest?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level: config.log_level,
    base: { name: 'ranvier' },
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    serializers: {
      err: pino.stdSerializers.err,
      error: pino.stdSerializers.err,
      url: (u: unknown) => (typeof u === 'string' ? scrubUrl(u) : u),
    },
  };
  return dest ? pino(options, dest) : pino(options);
}

/** A logger that writes nothing (CLI commands, tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
