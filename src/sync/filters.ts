import { splitDottedPath } from '../core/push-rules.js';
import { filterDefinition, type FilterDefinition } from '../accounts/filters.js';
import { invalidParam } from '../server/errors.js';

/**
 * Sync filters (spec: Filtering): parsing, and the pure matching helpers
 * /sync applies. The definition's shape is the one POST /filter accepts
 * (accounts/filters.ts). A parsed filter is compiled once (`compileFilter`)
 * so wildcard type patterns become regular expressions.
 */

export type Filter = FilterDefinition;
export type RoomFilter = NonNullable<Filter['room']>;
export type RoomEventFilter = NonNullable<RoomFilter['timeline']>;
export type EventFilter = NonNullable<Filter['presence']>;

/** Validate a filter definition (already JSON-decoded); throws M_INVALID_PARAM. */
export function parseFilter(raw: unknown): Filter {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalidParam('Filter must be a JSON object');
  const r = filterDefinition.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw invalidParam(`Invalid filter: ${issue.path.join('.') || 'filter'}: ${issue.message}`);
  }
  return r.data;
}

/** Decode the `filter` query parameter when it is inline JSON (first char `{`). */
export function parseInlineFilter(text: string): Filter {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw invalidParam('Invalid filter JSON');
  }
  return parseFilter(raw);
}

// ---------------------------------------------------------------- matching

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** `*` matches any sequence of characters; everything else is literal. */
export function typePattern(pattern: string): (type: string) => boolean {
  if (!pattern.includes('*')) return (t) => t === pattern;
  const re = new RegExp('^' + pattern.split('*').map(escapeRegex).join('.*') + '$', 's');
  return (t) => re.test(t);
}

function anyOf(patterns: string[] | undefined): ((t: string) => boolean) | undefined {
  if (!patterns) return undefined;
  const fns = patterns.map(typePattern);
  return (t) => fns.some((f) => f(t));
}

/** What an event filter looks at. */
export interface Matchable {
  type: string;
  sender?: string;
  content?: unknown;
}

/** A compiled EventFilter / RoomEventFilter. */
export class EventMatcher {
  readonly limit: number | undefined;
  private readonly types?: (t: string) => boolean;
  private readonly notTypes?: (t: string) => boolean;
  private readonly senders?: Set<string>;
  private readonly notSenders?: Set<string>;
  private readonly rooms?: Set<string>;
  private readonly notRooms?: Set<string>;
  readonly containsUrl: boolean | undefined;
  readonly lazyLoadMembers: boolean;
  readonly includeRedundantMembers: boolean;

  constructor(readonly def: RoomEventFilter = {}) {
    this.limit = def.limit;
    this.types = anyOf(def.types);
    this.notTypes = anyOf(def.not_types);
    if (def.senders) this.senders = new Set(def.senders);
    if (def.not_senders) this.notSenders = new Set(def.not_senders);
    if (def.rooms) this.rooms = new Set(def.rooms);
    if (def.not_rooms) this.notRooms = new Set(def.not_rooms);
    this.containsUrl = def.contains_url;
    this.lazyLoadMembers = def.lazy_load_members === true;
    this.includeRedundantMembers = def.include_redundant_members === true;
  }

  /** Whether events of this type can pass at all (e.g. to skip a query). */
  allowsType(type: string): boolean {
    if (this.notTypes?.(type)) return false;
    if (this.types && !this.types(type)) return false;
    return true;
  }

  allowsSender(sender: string): boolean {
    if (this.notSenders?.has(sender)) return false;
    if (this.senders && !this.senders.has(sender)) return false;
    return true;
  }

  allowsRoom(roomId: string): boolean {
    if (this.notRooms?.has(roomId)) return false;
    if (this.rooms && !this.rooms.has(roomId)) return false;
    return true;
  }

  matches(ev: Matchable): boolean {
    if (!this.allowsType(ev.type)) return false;
    if (ev.sender !== undefined && !this.allowsSender(ev.sender)) return false;
    if (this.containsUrl !== undefined) {
      const c = ev.content;
      const has = c !== null && typeof c === 'object' && typeof (c as Record<string, unknown>).url === 'string';
      if (has !== this.containsUrl) return false;
    }
    return true;
  }

  /** True when nothing is filtered out (lets callers skip per-event checks). */
  get isEmpty(): boolean {
    return !this.types && !this.notTypes && !this.senders && !this.notSenders && this.containsUrl === undefined;
  }

  /** Exact (wildcard-free) types, when `types` has no wildcard; for SQL pre-filtering. */
  get exactTypes(): string[] | undefined {
    const t = this.def.types;
    return t && !t.some((x) => x.includes('*')) ? t : undefined;
  }

  /** `types` patterns (with wildcards) for SQL pre-filtering with LIKE. */
  get typePatterns(): string[] | undefined {
    return this.def.types;
  }

  get exactNotTypes(): string[] | undefined {
    const t = this.def.not_types?.filter((x) => !x.includes('*'));
    return t && t.length ? t : undefined;
  }

  get senderList(): string[] | undefined {
    return this.def.senders;
  }

  get notSenderList(): string[] | undefined {
    return this.def.not_senders;
  }
}

/** Room-level selection: room.rooms / room.not_rooms. */
export class RoomSelector {
  private readonly rooms?: Set<string>;
  private readonly notRooms?: Set<string>;
  constructor(def: RoomFilter = {}) {
    if (def.rooms) this.rooms = new Set(def.rooms);
    if (def.not_rooms) this.notRooms = new Set(def.not_rooms);
  }
  allows(roomId: string): boolean {
    if (this.notRooms?.has(roomId)) return false;
    if (this.rooms && !this.rooms.has(roomId)) return false;
    return true;
  }
}

export const DEFAULT_TIMELINE_LIMIT = 10;
export const MAX_TIMELINE_LIMIT = 1000;

/** A filter ready to apply. */
export interface CompiledFilter {
  def: Filter;
  eventFields?: string[][];
  presence: EventMatcher;
  accountData: EventMatcher;
  rooms: RoomSelector;
  includeLeave: boolean;
  timeline: EventMatcher;
  timelineLimit: number;
  state: EventMatcher;
  ephemeral: EventMatcher;
  roomAccountData: EventMatcher;
  lazyLoadMembers: boolean;
  includeRedundantMembers: boolean;
}

export function compileFilter(def: Filter = {}, opts: { defaultLimit?: number } = {}): CompiledFilter {
  const room = def.room ?? {};
  const timeline = new EventMatcher(room.timeline);
  const state = new EventMatcher(room.state);
  const rawLimit = timeline.limit ?? opts.defaultLimit ?? DEFAULT_TIMELINE_LIMIT;
  return {
    def,
    eventFields: def.event_fields ? def.event_fields.map(splitFieldPath) : undefined,
    presence: new EventMatcher(def.presence),
    accountData: new EventMatcher(def.account_data),
    rooms: new RoomSelector(room),
    includeLeave: room.include_leave === true,
    timeline,
    timelineLimit: Math.min(MAX_TIMELINE_LIMIT, Math.max(0, rawLimit)),
    state,
    ephemeral: new EventMatcher(room.ephemeral),
    roomAccountData: new EventMatcher(room.account_data),
    // The spec puts lazy loading on the state filter; accept it on the timeline filter too.
    lazyLoadMembers: state.lazyLoadMembers || timeline.lazyLoadMembers,
    includeRedundantMembers: state.includeRedundantMembers || timeline.includeRedundantMembers,
  };
}

// ---------------------------------------------------------------- event_fields

/** Filter field paths use the spec's dotted-path escaping, shared with push rules. */
export const splitFieldPath = splitDottedPath;

/** Keep only the listed fields (paths from `splitFieldPath`) of an event. */
export function applyEventFields<T extends object>(ev: T, fields: string[][] | undefined): T {
  if (!fields) return ev;
  const out: Record<string, unknown> = {};
  for (const path of fields) {
    let src: unknown = ev;
    for (const p of path) {
      if (src === null || typeof src !== 'object' || Array.isArray(src) || !Object.hasOwn(src, p)) {
        src = undefined;
        break;
      }
      src = (src as Record<string, unknown>)[p];
    }
    if (src === undefined) continue;
    let dst = out;
    for (let i = 0; i < path.length - 1; i++) {
      const next = dst[path[i]];
      if (next === null || typeof next !== 'object' || Array.isArray(next)) dst[path[i]] = {};
      dst = dst[path[i]] as Record<string, unknown>;
    }
    const last = path[path.length - 1];
    const prev = dst[last];
    if (prev !== null && typeof prev === 'object' && !Array.isArray(prev) && src !== null && typeof src === 'object' && !Array.isArray(src)) {
      // `content` after `content.body`: the wider path wins, keeping what was already there.
      dst[last] = { ...(prev as object), ...structuredClone(src as object) };
    } else if (prev === undefined) {
      dst[last] = src !== null && typeof src === 'object' ? structuredClone(src) : src;
    }
  }
  return out as T;
}

/** Apply an EventMatcher's limit: keep the last `limit` items (most recent). */
export function applyLimit<T>(items: T[], limit: number | undefined): T[] {
  if (limit === undefined || limit < 0 || items.length <= limit) return items;
  return limit === 0 ? [] : items.slice(items.length - limit);
}
