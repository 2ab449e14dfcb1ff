#!/usr/bin/env -S node --max-semi-space-size=1 --v8-pool-size=1
/**
 * The `ranvier` command line:
 *
 *   ranvier serve [--config FILE]
 *   ranvier config generate
 *   ranvier config check [--config FILE]
 *   ranvier user create NAME [--password P] [--admin] [--config FILE]
 *   ranvier user list [--config FILE]
 *   ranvier user reset-password NAME [--password P] | deactivate NAME | make-admin NAME [--revoke]
 *   ranvier token create [--uses N] [--expires DURATION|ISO] [--length N] | list | revoke TOKEN
 *   ranvier check federation [SERVER_NAME] [--json] [--config FILE]
 *   ranvier backup DIR [--force] [--config FILE]
 *   ranvier backup verify DIR
 *   ranvier restore DIR [--force] [--config FILE]
 *
 * The configuration file may also be named by RANVIER_CONFIG; every option
 * can be overridden with RANVIER_<OPTION>. User commands open the database
 * directly, which is safe while the server runs (SQLite WAL + busy_timeout,
 * or PostgreSQL).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, generateConfigToml, isPostgresUrl, loadConfig, type Config } from './config/config.js';
import { createLogger, silentLogger } from './server/logging.js';
import type { Context } from './server/services.js';
// The server and its services are imported when a command needs them, so
// `config generate` / `config check` stay fast and work on their own.

const USAGE = `Usage: ranvier <command> [options]

Commands:
  serve                      run the homeserver
  config generate            print a commented configuration file with every default
  config check               load and validate the configuration, then exit
  user create NAME           create an account (NAME is a localpart or a full @user:server id)
      --password P           its password (default: prompt on a terminal, else generate and print one)
      --admin                make it a server admin
  user list                  list the accounts on this server
  user reset-password NAME   set a new password and sign out every session
      --password P           the new password (default: prompt on a terminal, else generate and print one)
  user deactivate NAME       deactivate an account: sign it out and leave its rooms
  user make-admin NAME       make an account a server admin
      --revoke               take server admin away instead
  token create               create a registration token (registration is then open to its holders)
      --uses N               how many registrations it allows (default: unlimited)
      --expires WHEN         expiry: a duration (30m, 12h, 7d, 2w) or an ISO date/time (default: never)
      --length N             length of the generated token, 1-64 (default: 16)
      --json                 print the token as JSON
  token list                 list registration tokens with their uses and expiry (--json: as JSON)
  token revoke TOKEN         delete a registration token
  check federation [NAME]    test federation with NAME (default: server_name) as other servers
                             see it: discovery, TLS, version and key endpoints; exit 1 on failure
      --json                 print the report as JSON
  backup DIR                 copy the database, signing key, config file and local media into
                             DIR while the server runs; writes DIR/manifest.json last
      --force                write into a non-empty DIR (replacing the backup there)
  backup verify DIR          check a backup's files against its manifest; exit 1 on any problem
  restore DIR                verify the backup in DIR and put it in place (server stopped)
      --force                replace an existing database

Options:
  -c, --config FILE          configuration file (TOML); default: $RANVIER_CONFIG, else none
  -h, --help                 show this help
  -v, --version              print the version

Every option can also be set with an environment variable RANVIER_<OPTION>
(for example RANVIER_SERVER_NAME=example.org), which wins over the file.
`;

/** A failure whose message is for the user; exits with `code`. */
class CliError extends Error {
  constructor(message: string, public readonly code = 1) {
    super(message);
  }
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

interface Args {
  positionals: string[];
  config?: string;
  password?: string;
  admin: boolean;
  json: boolean;
  force: boolean;
  revoke: boolean;
  uses?: string;
  expires?: string;
  length?: string;
  help: boolean;
  version: boolean;
}

function parse(argv: string[]): Args {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string', short: 'c' },
        password: { type: 'string', short: 'p' },
        admin: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        force: { type: 'boolean', default: false },
        revoke: { type: 'boolean', default: false },
        uses: { type: 'string' },
        expires: { type: 'string' },
        length: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'v', default: false },
      },
    });
    return {
      positionals,
      config: values.config,
      password: values.password,
      admin: values.admin ?? false,
      json: values.json ?? false,
      force: values.force ?? false,
      revoke: values.revoke ?? false,
      uses: values.uses,
      expires: values.expires,
      length: values.length,
      help: values.help ?? false,
      version: values.version ?? false,
    };
  } catch (e) {
    throw new CliError(`${(e as Error).message}\n\n${USAGE}`, 2);
  }
}

function configFrom(args: Args): Config {
  const file = args.config ?? (process.env.RANVIER_CONFIG || undefined);
  return loadConfig({ file });
}

function expectArgs(args: Args, count: number, usage: string): void {
  if (args.positionals.length !== count) throw new CliError(`usage: ranvier ${usage}`, 2);
}

async function serve(args: Args): Promise<void> {
  expectArgs(args, 1, 'serve [--config FILE]');
  const config = configFrom(args);
  const log = createLogger(config);
  const { startServer, installShutdownHandlers } = await import('./server/start.js');
  let server;
  try {
    server = await startServer(config, { log });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') throw new CliError(`cannot listen on ${config.address}:${config.port}: address already in use`);
    if (e.code === 'EACCES') throw new CliError(`cannot listen on ${config.address}:${config.port}: permission denied`);
    if (e.code === 'EADDRNOTAVAIL') throw new CliError(`cannot listen on ${config.address}:${config.port}: address not available on this machine`);
    throw err;
  }
  installShutdownHandlers(server, log);
  log.info(
    {
      url: server.url,
      server_name: config.server_name,
      database: isPostgresUrl(config.database) ? 'postgres' : config.database,
      version: version(),
    },
    `Ranvier listening on ${server.url} as ${config.server_name}`,
  );
}

function configCheck(args: Args): void {
  expectArgs(args, 2, 'config check [--config FILE]');
  const config = configFrom(args);
  const db = isPostgresUrl(config.database) ? 'PostgreSQL (' + config.database.replace(/\/\/[^@/]*@/, '//***@') + ')' : `SQLite (${config.database})`;
  process.stdout.write(
    `configuration OK\n` +
      `  server_name    ${config.server_name}\n` +
      `  listen         ${config.address}:${config.port}\n` +
      `  public_baseurl ${config.public_baseurl}\n` +
      `  database       ${db}\n` +
      `  signing key    ${config.signing_key_path}\n` +
      `  registration   ${config.allow_registration ? 'open' : config.registration_token ? 'token required' : 'closed'}\n`,
  );
}

/** Typed-ahead input left over after the previous hidden prompt's Enter. */
let typedAhead = '';

/** Read a line from the terminal without echoing it. */
function readHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.setEncoding('utf8');
    let chars: string[] = [];
    let done = false;
    const finish = () => {
      done = true;
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (s: string) => {
      const input = Array.from(s);
      for (let i = 0; i < input.length; i++) {
        const ch = input[i];
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          typedAhead = input.slice(i + 1).join('').replace(/^\n/, '');
          finish();
          resolve(chars.join(''));
          return;
        }
        if (ch === '\u0003') {
          finish();
          reject(new CliError('cancelled', 130));
          return;
        }
        if (ch === '\u007f' || ch === '\b') chars = chars.slice(0, -1);
        else if (ch >= ' ') chars.push(ch);
      }
    };
    stdin.on('data', onData);
    if (typedAhead) {
      const ahead = typedAhead;
      typedAhead = '';
      onData(ahead);
    }
    if (!done) stdin.resume();
  });
}

async function choosePassword(given: string | undefined): Promise<{ password: string; generated: boolean }> {
  if (given !== undefined) {
    if (given === '') throw new CliError('--password must not be empty');
    return { password: given, generated: false };
  }
  if (process.stdin.isTTY) {
    const password = await readHidden('Password: ');
    if (!password) throw new CliError('password must not be empty');
    const again = await readHidden('Confirm password: ');
    if (again !== password) throw new CliError('passwords do not match');
    return { password, generated: false };
  }
  return { password: randomBytes(18).toString('base64url'), generated: true };
}

function localpartOf(name: string, serverName: string): string {
  if (!name.startsWith('@')) return name;
  const colon = name.indexOf(':');
  if (colon < 0) throw new CliError(`${name} is not a user id (expected @localpart:${serverName})`);
  const server = name.slice(colon + 1);
  if (server !== serverName) throw new CliError(`${name} belongs to ${server}, but this server is ${serverName}`);
  return name.slice(1, colon);
}

/** Open the database and services without listening. */
async function withContext<T>(config: Config, fn: (ctx: Context) => Promise<T>): Promise<T> {
  const { createContext } = await import('./server/services.js');
  const ctx = await createContext(config, silentLogger());
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

function errorText(err: unknown): string {
  const e = err as { errcode?: unknown; message?: unknown } | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return e && typeof e === 'object' && e.errcode ? `${String(e.errcode)}: ${message}` : message;
}

async function userCreate(args: Args): Promise<void> {
  expectArgs(args, 3, 'user create NAME [--password P] [--admin] [--config FILE]');
  const config = configFrom(args);
  const localpart = localpartOf(args.positionals[2], config.server_name);
  const { password, generated } = await choosePassword(args.password);
  const userId = await withContext(config, async (ctx) => {
    try {
      return await ctx.accounts.createUser(localpart, password, { admin: args.admin });
    } catch (err) {
      throw new CliError(`cannot create user ${localpart}: ${errorText(err)}`);
    }
  });
  process.stdout.write(`created ${args.admin ? 'admin ' : ''}user ${userId}\n`);
  if (generated) process.stdout.write(`password: ${password}\n`);
}

async function userList(args: Args): Promise<void> {
  expectArgs(args, 2, 'user list [--config FILE]');
  const config = configFrom(args);
  const users = await withContext(config, (ctx) => ctx.accounts.listUsers());
  const rows = users.map((u) => [
    u.user_id,
    [u.is_admin ? 'admin' : '', u.deactivated ? 'deactivated' : ''].filter(Boolean).join(', '),
    u.displayname ?? '',
  ]);
  const header = ['USER ID', 'FLAGS', 'DISPLAY NAME'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd() + '\n';
  process.stdout.write(line(header));
  for (const r of rows) process.stdout.write(line(r));
  process.stdout.write(`${rows.length} user${rows.length === 1 ? '' : 's'}\n`);
}

/** `user reset-password|deactivate|make-admin` (src/cli/users.ts). */
async function userAdminCommand(args: Args, sub: 'reset-password' | 'deactivate' | 'make-admin'): Promise<void> {
  const usage = {
    'reset-password': 'user reset-password NAME [--password P] [--config FILE]',
    deactivate: 'user deactivate NAME [--config FILE]',
    'make-admin': 'user make-admin NAME [--revoke] [--config FILE]',
  }[sub];
  expectArgs(args, 3, usage);
  const config = configFrom(args);
  const userId = `@${localpartOf(args.positionals[2], config.server_name)}:${config.server_name}`;
  const users = await import('./cli/users.js');
  const chosen = sub === 'reset-password' ? await choosePassword(args.password) : undefined;
  const message = await withContext(config, async (ctx) => {
    try {
      if (chosen) {
        await users.resetPassword(ctx, userId, chosen.password);
        return `reset the password of ${userId} and signed out its sessions`;
      }
      if (sub === 'deactivate') {
        return (await users.deactivate(ctx, userId)) ? `deactivated user ${userId}` : `user ${userId} was already deactivated`;
      }
      const changed = await users.setAdmin(ctx, userId, !args.revoke);
      if (args.revoke) return changed ? `${userId} is no longer a server admin` : `${userId} was not a server admin`;
      return changed ? `${userId} is now a server admin` : `${userId} was already a server admin`;
    } catch (err) {
      throw new CliError(`cannot ${sub.replace('-', ' ')} ${userId}: ${errorText(err)}`);
    }
  });
  process.stdout.write(`${message}\n`);
  if (chosen?.generated) process.stdout.write(`password: ${chosen.password}\n`);
}

/** `token create|list|revoke` (src/cli/tokens.ts). */
async function tokenCommand(args: Args, sub: string | undefined): Promise<void> {
  const tokens = await import('./cli/tokens.js');
  if (sub === 'create') {
    expectArgs(args, 2, 'token create [--uses N] [--expires DURATION|ISO] [--length N] [--json] [--config FILE]');
    const config = configFrom(args);
    let request;
    try {
      request = tokens.parseCreateOptions({ uses: args.uses, expires: args.expires, length: args.length });
    } catch (err) {
      throw new CliError(`cannot create token: ${errorText(err)}`);
    }
    const t = await withContext(config, async (ctx) => {
      try {
        return await tokens.createToken(ctx, request);
      } catch (err) {
        throw new CliError(`cannot create token: ${errorText(err)}`);
      }
    });
    process.stdout.write(args.json ? JSON.stringify(t, null, 2) + '\n' : `created registration token ${t.token} (${tokens.describeToken(t)})\n`);
    return;
  }
  if (sub === 'list') {
    expectArgs(args, 2, 'token list [--json] [--config FILE]');
    const list = await withContext(configFrom(args), (ctx) => ctx.accounts.registrationTokens.list());
    process.stdout.write(args.json ? JSON.stringify(list, null, 2) + '\n' : tokens.formatTokens(list));
    return;
  }
  if (sub === 'revoke') {
    expectArgs(args, 3, 'token revoke TOKEN [--config FILE]');
    const token = args.positionals[2];
    await withContext(configFrom(args), async (ctx) => {
      try {
        await tokens.revokeToken(ctx, token);
      } catch (err) {
        throw new CliError(`cannot revoke token: ${errorText(err)}`);
      }
    });
    process.stdout.write(`revoked registration token ${token}\n`);
    return;
  }
  throw new CliError(`unknown token command ${sub ?? '(none)'}; expected create, list or revoke`, 2);
}

async function checkFederationCommand(args: Args): Promise<number> {
  if (args.positionals.length > 3) throw new CliError('usage: ranvier check federation [SERVER_NAME] [--json] [--config FILE]', 2);
  const config = configFrom(args);
  const { checkFederation, formatReport } = await import('./federation/check.js');
  const report = await checkFederation(config, args.positionals[2] ?? config.server_name);
  process.stdout.write(args.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
  return report.ok ? 0 : 1;
}

/** Backup failures are the operator's to fix: show the message, not a stack. */
async function backupErrorsToCli<T>(fn: () => Promise<T>): Promise<T> {
  const { BackupError } = await import('./cli/backup.js');
  try {
    return await fn();
  } catch (err) {
    if (err instanceof BackupError) throw new CliError(err.message);
    throw err;
  }
}

async function backupCommand(args: Args): Promise<void> {
  expectArgs(args, 2, 'backup DIR [--force] [--config FILE]');
  const config = configFrom(args);
  const { createBackup, stderrProgress } = await import('./cli/backup.js');
  const dir = args.positionals[1];
  const configFile = args.config ?? (process.env.RANVIER_CONFIG || undefined);
  const manifest = await backupErrorsToCli(() =>
    createBackup(config, dir, { force: args.force, configFile, ranvierVersion: version(), progress: stderrProgress() }),
  );
  process.stdout.write(`backup of ${manifest.server_name} written to ${dir} (${manifest.files.length} files, schema version ${manifest.schema_version})\n`);
}

async function backupVerifyCommand(args: Args): Promise<number> {
  const { verifyBackup } = await import('./cli/backup.js');
  const dir = args.positionals[2];
  const { manifest, problems } = await verifyBackup(dir);
  if (problems.length > 0 || !manifest) {
    process.stderr.write(`backup in ${dir} is NOT usable:\n${problems.map((p) => `  ${p}\n`).join('')}`);
    return 1;
  }
  process.stdout.write(`backup OK: ${manifest.files.length} files verified (${manifest.server_name}, ${manifest.database}, schema version ${manifest.schema_version})\n`);
  return 0;
}

async function restoreCommand(args: Args): Promise<void> {
  expectArgs(args, 2, 'restore DIR [--force] [--config FILE]');
  const config = configFrom(args);
  const { restoreBackup, stderrProgress } = await import('./cli/backup.js');
  const dir = args.positionals[1];
  const manifest = await backupErrorsToCli(() => restoreBackup(config, dir, { force: args.force, progress: stderrProgress() }));
  process.stdout.write(`restored the backup of ${manifest.server_name} from ${new Date(manifest.created_ts).toISOString()}\n`);
}

async function run(argv: string[]): Promise<number | 'running'> {
  const args = parse(argv);
  if (args.version) {
    process.stdout.write(`ranvier ${version()}\n`);
    return 0;
  }
  const [cmd, sub] = args.positionals;
  if (args.help || !cmd || cmd === 'help') {
    process.stdout.write(USAGE);
    return args.help || cmd === 'help' ? 0 : 2;
  }
  switch (cmd) {
    case 'serve':
      await serve(args);
      return 'running';
    case 'config':
      if (sub === 'generate') {
        expectArgs(args, 2, 'config generate');
        process.stdout.write(generateConfigToml());
        return 0;
      }
      if (sub === 'check') {
        configCheck(args);
        return 0;
      }
      throw new CliError(`unknown config command ${sub ?? '(none)'}; expected generate or check`, 2);
    case 'user':
      if (sub === 'create') {
        await userCreate(args);
        return 0;
      }
      if (sub === 'list') {
        await userList(args);
        return 0;
      }
      if (sub === 'reset-password' || sub === 'deactivate' || sub === 'make-admin') {
        await userAdminCommand(args, sub);
        return 0;
      }
      throw new CliError(`unknown user command ${sub ?? '(none)'}; expected create, list, reset-password, deactivate or make-admin`, 2);
    case 'token':
      await tokenCommand(args, sub);
      return 0;
    case 'backup':
      if (sub === 'verify' && args.positionals.length === 3) return backupVerifyCommand(args);
      await backupCommand(args);
      return 0;
    case 'restore':
      await restoreCommand(args);
      return 0;
    case 'check':
      if (sub === 'federation') return checkFederationCommand(args);
      throw new CliError(`unknown check command ${sub ?? '(none)'}; expected federation`, 2);
    default:
      throw new CliError(`unknown command ${cmd}\n\n${USAGE}`, 2);
  }
}

run(process.argv.slice(2)).then(
  (code) => {
    // One-shot commands exit explicitly so a lingering timer or pool cannot keep the process alive.
    if (code !== 'running') process.exit(code);
  },
  (err: unknown) => {
    // A database from a newer version is the admin's problem to fix, not a bug: no stack trace.
    const userFacing = err instanceof ConfigError || err instanceof CliError || (err instanceof Error && err.name === 'SchemaTooNewError');
    if (userFacing) {
      process.stderr.write(`ranvier: ${err.message}\n`);
      process.exit(err instanceof CliError ? err.code : 1);
    }
    process.stderr.write(`ranvier: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
