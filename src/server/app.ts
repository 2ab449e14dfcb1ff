import Fastify, { type FastifyInstance, type FastifyError } from 'fastify';
import FindMyWay, { type HTTPMethod } from 'find-my-way';
import { MatrixError } from './errors.js';
import type { Context } from './services.js';
import { registerAllRoutes } from './routes.js';
import { observeRequests } from './metrics.js';

/**
 * Writes refused with 507 M_RESOURCE_LIMIT_EXCEEDED when disk space is low
 * (see disk-guard.ts), as `METHOD route-template`. Federation transactions
 * are included: the sending server retries them with backoff, so nothing is
 * lost, whereas accepting them could fill the disk under the database.
 */
const DISK_GUARDED_ROUTES = new Set([
  'POST /_matrix/client/v3/register',
  'POST /_matrix/client/v3/createRoom',
  'PUT /_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId',
  'PUT /_matrix/client/v3/rooms/:roomId/state/:eventType/:stateKey',
  'PUT /_matrix/client/v3/rooms/:roomId/state/:eventType',
  'PUT /_matrix/federation/v1/send/:txnId',
]);

/**
 * Build the HTTP app: JSON parsing with Matrix errors, CORS, r0 aliases,
 * error mapping and the 404/405 fallbacks. Domain routes are registered by
 * routes.ts.
 */
export async function buildApp(ctx: Context, opts: { https?: { cert: string; key: string } } = {}): Promise<FastifyInstance> {
  const app = Fastify({
    ...(opts.https ? { https: opts.https } : {}),
    logger: false,
    bodyLimit: ctx.config.max_request_size,
    // Legacy r0 paths are aliases of v3; old clients and bots still use them.
    rewriteUrl: (req) => {
      const url = req.url ?? '/';
      return url.startsWith('/_matrix/client/r0/') ? '/_matrix/client/v3/' + url.slice('/_matrix/client/r0/'.length) : url;
    },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1000 },
    trustProxy: true,
  });

  // Matrix bodies are JSON whatever Content-Type the client sends.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body: Buffer, done) => {
    if (body.length === 0) return done(null, undefined);
    try {
      done(null, JSON.parse(body.toString('utf8')));
    } catch {
      done(new MatrixError('M_NOT_JSON', 400, 'Content not JSON.'), undefined);
    }
  });

  app.addHook('onRequest', async (req, reply) => {
    reply.header('Access-Control-Allow-Origin', '*');
    reply.header('Access-Control-Allow-Methods', 'GET, HEAD, POST, PUT, DELETE, OPTIONS');
    reply.header('Access-Control-Allow-Headers', 'X-Requested-With, Content-Type, Authorization, Date');
    reply.header('Access-Control-Expose-Headers', 'Synapse-Trace-Id, Server, ETag');
    if (req.method === 'OPTIONS') {
      reply.code(204).send();
    }
  });

  // While data_dir's disk is nearly full, refuse the writes that make data
  // grow (uploads are refused by the media service). Before the body is
  // read, so a refused request costs nothing.
  app.addHook('onRequest', async (req) => {
    if (DISK_GUARDED_ROUTES.has(`${req.method} ${req.routeOptions.url}`)) await ctx.disk.check();
  });

  app.setErrorHandler((err: FastifyError | MatrixError | Error, req, reply) => {
    if (err instanceof MatrixError) {
      for (const [k, v] of Object.entries(err.headers)) reply.header(k, v);
      return reply.code(err.status).send(err.toJSON());
    }
    const code = (err as FastifyError).code;
    if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send({ errcode: 'M_TOO_LARGE', error: 'Request body too large' });
    }
    if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') {
      return reply.code(400).send({ errcode: 'M_NOT_JSON', error: err.message });
    }
    const status = (err as FastifyError).statusCode;
    if (status && status >= 400 && status < 500) {
      return reply.code(status).send({ errcode: 'M_UNKNOWN', error: err.message });
    }
    ctx.log.error({ err, url: req.url.split('?')[0], method: req.method }, 'request failed');
    return reply.code(500).send({ errcode: 'M_UNKNOWN', error: 'Internal server error' });
  });

  // A shadow router of every route, only to tell 405 (known path, wrong
  // method) from 404 (unknown path) as the spec asks.
  const shadow = FindMyWay({ ignoreTrailingSlash: true, maxParamLength: 1000 });
  app.addHook('onRoute', (route) => {
    for (const m of [route.method].flat()) {
      if (!shadow.hasRoute(m as HTTPMethod, route.url)) shadow.on(m as HTTPMethod, route.url, () => {});
    }
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0];
    const other = (['GET', 'POST', 'PUT', 'DELETE'] as const).some((m) => m !== req.method && shadow.find(m, path));
    if (other) {
      return reply.code(405).send({ errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request method' });
    }
    return reply.code(404).send({ errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' });
  });

  // Declared up front so every request object has the same shape (set by tokens.authenticate).
  app.decorateRequest('requesterId', undefined);
  observeRequests(app, ctx);
  await registerAllRoutes(app, ctx);
  return app;
}
