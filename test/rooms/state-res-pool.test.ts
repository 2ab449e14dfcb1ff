import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveState } from '../../src/core/state-res.js';
import { resolveInWorker } from '../../src/rooms/state-res-pool.js';
import { CORPUS, buildDag } from '../core/state-res-fixtures.js';

test('the worker thread resolves the corpus forks exactly as the inline algorithm does', async () => {
  for (const c of CORPUS) {
    const dag = buildDag('10', c.events, c.edges);
    // The states meeting at END: the second node of each chain.
    const states = c.edges.map((chain) => dag.stateAt.get(chain[1])!);
    const inline = resolveState('10', states, dag.getEvent);
    const viaWorker = await resolveInWorker('10', states, dag.events.values(), []);
    assert.deepEqual([...viaWorker].sort(), [...inline].sort(), c.name);
  }
});

test('rejected events passed to the worker are honoured', async () => {
  const c = CORPUS[0];
  const dag = buildDag('10', c.events, c.edges);
  const states = c.edges.map((chain) => dag.stateAt.get(chain[1])!);
  const rejected = [...dag.events.keys()].filter((id) => id.startsWith('$MB'));
  const inline = resolveState('10', states, dag.getEvent, { isRejected: (id) => rejected.includes(id) });
  const viaWorker = await resolveInWorker('10', states, dag.events.values(), rejected);
  assert.deepEqual([...viaWorker].sort(), [...inline].sort());
});
