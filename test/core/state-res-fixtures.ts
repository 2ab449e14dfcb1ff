/**
 * Event graphs for the state resolution tests.
 *
 * The corpus cases are the hand-built forks that Synapse (tests/state/
 * test_v2.py) and Ruma (state-res tests) share: the same events, prev_events
 * edges and expected outcomes, rebuilt here. `buildDag` replays a graph the
 * way their harness does: events in lexicographical topological order of the
 * prev_events graph, timestamps increasing in that order, auth events chosen
 * from the state before each event, and the state at each merge computed by
 * the state resolution under test.
 */
import {
  authEventsNeeded,
  getRoomVersion,
  lexicographicalTopologicalSort,
  resolveState,
  stateMapKey,
  type RoomVersion,
  type StateIdMap,
  type StateResEvent,
} from '../../src/core/index.js';

export const ALICE = '@alice:example.com';
export const BOB = '@bob:example.com';
export const CHARLIE = '@charlie:example.com';
export const DAVE = '@dave:example.com';
export const EVELYN = '@evelyn:example.com';
export const ZARA = '@zara:example.com';
export const ROOM_ID = '!test:example.com';

export const eventId = (node: string): string => `$${node}:example.com`;

export function roomVersion(id: string): RoomVersion {
  const v = getRoomVersion(id);
  if (!v) throw new Error(`unknown room version ${id}`);
  return v;
}

export interface FakeEvent {
  id: string;
  sender: string;
  type: string;
  stateKey?: string;
  content: Record<string, unknown>;
}

const join = { membership: 'join' };
const fake = (id: string, sender: string, type: string, stateKey: string | undefined, content: Record<string, unknown>): FakeEvent => ({
  id,
  sender,
  type,
  stateKey,
  content,
});
const topic = (id: string, sender: string): FakeEvent => fake(id, sender, 'm.room.topic', '', {});
const powerLevels = (id: string, sender: string, content: Record<string, unknown>): FakeEvent =>
  fake(id, sender, 'm.room.power_levels', '', content);

/** Every corpus graph starts with these events, chained as INITIAL_EDGES. */
export const INITIAL_EVENTS: FakeEvent[] = [
  fake('CREATE', ALICE, 'm.room.create', '', { creator: ALICE }),
  fake('IMA', ALICE, 'm.room.member', ALICE, join),
  powerLevels('IPOWER', ALICE, { users: { [ALICE]: 100 } }),
  fake('IJR', ALICE, 'm.room.join_rules', '', { join_rule: 'public' }),
  fake('IMB', BOB, 'm.room.member', BOB, join),
  fake('IMC', CHARLIE, 'm.room.member', CHARLIE, join),
  fake('IMZ', ZARA, 'm.room.member', ZARA, join),
  fake('START', ZARA, 'm.room.message', undefined, {}),
  fake('END', ZARA, 'm.room.message', undefined, {}),
];

/** prev_events chain, newest first: START -> IMZ -> ... -> CREATE. */
export const INITIAL_EDGES = ['START', 'IMZ', 'IMC', 'IMB', 'IJR', 'IPOWER', 'IMA', 'CREATE'];

export interface CorpusCase {
  name: string;
  events: FakeEvent[];
  /** prev_events chains, newest first. */
  edges: string[][];
  /** Nodes whose events the state at END holds, besides keys unchanged since START. */
  expected: string[];
}

export const CORPUS: CorpusCase[] = [
  {
    name: 'ban vs power levels',
    events: [
      powerLevels('PA', ALICE, { users: { [ALICE]: 100, [BOB]: 50 } }),
      fake('MA', ALICE, 'm.room.member', ALICE, join),
      fake('MB', ALICE, 'm.room.member', BOB, { membership: 'ban' }),
      powerLevels('PB', BOB, { users: { [ALICE]: 100, [BOB]: 50 } }),
    ],
    edges: [
      ['END', 'MB', 'MA', 'PA', 'START'],
      ['END', 'PB', 'PA'],
    ],
    expected: ['PA', 'MA', 'MB'],
  },
  {
    name: 'join rule evasion',
    events: [
      // "join_rules" (sic) as in the corpus: a join rules event without a join_rule.
      fake('JR', ALICE, 'm.room.join_rules', '', { join_rules: 'private' }),
      fake('ME', EVELYN, 'm.room.member', EVELYN, join),
    ],
    edges: [
      ['END', 'JR', 'START'],
      ['END', 'ME', 'START'],
    ],
    expected: ['JR'],
  },
  {
    name: 'offtopic power levels',
    events: [
      powerLevels('PA', ALICE, { users: { [ALICE]: 100, [BOB]: 50 } }),
      powerLevels('PB', BOB, { users: { [ALICE]: 100, [BOB]: 50, [CHARLIE]: 50 } }),
      powerLevels('PC', CHARLIE, { users: { [ALICE]: 100, [BOB]: 50, [CHARLIE]: 0 } }),
    ],
    edges: [
      ['END', 'PC', 'PB', 'PA', 'START'],
      ['END', 'PA'],
    ],
    expected: ['PC'],
  },
  {
    name: 'topic basic',
    events: [
      topic('T1', ALICE),
      powerLevels('PA1', ALICE, { users: { [ALICE]: 100, [BOB]: 50 } }),
      topic('T2', ALICE),
      powerLevels('PA2', ALICE, { users: { [ALICE]: 100, [BOB]: 0 } }),
      powerLevels('PB', BOB, { users: { [ALICE]: 100, [BOB]: 50 } }),
      topic('T3', BOB),
    ],
    edges: [
      ['END', 'PA2', 'T2', 'PA1', 'T1', 'START'],
      ['END', 'T3', 'PB', 'PA1'],
    ],
    expected: ['PA2', 'T2'],
  },
  {
    name: 'topic reset',
    events: [
      topic('T1', ALICE),
      powerLevels('PA', ALICE, { users: { [ALICE]: 100, [BOB]: 50 } }),
      topic('T2', BOB),
      fake('MB', ALICE, 'm.room.member', BOB, { membership: 'ban' }),
    ],
    edges: [
      ['END', 'MB', 'T2', 'PA', 'T1', 'START'],
      ['END', 'T1'],
    ],
    expected: ['T1', 'MB', 'PA'],
  },
  {
    // Synapse's test_topic, Ruma's topic_setting.
    name: 'topic setting',
    events: [
      topic('T1', ALICE),
      powerLevels('PA1', ALICE, { users: { [ALICE]: 100, [BOB]: 50 } }),
      topic('T2', ALICE),
      powerLevels('PA2', ALICE, { users: { [ALICE]: 100, [BOB]: 0 } }),
      powerLevels('PB', BOB, { users: { [ALICE]: 100, [BOB]: 50 } }),
      topic('T3', BOB),
      fake('MZ1', ZARA, 'm.room.message', undefined, {}),
      topic('T4', ALICE),
    ],
    edges: [
      ['END', 'T4', 'MZ1', 'PA2', 'T2', 'PA1', 'T1', 'START'],
      ['END', 'MZ1', 'T3', 'PB', 'PA1'],
    ],
    expected: ['T4', 'PA2'],
  },
  {
    // T3 wins although T4 is newer: T4 cites an older power levels event.
    name: 'mainline sort',
    events: [
      topic('T1', ALICE),
      powerLevels('PA1', ALICE, { users: { [ALICE]: 100, [BOB]: 50 } }),
      topic('T2', ALICE),
      powerLevels('PA2', ALICE, { users: { [ALICE]: 100, [BOB]: 50 }, events: { 'm.room.power_levels': 100 } }),
      powerLevels('PB', BOB, { users: { [ALICE]: 100, [BOB]: 50 } }),
      topic('T3', BOB),
      topic('T4', ALICE),
    ],
    edges: [
      ['END', 'T3', 'PA2', 'T2', 'PA1', 'T1', 'START'],
      ['END', 'T4', 'PB', 'PA1'],
    ],
    expected: ['T3', 'PA2'],
  },
];

/** The corpus's lexicographical_topological_sort graph (node -> nodes it points at) and its order. */
export const LEXICOGRAPHICAL_GRAPH = new Map<string, string[]>([
  ['l', ['o']],
  ['m', ['n', 'o']],
  ['n', ['o']],
  ['o', []],
  ['p', ['o']],
]);
export const LEXICOGRAPHICAL_ORDER = ['o', 'l', 'n', 'm', 'p'];

export interface BuiltDag {
  events: Map<string, StateResEvent>;
  /** State after each node. */
  stateAt: Map<string, StateIdMap>;
  getEvent: (id: string) => StateResEvent | undefined;
}

/** Replay a corpus graph in `versionId` (v1-11: the create event is an auth event there). */
export function buildDag(versionId: string, extra: FakeEvent[], edges: string[][]): BuiltDag {
  const version = roomVersion(versionId);
  const fakes = new Map<string, FakeEvent>();
  const prevs = new Map<string, Set<string>>();
  for (const ev of [...INITIAL_EVENTS, ...extra]) {
    fakes.set(ev.id, ev);
    prevs.set(ev.id, new Set());
  }
  for (const chain of [INITIAL_EDGES, ...edges]) {
    for (let i = 0; i + 1 < chain.length; i++) prevs.get(chain[i])!.add(chain[i + 1]);
  }

  const events = new Map<string, StateResEvent>();
  const getEvent = (id: string) => events.get(id);
  const stateAt = new Map<string, StateIdMap>();
  const depthAt = new Map<string, number>();
  let ts = 0;
  for (const node of lexicographicalTopologicalSort(prevs, (n) => [n])) {
    const f = fakes.get(node)!;
    const parents = [...prevs.get(node)!];
    const before: StateIdMap =
      parents.length === 0
        ? new Map()
        : parents.length === 1
          ? new Map(stateAt.get(parents[0])!)
          : resolveState(version, parents.map((p) => stateAt.get(p)!), getEvent);
    const authIds = authEventsNeeded({ type: f.type, sender: f.sender, state_key: f.stateKey, content: f.content }, version)
      .map(([type, stateKey]) => before.get(stateMapKey(type, stateKey)))
      .filter((id): id is string => id !== undefined);
    const depth = 1 + Math.max(0, ...parents.map((p) => depthAt.get(p)!));
    const ev: StateResEvent = {
      event_id: eventId(node),
      room_id: ROOM_ID,
      type: f.type,
      sender: f.sender,
      content: { ...f.content },
      origin_server_ts: ts++,
      depth,
      prev_events: parents.map(eventId),
      auth_events: authIds,
      hashes: { sha256: 'x' },
      signatures: { 'example.com': { 'ed25519:k': 'sig' } },
    };
    if (f.stateKey !== undefined) ev.state_key = f.stateKey;
    events.set(ev.event_id, ev);
    depthAt.set(node, depth);
    const after = new Map(before);
    if (f.stateKey !== undefined) after.set(stateMapKey(f.type, f.stateKey), ev.event_id);
    stateAt.set(node, after);
  }
  return { events, stateAt, getEvent };
}

/**
 * A hand-wired event graph: auth events are given explicitly, so tests can
 * build the inconsistent forks (states from partial synchronisation) that
 * `buildDag` never produces. In v12 the create event is implied by the room
 * id and never listed as an auth event; v1/v2 use `[id, hashes]` references.
 */
export class EventGraph {
  readonly version: RoomVersion;
  readonly roomId: string;
  readonly events = new Map<string, StateResEvent>();
  readonly getEvent = (id: string): StateResEvent | undefined => this.events.get(id);
  private ts = 0;

  constructor(versionId: string, readonly creator = ALICE) {
    this.version = roomVersion(versionId);
    this.roomId = this.version.roomIdIsCreateEventHash ? '!CREATE' : ROOM_ID;
    const content: Record<string, unknown> = { room_version: versionId };
    if (!this.version.msc2175ImpliedCreator) content.creator = creator;
    this.add('CREATE', creator, 'm.room.create', '', content, []);
  }

  /** Content for a power levels event: v1-11 creators need an explicit level, v12 ones must not have one. */
  powerLevelsContent(users: Record<string, number>, extra: Record<string, unknown> = {}): Record<string, unknown> {
    const all = this.version.additionalCreators ? users : { [this.creator]: 100, ...users };
    return { users: all, ...extra };
  }

  add(
    node: string,
    sender: string,
    type: string,
    stateKey: string | undefined,
    content: Record<string, unknown>,
    authNodes: string[],
    fields: { depth?: number; origin_server_ts?: number } = {},
  ): StateResEvent {
    const isCreate = type === 'm.room.create';
    const auth = isCreate || this.version.roomIdIsCreateEventHash ? authNodes : ['CREATE', ...authNodes];
    const ref = (n: string) => eventId(n);
    const authEvents =
      this.version.eventIdFormat === 'v1' ? auth.map((n) => [ref(n), { sha256: 'x' }] as [string, { sha256: string }]) : auth.map(ref);
    const ev: StateResEvent = {
      event_id: isCreate && this.version.roomIdIsCreateEventHash ? '$CREATE' : eventId(node),
      type,
      sender,
      content,
      origin_server_ts: fields.origin_server_ts ?? ++this.ts,
      depth: fields.depth ?? this.events.size + 1,
      prev_events: [],
      auth_events: authEvents,
      hashes: { sha256: 'x' },
      signatures: { 'example.com': { 'ed25519:k': 'sig' } },
    };
    if (!(isCreate && this.version.roomIdIsCreateEventHash)) ev.room_id = this.roomId;
    if (stateKey !== undefined) ev.state_key = stateKey;
    this.events.set(ev.event_id, ev);
    return ev;
  }

  id(node: string): string {
    return node === 'CREATE' && this.version.roomIdIsCreateEventHash ? '$CREATE' : eventId(node);
  }

  /** A state map holding the given nodes' events. */
  state(...nodes: string[]): StateIdMap {
    const map: StateIdMap = new Map();
    for (const node of nodes) {
      const ev = this.events.get(this.id(node));
      if (!ev || ev.state_key === undefined) throw new Error(`${node} is not a state event of this graph`);
      map.set(stateMapKey(ev.type, ev.state_key), ev.event_id);
    }
    return map;
  }
}
