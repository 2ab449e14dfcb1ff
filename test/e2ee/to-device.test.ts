import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MatrixError } from '../../src/server/errors.js';
import { parseSendToDeviceBody } from '../../src/e2ee/to-device.js';
import { parsePutDehydratedDevice } from '../../src/e2ee/dehydrated-devices.js';
import { makeSyncToken, parseSyncToken } from '../../src/sync/tokens.js';

const badJson = (fn: () => unknown) =>
  assert.throws(fn, (e: unknown) => e instanceof MatrixError && e.errcode === 'M_BAD_JSON' && e.status === 400);

test('sendToDevice body: valid shapes pass through', () => {
  const body = { messages: { '@a:x': { D1: { k: 1 }, '*': {} }, '@b:y': {} } };
  assert.deepEqual(parseSendToDeviceBody(body), body.messages);
  assert.deepEqual(parseSendToDeviceBody({ messages: {} }), {});
});

test('sendToDevice body: bad shapes are M_BAD_JSON', () => {
  for (const b of [undefined, null, [], 'x', {}, { messages: [] }, { messages: 'x' }, { messages: { '@a:x': [] } },
    { messages: { '@a:x': 'x' } }, { messages: { '@a:x': { D: 'x' } } }, { messages: { '@a:x': { D: [1] } } }, { messages: { '@a:x': { D: null } } }]) {
    badJson(() => parseSendToDeviceBody(b));
  }
});

test('dehydrated device body: required fields and optional keys', () => {
  assert.deepEqual(parsePutDehydratedDevice({ device_id: 'D', device_data: { algorithm: 'x' } }), { device_id: 'D', device_data: { algorithm: 'x' } });
  assert.deepEqual(
    parsePutDehydratedDevice({ device_id: 'D', device_data: {}, initial_device_display_name: 'n', device_keys: { a: 1 }, one_time_keys: {}, other: 1 }),
    { device_id: 'D', device_data: {}, initial_device_display_name: 'n', keys: { device_keys: { a: 1 }, one_time_keys: {} } },
  );
  for (const b of [null, [], {}, { device_id: 'D' }, { device_data: {} }, { device_id: '', device_data: {} }, { device_id: 5, device_data: {} },
    { device_id: 'D', device_data: 'x' }, { device_id: 'D', device_data: {}, initial_device_display_name: 3 },
    { device_id: 'D', device_data: {}, device_keys: [] }, { device_id: 'x'.repeat(256), device_data: {} }]) {
    badJson(() => parsePutDehydratedDevice(b));
  }
});

test('sync token to-device part round-trips and is dropped when not behind', () => {
  const t = makeSyncToken(100, 3, 57);
  assert.equal(t, 's100_3_57');
  assert.deepEqual(parseSyncToken(t), { pos: 100, typing: 3, toDevice: 57 });
  assert.equal(makeSyncToken(100, 3, 100), 's100_3');
  assert.equal(makeSyncToken(100, 3, 101), 's100_3');
  assert.deepEqual(parseSyncToken('s100_3_0'), { pos: 100, typing: 3, toDevice: 0 });
  assert.throws(() => parseSyncToken('s100_3_x'), MatrixError);
  assert.throws(() => parseSyncToken('s100_3_99999999999999999'), MatrixError);
});
