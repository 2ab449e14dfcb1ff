/**
 * Room server ACLs applied to federation traffic: whether a server may act
 * in a room under the room's current m.room.server_acl.
 */
import { serverAclAllows } from '../core/server-acl.js';
import { forbidden } from '../server/errors.js';
import type { Context } from '../server/services.js';

export async function roomAllowsServer(ctx: Context, roomId: string, server: string): Promise<boolean> {
  const acl = await ctx.rooms.state.stateEvent(roomId, 'm.room.server_acl');
  return serverAclAllows(acl?.pdu.content, server);
}

/** 403 M_FORBIDDEN when the room's ACL denies `server` (the spec's answer on protected endpoints). */
export async function requireRoomAllowsServer(ctx: Context, roomId: string, server: string): Promise<void> {
  if (!(await roomAllowsServer(ctx, roomId, server))) throw forbidden(`Server ${server} is denied by the room's server ACL`);
}
