import { readFile } from 'node:fs/promises';
import type { AddressInfo, Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/config.js';
import { buildApp } from './app.js';
import { createLogger, type Logger } from './logging.js';
import { createContext, type Context } from './services.js';
import { startMetricsListener, type MetricsListener } from './metrics-listener.js';

export interface RunningServer {
  app: FastifyInstance;
  ctx: Context;
  /** Base URL the listener is reachable at, without a trailing slash (the real port when config.port is 0). */
  url: string;
  /** Base URL of the TLS listener (https://127.0.0.1:<port>) when `federation_tls_port` is set. */
  federationUrl?: string;
  /** Base URL of the Prometheus listener (scrape `${metricsUrl}/metrics`) when metrics_enabled. */
  metricsUrl?: string;
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
  // Read the TLS files before opening storage, so a bad path fails fast and leaves nothing open.
  // Port 0 with a certificate and key means "any free port" (tests); without them, no listener.
  const wantTls = config.federation_tls_port > 0 || (config.federation_tls_cert !== '' && config.federation_tls_key !== '');
  const tls = wantTls ? await readTlsFiles(config) : undefined;
  const ctx = await createContext(config, log);
  const listeners: Listener[] = [];
  let metricsListener: MetricsListener | undefined;
  try {
    const app = await buildApp(ctx);
    listeners.push(prepareListener(app));
    await app.listen({ host: config.address, port: config.port });
    if (tls) {
      // The same routes and context over TLS, for federation without a reverse proxy.
      const tlsApp = await buildApp(ctx, { https: tls });
      listeners.push(prepareListener(tlsApp));
      await tlsApp.listen({ host: config.address, port: config.federation_tls_port });
    }
    if (ctx.metrics) metricsListener = await startMetricsListener(ctx.metrics, config.metrics_address, config.metrics_port, log);
  } catch (err) {
    await Promise.allSettled(listeners.map((l) => l.app.close()));
    await ctx.close().catch(() => {});
    throw err;
  }

  const app = listeners[0].app;
  const url = listenerUrl('http', app);
  const federationUrl = listeners[1] ? listenerUrl('https', listeners[1].app) : undefined;
  // With port 0 the derived public_baseurl names port 0; point it at the real listener.
  if (config.port === 0 && /:0\/$/.test(config.public_baseurl)) {
    ctx.config.public_baseurl = config.public_baseurl.replace(/:0\/$/, `:${(app.server.address() as AddressInfo).port}/`);
  }

  let closing: Promise<void> | undefined;
  const close = () => (closing ??= shutdown(listeners, ctx, metricsListener));
  const metricsUrl = metricsListener?.url;
  return { app, ctx, url, ...(federationUrl ? { federationUrl } : {}), ...(metricsUrl ? { metricsUrl } : {}), close };
}

interface Listener {
  app: FastifyInstance;
  conns: Connections;
}

/** Request logging and metrics are the app's (app.ts), so both listeners get them. */
function prepareListener(app: FastifyInstance): Listener {
  const conns = trackConnections(app);
  return { app, conns };
}

function listenerUrl(scheme: 'http' | 'https', app: FastifyInstance): string {
  const addr = app.server.address() as AddressInfo;
  // A wildcard bind is reachable on loopback; report that, since it is what a local client can use.
  const host = addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address === '::' ? '::1' : addr.address;
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
}

/** The PEM certificate chain and key of the TLS listener; each option is required and must be readable. */
async function readTlsFiles(config: Config): Promise<{ cert: string; key: string }> {
  const read = async (option: 'federation_tls_cert' | 'federation_tls_key'): Promise<string> => {
    const file = config[option];
    if (!file) throw new Error(`federation_tls_port is set, so ${option} (path to a PEM file) is required`);
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      throw new Error(`${option}: cannot read ${file}: ${(err as Error).message}`);
    }
  };
  return { cert: await read('federation_tls_cert'), key: await read('federation_tls_key') };
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

async function shutdown(listeners: Listener[], ctx: Context, metricsListener?: MetricsListener): Promise<void> {
  // Stop listening first (new requests get refused or 503), then wake every
  // long-poll so it answers now instead of at its timeout. A /sync that
  // waits again after waking is woken again until the server is closed, and
  // each connection is dropped as soon as it has no response in progress.
  const httpClosed = Promise.all([...listeners.map((l) => l.app.close()), metricsListener?.close()]);
  const nudge = () => {
    ctx.notifier.wakeAll();
    for (const l of listeners) l.conns.dropIdle();
  };
  const waker = setInterval(nudge, 25);
  nudge();
  const cut = setTimeout(() => {
    for (const l of listeners) l.app.server.closeAllConnections();
  }, SHUTDOWN_GRACE_MS);
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
