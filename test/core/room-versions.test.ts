import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getRoomVersion, isValidRoomVersionId, RECOMMENDED_ROOM_VERSION, ROOM_VERSIONS } from '../../src/core/index.js';

describe('room versions', () => {
  test('versions 1 to 12 are known and stable; 12 is recommended', () => {
    assert.deepEqual(Object.keys(ROOM_VERSIONS).sort((a, b) => Number(a) - Number(b)), ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12']);
    for (const rv of Object.values(ROOM_VERSIONS)) assert.equal(rv.stable, true);
    assert.equal(RECOMMENDED_ROOM_VERSION, '12');
    assert.equal(getRoomVersion(RECOMMENDED_ROOM_VERSION)?.id, '12');
  });

  test('unknown ids, including Object.prototype names, are not versions', () => {
    assert.equal(getRoomVersion('13'), undefined);
    assert.equal(getRoomVersion('constructor'), undefined);
    assert.equal(getRoomVersion('toString'), undefined);
  });

  test('feature flags switch on at the versions the spec says', () => {
    const firstWith = (flag: keyof (typeof ROOM_VERSIONS)['1']) =>
      Object.values(ROOM_VERSIONS).filter((rv) => rv[flag] === true).map((rv) => Number(rv.id)).sort((a, b) => a - b)[0];
    assert.equal(firstWith('enforceKeyValidity'), 5);
    assert.equal(firstWith('strictCanonicalJson'), 6);
    assert.equal(firstWith('limitNotificationsPowerLevels'), 6);
    assert.equal(firstWith('knockJoinRule'), 7);
    assert.equal(firstWith('restrictedJoinRule'), 8);
    assert.equal(firstWith('redactionKeepsAuthorisingUser'), 9);
    assert.equal(firstWith('knockRestrictedJoinRule'), 10);
    assert.equal(firstWith('integerPowerLevels'), 10);
    assert.equal(firstWith('msc2175ImpliedCreator'), 11);
    assert.equal(firstWith('redactsInContent'), 11);
    assert.equal(firstWith('roomIdIsCreateEventHash'), 12);
    assert.equal(firstWith('additionalCreators'), 12);
  });

  test('flags that switch off: aliases auth (v1-5) and redaction auth rule (v1-2)', () => {
    assert.equal(ROOM_VERSIONS['5'].specialCaseAliasesAuth, true);
    assert.equal(ROOM_VERSIONS['6'].specialCaseAliasesAuth, false);
    assert.equal(ROOM_VERSIONS['2'].authChecksRedactions, true);
    assert.equal(ROOM_VERSIONS['3'].authChecksRedactions, false);
  });

  test('event id formats and state resolution algorithms', () => {
    assert.deepEqual(['1', '2', '3', '4', '12'].map((id) => ROOM_VERSIONS[id].eventIdFormat), ['v1', 'v1', 'v3', 'v4', 'v4']);
    assert.deepEqual(['1', '2', '12'].map((id) => ROOM_VERSIONS[id].stateRes), ['v1', 'v2', 'v2']);
    assert.equal(ROOM_VERSIONS['12'].stateResConflictedSubgraph, true);
    assert.equal(ROOM_VERSIONS['11'].stateResConflictedSubgraph, false);
  });

  test('version objects are frozen', () => {
    assert.throws(() => {
      (ROOM_VERSIONS['1'] as { stable: boolean }).stable = false;
    }, TypeError);
  });

  test('room version id grammar', () => {
    assert.ok(isValidRoomVersionId('1.2-beta'));
    assert.ok(isValidRoomVersionId('com.example.version'));
    assert.equal(isValidRoomVersionId(''), false);
    assert.equal(isValidRoomVersionId('A'), false);
    assert.equal(isValidRoomVersionId('x'.repeat(33)), false);
  });
});
