/**
 * Wakes long-polling /sync (and /events) requests when something they care
 * about changes. A waiter listens on its user id and its rooms; writers call
 * `notify` after their transaction commits.
 *
 * In-process only for now; worker mode will forward `notify` over Redis.
 */
type Waiter = { keys: string[]; wake: () => void };

export class Notifier {
  private byKey = new Map<string, Set<Waiter>>();
  private _position = 0;

  get position(): number {
    return this._position;
  }

  /** Record the new stream head and wake everyone listening on any of `keys` (user ids, room ids). */
  notify(position: number, keys: Iterable<string>): void {
    if (position > this._position) this._position = position;
    const woken = new Set<Waiter>();
    for (const k of keys) {
      const set = this.byKey.get(k);
      if (set) for (const w of set) woken.add(w);
    }
    for (const w of woken) w.wake();
  }

  /** Wake all waiters (e.g. at shutdown). */
  wakeAll(): void {
    for (const set of this.byKey.values()) for (const w of set) w.wake();
  }

  /** Resolve when any key is notified or after `timeoutMs`; returns true if woken. */
  wait(keys: string[], timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      let done = false;
      const waiter: Waiter = { keys, wake: () => finish(true) };
      const timer = setTimeout(() => finish(false), Math.max(0, timeoutMs));
      const onAbort = () => finish(false);
      signal?.addEventListener('abort', onAbort, { once: true });
      const finish = (woken: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        for (const k of keys) {
          const set = this.byKey.get(k);
          if (!set) continue;
          set.delete(waiter);
          if (set.size === 0) this.byKey.delete(k);
        }
        resolve(woken);
      };
      for (const k of keys) {
        let set = this.byKey.get(k);
        if (!set) this.byKey.set(k, (set = new Set()));
        set.add(waiter);
      }
    });
  }
}
