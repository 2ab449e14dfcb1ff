import type { FastifyInstance } from 'fastify';
import { ROOM_VERSIONS } from '../core/room-versions.js';
import { notFound } from './errors.js';
import type { Context } from './services.js';

/** /versions, .well-known and /capabilities: what a client asks before logging in. */
export function registerDiscoveryRoutes(app: FastifyInstance, ctx: Context): void {
  const { config } = ctx;

  app.get('/_matrix/client/versions', async () => ({
    versions: ['r0.6.1', 'v1.1', 'v1.2', 'v1.3', 'v1.4', 'v1.5', 'v1.6', 'v1.7', 'v1.8', 'v1.9', 'v1.10', 'v1.11'],
    unstable_features: {},
  }));

  app.get('/.well-known/matrix/client', async () => ({
    'm.homeserver': { base_url: config.well_known_client || config.public_baseurl },
  }));

  app.get('/.well-known/matrix/server', async () => {
    if (!config.well_known_server) throw notFound('No .well-known/matrix/server configured');
    return { 'm.server': config.well_known_server };
  });

  app.get('/_matrix/client/v3/capabilities', async (req) => {
    const who = await ctx.tokens.authenticate(req);
    const available: Record<string, string> = {};
    for (const v of Object.values(ROOM_VERSIONS)) available[v.id] = v.stable ? 'stable' : 'unstable';
    return {
      capabilities: {
        'm.room_versions': { default: config.default_room_version, available },
        'm.change_password': { enabled: true },
        'm.set_displayname': { enabled: true },
        'm.set_avatar_url': { enabled: true },
        'm.3pid_changes': { enabled: false },
        'm.get_login_token': { enabled: false },
        // Server admins may lock and suspend accounts (/admin/lock, /admin/suspend); omitted for others.
        ...(who.isAdmin ? { 'm.account_moderation': { lock: true, suspend: true } } : {}),
      },
    };
  });
}
