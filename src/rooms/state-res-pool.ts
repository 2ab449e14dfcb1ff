/**
 * One lazily started worker thread for big state resolutions. Small ones
 * (the common case) run inline: starting a worker costs more than they do.
 * The worker is unref'd so it never keeps the process alive, and it is
 * stopped after a minute without work so an idle server holds no thread.
 */
import { Worker } from 'node:worker_threads';
import type { PDU } from '../core/events.js';
import type { ResolveJob } from './state-res-worker.js';

/** Above this many events in play, resolution moves off the event loop. */
export const WORKER_THRESHOLD = 2000;
const IDLE_STOP_MS = 60_000;

type Pending = { resolve: (v: Map<string, string>) => void; reject: (e: Error) => void };

let worker: Worker | undefined;
let nextId = 1;
const pending = new Map<number, Pending>();
let idleTimer: NodeJS.Timeout | undefined;

function failAll(err: Error): void {
  for (const p of pending.values()) p.reject(err);
  pending.clear();
  worker = undefined;
}

function getWorker(): Worker {
  if (worker) return worker;
  // Built: the compiled .js beside this file. From source (tests run under
  // tsx), the worker registers tsx itself before loading the .ts entry.
  const w = import.meta.url.endsWith('.ts')
    ? new Worker(
      `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(new URL('./state-res-worker.ts', import.meta.url).href)}); });`,
      { eval: true },
    )
    : new Worker(new URL('./state-res-worker.js', import.meta.url));
  w.unref();
  w.on('message', (msg: { id: number; result?: Array<[string, string]>; error?: string }) => {
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error !== undefined) p.reject(new Error(`state resolution failed: ${msg.error}`));
    else p.resolve(new Map(msg.result));
    scheduleIdleStop();
  });
  w.on('error', (err) => failAll(err));
  w.on('exit', (code) => failAll(new Error(`state resolution worker exited (${code})`)));
  worker = w;
  return w;
}

function scheduleIdleStop(): void {
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    if (pending.size === 0 && worker) {
      const w = worker;
      worker = undefined;
      void w.terminate();
    }
  }, IDLE_STOP_MS);
  idleTimer.unref();
}

/** Resolve in the worker thread. */
export function resolveInWorker(
  version: string,
  states: Map<string, string>[],
  events: Iterable<PDU & { event_id: string }>,
  rejected: Iterable<string>,
): Promise<Map<string, string>> {
  const id = nextId++;
  const job: ResolveJob = { id, version, states: states.map((s) => [...s]), events: [...events], rejected: [...rejected] };
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    getWorker().postMessage(job);
  });
}
