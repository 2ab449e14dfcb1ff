/** A small bounded LRU map: every cache in Ranvier has a size limit. */
export class Lru<K, V> {
  private map = new Map<K, V>();
  constructor(private readonly max: number) {}

  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: K, value: V): void {
    if (this.max <= 0) return;
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K);
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }

  /** A snapshot of the entries, oldest first, without touching their recency. */
  entries(): Array<[K, V]> {
    return [...this.map.entries()];
  }

  get size(): number {
    return this.map.size;
  }
}

/** An LRU bounded by entry count and by total weight (e.g. rows held), for values of very different sizes. */
export class WeightedLru<K, V> {
  private map = new Map<K, { value: V; weight: number }>();
  private total = 0;
  constructor(private readonly max: number, private readonly maxWeight: number, private readonly weigh: (v: V) => number) {}

  get(key: K): V | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }

  /** A value heavier than a quarter of the budget is not kept. */
  set(key: K, value: V): void {
    this.delete(key);
    const weight = Math.max(1, this.weigh(value));
    if (this.max <= 0 || weight * 4 > this.maxWeight) return;
    this.map.set(key, { value, weight });
    this.total += weight;
    while (this.map.size > this.max || this.total > this.maxWeight) {
      const [k, e] = this.map.entries().next().value as [K, { value: V; weight: number }];
      this.map.delete(k);
      this.total -= e.weight;
    }
  }

  delete(key: K): void {
    const e = this.map.get(key);
    if (e === undefined) return;
    this.map.delete(key);
    this.total -= e.weight;
  }

  clear(): void {
    this.map.clear();
    this.total = 0;
  }

  get size(): number {
    return this.map.size;
  }

  get weight(): number {
    return this.total;
  }
}
