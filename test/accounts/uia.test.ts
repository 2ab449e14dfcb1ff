import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MatrixError } from '../../src/server/errors.js';
import { flowComplete, registrationFlows, secretEquals, stageAllowed, UiaRequired } from '../../src/accounts/uia.js';

test('registration flows follow allow_registration and registration_token', () => {
  assert.deepEqual(registrationFlows({ allow_registration: true, registration_token: '' }), [{ stages: ['m.login.dummy'] }]);
  assert.deepEqual(registrationFlows({ allow_registration: false, registration_token: 'tok' }), [{ stages: ['m.login.registration_token'] }]);
  // Both set: the token is still required.
  assert.deepEqual(registrationFlows({ allow_registration: true, registration_token: 'tok' }), [{ stages: ['m.login.registration_token'] }]);
  assert.throws(() => registrationFlows({ allow_registration: false, registration_token: '' }), (e: unknown) => {
    assert.ok(e instanceof MatrixError);
    assert.equal(e.errcode, 'M_FORBIDDEN');
    assert.equal(e.status, 403);
    assert.equal(e.message, 'Registration is disabled');
    return true;
  });
});

test('stages must be attempted in flow order', () => {
  const flows = [{ stages: ['a', 'b'] }, { stages: ['c'] }];
  assert.ok(stageAllowed(flows, [], 'a'));
  assert.ok(stageAllowed(flows, [], 'c'));
  assert.ok(!stageAllowed(flows, [], 'b'));
  assert.ok(stageAllowed(flows, ['a'], 'b'));
  assert.ok(stageAllowed(flows, ['a'], 'c'));
  assert.ok(!stageAllowed(flows, [], 'zzz'));
});

test('a flow is complete when all of its stages are', () => {
  const flows = [{ stages: ['a', 'b'] }, { stages: ['c'] }];
  assert.ok(!flowComplete(flows, []));
  assert.ok(!flowComplete(flows, ['a']));
  assert.ok(flowComplete(flows, ['a', 'b']));
  assert.ok(flowComplete(flows, ['c']));
});

test('UiaRequired renders the spec 401 body, without errcode unless a stage failed', () => {
  const plain = new UiaRequired({ flows: [{ stages: ['m.login.dummy'] }], params: {}, session: 's', completed: [] });
  assert.equal(plain.status, 401);
  assert.deepEqual(plain.toJSON(), { flows: [{ stages: ['m.login.dummy'] }], params: {}, session: 's', completed: [] });
  const failed = new UiaRequired({ flows: [], params: {}, session: 's', completed: [], errcode: 'M_FORBIDDEN', error: 'Invalid password' });
  assert.equal(failed.toJSON().errcode, 'M_FORBIDDEN');
});

test('secretEquals compares exactly', () => {
  assert.ok(secretEquals('abc', 'abc'));
  assert.ok(!secretEquals('abc', 'abd'));
  assert.ok(!secretEquals('abc', 'abcd'));
  assert.ok(!secretEquals('', 'a'));
});
