/**
 * The outbound federation queue (src/federation/queue.ts) against a real
 * database and a fake federation client: batching, stable txnIds, backoff,
 * restart, isolation between destinations, policy.
 *
 *   node --import tsx --test test/federation/queue.test.ts
 *
 * Runs on SQLite (through withServiceContext) and, when PostgreSQL answers at
 * RANVIER_TEST_PG_URL (default postgres://<os user>@127.0.0.1:5432/test) and
 * RANVIER_TEST_SKIP_PG is unset, on a fresh PostgreSQL database too.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import os from 'node:os';
import pg from 'pg';
import { createLogger, silentLogger } from '../../src/server/logging.js';
import { openStorage, type Storage, type Tx } from '../../src/storage/db.js';
import { FederationRequestError, type FederationRequest } from '../../src/federation/client.js';
import { FederationSender, MAX_EDUS_PER_TXN, MAX_PDUS_PER_TXN, type SenderContext, type SenderOptions } from '../../src/federation/queue.js';
import { withServiceContext } from '../helpers/service-context.js';

const OWN = 'test.local';

interface Sent {
  destination: string;
  txnId: string;
  body: { origin: string; origin_server_ts: number; pdus: Array<{ n: number }>; edus: Array<{ edu_type: string; content: Record<string, unknown> }> };
  at: number;
}

type Handler = (destination: string, sent: Sent) => Promise<unknown>;

/** Records every request; `handler` decides the answer (default: 200 {}). */
class FakeClient {
  sent: Sent[] = [];
  inFlight = 0;
  maxInFlight = 0;
  handler: Handler = async () => ({});

  async request<T>(destination: string, req: FederationRequest): Promise<T> {
    assert.equal(req.method, 'PUT');
    const m = /^\/_matrix\/federation\/v1\/send\/([^/]+)$/.exec(req.path);
    assert.ok(m, `unexpected path ${req.path}`);
    const s: Sent = { destination, txnId: decodeURIComponent(m[1]), body: structuredClone(req.body) as Sent['body'], at: Date.now() };
    this.sent.push(s);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      return (await this.handler(destination, s)) as T;
    } finally {
      this.inFlight--;
    }
  }

  to(destination: string): Sent[] {
    return this.sent.filter((s) => s.destination === destination);
  }
}

const policy = { allows: (name: string) => name !== 'blocked.example' };
const FAST: SenderOptions = { baseBackoffMs: 20, maxBackoffMs: 2_000, jitter: 0, stopGraceMs: 100 };

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Like ctx.write: a transaction whose onCommit hooks run after commit. */
async function write(storage: Storage, fn: (tx: Tx, onCommit: (h: () => void) => void) => Promise<void>): Promise<void> {
  const hooks: Array<() => void> = [];
  await storage.db.transaction().execute((tx) => fn(tx, (h) => hooks.push(h)));
  for (const h of hooks) h();
}

async function queueRows(storage: Storage, destination?: string): Promise<number> {
  let q = storage.db.selectFrom('federation_queue').select((eb) => eb.fn.countAll<number>().as('n'));
  if (destination) q = q.where('destination', '=', destination);
  return Number((await q.executeTakeFirstOrThrow()).n);
}

async function itemRows(storage: Storage): Promise<number> {
  return Number((await storage.db.selectFrom('federation_outbound_items').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
}

// ---- engines

type Env = { storage: Storage; sctx: (log?: SenderContext['log']) => SenderContext };
type Engine = { name: string; skip: string | false; run: (fn: (env: Env) => Promise<void>) => Promise<void> };

function pgAdminUrl(): string {
  return process.env.RANVIER_TEST_PG_URL || `postgres://${encodeURIComponent(os.userInfo().username)}@127.0.0.1:5432/test`;
}

async function pgProblem(): Promise<string | false> {
  if (process.env.RANVIER_TEST_SKIP_PG) return 'RANVIER_TEST_SKIP_PG is set';
  const client = new pg.Client({ connectionString: pgAdminUrl(), connectionTimeoutMillis: 2000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return false;
  } catch (e) {
    return `PostgreSQL not reachable: ${(e as Error).message}`;
  } finally {
    await client.end().catch(() => {});
  }
}

async function pgAdmin(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: pgAdminUrl() });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

const engines: Engine[] = [
  {
    name: 'sqlite',
    skip: false,
    run: (fn) =>
      withServiceContext(async (ctx) => {
        // The context's own sender (real client) must not compete for our rows.
        await ctx.federation.stop();
        await fn({ storage: ctx.storage, sctx: (log = ctx.log) => ({ storage: ctx.storage, log, config: ctx.config }) });
      }),
  },
  {
    name: 'postgres',
    skip: await pgProblem(),
    run: async (fn) => {
      const dbName = `ranvier_fq_${randomBytes(6).toString('hex')}`;
      await pgAdmin(`CREATE DATABASE ${dbName}`);
      const url = new URL(pgAdminUrl());
      url.pathname = '/' + dbName;
      let storage: Storage | undefined;
      try {
        storage = await openStorage(url.toString(), { poolSize: 4 });
        const s = storage;
        await fn({ storage: s, sctx: (log = silentLogger()) => ({ storage: s, log, config: { server_name: OWN } }) });
      } finally {
        await storage?.close();
        await pgAdmin(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      }
    },
  },
];

for (const engine of engines) {
  describe(`federation queue (${engine.name})`, { skip: engine.skip }, () => {
    const withSender = (client: FakeClient, opts: SenderOptions, fn: (s: FederationSender, env: Env) => Promise<void>) =>
      engine.run(async (env) => {
        const sender = new FederationSender(env.sctx(), client, policy, opts);
        try {
          await fn(sender, env);
        } finally {
          await sender.stop();
        }
      });

    test('120 PDUs and 130 EDUs go out in 3 transactions within the spec limits, then the queue is empty', async () => {
      const client = new FakeClient();
      await withSender(client, FAST, async (sender, env) => {
        for (let n = 0; n < 120; n++) await sender.enqueuePdu(['a.example'], { n });
        for (let n = 0; n < 130; n++) await sender.enqueueEdu(['a.example'], { edu_type: 'm.receipt', content: { n } });
        assert.equal(client.sent.length, 0, 'nothing sent before start');
        assert.deepEqual(sender.destinations().map((d) => [d.destination, d.pending]), [['a.example', 250]]);
        await sender.start();
        await waitFor('all delivered', () => sender.destinations().length === 0);
        const txns = client.to('a.example');
        assert.equal(txns.length, 3);
        for (const t of txns) {
          assert.ok(t.body.pdus.length <= MAX_PDUS_PER_TXN);
          assert.ok(t.body.edus.length <= MAX_EDUS_PER_TXN);
          assert.equal(t.body.origin, OWN);
          assert.equal(typeof t.body.origin_server_ts, 'number');
        }
        assert.deepEqual(txns.map((t) => [t.body.pdus.length, t.body.edus.length]), [[50, 100], [50, 30], [20, 0]]);
        // In order, each exactly once.
        assert.deepEqual(txns.flatMap((t) => t.body.pdus.map((p) => p.n)), Array.from({ length: 120 }, (_, i) => i));
        assert.deepEqual(txns.flatMap((t) => t.body.edus.map((e) => e.content.n)), Array.from({ length: 130 }, (_, i) => i));
        assert.equal(new Set(txns.map((t) => t.txnId)).size, 3, 'distinct txnIds');
        assert.equal(await queueRows(env.storage), 0);
        assert.equal(await itemRows(env.storage), 0);
      });
    });

    test('a retried batch keeps its txnId and content; items queued meanwhile go in a later transaction', async () => {
      const client = new FakeClient();
      let failuresLeft = 2;
      client.handler = async (dest, s) => {
        if (s.body.pdus.some((p) => p.n === 1) && failuresLeft-- > 0) throw new FederationRequestError(dest, 'server error', 500);
        return {};
      };
      await withSender(client, FAST, async (sender) => {
        await sender.start();
        await sender.enqueuePdu(['a.example'], { n: 1 });
        await waitFor('first failure', () => client.sent.length >= 1);
        await sender.enqueuePdu(['a.example'], { n: 2 });
        await waitFor('all delivered', () => sender.destinations().length === 0);
        const txns = client.to('a.example');
        assert.equal(txns.length, 4);
        const [a, b, c, d] = txns;
        assert.equal(b.txnId, a.txnId);
        assert.equal(c.txnId, a.txnId);
        for (const t of [a, b, c]) assert.deepEqual(t.body.pdus, [{ n: 1 }]);
        assert.notEqual(d.txnId, a.txnId);
        assert.deepEqual(d.body.pdus, [{ n: 2 }]);
      });
    });

    test('backoff doubles per failure (4xx included), is persisted and logged without bodies, caps after N failures', async () => {
      const client = new FakeClient();
      let i = 0;
      client.handler = async (dest) => {
        const status = [503, 400, 502, 500, 404][i++ % 5];
        throw new FederationRequestError(dest, 'failed', status, 'M_UNKNOWN', { secret: 'BODY-MUST-NOT-BE-LOGGED' });
      };
      const lines: string[] = [];
      const sink = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
      await engine.run(async (env) => {
        const sender = new FederationSender(env.sctx(createLogger({ log_level: 'warn' }, sink)), client, policy, {
          ...FAST, baseBackoffMs: 25, maxBackoffMs: 1_000, maxFailuresBeforeMax: 5,
        });
        try {
          await sender.start();
          await sender.enqueuePdu(['a.example'], { n: 1 });
          await waitFor('4 attempts', () => client.sent.length >= 4);
          const at = client.sent.map((s) => s.at);
          const gaps = [at[1] - at[0], at[2] - at[1], at[3] - at[2]];
          // 25, 50, 100 ms (timers may fire late, never early).
          assert.ok(gaps[0] >= 24 && gaps[1] >= 49 && gaps[2] >= 99, `gaps ${gaps}`);
          assert.ok(gaps[2] > gaps[0], `gaps grow: ${gaps}`);
          await waitFor('5 failures', () => sender.destinations()[0]?.failures === 5);
          const [st] = sender.destinations();
          assert.equal(st.destination, 'a.example');
          assert.equal(st.pending, 1);
          assert.match(st.lastError ?? '', /^HTTP 404/);
          const row = await env.storage.db.selectFrom('federation_destinations').selectAll().where('destination', '=', 'a.example').executeTakeFirstOrThrow();
          assert.equal(Number(row.failures), 5);
          // From the 5th failure on: the maximum (1 s), not 25 * 2^4 = 400 ms.
          assert.equal(Number(row.retry_at) - Number(row.last_failure_ts), 1_000);
          assert.equal(Number(row.retry_at), st.retryAt);
          assert.match(row.last_error ?? '', /^HTTP 404/);
          const warns = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'federation: transaction failed');
          assert.equal(warns.length, 5);
          assert.deepEqual(warns.map((w) => w.status), [503, 400, 502, 500, 404]);
          assert.ok(warns.every((w) => w.destination === 'a.example'));
          assert.ok(!lines.join('').includes('BODY-MUST-NOT-BE-LOGGED'));
          assert.equal(await queueRows(env.storage), 1, 'nothing dropped');
        } finally {
          await sender.stop();
        }
      });
    });

    test('onIncomingFromServer ends a long backoff and sends at once', async () => {
      const client = new FakeClient();
      let up = false;
      client.handler = async (dest) => {
        if (!up) throw new FederationRequestError(dest, 'connect ECONNREFUSED');
        return {};
      };
      await withSender(client, { ...FAST, baseBackoffMs: 60_000, maxBackoffMs: 3_600_000 }, async (sender, env) => {
        await sender.start();
        await sender.enqueuePdu(['a.example'], { n: 1 });
        await waitFor('failure recorded', () => sender.destinations()[0]?.failures === 1);
        assert.ok(sender.destinations()[0].retryAt! > Date.now() + 50_000);
        up = true;
        await sender.enqueuePdu(['a.example'], { n: 2 });
        await delay(100);
        assert.equal(client.sent.length, 1, 'new items do not cut a backoff short');
        sender.onIncomingFromServer('b.example'); // unrelated server: no effect
        await delay(50);
        assert.equal(client.sent.length, 1);
        sender.onIncomingFromServer('a.example');
        await waitFor('delivered', () => sender.destinations().length === 0, 2_000);
        assert.deepEqual(client.sent.slice(1).flatMap((s) => s.body.pdus.map((p) => p.n)), [1, 2]);
        assert.equal(client.sent[1].txnId, client.sent[0].txnId, 'the failed batch goes first, same txnId');
        assert.equal(await env.storage.db.selectFrom('federation_destinations').selectAll().executeTakeFirst(), undefined);
      });
    });

    test('resetBackoff (admin) retries at once', async () => {
      const client = new FakeClient();
      let up = false;
      client.handler = async (dest) => {
        if (!up) throw new FederationRequestError(dest, 'rate limited', 429, 'M_LIMIT_EXCEEDED', { retry_after_ms: 120_000 });
        return {};
      };
      await withSender(client, FAST, async (sender, env) => {
        await sender.start();
        await sender.enqueueEdu(['a.example'], { edu_type: 'm.direct_to_device', content: { x: 1 } });
        await waitFor('failure recorded', () => sender.destinations()[0]?.failures === 1);
        // retry_after_ms (capped at the maximum, 2 s here) beats the 20 ms backoff.
        const row = await env.storage.db.selectFrom('federation_destinations').selectAll().executeTakeFirstOrThrow();
        assert.equal(Number(row.retry_at) - Number(row.last_failure_ts), 2_000);
        up = true;
        await sender.resetBackoff('a.example');
        await waitFor('delivered', () => sender.destinations().length === 0, 1_000);
        assert.equal(client.sent.length, 2);
      });
    });

    test('items and backoff survive a restart; the new sender resends the same txnId once retry_at has passed', async () => {
      const dead = new FakeClient();
      dead.handler = async (dest) => {
        throw new FederationRequestError(dest, 'timed out');
      };
      const live = new FakeClient();
      await engine.run(async (env) => {
        const first = new FederationSender(env.sctx(), dead, policy, { ...FAST, baseBackoffMs: 1_500 });
        await first.start();
        await write(env.storage, async (tx, onCommit) => {
          await first.enqueuePdu(['a.example', 'b.example'], { n: 1 }, { tx, onCommit });
        });
        await waitFor('both failed', () => first.destinations().every((d) => d.failures === 1) && first.destinations().length === 2);
        await first.stop();
        // Queued while no sender runs.
        const idle = new FederationSender(env.sctx(), dead, policy, FAST);
        await idle.enqueuePdu(['a.example'], { n: 2 });

        // As left by a crash between a delivery's commit and its item cleanup: swept at start.
        await env.storage.db.insertInto('federation_outbound_items').values({ kind: 'pdu', json: '{}', created_ts: 0 }).execute();
        const second = new FederationSender(env.sctx(), live, policy, FAST);
        try {
          await second.start();
          const stats = second.destinations();
          assert.deepEqual(stats.map((s) => [s.destination, s.pending, s.failures]), [['a.example', 2, 1], ['b.example', 1, 1]]);
          assert.ok(stats[0].retryAt! > Date.now());
          const retryAt = new Map(stats.map((s) => [s.destination, s.retryAt!]));
          await waitFor('delivered', () => second.destinations().length === 0);
          for (const s of live.sent) assert.ok(s.at >= retryAt.get(s.destination)!, 'stored retry_at respected');
          const oldTxn = new Map(dead.sent.map((s) => [s.destination, s.txnId]));
          const a = live.to('a.example');
          assert.equal(a[0].txnId, oldTxn.get('a.example'));
          assert.deepEqual(a[0].body.pdus, [{ n: 1 }]);
          assert.deepEqual(a.slice(1).flatMap((s) => s.body.pdus), [{ n: 2 }]);
          assert.equal(live.to('b.example')[0].txnId, oldTxn.get('b.example'));
          assert.equal(await queueRows(env.storage), 0);
          assert.equal(await itemRows(env.storage), 0);
        } finally {
          await second.stop();
        }
      });
    });

    test('a rolled-back write queues nothing', async () => {
      const client = new FakeClient();
      await withSender(client, FAST, async (sender, env) => {
        await sender.start();
        await assert.rejects(
          write(env.storage, async (tx, onCommit) => {
            await sender.enqueuePdu(['a.example'], { n: 1 }, { tx, onCommit });
            throw new Error('caller failed');
          }),
          /caller failed/,
        );
        await delay(50);
        assert.equal(client.sent.length, 0);
        assert.equal(await queueRows(env.storage), 0);
        assert.deepEqual(sender.destinations(), []);
      });
    });

    test('a dead destination does not hold up another; the concurrency bound holds', async () => {
      const client = new FakeClient();
      client.handler = async (dest) => {
        if (dest === 'dead.example') return new Promise(() => {}); // never answers
        await delay(20);
        return {};
      };
      await withSender(client, { ...FAST, maxConcurrentSends: 3 }, async (sender, env) => {
        await sender.start();
        await sender.enqueuePdu(['dead.example'], { n: 0 });
        await waitFor('dead in flight', () => client.inFlight === 1);
        const live = ['a.example', 'b.example', 'c.example', 'd.example', 'e.example'];
        for (let n = 1; n <= 3; n++) await sender.enqueuePdu(live, { n });
        await waitFor('live delivered', async () => (await queueRows(env.storage)) === 1 && (await itemRows(env.storage)) === 1);
        for (const d of live) assert.deepEqual(client.to(d).flatMap((s) => s.body.pdus.map((p) => p.n)), [1, 2, 3]);
        assert.ok(client.maxInFlight <= 3, `max in flight ${client.maxInFlight}`);
        assert.equal(client.to('dead.example').length, 1);
        assert.deepEqual(
          (await env.storage.db.selectFrom('federation_outbound_items').select('json').execute()).map((r) => JSON.parse(r.json)),
          [{ n: 0 }],
          'items shared by all destinations deleted once all have them',
        );
      });
    });

    test('own server, disallowed servers and duplicates are skipped', async () => {
      const client = new FakeClient();
      await withSender(client, FAST, async (sender, env) => {
        await sender.enqueuePdu([OWN, 'TEST.local', 'blocked.example', 'ok.example', 'ok.example'], { n: 1 });
        await sender.enqueueEdu(['blocked.example', OWN], { edu_type: 'm.presence', content: {} });
        assert.equal(await queueRows(env.storage), 1);
        assert.equal(await queueRows(env.storage, 'ok.example'), 1);
        assert.equal(await itemRows(env.storage), 1, 'no item stored without a destination');
        await sender.start();
        await waitFor('delivered', () => sender.destinations().length === 0);
        await delay(50);
        assert.deepEqual(client.sent.map((s) => s.destination), ['ok.example']);
      });
    });

    test('a 200 with per-PDU errors counts as delivered', async () => {
      const client = new FakeClient();
      client.handler = async () => ({ pdus: { $bad: { error: 'rejected' }, $good: {} } });
      await withSender(client, FAST, async (sender, env) => {
        await sender.start();
        await sender.enqueuePdu(['a.example'], { n: 1 });
        await waitFor('delivered', () => sender.destinations().length === 0);
        await delay(50);
        assert.equal(client.sent.length, 1);
        assert.equal(await queueRows(env.storage), 0);
      });
    });

    test('typing EDUs stay out of the database, coalesce per room and user, and expire', async () => {
      const client = new FakeClient();
      await withSender(client, { ...FAST, typingMaxAgeMs: 1_000 }, async (sender, env) => {
        const typing = (user: string, on: boolean) => ({ edu_type: 'm.typing', content: { room_id: '!r:test.local', user_id: user, typing: on } });
        await sender.enqueueEdu(['a.example'], typing('@u:test.local', true));
        await sender.enqueueEdu(['a.example'], typing('@u:test.local', false));
        await sender.enqueueEdu(['a.example'], typing('@v:test.local', true));
        await sender.enqueueEdu(['b.example'], typing('@w:test.local', true));
        assert.equal(await queueRows(env.storage), 0);
        await delay(1_100); // all of the above are stale now
        await sender.enqueueEdu(['a.example'], typing('@v:test.local', false));
        await sender.start();
        await waitFor('sent', () => client.sent.length === 1);
        await delay(50);
        assert.equal(client.sent.length, 1, 'nothing for b.example');
        assert.deepEqual(
          client.sent[0].body.edus.map((e) => [e.content.user_id, e.content.typing]),
          [['@v:test.local', false]],
        );
      });
    });
  });
}
