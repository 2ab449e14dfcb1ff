/**
 * A strict parser of the Prometheus text exposition format (0.0.4), for
 * tests: every line is a `# HELP`, a `# TYPE` or a sample
 * `name{label="value",...} value`; anything else throws, as does a sample
 * whose metric family has no TYPE line before it.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  types: Map<string, string>;
  help: Map<string, string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)(?: (-?\d+))?$/;
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parsePrometheusText(text: string): Exposition {
  const out: Exposition = { samples: [], types: new Map(), help: new Map() };
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    const fail = (why: string) => new Error(`line ${i + 1}: ${why}: ${JSON.stringify(line)}`);
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      if (!m || !NAME.test(m[2])) throw fail('bad comment line');
      if (m[1] === 'TYPE') {
        if (!TYPES.has(m[3])) throw fail('unknown type');
        if (out.types.has(m[2])) throw fail('second TYPE for a family');
        out.types.set(m[2], m[3]);
      } else {
        out.help.set(m[2], m[3]);
      }
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw fail('not a sample line');
    const [, name, , labelText, valueText] = m;
    const labels: Record<string, string> = {};
    let rest = labelText ?? '';
    while (rest !== '') {
      const l = LABEL.exec(rest);
      if (!l) throw fail('bad labels');
      if (l[1] in labels) throw fail(`duplicate label ${l[1]}`);
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(l[0].length);
    }
    // Prometheus reads values with Go's ParseFloat: Inf and NaN in any case (prom-client writes "Nan").
    if (!/^(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[+-]?inf|nan)$/i.test(valueText)) throw fail('bad value');
    const special = valueText.toLowerCase();
    const value = special === 'nan' ? NaN : special.endsWith('inf') ? (special.startsWith('-') ? -Infinity : Infinity) : Number(valueText);
    const family = familyOf(name, out.types);
    if (!family) throw fail('sample before its TYPE line');
    out.samples.push({ name, labels, value });
  }
  return out;
}

/** The family a sample belongs to: its own name, or a histogram's/summary's base name for _bucket/_sum/_count. */
function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (m && (types.get(m[1]) === 'histogram' || types.get(m[1]) === 'summary')) return m[1];
  return undefined;
}

/** Samples named `name` whose labels include every pair of `labels`. */
export function find(exp: Exposition, name: string, labels: Record<string, string> = {}): Sample[] {
  return exp.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The single value of `name` with `labels`; throws if there is not exactly one. */
export function valueOf(exp: Exposition, name: string, labels: Record<string, string> = {}): number {
  const found = find(exp, name, labels);
  if (found.length !== 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`);
  return found[0].value;
}
