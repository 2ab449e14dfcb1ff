import type { FastifyInstance } from 'fastify';
import type { Context } from './services.js';
import { registerDiscoveryRoutes } from './discovery-routes.js';
import { registerAccountRoutes } from '../accounts/routes.js';
import { registerRoomRoutes } from '../rooms/routes.js';
import { registerHierarchyRoutes } from '../rooms/hierarchy.js';
import { registerOpenIdRoutes } from '../accounts/openid.js';
import { registerSyncRoutes } from '../sync/routes.js';
import { registerPushRoutes } from '../push/routes.js';
import { registerToDeviceRoutes } from '../e2ee/to-device-routes.js';
import { registerKeysRoutes } from '../e2ee/keys-routes.js';
import { registerKeyBackupRoutes } from '../e2ee/key-backup-routes.js';
import { registerMediaRoutes } from '../media/routes.js';
import { registerPreviewRoutes } from '../media/preview-routes.js';
import { registerAdminRoutes } from '../admin/routes.js';
import { registerFederationRoutes } from '../federation/routes.js';
import { registerReportRoutes } from '../rooms/report-routes.js';

/** Every domain contributes its routes here. */
export async function registerAllRoutes(app: FastifyInstance, ctx: Context): Promise<void> {
  registerDiscoveryRoutes(app, ctx);
  registerAccountRoutes(app, ctx);
  registerRoomRoutes(app, ctx);
  registerReportRoutes(app, ctx);
  registerHierarchyRoutes(app, ctx);
  registerOpenIdRoutes(app, ctx);
  registerSyncRoutes(app, ctx);
  registerPushRoutes(app, ctx);
  registerToDeviceRoutes(app, ctx);
  registerKeysRoutes(app, ctx);
  registerKeyBackupRoutes(app, ctx);
  registerMediaRoutes(app, ctx);
  registerPreviewRoutes(app, ctx);
  registerAdminRoutes(app, ctx);
  registerFederationRoutes(app, ctx);
}
