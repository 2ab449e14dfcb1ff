import type { AddressInfo, Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/config.js';
import { buildApp } from './app.js';
import { createLogger, scrubUrl, type Logger } from './logging.js';
import { createContext, type Context } from './services.js';

export interface RunningServer {
  app: FastifyInstance;
  ctx: Context;
  /** Base URL the listener is reachable at, without a trailing slash (the real port when config.port is 0). */
  url: string;
  /** Stop accepting requests, end in-flight ones (long-polls are woken), then close storage. Idempotent. */
  close(): Promise<void>;
}

/** How long in-flight requests get to finish at shutdown before their connections are cut. */
const SHUTDOWN_GRACE_MS = 5_000;

/**
 * Open storage, build the app and listen on config.address:config.port.
 * Signal handling is the CLI's business (see `installShutdownHandlers`), so
 * tests can start many servers in one process.
 */
export async function startServer(config: Config, opts: { log?: Logger } = {}): Promise<RunningServer> {
  const log = opts.log ?? createLogger(config);
  const ctx = await createContext(config, log);
  let app: FastifyInstance;
  let conns: Connections;
  try {
    app = await buildApp(ctx);
    conns = trackConnections(app);
    if (log.isLevelEnabled('debug')) {
      app.addHook('onResponse', async (req, reply) => {
        log.debug({ method: req.method, url: scrubUrl(req.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
      });
    }
    await app.listen({ host: config.address, port: config.port });
  } catch (err) {
    await ctx.close().catch(() => {});
    throw err;
  }

  const addr = app.server.address() as AddressInfo;
  // A wildcard bind is reachable on loopback; report that, since it is what a local client can use.
  const host = addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address === '::' ? '::1' : addr.address;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
  // With port 0 the derived public_baseurl names port 0; point it at the real listener.
  if (config.port === 0 && /:0\/$/.test(config.public_baseurl)) {
    ctx.config.public_baseurl = config.public_baseurl.replace(/:0\/$/, `:${addr.port}/`);
  }

  let closing: Promise<void> | undefined;
  const close = () => (closing ??= shutdown(app, ctx, conns));
  return { app, ctx, url, close };
}

/**
 * Sockets of the listener and which of them are answering a request. Node's
 * server.close() keeps waiting for keep-alive connections that have not sent
 * a request yet (clients such as undici open spare ones), so at shutdown we
 * end every connection that has no response in progress.
 */
interface Connections {
  /** Destroy connections with no request in progress; returns how many remain. */
  dropIdle(): number;
}

function trackConnections(app: FastifyInstance): Connections {
  const open = new Set<Socket>();
  const busy = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => {
      open.delete(socket);
      busy.delete(socket);
    });
  });
  app.server.on('request', (req: { socket: Socket }, res: NodeJS.EventEmitter) => {
    const socket = req.socket;
    busy.add(socket);
    const done = () => busy.delete(socket);
    res.once('finish', done);
    res.once('close', done);
  });
  return {
    dropIdle() {
      for (const socket of open) if (!busy.has(socket)) socket.destroy();
      return open.size;
    },
  };
}

async function shutdown(app: FastifyInstance, ctx: Context, conns: Connections): Promise<void> {
  // Stop listening first (new requests get refused or 503), then wake every
  // long-poll so it answers now instead of at its timeout. A /sync that
  // waits again after waking is woken again until the server is closed, and
  // each connection is dropped as soon as it has no response in progress.
  const httpClosed = app.close();
  const nudge = () => {
    ctx.notifier.wakeAll();
    conns.dropIdle();
  };
  const waker = setInterval(nudge, 25);
  nudge();
  const cut = setTimeout(() => app.server.closeAllConnections(), SHUTDOWN_GRACE_MS);
  try {
    await httpClosed;
  } finally {
    clearInterval(waker);
    clearTimeout(cut);
  }
  await ctx.close();
}

/**
 * For the CLI: on SIGINT/SIGTERM close the server gracefully and exit 0; a
 * second signal exits at once.
 */
export function installShutdownHandlers(server: RunningServer, log: Logger): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    server.close().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}
