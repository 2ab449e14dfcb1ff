#!/usr/bin/env node
/**
 * `npm test`: unit tests once, then the integration suite (test/e2e) on
 * SQLite and, when PostgreSQL answers at 127.0.0.1:5432, on PostgreSQL too.
 * Ends with one line "N passed, N failed" summed over every run and exits
 * non-zero if any run failed.
 *
 * Arguments, if given, filter test files by substring of their path:
 *   npm test -- config rooms
 * Environment: RANVIER_TEST_PG_URL (admin database, default
 * postgres://<os user>@127.0.0.1:5432/test), RANVIER_TEST_SKIP_PG=1 to skip
 * the PostgreSQL run.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const testDir = path.join(root, 'test');
const e2eDir = path.join(testDir, 'e2e');
const filters = process.argv.slice(2);

function findTests(dir) {
  let out = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && !e.name.startsWith('.')) out = out.concat(findTests(p));
    } else if (e.isFile() && e.name.endsWith('.test.ts')) {
      out.push(p);
    }
  }
  return out.sort();
}

const all = findTests(testDir).filter((f) => filters.length === 0 || filters.some((s) => path.relative(root, f).includes(s)));
const isE2e = (f) => f === e2eDir || f.startsWith(e2eDir + path.sep);
const unitFiles = all.filter((f) => !isE2e(f));
const e2eFiles = all.filter(isE2e);

function pgAdminUrl() {
  return process.env.RANVIER_TEST_PG_URL || `postgres://${encodeURIComponent(os.userInfo().username)}@127.0.0.1:5432/test`;
}

/** Resolve to undefined when PostgreSQL can be used for tests, else to the reason it cannot. */
async function postgresProblem() {
  if (process.env.RANVIER_TEST_SKIP_PG) return 'RANVIER_TEST_SKIP_PG is set';
  const client = new pg.Client({ connectionString: pgAdminUrl(), connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    const r = await client.query('SELECT rolcreatedb OR rolsuper AS ok FROM pg_roles WHERE rolname = current_user');
    if (!r.rows[0]?.ok) return `role ${client.user} may not create databases`;
    return undefined;
  } catch (e) {
    return `cannot connect to ${pgAdminUrl().replace(/\/\/[^@/]*@/, '//')}: ${e.message || e.code || e}`;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Run node's test runner on `files` with the spec reporter. Its output is
 * passed through to our stdout and its final summary ("ℹ pass N") counted.
 * (A second TAP reporter writing to a file would be lost: --test-force-exit
 * ends the process before a file stream flushes; stdout pipes are synchronous.)
 */
function runSuite(name, files, { env = {}, concurrency, forceExit = true } = {}) {
  return new Promise((resolve) => {
    // --test-force-exit guards against a leaked handle hanging the run, but under
    // load Node 20 has cut a file's report short with it (tests silently missing
    // from the count), so the unit run, which opens no servers, goes without.
    const args = ['--import', 'tsx', '--test', ...(forceExit ? ['--test-force-exit'] : []), '--test-reporter=spec', '--test-reporter-destination=stdout'];
    if (concurrency) args.push(`--test-concurrency=${concurrency}`);
    args.push(...files);
    console.log(`\n=== ${name}: ${files.length} file${files.length === 1 ? '' : 's'} ===\n`);
    const started = Date.now();
    const colour = process.stdout.isTTY && !process.env.NO_COLOR ? { FORCE_COLOR: '1' } : {};
    const child = spawn(process.execPath, args, {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...colour, ...env },
    });
    let tail = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      tail = (tail + chunk).slice(-20000);
    });
    child.on('close', (code, signal) => {
      // eslint-disable-next-line no-control-regex
      const text = tail.replace(/\x1b\[[0-9;]*m/g, '');
      const count = (label) => {
        const m = [...text.matchAll(new RegExp(`^ℹ ${label} (\\d+)\\s*$`, 'gm'))];
        return m.length ? Number(m[m.length - 1][1]) : 0;
      };
      const passed = count('pass');
      let failed = count('fail') + count('cancelled');
      let note = '';
      if ((code !== 0 || signal) && failed === 0) {
        failed = 1;
        note = ` (runner exited with ${signal ?? `code ${code}`} without reporting a failing test; counted as one failure)`;
      }
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      console.log(`\n--- ${name}: ${passed} passed, ${failed} failed in ${secs}s${note}`);
      resolve({ name, passed, failed });
    });
  });
}

const results = [];
{
  if (unitFiles.length) results.push(await runSuite('unit tests', unitFiles, { forceExit: false }));
  else console.log('\n=== unit tests: no files ===');

  if (e2eFiles.length) {
    results.push(await runSuite('integration tests (SQLite)', e2eFiles, { env: { RANVIER_TEST_DB: 'sqlite' }, concurrency: 2 }));
    const problem = await postgresProblem();
    if (problem) {
      console.log(`\nPostgreSQL run SKIPPED: ${problem}`);
    } else {
      results.push(await runSuite('integration tests (PostgreSQL)', e2eFiles, { env: { RANVIER_TEST_DB: 'postgres' }, concurrency: 2 }));
    }
  } else {
    console.log('\n=== integration tests: no files ===');
  }
}

const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
console.log('');
for (const r of results) console.log(`  ${r.name}: ${r.passed} passed, ${r.failed} failed`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || results.length === 0 ? 1 : 0);
