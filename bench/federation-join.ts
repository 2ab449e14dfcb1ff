/**
 * `npm run bench:federation`: joining a big room over federation.
 *
 * Server A (a.bench) holds a public room with --members joined local users
 * and --state other state events (a custom type with distinct state keys),
 * so the room has members + state (+ the few creation events) state events.
 * The room is built in this process through the service layer (users go
 * straight into the database; every event goes through ctx.rooms.send, so
 * A's DAG and state groups are the real thing), then A runs from that data
 * directory as its own process. Server B (b.bench), another process, joins
 * with one user over TLS (a throwaway CA and federation_hosts, as the test
 * harness does). Measured:
 *
 *   - wall time of B's POST /join (make_join + send_join + building the room);
 *   - B's RSS during the join (VmRSS sampled every 50 ms, and VmHWM);
 *   - A's CPU time over the join (utime+stime from /proc) and its time
 *     answering send_join (its debug request log);
 *   - the time from /join returning to B's first /sync that shows the room;
 *   - how responsive B stays meanwhile: the slowest of GET /versions sent
 *     to B every 100 ms during the join (a blocked event loop shows here).
 *
 * Writes bench/results/federation-join.json. SQLite only. Options:
 *   --members 5000 --state 15000
 *   --template DIR   reuse A's data from DIR (built there when DIR is empty);
 *                    building takes minutes, so repeated runs should pass one
 *   --no-build       use dist/ as it is
 *   --dist DIR       run the servers from another build (e.g. a copy of an
 *                    older dist/, for before/after figures); implies --no-build
 *   --out FILE       results file
 * BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles both servers.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/config.js';
import { createRoom } from '../src/rooms/create-room.js';
import { silentLogger } from '../src/server/logging.js';
import { startServer } from '../src/server/start.js';
import { createTestCa } from '../test/helpers/tls.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { values: opt } = parseArgs({
  options: {
    members: { type: 'string', default: '5000' },
    state: { type: 'string', default: '15000' },
    template: { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    dist: { type: 'string' },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'federation-join.json') },
  },
});
const MEMBERS = Number(opt.members);
const EXTRA_STATE = Number(opt.state);
const A = 'a.bench';
const B = 'b.bench';
const STATE_TYPE = 'org.ranvier.bench.state';

const extraNodeArgs = () => (process.env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const enc = encodeURIComponent;
const round = (x: number) => Math.round(x * 10) / 10;

function step(msg: string): void {
  process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
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

function procStatus(pid: number): { rssMiB: number; hwmMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMiB: round(kb('VmRSS') / 1024), hwmMiB: round(kb('VmHWM') / 1024) };
}

/** CPU time (user + system) of a process in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

// ---------------------------------------------------------------- building A's room

interface Built {
  roomId: string;
  stateEvents: number;
  buildMs: number;
}

/** Create the room on A's data directory, in this process. */
async function buildRoom(dataDir: string): Promise<Built> {
  const started = performance.now();
  const config = loadConfig({
    env: {},
    overrides: { server_name: A, address: '127.0.0.1', port: 0, data_dir: dataDir, rate_limit_enabled: false, trusted_key_servers: '', log_level: 'silent',
      // Only local users while building: no server to send to, so no per-event look-up of destinations.
      federation_enabled: false },
  });
  const server = await startServer(config, { log: silentLogger() });
  try {
    const ctx = server.ctx;
    // Push rules are evaluated for every member on every event: 20,000 events x 5,000 members would make
    // the fixture take hours, and these users have no pushers. The join being measured is unaffected.
    ctx.push.prepareEvent = async () => undefined;
    const creator = `@owner:${A}`;
    const users = [creator, ...Array.from({ length: MEMBERS - 1 }, (_, i) => `@member${i}:${A}`)];
    const now = Date.now();
    for (let i = 0; i < users.length; i += 500) {
      await ctx.storage.db.insertInto('users').values(users.slice(i, i + 500).map((user_id) => ({
        user_id, password_hash: null, is_admin: 0, is_guest: 0, deactivated: 0, created_ts: now, displayname: null, avatar_url: null,
      }))).execute();
    }
    const { room_id: roomId } = await createRoom(ctx, creator, { preset: 'public_chat', name: 'Federation join bench' });
    let last = performance.now();
    const progress = (what: string, i: number, n: number) => {
      if (performance.now() - last < 10_000) return;
      last = performance.now();
      step(`  ${what}: ${i}/${n} (${Math.round((performance.now() - started) / 1000)} s)`);
    };
    for (const [i, user] of users.slice(1).entries()) {
      await ctx.rooms.send({ roomId, sender: user, type: 'm.room.member', stateKey: user, content: { membership: 'join' } });
      progress('joins', i + 1, users.length - 1);
    }
    for (let i = 0; i < EXTRA_STATE; i++) {
      await ctx.rooms.send({ roomId, sender: creator, type: STATE_TYPE, stateKey: `key-${i}`, content: { n: i, note: 'state event for the federation join benchmark' } });
      progress('state events', i + 1, EXTRA_STATE);
    }
    const stateEvents = (await ctx.rooms.state.currentIds(roomId)).size;
    return { roomId, stateEvents, buildMs: Math.round(performance.now() - started) };
  } finally {
    await server.close();
  }
}

// ---------------------------------------------------------------- server processes

interface Proc {
  child: ChildProcess;
  url: string;
  output: string[];
  name: string;
}

async function startProcess(name: string, dataDir: string, env: Record<string, string>, keepAll = false): Promise<Proc> {
  const port = await freePort();
  const base: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RANVIER_')));
  Object.assign(base, {
    RANVIER_SERVER_NAME: name,
    RANVIER_ADDRESS: '127.0.0.1',
    RANVIER_PORT: String(port),
    RANVIER_DATA_DIR: dataDir,
    RANVIER_ALLOW_REGISTRATION: 'true',
    RANVIER_RATE_LIMIT_ENABLED: 'false',
    RANVIER_TRUSTED_KEY_SERVERS: '',
    RANVIER_LOG_LEVEL: 'warn',
    ...env,
  });
  const main = path.join(opt.dist ? path.resolve(opt.dist) : path.join(root, 'dist'), 'main.js');
  const child = spawn(process.execPath, ['--max-semi-space-size=1', '--v8-pool-size=1', ...extraNodeArgs(), main, 'serve'], { cwd: dataDir, env: base, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(chunk.toString());
    if (!keepAll && output.length > 200) output.shift();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with code ${child.exitCode}:\n${output.join('')}`);
    try {
      if ((await fetch(`${url}/_matrix/client/versions`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${name} did not answer within 60 s:\n${output.join('')}`);
    await sleep(100);
  }
  return { child, url, output, name };
}

async function stopProcess(p: Proc): Promise<void> {
  if (p.child.exitCode !== null) return;
  const exited = new Promise<void>((r) => p.child.once('exit', () => r()));
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

async function call(url: string, method: string, p: string, token?: string, body?: unknown): Promise<{ status: number; json: any; bytes: number }> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = text;
  }
  return { status: res.status, json, bytes: text.length };
}

async function register(url: string, name: string): Promise<string> {
  const body: Record<string, unknown> = { username: name, password: `bench-password-${name}`, initial_device_display_name: 'bench' };
  let r = await call(url, 'POST', '/_matrix/client/v3/register', undefined, body);
  if (r.status === 401 && r.json?.session) {
    body.auth = { type: 'm.login.dummy', session: r.json.session };
    r = await call(url, 'POST', '/_matrix/client/v3/register', undefined, body);
  }
  if (r.status !== 200) throw new Error(`register ${name}: HTTP ${r.status} ${JSON.stringify(r.json)}`);
  return r.json.access_token as string;
}

/** Sample a process's RSS every 50 ms until stopped; returns the highest sample. */
function sampleRss(pid: number): { stop(): number } {
  let peak = 0;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, procStatus(pid).rssMiB);
    } catch {
      // the process is gone
    }
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

/** GET /versions every `ms` (one at a time); the slowest answer shows how long the event loop was blocked. */
function pingEvery(url: string, ms: number): { stop(): Promise<{ max: number; count: number }> } {
  let stopped = false;
  let max = 0;
  let count = 0;
  const loop = (async () => {
    while (!stopped) {
      const t = performance.now();
      await fetch(`${url}/_matrix/client/versions`).then((r) => r.arrayBuffer()).catch(() => undefined);
      max = Math.max(max, performance.now() - t);
      count++;
      await sleep(ms);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return { max, count };
    },
  };
}

/** ms of the send_join request in A's debug request log. */
function sendJoinMs(output: string[]): number | undefined {
  for (const line of output.join('').split('\n')) {
    if (!line.includes('send_join')) continue;
    try {
      const rec = JSON.parse(line) as { msg?: string; ms?: number };
      if (rec.msg === 'request' && typeof rec.ms === 'number') return rec.ms;
    } catch {
      // not a JSON log line
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- main

function gitCommit(): string | undefined {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

async function main(): Promise<void> {
  if (!opt['no-build'] && !opt.dist) {
    step('building (npm run build)');
    if (spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' }).status !== 0) throw new Error('npm run build failed');
  }
  const work = mkdtempSync(path.join(os.tmpdir(), 'ranvier-fedbench-'));
  const cleanups: Array<() => Promise<void> | void> = [() => rmSync(work, { recursive: true, force: true })];
  const procs: Proc[] = [];
  try {
    // A's data: from the template, or built now (into the template when one is named).
    const aDir = path.join(work, 'a');
    const bDir = path.join(work, 'b');
    mkdirSync(bDir);
    const template = opt.template ? path.resolve(opt.template) : undefined;
    const builtFile = template && path.join(template, 'bench-room.json');
    let built: Built;
    if (builtFile && existsSync(builtFile)) {
      built = JSON.parse(readFileSync(builtFile, 'utf8')) as Built;
      step(`reusing A's data from ${template} (room ${built.roomId}, built in ${Math.round(built.buildMs / 1000)} s)`);
      cpSync(template!, aDir, { recursive: true });
    } else {
      const dir = template ?? aDir;
      mkdirSync(dir, { recursive: true });
      step(`building the room on ${A}: ${MEMBERS} members + ${EXTRA_STATE} state events`);
      built = await buildRoom(dir);
      step(`built ${built.roomId}: ${built.stateEvents} state events in ${Math.round(built.buildMs / 1000)} s`);
      if (builtFile) {
        writeFileSync(builtFile, JSON.stringify(built));
        cpSync(template!, aDir, { recursive: true });
      }
    }

    const ca = await createTestCa('Ranvier bench CA');
    cleanups.push(() => ca.cleanup());
    const [aTls, bTls] = [await freePort(), await freePort()];
    const hosts = `${A}=127.0.0.1:${aTls},${B}=127.0.0.1:${bTls}`;
    const fedEnv = async (name: string, port: number) => {
      const cert = await ca.issue([name]);
      return {
        RANVIER_FEDERATION_TLS_PORT: String(port), RANVIER_FEDERATION_TLS_CERT: cert.certFile, RANVIER_FEDERATION_TLS_KEY: cert.keyFile,
        RANVIER_FEDERATION_CA_FILE: ca.certFile, RANVIER_FEDERATION_HOSTS: hosts,
      };
    };
    step('starting both servers');
    // A logs requests at debug level so its send_join time can be read back.
    const a = await startProcess(A, aDir, { ...(await fedEnv(A, aTls)), RANVIER_LOG_LEVEL: 'debug' }, true);
    procs.push(a);
    const b = await startProcess(B, bDir, await fedEnv(B, bTls));
    procs.push(b);
    const token = await register(b.url, 'joiner');
    await sleep(2000);
    const bIdle = procStatus(b.child.pid!);
    const aCpu0 = cpuMs(a.child.pid!);
    const bCpu0 = cpuMs(b.child.pid!);

    step(`B joins ${built.roomId}`);
    const sampler = sampleRss(b.child.pid!);
    const pinger = pingEvery(b.url, 100);
    const t0 = performance.now();
    const joined = await call(b.url, 'POST', `/_matrix/client/v3/join/${enc(built.roomId)}?via=${A}`, token, {});
    const joinMs = performance.now() - t0;
    if (joined.status !== 200) throw new Error(`join failed: HTTP ${joined.status} ${JSON.stringify(joined.json).slice(0, 500)}`);
    const joinPeak = sampler.stop();
    const lag = await pinger.stop();
    const aCpu1 = cpuMs(a.child.pid!);
    const bCpu1 = cpuMs(b.child.pid!);
    step(`joined in ${Math.round(joinMs)} ms; first /sync`);

    const syncSampler = sampleRss(b.child.pid!);
    const t1 = performance.now();
    let syncBytes = 0;
    let stateInSync = 0;
    for (;;) {
      const r = await call(b.url, 'GET', '/_matrix/client/v3/sync?timeout=0', token);
      const room = r.json?.rooms?.join?.[built.roomId];
      if (r.status === 200 && room) {
        syncBytes = r.bytes;
        stateInSync = (room.state?.events?.length ?? 0) + (room.timeline?.events ?? []).filter((e: { state_key?: string }) => typeof e.state_key === 'string').length;
        break;
      }
      if (performance.now() - t1 > 120_000) throw new Error('the room did not show in /sync within 120 s');
      await sleep(50);
    }
    const syncMs = performance.now() - t1;
    const syncPeak = syncSampler.stop();
    const bAfter = procStatus(b.child.pid!);
    const members = await call(b.url, 'GET', `/_matrix/client/v3/rooms/${enc(built.roomId)}/joined_members`, token);

    const results = {
      date: new Date().toISOString(),
      commit: gitCommit(),
      node: process.version,
      cpu: `${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}`,
      database: 'sqlite',
      room: { members: MEMBERS, extra_state: EXTRA_STATE, state_events: built.stateEvents, build_ms: built.buildMs },
      join: {
        wall_ms: Math.round(joinMs),
        joined_members_on_b: Object.keys(members.json?.joined ?? {}).length,
        b_cpu_ms: Math.round(bCpu1 - bCpu0),
        a_cpu_ms: Math.round(aCpu1 - aCpu0),
        a_send_join_ms: sendJoinMs(a.output),
        b_slowest_ping_ms: Math.round(lag.max),
        b_pings: lag.count,
      },
      b_memory: { idle_rss_mib: bIdle.rssMiB, join_peak_rss_mib: joinPeak, sync_peak_rss_mib: syncPeak, vmhwm_mib: bAfter.hwmMiB, after_rss_mib: bAfter.rssMiB },
      first_sync: { ms: Math.round(syncMs), bytes: syncBytes, state_events: stateInSync },
    };
    mkdirSync(path.dirname(opt.out!), { recursive: true });
    writeFileSync(opt.out!, JSON.stringify(results, null, 2) + '\n');
    printTable(results);
    process.stdout.write(`\nresults written to ${path.relative(process.cwd(), opt.out!) || opt.out}\n`);
  } catch (err) {
    process.stderr.write(`\nfederation benchmark failed: ${(err as Error).stack ?? err}\n`);
    for (const p of procs) process.stderr.write(`${p.name} output (tail):\n${p.output.join('').slice(-4000)}\n`);
    process.exitCode = 1;
  } finally {
    for (const p of procs.reverse()) await stopProcess(p);
    for (const c of cleanups.reverse()) await c();
  }
}

function printTable(r: { room: Record<string, number>; join: Record<string, number | undefined>; b_memory: Record<string, number>; first_sync: Record<string, number>; node: string; cpu: string }): void {
  const rows: Array<[string, string]> = [
    ['room', `${r.room.members} members, ${r.room.state_events} state events (built in ${Math.round(r.room.build_ms / 1000)} s)`],
    ['POST /join wall time', `${r.join.wall_ms} ms (${r.join.joined_members_on_b} joined members on B)`],
    ['A: send_join answer / CPU over the join', `${r.join.a_send_join_ms ?? '?'} ms / ${r.join.a_cpu_ms} ms`],
    ['B: CPU over the join', `${r.join.b_cpu_ms} ms`],
    ['B: slowest GET /versions during the join', `${r.join.b_slowest_ping_ms} ms (${r.join.b_pings} requests)`],
    ['B: RSS idle / peak in join / peak in sync', `${r.b_memory.idle_rss_mib} / ${r.b_memory.join_peak_rss_mib} / ${r.b_memory.sync_peak_rss_mib} MiB (VmHWM ${r.b_memory.vmhwm_mib})`],
    ['B: first /sync showing the room', `${r.first_sync.ms} ms (${Math.round(r.first_sync.bytes / 1024)} KiB, ${r.first_sync.state_events} state events)`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`\nRanvier federation join benchmark (sqlite, ${r.node}, ${r.cpu})\n\n`);
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(w)}  ${v}\n`);
}

await main();
