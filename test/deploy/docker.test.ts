/**
 * No Docker engine runs in CI, so the image cannot be built there. These
 * checks catch the drift that would break it: the Dockerfile must run the
 * README quick start's install/build commands and start the server the way
 * `npm start` does; the files the build needs must be copied and not
 * ignored; docker-compose.yml may only set options that exist.
 *
 *   node --import tsx --test test/deploy/docker.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OPTIONS } from '../../src/config/options.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (f: string) => readFileSync(path.join(ROOT, f), 'utf8');

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** Dockerfile instructions with line continuations joined and comments dropped; `stage` counts FROMs from 0. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let buf = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!buf && (line === '' || line.startsWith('#'))) continue;
    if (buf && line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      buf += line.slice(0, -1) + ' ';
      continue;
    }
    const full = (buf + line).trim();
    buf = '';
    const m = /^(\w+)\s+([\s\S]*)$/.exec(full);
    if (!m) continue;
    const op = m[1].toUpperCase();
    if (op === 'FROM') stage++;
    out.push({ op, args: m[2].replace(/\s+/g, ' ').trim(), stage });
  }
  return out;
}

/** Exec-form (JSON array) arguments joined by spaces, or the shell form as is. */
function commandOf(args: string): string {
  if (args.startsWith('[')) return (JSON.parse(args) as string[]).join(' ');
  return args;
}

/** The commands of the README's quick start ```sh block, without their comments. */
function quickStartCommands(readme: string): { commands: string[]; startComment: string } {
  const section = readme.split(/^## Quick start$/m)[1]?.split(/^## /m)[0];
  assert.ok(section, 'README has a "## Quick start" section');
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(block, 'the quick start has a sh block');
  const lines = block.split('\n').filter((l) => l.trim());
  const commands = lines.map((l) => l.split('#')[0].trim()).filter(Boolean);
  const startLine = lines.find((l) => l.trim().startsWith('npm start'));
  assert.ok(startLine, 'the quick start shows `npm start`');
  return { commands, startComment: startLine.split('#')[1]?.replace(/^\s*=\s*/, '').trim() ?? '' };
}

const dockerfile = parseDockerfile(read('Dockerfile'));
const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
const stages = Math.max(...dockerfile.map((i) => i.stage)) + 1;
const inStage = (stage: number, op: string) => dockerfile.filter((i) => i.stage === stage && i.op === op);
const last = stages - 1;

test('Dockerfile: two stages, node:20-bookworm to build, node:20-bookworm-slim to run', () => {
  assert.equal(stages, 2);
  assert.match(inStage(0, 'FROM')[0].args, /^node:20-bookworm(\s|$)/);
  assert.match(inStage(last, 'FROM')[0].args, /^node:20-bookworm-slim(\s|$)/);
  const runs = inStage(0, 'RUN').map((r) => r.args).join('\n');
  for (const tool of ['python3', 'make', 'g++']) assert.ok(runs.includes(tool), `build stage installs ${tool} for better-sqlite3`);
});

test("Dockerfile runs the README quick start's install and build commands, in order", () => {
  const { commands } = quickStartCommands(read('README.md'));
  // Everything before `npm start` installs or builds; `npm start` is the CMD (next test).
  const build = commands.slice(0, commands.findIndex((c) => c.startsWith('npm start')));
  assert.ok(build.length > 0 && build.includes('npm ci'), `quick start: ${JSON.stringify(commands)}`);
  const runs = inStage(0, 'RUN').map((r) => r.args.split('&&').map((c) => c.trim())).flat();
  let at = 0;
  for (const c of build) {
    const found = runs.indexOf(c, at);
    assert.ok(found >= 0, `Dockerfile build stage should RUN \`${c}\` (as the README does), after the previous one; it runs ${JSON.stringify(runs)}`);
    at = found + 1;
  }
  // `npm ci` builds dist/ through `prepare`; if that ever stops, the README must show `npm run build`.
  if (!build.includes('npm run build')) assert.equal(pkg.scripts.prepare, pkg.scripts.build, 'prepare builds dist/ like `npm run build`');
});

test('Dockerfile runtime: production dependencies only, non-root, /data volume, ports, start command', () => {
  const buildRuns = inStage(0, 'RUN').map((r) => r.args).join('\n');
  const runtimeRuns = inStage(last, 'RUN').map((r) => r.args).join('\n');
  assert.ok(/npm prune --omit=dev/.test(buildRuns) || /npm ci --omit=dev/.test(runtimeRuns), 'dev dependencies are dropped');
  const user = inStage(last, 'USER');
  assert.equal(user.length, 1);
  assert.doesNotMatch(user[0].args, /^(root|0)(:|$)/);
  assert.match(inStage(last, 'VOLUME').map((v) => v.args).join(' '), /\/data/);
  assert.deepEqual(inStage(last, 'EXPOSE').map((e) => e.args).join(' ').split(' ').sort(), ['8008', '8448']);
  const env = inStage(last, 'ENV').map((e) => e.args).join(' ');
  assert.match(env, /RANVIER_DATA_DIR=\/data/);
  assert.match(env, /RANVIER_ADDRESS=0\.0\.0\.0/);

  const cmd = inStage(last, 'CMD');
  assert.equal(cmd.length, 1);
  const expected = 'node --max-semi-space-size=1 --v8-pool-size=1 dist/main.js serve';
  assert.equal(commandOf(cmd[0].args), expected);
  assert.equal(pkg.scripts.start, expected, 'same as `npm start`');
  assert.equal(quickStartCommands(read('README.md')).startComment, expected, "same as the README's `npm start` comment");
});

test('Dockerfile healthcheck asks /_matrix/client/versions with node (no curl in the slim image)', () => {
  const hc = inStage(last, 'HEALTHCHECK');
  assert.equal(hc.length, 1);
  const cmd = commandOf(hc[0].args.replace(/^(--\S+\s+)*CMD\s+/, ''));
  assert.match(cmd, /^node -e /);
  assert.match(cmd, /\/_matrix\/client\/versions/);
  assert.doesNotMatch(cmd, /curl|wget/);
  // The script must at least be valid JavaScript.
  assert.doesNotThrow(() => new Function(cmd.slice('node -e '.length)));
});

test('the files the build needs are copied and not excluded by .dockerignore', () => {
  const copied = inStage(0, 'COPY').map((c) => c.args.split(' ').slice(0, -1)).flat();
  const buildConfig = /-p\s+(\S+)/.exec(pkg.scripts.build)?.[1];
  assert.ok(buildConfig);
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', buildConfig, 'src']) {
    assert.ok(copied.includes(f), `COPY ${f} (copied: ${copied.join(' ')})`);
  }
  const ignored = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', buildConfig, 'src']) {
    assert.ok(!ignored.some((p) => p === f || p === f + '/' || p === '*' || p === '**'), `${f} is not in .dockerignore`);
  }
  assert.ok(ignored.includes('node_modules'), 'a host node_modules (other platform) must not reach the image');
});

test('docker-compose.yml: one service, one volume at /data, and only existing RANVIER_ options', () => {
  const compose = read('docker-compose.yml');
  const known = new Set(OPTIONS.map((o) => `RANVIER_${o.key.toUpperCase()}`));
  // Commented-out settings too: they are meant to be uncommented as they are.
  const vars = [...compose.matchAll(/\b(RANVIER_[A-Z0-9_]+):/g)].map((m) => m[1]);
  assert.ok(vars.length >= 5, 'settings are given as environment variables');
  for (const v of vars) assert.ok(known.has(v), `${v} is not an option in src/config/options.ts`);
  for (const v of ['RANVIER_SERVER_NAME', 'RANVIER_ADDRESS', 'RANVIER_DATA_DIR']) assert.ok(vars.includes(v), v);
  assert.match(compose, /RANVIER_DATA_DIR: \/data\b/);
  assert.match(compose, /RANVIER_ADDRESS: 0\.0\.0\.0\b/);
  assert.match(compose, /^\s+- ranvier-data:\/data$/m);
  const services = /^services:\n((?: {2}\S.*\n|(?: {4}.*|\s*)\n)*)/m.exec(compose)?.[1] ?? '';
  assert.equal([...services.matchAll(/^ {2}[a-z][\w-]*:\s*$/gm)].length, 1, 'one service');
});
