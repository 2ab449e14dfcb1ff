import { randomBytes } from 'node:crypto';
import { getRoomVersion } from '../core/room-versions.js';
import { isValidUserId, serverNameOf } from '../core/identifiers.js';
import { MatrixError, badJson } from '../server/errors.js';
import type { Context } from '../server/services.js';
import type { SendRequest } from './send.js';

/** Body of POST /createRoom (validated by the route). */
export interface CreateRoomBody {
  visibility?: 'public' | 'private';
  room_alias_name?: string;
  name?: string;
  topic?: string;
  invite?: string[];
  invite_3pid?: unknown[];
  room_version?: string;
  creation_content?: Record<string, unknown>;
  initial_state?: Array<{ type: string; state_key?: string; content: Record<string, unknown> }>;
  preset?: 'private_chat' | 'public_chat' | 'trusted_private_chat';
  is_direct?: boolean;
  power_level_content_override?: Record<string, unknown>;
}

const PRESETS = {
  private_chat: { join_rule: 'invite', history_visibility: 'shared', guest_access: 'can_join' },
  trusted_private_chat: { join_rule: 'invite', history_visibility: 'shared', guest_access: 'can_join' },
  public_chat: { join_rule: 'public', history_visibility: 'shared', guest_access: 'forbidden' },
} as const;

/**
 * Create a room the way the spec orders it: create event, creator's join,
 * power levels, canonical alias, preset state, initial_state, name, topic,
 * then invites. Every event goes through the normal send path, so each one
 * is checked against the authorization rules like any other.
 */
export async function createRoom(ctx: Context, userId: string, body: CreateRoomBody): Promise<{ room_id: string }> {
  const versionId = body.room_version ?? ctx.config.default_room_version;
  const version = getRoomVersion(versionId);
  if (!version) throw new MatrixError('M_UNSUPPORTED_ROOM_VERSION', 400, `Room version ${versionId} is not supported`);
  const server = ctx.config.server_name;
  const preset = body.preset ?? (body.visibility === 'public' ? 'public_chat' : 'private_chat');
  const invites = [...new Set(body.invite ?? [])];

  // Validate everything that can fail before the room exists.
  for (const u of invites) {
    if (!isValidUserId(u)) throw new MatrixError('M_INVALID_PARAM', 400, `Invalid user id ${u}`);
    if (serverNameOf(u) !== server) throw new MatrixError('M_FORBIDDEN', 403, `Cannot invite ${u}: federation is not available on this server yet`);
    const exists = await ctx.storage.db.selectFrom('users').select('user_id').where('user_id', '=', u).executeTakeFirst();
    if (!exists) throw new MatrixError('M_NOT_FOUND', 404, `Unknown user ${u}`);
  }
  let alias: string | undefined;
  if (body.room_alias_name !== undefined) {
    if (!/^[^:\s#]+$/.test(body.room_alias_name)) throw new MatrixError('M_INVALID_PARAM', 400, 'Invalid room_alias_name');
    alias = `#${body.room_alias_name}:${server}`;
    const taken = await ctx.storage.db.selectFrom('room_aliases').select('alias').where('alias', '=', alias).executeTakeFirst();
    if (taken) throw new MatrixError('M_ROOM_IN_USE', 400, 'Room alias already taken');
  }
  for (const ev of body.initial_state ?? []) {
    if (ev.type === 'm.room.create') throw new MatrixError('M_INVALID_ROOM_STATE', 400, 'initial_state may not contain m.room.create');
  }

  // 1. m.room.create
  const creation: Record<string, unknown> = { ...(body.creation_content ?? {}), room_version: version.id };
  if (!version.msc2175ImpliedCreator) creation.creator = userId; else delete creation.creator;
  if (preset === 'trusted_private_chat' && version.additionalCreators && invites.length) {
    const extra = Array.isArray(creation.additional_creators) ? (creation.additional_creators as unknown[]) : [];
    creation.additional_creators = [...new Set([...extra, ...invites])];
  }
  const oldStyleRoomId = version.roomIdIsCreateEventHash ? undefined : `!${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}:${server}`;
  const create = await ctx.rooms.sendCreateEvent(version, userId, creation, oldStyleRoomId, body.visibility === 'public' ? 'public' : 'private');
  const roomId = create.pdu.room_id;

  const send = (req: Omit<SendRequest, 'roomId' | 'sender'>) => ctx.rooms.send({ roomId, sender: userId, ...req });

  // 2. creator joins
  const profile = await ctx.accounts.getProfile(userId);
  const join: Record<string, unknown> = { membership: 'join' };
  if (profile.displayname != null) join.displayname = profile.displayname;
  if (profile.avatar_url != null) join.avatar_url = profile.avatar_url;
  await send({ type: 'm.room.member', stateKey: userId, content: join });

  // 3. power levels
  const users: Record<string, number> = {};
  if (!version.additionalCreators) {
    users[userId] = 100;
    if (preset === 'trusted_private_chat') for (const u of invites) users[u] = 100;
  }
  const powerLevels: Record<string, unknown> = {
    users,
    users_default: 0,
    events: {
      'm.room.name': 50, 'm.room.power_levels': 100, 'm.room.history_visibility': 100,
      'm.room.canonical_alias': 50, 'm.room.avatar': 50,
      'm.room.tombstone': version.additionalCreators ? 150 : 100,
      'm.room.server_acl': 100, 'm.room.encryption': 100,
    },
    events_default: 0,
    state_default: 50,
    ban: 50,
    kick: 50,
    redact: 50,
    invite: preset === 'public_chat' ? 50 : 0,
    notifications: { room: 50 },
    ...(body.power_level_content_override ?? {}),
  };
  await send({ type: 'm.room.power_levels', stateKey: '', content: powerLevels });

  // 4. canonical alias
  if (alias) {
    await ctx.storage.db.insertInto('room_aliases').values({ alias, room_id: roomId, creator: userId, created_ts: Date.now() }).execute();
    await send({ type: 'm.room.canonical_alias', stateKey: '', content: { alias } });
  }

  // 5. preset (initial_state wins for the same keys)
  const initial = body.initial_state ?? [];
  const overridden = new Set(initial.map((e) => `${e.type}|${e.state_key ?? ''}`));
  const p = PRESETS[preset];
  const presetEvents: Array<[string, Record<string, unknown>]> = [
    ['m.room.join_rules', { join_rule: p.join_rule }],
    ['m.room.history_visibility', { history_visibility: p.history_visibility }],
    ['m.room.guest_access', { guest_access: p.guest_access }],
  ];
  const encryptByDefault = ctx.config.encryption_enabled_by_default_for_room_type;
  if (encryptByDefault === 'all' || (encryptByDefault === 'invite' && preset !== 'public_chat')) {
    presetEvents.push(['m.room.encryption', { algorithm: 'm.megolm.v1.aes-sha2' }]);
  }
  for (const [type, content] of presetEvents) {
    if (!overridden.has(`${type}|`)) await send({ type, stateKey: '', content });
  }

  // 6. initial_state
  for (const ev of initial) {
    if (typeof ev.content !== 'object' || ev.content === null) throw badJson('initial_state content must be an object');
    await send({ type: ev.type, stateKey: ev.state_key ?? '', content: ev.content });
  }

  // 7. name and topic
  if (body.name !== undefined) await send({ type: 'm.room.name', stateKey: '', content: { name: body.name } });
  if (body.topic !== undefined) {
    await send({ type: 'm.room.topic', stateKey: '', content: { topic: body.topic, 'm.topic': [{ mimetype: 'text/plain', body: body.topic }] } });
  }

  // 8. invites
  for (const u of invites) {
    await ctx.rooms.changeMembership({ roomId, sender: userId, target: u, membership: 'invite', isDirect: body.is_direct });
  }
  return { room_id: roomId };
}
