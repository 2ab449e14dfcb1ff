/**
 * Durability: a 200 means committed. Run the real CLI (`src/main.ts serve`)
 * as a child process, send messages, SIGKILL it right after the last
 * acknowledgement, restart on the same data directory, and check that every
 * acknowledged event is there.
 *
 *   RANVIER_TEST_DB=sqlite node --import tsx --test test/e2e/durability.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminQuery, registerUser, testEngine, testPostgresAdminUrl } from './harness.js';
import { Api, enc, freePort, login, request, waitFor } from './util.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PASSWORD = 'durable password';

interface Child {
  proc: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}


/** Start `node --import tsx src/main.ts serve` and wait until it answers /versions. */
async function spawnServer(env: Record<string, string>): Promise<Child> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? os.tmpdir(),
      RANVIER_ADDRESS: '127.0.0.1',
      RANVIER_PORT: String(port),
      RANVIER_SERVER_NAME: 'localhost',
      RANVIER_ALLOW_REGISTRATION: 'true',
      RANVIER_RATE_LIMIT_ENABLED: 'false',
      RANVIER_LOG_LEVEL: 'warn',
      RANVIER_MIN_FREE_DISK_BYTES: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  let dead = false;
  void exited.then(() => (dead = true));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      'the server to answer /versions',
      async () => {
        if (dead) throw new Error(`server exited early:\n${out}`);
        const r = await fetch(`${url}/_matrix/client/versions`).catch(() => undefined);
        return r?.status === 200;
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\nserver output:\n${out}`);
  }
  return { proc, url, output: () => out, exited };
}

async function kill9(child: Child): Promise<void> {
  if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
  const { signal } = await child.exited;
  assert.equal(signal, 'SIGKILL', 'the server was killed, not shut down');
}

/** All m.room.message event ids of a room, oldest first, via /messages dir=b. */
async function allMessageIds(api: Api, roomId: string): Promise<string[]> {
  const ids: string[] = [];
  let from: string | undefined;
  for (let page = 0; page < 100; page++) {
    const r = await api.messages(roomId, { dir: 'b', limit: 50, from });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    for (const e of r.body.chunk) if (e.type === 'm.room.message') ids.push(e.event_id);
    if (!r.body.end || r.body.chunk.length === 0) break;
    from = r.body.end;
  }
  return ids.reverse();
}

describe('durability across SIGKILL', { timeout: 120_000 }, () => {
  let dataDir: string;
  let dbName: string | undefined;
  const env: Record<string, string> = {};
  const children: Child[] = [];

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ranvier-durability-'));
    env.RANVIER_DATA_DIR = dataDir;
    if (testEngine() === 'postgres') {
      dbName = `ranvier_t_${randomBytes(6).toString('hex')}`;
      await adminQuery(`CREATE DATABASE ${dbName}`);
      const u = new URL(testPostgresAdminUrl());
      u.pathname = '/' + dbName;
      env.RANVIER_DATABASE = u.toString();
    }
  });

  after(async () => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));
    await rm(dataDir, { recursive: true, force: true });
    if (dbName) await adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
  });

  let token: string;
  let userId: string;
  let roomId: string;

  test('every acknowledged message survives kill -9 right after the last 200', async () => {
    const first = await spawnServer(env);
    children.push(first);
    const user = await registerUser(first.url, 'durable', PASSWORD);
    token = user.accessToken;
    userId = user.userId;
    const api = new Api(first.url, token);
    roomId = await api.createRoom({ preset: 'private_chat', name: 'Durable room' });

    const acked: string[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await api.put(`/rooms/${enc(roomId)}/send/m.room.message/d${i}`, { msgtype: 'm.text', body: `durable ${i}` });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      acked.push(r.body.event_id);
      if (i === 49) first.proc.kill('SIGKILL'); // at once, in the same tick as the last 200
    }
    await kill9(first);

    const second = await spawnServer(env);
    children.push(second);
    const api2 = new Api(second.url, token);
    const who = await api2.get('/account/whoami');
    assert.equal(who.status, 200, 'the access token survived the crash');
    assert.equal(who.body.user_id, userId);
    const ids = await allMessageIds(api2, roomId);
    const missing = acked.filter((id) => !ids.includes(id));
    assert.deepEqual(missing, [], `${missing.length} acknowledged events lost`);
    assert.deepEqual(ids, acked, 'all 50 in order, nothing extra');
    const name = await api2.ok('GET', `/rooms/${enc(roomId)}/state/m.room.name/`);
    assert.equal(name.name, 'Durable room');

    // the restarted server keeps working on the same room
    const after = await api2.send(roomId, 'after the crash');
    assert.match(after, /^\$/);
    const relog = await login(second.url, 'durable', PASSWORD);
    assert.equal(relog.status, 200, 'password login after restart');
    await kill9(second);
  });

  test('concurrent sends: whatever was acknowledged before a kill -9 mid-stream survives', async () => {
    assert.ok(roomId, 'needs the room from the previous test');
    const third = await spawnServer(env);
    children.push(third);

    const acked: string[] = [];
    let killed = false;
    const sends = Array.from({ length: 60 }, (_, i) =>
      request(third.url, 'PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/c${i}`, {
        token,
        body: { msgtype: 'm.text', body: `concurrent ${i}` },
      }).then(
        (r) => {
          if (r.status === 200) {
            acked.push(r.body.event_id);
            if (acked.length === 30 && !killed) {
              killed = true;
              third.proc.kill('SIGKILL');
            }
          }
        },
        () => {}, // requests in flight at the kill fail; they were never acknowledged
      ),
    );
    await Promise.all(sends);
    await kill9(third);
    assert.ok(acked.length >= 30, `at least 30 sends were acknowledged before the kill (got ${acked.length})`);

    const fourth = await spawnServer(env);
    children.push(fourth);
    const ids = await allMessageIds(new Api(fourth.url, token), roomId);
    const missing = acked.filter((id) => !ids.includes(id));
    assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged concurrent events lost`);
    await kill9(fourth);
  });
});
