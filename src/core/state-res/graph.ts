/**
 * Graph helpers for state resolution: a binary heap, the lexicographically
 * smallest topological sort (Kahn's algorithm) and auth chain walks. All are
 * iterative, so deep auth chains cannot overflow the stack.
 */
import { authEventIds } from '../events.js';
import type { EventLookup } from './types.js';

/** A precomputed sort key, compared element by element (numbers numerically, strings by code unit). */
export type SortKey = ReadonlyArray<number | string>;

export function compareSortKeys(a: SortKey, b: SortKey): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (x === y) continue;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Minimal binary min-heap over items with precomputed keys. */
class MinHeap<T> {
  private readonly items: T[] = [];

  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  push(item: T): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(items[i], items[parent])) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let smallest = i;
        if (l < items.length && this.less(items[l], items[smallest])) smallest = l;
        if (r < items.length && this.less(items[r], items[smallest])) smallest = r;
        if (smallest === i) break;
        [items[i], items[smallest]] = [items[smallest], items[i]];
        i = smallest;
      }
    }
    return top;
  }
}

/**
 * The lexicographically smallest topological ordering of `graph`, earliest
 * first. `graph` maps each node to the nodes it points at (for the auth DAG:
 * an event to its auth events), so a node comes after everything it points
 * at. Edges to nodes outside the graph are ignored. Nodes on a cycle (only
 * possible with forged v1/v2 event ids) are left out.
 */
export function lexicographicalTopologicalSort<T>(
  graph: ReadonlyMap<T, Iterable<T>>,
  keyOf: (node: T) => SortKey,
): T[] {
  const keys = new Map<T, SortKey>();
  const pending = new Map<T, number>(); // node -> edges to nodes not yet output
  const pointedAtBy = new Map<T, T[]>();
  for (const [node, targets] of graph) {
    keys.set(node, keyOf(node));
    const distinct = new Set<T>();
    for (const t of targets) if (t !== node && graph.has(t)) distinct.add(t);
    pending.set(node, distinct.size);
    for (const t of distinct) {
      const list = pointedAtBy.get(t);
      if (list) list.push(node);
      else pointedAtBy.set(t, [node]);
    }
  }
  const heap = new MinHeap<T>((a, b) => compareSortKeys(keys.get(a)!, keys.get(b)!) < 0);
  for (const [node, count] of pending) if (count === 0) heap.push(node);
  const out: T[] = [];
  while (heap.size > 0) {
    const node = heap.pop()!;
    out.push(node);
    for (const parent of pointedAtBy.get(node) ?? []) {
      const left = pending.get(parent)! - 1;
      pending.set(parent, left);
      if (left === 0) heap.push(parent);
    }
  }
  return out;
}

/**
 * The given events plus everything reachable from them over `auth_events`.
 * Unavailable events are kept (they are ids in the chain) but not expanded.
 */
export function walkAuthChain(startIds: Iterable<string>, getEvent: EventLookup): Set<string> {
  const seen = new Set<string>();
  const stack: string[] = [];
  for (const id of startIds) {
    if (!seen.has(id)) {
      seen.add(id);
      stack.push(id);
    }
  }
  while (stack.length > 0) {
    const ev = getEvent(stack.pop()!);
    if (!ev) continue;
    for (const aid of authEventIds(ev)) {
      if (!seen.has(aid)) {
        seen.add(aid);
        stack.push(aid);
      }
    }
  }
  return seen;
}
