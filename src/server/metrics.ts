/**
 * Prometheus metrics (metrics_enabled). prom-client is imported only when
 * metrics are on: a server without them should not pay its memory, so this
 * module imports nothing but types at load time.
 */
import { readFile, statfs } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Config } from '../config/config.js';
import { scrubUrl } from './logging.js';
import type { Context } from './services.js';

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route'>;
  syncInFlight: Gauge;
  eventsPersisted: Counter<'origin'>;
  /** For the database's query hook: one observation per query, in seconds. */
  observeQuery: (seconds: number) => void;
  /** Start the gauges that read the running server (queues, caches, disk); call once the context is complete. */
  watch(ctx: Context): void;
}

/** Beyond this many destinations, the rest are summed into destination="other" so a busy federation cannot blow up the series count. */
export const MAX_DESTINATION_LABELS = 50;

/** Route label of requests no route matched (404/405): the raw URL must never become a label. */
export const UNMATCHED_ROUTE = 'unmatched';

const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const DB_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];

export async function createMetrics(config: Pick<Config, 'data_dir'>): Promise<Metrics> {
  const prom = await import('prom-client');
  const version = (JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  // A registry per server, not prom-client's global one: tests run several servers in one process.
  const registry = new prom.Registry();
  const registers = [registry];
  prom.collectDefaultMetrics({ register: registry, prefix: 'ranvier_', eventLoopMonitoringPrecision: 10 });

  new prom.Gauge({ name: 'ranvier_build_info', help: 'Always 1; the version label names the running build.', labelNames: ['version'], registers })
    .set({ version }, 1);
  const httpRequests = new prom.Counter({
    name: 'ranvier_http_requests_total', help: 'HTTP requests answered, by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const, registers,
  });
  const httpDuration = new prom.Histogram({
    name: 'ranvier_http_request_duration_seconds', help: 'Time to answer HTTP requests (long-polls included), by method and route pattern.',
    labelNames: ['method', 'route'] as const, buckets: HTTP_BUCKETS, registers,
  });
  const syncInFlight = new prom.Gauge({ name: 'ranvier_sync_in_flight', help: '/sync requests being answered or waiting for news.', registers });
  const eventsPersisted = new prom.Counter({
    name: 'ranvier_events_persisted_total', help: 'Room events persisted into the timeline, by origin (local or remote).',
    labelNames: ['origin'] as const, registers,
  });
  const dbQuery = new prom.Histogram({ name: 'ranvier_db_query_duration_seconds', help: 'Database query time.', buckets: DB_BUCKETS, registers });
  new prom.Gauge({
    name: 'ranvier_disk_free_bytes', help: 'Free space available to the server on the disk holding data_dir.', registers,
    async collect() {
      try {
        const s = await statfs(config.data_dir);
        this.set(s.bavail * s.bsize);
      } catch {
        // data_dir gone or unreadable: report nothing rather than a stale or made-up value.
        this.reset();
      }
    },
  });

  return {
    registry,
    httpRequests,
    httpDuration,
    syncInFlight,
    eventsPersisted,
    observeQuery: (seconds) => dbQuery.observe(seconds),
    watch(ctx) {
      new prom.Gauge({
        name: 'ranvier_federation_queue_pending', help: `Items queued for each federation destination (top ${MAX_DESTINATION_LABELS}; the rest summed as "other").`,
        labelNames: ['destination'] as const, registers,
        collect() {
          this.reset();
          for (const [destination, d] of cappedDestinations(ctx)) this.set({ destination }, d.pending);
        },
      });
      new prom.Gauge({
        name: 'ranvier_federation_send_failures', help: 'Consecutive failed sends to each federation destination (0 again after a success).',
        labelNames: ['destination'] as const, registers,
        collect() {
          this.reset();
          for (const [destination, d] of cappedDestinations(ctx)) if (d.failures > 0) this.set({ destination }, d.failures);
        },
      });
      new prom.Gauge({
        name: 'ranvier_cache_entries', help: 'Entries held by each in-memory cache.', labelNames: ['cache'] as const, registers,
        collect() {
          this.set({ cache: 'event' }, ctx.rooms.events.cacheSize);
          this.set({ cache: 'state_group' }, ctx.rooms.state.cacheSize);
          this.set({ cache: 'recent_events' }, ctx.rooms.recent.cacheSize);
          this.set({ cache: 'access_token' }, ctx.tokens.cacheSize);
        },
      });
    },
  };
}

/** Per-destination queue figures, the busiest MAX_DESTINATION_LABELS by name and everything else summed as "other". */
function cappedDestinations(ctx: Context): Map<string, { pending: number; failures: number }> {
  const all = ctx.federation.sender.destinations().sort((a, b) => b.pending - a.pending || b.failures - a.failures);
  const out = new Map<string, { pending: number; failures: number }>();
  for (const d of all.slice(0, MAX_DESTINATION_LABELS)) out.set(d.destination, { pending: d.pending, failures: d.failures });
  const rest = all.slice(MAX_DESTINATION_LABELS);
  if (rest.length > 0) {
    out.set('other', { pending: rest.reduce((n, d) => n + d.pending, 0), failures: rest.reduce((n, d) => n + d.failures, 0) });
  }
  return out;
}

/**
 * Count and time every response, and write the request log line
 * (log_requests). Labels use the route pattern, never the URL, so ids and
 * tokens stay out of the metrics; the log has the path with tokens redacted.
 */
export function observeRequests(app: FastifyInstance, ctx: Context): void {
  const metrics = ctx.metrics;
  const logRequests = ctx.config.log_requests;
  if (!metrics && !logRequests) return;
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? UNMATCHED_ROUTE;
    const ms = reply.elapsedTime;
    if (metrics) {
      metrics.httpRequests.inc({ method: req.method, route, status: reply.statusCode });
      metrics.httpDuration.observe({ method: req.method, route }, ms / 1000);
    }
    if (logRequests) {
      const line: Record<string, unknown> = { method: req.method, route, path: scrubUrl(req.url), status: reply.statusCode, ms: Math.round(ms) };
      if (req.requesterId) line.user = req.requesterId;
      ctx.log.info(line, 'request');
    }
  });
}
