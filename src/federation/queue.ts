/**
 * Outbound federation: a durable queue per destination, delivered as
 * transactions (server-server spec, "Transactions"; PUT /send/{txnId}).
 *
 * - Enqueued PDUs and EDUs are rows in the database, written in the caller's
 *   transaction when it passes one, so an event and its outbound copies
 *   commit together. The item is stored once; each destination has a queue
 *   row pointing at it. The destination's sender is woken after commit.
 * - Per destination, one transaction is in flight at a time. Items are
 *   batched (at most 50 PDUs and 100 EDUs) by writing the new txnId onto
 *   their queue rows before the first attempt, so every retry, also after a
 *   restart, sends the same batch under the same txnId and the receiver can
 *   deduplicate. Rows are deleted only after a 200; a 200 with per-PDU
 *   errors is still delivered (the errors are logged).
 * - Any failure (network, timeout, 5xx, 429, other 4xx: the spec makes a
 *   non-200 a failure of the whole transaction) backs the destination off
 *   exponentially with jitter, persisted in `federation_destinations`.
 *   After `maxFailuresBeforeMax` consecutive failures the delay stays at the
 *   maximum: nothing is ever dropped, a dead server just costs one attempt
 *   a day. Hearing from the server (`onIncomingFromServer`), a successful
 *   send, or the admin (`resetBackoff`) clears the backoff.
 * - Each destination has its own async loop, so a slow or dead server
 *   never delays another; a global limit bounds how many send at once.
 *
 * m.typing EDUs are not stored: they are worthless seconds later and a
 * restart losing them is what the receiver's typing timeout expects
 * anyway. They wait in memory, coalesced per (room, user) so the newest
 * state wins, ride along only in a batch's first attempt (a retry must
 * resend the stored batch unchanged) and are dropped when older than
 * `typingMaxAgeMs`.
 */
import { randomBytes } from 'node:crypto';
import type { DeleteQueryBuilder, DeleteResult } from 'kysely';
import type { Logger } from 'pino';
import type { OnCommit } from '../server/context.js';
import type { Storage, Tx } from '../storage/db.js';
import type { Database } from '../storage/schema.js';
import { FederationRequestError, type FederationRequest } from './client.js';

/** Spec limits per transaction. */
export const MAX_PDUS_PER_TXN = 50;
export const MAX_EDUS_PER_TXN = 100;
/** Rows per INSERT / IN list (both engines' bound-parameter limits). */
const CHUNK = 500;
/** Coalesced typing notifications kept per destination (oldest dropped beyond). */
const MAX_TYPING_PER_DESTINATION = 1000;
/** Per-PDU errors logged per transaction; the rest are counted. */
const MAX_PDU_ERRORS_LOGGED = 10;

/** What the sender needs from the context (BaseContext satisfies it). */
export interface SenderContext {
  storage: Storage;
  log: Logger;
  config: { server_name: string };
}

/** The part of FederationClient the sender uses (tests pass a fake). */
export interface SenderClient {
  request<T = unknown>(destination: string, req: FederationRequest): Promise<T>;
}

export interface SenderPolicy {
  allows(serverName: string): boolean;
}

export interface SenderOptions {
  /** First retry delay after a failure (doubles per consecutive failure). */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** From this many consecutive failures on, wait the maximum. */
  maxFailuresBeforeMax?: number;
  /** Random spread of each delay, as a fraction (0.2: ±20 %). */
  jitter?: number;
  /** Destinations sending at the same time. */
  maxConcurrentSends?: number;
  /** Per transaction request (client default when unset). */
  requestTimeoutMs?: number;
  /** How long stop() waits for sends in flight. */
  stopGraceMs?: number;
  typingMaxAgeMs?: number;
}

/**
 * Pass the caller's write (`ctx.write`'s tx and onCommit) to enqueue in the
 * same database transaction; the sender is woken once it has committed.
 */
export interface EnqueueIn {
  tx: Tx;
  onCommit: OnCommit;
}

export interface Edu {
  edu_type: string;
  content: Record<string, unknown>;
}

export interface DestinationStats {
  destination: string;
  /** Queue rows not yet delivered (typing notifications not counted). */
  pending: number;
  /** Consecutive failed transactions. */
  failures: number;
  /** No attempt before this time (ms since the epoch); null: now. */
  retryAt: number | null;
  lastError: string | null;
}

interface DestState {
  name: string;
  pending: number;
  failures: number;
  retryAt: number | null;
  lastError: string | null;
  /** Coalesced m.typing EDUs by room and user, with the time they were queued. */
  typing: Map<string, { edu: Edu; ts: number }>;
  /** The destination's send loop, while it runs. */
  loop?: Promise<void>;
  /** Something changed since the loop last looked (new items, backoff reset). */
  dirty: boolean;
  /** Ends the loop's current sleep early. */
  wake?: () => void;
}

interface Batch {
  txnId: string;
  itemIds: number[];
  pdus: unknown[];
  edus: unknown[];
}

/** Counting semaphore: at most `size` holders; acquire() yields false once closed. */
class Slots {
  private free: number;
  private waiters: Array<(ok: boolean) => void> = [];
  private closed = false;

  constructor(size: number) {
    this.free = size;
  }

  acquire(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next(true);
    else this.free++;
  }

  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w(false);
  }
}

function describeError(err: unknown): { status?: number; text: string } {
  if (err instanceof FederationRequestError) {
    if (err.status !== undefined) return { status: err.status, text: `HTTP ${err.status}${err.errcode ? ` ${err.errcode}` : ''}` };
    // The message is ours (network, timeout, policy), never the remote's body.
    return { text: err.message.slice(0, 300) };
  }
  return { text: (err instanceof Error ? err.message : String(err)).slice(0, 300) };
}

function retryAfterMs(err: unknown): number | undefined {
  if (!(err instanceof FederationRequestError) || err.status !== 429) return undefined;
  const body = err.body;
  if (typeof body !== 'object' || body === null) return undefined;
  const v = (body as Record<string, unknown>).retry_after_ms;
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined;
}

function newTxnId(): string {
  // Unique across restarts and processes: time plus randomness.
  return `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
}

export class FederationSender {
  private readonly states = new Map<string, DestState>();
  private readonly slots: Slots;
  private readonly opts: Required<Omit<SenderOptions, 'requestTimeoutMs'>> & { requestTimeoutMs?: number };
  private started = false;
  private stopped = false;

  constructor(
    private readonly ctx: SenderContext,
    private readonly client: SenderClient,
    private readonly policy: SenderPolicy,
    options: SenderOptions = {},
  ) {
    this.opts = {
      baseBackoffMs: options.baseBackoffMs ?? 5_000,
      maxBackoffMs: options.maxBackoffMs ?? 24 * 60 * 60 * 1000,
      maxFailuresBeforeMax: options.maxFailuresBeforeMax ?? 10,
      jitter: options.jitter ?? 0.2,
      maxConcurrentSends: options.maxConcurrentSends ?? 50,
      requestTimeoutMs: options.requestTimeoutMs,
      stopGraceMs: options.stopGraceMs ?? 2_000,
      typingMaxAgeMs: options.typingMaxAgeMs ?? 30_000,
    };
    this.slots = new Slots(this.opts.maxConcurrentSends);
  }

  private get db() {
    return this.ctx.storage.db;
  }

  private get log() {
    return this.ctx.log;
  }

  /** Load backoff state and resume every destination with pending items. */
  async start(): Promise<void> {
    if (this.started || this.stopped) return;
    const backoffs = await this.db.selectFrom('federation_destinations').selectAll().execute();
    const counts = await this.db
      .selectFrom('federation_queue')
      .select((eb) => ['destination', eb.fn.countAll<number>().as('n')])
      .groupBy('destination')
      .execute();
    for (const b of backoffs) {
      const st = this.state(b.destination);
      st.failures = Number(b.failures);
      st.retryAt = b.retry_at === null ? null : Number(b.retry_at);
      st.lastError = b.last_error;
    }
    for (const c of counts) this.state(c.destination).pending = Number(c.n);
    await this.deleteOrphans();
    this.started = true;
    for (const st of this.states.values()) {
      if (st.pending === 0 && st.typing.size === 0) continue;
      if (!this.sendable(st.name)) {
        // Kept, not dropped: they go out if the operator allows the server again.
        this.log.info({ destination: st.name, pending: st.pending }, 'federation: destination not allowed, queued items kept unsent');
        continue;
      }
      this.kick(st);
    }
  }

  /** Stop sending; waits up to stopGraceMs for transactions in flight (undelivered ones are resent after restart, same txnId). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.slots.close();
    const loops: Promise<void>[] = [];
    for (const st of this.states.values()) {
      st.wake?.();
      if (st.loop) loops.push(st.loop);
    }
    if (!loops.length) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled(loops), new Promise<void>((r) => (timer = setTimeout(r, this.opts.stopGraceMs)))]);
    clearTimeout(timer);
  }

  /** Queue a PDU for each destination (own server and disallowed ones skipped). */
  async enqueuePdu(destinations: string[], pdu: object, within?: EnqueueIn): Promise<void> {
    await this.enqueue(destinations, 'pdu', JSON.stringify(pdu), within);
  }

  /** Queue an EDU for each destination; m.typing is kept in memory only (see the module comment). */
  async enqueueEdu(destinations: string[], edu: Edu, within?: EnqueueIn): Promise<void> {
    const targets = this.targets(destinations);
    if (!targets.length) return;
    if (edu.edu_type === 'm.typing') {
      const add = () => this.addTyping(targets, edu);
      if (within) within.onCommit(add);
      else add();
      return;
    }
    await this.enqueueTargets(targets, 'edu', JSON.stringify({ edu_type: edu.edu_type, content: edu.content }), within);
  }

  /**
   * A request from `serverName` passed authentication: it is up, so any
   * backoff is over and its queue goes out now.
   */
  onIncomingFromServer(serverName: string): void {
    const st = this.states.get(serverName);
    if (!st || (st.failures === 0 && st.retryAt === null)) return;
    this.resetBackoff(serverName).catch((err: unknown) => this.log.warn({ err, destination: serverName }, 'federation: clearing backoff failed'));
  }

  /** Forget the destination's failures and retry its queue now (admin API). */
  async resetBackoff(destination: string): Promise<void> {
    await this.db.deleteFrom('federation_destinations').where('destination', '=', destination).execute();
    const st = this.states.get(destination);
    if (!st) return;
    st.failures = 0;
    st.retryAt = null;
    st.lastError = null;
    if (st.pending > 0 || st.typing.size > 0) this.kick(st);
  }

  /** Destinations with queued items or a backoff, for metrics and the admin API. */
  destinations(): DestinationStats[] {
    const out: DestinationStats[] = [];
    for (const st of this.states.values()) {
      if (st.pending === 0 && st.failures === 0) continue;
      out.push({ destination: st.name, pending: st.pending, failures: st.failures, retryAt: st.retryAt, lastError: st.lastError });
    }
    return out.sort((a, b) => a.destination.localeCompare(b.destination));
  }

  private state(name: string): DestState {
    let st = this.states.get(name);
    if (!st) {
      st = { name, pending: 0, failures: 0, retryAt: null, lastError: null, typing: new Map(), dirty: false };
      this.states.set(name, st);
    }
    return st;
  }

  private isOwn(name: string): boolean {
    return name.toLowerCase() === this.ctx.config.server_name.toLowerCase();
  }

  private sendable(name: string): boolean {
    return name !== '' && !this.isOwn(name) && this.policy.allows(name);
  }

  /** Distinct destinations we may send to. */
  private targets(destinations: string[]): string[] {
    const out = new Set<string>();
    for (const d of destinations) if (this.sendable(d)) out.add(d);
    return [...out];
  }

  private async enqueue(destinations: string[], kind: 'pdu' | 'edu', json: string, within?: EnqueueIn): Promise<void> {
    const targets = this.targets(destinations);
    if (targets.length) await this.enqueueTargets(targets, kind, json, within);
  }

  private async enqueueTargets(targets: string[], kind: 'pdu' | 'edu', json: string, within?: EnqueueIn): Promise<void> {
    const insert = async (tx: Tx) => {
      const { id } = await tx
        .insertInto('federation_outbound_items')
        .values({ kind, json, created_ts: Date.now() })
        .returning('id')
        .executeTakeFirstOrThrow();
      for (let i = 0; i < targets.length; i += CHUNK) {
        const rows = targets.slice(i, i + CHUNK).map((destination) => ({ destination, item_id: Number(id), kind, txn_id: null }));
        await tx.insertInto('federation_queue').values(rows).execute();
      }
    };
    const added = () => {
      for (const d of targets) {
        const st = this.state(d);
        st.pending++;
        this.kick(st);
      }
    };
    if (within) {
      await insert(within.tx);
      within.onCommit(added);
    } else {
      await this.db.transaction().execute(insert);
      added();
    }
  }

  private addTyping(targets: string[], edu: Edu): void {
    const c = edu.content;
    const key = typeof c.room_id === 'string' && typeof c.user_id === 'string' ? `${c.room_id}\u0000${c.user_id}` : randomBytes(8).toString('hex');
    const now = Date.now();
    for (const d of targets) {
      const st = this.state(d);
      st.typing.delete(key); // re-insert at the end: Map order is age order
      st.typing.set(key, { edu: { edu_type: edu.edu_type, content: c }, ts: now });
      if (st.typing.size > MAX_TYPING_PER_DESTINATION) st.typing.delete(st.typing.keys().next().value!);
      this.kick(st);
    }
  }

  /** Something to send for `st`: make sure its loop runs (it re-checks backoff itself). */
  private kick(st: DestState): void {
    st.dirty = true;
    if (!this.started || this.stopped) return;
    if (st.loop) {
      st.wake?.();
      return;
    }
    st.loop = this.run(st).finally(() => {
      st.loop = undefined;
      if (st.dirty && !this.stopped && (st.pending > 0 || st.typing.size > 0)) this.kick(st);
    });
  }

  private sleep(st: DestState, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        st.wake = undefined;
        resolve();
      };
      // Timers are capped at ~24.8 days; the loop re-checks after waking anyway.
      const timer = setTimeout(done, Math.min(ms, 2 ** 31 - 1));
      timer.unref();
      st.wake = done;
    });
  }

  /** The destination's loop: send batches until its queue is empty, backing off between failures. */
  private async run(st: DestState): Promise<void> {
    while (!this.stopped) {
      const wait = (st.retryAt ?? 0) - Date.now();
      if (wait > 0) {
        await this.sleep(st, wait);
        continue;
      }
      st.dirty = false;
      try {
        const batch = await this.nextBatch(st);
        if (!batch) {
          if (st.dirty) continue;
          return;
        }
        if (!(await this.slots.acquire())) return;
        try {
          if (this.stopped) return;
          await this.send(st, batch);
        } finally {
          this.slots.release();
        }
      } catch (err) {
        // Database trouble (or the database closed under us at shutdown): try again later, quietly if stopping.
        if (this.stopped) return;
        this.log.error({ err, destination: st.name }, 'federation: queue error');
        await this.sleep(st, this.opts.baseBackoffMs);
      }
    }
  }

  /** The batch already assigned a txnId (a retry), else a new one; undefined when nothing is pending. */
  private async nextBatch(st: DestState): Promise<Batch | undefined> {
    const d = st.name;
    const base = () =>
      this.db
        .selectFrom('federation_queue as q')
        .innerJoin('federation_outbound_items as i', 'i.id', 'q.item_id')
        .select(['q.item_id', 'q.kind', 'q.txn_id', 'i.json'])
        .where('q.destination', '=', d);
    let rows = await base().where('q.txn_id', 'is not', null).orderBy('q.item_id').execute();
    let txnId: string;
    const memoryEdus: unknown[] = [];
    if (rows.length) {
      txnId = rows[0].txn_id!;
      rows = rows.filter((r) => r.txn_id === txnId);
    } else {
      const pdus = await base().where('q.txn_id', 'is', null).where('q.kind', '=', 'pdu').orderBy('q.item_id').limit(MAX_PDUS_PER_TXN).execute();
      const edus = await base().where('q.txn_id', 'is', null).where('q.kind', '=', 'edu').orderBy('q.item_id').limit(MAX_EDUS_PER_TXN).execute();
      rows = [...pdus, ...edus];
      memoryEdus.push(...this.takeTyping(st, MAX_EDUS_PER_TXN - edus.length));
      if (!rows.length && !memoryEdus.length) return undefined;
      txnId = newTxnId();
      const ids = rows.map((r) => Number(r.item_id));
      if (ids.length) {
        await this.db.transaction().execute(async (tx) => {
          for (let i = 0; i < ids.length; i += CHUNK) {
            await tx.updateTable('federation_queue').set({ txn_id: txnId }).where('destination', '=', d).where('item_id', 'in', ids.slice(i, i + CHUNK)).execute();
          }
        });
      }
    }
    const batch: Batch = { txnId, itemIds: rows.map((r) => Number(r.item_id)), pdus: [], edus: [] };
    for (const r of rows) (r.kind === 'pdu' ? batch.pdus : batch.edus).push(JSON.parse(r.json));
    batch.edus.push(...memoryEdus);
    return batch;
  }

  /** Up to `max` fresh typing EDUs, removed from memory (sent at most once). */
  private takeTyping(st: DestState, max: number): Edu[] {
    const out: Edu[] = [];
    const cutoff = Date.now() - this.opts.typingMaxAgeMs;
    for (const [key, t] of st.typing) {
      if (out.length >= max) break;
      st.typing.delete(key);
      if (t.ts >= cutoff) out.push(t.edu);
    }
    return out;
  }

  private async send(st: DestState, batch: Batch): Promise<void> {
    const body = { origin: this.ctx.config.server_name, origin_server_ts: Date.now(), pdus: batch.pdus, edus: batch.edus };
    let res: unknown;
    try {
      res = await this.client.request(st.name, {
        method: 'PUT',
        path: `/_matrix/federation/v1/send/${encodeURIComponent(batch.txnId)}`,
        body,
        ...(this.opts.requestTimeoutMs ? { timeoutMs: this.opts.requestTimeoutMs } : {}),
      });
    } catch (err) {
      await this.failed(st, batch, err);
      return;
    }
    this.logPduErrors(st.name, batch.txnId, res);
    await this.delivered(st, batch);
  }

  private logPduErrors(destination: string, txnId: string, res: unknown): void {
    if (typeof res !== 'object' || res === null) return;
    const pdus = (res as { pdus?: unknown }).pdus;
    if (typeof pdus !== 'object' || pdus === null) return;
    let n = 0;
    for (const [eventId, result] of Object.entries(pdus)) {
      const error = typeof result === 'object' && result !== null ? (result as { error?: unknown }).error : undefined;
      if (error === undefined) continue;
      if (n++ < MAX_PDU_ERRORS_LOGGED) {
        this.log.warn({ destination, txnId, eventId: eventId.slice(0, 255), error: String(error).slice(0, 300) }, 'federation: remote server rejected a PDU');
      }
    }
    if (n > MAX_PDU_ERRORS_LOGGED) this.log.warn({ destination, txnId, rejected: n }, 'federation: remote server rejected more PDUs');
  }

  private async delivered(st: DestState, batch: Batch): Promise<void> {
    const d = st.name;
    let removed = 0;
    const hadBackoff = st.failures > 0 || st.retryAt !== null;
    if (batch.itemIds.length || hadBackoff) {
      await this.db.transaction().execute(async (tx) => {
        if (batch.itemIds.length) {
          const res = await tx.deleteFrom('federation_queue').where('destination', '=', d).where('txn_id', '=', batch.txnId).executeTakeFirst();
          removed = Number(res.numDeletedRows);
        }
        if (hadBackoff) await tx.deleteFrom('federation_destinations').where('destination', '=', d).execute();
      });
    }
    st.pending = Math.max(0, st.pending - removed);
    if (hadBackoff) this.log.info({ destination: d, failures: st.failures }, 'federation: destination reachable again');
    st.failures = 0;
    st.retryAt = null;
    st.lastError = null;
    if (batch.itemIds.length) {
      await this.deleteOrphans(batch.itemIds).catch((err: unknown) => this.log.warn({ err, destination: d }, 'federation: deleting delivered items failed'));
    }
  }

  /**
   * Delete items no destination still needs. Run after the queue rows'
   * deletion has committed, never inside it: two destinations finishing the
   * same item at once would each still see the other's uncommitted row
   * (PostgreSQL, read committed) and the item would stay forever. Anything
   * left by a crash in between is swept at start.
   */
  private async deleteOrphans(itemIds?: number[]): Promise<void> {
    const orphan = (q: DeleteQueryBuilder<Database, 'federation_outbound_items', DeleteResult>) =>
      q.where(({ not, exists, selectFrom }) =>
        not(exists(selectFrom('federation_queue').select('federation_queue.item_id').whereRef('federation_queue.item_id', '=', 'federation_outbound_items.id'))),
      );
    if (!itemIds) {
      await orphan(this.db.deleteFrom('federation_outbound_items')).execute();
      return;
    }
    for (let i = 0; i < itemIds.length; i += CHUNK) {
      await orphan(this.db.deleteFrom('federation_outbound_items').where('id', 'in', itemIds.slice(i, i + CHUNK))).execute();
    }
  }

  private async failed(st: DestState, batch: Batch, err: unknown): Promise<void> {
    const failures = st.failures + 1;
    const delay = this.backoffDelay(failures, err);
    const { status, text } = describeError(err);
    const now = Date.now();
    const retryAt = now + delay;
    this.log.warn({ destination: st.name, txnId: batch.txnId, status, error: text, failures, retryInMs: delay }, 'federation: transaction failed');
    await this.db
      .insertInto('federation_destinations')
      .values({ destination: st.name, failures, retry_at: retryAt, last_error: text, last_failure_ts: now })
      .onConflict((oc) => oc.column('destination').doUpdateSet({ failures, retry_at: retryAt, last_error: text, last_failure_ts: now }))
      .execute();
    st.failures = failures;
    st.retryAt = retryAt;
    st.lastError = text;
  }

  private backoffDelay(failures: number, err: unknown): number {
    const { baseBackoffMs: base, maxBackoffMs: max, maxFailuresBeforeMax, jitter } = this.opts;
    const raw = failures >= maxFailuresBeforeMax ? max : Math.min(max, base * 2 ** (failures - 1));
    let delay = Math.min(max, Math.round(raw * (1 + jitter * (Math.random() * 2 - 1))));
    const after = retryAfterMs(err);
    if (after !== undefined) delay = Math.max(delay, Math.min(after, max));
    return Math.max(0, delay);
  }
}
