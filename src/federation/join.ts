/**
 * Joining a room that lives on other servers (server-server API, "Joining
 * Rooms"): ask a resident server for a join template (make_join), sign it,
 * send it back (send_join v2) and build the room locally from the state and
 * auth chain in the answer.
 */
import { checkEventAuth, AuthError, type StateMap } from '../core/auth-rules.js';
import { computeEventId } from '../core/event-hashing.js';
import { hashAndSignEvent } from '../core/event-signing.js';
import { authEventIds, type PDU } from '../core/events.js';
import { ROOM_VERSIONS, getRoomVersion, type RoomVersion } from '../core/room-versions.js';
import { MatrixError } from '../server/errors.js';
import type { Context } from '../server/services.js';
import type { IncomingEvent } from '../rooms/remote-events.js';
import { stateKeyOf } from '../rooms/state-store.js';
import type { StoredEvent } from '../rooms/types.js';
import { FederationRequestError } from './client.js';
import { checkIncomingPdu, type KeyLookup } from './pdu-checks.js';
import { storeRemoteMembership } from './invite.js';

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Room versions we can join, for make_join's `ver` parameter. */
export const SUPPORTED_ROOM_VERSIONS = Object.keys(ROOM_VERSIONS);

export interface RemoteJoinRequest {
  roomId: string;
  userId: string;
  /** Servers to try, in order. */
  servers: string[];
  /** Extra member content (displayname, avatar_url, reason). */
  content: Record<string, unknown>;
}

/** Try each server in turn; the first that completes the join wins. */
export async function joinRemoteRoom(ctx: Context, req: RemoteJoinRequest): Promise<StoredEvent> {
  const candidates = [...new Set(req.servers)].filter((s) => s !== ctx.config.server_name);
  if (candidates.length === 0) throw new MatrixError('M_NOT_FOUND', 404, 'No server to join this room through');
  let lastError: unknown;
  for (const server of candidates) {
    try {
      return await joinVia(ctx, server, req);
    } catch (err) {
      lastError = err;
      ctx.log.info({ err, server, roomId: req.roomId }, 'remote join attempt failed');
      // A definite refusal from a resident server is the answer; other servers would say the same.
      if (err instanceof MatrixError && err.status === 403) throw err;
    }
  }
  if (lastError instanceof MatrixError) throw lastError;
  if (lastError instanceof FederationRequestError && lastError.status === 404) {
    throw new MatrixError('M_NOT_FOUND', 404, 'No server we asked knows this room');
  }
  if (lastError instanceof FederationRequestError && lastError.status === 403) {
    throw new MatrixError('M_FORBIDDEN', 403, `Join refused: ${lastError.message}`);
  }
  throw new MatrixError('M_UNKNOWN', 502, `Could not join the room through ${candidates.join(', ')}`);
}

async function joinVia(ctx: Context, server: string, req: RemoteJoinRequest): Promise<StoredEvent> {
  const client = ctx.federation.client;
  const template = await client.request<{ event?: unknown; room_version?: unknown }>(server, {
    method: 'GET',
    path: `/_matrix/federation/v1/make_join/${encodeURIComponent(req.roomId)}/${encodeURIComponent(req.userId)}`,
    query: { ver: SUPPORTED_ROOM_VERSIONS },
  }).catch((err: unknown) => {
    if (err instanceof FederationRequestError && err.status === 403) throw new MatrixError('M_FORBIDDEN', 403, `${server} refused the join: ${err.message}`);
    if (err instanceof FederationRequestError && err.errcode === 'M_INCOMPATIBLE_ROOM_VERSION') {
      throw new MatrixError('M_UNSUPPORTED_ROOM_VERSION', 400, 'This server does not support the room version');
    }
    throw err;
  });
  const versionId = typeof template.room_version === 'string' ? template.room_version : '1';
  const version = getRoomVersion(versionId);
  if (!version) throw new MatrixError('M_UNSUPPORTED_ROOM_VERSION', 400, `Room version ${versionId} is not supported`);
  const t = template.event;
  if (!isObject(t) || t.type !== 'm.room.member' || t.state_key !== req.userId || t.sender !== req.userId) {
    throw new MatrixError('M_UNKNOWN', 502, `${server} sent an invalid join template`);
  }
  const { eventId, pdu } = signJoin(ctx, version, t, req);

  const res = await client.request<Record<string, unknown>>(server, {
    method: 'PUT',
    path: `/_matrix/federation/v2/send_join/${encodeURIComponent(req.roomId)}/${encodeURIComponent(eventId)}`,
    body: pdu,
    timeoutMs: 120_000,
    maxBytes: 256 * 1024 * 1024,
  });
  // Restricted joins come back countersigned by the authorising server.
  let join: IncomingEvent = { eventId, pdu };
  if (isObject(res.event)) {
    const checked = await checkIncomingPdu(res.event, version, keyLookup(ctx));
    if (checked.ok && checked.eventId === eventId) join = { eventId, pdu: checked.pdu };
  }
  const keys = memoisedKeyLookup(ctx);
  const state = await checkAll(ctx, version, Array.isArray(res.state) ? res.state : [], keys);
  const authChain = await checkAll(ctx, version, Array.isArray(res.auth_chain) ? res.auth_chain : [], keys);
  const accepted = await authoriseState(version, state, authChain, join);
  return ctx.rooms.remote.bootstrapJoin(req.roomId, version, accepted, authChain, join);
}

function signJoin(ctx: Context, version: RoomVersion, t: Record<string, unknown>, req: RemoteJoinRequest, membership: 'join' | 'knock' = 'join'): { eventId: string; pdu: PDU } {
  const content = { ...(isObject(t.content) ? t.content : {}), ...req.content, membership };
  const pdu: PDU = {
    room_id: req.roomId, type: 'm.room.member', state_key: req.userId, sender: req.userId, content,
    origin_server_ts: Date.now(), depth: Number(t.depth) || 0,
    prev_events: (Array.isArray(t.prev_events) ? t.prev_events : []) as PDU['prev_events'],
    auth_events: (Array.isArray(t.auth_events) ? t.auth_events : []) as PDU['auth_events'],
  };
  const serverName = ctx.config.server_name;
  if (version.eventIdFormat === 'v1') {
    pdu.event_id = computeEventId(pdu, version, serverName);
    pdu.origin = serverName;
    return { eventId: pdu.event_id, pdu: hashAndSignEvent(pdu, version, serverName, ctx.signingKey) };
  }
  const signed = hashAndSignEvent(pdu, version, serverName, ctx.signingKey);
  return { eventId: computeEventId(signed, version), pdu: signed };
}

const keyLookup = (ctx: Context) => (server: string, keyId: string, at: number) => ctx.federation.keys.getVerifyKey(server, keyId, at);

/**
 * Key look-ups for one send_join answer, where thousands of events carry the
 * same few keys: a key valid at some time is valid at every earlier time
 * (keys carry a valid_until_ts, not a start), so a key found for `at` answers
 * every later question with an `at` no later, without a database read.
 */
function memoisedKeyLookup(ctx: Context): KeyLookup {
  const lookup = keyLookup(ctx);
  const known = new Map<string, { key: string; validAt: number }>();
  return async (server, keyId, at) => {
    const id = `${server}\u0000${keyId}`;
    const hit = known.get(id);
    if (hit && hit.validAt >= at) return hit.key;
    const key = await lookup(server, keyId, at);
    if (key !== undefined) known.set(id, { key, validAt: Math.max(at, hit?.validAt ?? at) });
    return key;
  };
}

/** Longest stretch of synchronous checking before other requests get a turn. */
const MAX_BLOCK_MS = 20;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

async function checkAll(ctx: Context, version: RoomVersion, raws: unknown[], keys: KeyLookup = memoisedKeyLookup(ctx)): Promise<IncomingEvent[]> {
  const out: IncomingEvent[] = [];
  // Hashing and ed25519 checks of a big room's state take seconds of CPU; cached key look-ups resolve
  // as microtasks, so without an explicit turn the event loop would not run in between.
  let turnStart = performance.now();
  for (const raw of raws) {
    if (performance.now() - turnStart > MAX_BLOCK_MS) {
      await nextTurn();
      turnStart = performance.now();
    }
    const checked = await checkIncomingPdu(raw, version, keys);
    if (checked.ok) out.push({ eventId: checked.eventId, pdu: checked.pdu });
    else ctx.log.info({ eventId: checked.eventId, reason: checked.reason }, 'dropped an event from send_join');
  }
  return out;
}

/**
 * Keep the state events that pass the authorisation rules against their own
 * auth events (checked oldest first, so chains build up), and make sure our
 * join itself is allowed by the resulting state.
 */
async function authoriseState(version: RoomVersion, state: IncomingEvent[], authChain: IncomingEvent[], join: IncomingEvent): Promise<IncomingEvent[]> {
  const all = new Map<string, IncomingEvent>();
  for (const e of [...authChain, ...state]) all.set(e.eventId, e);
  const ok = new Set<string>();
  const create = [...all.values()].find((e) => e.pdu.type === 'm.room.create' && e.pdu.state_key === '');
  const ordered = [...all.values()].sort((a, b) => a.pdu.depth - b.pdu.depth || a.pdu.origin_server_ts - b.pdu.origin_server_ts);
  let turnStart = performance.now();
  for (const e of ordered) {
    if (performance.now() - turnStart > MAX_BLOCK_MS) {
      await nextTurn();
      turnStart = performance.now();
    }
    const authState: StateMap = new Map();
    let complete = true;
    for (const id of authEventIds(e.pdu)) {
      const a = all.get(id);
      if (!a || !ok.has(id)) { complete = false; break; }
      authState.set(stateKeyOf(a.pdu.type, a.pdu.state_key ?? ''), a.pdu);
    }
    if (!complete) continue;
    if (create && version.roomIdIsCreateEventHash && e !== create) authState.set(stateKeyOf('m.room.create', ''), create.pdu);
    try {
      checkEventAuth(e.pdu, authState, version);
      ok.add(e.eventId);
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
    }
  }
  const accepted = state.filter((e) => ok.has(e.eventId));
  const current: StateMap = new Map();
  for (const e of accepted) current.set(stateKeyOf(e.pdu.type, e.pdu.state_key ?? ''), e.pdu);
  try {
    checkEventAuth(join.pdu, current, version);
  } catch (err) {
    if (err instanceof AuthError) throw new MatrixError('M_FORBIDDEN', 403, `The room's state does not allow this join: ${err.message}`);
    throw err;
  }
  return accepted;
}

/**
 * Knock on a room that lives on other servers (make_knock/send_knock); the
 * knock is kept with the stripped state the resident server returns, so
 * the room shows in the user's /sync under `knock`.
 */
export async function knockRemoteRoom(ctx: Context, req: RemoteJoinRequest): Promise<void> {
  const candidates = [...new Set(req.servers)].filter((s) => s !== ctx.config.server_name);
  if (candidates.length === 0) throw new MatrixError('M_NOT_FOUND', 404, 'No server to knock through');
  let lastError: unknown;
  for (const server of candidates) {
    try {
      const client = ctx.federation.client;
      const template = await client.request<{ event?: unknown; room_version?: unknown }>(server, {
        method: 'GET',
        path: `/_matrix/federation/v1/make_knock/${encodeURIComponent(req.roomId)}/${encodeURIComponent(req.userId)}`,
        query: { ver: SUPPORTED_ROOM_VERSIONS },
      });
      const version = getRoomVersion(typeof template.room_version === 'string' ? template.room_version : '');
      if (!version || !version.knockJoinRule) throw new MatrixError('M_UNSUPPORTED_ROOM_VERSION', 400, 'The room version does not support knocking');
      if (!isObject(template.event)) throw new MatrixError('M_UNKNOWN', 502, `${server} sent an invalid knock template`);
      const { eventId, pdu } = signJoin(ctx, version, template.event, req, 'knock');
      const res = await client.request<{ knock_room_state?: unknown }>(server, {
        method: 'PUT', path: `/_matrix/federation/v1/send_knock/${encodeURIComponent(req.roomId)}/${encodeURIComponent(eventId)}`, body: pdu,
      });
      const state = Array.isArray(res.knock_room_state) ? res.knock_room_state.filter(isObject).slice(0, 50) : [];
      await storeRemoteMembership(ctx, req.roomId, eventId, pdu, 'knock', { knock_room_state: state });
      return;
    } catch (err) {
      lastError = err;
      if (err instanceof FederationRequestError && err.status === 403) throw new MatrixError('M_FORBIDDEN', 403, `${server} refused the knock`);
      if (err instanceof MatrixError && err.status < 500) throw err;
    }
  }
  if (lastError instanceof FederationRequestError && lastError.status === 404) throw new MatrixError('M_NOT_FOUND', 404, 'No server we asked knows this room');
  throw new MatrixError('M_UNKNOWN', 502, `Could not knock through ${candidates.join(', ')}`);
}
