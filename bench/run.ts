/**
 * `npm run bench`: load benchmark against a real server process.
 *
 * Starts `node --max-semi-space-size=1 --v8-pool-size=1 dist/main.js serve` (the flags `npm start` uses) (built first) with a temporary data
 * directory, rate limits off and registration open, then measures:
 *
 *   (a) idle memory: VmRSS of the server 5 s after it answers;
 *   (b) send -> sync delivery latency: N users in rooms of M members, every
 *       user long-polling /sync, messages sent at a fixed rate; the time from
 *       the start of each send request to each member's /sync returning it;
 *   (c) initial sync time for one user joined to many rooms (median of 5).
 *
 * Prints a table and writes bench/results/latest.json. Not part of `npm test`.
 *
 * Options (all optional):
 *   --users 100 --room-size 10 --rate 50 --duration 20
 *   --sync-rooms 100 --sync-runs 5 --idle-wait 20
 *   --database postgres://...   run on PostgreSQL instead of SQLite
 *   --log-level warn            the server's log level (its output is shown if the run fails)
 *   --no-build                  use dist/ as it is
 *   --out FILE                  results file (default bench/results/latest.json)
 *   --federation                then run the federation join benchmark too
 *                               (bench/federation-join.ts, also `npm run bench:federation`)
 *
 * Uses raw fetch (not matrix-js-sdk) so the load generator stays light.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { setMaxListeners } from 'node:events';

/** Extra node flags for the server, e.g. BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it. */
const extraNodeArgs = () => (process.env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { values: opt } = parseArgs({
  options: {
    users: { type: 'string', default: '100' },
    'room-size': { type: 'string', default: '10' },
    rate: { type: 'string', default: '50' },
    duration: { type: 'string', default: '20' },
    'sync-rooms': { type: 'string', default: '100' },
    'sync-runs': { type: 'string', default: '5' },
    // 20 s: V8's memory reducer returns start-up garbage about 10 s after start; before that RSS is
    // about 10 MiB higher than the same server's settled idle memory.
    'idle-wait': { type: 'string', default: '20' },
    database: { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
    'no-build': { type: 'boolean', default: false },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'latest.json') },
    federation: { type: 'boolean', default: false },
  },
});
const USERS = Number(opt.users);
const ROOM_SIZE = Number(opt['room-size']);
const RATE = Number(opt.rate);
const DURATION_S = Number(opt.duration);
const SYNC_ROOMS = Number(opt['sync-rooms']);
const SYNC_RUNS = Number(opt['sync-runs']);
const IDLE_WAIT_S = Number(opt['idle-wait']);
const LONGPOLL_MS = 30_000;
/** After the last send, how long to wait for deliveries still in flight. */
const DRAIN_MS = 15_000;
/** Inline filter for the long-polls: a timeline limit high enough that no burst is cut short ("limited"). */
const LONGPOLL_FILTER = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 200 } } }));

// ---------------------------------------------------------------- helpers

class HttpError extends Error {
  constructor(public readonly status: number, public readonly body: unknown, what: string) {
    super(`${what}: HTTP ${status} ${JSON.stringify(body).slice(0, 300)}`);
  }
}

let base = '';

async function api(method: string, p: string, token?: string, body?: unknown, signal?: AbortSignal): Promise<any> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = text;
  }
  if (!res.ok) throw new HttpError(res.status, json, `${method} ${p.split('?')[0]}`);
  return json;
}

const enc = encodeURIComponent;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Run `fn` over `items` with at most `limit` in flight. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  });
  await Promise.all(workers);
  return out;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function stats(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    count: s.length,
    p50: round(percentile(s, 50)),
    p95: round(percentile(s, 95)),
    p99: round(percentile(s, 99)),
    max: round(s.length ? s[s.length - 1] : NaN),
    mean: round(s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN),
  };
}

/** VmRSS and VmHWM (peak) of a process in MiB, from /proc. */
function memoryOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMiB: Math.round((kb('VmRSS') / 1024) * 10) / 10, peakMiB: Math.round((kb('VmHWM') / 1024) * 10) / 10 };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function step(msg: string): void {
  process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// ---------------------------------------------------------------- server process

interface Server {
  child: ChildProcess;
  dataDir: string;
  stderr: string[];
}

async function startServerProcess(): Promise<Server> {
  const main = path.join(root, 'dist', 'main.js');
  if (!opt['no-build']) {
    step('building (npm run build)');
    const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('npm run build failed');
  }
  if (!existsSync(main)) throw new Error(`${main} not found; run npm run build`);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ranvier-bench-'));
  const port = await freePort();
  // Start from an environment without RANVIER_* so the operator's settings don't leak in.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RANVIER_')));
  Object.assign(env, {
    RANVIER_SERVER_NAME: 'localhost',
    RANVIER_ADDRESS: '127.0.0.1',
    RANVIER_PORT: String(port),
    RANVIER_DATA_DIR: dataDir,
    RANVIER_ALLOW_REGISTRATION: 'true',
    RANVIER_RATE_LIMIT_ENABLED: 'false',
    RANVIER_LOG_LEVEL: opt['log-level'],
    ...(opt.database ? { RANVIER_DATABASE: opt.database } : {}),
  });
  const child = spawn(process.execPath, ['--max-semi-space-size=1', '--v8-pool-size=1', ...extraNodeArgs(), main, 'serve'], { cwd: dataDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  const keep = (chunk: Buffer) => {
    stderr.push(chunk.toString());
    if (stderr.length > 200) stderr.shift();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with code ${child.exitCode}:\n${stderr.join('')}`);
    try {
      const res = await fetch(`${base}/_matrix/client/versions`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`server did not answer within 30 s:\n${stderr.join('')}`);
    await sleep(100);
  }
  return { child, dataDir, stderr };
}

async function stopServerProcess(s: Server): Promise<number> {
  const started = Date.now();
  if (s.child.exitCode === null) {
    const exited = new Promise<void>((r) => s.child.once('exit', () => r()));
    s.child.kill('SIGTERM');
    const timer = setTimeout(() => s.child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(s.dataDir, { recursive: true, force: true });
  return Date.now() - started;
}

// ---------------------------------------------------------------- Matrix operations

interface User {
  userId: string;
  token: string;
}

async function register(name: string): Promise<User> {
  const body: Record<string, unknown> = { username: name, password: 'bench-password-' + name, initial_device_display_name: 'bench' };
  let json: any;
  try {
    json = await api('POST', '/_matrix/client/v3/register', undefined, body);
  } catch (e) {
    if (!(e instanceof HttpError) || e.status !== 401 || !(e.body as any)?.session) throw e;
    body.auth = { type: 'm.login.dummy', session: (e.body as any).session };
    json = await api('POST', '/_matrix/client/v3/register', undefined, body);
  }
  return { userId: json.user_id, token: json.access_token };
}

async function createRoom(u: User, name: string): Promise<string> {
  const json = await api('POST', '/_matrix/client/v3/createRoom', u.token, { preset: 'public_chat', name });
  return json.room_id as string;
}

async function join(u: User, roomId: string): Promise<void> {
  await api('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/join`, u.token, {});
}

let txnCounter = 0;
async function sendText(u: User, roomId: string, body: string, extra: Record<string, unknown> = {}): Promise<string> {
  const txn = `bench-${process.pid}-${++txnCounter}`;
  const json = await api('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${enc(txn)}`, u.token, {
    msgtype: 'm.text',
    body,
    ...extra,
  });
  return json.event_id as string;
}

// ---------------------------------------------------------------- (b) delivery latency

async function deliveryLatency(users: User[], roomOf: string[], membersOf: Map<string, User[]>) {
  // Message id -> send start (ms, performance clock). Members see the id in content.bench_id.
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const sendLatencies: number[] = [];
  const seen = new Map<string, number>(); // bench_id -> receivers so far
  let sendErrors = 0;
  let syncErrors = 0;
  let syncRequests = 0;
  let limitedResponses = 0;
  let stop = false;
  const aborter = new AbortController();
  // Every long-poll listens on this one signal; undici keeps a listener per request made with it.
  setMaxListeners(0, aborter.signal);

  // Initial sync for everyone to get a since token (not measured here).
  step(`initial /sync for ${users.length} users`);
  const since = await pool(users, 20, async (u) => (await api('GET', '/_matrix/client/v3/sync?timeout=0', u.token)).next_batch as string);

  const loop = async (u: User, i: number) => {
    let token = since[i];
    while (!stop) {
      try {
        syncRequests++;
        const json = await api('GET', `/_matrix/client/v3/sync?since=${enc(token)}&timeout=${LONGPOLL_MS}&filter=${LONGPOLL_FILTER}`, u.token, undefined, aborter.signal);
        const now = performance.now();
        token = json.next_batch;
        for (const room of Object.values<any>(json.rooms?.join ?? {})) {
          if (room.timeline?.limited) limitedResponses++;
          for (const ev of room.timeline?.events ?? []) {
            const id = ev?.content?.bench_id;
            if (typeof id !== 'string') continue;
            const t0 = sentAt.get(id);
            if (t0 === undefined) continue;
            latencies.push(now - t0);
            seen.set(id, (seen.get(id) ?? 0) + 1);
          }
        }
      } catch (e) {
        if (stop) break;
        syncErrors++;
        if (syncErrors <= 5) step(`sync error for ${u.userId}: ${(e as Error).message}`);
        await sleep(500);
      }
    }
  };

  step(`starting ${users.length} long-poll /sync loops`);
  const loops = users.map((u, i) => loop(u, i));
  await sleep(1000); // let every loop settle into its long-poll

  const total = Math.round(RATE * DURATION_S);
  step(`sending ${total} messages at ${RATE}/s for ${DURATION_S} s`);
  const sends: Promise<void>[] = [];
  const t0 = performance.now();
  for (let k = 0; k < total; k++) {
    const due = t0 + (k * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const sender = users[k % users.length];
    const roomId = roomOf[k % users.length];
    const id = `m${k}-${randomBytes(3).toString('hex')}`;
    const start = performance.now();
    sentAt.set(id, start);
    sends.push(
      sendText(sender, roomId, `bench message ${k}`, { bench_id: id }).then(
        () => void sendLatencies.push(performance.now() - start),
        (e: unknown) => {
          sendErrors++;
          sentAt.delete(id);
          if (sendErrors <= 5) step(`send error: ${(e as Error).message}`);
        },
      ),
    );
  }
  const sendingMs = performance.now() - t0;
  await Promise.all(sends);

  // Expected deliveries: every successfully sent message to every member of its room.
  let expected = 0;
  for (let k = 0; k < total; k++) expected += membersOf.get(roomOf[k % users.length])!.length;
  expected -= sendErrors * ROOM_SIZE;
  const drainDeadline = performance.now() + DRAIN_MS;
  while (latencies.length < expected && performance.now() < drainDeadline) await sleep(100);

  stop = true;
  aborter.abort();
  await Promise.allSettled(loops);

  return {
    messages_sent: total - sendErrors,
    send_errors: sendErrors,
    achieved_rate_per_s: Math.round((total / (sendingMs / 1000)) * 10) / 10,
    deliveries_expected: expected,
    deliveries_seen: latencies.length,
    sync_requests: syncRequests,
    sync_errors: syncErrors,
    limited_timelines: limitedResponses,
    delivery_ms: stats(latencies),
    send_request_ms: stats(sendLatencies),
  };
}

// ---------------------------------------------------------------- (c) initial sync

async function initialSync(u: User) {
  step(`creating ${SYNC_ROOMS} rooms for the initial-sync user`);
  const rooms = await pool(Array.from({ length: SYNC_ROOMS }, (_, i) => i), 10, (i) => createRoom(u, `sync room ${i}`));
  await pool(rooms, 10, async (roomId) => {
    for (let m = 0; m < 3; m++) await sendText(u, roomId, `history ${m}`);
  });
  const times: number[] = [];
  let bytes = 0;
  let joined = 0;
  for (let run = 0; run < SYNC_RUNS; run++) {
    const start = performance.now();
    const res = await fetch(`${base}/_matrix/client/v3/sync?timeout=0`, { headers: { authorization: `Bearer ${u.token}` } });
    const text = await res.text();
    times.push(performance.now() - start);
    if (!res.ok) throw new HttpError(res.status, text, 'GET /sync (initial)');
    bytes = text.length;
    joined = Object.keys(JSON.parse(text).rooms?.join ?? {}).length;
  }
  return {
    rooms: SYNC_ROOMS,
    rooms_in_response: joined,
    runs: SYNC_RUNS,
    median_ms: Math.round(median(times) * 10) / 10,
    min_ms: Math.round(Math.min(...times) * 10) / 10,
    max_ms: Math.round(Math.max(...times) * 10) / 10,
    response_bytes: bytes,
  };
}

// ---------------------------------------------------------------- main

function gitCommit(): string | undefined {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

async function main(): Promise<void> {
  if (USERS % ROOM_SIZE !== 0) throw new Error('--users must be a multiple of --room-size');
  const server = await startServerProcess();
  const pid = server.child.pid!;
  const results: Record<string, unknown> = {
    date: new Date().toISOString(),
    commit: gitCommit(),
    node: process.version,
    cpu: `${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}`,
    memory_total_mib: Math.round(os.totalmem() / 2 ** 20),
    database: opt.database ? 'postgres' : 'sqlite',
    parameters: { users: USERS, room_size: ROOM_SIZE, rate_per_s: RATE, duration_s: DURATION_S, sync_rooms: SYNC_ROOMS, sync_runs: SYNC_RUNS, idle_wait_s: IDLE_WAIT_S },
  };
  let failed: unknown;
  try {
    step(`server pid ${pid} at ${base}; waiting ${IDLE_WAIT_S} s idle`);
    await sleep(IDLE_WAIT_S * 1000);
    results.idle = memoryOf(pid);

    step(`registering ${USERS + 1} users`);
    const names = Array.from({ length: USERS + 1 }, (_, i) => `bench${i}_${randomBytes(2).toString('hex')}`);
    const all = await pool(names, 10, register);
    const users = all.slice(0, USERS);
    const syncUser = all[USERS];

    const roomCount = USERS / ROOM_SIZE;
    step(`creating ${roomCount} rooms of ${ROOM_SIZE} members`);
    const roomOf: string[] = new Array(USERS);
    const membersOf = new Map<string, User[]>();
    await pool(Array.from({ length: roomCount }, (_, r) => r), 5, async (r) => {
      const members = users.slice(r * ROOM_SIZE, (r + 1) * ROOM_SIZE);
      const roomId = await createRoom(members[0], `bench room ${r}`);
      for (const m of members.slice(1)) await join(m, roomId);
      membersOf.set(roomId, members);
      for (let i = 0; i < ROOM_SIZE; i++) roomOf[r * ROOM_SIZE + i] = roomId;
    });

    results.delivery = await deliveryLatency(users, roomOf, membersOf);
    results.after_load = memoryOf(pid);
    results.initial_sync = await initialSync(syncUser);
    results.after_all = memoryOf(pid);
  } catch (e) {
    failed = e;
  } finally {
    results.shutdown_ms = await stopServerProcess(server);
  }
  if (failed) {
    process.stderr.write(`\nbenchmark failed: ${(failed as Error).stack ?? failed}\n`);
    process.stderr.write(`server output (tail):\n${server.stderr.join('').slice(-4000)}\n`);
    process.exitCode = 1;
    return;
  }

  mkdirSync(path.dirname(opt.out!), { recursive: true });
  writeFileSync(opt.out!, JSON.stringify(results, null, 2) + '\n');
  printTable(results);
  process.stdout.write(`\nresults written to ${path.relative(process.cwd(), opt.out!) || opt.out}\n`);
  if (opt.federation) {
    step('federation join benchmark (bench/federation-join.ts)');
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'bench', 'federation-join.ts'), '--no-build'], { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) process.exitCode = 1;
  }
}

function printTable(r: Record<string, any>): void {
  const d = r.delivery;
  const rows: Array<[string, string]> = [
    [`idle RSS (${r.parameters.idle_wait_s} s after start)`, `${r.idle.rssMiB} MiB`],
    ['RSS after load / peak', `${r.after_load.rssMiB} MiB / ${r.after_all.peakMiB} MiB`],
    ['messages sent (rate achieved)', `${d.messages_sent} (${d.achieved_rate_per_s}/s), ${d.send_errors} errors`],
    ['deliveries seen / expected', `${d.deliveries_seen} / ${d.deliveries_expected}${d.limited_timelines ? ` (${d.limited_timelines} limited timelines)` : ''}`],
    ['send->sync latency p50', `${d.delivery_ms.p50} ms`],
    ['send->sync latency p95', `${d.delivery_ms.p95} ms`],
    ['send->sync latency p99', `${d.delivery_ms.p99} ms`],
    ['send->sync latency max', `${d.delivery_ms.max} ms`],
    ['send request p50 / p99', `${d.send_request_ms.p50} ms / ${d.send_request_ms.p99} ms`],
    [`initial sync, ${r.initial_sync.rooms} rooms (median of ${r.initial_sync.runs})`, `${r.initial_sync.median_ms} ms (${Math.round(r.initial_sync.response_bytes / 1024)} KiB)`],
    ['graceful shutdown', `${r.shutdown_ms} ms`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`\nRanvier benchmark (${r.database}, ${r.node}, ${r.cpu})\n\n`);
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(w)}  ${v}\n`);
}

await main();
