/**
 * Server-server API routes (/_matrix/federation, /_matrix/key).
 *
 * SCAFFOLD: the keys/auth work item adds /version and the key routes here.
 */
import type { FastifyInstance } from 'fastify';
import type { Context } from '../server/services.js';

export function registerFederationRoutes(app: FastifyInstance, ctx: Context): void {
  void app;
  void ctx;
}
