/**
 * Server notices (Synapse's docs/admin_api/server_notices.md): messages from
 * the server to one local user, sent by a system account into a room the
 * server keeps for that user and tags m.server_notice (spec: server
 * notices), so clients show it apart from normal chats.
 *
 *   POST /_synapse/admin/v1/send_server_notice          {"user_id", "content", "type"?, "state_key"?}
 *   PUT  /_synapse/admin/v1/send_server_notice/{txnId}  the same, idempotent per admin device
 *        -> {"event_id"}
 *
 * The system account @server:<server_name> is created on first use without
 * a password or devices, so nobody can log in as it.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Requester } from '../accounts/tokens.js';
import { serverNameOf } from '../core/identifiers.js';
import { MatrixError, missingParam, notFound } from '../server/errors.js';
import { KeyedMutex } from '../server/mutex.js';
import type { Context } from '../server/services.js';
import { jsonObject } from '../server/validate.js';
import type { TxnKey } from '../rooms/send.js';
import { requireServerAdmin } from './auth.js';
import { V1 } from './params.js';

export const SERVER_NOTICES_LOCALPART = 'server';
const ROOM_NAME = 'Server Notices';
const NOTICE_TAG = 'm.server_notice';

const bodySchema = z.object({
  user_id: z.string(),
  content: jsonObject,
  type: z.string().min(1).max(255).optional(),
  state_key: z.string().max(255).optional(),
});

/** The user's server-notices room, if one was made (the user may have left it since). */
export async function serverNoticesRoom(ctx: Context, userId: string): Promise<string | undefined> {
  const row = await ctx.storage.db.selectFrom('server_notice_rooms').select('room_id').where('user_id', '=', userId).executeTakeFirst();
  return row?.room_id;
}

export class ServerNotices {
  /** One room creation per user at a time, so concurrent notices share a room. */
  private locks = new KeyedMutex();

  constructor(private readonly ctx: Context) {}

  get systemUserId(): string {
    return `@${SERVER_NOTICES_LOCALPART}:${this.ctx.config.server_name}`;
  }

  /** The system account, created on first use; refuses to speak as a real (password) account of the same name. */
  private async ensureSystemUser(): Promise<string> {
    const userId = this.systemUserId;
    const db = this.ctx.storage.db;
    await db.insertInto('users').values({
      user_id: userId, password_hash: null, is_admin: 0, is_guest: 0, deactivated: 0,
      created_ts: Date.now(), displayname: ROOM_NAME, avatar_url: null,
    }).onConflict((oc) => oc.column('user_id').doNothing()).execute();
    const row = await db.selectFrom('users').select(['password_hash', 'deactivated']).where('user_id', '=', userId).executeTakeFirstOrThrow();
    if (row.password_hash !== null || row.deactivated) {
      throw new MatrixError('M_UNKNOWN', 500, `${userId} is a normal account: server notices cannot be sent from it`);
    }
    return userId;
  }

  /** The user's notices room: the one already made (re-inviting a user who left) or a new one. */
  async roomFor(userId: string): Promise<string> {
    return this.locks.run(userId, async () => {
      const system = await this.ensureSystemUser();
      const db = this.ctx.storage.db;
      const known = await serverNoticesRoom(this.ctx, userId);
      if (known && (await this.ctx.rooms.membership(known, system)) === 'join') {
        const m = await this.ctx.rooms.membership(known, userId);
        if (m !== 'join' && m !== 'invite') {
          await this.ctx.rooms.changeMembership({ roomId: known, sender: system, target: userId, membership: 'invite' });
        }
        return known;
      }
      const { room_id: roomId } = await this.ctx.rooms.createRoom(system, {
        preset: 'private_chat',
        name: ROOM_NAME,
        invite: [userId],
        // The user reads notices; only the server writes.
        power_level_content_override: { users_default: -10 },
      });
      await db.deleteFrom('server_notice_rooms').where('user_id', '=', userId).execute();
      await db.insertInto('server_notice_rooms').values({ user_id: userId, room_id: roomId }).execute();
      await this.ctx.accounts.updateAccountData(userId, roomId, 'm.tag', (current) => {
        const tags = current && typeof current.tags === 'object' && current.tags !== null ? (current.tags as Record<string, unknown>) : {};
        return { ...(current ?? {}), tags: { ...tags, [NOTICE_TAG]: { order: 0.5 } } };
      });
      return roomId;
    });
  }

  async send(userId: string, type: string, content: Record<string, unknown>, stateKey?: string, txn?: TxnKey): Promise<string> {
    const roomId = await this.roomFor(userId);
    const system = this.systemUserId;
    if (txn) {
      const prior = await this.ctx.rooms.findTxnEvent(roomId, system, txn);
      if (prior) return prior.pdu.event_id;
    }
    const ev = await this.ctx.rooms.send({ roomId, sender: system, type, content, stateKey, txn });
    return ev.pdu.event_id;
  }
}

export function registerAdminNoticeRoutes(app: FastifyInstance, ctx: Context): void {
  const notices = new ServerNotices(ctx);

  const handle = async (req: FastifyRequest, who: Requester, txnId?: string) => {
    const raw = (req.body ?? {}) as Record<string, unknown>;
    if (raw.user_id === undefined || raw.content === undefined) throw missingParam('Missing params: user_id, content');
    const r = bodySchema.safeParse(raw);
    if (!r.success) throw new MatrixError('M_BAD_JSON', 400, `${r.error.issues[0].path.join('.') || 'body'}: ${r.error.issues[0].message}`);
    const body = r.data;
    if (serverNameOf(body.user_id) !== ctx.config.server_name) {
      throw new MatrixError('M_UNKNOWN', 400, 'Server notices can only be sent to local users');
    }
    const user = await ctx.storage.db.selectFrom('users').select(['user_id', 'deactivated']).where('user_id', '=', body.user_id).executeTakeFirst();
    if (!user) throw notFound(`Unknown user ${body.user_id}`);
    if (user.deactivated) throw new MatrixError('M_UNKNOWN', 400, `${body.user_id} is deactivated`);
    const type = body.type ?? 'm.room.message';
    // Retries are recognised per admin device and transaction id, like a client's /send.
    const txn = txnId === undefined ? undefined : { deviceId: `${who.userId}|${who.deviceId}`, txnId, scope: `server_notice/${type}` };
    return { event_id: await notices.send(body.user_id, type, body.content, body.state_key, txn) };
  };

  app.post(`${V1}/send_server_notice`, async (req) => handle(req, await requireServerAdmin(ctx, req)));
  app.put(`${V1}/send_server_notice/:txnId`, async (req) => {
    const who = await requireServerAdmin(ctx, req);
    return handle(req, who, (req.params as Record<string, string>).txnId);
  });
}
