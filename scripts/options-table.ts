/**
 * Print the configuration options of src/config/options.ts as a Markdown
 * table, or with --write replace the table in README.md between the
 * `<!-- options:start -->` and `<!-- options:end -->` markers.
 *
 *   node --import tsx scripts/options-table.ts [--write]
 *
 * test/config/readme.test.ts fails when README.md is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OPTIONS, type OptionSpec } from '../src/config/options.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const README = path.join(root, 'README.md');
const START = '<!-- options:start -->';
const END = '<!-- options:end -->';

const cell = (s: unknown) =>
  String(s).replace(/\|/g, '\\|').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\n/g, ' ');

export function optionsTable(): string {
  const lines = ['| option | environment variable | type | default | meaning |', '| --- | --- | --- | --- | --- |'];
  let section = '';
  for (const o of OPTIONS as readonly OptionSpec[]) {
    if (o.section !== section) {
      section = o.section;
      lines.push(`| **${cell(section)}** | | | | |`);
    }
    const def = o.default === '' ? '*(empty)*' : `\`${JSON.stringify(o.default)}\``;
    lines.push(`| \`${o.key}\` | \`RANVIER_${o.key.toUpperCase()}\` | ${o.kind} | ${def} | ${cell(o.help)} |`);
  }
  return lines.join('\n');
}

/** `readme` with the generated table between the markers. */
export function readmeWithTable(readme: string): string {
  const a = readme.indexOf(START);
  const b = readme.indexOf(END);
  if (a < 0 || b < a) throw new Error(`README.md lacks the ${START} ... ${END} markers`);
  return readme.slice(0, a + START.length) + '\n' + optionsTable() + '\n' + readme.slice(b);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--write')) {
    const before = readFileSync(README, 'utf8');
    const after = readmeWithTable(before);
    if (after !== before) writeFileSync(README, after);
    console.log(after === before ? 'README.md options table is up to date' : 'README.md options table updated');
  } else {
    console.log(optionsTable());
  }
}
