/**
 * The push domain: the user's push rules (stored as the `m.push_rules`
 * global account data, so /sync carries every change), pushers, and
 * notification counts.
 *
 * Counts: every event is evaluated against the push rules of the room's
 * local joined members (but not its sender) *before* the event's write
 * transaction, and the resulting rows are written in that same transaction
 * (see EventSender.persist). So the new count commits together with the
 * event and appears in the same /sync response as the event itself (spec:
 * Server behaviour). A user has read a room up to their later m.read /
 * m.read.private receipt (unthreaded or main). Sending an event does not
 * move it, as in Synapse and as clients expect (they apply implicit receipts
 * themselves), although the spec's "Marking notifications as read" says it
 * should.
 */
import { effectivePowerLevels, userPowerLevel } from '../core/power-levels.js';
import {
  RULE_KINDS,
  defaultRuleKey,
  emptyUserRules,
  evaluatePushRules,
  findRule,
  formatRule,
  isRuleKind,
  isServerDefaultRuleId,
  mergeRules,
  rulesContent,
  serverDefaultRules,
  usesCondition,
  userRulesFromContent,
  validateActions,
  validateConditions,
  type PushAction,
  type PushEvent,
  type PushRule,
  type PushRulesContent,
  type RuleKind,
  type Ruleset,
  type UserPushRules,
} from '../core/push-rules.js';
import { getRoomVersion } from '../core/room-versions.js';
import type { PDU } from '../core/events.js';
import { toClientEvent } from '../rooms/client-event.js';
import { stateKeyOf } from '../rooms/state-store.js';
import type { ClientEvent } from '../rooms/types.js';
import { MatrixError, badJson, invalidParam, missingParam, notFound } from '../server/errors.js';
import { Lru, WeightedLru } from '../server/lru.js';
import { userRoomKey } from '../server/stream-changes.js';
import type { Context } from '../server/services.js';
import { hoist, type Tx } from '../storage/db.js';
import type { OnCommit } from '../server/context.js';
import { PusherStore } from './pushers.js';

export const PUSH_RULES_TYPE = 'm.push_rules';

export interface UnreadCounts {
  notification_count: number;
  highlight_count: number;
}

/** The outcome of evaluating one event, written inside the event's own transaction. */
export interface PreparedPush {
  /** Write the push actions; `onCommit` is the write's (see BaseContext.write): the counts' caches are updated there. */
  write(tx: Tx, streamPos: number, onCommit: OnCommit): Promise<void>;
}

export interface NotificationsPage {
  notifications: Array<{ actions: PushAction[]; event: ClientEvent; read: boolean; room_id: string; ts: number; profile_tag?: string }>;
  next_token?: string;
}

type StoredPdu = PDU & { event_id: string; room_id: string };

const IN_CHUNK = 500;
const RULESET_CACHE_SIZE = 5000;
const MAX_RULE_ID_LENGTH = 1000;
/** Users whose ignored lists are cached, and the most ignored ids held in all. */
const IGNORED_CACHE_USERS = 10_000;
const IGNORED_CACHE_TOTAL = 100_000;
/** (user, room) pairs whose read position and unread counts are cached. */
const UNREAD_CACHE_SIZE = 20_000;
/** Unread counts stop at this (per room). */
const UNREAD_CAP = 1000;
/** Rooms counted at once (PostgreSQL runs them in parallel; SQLite serialises anyway). */
const COUNT_CONCURRENCY = 8;

/** Notifying events and highlights of a user in a room in (from, upTo], newest UNREAD_CAP at most; compiled once. */
const countUnread = hoist((db, userId: string, roomId: string, from: number, upTo: number) => db.selectFrom((eb) => eb
  .selectFrom('event_push_actions').select('highlight')
  .where('user_id', '=', userId).where('room_id', '=', roomId).where('stream_pos', '>', from).where('stream_pos', '<=', upTo)
  .orderBy('stream_pos', 'desc').limit(UNREAD_CAP).as('x'))
  .select([(eb) => eb.fn.countAll<number>().as('n'), (eb) => eb.fn.sum<number>('x.highlight').as('h')]));

function chunks<T>(xs: T[], n = IN_CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const unknownError = (msg: string) => new MatrixError('M_UNKNOWN', 400, msg);
const ruleNotFound = () => notFound('The push rule was not found.');

export class PushService {
  readonly pushers: PusherStore;
  /** Merged rulesets of recently active users. Only this service writes m.push_rules, so it stays true. */
  private rulesets = new Lru<string, Ruleset>(RULESET_CACHE_SIZE);
  /** Bumped on every rules write: a read that raced a write does not cache what it read. */
  private generation = 0;
  /** Users' m.ignored_user_list as a set (null: none), valid while their account data does not change after `asOf`. */
  private ignoredLists = new WeightedLru<string, { ignored: ReadonlySet<string> | null; asOf: number }>(
    IGNORED_CACHE_USERS, IGNORED_CACHE_TOTAL, (e) => 1 + (e.ignored?.size ?? 0));
  /** Read positions per `userRoomKey`, valid while the user's receipts in the room do not change after `asOf`. */
  private readPos = new Lru<string, { pos: number | undefined; asOf: number }>(UNREAD_CACHE_SIZE);
  /**
   * Unread counts per `userRoomKey`: the count of push actions in
   * (from, upTo], valid for the same `from` and another upTo while the
   * user's push actions in the room do not change after the smaller of the two.
   */
  private unread = new Lru<string, { from: number; upTo: number; counts: UnreadCounts }>(UNREAD_CACHE_SIZE);

  constructor(private readonly ctx: Context) {
    this.pushers = new PusherStore(ctx.storage.db);
    ctx.accounts.onDevicesDeleted(async (tx, _alloc, userId, deviceIds) => {
      await this.pushers.deleteForDevices(tx, userId, deviceIds);
    });
    ctx.accounts.onDeactivated((userId) => this.pushers.deleteAll(userId));
  }

  private get db() {
    return this.ctx.storage.db;
  }

  private isLocal(userId: string): boolean {
    return userId.endsWith(`:${this.ctx.config.server_name}`);
  }

  // ------------------------------------------------------------ reading rules

  /** The user's changes to the defaults, as stored. */
  private async userRules(userId: string): Promise<UserPushRules> {
    const content = await this.ctx.accounts.getAccountData(userId, '', PUSH_RULES_TYPE);
    return content === undefined ? emptyUserRules() : userRulesFromContent(content);
  }

  /** The user's effective ruleset (defaults merged with their own rules). */
  async ruleset(userId: string): Promise<Ruleset> {
    const hit = this.rulesets.get(userId);
    if (hit) return hit;
    const gen = this.generation;
    const merged = mergeRules(userId, await this.userRules(userId));
    if (gen === this.generation) this.rulesets.set(userId, merged);
    return merged;
  }

  /** GET /pushrules/ and the m.push_rules account data content. */
  async rulesContent(userId: string): Promise<PushRulesContent> {
    return rulesContent(await this.ruleset(userId));
  }

  async getRule(userId: string, kind: string, ruleId: string): Promise<PushRule> {
    const k = checkKind(kind);
    const r = findRule(await this.ruleset(userId), k, ruleId);
    if (!r) throw ruleNotFound();
    return formatRule(k, r);
  }

  async listKind(userId: string, kind: string): Promise<PushRule[]> {
    const k = checkKind(kind);
    return (await this.ruleset(userId))[k].map((r) => formatRule(k, r));
  }

  // ------------------------------------------------------------ changing rules

  /**
   * Read-modify-write of the stored rules under the write lock. `fn` may
   * throw a MatrixError, which rolls the write back. The stored content is
   * the full merged ruleset, which is what clients read from /sync.
   */
  private async modify(userId: string, fn: (u: UserPushRules) => void): Promise<void> {
    try {
      await this.ctx.accounts.updateAccountData(userId, '', PUSH_RULES_TYPE, (current) => {
        const u = current === undefined ? emptyUserRules() : userRulesFromContent(current);
        fn(u);
        return rulesContent(mergeRules(userId, u)) as unknown as Record<string, unknown>;
      });
    } finally {
      this.generation++;
      this.rulesets.delete(userId);
    }
  }

  /** PUT /pushrules/global/{kind}/{ruleId}. */
  async putRule(userId: string, kind: string, ruleId: string, body: unknown, position: { before?: string; after?: string }): Promise<void> {
    const k = checkKind(kind);
    checkNewRuleId(k, ruleId, userId);
    const rule = parseRuleBody(k, ruleId, body);
    const ref = position.before ?? position.after;
    if (ref !== undefined && isServerDefaultRuleId(ref)) throw unknownError('A rule cannot be placed relative to a server-default rule');
    await this.modify(userId, (u) => {
      const list = u.custom[k];
      const existing = list.find((r) => r.rule_id === ruleId);
      // Updating keeps the rule's enabled state; new rules are enabled.
      if (existing) rule.enabled = existing.enabled;
      if (ref !== undefined) {
        const rest = list.filter((r) => r.rule_id !== ruleId);
        const at = rest.findIndex((r) => r.rule_id === ref);
        if (at < 0) throw unknownError(`before/after rule not found: ${ref.slice(0, 255)}`);
        rest.splice(position.before !== undefined ? at : at + 1, 0, rule);
        u.custom[k] = rest;
      } else if (existing) {
        list[list.indexOf(existing)] = rule;
      } else {
        list.unshift(rule);
      }
    });
  }

  /** DELETE /pushrules/global/{kind}/{ruleId}. */
  async deleteRule(userId: string, kind: string, ruleId: string): Promise<void> {
    const k = checkKind(kind);
    if (isServerDefaultRuleId(ruleId)) {
      if (serverDefaultRules(userId)[k].some((r) => r.rule_id === ruleId)) throw invalidParam('Server-default rules cannot be deleted');
      throw ruleNotFound();
    }
    // Check first so a missing rule does not cost a write.
    if (!findRule(await this.ruleset(userId), k, ruleId)) throw ruleNotFound();
    await this.modify(userId, (u) => {
      const before = u.custom[k].length;
      u.custom[k] = u.custom[k].filter((r) => r.rule_id !== ruleId);
      if (u.custom[k].length === before) throw ruleNotFound();
    });
  }

  /** PUT .../enabled and .../actions: for user rules and server-default rules alike. */
  private async changeRule(userId: string, kind: string, ruleId: string, change: { enabled?: boolean; actions?: PushAction[] }): Promise<void> {
    const k = checkKind(kind);
    if (!findRule(await this.ruleset(userId), k, ruleId)) throw ruleNotFound();
    await this.modify(userId, (u) => {
      if (isServerDefaultRuleId(ruleId)) {
        if (!serverDefaultRules(userId)[k].some((r) => r.rule_id === ruleId)) throw ruleNotFound();
        const key = defaultRuleKey(k, ruleId);
        u.defaults[key] = { ...u.defaults[key], ...change };
        return;
      }
      const r = u.custom[k].find((x) => x.rule_id === ruleId);
      if (!r) throw ruleNotFound();
      if (change.enabled !== undefined) r.enabled = change.enabled;
      if (change.actions !== undefined) r.actions = change.actions;
    });
  }

  async getEnabled(userId: string, kind: string, ruleId: string): Promise<boolean> {
    return (await this.getRule(userId, kind, ruleId)).enabled;
  }

  async setEnabled(userId: string, kind: string, ruleId: string, body: unknown): Promise<void> {
    if (!isObject(body)) throw new MatrixError('M_NOT_JSON', 400, 'Request body must be a JSON object');
    if (body.enabled === undefined) throw missingParam('Missing parameter: enabled');
    if (typeof body.enabled !== 'boolean') throw badJson('enabled must be a boolean');
    await this.changeRule(userId, kind, ruleId, { enabled: body.enabled });
  }

  async getActions(userId: string, kind: string, ruleId: string): Promise<PushAction[]> {
    return (await this.getRule(userId, kind, ruleId)).actions;
  }

  async setActions(userId: string, kind: string, ruleId: string, body: unknown): Promise<void> {
    if (!isObject(body)) throw new MatrixError('M_NOT_JSON', 400, 'Request body must be a JSON object');
    if (body.actions === undefined) throw missingParam('Missing parameter: actions');
    const actions = validateActions(body.actions);
    if (!Array.isArray(actions)) throw badJson(actions.error);
    await this.changeRule(userId, kind, ruleId, { actions });
  }

  // ------------------------------------------------------------ evaluating events

  /**
   * Evaluate a new event for the room's local members. Called by the event
   * write path before its transaction, with the room state before the event;
   * never throws (a failure is logged and only costs the notifications).
   */
  async prepareEvent(ev: StoredPdu, roomVersion: string, stateIds: Map<string, string>): Promise<PreparedPush | undefined> {
    try {
      return await this.evaluateEvent(ev, roomVersion, stateIds);
    } catch (err) {
      this.ctx.log.warn({ err, eventId: ev.event_id }, 'push rule evaluation failed');
      return undefined;
    }
  }

  private async evaluateEvent(ev: StoredPdu, roomVersion: string, stateIds: Map<string, string>): Promise<PreparedPush | undefined> {
    const roomId = ev.room_id;
    const sender = ev.sender;
    const redacts = ev.type === 'm.room.redaction'
      ? (typeof ev.redacts === 'string' ? ev.redacts : typeof ev.content.redacts === 'string' ? ev.content.redacts : undefined)
      : undefined;
    const rows: Array<{ user_id: string; notify: number; highlight: number; actions: string }> = [];

    if (ev.type !== 'm.room.create') {
      const members = await this.ctx.rooms.joinedMembers(roomId);
      const memberCount = members.length;
      const recipients = new Set(members.filter((u) => u !== sender && this.isLocal(u)));
      // An invitee is not joined yet, but .m.rule.invite_for_me is about them.
      if (ev.type === 'm.room.member' && ev.content.membership === 'invite' && typeof ev.state_key === 'string'
        && ev.state_key !== sender && this.isLocal(ev.state_key)) {
        recipients.add(ev.state_key);
      }
      if (ev.state_key === undefined && recipients.size) {
        for (const u of await this.usersIgnoring(sender, [...recipients])) recipients.delete(u);
      }
      if (recipients.size) {
        const version = getRoomVersion(roomVersion);
        const plId = stateIds.get(stateKeyOf('m.room.power_levels', ''));
        const createId = stateIds.get(stateKeyOf('m.room.create', ''));
        const stateEvents = await this.ctx.rooms.events.getMany([plId, createId].filter((x): x is string => !!x));
        const pl = stateEvents.find((e) => e.pdu.type === 'm.room.power_levels');
        const create = stateEvents.find((e) => e.pdu.type === 'm.room.create');
        let senderPowerLevel = 0;
        let notificationLevels: Record<string, number> = {};
        if (version) {
          const levels = effectivePowerLevels(pl?.pdu.content, create?.pdu, version);
          senderPowerLevel = userPowerLevel(levels, sender, create?.pdu, version);
          notificationLevels = levels.notifications;
        }
        const event: PushEvent = {
          event_id: ev.event_id, room_id: roomId, type: ev.type, sender, content: ev.content, origin_server_ts: ev.origin_server_ts,
        };
        if (ev.state_key !== undefined) event.state_key = ev.state_key;
        const hasBody = typeof ev.content.body === 'string';
        for (const userId of recipients) {
          const rs = await this.ruleset(userId);
          let displayName: string | null = null;
          if (hasBody && usesCondition(rs, 'contains_display_name')) displayName = await this.displayNameIn(stateIds, userId);
          const out = evaluatePushRules(rs, event, { userId, displayName, memberCount, senderPowerLevel, notificationLevels });
          if (!out.notify) continue;
          rows.push({ user_id: userId, notify: 1, highlight: out.highlight ? 1 : 0, actions: JSON.stringify(out.actions) });
        }
      }
    }

    if (!rows.length && !redacts) return undefined;
    const ts = Date.now();
    return {
      write: async (tx, pos, onCommit) => {
        for (const part of chunks(rows, 200)) {
          await tx.insertInto('event_push_actions')
            .values(part.map((r) => ({ ...r, room_id: roomId, event_id: ev.event_id, stream_pos: pos, ts })))
            .onConflict((oc) => oc.columns(['user_id', 'event_id']).doNothing())
            .execute();
        }
        // A redacted event no longer counts as a notification.
        const gone = redacts
          ? await tx.deleteFrom('event_push_actions').where('event_id', '=', redacts).returning(['user_id', 'room_id']).execute()
          : [];
        onCommit(() => {
          for (const r of rows) this.actionAdded(r.user_id, roomId, pos, r.highlight);
          for (const r of gone) this.actionsRemoved(r.user_id, r.room_id, pos);
        });
      },
    };
  }

  /** Which of `users` ignore `sender` (m.ignored_user_list). */
  private async usersIgnoring(sender: string, users: string[]): Promise<string[]> {
    const out: string[] = [];
    const changes = this.ctx.streams.accountData;
    const missing: string[] = [];
    for (const u of users) {
      const hit = this.ignoredLists.get(u);
      if (hit && !changes.hasEntityChanged(u, hit.asOf)) {
        if (hit.ignored?.has(sender)) out.push(u);
      } else {
        missing.push(u);
      }
    }
    if (!missing.length) return out;
    const asOf = this.ctx.notifier.position;
    for (const part of chunks(missing)) {
      const rows = await this.db.selectFrom('account_data').select(['user_id', 'content'])
        .where('room_id', '=', '').where('type', '=', 'm.ignored_user_list').where('user_id', 'in', part).execute();
      const lists = new Map<string, ReadonlySet<string>>();
      for (const r of rows) {
        try {
          const ignored = (JSON.parse(r.content) as { ignored_users?: unknown }).ignored_users;
          if (isObject(ignored)) lists.set(r.user_id, new Set(Object.keys(ignored)));
        } catch {
          // unreadable account data ignores no one
        }
      }
      for (const u of part) {
        const ignored = lists.get(u) ?? null;
        this.ignoredLists.set(u, { ignored, asOf });
        if (ignored?.has(sender)) out.push(u);
      }
    }
    return out;
  }

  private async displayNameIn(stateIds: Map<string, string>, userId: string): Promise<string | null> {
    const id = stateIds.get(stateKeyOf('m.room.member', userId));
    const ev = id ? await this.ctx.rooms.events.get(id) : undefined;
    const name = ev?.pdu.content.displayname;
    return typeof name === 'string' ? name : null;
  }

  // ------------------------------------------------------------ counts

  /** Where the user has read each room up to: the later of their m.read and m.read.private receipts (unthreaded or main). */
  async readPositions(userId: string, roomIds: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const changes = this.ctx.streams.userReceipts;
    const missing: string[] = [];
    for (const roomId of roomIds) {
      const hit = this.readPos.get(userRoomKey(userId, roomId));
      if (hit && !changes.hasEntityChanged(userRoomKey(userId, roomId), hit.asOf)) {
        if (hit.pos !== undefined) out.set(roomId, hit.pos);
      } else {
        missing.push(roomId);
      }
    }
    if (!missing.length) return out;
    const asOf = this.ctx.notifier.position;
    const read = await this.ctx.ephemeral.receipts.readUpTo(userId, missing);
    for (const roomId of missing) {
      const pos = read.get(roomId);
      this.readPos.set(userRoomKey(userId, roomId), { pos, asOf });
      if (pos !== undefined) out.set(roomId, pos);
    }
    return out;
  }

  /**
   * Notification and highlight counts of a room for /sync: notifying events
   * after the user's read position and after `afterStreamPos` (e.g. when
   * they joined), up to `upTo` (the sync's stream head) if given.
   */
  async unreadCounts(userId: string, roomId: string, afterStreamPos = 0, upTo?: number): Promise<UnreadCounts> {
    const m = await this.unreadCountsForRooms(userId, [{ roomId, after: afterStreamPos }], upTo);
    return m.get(roomId) ?? { notification_count: 0, highlight_count: 0 };
  }

  async unreadCountsForRooms(userId: string, rooms: Array<{ roomId: string; after: number }>, upTo?: number): Promise<Map<string, UnreadCounts>> {
    const out = new Map<string, UnreadCounts>();
    if (!rooms.length) return out;
    const read = await this.readPositions(userId, rooms.map((r) => r.roomId));
    const changes = this.ctx.streams.pushActions;
    let next = 0;
    const worker = async () => {
      while (next < rooms.length) {
        const r = rooms[next++];
        const from = Math.max(r.after, read.get(r.roomId) ?? 0);
        // Counts up to a position whose changes are all recorded can be reused
        // while the user's push actions in the room do not change after it.
        const key = userRoomKey(userId, r.roomId);
        const cacheable = upTo !== undefined && upTo <= this.ctx.notifier.position;
        if (cacheable) {
          const hit = this.unread.get(key);
          if (hit && hit.from === from && !changes.hasEntityChanged(key, Math.min(hit.upTo, upTo))) {
            out.set(r.roomId, { ...hit.counts });
            continue;
          }
        }
        // The newest UNREAD_CAP notifications are counted: an unread room stays cheap however far behind it is.
        const row = (await countUnread(this.db, userId, r.roomId, from, upTo ?? Number.MAX_SAFE_INTEGER))[0];
        const counts = { notification_count: Number(row?.n ?? 0), highlight_count: Number(row?.h ?? 0) };
        if (cacheable) this.unread.set(key, { from, upTo: upTo!, counts: { ...counts } });
        out.set(r.roomId, counts);
      }
    };
    await Promise.all(Array.from({ length: Math.min(COUNT_CONCURRENCY, rooms.length) }, worker));
    return out;
  }

  /**
   * After commit: a push action at `pos` (the newest position) for the user
   * in the room. A cached count that was exact up to the previous change
   * moves forward to `pos` without a query; any other is dropped.
   */
  private actionAdded(userId: string, roomId: string, pos: number, highlight: number): void {
    const key = userRoomKey(userId, roomId);
    const changes = this.ctx.streams.pushActions;
    const hit = this.unread.get(key);
    const exact = hit !== undefined && !changes.hasEntityChanged(key, hit.upTo) && pos > hit.upTo;
    changes.entityChanged(key, pos);
    if (!hit) return;
    // At the cap, the oldest counted notification would drop out of the window: count again.
    if (!exact || hit.counts.notification_count >= UNREAD_CAP) {
      this.unread.delete(key);
      return;
    }
    if (pos > hit.from) {
      this.unread.set(key, {
        from: hit.from,
        upTo: pos,
        counts: { notification_count: hit.counts.notification_count + 1, highlight_count: hit.counts.highlight_count + (highlight ? 1 : 0) },
      });
    } else {
      this.unread.set(key, { ...hit, upTo: pos });
    }
  }

  /** After commit: push actions of the user in the room were deleted (by a redaction at `pos`). */
  private actionsRemoved(userId: string, roomId: string, pos: number): void {
    const key = userRoomKey(userId, roomId);
    this.ctx.streams.pushActions.entityChanged(key, pos);
    this.unread.delete(key);
  }

  /** GET /notifications: newest first, paginated by stream position. */
  async notifications(userId: string, opts: { from?: string; limit?: number; only?: string }): Promise<NotificationsPage> {
    const limit = Math.min(Math.max(opts.limit ?? 20, 1), 100);
    let q = this.db.selectFrom('event_push_actions').select(['room_id', 'event_id', 'stream_pos', 'actions', 'ts'])
      .where('user_id', '=', userId);
    if (opts.from !== undefined && opts.from !== '') {
      if (!/^\d{1,15}$/.test(opts.from)) throw invalidParam('Invalid from token');
      q = q.where('stream_pos', '<', Number(opts.from));
    }
    if (opts.only === 'highlight') q = q.where('highlight', '=', 1);
    const rows = await q.orderBy('stream_pos', 'desc').limit(limit + 1).execute();
    const more = rows.length > limit;
    const page = rows.slice(0, limit);
    const events = new Map((await this.ctx.rooms.events.getMany(page.map((r) => r.event_id))).map((e) => [e.pdu.event_id, e]));
    const read = await this.readPositions(userId, [...new Set(page.map((r) => r.room_id))]);
    const out: NotificationsPage = { notifications: [] };
    for (const r of page) {
      const ev = events.get(r.event_id);
      if (!ev) continue;
      out.notifications.push({
        actions: JSON.parse(r.actions) as PushAction[],
        event: toClientEvent(ev, { userId }, { omitRoomId: true }),
        read: Number(r.stream_pos) <= (read.get(r.room_id) ?? 0),
        room_id: r.room_id,
        ts: Number(r.ts),
      });
    }
    if (more && page.length) out.next_token = String(page[page.length - 1].stream_pos);
    return out;
  }
}

// ---------------------------------------------------------------- request checks

function checkKind(kind: string): RuleKind {
  if (!isRuleKind(kind)) throw invalidParam(`Unknown push rule kind: ${kind.slice(0, 100)} (expected one of ${RULE_KINDS.join(', ')})`);
  return kind;
}

/** Rule ids of PUT: not a server-default one, no slashes or backslashes. */
function checkNewRuleId(kind: RuleKind, ruleId: string, userId: string): void {
  if (isServerDefaultRuleId(ruleId)) {
    if (serverDefaultRules(userId)[kind].some((r) => r.rule_id === ruleId)) {
      throw invalidParam('Server-default rules cannot be redefined; change their /enabled or /actions instead');
    }
    throw invalidParam('Rule ids starting with "." are reserved for server-default rules');
  }
  if (ruleId === '' || ruleId.length > MAX_RULE_ID_LENGTH) throw invalidParam('Invalid rule id');
  if (ruleId.includes('/') || ruleId.includes('\\')) throw invalidParam('Rule ids may not contain slashes or backslashes');
}

/** The body of PUT /pushrules/global/{kind}/{ruleId}, as a new (enabled) user rule. */
function parseRuleBody(kind: RuleKind, ruleId: string, body: unknown): PushRule {
  if (!isObject(body)) throw new MatrixError('M_NOT_JSON', 400, 'Request body must be a JSON object');
  if (body.actions === undefined) throw missingParam('Missing parameter: actions');
  const actions = validateActions(body.actions);
  if (!Array.isArray(actions)) throw badJson(actions.error);
  const rule: PushRule = { rule_id: ruleId, default: false, enabled: true, actions };
  if (kind === 'override' || kind === 'underride') {
    const conditions = body.conditions === undefined ? [] : validateConditions(body.conditions);
    if (!Array.isArray(conditions)) throw badJson(conditions.error);
    rule.conditions = conditions;
  } else if (kind === 'content') {
    if (body.pattern === undefined) throw missingParam('Missing parameter: pattern');
    if (typeof body.pattern !== 'string') throw badJson('pattern must be a string');
    rule.pattern = body.pattern;
  }
  return rule;
}
