import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { README, readmeWithTable } from '../../scripts/options-table.js';

test('the README options table matches src/config/options.ts', () => {
  const readme = readFileSync(README, 'utf8');
  assert.ok(
    readmeWithTable(readme) === readme,
    'README.md is out of date: run `node --import tsx scripts/options-table.ts --write`',
  );
});
