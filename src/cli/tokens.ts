/**
 * `ranvier token create|list|revoke`: registration tokens managed straight
 * in the database (the same rows as the admin API's, see
 * src/accounts/registration-tokens.ts), so they work while the server runs.
 * Functions here return text or throw an Error whose message is for the
 * operator; src/main.ts prints and maps them to exit codes.
 */
import { parseNewToken, tokenUsable, type NewTokenRequest, type RegistrationToken } from '../accounts/registration-tokens.js';
import { MatrixError } from '../server/errors.js';
import type { Context } from '../server/services.js';

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * An expiry given as a duration from `now` ("90m", "12h", "7d", "2w") or as
 * an ISO 8601 date or date-time ("2026-12-31", "2026-12-31T18:00:00Z").
 * Returns milliseconds since the epoch.
 */
export function parseExpiry(value: string, now: number): number {
  const d = /^(\d{1,9})\s*([smhdw])$/.exec(value.trim());
  if (d) {
    const ms = Number(d[1]) * UNIT_MS[d[2]];
    if (ms <= 0) throw new Error(`--expires ${value}: the duration must be positive`);
    return now + ms;
  }
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value.trim())) {
    const ts = Date.parse(value.trim());
    if (Number.isFinite(ts)) {
      if (ts <= now) throw new Error(`--expires ${value}: that time has passed`);
      return ts;
    }
  }
  throw new Error(`--expires ${value}: expected a duration such as 30m, 12h, 7d, 2w or an ISO date such as 2026-12-31T18:00:00Z`);
}

function nonNegativeInt(flag: string, value: string): number {
  if (!/^\d{1,9}$/.test(value)) throw new Error(`${flag} must be a non-negative integer, not ${value}`);
  return Number(value);
}

export interface CreateOptions {
  uses?: string;
  expires?: string;
  length?: string;
}

/** Check `token create`'s options (before any database is opened), as the admin API checks its body. */
export function parseCreateOptions(opts: CreateOptions, now = Date.now()): NewTokenRequest {
  const body: Record<string, unknown> = {};
  if (opts.uses !== undefined) body.uses_allowed = nonNegativeInt('--uses', opts.uses);
  if (opts.expires !== undefined) body.expiry_time = parseExpiry(opts.expires, now);
  if (opts.length !== undefined) body.length = nonNegativeInt('--length', opts.length);
  try {
    return parseNewToken(body, now);
  } catch (err) {
    // The admin API's wording names JSON fields; say it in the CLI's terms.
    if (err instanceof MatrixError) throw new Error(err.message.replace(/^length/, '--length').replace(/^uses_allowed/, '--uses'));
    throw err;
  }
}

export function createToken(ctx: Context, request: NewTokenRequest): Promise<RegistrationToken> {
  return ctx.accounts.registrationTokens.create(request);
}

export async function revokeToken(ctx: Context, token: string): Promise<void> {
  if (!(await ctx.accounts.registrationTokens.delete(token))) throw new Error(`no such registration token: ${token}`);
}

export function describeToken(t: RegistrationToken): string {
  const uses = t.uses_allowed === null ? 'unlimited uses' : `${t.uses_allowed} use${t.uses_allowed === 1 ? '' : 's'}`;
  const expires = t.expiry_time === null ? 'never expires' : `expires ${new Date(t.expiry_time).toISOString()}`;
  return `${uses}, ${expires}`;
}

/** A table of tokens, like `user list`'s. */
export function formatTokens(tokens: RegistrationToken[], now = Date.now()): string {
  const rows = tokens.map((t) => [
    t.token,
    t.uses_allowed === null ? `${t.completed}/unlimited` : `${t.completed}/${t.uses_allowed}`,
    String(t.pending),
    t.expiry_time === null ? 'never' : new Date(t.expiry_time).toISOString(),
    tokenUsable(t, now) ? 'yes' : 'no',
  ]);
  const header = ['TOKEN', 'USED', 'PENDING', 'EXPIRES', 'VALID'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd() + '\n';
  return line(header) + rows.map(line).join('') + `${rows.length} token${rows.length === 1 ? '' : 's'}\n`;
}
