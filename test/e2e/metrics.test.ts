/**
 * Prometheus metrics over HTTP (their own listener, off by default) and the
 * per-request log line.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- e2e/metrics
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { Writable } from 'node:stream';
import { startTestServer, registerUser, type RegisteredUser, type TestServer } from './harness.js';
import { Api, enc, freePort, request, waitFor } from './util.js';
import { startFederation, type Federation } from './federation-harness.js';
import { createLogger } from '../../src/server/logging.js';
import { find, parsePrometheusText, valueOf, type Exposition } from '../helpers/prom-text.js';

const PASSWORD = 'hunter2 but longer';
const SEND_ROUTE = '/_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId';

/** Whether anything accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

async function scrape(url: string): Promise<Exposition> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await res.text());
}

describe('metrics listener', { timeout: 60_000 }, () => {
  test('is off by default: nothing listens on metrics_port', async () => {
    const port = await freePort();
    const srv = await startTestServer({ metrics_port: port });
    try {
      assert.equal(srv.ctx.metrics, undefined);
      assert.equal(await listening(port), false);
      // Nor does the API expose it.
      assert.equal((await request(srv.url, 'GET', '/metrics')).status, 404);
    } finally {
      await srv.close();
    }
  });

  describe('when enabled', () => {
    let srv: TestServer;
    let metricsUrl: string;
    let alice: RegisteredUser;
    let api: Api;
    let roomId: string;

    before(async () => {
      const port = await freePort();
      srv = await startTestServer({ metrics_enabled: true, metrics_port: port });
      metricsUrl = `http://127.0.0.1:${port}`;
      alice = await registerUser(srv.url, 'alice', PASSWORD);
      api = new Api(srv.url, alice.accessToken);
      roomId = (await api.ok('POST', '/createRoom', { name: 'metrics' })).room_id;
      for (let i = 0; i < 3; i++) await api.send(roomId, `hello ${i}`);
      await api.get('/rooms/!nope:localhost/state'); // an error status, with an id in the path
      await api.get('/no/such/endpoint');
    });

    after(async () => {
      await srv?.close();
    });

    test('serves valid exposition text with the request, event and database metrics', async () => {
      const exp = await scrape(metricsUrl);
      assert.equal(exp.types.get('ranvier_http_requests_total'), 'counter');
      assert.equal(valueOf(exp, 'ranvier_http_requests_total', { method: 'PUT', route: SEND_ROUTE, status: '200' }), 3);
      assert.ok(valueOf(exp, 'ranvier_http_requests_total', { method: 'POST', route: '/_matrix/client/v3/createRoom', status: '200' }) >= 1);
      assert.equal(valueOf(exp, 'ranvier_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' }), 1);
      assert.equal(valueOf(exp, 'ranvier_http_request_duration_seconds_count', { method: 'PUT', route: SEND_ROUTE }), 3);
      assert.equal(valueOf(exp, 'ranvier_http_request_duration_seconds_bucket', { method: 'PUT', route: SEND_ROUTE, le: '+Inf' }), 3);
      // No label carries a raw URL, id or token.
      for (const s of exp.samples) {
        for (const v of Object.values(s.labels)) {
          assert.ok(!v.includes('!') && !v.includes(alice.accessToken) && !v.includes('no/such'), `label value ${v} of ${s.name}`);
        }
      }
      // createRoom writes several events (create, member, power levels, ...), then three messages.
      assert.ok(valueOf(exp, 'ranvier_events_persisted_total', { origin: 'local' }) >= 6);
      assert.ok(valueOf(exp, 'ranvier_db_query_duration_seconds_count') > 10);
      assert.ok(valueOf(exp, 'ranvier_cache_entries', { cache: 'event' }) > 0);
      assert.ok(valueOf(exp, 'ranvier_disk_free_bytes') > 0);
      assert.equal(find(exp, 'ranvier_build_info').length, 1);
      assert.ok(valueOf(exp, 'ranvier_process_resident_memory_bytes') > 1e6);
      assert.equal(exp.types.get('ranvier_nodejs_eventloop_lag_seconds'), 'gauge');
      assert.equal(exp.types.get('ranvier_federation_queue_pending'), 'gauge');
      assert.equal(valueOf(exp, 'ranvier_sync_in_flight'), 0);
    });

    test('every metric the Grafana dashboard queries exists', async () => {
      const exp = await scrape(metricsUrl);
      const dashboard = await readFile(new URL('../../grafana/ranvier-dashboard.json', import.meta.url), 'utf8');
      const names = new Set(dashboard.match(/ranvier_[a-z0-9_]+/g));
      assert.ok(names.size > 10);
      for (const name of names) {
        const family = name.replace(/_(bucket|sum|count)$/, '');
        assert.ok(exp.types.has(name) || exp.types.get(family) === 'histogram', `${name} is on the dashboard but not exported`);
      }
    });

    test('counts a /sync while it long-polls', async () => {
      const since = (await api.sync()).next_batch as string;
      const polling = api.sync({ since, timeout: 10_000 });
      let exp = await scrape(metricsUrl);
      for (let i = 0; i < 100 && valueOf(exp, 'ranvier_sync_in_flight') === 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
        exp = await scrape(metricsUrl);
      }
      assert.equal(valueOf(exp, 'ranvier_sync_in_flight'), 1);
      await api.send(roomId, 'wake up');
      await polling;
      assert.equal(valueOf(await scrape(metricsUrl), 'ranvier_sync_in_flight'), 0);
    });

    test('answers 404 off /metrics and stops listening at close', async () => {
      assert.equal((await fetch(`${metricsUrl}/other`)).status, 404);
      assert.equal((await fetch(`${metricsUrl}/metrics`, { method: 'POST' })).status, 405);
    });
  });

  test('closes with the server', async () => {
    const port = await freePort();
    const srv = await startTestServer({ metrics_enabled: true, metrics_port: port });
    assert.equal(await listening(port), true);
    await srv.close();
    assert.equal(await listening(port), false);
  });
});

describe('metrics over federation', { timeout: 90_000 }, () => {
  let fed: Federation | undefined;

  after(async () => {
    await fed?.close();
  });

  test('events from another server count as remote', async () => {
    // Port 0: any free port; this test reads the registry directly (the listener is tested above).
    fed = await startFederation(['a.test', 'b.test'], () => ({ metrics_enabled: true, metrics_port: 0 }));
    const [a, b] = fed.servers;
    const alice = new Api(a.url, (await registerUser(a.url, 'alice', PASSWORD)).accessToken);
    const bob = new Api(b.url, (await registerUser(b.url, 'bob', PASSWORD)).accessToken);
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.ok('POST', `/join/${enc(roomId)}?via=a.test`, {});
    const remoteOn = async (srv: TestServer) => {
      const exp = parsePrometheusText(await srv.ctx.metrics!.registry.metrics());
      return find(exp, 'ranvier_events_persisted_total', { origin: 'remote' })[0]?.value ?? 0;
    };
    const before = await remoteOn(a);
    await bob.send(roomId, 'from b');
    await waitFor('a.test persists bob\'s message', async () => (await remoteOn(a)) > before, { timeoutMs: 15_000 });
    // a.test's own events (the room's creation) count as local.
    const exp = parsePrometheusText(await a.ctx.metrics!.registry.metrics());
    assert.ok(valueOf(exp, 'ranvier_events_persisted_total', { origin: 'local' }) >= 5);
  });
});

describe('request log', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let alice: RegisteredUser;
  const lines: Array<Record<string, unknown>> = [];
  let raw = '';

  before(async () => {
    srv = await startTestServer();
    alice = await registerUser(srv.url, 'alice', PASSWORD);
    // The harness's logger is silent; the request hook logs through ctx.log, so capture from here on.
    srv.ctx.log = createLogger({ log_level: 'info' }, new Writable({
      write(chunk: Buffer, _enc, done) {
        raw += chunk.toString('utf8');
        for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    }));
  });

  after(async () => {
    await srv?.close();
  });

  const requestLines = () => lines.filter((l) => l.msg === 'request');

  test('one line per request with route, status and user, never the token', async () => {
    const whoami = await request(srv.url, 'GET', `/_matrix/client/v3/account/whoami?access_token=${enc(alice.accessToken)}&x=1`);
    assert.equal(whoami.status, 200);
    const put = await request(srv.url, 'PUT', `/_matrix/client/v3/user/${enc(alice.userId)}/account_data/m.test`, { token: alice.accessToken, body: { a: 1 } });
    assert.equal(put.status, 200);
    const bad = await request(srv.url, 'GET', '/_matrix/client/v3/account/whoami?access_token=not-a-token');
    assert.equal(bad.status, 401);
    const login = await request(srv.url, 'POST', '/_matrix/client/v3/login', {
      body: { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'alice' }, password: PASSWORD },
    });
    assert.equal(login.status, 200);

    const logged = requestLines();
    assert.equal(logged.length, 4, JSON.stringify(logged));
    const [w, p, b, l] = logged;
    assert.equal(w.route, '/_matrix/client/v3/account/whoami');
    assert.equal(w.method, 'GET');
    assert.equal(w.status, 200);
    assert.equal(w.user, alice.userId);
    assert.equal(typeof w.ms, 'number');
    assert.match(String(w.path), /^\/_matrix\/client\/v3\/account\/whoami\?access_token=\[redacted\]&x=1$/);
    assert.equal(p.route, '/_matrix/client/v3/user/:userId/account_data/:type');
    assert.equal(p.user, alice.userId);
    assert.equal(p.status, 200);
    assert.equal(b.status, 401);
    assert.equal(b.user, undefined, 'no user for a rejected token');
    assert.equal(l.route, '/_matrix/client/v3/login');
    for (const secret of [alice.accessToken, 'not-a-token', PASSWORD, (login.body as { access_token: string }).access_token]) {
      assert.ok(!raw.includes(secret), 'a secret reached the log');
    }
  });

  test('log_requests = false writes no request lines', async () => {
    const quiet = await startTestServer({ log_requests: false });
    const seen: string[] = [];
    quiet.ctx.log = createLogger({ log_level: 'info' }, new Writable({
      write(chunk: Buffer, _enc, done) {
        seen.push(chunk.toString('utf8'));
        done();
      },
    }));
    try {
      assert.equal((await request(quiet.url, 'GET', '/_matrix/client/versions')).status, 200);
      assert.deepEqual(seen.filter((s) => s.includes('"msg":"request"')), []);
    } finally {
      await quiet.close();
    }
  });
});
