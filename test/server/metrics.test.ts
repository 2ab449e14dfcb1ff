import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { MAX_DESTINATION_LABELS } from '../../src/server/metrics.js';
import type { DestinationStats } from '../../src/federation/queue.js';
import { withServiceContext } from '../helpers/service-context.js';
import { find, parsePrometheusText, valueOf } from '../helpers/prom-text.js';

/** prom-client is CommonJS, so once imported its files are in the CommonJS module cache. */
const promClientLoaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes(`${path.sep}prom-client${path.sep}`));

// First in this file (its own process): nothing has imported prom-client yet.
test('metrics are off by default: no registry, and prom-client is not even loaded', async () => {
  await withServiceContext(async (ctx) => {
    assert.equal(ctx.metrics, undefined);
    await ctx.storage.db.selectFrom('users').select('user_id').execute();
    assert.equal(promClientLoaded(), false);
  });
  await withServiceContext(async (ctx) => {
    assert.ok(ctx.metrics);
    assert.equal(promClientLoaded(), true, 'the probe must see prom-client once metrics are on');
  }, { metrics_enabled: true });
});

test('federation destinations beyond the cap are summed into "other"', async () => {
  await withServiceContext(async (ctx) => {
    const metrics = ctx.metrics;
    assert.ok(metrics);
    // 60 destinations: pending 1..60, so the 50 busiest are 11..60 and "other" holds 1..10.
    const stats: DestinationStats[] = Array.from({ length: 60 }, (_, i) => ({
      destination: `s${i + 1}.example`, pending: i + 1, failures: i % 2, retryAt: null, lastError: null,
    }));
    ctx.federation.sender.destinations = () => stats.map((s) => ({ ...s }));
    const exp = parsePrometheusText(await metrics.registry.metrics());
    const pending = find(exp, 'ranvier_federation_queue_pending');
    assert.equal(pending.length, MAX_DESTINATION_LABELS + 1);
    assert.equal(valueOf(exp, 'ranvier_federation_queue_pending', { destination: 'other' }), 55);
    assert.equal(valueOf(exp, 'ranvier_federation_queue_pending', { destination: 's60.example' }), 60);
    assert.equal(find(exp, 'ranvier_federation_queue_pending', { destination: 's10.example' }).length, 0);
    // Failures: odd-indexed destinations among 1..10 (s2, s4, ... s10) fail once each.
    assert.equal(valueOf(exp, 'ranvier_federation_send_failures', { destination: 'other' }), 5);
    assert.equal(valueOf(exp, 'ranvier_federation_send_failures', { destination: 's60.example' }), 1);
    assert.equal(find(exp, 'ranvier_federation_send_failures', { destination: 's59.example' }).length, 0, 'no series for a destination without failures');

    // Once the queues drain, their series go away rather than keep stale values.
    ctx.federation.sender.destinations = () => [];
    const after = parsePrometheusText(await metrics.registry.metrics());
    assert.equal(find(after, 'ranvier_federation_queue_pending').length, 0);
  }, { metrics_enabled: true });
});

test('a context with metrics times database queries and reports caches, disk, build and process', async () => {
  await withServiceContext(async (ctx) => {
    const metrics = ctx.metrics;
    assert.ok(metrics);
    await ctx.storage.db.selectFrom('users').select('user_id').execute();
    const exp = parsePrometheusText(await metrics.registry.metrics());
    assert.equal(exp.types.get('ranvier_db_query_duration_seconds'), 'histogram');
    assert.ok(valueOf(exp, 'ranvier_db_query_duration_seconds_count') >= 1);
    assert.ok(valueOf(exp, 'ranvier_disk_free_bytes') > 0);
    assert.equal(valueOf(exp, 'ranvier_build_info', { version: '0.1.0' }), 1);
    for (const cache of ['event', 'state_group', 'recent_events', 'access_token']) {
      assert.ok(valueOf(exp, 'ranvier_cache_entries', { cache }) >= 0, cache);
    }
    assert.ok(valueOf(exp, 'ranvier_process_resident_memory_bytes') > 0);
    assert.equal(exp.types.get('ranvier_nodejs_eventloop_lag_seconds'), 'gauge');
  }, { metrics_enabled: true });
});

test('the strict parser rejects malformed exposition text', () => {
  assert.throws(() => parsePrometheusText('ranvier_x 1\n'), /before its TYPE/);
  assert.throws(() => parsePrometheusText('# TYPE ranvier_x gauge\nranvier_x{a="1" 1\n'), /not a sample|bad labels/);
  assert.throws(() => parsePrometheusText('# TYPE ranvier_x gauge\nranvier_x one\n'), /bad value/);
  assert.doesNotThrow(() => parsePrometheusText('# HELP ranvier_x A "quoted" help.\n# TYPE ranvier_x gauge\nranvier_x{a="b\\"c",d="e"} 1.5e3\n'));
});
