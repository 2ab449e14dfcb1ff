import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  authDifference,
  conflictedSubgraph,
  isPowerEvent,
  lexicographicalTopologicalSort,
  mainlineOrder,
  resolveState,
  splitConflicted,
  stateMapKey,
  type StateIdMap,
  type StateResEvent,
} from '../../src/core/index.js';
import {
  ALICE,
  BOB,
  buildDag,
  CHARLIE,
  CORPUS,
  DAVE,
  eventId,
  EventGraph,
  LEXICOGRAPHICAL_GRAPH,
  LEXICOGRAPHICAL_ORDER,
} from './state-res-fixtures.js';

const POWER_KEY = stateMapKey('m.room.power_levels', '');
const JOIN_RULES_KEY = stateMapKey('m.room.join_rules', '');
const TOPIC_KEY = stateMapKey('m.room.topic', '');
const memberKey = (user: string) => stateMapKey('m.room.member', user);
const join = { membership: 'join' };

/** Readable form of a state map for assertion messages. */
const asObject = (state: ReadonlyMap<string, string>) =>
  Object.fromEntries([...state].map(([k, v]) => [k.replace('\u0000', '|'), v]).sort(([a], [b]) => (a < b ? -1 : 1)));

describe('lexicographical topological sort', () => {
  test('gives the corpus order', () => {
    assert.deepEqual(lexicographicalTopologicalSort(LEXICOGRAPHICAL_GRAPH, (n) => [n]), LEXICOGRAPHICAL_ORDER);
  });

  test('the key decides between ready nodes, edges decide the rest', () => {
    const reversed = lexicographicalTopologicalSort(LEXICOGRAPHICAL_GRAPH, (n) => [-n.charCodeAt(0)]);
    assert.deepEqual(reversed, ['o', 'p', 'n', 'm', 'l']);
  });

  test('ignores edges leaving the graph and drops cycles instead of looping', () => {
    const graph = new Map([
      ['a', ['outside']],
      ['b', ['c']],
      ['c', ['b']],
    ]);
    assert.deepEqual(lexicographicalTopologicalSort(graph, (n) => [n]), ['a']);
  });
});

describe('state resolution v2: Synapse/Ruma corpus', () => {
  for (const versionId of ['2', '3', '6', '8', '10', '11']) {
    for (const c of CORPUS) {
      test(`${c.name} (room v${versionId})`, () => {
        const dag = buildDag(versionId, c.events, c.edges);
        const expected = new Map<string, string>();
        for (const node of c.expected) {
          const ev = dag.events.get(eventId(node))!;
          expected.set(stateMapKey(ev.type, ev.state_key!), ev.event_id);
        }
        const start = dag.stateAt.get('START')!;
        const end = dag.stateAt.get('END')!;
        const changed = new Map([...end].filter(([key, id]) => expected.has(key) || start.get(key) !== id));
        assert.deepEqual(asObject(changed), asObject(expected));
      });
    }
  }

  test('concurrent joins merge (the corpus\'s simple parameterised case)', () => {
    const g = new EventGraph('2');
    g.add('IMA', ALICE, 'm.room.member', ALICE, join, []);
    g.add('IJR', ALICE, 'm.room.join_rules', '', { join_rule: 'public' }, ['IMA']);
    g.add('IMB', BOB, 'm.room.member', BOB, join, ['IJR']);
    g.add('IMC', CHARLIE, 'm.room.member', CHARLIE, join, ['IJR']);
    const resolved = resolveState('2', [g.state('CREATE', 'IMA', 'IJR', 'IMB'), g.state('CREATE', 'IMA', 'IJR', 'IMC')], g.getEvent);
    assert.deepEqual(asObject(resolved), asObject(g.state('CREATE', 'IMA', 'IJR', 'IMB', 'IMC')));
  });

  test('the corpus outcome really depends on the algorithm: a naive "latest wins" merge differs', () => {
    // Guards against a harness that would pass whatever resolveState returns.
    const c = CORPUS.find((x) => x.name === 'mainline sort')!;
    const dag = buildDag('11', c.events, c.edges);
    const end = dag.stateAt.get('END')!;
    assert.equal(end.get(TOPIC_KEY), eventId('T3'));
    assert.notEqual(end.get(TOPIC_KEY), eventId('T4'), 'T4 is newer, so latest-wins would pick it');
  });
});

describe('state resolution v2: building blocks', () => {
  test('splitConflicted: a key missing from one set is conflicted', () => {
    const a = new Map([
      ['k1', '$a'],
      ['k2', '$b'],
    ]);
    const b = new Map([['k1', '$a']]);
    const { unconflicted, conflicted } = splitConflicted([a, b]);
    assert.deepEqual([...unconflicted], [['k1', '$a']]);
    assert.deepEqual([...conflicted], ['$b']);
  });

  test('authDifference and the v12 conflicted subgraph', () => {
    const g = new EventGraph('12');
    g.add('IMA', ALICE, 'm.room.member', ALICE, join, []);
    g.add('P1', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({}), ['IMA']);
    g.add('P2', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 10 }), ['IMA', 'P1']);
    g.add('P3', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 20 }), ['IMA', 'P2']);
    g.add('X', ALICE, 'm.room.topic', '', {}, ['IMA', 'P2']);
    const s1 = g.state('CREATE', 'IMA', 'P3');
    const s2 = g.state('CREATE', 'IMA', 'P1', 'X');
    // Chain of s1 covers P1..P3; s2 reaches P2 through X, so only P3 and X differ.
    assert.deepEqual([...authDifference([s1, s2], g.getEvent)].sort(), [g.id('P3'), g.id('X')].sort());
    // P2 lies between the conflicted P3 and P1 (and X -> P2 -> P1), IMA does not lead to a conflicted event.
    const sub = conflictedSubgraph(new Set([g.id('P3'), g.id('P1'), g.id('X')]), g.getEvent);
    assert.deepEqual([...sub].sort(), [g.id('P1'), g.id('P2'), g.id('P3'), g.id('X')].sort());
  });

  test('authDifference uses a supplied auth chain index', () => {
    const s1 = new Map([['k', '$a']]);
    const s2 = new Map([['k', '$b']]);
    const chains: Record<string, string[]> = { $a: ['$x', '$y'], $b: ['$y'] };
    const authChainOf = (ids: Iterable<string>) => new Set([...ids].flatMap((id) => chains[id] ?? []));
    assert.deepEqual([...authDifference([s1, s2], () => undefined, authChainOf)].sort(), ['$a', '$b', '$x']);
  });

  test('isPowerEvent', () => {
    const g = new EventGraph('11');
    const ev = (type: string, sender: string, stateKey: string | undefined, content: Record<string, unknown>) =>
      g.add(`E${g.events.size}`, sender, type, stateKey, content, []);
    assert.equal(isPowerEvent(ev('m.room.power_levels', ALICE, '', {})), true);
    assert.equal(isPowerEvent(ev('m.room.join_rules', ALICE, '', {})), true);
    assert.equal(isPowerEvent(ev('m.room.member', ALICE, BOB, { membership: 'ban' })), true);
    assert.equal(isPowerEvent(ev('m.room.member', ALICE, BOB, { membership: 'leave' })), true, 'a kick');
    assert.equal(isPowerEvent(ev('m.room.member', BOB, BOB, { membership: 'leave' })), false, 'leaving oneself');
    assert.equal(isPowerEvent(ev('m.room.member', ALICE, BOB, { membership: 'invite' })), false);
    assert.equal(isPowerEvent(ev('m.room.topic', ALICE, '', {})), false);
  });

  test('mainlineOrder: events citing older power levels come first, then by timestamp', () => {
    const g = new EventGraph('11');
    g.add('IMA', ALICE, 'm.room.member', ALICE, join, []);
    g.add('P1', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({}), ['IMA']);
    g.add('P2', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 1 }), ['IMA', 'P1']);
    g.add('A', ALICE, 'm.room.topic', '', {}, ['IMA', 'P2'], { origin_server_ts: 1 });
    g.add('B', ALICE, 'm.room.topic', '', {}, ['IMA', 'P1'], { origin_server_ts: 5 });
    g.add('C', ALICE, 'm.room.topic', '', {}, ['IMA'], { origin_server_ts: 9 });
    g.add('D', ALICE, 'm.room.topic', '', {}, ['IMA', 'P1'], { origin_server_ts: 3 });
    const order = mainlineOrder(['A', 'B', 'C', 'D'].map((n) => g.id(n)), g.id('P2'), g.getEvent);
    assert.deepEqual(order, ['C', 'D', 'B', 'A'].map((n) => g.id(n)));
  });
});

describe('state resolution v2: robustness', () => {
  test('missing auth events and state events are ignored, not fatal', () => {
    const g = new EventGraph('10');
    g.add('IMA', ALICE, 'm.room.member', ALICE, join, []);
    g.add('P1', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({}), ['IMA', 'GONE']);
    g.add('T1', ALICE, 'm.room.topic', '', { topic: 'one' }, ['IMA', 'P1', 'ALSO_GONE']);
    g.add('T2', ALICE, 'm.room.topic', '', { topic: 'two' }, ['IMA', 'P1']);
    const s1 = g.state('CREATE', 'IMA', 'P1', 'T1');
    const s2 = g.state('CREATE', 'IMA', 'P1', 'T2');
    s2.set(stateMapKey('m.room.name', ''), '$missing:example.com');
    const resolved = resolveState('10', [s1, s2], g.getEvent);
    assert.equal(resolved.get(TOPIC_KEY), g.id('T2'), 'the newer topic wins at equal mainline position');
    assert.equal(resolved.has(stateMapKey('m.room.name', '')), false, 'an unavailable conflicted event is dropped');
  });

  test('rejected events are neither used as auth events nor admitted', () => {
    const g = new EventGraph('11');
    g.add('IMA', ALICE, 'm.room.member', ALICE, join, []);
    g.add('P1', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({}), ['IMA']);
    g.add('JR', ALICE, 'm.room.join_rules', '', { join_rule: 'public' }, ['P1', 'IMA']);
    g.add('P0', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({}, { events: { 'm.room.topic': 0 } }), ['P1', 'IMA']);
    g.add('IMB', BOB, 'm.room.member', BOB, join, ['P0', 'JR']);
    g.add('T2', ALICE, 'm.room.topic', '', {}, ['P0', 'IMA']);
    g.add('T1', BOB, 'm.room.topic', '', {}, ['P0', 'IMB']); // newest
    // Neither state holds Bob's membership; only T1's auth chain does.
    const s1 = g.state('CREATE', 'IMA', 'JR', 'P0', 'T1');
    const s2 = g.state('CREATE', 'IMA', 'JR', 'P0', 'T2');

    const plain = resolveState('11', [s1, s2], g.getEvent);
    assert.equal(plain.get(TOPIC_KEY), g.id('T1'), "Bob's join (auth difference) is replayed, then his newer topic");
    assert.equal(plain.get(memberKey(BOB)), g.id('IMB'));

    const rejected = new Set([g.id('IMB')]);
    const resolved = resolveState('11', [s1, s2], g.getEvent, { isRejected: (id) => rejected.has(id) });
    assert.equal(resolved.get(TOPIC_KEY), g.id('T2'), 'without his rejected join Bob is not in the room');
    assert.equal(resolved.has(memberKey(BOB)), false);
  });

  test('a deep auth chain resolves without recursion limits', () => {
    // 10,000 chained member events: a naive recursive walk overflows the
    // default stack at about 6,000.
    // Room v12 walks the chain twice: for the auth difference and for the
    // conflicted state subgraph.
    const g = new EventGraph('12');
    g.add('IMA', ALICE, 'm.room.member', ALICE, join, []);
    g.add('P1', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({}), ['IMA']);
    let prev = 'IMA';
    for (let i = 0; i < 10_000; i++) {
      const node = `M${i}`;
      g.add(node, ALICE, 'm.room.member', ALICE, { membership: 'join', displayname: String(i) }, ['P1', prev]);
      prev = node;
    }
    g.add('TA', ALICE, 'm.room.topic', '', {}, ['P1', prev]);
    g.add('TB', ALICE, 'm.room.topic', '', {}, ['P1', prev]);
    const s1 = g.state('CREATE', 'P1', prev, 'TA');
    const s2 = g.state('CREATE', 'P1', prev, 'TB');
    const resolved = resolveState('12', [s1, s2], g.getEvent);
    assert.equal(resolved.get(memberKey(ALICE)), g.id(prev));
    assert.equal(resolved.get(TOPIC_KEY), g.id('TB'));
  });

  test('one state set or none', () => {
    const s = new Map([['k', '$a']]);
    assert.deepEqual([...resolveState('11', [s], () => undefined)], [['k', '$a']]);
    assert.equal(resolveState('11', [], () => undefined).size, 0);
    assert.throws(() => resolveState('nope', [s], () => undefined), /unknown room version/);
  });
});

/**
 * The two problems MSC4297 fixes, built from the spec's description of the
 * v12 changes: the same forks resolve differently in v11 and v12.
 */
describe('state resolution v2.1 (room v12)', () => {
  /**
   * Problem A: a state set from partial synchronisation carries an outdated
   * join rules event. Both forks agree Alice has since left. v2 replays the
   * join rules on top of the unconflicted state, where Alice is gone, so both
   * fail and the room loses its join rules; v12 replays from an empty state.
   */
  function problemA(versionId: string): { g: EventGraph; resolved: StateIdMap } {
    const g = new EventGraph(versionId);
    g.add('IMA', ALICE, 'm.room.member', ALICE, join, []);
    g.add('IPL', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({}), ['IMA']);
    g.add('JR1', ALICE, 'm.room.join_rules', '', { join_rule: 'public' }, ['IPL', 'IMA']);
    g.add('JR2', ALICE, 'm.room.join_rules', '', { join_rule: 'invite' }, ['IPL', 'IMA']);
    g.add('LA', ALICE, 'm.room.member', ALICE, { membership: 'leave' }, ['IPL', 'IMA']);
    const current = g.state('CREATE', 'IPL', 'JR2', 'LA');
    const stale = g.state('CREATE', 'IPL', 'JR1', 'LA');
    return { g, resolved: resolveState(versionId, [current, stale], g.getEvent) };
  }

  test('problem A: v11 loses the join rules', () => {
    const { resolved } = problemA('11');
    assert.equal(resolved.has(JOIN_RULES_KEY), false);
  });

  test('problem A: v12 keeps the latest join rules', () => {
    const { g, resolved } = problemA('12');
    assert.equal(resolved.get(JOIN_RULES_KEY), g.id('JR2'));
    assert.equal(resolved.get(memberKey(ALICE)), g.id('LA'), 'unconflicted state still wins in the end');
    assert.equal(resolved.get(stateMapKey('m.room.create', '')), '$CREATE');
  });

  /**
   * Problem B: Alice promotes Bob (P2), Bob promotes Charlie (P3). One state
   * set carries the outdated P1. P2 is in both auth chains, so it is not in
   * the auth difference: v2 replays P3 straight on P1 and rejects it; v12
   * adds the events between P3 and P1 (the conflicted state subgraph).
   */
  function problemB(versionId: string): { g: EventGraph; resolved: StateIdMap } {
    const g = new EventGraph(versionId);
    g.add('IMA', ALICE, 'm.room.member', ALICE, join, []);
    g.add('P1', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({}), ['IMA']);
    g.add('JR', ALICE, 'm.room.join_rules', '', { join_rule: 'public' }, ['P1', 'IMA']);
    g.add('IMB', BOB, 'm.room.member', BOB, join, ['P1', 'JR']);
    g.add('IMC', CHARLIE, 'm.room.member', CHARLIE, join, ['P1', 'JR']);
    g.add('P2', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 50 }), ['P1', 'IMA']);
    g.add('P3', BOB, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 50, [CHARLIE]: 50 }), ['P2', 'IMB']);
    g.add('IMD', DAVE, 'm.room.member', DAVE, join, ['P2', 'JR']);
    const current = g.state('CREATE', 'IMA', 'JR', 'IMB', 'IMC', 'IMD', 'P3');
    const stale = g.state('CREATE', 'IMA', 'JR', 'IMB', 'IMC', 'IMD', 'P1');
    return { g, resolved: resolveState(versionId, [current, stale], g.getEvent) };
  }

  test('problem B: v11 resets the power levels to P1', () => {
    const { g, resolved } = problemB('11');
    assert.equal(resolved.get(POWER_KEY), g.id('P1'));
  });

  test('problem B: v12 keeps P3', () => {
    const { g, resolved } = problemB('12');
    assert.equal(resolved.get(POWER_KEY), g.id('P3'));
    assert.equal(resolved.get(memberKey(DAVE)), g.id('IMD'));
  });

  /**
   * Alice (the creator) and Bob (level 100) change the power levels
   * concurrently, Bob first. Both changes are allowed on top of each other,
   * so the one replayed last wins. At equal power (v11: both 100) the older,
   * Bob's, is replayed first; in v12 the creator's infinite power puts
   * Alice's first, so Bob's wins.
   */
  function concurrentPowerLevels(versionId: string): { g: EventGraph; resolved: StateIdMap } {
    const g = new EventGraph(versionId);
    g.add('IMA', ALICE, 'm.room.member', ALICE, join, []);
    g.add('P1', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 100 }), ['IMA']);
    g.add('JR', ALICE, 'm.room.join_rules', '', { join_rule: 'public' }, ['P1', 'IMA']);
    g.add('IMB', BOB, 'm.room.member', BOB, join, ['P1', 'JR']);
    g.add('PB', BOB, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 100 }, { state_default: 60 }), ['P1', 'IMB'], {
      origin_server_ts: 100,
    });
    g.add('PA', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 100 }, { events: { 'm.room.topic': 10 } }), ['P1', 'IMA'], {
      origin_server_ts: 200,
    });
    const s1 = g.state('CREATE', 'IMA', 'JR', 'IMB', 'PB');
    const s2 = g.state('CREATE', 'IMA', 'JR', 'IMB', 'PA');
    return { g, resolved: resolveState(versionId, [s1, s2], g.getEvent) };
  }

  test('power ordering at equal power (v11): older first, so the newer change wins', () => {
    const { g, resolved } = concurrentPowerLevels('11');
    assert.equal(resolved.get(POWER_KEY), g.id('PA'));
  });

  test('power ordering in v12: the creator has infinite power and goes first', () => {
    const { g, resolved } = concurrentPowerLevels('12');
    assert.equal(resolved.get(POWER_KEY), g.id('PB'));
  });
});

describe('state resolution v1', () => {
  const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');

  function base(): EventGraph {
    const g = new EventGraph('1');
    g.add('IMA', ALICE, 'm.room.member', ALICE, join, [], { depth: 2 });
    g.add('P1', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 0 }), ['IMA'], { depth: 3 });
    g.add('JR', ALICE, 'm.room.join_rules', '', { join_rule: 'public' }, ['P1', 'IMA'], { depth: 4 });
    g.add('IMB', BOB, 'm.room.member', BOB, join, ['P1', 'JR'], { depth: 5 });
    return g;
  }
  const common = ['CREATE', 'IMA', 'P1', 'JR', 'IMB'];

  test('ordinary conflict: the deepest event allowed in R wins', () => {
    const g = base();
    g.add('TA', ALICE, 'm.room.topic', '', {}, ['P1', 'IMA'], { depth: 6 });
    g.add('TB', ALICE, 'm.room.topic', '', {}, ['P1', 'IMA'], { depth: 8 });
    const s1 = g.state(...common, 'TA');
    const s2 = g.state(...common, 'TB');
    assert.equal(resolveState('1', [s1, s2], g.getEvent).get(TOPIC_KEY), g.id('TB'));
  });

  test('ordinary conflict: a deeper but unauthorised event loses', () => {
    const g = base();
    g.add('TA', ALICE, 'm.room.topic', '', {}, ['P1', 'IMA'], { depth: 6 });
    g.add('TB', BOB, 'm.room.topic', '', {}, ['P1', 'IMB'], { depth: 8 }); // Bob has 0, topics need 50
    const resolved = resolveState('1', [g.state(...common, 'TA'), g.state(...common, 'TB')], g.getEvent);
    assert.equal(resolved.get(TOPIC_KEY), g.id('TA'));
  });

  test('ordinary conflict at equal depth: lowest sha1(event_id) wins', () => {
    const g = base();
    g.add('TA', ALICE, 'm.room.topic', '', {}, ['P1', 'IMA'], { depth: 6 });
    g.add('TB', ALICE, 'm.room.topic', '', {}, ['P1', 'IMA'], { depth: 6 });
    const winner = [g.id('TA'), g.id('TB')].sort((a, b) => (sha1(a) < sha1(b) ? -1 : 1))[0];
    const resolved = resolveState('1', [g.state(...common, 'TA'), g.state(...common, 'TB')], g.getEvent);
    assert.equal(resolved.get(TOPIC_KEY), winner);
  });

  test('power levels: walked up from the shallowest, stopping at the first unauthorised one', () => {
    const g = base();
    // Alice promotes Bob; concurrently, Bob (level 0) tries to promote himself deeper in the DAG.
    g.add('PA', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 50 }), ['P1', 'IMA'], { depth: 6 });
    g.add('PB', BOB, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 100 }), ['P1', 'IMB'], { depth: 7 });
    const resolved = resolveState('1', [g.state(...common, 'PA'), g.state(...common, 'PB')], g.getEvent);
    assert.equal(resolved.get(POWER_KEY), g.id('PA'), 'PB (level 50 in R) cannot raise Bob to 100');
  });

  test('power levels: a deeper authorised change wins', () => {
    const g = base();
    g.add('PA', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 50 }), ['P1', 'IMA'], { depth: 6 });
    g.add('PA2', ALICE, 'm.room.power_levels', '', g.powerLevelsContent({ [BOB]: 10 }), ['P1', 'IMA'], { depth: 7 });
    const resolved = resolveState('1', [g.state(...common, 'PA'), g.state(...common, 'PA2')], g.getEvent);
    assert.equal(resolved.get(POWER_KEY), g.id('PA2'));
  });

  test('membership: a ban deeper than the join wins; keys missing from one side are not conflicts', () => {
    const g = base();
    g.add('NAME', ALICE, 'm.room.name', '', { name: 'x' }, ['P1', 'IMA'], { depth: 6 });
    g.add('BAN', ALICE, 'm.room.member', BOB, { membership: 'ban' }, ['P1', 'IMA', 'IMB'], { depth: 7 });
    const s1 = g.state(...common, 'NAME');
    const s2 = g.state('CREATE', 'IMA', 'P1', 'JR', 'BAN');
    const resolved = resolveState('1', [s1, s2], g.getEvent);
    assert.equal(resolved.get(memberKey(BOB)), g.id('BAN'));
    assert.equal(resolved.get(stateMapKey('m.room.name', '')), g.id('NAME'), 'union, unlike v2');
  });

  test('unavailable conflicted events are ignored', () => {
    const g = base();
    g.add('TA', ALICE, 'm.room.topic', '', {}, ['P1', 'IMA'], { depth: 6 });
    const s2 = g.state(...common);
    s2.set(TOPIC_KEY, '$unknown:example.com');
    const resolved = resolveState('1', [g.state(...common, 'TA'), s2], g.getEvent);
    assert.equal(resolved.get(TOPIC_KEY), g.id('TA'));
  });

  test('v1 uses [event_id, hashes] references for auth events', () => {
    const g = base();
    const ev = g.events.get(g.id('IMB')) as StateResEvent;
    assert.ok(Array.isArray(ev.auth_events[0]), 'the fixture exercises the v1 reference format');
  });
});
