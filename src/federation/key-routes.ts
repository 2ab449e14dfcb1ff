/**
 * Key endpoints (server-server API, "Retrieving server keys"): our own keys
 * and the notary service. They need no request authentication: the answers
 * are signed objects that the asker verifies.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isValidServerName } from '../core/identifiers.js';
import { badJson, invalidParam } from '../server/errors.js';
import type { Context } from '../server/services.js';
import type { ServerKeyResponse } from './keys.js';

/** A notary question: which key ids of one server, valid until when. */
interface KeyQuery {
  serverName: string;
  keyIds: string[];
  minimumValidUntilTs?: number;
}

/** At most this many servers per query: each may cost an outbound fetch. */
const MAX_QUERY_SERVERS = 100;

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const isTimestamp = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Parse POST /_matrix/key/v2/query's body, throwing 400 M_BAD_JSON / M_INVALID_PARAM. */
export function parseKeyQueryBody(body: unknown): KeyQuery[] {
  if (!isRecord(body) || !isRecord(body.server_keys)) throw badJson('server_keys must be an object');
  const entries = Object.entries(body.server_keys);
  if (entries.length > MAX_QUERY_SERVERS) throw invalidParam(`At most ${MAX_QUERY_SERVERS} servers per query`);
  return entries.map(([serverName, keys]) => {
    if (!isValidServerName(serverName)) throw invalidParam(`Invalid server name ${JSON.stringify(serverName)}`);
    if (!isRecord(keys)) throw badJson(`server_keys.${serverName} must be an object`);
    let minimumValidUntilTs: number | undefined;
    for (const [keyId, criteria] of Object.entries(keys)) {
      if (!isRecord(criteria)) throw badJson(`Criteria for ${serverName} ${keyId} must be an object`);
      const min = criteria.minimum_valid_until_ts;
      if (min === undefined) continue;
      if (!isTimestamp(min)) throw badJson('minimum_valid_until_ts must be a non-negative integer');
      // One stored response answers every key id, so it must satisfy the strictest.
      minimumValidUntilTs = Math.max(minimumValidUntilTs ?? 0, min);
    }
    return { serverName, keyIds: Object.keys(keys), minimumValidUntilTs };
  });
}

async function answer(ctx: Context, queries: KeyQuery[]): Promise<{ server_keys: ServerKeyResponse[] }> {
  const results = await Promise.all(queries.map((q) => ctx.federation.keys.notaryKeys(q.serverName, q.keyIds, q.minimumValidUntilTs)));
  return { server_keys: results.filter((r) => r !== undefined) };
}

export function registerKeyRoutes(app: FastifyInstance, ctx: Context): void {
  const ownKeys = async () => ctx.federation.keys.ownKeyResponse();
  app.get('/_matrix/key/v2/server', ownKeys);
  // Deprecated form naming a key id; the answer is the same whole key list.
  app.get('/_matrix/key/v2/server/:keyId', ownKeys);

  app.get('/_matrix/key/v2/query/:serverName', async (req: FastifyRequest) => {
    const { serverName } = req.params as { serverName: string };
    if (!isValidServerName(serverName)) throw invalidParam('Invalid server name');
    const raw = (req.query as Record<string, string | string[] | undefined>).minimum_valid_until_ts;
    let minimumValidUntilTs: number | undefined;
    if (raw !== undefined) {
      if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw)) throw invalidParam('minimum_valid_until_ts must be a non-negative integer');
      minimumValidUntilTs = Number(raw);
    }
    return answer(ctx, [{ serverName, keyIds: [], minimumValidUntilTs }]);
  });

  app.post('/_matrix/key/v2/query', async (req: FastifyRequest) => answer(ctx, parseKeyQueryBody(req.body)));
}
