import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { MatrixError } from '../../src/server/errors.js';
import { parseRequest } from '../../src/accounts/validation.js';
import { filterDefinition } from '../../src/accounts/filters.js';

function errcode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof MatrixError);
    assert.equal(e.status, 400);
    return e.errcode;
  }
  return undefined;
}

const schema = z.object({ new_password: z.string(), nested: z.object({ a: z.number() }).optional() });

test('parseRequest: absent required fields are M_MISSING_PARAM, wrong types M_BAD_JSON', () => {
  assert.equal(errcode(() => parseRequest(schema, {})), 'M_MISSING_PARAM');
  assert.equal(errcode(() => parseRequest(schema, { new_password: 1 })), 'M_BAD_JSON');
  assert.equal(errcode(() => parseRequest(schema, { new_password: 'x', nested: {} })), 'M_MISSING_PARAM');
  assert.equal(errcode(() => parseRequest(schema, { new_password: 'x', nested: { a: 'b' } })), 'M_BAD_JSON');
  assert.equal(errcode(() => parseRequest(schema, [1])), 'M_NOT_JSON');
  assert.equal(errcode(() => parseRequest(schema, 'str')), 'M_NOT_JSON');
  assert.deepEqual(parseRequest(schema, { new_password: 'x' }), { new_password: 'x' });
});

test('filter definitions: known fields are type-checked, unknown ones kept', () => {
  const ok = { room: { timeline: { limit: 10, types: ['m.room.message'], lazy_load_members: true }, include_leave: false }, event_format: 'client', org_custom: { x: 1 } };
  assert.deepEqual(filterDefinition.parse(ok), ok);
  assert.deepEqual(filterDefinition.parse({}), {});
  for (const bad of [
    { room: { timeline: { limit: -1 } } },
    { room: { timeline: { limit: 'ten' } } },
    { event_format: 'xml' },
    { event_fields: 'type' },
    { presence: { not_senders: [1] } },
    { room: { rooms: '!a:b' } },
  ]) {
    assert.equal(filterDefinition.safeParse(bad).success, false, JSON.stringify(bad));
  }
});
