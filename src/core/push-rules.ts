/**
 * Push rules (spec: client-server API, Push Notifications module): the
 * server-default ruleset, merging a user's own rules with it, and deciding
 * what a ruleset says about an event. Pure: no I/O.
 *
 * The default rules are those the spec lists today (v1.17 removed the legacy
 * body-based mention rules `.m.rule.contains_display_name`,
 * `.m.rule.roomnotif` and `.m.rule.contains_user_name`, MSC4210); the
 * deprecated `contains_display_name` condition is still evaluated for rules
 * users write themselves.
 *
 * Glob matching is done by a small linear-time matcher rather than by
 * compiling patterns to regular expressions, so a user's pattern such as
 * `*a*a*a*a*b` cannot make the server backtrack over a 64 KiB message body.
 */

export const RULE_KINDS = ['override', 'content', 'room', 'sender', 'underride'] as const;
export type RuleKind = (typeof RULE_KINDS)[number];

export function isRuleKind(kind: string): kind is RuleKind {
  return (RULE_KINDS as readonly string[]).includes(kind);
}

/** `"notify"` or `{set_tweak, value?}`; other strings and objects are passed through untouched. */
export type PushAction = string | { set_tweak: string; value?: unknown; [k: string]: unknown };

export interface PushCondition {
  kind: string;
  key?: string;
  pattern?: string;
  is?: string;
  value?: unknown;
  [k: string]: unknown;
}

export interface PushRule {
  rule_id: string;
  default: boolean;
  enabled: boolean;
  actions: PushAction[];
  /** override and underride rules only. */
  conditions?: PushCondition[];
  /** content rules only. */
  pattern?: string;
}

export type Ruleset = Record<RuleKind, PushRule[]>;

/** The content of the `m.push_rules` account data event, and the body of GET /pushrules/. */
export interface PushRulesContent {
  global: Ruleset;
}

/** Actions the spec retired: ignored wherever they appear (spec: Historical Actions). */
const LEGACY_ACTIONS = new Set(['dont_notify', 'coalesce']);

// ---------------------------------------------------------------- server-default rules

const ev = (key: string, pattern: string): PushCondition => ({ kind: 'event_match', key, pattern });
const SOUND_DEFAULT = { set_tweak: 'sound', value: 'default' } as const;
const HIGHLIGHT = { set_tweak: 'highlight' } as const;

function rule(rule_id: string, conditions: PushCondition[], actions: PushAction[], enabled = true): PushRule {
  return { rule_id, default: true, enabled, conditions, actions };
}

/**
 * The spec's server-default rules for `userId`, in the spec's order. The
 * master rule is first among the override rules; every other default rule
 * ranks below the user's own rules of its kind (see mergeRules).
 */
export function serverDefaultRules(userId: string): Ruleset {
  return {
    override: [
      rule('.m.rule.master', [], [], false),
      rule('.m.rule.suppress_notices', [ev('content.msgtype', 'm.notice')], []),
      rule('.m.rule.invite_for_me', [ev('type', 'm.room.member'), ev('content.membership', 'invite'), ev('state_key', userId)],
        ['notify', { ...SOUND_DEFAULT }]),
      rule('.m.rule.member_event', [ev('type', 'm.room.member')], []),
      rule('.m.rule.is_user_mention', [{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: userId }],
        ['notify', { ...SOUND_DEFAULT }, { ...HIGHLIGHT }]),
      rule('.m.rule.is_room_mention', [
        { kind: 'event_property_is', key: 'content.m\\.mentions.room', value: true },
        { kind: 'sender_notification_permission', key: 'room' },
      ], ['notify', { ...HIGHLIGHT }]),
      rule('.m.rule.tombstone', [ev('type', 'm.room.tombstone'), ev('state_key', '')], ['notify', { ...HIGHLIGHT }]),
      rule('.m.rule.reaction', [ev('type', 'm.reaction')], []),
      rule('.m.rule.room.server_acl', [ev('type', 'm.room.server_acl'), ev('state_key', '')], []),
      rule('.m.rule.suppress_edits', [{ kind: 'event_property_is', key: 'content.m\\.relates_to.rel_type', value: 'm.replace' }], []),
    ],
    content: [],
    room: [],
    sender: [],
    underride: [
      rule('.m.rule.call', [ev('type', 'm.call.invite')], ['notify', { set_tweak: 'sound', value: 'ring' }]),
      rule('.m.rule.encrypted_room_one_to_one', [{ kind: 'room_member_count', is: '2' }, ev('type', 'm.room.encrypted')],
        ['notify', { ...SOUND_DEFAULT }]),
      rule('.m.rule.room_one_to_one', [{ kind: 'room_member_count', is: '2' }, ev('type', 'm.room.message')],
        ['notify', { ...SOUND_DEFAULT }]),
      rule('.m.rule.message', [ev('type', 'm.room.message')], ['notify']),
      rule('.m.rule.encrypted', [ev('type', 'm.room.encrypted')], ['notify']),
    ],
  };
}

/** Rule ids starting with a dot are reserved for server-default rules. */
export function isServerDefaultRuleId(ruleId: string): boolean {
  return ruleId.startsWith('.');
}

// ---------------------------------------------------------------- the user's rules

/** What a user changed: their own rules, and the enabled flag / actions of server-default rules. */
export interface UserPushRules {
  /** User-defined rules per kind, most important first (`default: false`). */
  custom: Ruleset;
  /** Changes to server-default rules, keyed by `defaultRuleKey(kind, ruleId)`. */
  defaults: Record<string, { enabled?: boolean; actions?: PushAction[] }>;
}

export function defaultRuleKey(kind: RuleKind, ruleId: string): string {
  return `${kind}/${ruleId}`;
}

export function emptyRuleset(): Ruleset {
  return { override: [], content: [], room: [], sender: [], underride: [] };
}

export function emptyUserRules(): UserPushRules {
  return { custom: emptyRuleset(), defaults: {} };
}

export function cloneUserRules(u: UserPushRules): UserPushRules {
  return structuredClone(u);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Drop the historical actions and anything that is not an action at all. */
export function stripLegacyActions(actions: unknown): PushAction[] {
  if (!Array.isArray(actions)) return [];
  const out: PushAction[] = [];
  for (const a of actions) {
    if (typeof a === 'string') {
      if (!LEGACY_ACTIONS.has(a)) out.push(a);
    } else if (isObject(a) && typeof a.set_tweak === 'string') {
      out.push({ ...a } as PushAction);
    }
  }
  return out;
}

/**
 * Check the `actions` of a PUT: an array of `"notify"`, the historical
 * `"dont_notify"`/`"coalesce"` (accepted and stripped) or `{set_tweak, value?}`.
 * Returns the cleaned actions or an error message.
 */
export function validateActions(actions: unknown): PushAction[] | { error: string } {
  if (!Array.isArray(actions)) return { error: 'actions must be an array' };
  for (const a of actions) {
    if (typeof a === 'string') {
      if (a !== 'notify' && !LEGACY_ACTIONS.has(a)) return { error: `Unrecognised action: ${a.slice(0, 100)}` };
    } else if (isObject(a)) {
      if (typeof a.set_tweak !== 'string') return { error: 'An object action must have a string set_tweak' };
      if (a.set_tweak === 'highlight' && a.value !== undefined && typeof a.value !== 'boolean') {
        return { error: 'The highlight tweak takes a boolean value' };
      }
    } else {
      return { error: 'Each action must be a string or an object' };
    }
  }
  return stripLegacyActions(actions);
}

const CONDITION_PARAMS: Record<string, Array<[string, (v: unknown) => boolean]>> = {
  event_match: [['key', (v) => typeof v === 'string'], ['pattern', (v) => typeof v === 'string']],
  event_property_is: [['key', (v) => typeof v === 'string'], ['value', isScalar]],
  event_property_contains: [['key', (v) => typeof v === 'string'], ['value', isScalar]],
  room_member_count: [['is', (v) => typeof v === 'string']],
  sender_notification_permission: [['key', (v) => typeof v === 'string']],
  contains_display_name: [],
};

/** Check the `conditions` of a PUT. Unknown kinds are kept (they simply never match). */
export function validateConditions(conditions: unknown): PushCondition[] | { error: string } {
  if (!Array.isArray(conditions)) return { error: 'conditions must be an array' };
  const out: PushCondition[] = [];
  for (const c of conditions) {
    if (!isObject(c) || typeof c.kind !== 'string') return { error: 'Each condition must be an object with a string kind' };
    const params = CONDITION_PARAMS[c.kind];
    if (params) {
      for (const [name, ok] of params) {
        if (!Object.hasOwn(c, name) || !ok(c[name])) return { error: `Condition ${c.kind} needs a valid ${name}` };
      }
    }
    out.push({ ...c } as PushCondition);
  }
  return out;
}

/** Non-compound canonical JSON values: strings, safe integers, booleans and null. */
function isScalar(v: unknown): boolean {
  return v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isSafeInteger(v));
}

/** A user-defined rule as stored, from possibly untrusted JSON; undefined if unusable. */
function customRuleFrom(kind: RuleKind, raw: Record<string, unknown>): PushRule | undefined {
  const id = raw.rule_id as string;
  const r: PushRule = {
    rule_id: id,
    default: false,
    enabled: raw.enabled !== false,
    actions: stripLegacyActions(raw.actions),
  };
  if (kind === 'override' || kind === 'underride') {
    const conds = raw.conditions === undefined ? [] : validateConditions(raw.conditions);
    if (!Array.isArray(conds)) return undefined;
    r.conditions = conds;
  } else if (kind === 'content') {
    if (typeof raw.pattern !== 'string') return undefined;
    r.pattern = raw.pattern;
  }
  return r;
}

/**
 * Read the user's changes back out of stored `m.push_rules` content (which
 * holds the full merged ruleset, as clients expect): rules with a dotted id
 * are server-default rules, of which only `enabled` and `actions` are kept
 * (their definition always comes from serverDefaultRules, so it follows
 * server upgrades); every other rule is the user's own.
 */
export function userRulesFromContent(content: unknown): UserPushRules {
  const out = emptyUserRules();
  const global = isObject(content) && isObject(content.global) ? content.global : undefined;
  if (!global) return out;
  for (const kind of RULE_KINDS) {
    const list = global[kind];
    if (!Array.isArray(list)) continue;
    const seen = new Set<string>();
    for (const raw of list) {
      if (!isObject(raw) || typeof raw.rule_id !== 'string' || seen.has(raw.rule_id)) continue;
      seen.add(raw.rule_id);
      if (isServerDefaultRuleId(raw.rule_id)) {
        const d: { enabled?: boolean; actions?: PushAction[] } = {};
        if (typeof raw.enabled === 'boolean') d.enabled = raw.enabled;
        if (Array.isArray(raw.actions)) d.actions = stripLegacyActions(raw.actions);
        out.defaults[defaultRuleKey(kind, raw.rule_id)] = d;
      } else {
        const r = customRuleFrom(kind, raw);
        if (r) out.custom[kind].push(r);
      }
    }
  }
  return out;
}

/**
 * The user's effective ruleset: per kind, user rules rank above the
 * server-default ones, except `.m.rule.master` which ranks above everything
 * (spec: Predefined Rules).
 */
export function mergeRules(userId: string, user: UserPushRules): Ruleset {
  const defaults = serverDefaultRules(userId);
  const out = emptyRuleset();
  for (const kind of RULE_KINDS) {
    const mine = user.custom[kind].map((r) => structuredClone(r));
    const theirs = defaults[kind].map((r) => {
      const change = user.defaults[defaultRuleKey(kind, r.rule_id)];
      if (change?.enabled !== undefined) r.enabled = change.enabled;
      if (change?.actions !== undefined) r.actions = structuredClone(change.actions);
      return r;
    });
    const first = theirs.filter((r) => r.rule_id === '.m.rule.master');
    const rest = theirs.filter((r) => r.rule_id !== '.m.rule.master');
    out[kind] = [...first, ...mine, ...rest];
  }
  return out;
}

/** One rule in the client format (the spec's PushRule: conditions only for override/underride, pattern only for content). */
export function formatRule(kind: RuleKind, r: PushRule): PushRule {
  const out: PushRule = { rule_id: r.rule_id, default: r.default, enabled: r.enabled, actions: r.actions };
  if (kind === 'override' || kind === 'underride') out.conditions = r.conditions ?? [];
  if (kind === 'content' && r.pattern !== undefined) out.pattern = r.pattern;
  return out;
}

export function formatRuleset(rs: Ruleset): Ruleset {
  const out = emptyRuleset();
  for (const kind of RULE_KINDS) out[kind] = rs[kind].map((r) => formatRule(kind, r));
  return out;
}

export function rulesContent(rs: Ruleset): PushRulesContent {
  return { global: formatRuleset(rs) };
}

/** Find a rule of the merged ruleset. */
export function findRule(rs: Ruleset, kind: RuleKind, ruleId: string): PushRule | undefined {
  return rs[kind].find((r) => r.rule_id === ruleId);
}

// ---------------------------------------------------------------- dotted paths

/**
 * Split a dot-separated property path (spec appendix): `\.` is a literal dot
 * and `\\` a literal backslash; any other backslash is itself.
 */
export function splitDottedPath(key: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < key.length; i++) {
    const c = key[i];
    if (c === '\\' && (key[i + 1] === '.' || key[i + 1] === '\\')) {
      cur += key[i + 1];
      i++;
    } else if (c === '.') {
      parts.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

const MISSING = Symbol('missing');

/** The value at a dotted path of the event, or MISSING when absent (null is a value). */
function lookup(event: Record<string, unknown>, key: string): unknown {
  let cur: unknown = event;
  for (const part of splitDottedPath(key)) {
    if (!isObject(cur) || !Object.hasOwn(cur, part)) return MISSING;
    cur = cur[part];
  }
  return cur;
}

// ---------------------------------------------------------------- glob matching

/** A pattern token: one literal code point, or `?` (any one code point). */
type Token = string | null;
/** A glob split at its `*`s: segments of tokens. */
type Glob = Token[][];

const GLOB_CACHE_MAX = 2000;
const globCache = new Map<string, Glob>();

function parseGlob(pattern: string, literal = false): Glob {
  const cacheKey = (literal ? 'L' : 'G') + pattern;
  const hit = globCache.get(cacheKey);
  if (hit) return hit;
  const segments: Glob = [[]];
  for (const ch of pattern.toLowerCase()) {
    if (!literal && ch === '*') segments.push([]);
    else segments[segments.length - 1].push(!literal && ch === '?' ? null : ch);
  }
  if (globCache.size >= GLOB_CACHE_MAX) globCache.clear();
  globCache.set(cacheKey, segments);
  return segments;
}

/** [A-Za-z0-9_]: everything else (and the ends of the value) is a word boundary. */
function isWordChar(c: string | undefined): boolean {
  if (c === undefined || c.length !== 1) return false;
  const x = c.charCodeAt(0);
  return (x >= 48 && x <= 57) || (x >= 65 && x <= 90) || (x >= 97 && x <= 122) || x === 95;
}

/** Does `seg` match `text` at index `at`? */
function segmentAt(seg: Token[], text: string[], at: number): boolean {
  if (at < 0 || at + seg.length > text.length) return false;
  for (let i = 0; i < seg.length; i++) {
    const t = seg[i];
    if (t !== null && t !== text[at + i]) return false;
  }
  return true;
}

/** First index >= `from` at which `seg` matches, or -1. */
function findSegment(seg: Token[], text: string[], from: number): number {
  for (let i = from; i + seg.length <= text.length; i++) if (segmentAt(seg, text, i)) return i;
  return -1;
}

/**
 * Match a parsed glob against `value` (case-insensitively). Whole value, or
 * with `words`, any substring that starts and ends at a word boundary: the
 * start or end of the value, or a character outside [A-Za-z0-9_] (either
 * just outside the substring or its own first/last character).
 *
 * Greedy and linear per start position: the middle segments are placed at
 * their earliest occurrence, and the earliest viable start leaves the most
 * room for the last segment, so only the first viable start matters when
 * the pattern has a `*`.
 */
function globMatch(glob: Glob, value: string, words: boolean): boolean {
  const text = Array.from(value.toLowerCase());
  const n = text.length;
  const startOk = (s: number) => !words ? s === 0 : s === 0 || !isWordChar(text[s - 1]) || !isWordChar(text[s]);
  const endOk = (e: number) => !words ? e === n : e === n || !isWordChar(text[e]) || (e > 0 && !isWordChar(text[e - 1]));
  const first = glob[0];
  if (glob.length === 1) {
    for (let s = 0; s + first.length <= n; s++) {
      if (startOk(s) && segmentAt(first, text, s) && endOk(s + first.length)) return true;
      if (!words) break;
    }
    return false;
  }
  const last = glob[glob.length - 1];
  const middle = glob.slice(1, -1);
  for (let s = 0; s <= n; s++) {
    if (!startOk(s) || !segmentAt(first, text, s)) {
      if (!words) return false;
      continue;
    }
    // Earliest placement of the middle segments.
    let p = s + first.length;
    for (const seg of middle) {
      const at = findSegment(seg, text, p);
      if (at < 0) return false; // a later start cannot place them either
      p = at + seg.length;
    }
    // The last segment ends at some boundary e with e - |last| >= p.
    if (!words) return n - last.length >= p && segmentAt(last, text, n - last.length);
    for (let e = p + last.length; e <= n; e++) {
      if (endOk(e) && segmentAt(last, text, e - last.length)) return true;
    }
    return false; // a later start only pushes p further right
  }
  return false;
}

/** Glob-style match (spec appendix: `*` any run, `?` one character), case-insensitive. */
export function globMatches(pattern: string, value: string, opts: { wordBoundaries?: boolean } = {}): boolean {
  return globMatch(parseGlob(pattern), value, opts.wordBoundaries === true);
}

// ---------------------------------------------------------------- evaluation

/** What the evaluator knows about the room and the user, beyond the event. */
export interface PushEvalContext {
  /** The user whose rules these are. */
  userId: string;
  /** The user's display name in the room (contains_display_name). */
  displayName?: string | null;
  /** Joined members of the room (room_member_count). */
  memberCount: number;
  /** The sender's power level (sender_notification_permission). */
  senderPowerLevel: number;
  /** `notifications` levels from the power levels; unlisted keys need 50. */
  notificationLevels?: Record<string, number>;
}

/** The event as push rules see it: its top-level keys and content (a client-format event). */
export type PushEvent = Record<string, unknown> & { type: string; sender: string; content: Record<string, unknown>; room_id?: string };

const DEFAULT_NOTIFICATION_LEVEL = 50;
const MEMBER_COUNT_RE = /^(==|<=|>=|<|>)?([0-9]+)$/;

export function conditionMatches(cond: PushCondition, event: PushEvent, ctx: PushEvalContext): boolean {
  switch (cond.kind) {
    case 'event_match': {
      if (typeof cond.key !== 'string' || typeof cond.pattern !== 'string') return false;
      const v = lookup(event, cond.key);
      if (typeof v !== 'string') return false;
      return globMatches(cond.pattern, v, { wordBoundaries: cond.key === 'content.body' });
    }
    case 'event_property_is': {
      if (typeof cond.key !== 'string' || !isScalar(cond.value)) return false;
      const v = lookup(event, cond.key);
      return v !== MISSING && isScalar(v) && v === cond.value;
    }
    case 'event_property_contains': {
      if (typeof cond.key !== 'string' || !isScalar(cond.value)) return false;
      const v = lookup(event, cond.key);
      return Array.isArray(v) && v.some((x) => isScalar(x) && x === cond.value);
    }
    case 'contains_display_name': {
      const body = event.content?.body;
      const name = ctx.displayName;
      if (typeof body !== 'string' || typeof name !== 'string' || name === '') return false;
      return globMatch(parseGlob(name, true), body, true);
    }
    case 'room_member_count': {
      const m = typeof cond.is === 'string' ? MEMBER_COUNT_RE.exec(cond.is) : null;
      if (!m) return false;
      const want = Number(m[2]);
      const have = ctx.memberCount;
      switch (m[1] ?? '==') {
        case '==': return have === want;
        case '<': return have < want;
        case '>': return have > want;
        case '<=': return have <= want;
        case '>=': return have >= want;
      }
      return false;
    }
    case 'sender_notification_permission': {
      if (typeof cond.key !== 'string') return false;
      const levels = ctx.notificationLevels ?? {};
      const needed = Object.hasOwn(levels, cond.key) ? levels[cond.key] : DEFAULT_NOTIFICATION_LEVEL;
      return ctx.senderPowerLevel >= needed;
    }
    default:
      // Unrecognised conditions never match.
      return false;
  }
}

export function ruleMatches(kind: RuleKind, r: PushRule, event: PushEvent, ctx: PushEvalContext): boolean {
  if (!r.enabled) return false;
  switch (kind) {
    case 'override':
    case 'underride':
      return (r.conditions ?? []).every((c) => conditionMatches(c, event, ctx));
    case 'content': {
      const body = event.content?.body;
      return typeof r.pattern === 'string' && typeof body === 'string' && globMatches(r.pattern, body, { wordBoundaries: true });
    }
    case 'room':
      return event.room_id === r.rule_id;
    case 'sender':
      return event.sender === r.rule_id;
  }
}

/** The first enabled rule that matches, checking kinds in priority order. */
export function findMatchingRule(rs: Ruleset, event: PushEvent, ctx: PushEvalContext): { kind: RuleKind; rule: PushRule } | undefined {
  for (const kind of RULE_KINDS) {
    for (const r of rs[kind]) if (ruleMatches(kind, r, event, ctx)) return { kind, rule: r };
  }
  return undefined;
}

export interface PushOutcome {
  /** The matching rule's actions (historical ones stripped); empty when nothing matched. */
  actions: PushAction[];
  notify: boolean;
  highlight: boolean;
  /** The `sound` tweak, if set. */
  sound?: string;
  rule?: { kind: RuleKind; rule_id: string };
}

/** Read notify / highlight / sound out of a list of actions. */
export function actionsOutcome(actions: PushAction[]): Omit<PushOutcome, 'rule'> {
  const clean = stripLegacyActions(actions);
  let highlight = false;
  let sound: string | undefined;
  for (const a of clean) {
    if (typeof a === 'string') continue;
    // A highlight tweak with no value means true.
    if (a.set_tweak === 'highlight') highlight = a.value === undefined ? true : a.value === true;
    if (a.set_tweak === 'sound' && typeof a.value === 'string') sound = a.value;
  }
  const out: Omit<PushOutcome, 'rule'> = { actions: clean, notify: clean.includes('notify'), highlight };
  if (sound !== undefined) out.sound = sound;
  return out;
}

/**
 * Evaluate `event` for the owner of `rs`. Events the user sent themselves
 * never notify (spec); that is left to the caller, who knows the sender.
 */
export function evaluatePushRules(rs: Ruleset, event: PushEvent, ctx: PushEvalContext): PushOutcome {
  const match = findMatchingRule(rs, event, ctx);
  if (!match) return { actions: [], notify: false, highlight: false };
  return { ...actionsOutcome(match.rule.actions), rule: { kind: match.kind, rule_id: match.rule.rule_id } };
}

/** Whether any enabled rule of the set uses the condition kind (lets callers skip expensive context). */
export function usesCondition(rs: Ruleset, conditionKind: string): boolean {
  for (const kind of ['override', 'underride'] as const) {
    for (const r of rs[kind]) if (r.enabled && r.conditions?.some((c) => c.kind === conditionKind)) return true;
  }
  return false;
}
