import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  HistoryVisibilityOracle, MAX_POS, allowedBy, historyVisibilityOf,
  type EventForVisibility, type HistoryVisibility, type VisibilityFacts,
} from '../../src/rooms/visibility.js';

const ME = '@me:example.org';

function oracle(hv: Array<[number, HistoryVisibility]>, mem: Array<[number, string]>): HistoryVisibilityOracle {
  const facts: VisibilityFacts = {
    historyVisibility: hv.map(([pos, value]) => ({ pos, value })),
    membership: mem.map(([pos, membership]) => ({ pos, membership, eventId: `$m${pos}` })),
  };
  return new HistoryVisibilityOracle(ME, facts);
}

const msg = (pos: number): EventForVisibility => ({ pos, type: 'm.room.message', content: { body: 'hi' } });
const own = (pos: number, membership: string): EventForVisibility => ({ pos, type: 'm.room.member', stateKey: ME, content: { membership } });
const hvEv = (pos: number, value: string): EventForVisibility => ({ pos, type: 'm.room.history_visibility', stateKey: '', content: { history_visibility: value } });

/** Check that visibleRanges agrees with canSee for every position up to `max`. */
function assertRangesAgree(o: HistoryVisibilityOracle, events: Map<number, EventForVisibility>, max: number) {
  const ranges = o.visibleRanges();
  const inRanges = (p: number) => ranges.some(([a, b]) => a <= p && p <= b);
  for (let p = 1; p <= max; p++) {
    const ev = events.get(p) ?? msg(p);
    assert.equal(inRanges(p), o.canSee(ev), `position ${p}`);
  }
  // Sorted and disjoint.
  for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i][0] > ranges[i - 1][1] + 1);
}

describe('history visibility', () => {
  test('unknown or missing values mean shared', () => {
    assert.equal(historyVisibilityOf({}), 'shared');
    assert.equal(historyVisibilityOf({ history_visibility: 'bogus' }), 'shared');
    assert.equal(historyVisibilityOf(undefined), 'shared');
    assert.equal(historyVisibilityOf({ history_visibility: 'joined' }), 'joined');
  });

  test('the spec rules', () => {
    assert.equal(allowedBy('world_readable', undefined, false), true);
    assert.equal(allowedBy('joined', 'join', false), true);
    assert.equal(allowedBy('shared', 'leave', true), true);
    assert.equal(allowedBy('shared', 'leave', false), false);
    assert.equal(allowedBy('invited', 'invite', false), true);
    assert.equal(allowedBy('joined', 'invite', false), false);
    assert.equal(allowedBy('joined', undefined, true), false);
  });

  test('shared: a member sees history from before they joined', () => {
    const o = oracle([[3, 'shared']], [[10, 'join']]);
    assert.equal(o.canSee(msg(5)), true);
    assert.equal(o.canSee(msg(20)), true);
    assert.deepEqual(o.visibleRanges(), [[0, MAX_POS]]);
  });

  test('joined: nothing before the join, own join event visible', () => {
    const o = oracle([[3, 'joined']], [[10, 'join']]);
    assert.equal(o.canSee(msg(5)), false);
    assert.equal(o.canSee(own(10, 'join')), true);
    assert.equal(o.canSee(msg(11)), true);
    // The history visibility event itself: before (shared) would not allow (never joined
    // before it... but they joined later, so shared allows).
    assert.equal(o.canSee(hvEv(3, 'joined')), true);
    assert.deepEqual(o.visibleRanges(), [[0, 3], [10, MAX_POS]]);
  });

  test('after leaving, later events are hidden; the leave event itself is visible', () => {
    const o = oracle([[3, 'shared']], [[10, 'join'], [20, 'leave']]);
    assert.equal(o.canSee(msg(15)), true);
    assert.equal(o.canSee(own(20, 'leave')), true);
    assert.equal(o.canSee(msg(21)), false);
    assert.deepEqual(o.visibleRanges(), [[0, 20]]);
  });

  test('left and rejoined under shared: the gap becomes visible', () => {
    const o = oracle([], [[10, 'join'], [20, 'leave'], [30, 'join']]);
    assert.equal(o.canSee(msg(25)), true);
    assert.deepEqual(o.visibleRanges(), [[0, MAX_POS]]);
  });

  test('left and rejoined under joined: the gap stays hidden', () => {
    const o = oracle([[2, 'joined']], [[10, 'join'], [20, 'leave'], [30, 'join']]);
    assert.equal(o.canSee(msg(25)), false);
    assertRangesAgree(o, new Map([[2, hvEv(2, 'joined')], [10, own(10, 'join')], [20, own(20, 'leave')], [30, own(30, 'join')]]), 40);
    assert.deepEqual(o.visibleRanges(), [[0, 2], [10, 20], [30, MAX_POS]]);
  });

  test('invited: visible from the invite on', () => {
    const o = oracle([[2, 'invited']], [[10, 'invite'], [15, 'join']]);
    assert.equal(o.canSee(msg(5)), false);
    assert.equal(o.canSee(own(10, 'invite')), true);
    assert.equal(o.canSee(msg(12)), true);
    assertRangesAgree(o, new Map([[2, hvEv(2, 'invited')], [10, own(10, 'invite')], [15, own(15, 'join')]]), 20);
  });

  test('world_readable periods are visible to anyone', () => {
    const o = oracle([[2, 'world_readable'], [8, 'joined']], []);
    assert.equal(o.canSee(msg(5)), true);
    // The change away from world_readable is visible (before allowed it).
    assert.equal(o.canSee(hvEv(8, 'joined')), true);
    assert.equal(o.canSee(msg(9)), false);
    assert.deepEqual(o.visibleRanges(), [[2, 8]]);
    assert.equal(o.currentHistoryVisibility, 'joined');
  });

  test('change to world_readable is visible to outsiders', () => {
    const o = oracle([[2, 'joined'], [8, 'world_readable']], []);
    assert.equal(o.canSee(hvEv(8, 'world_readable')), true);
    assert.equal(o.canSee(msg(5)), false);
    assert.deepEqual(o.visibleRanges(), [[8, MAX_POS]]);
  });

  test('repeated member events (profile changes) do not split ranges', () => {
    const o = oracle([[2, 'joined']], [[10, 'join'], [12, 'join'], [14, 'join'], [20, 'leave']]);
    assert.deepEqual(o.visibleRanges(), [[0, 2], [10, 20]]);
    assert.equal(o.everJoined, true);
    assert.deepEqual(o.lastDeparture(), { pos: 20, membership: 'leave', eventId: '$m20' });
  });

  test('ranges agree with canSee on a busy history', () => {
    const hv: Array<[number, HistoryVisibility]> = [[3, 'invited'], [9, 'joined'], [17, 'world_readable'], [23, 'shared'], [31, 'joined']];
    const mem: Array<[number, string]> = [[5, 'invite'], [7, 'join'], [12, 'leave'], [19, 'invite'], [27, 'join'], [29, 'ban'], [35, 'leave'], [37, 'join'], [40, 'leave']];
    const o = oracle(hv, mem);
    const events = new Map<number, EventForVisibility>();
    for (const [p, v] of hv) events.set(p, hvEv(p, v));
    for (const [p, m] of mem) events.set(p, own(p, m));
    assertRangesAgree(o, events, 50);
  });

  test('never a member of a non-readable room: nothing visible', () => {
    const o = oracle([[2, 'shared']], []);
    assert.deepEqual(o.visibleRanges(), []);
    assert.equal(o.currentMembership, undefined);
    assert.equal(o.lastDeparture(), undefined);
  });
});
