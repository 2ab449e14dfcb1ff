/**
 * `ranvier user reset-password|deactivate|make-admin`: account changes made
 * straight in the database. They throw an Error whose message is for the
 * operator; src/main.ts prints and maps them to exit codes.
 *
 * A server that is running keeps access tokens it has already checked in
 * its in-memory cache, so revoked tokens may keep working there until it
 * restarts (the admin API, running inside the server, has no such delay).
 */
import type { Context } from '../server/services.js';

async function existingUser(ctx: Context, userId: string): Promise<{ is_admin: boolean; deactivated: boolean }> {
  const row = await ctx.storage.db.selectFrom('users').select(['is_admin', 'deactivated']).where('user_id', '=', userId).executeTakeFirst();
  if (!row) throw new Error(`no such user ${userId}`);
  return { is_admin: !!row.is_admin, deactivated: !!row.deactivated };
}

export async function resetPassword(ctx: Context, userId: string, password: string): Promise<void> {
  const user = await existingUser(ctx, userId);
  if (user.deactivated) throw new Error(`${userId} is deactivated`);
  await ctx.accounts.resetPassword(userId, password);
}

/** Returns false when the account was already deactivated (nothing to do). */
export async function deactivate(ctx: Context, userId: string): Promise<boolean> {
  const user = await existingUser(ctx, userId);
  if (user.deactivated) return false;
  await ctx.accounts.deactivateUser(userId);
  return true;
}

/** Returns false when the flag already had that value. */
export async function setAdmin(ctx: Context, userId: string, admin: boolean): Promise<boolean> {
  const user = await existingUser(ctx, userId);
  if (user.is_admin === admin) return false;
  if (admin && user.deactivated) throw new Error(`${userId} is deactivated`);
  await ctx.storage.db.updateTable('users').set({ is_admin: admin ? 1 : 0 }).where('user_id', '=', userId).execute();
  return true;
}
