/**
 * "A woken /sync runs no SQL in the steady state" (the stream change caches,
 * the key-count cache, the skipped to-device acknowledgement): with many
 * devices long-polling, every event wakes all of them, so one query per
 * wake-up is what made PostgreSQL fall behind. Counted with the database
 * query metric.
 *
 *   RANVIER_TEST_SKIP_PG=1 npm test -- sync-queries
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, registerUser, type TestServer } from './harness.js';
import { Api, caughtUp, enc, freePort } from './util.js';
import { parsePrometheusText, valueOf } from '../helpers/prom-text.js';

const PASSWORD = 'a long enough password';
const SYNCERS = 5;

describe('queries per woken /sync', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let metricsUrl: string;
  const apis: Api[] = [];
  let roomId: string;

  const queryCount = async () =>
    valueOf(parsePrometheusText(await (await fetch(`${metricsUrl}/metrics`)).text()), 'ranvier_db_query_duration_seconds_count');

  before(async () => {
    const port = await freePort();
    srv = await startTestServer({ metrics_enabled: true, metrics_port: port });
    metricsUrl = `http://127.0.0.1:${port}`;
    for (let i = 0; i < SYNCERS; i++) {
      const u = await registerUser(srv.url, `user${i}`, PASSWORD);
      apis.push(new Api(srv.url, u.accessToken));
    }
    roomId = await apis[0].createRoom({ preset: 'public_chat' });
    for (const api of apis.slice(1)) await api.join(roomId);
  });

  after(async () => {
    await srv?.close();
  });

  /** Every device long-polls; `act` wakes them all; returns the queries run meanwhile. */
  async function queriesWhileWaking(act: () => Promise<unknown>, expect: (body: any) => boolean): Promise<number> {
    // Two rounds of catching up warm every cache a sync uses (a first sync may fill them).
    const tokens = await Promise.all(apis.map((api) => caughtUp(api)));
    await Promise.all(apis.map((api, i) => caughtUp(api, tokens[i])));
    const since = await Promise.all(apis.map((api) => caughtUp(api)));
    const polls = apis.map((api, i) => api.sync({ since: since[i], timeout: 10_000 }));
    await new Promise((r) => setTimeout(r, 300)); // let them park
    const before = await queryCount();
    await act();
    const bodies = await Promise.all(polls);
    for (const b of bodies) assert.ok(expect(b), `a woken sync carries the change: ${JSON.stringify(b).slice(0, 300)}`);
    return (await queryCount()) - before;
  }

  test(`a typing notification wakes ${SYNCERS} long-polls without a query per wake-up`, async () => {
    const n = await queriesWhileWaking(
      () => apis[0].ok('PUT', `/rooms/${enc(roomId)}/typing/${enc('@user0:localhost')}`, { typing: true, timeout: 5000 }),
      (b) => (b.rooms?.join?.[roomId]?.ephemeral?.events ?? []).some((e: { type: string }) => e.type === 'm.typing'),
    );
    assert.ok(n < SYNCERS, `${n} queries for one typing notification and ${SYNCERS} woken syncs`);
  });

  test(`a message wakes ${SYNCERS} long-polls; the queries are the send's, not the syncs'`, async () => {
    // The send's own queries, measured without anyone long-polling.
    await Promise.all(apis.map((api) => caughtUp(api)));
    const b0 = await queryCount();
    await apis[0].send(roomId, 'alone');
    const sendOnly = (await queryCount()) - b0;

    const n = await queriesWhileWaking(
      () => apis[0].send(roomId, 'to everyone'),
      (b) => (b.rooms?.join?.[roomId]?.timeline?.events ?? []).some((e: { content?: { body?: string } }) => e.content?.body === 'to everyone'),
    );
    assert.ok(n - sendOnly < SYNCERS, `${n} queries with ${SYNCERS} woken syncs against ${sendOnly} for the send alone`);
  });
});
