/**
 * The Synapse-compatible admin API (/_synapse/admin/...), so existing admin
 * tools (synadm, synapse-admin) work against Ranvier. Each area registers its
 * routes here; every route starts with requireServerAdmin.
 */
import type { FastifyInstance } from 'fastify';
import type { Context } from '../server/services.js';
import { registerAdminMediaRoutes } from './media-routes.js';
import { registerAdminTokenRoutes } from './tokens-routes.js';
import { registerAdminUsersRoutes } from './users-routes.js';
import { registerAdminRegisterRoutes } from './register-routes.js';
import { registerAdminRoomsRoutes } from './rooms-routes.js';
import { registerAdminReportsRoutes } from './reports-routes.js';
import { registerAdminFederationRoutes } from './federation-routes.js';
import { registerAdminNoticeRoutes } from './notices.js';
import { registerClientAdminRoutes } from './client-admin-routes.js';

export function registerAdminRoutes(app: FastifyInstance, ctx: Context): void {
  registerAdminMediaRoutes(app, ctx);
  registerAdminTokenRoutes(app, ctx);
  registerAdminUsersRoutes(app, ctx);
  registerAdminRegisterRoutes(app, ctx);
  registerAdminRoomsRoutes(app, ctx);
  registerAdminReportsRoutes(app, ctx);
  registerAdminFederationRoutes(app, ctx);
  registerAdminNoticeRoutes(app, ctx);
  registerClientAdminRoutes(app, ctx);
}
