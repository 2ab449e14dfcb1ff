/**
 * Server-server API routes (/_matrix/federation, /_matrix/key): the single
 * place every federation route is registered. Authenticated routes wrap
 * their handler in withFederationAuth (auth.ts).
 */
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { forbidden } from '../server/errors.js';
import type { Context } from '../server/services.js';
import { registerKeyRoutes } from './key-routes.js';
import { registerFederationRoomRoutes } from './room-routes.js';
import { registerFederationQueryRoutes } from './query-routes.js';
import { registerFederationMediaRoutes } from '../media/federation-routes.js';
import { registerFederationOpenIdHierarchyRoutes } from './openid-hierarchy-routes.js';

// Works from src/federation (tsx) and dist/federation (built) alike.
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';

export function registerFederationRoutes(app: FastifyInstance, ctx: Context): void {
  // With federation off, refuse every federation endpoint in one place, before auth or body work.
  app.addHook('onRequest', async (req) => {
    if (!ctx.federation.policy.enabled && req.method !== 'OPTIONS' && req.url.startsWith('/_matrix/federation/')) {
      throw forbidden('Federation is disabled on this server');
    }
  });

  app.get('/_matrix/federation/v1/version', async () => ({ server: { name: 'Ranvier', version: VERSION } }));

  registerKeyRoutes(app, ctx);
  registerFederationRoomRoutes(app, ctx);
  registerFederationQueryRoutes(app, ctx);
  registerFederationMediaRoutes(app, ctx);
  registerFederationOpenIdHierarchyRoutes(app, ctx);
}
