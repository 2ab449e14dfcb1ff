import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { OPTIONS, type OptionSpec } from './options.js';

type KindType<K> = K extends 'string' ? string : K extends 'boolean' ? boolean : number;
type Option = (typeof OPTIONS)[number];
/** The resolved configuration: one typed field per option. */
export type Config = { [O in Option as O['key']]: KindType<O['kind']> };

export class ConfigError extends Error {
  constructor(public readonly key: string, message: string) {
    super(`invalid configuration: ${key}: ${message}`);
  }
}

function coerce(spec: OptionSpec, raw: unknown, from: string): string | number | boolean {
  const fail = (msg: string): never => { throw new ConfigError(spec.key, `${msg} (from ${from})`); };
  switch (spec.kind) {
    case 'string':
      if (typeof raw !== 'string') fail('must be a string');
      return raw as string;
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (typeof raw === 'string') {
        const v = raw.trim().toLowerCase();
        if (['1', 'true', 'yes', 'on'].includes(v)) return true;
        if (['0', 'false', 'no', 'off'].includes(v)) return false;
      }
      return fail('must be true or false');
    case 'integer':
    case 'number': {
      const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
      if (typeof n !== 'number' && typeof n !== 'bigint') return fail('must be a number');
      const num = Number(n);
      if (!Number.isFinite(num)) return fail('must be a number');
      if (spec.kind === 'integer' && !Number.isInteger(num)) return fail('must be an integer');
      return num;
    }
  }
}

/**
 * Resolve configuration: defaults, then the TOML file (if any), then
 * RANVIER_<KEY> environment variables. Unknown keys in the file are errors
 * so typos do not silently fall back to defaults.
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Partial<Config> } = {}): Config {
  const env = opts.env ?? process.env;
  let fileValues: Record<string, unknown> = {};
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (e) {
      throw new ConfigError('config', `cannot read ${opts.file}: ${(e as Error).message}`);
    }
    try {
      fileValues = parseToml(text) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError('config', `${opts.file} is not valid TOML: ${(e as Error).message}`);
    }
  }
  const known = new Set<string>(OPTIONS.map((o) => o.key));
  for (const key of Object.keys(fileValues)) {
    if (!known.has(key)) throw new ConfigError(key, `unknown option in ${opts.file}`);
  }
  const out: Record<string, string | number | boolean> = {};
  for (const spec of OPTIONS as readonly OptionSpec[]) {
    let value: string | number | boolean = spec.default;
    if (spec.key in fileValues) value = coerce(spec, fileValues[spec.key], opts.file ?? 'file');
    const envName = `RANVIER_${spec.key.toUpperCase()}`;
    if (env[envName] !== undefined) value = coerce(spec, env[envName], `environment variable ${envName}`);
    const override = (opts.overrides as Record<string, unknown> | undefined)?.[spec.key];
    if (override !== undefined) value = coerce(spec, override, 'override');
    const problem = spec.check?.(value as never);
    if (problem) throw new ConfigError(spec.key, problem);
    out[spec.key] = value;
  }
  return finish(out as Config);
}

/** Fill the options whose default depends on others. */
function finish(c: Config): Config {
  const dataDir = c.data_dir;
  if (!c.signing_key_path) c.signing_key_path = path.join(dataDir, 'signing.key');
  if (!c.database) c.database = path.join(dataDir, 'ranvier.db');
  if (!c.public_baseurl) {
    const host = c.address === '0.0.0.0' || c.address === '::' ? 'localhost' : c.address;
    c.public_baseurl = `http://${host.includes(':') ? `[${host}]` : host}:${c.port}/`;
  }
  if (!c.public_baseurl.endsWith('/')) c.public_baseurl += '/';
  return c;
}

export function isPostgresUrl(database: string): boolean {
  return /^postgres(ql)?:\/\//.test(database);
}

/** A commented TOML file listing every option with its default. */
export function generateConfigToml(): string {
  const lines = [
    '# Ranvier configuration.',
    '# Every option is shown with its default. Each can also be set with an',
    '# environment variable RANVIER_<OPTION> (e.g. RANVIER_SERVER_NAME), which wins over this file.',
  ];
  let section = '';
  for (const spec of OPTIONS as readonly OptionSpec[]) {
    if (spec.section !== section) {
      section = spec.section;
      lines.push('', `# ---- ${section}`);
    }
    lines.push('', `# ${spec.help}`, `${spec.key} = ${JSON.stringify(spec.default)}`);
  }
  return lines.join('\n') + '\n';
}
