import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logging.js';
import type { Metrics } from './metrics.js';

export interface MetricsListener {
  /** Base URL, e.g. http://127.0.0.1:9090 (the real port when metrics_port is 0); scrape `${url}/metrics`. */
  url: string;
  close(): Promise<void>;
}

/**
 * Serve GET /metrics on a listener of its own, apart from the client and
 * federation APIs: it can then be bound to a private address, and a scrape
 * never waits behind (or counts as) API traffic.
 */
export async function startMetricsListener(metrics: Metrics, host: string, port: number, log: Logger): Promise<MetricsListener> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found; metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('Method not allowed\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        log.error({ err }, 'metrics: collection failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('Metrics collection failed\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shown = addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address === '::' ? '::1' : addr.address;
  const url = `http://${shown.includes(':') ? `[${shown}]` : shown}:${addr.port}`;
  log.info({ url: `${url}/metrics` }, 'metrics listener started');
  let closing: Promise<void> | undefined;
  return {
    url,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A scraper's keep-alive connection would hold close() open until it times out.
        server.closeAllConnections();
      })),
  };
}
