/**
 * Worker-thread entry for state resolution of big rooms: the pure algorithm
 * runs here so resolving thousands of events never blocks the event loop.
 * Messages in: { id, version, states, events, rejected }; out: { id, result }
 * or { id, error }.
 */
import { parentPort } from 'node:worker_threads';
import type { PDU } from '../core/events.js';
import { resolveState } from '../core/state-res.js';

export interface ResolveJob {
  id: number;
  version: string;
  states: Array<Array<[string, string]>>;
  events: Array<PDU & { event_id: string }>;
  rejected: string[];
}

parentPort?.on('message', (job: ResolveJob) => {
  try {
    const byId = new Map(job.events.map((e) => [e.event_id, e]));
    const rejected = new Set(job.rejected);
    const result = resolveState(job.version, job.states.map((s) => new Map(s)), (id) => byId.get(id), { isRejected: (id) => rejected.has(id) });
    parentPort!.postMessage({ id: job.id, result: [...result] });
  } catch (err) {
    parentPort!.postMessage({ id: job.id, error: err instanceof Error ? err.message : String(err) });
  }
});
