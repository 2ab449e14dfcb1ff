/**
 * The Synapse-compatible admin API (/_synapse/admin/...), so existing admin
 * tools (synadm, synapse-admin) work against Ranvier. Each area registers its
 * routes here; every route starts with requireServerAdmin.
 */
import type { FastifyInstance } from 'fastify';
import type { Context } from '../server/services.js';
import { registerAdminMediaRoutes } from './media-routes.js';

export function registerAdminRoutes(app: FastifyInstance, ctx: Context): void {
  registerAdminMediaRoutes(app, ctx);
}
