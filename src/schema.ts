import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Ajv as AjvType, ErrorObject, ValidateFunction } from 'ajv';
import type * as YamlModule from 'yaml';
import { fileError, NpurunError } from './errors.js';

/**
 * JSON schemas in schemas/ are the single source of truth of every file format npurun reads
 * (rank tables, hosts files, job files, run.json); this module compiles them and turns ajv's
 * errors into "path: what was expected" lines a person can act on.
 */
// ajv and yaml are loaded on first use (both are CommonJS-loadable): a launch that reads no file
// (`--simulate 8 -- cmd`) starts ~45 ms sooner without them.
const require = createRequire(import.meta.url);
let ajvInstance: AjvType | undefined;
function ajv(): AjvType {
  if (!ajvInstance) {
    const { Ajv } = require('ajv') as typeof import('ajv');
    // verbose: errors carry their schema, whose description says what was expected.
    ajvInstance = new Ajv({ allErrors: true, allowUnionTypes: true, verbose: true });
  }
  return ajvInstance;
}
const compiled = new Map<string, ValidateFunction>();

/** schemas/<name>, resolved from src/ (vitest) and dist/ (built CLI) alike: both sit one level below the root. */
export function schemaValidator(name: string): ValidateFunction {
  const cached = compiled.get(name);
  if (cached) return cached;
  const v = ajv().compile(JSON.parse(readFileSync(new URL(`../schemas/${name}`, import.meta.url), 'utf8')) as object);
  compiled.set(name, v);
  return v;
}

export interface Problem {
  /** JSON path, e.g. `server_list[1].device[3].rank_id`. */
  path: string;
  message: string;
}

/** `/server_list/1/device/3/rank_id` -> `server_list[1].device[3].rank_id`. */
export function jsonPath(pointer: string): string {
  const parts = pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out || '(top level)';
}

export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  const text = JSON.stringify(v);
  // A 10 MB string is named, not printed.
  return `${typeof v} ${text.length > 100 ? `${text.slice(0, 80)}..." (${typeof v === 'string' ? v.length : text.length} characters)` : text}`;
}

function valueAt(root: unknown, pointer: string): unknown {
  let cur: unknown = root;
  for (const p of pointer.split('/').slice(1)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

export function describeAjvError(e: ErrorObject, root: unknown): Problem {
  const at = jsonPath(e.instancePath);
  // propertyNames: the failing thing is a key, not a value.
  const key = (e as ErrorObject & { propertyName?: string }).propertyName;
  if (key !== undefined) {
    const desc = (e.parentSchema as { description?: string } | undefined)?.description;
    return {
      path: at,
      message: `key "${key}" is not allowed${desc ? `: ${desc}` : e.keyword === 'pattern' ? `; expected a name matching ${String((e.params as { pattern?: string }).pattern)}` : ''}`,
    };
  }
  const value = valueAt(root, e.instancePath);
  const params = e.params as Record<string, unknown>;
  const desc = (e.parentSchema as { description?: string } | undefined)?.description;
  const expected = desc ? ` (${desc})` : '';
  switch (e.keyword) {
    case 'required':
      return { path: jsonPath(`${e.instancePath}/${String(params.missingProperty)}`), message: 'missing (required)' };
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const near = known.find((k) => editDistance(k, key) <= 2);
      return {
        path: at,
        message: `unknown key "${key}"${near ? ` (did you mean "${near}"?)` : known.length ? `; expected one of ${known.join(', ')}` : ''}`,
      };
    }
    case 'type':
      return {
        path: at,
        message: `expected ${String(params.type).replace(/,/g, ' or ')}, got ${typeName(value)}${expected}`,
      };
    case 'const':
      return { path: at, message: `expected ${JSON.stringify(params.allowedValue)}, got ${typeName(value)}` };
    case 'enum':
      return {
        path: at,
        message: `expected one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, got ${typeName(value)}`,
      };
    case 'pattern':
      return {
        path: at,
        message: `got ${typeName(value)}, expected ${desc ?? `a value matching ${String(params.pattern)}`}`,
      };
    case 'minimum':
    case 'maximum':
      return {
        path: at,
        message: `expected a number ${e.keyword === 'minimum' ? '>=' : '<='} ${String(params.limit)}, got ${typeName(value)}`,
      };
    case 'maxLength':
      return {
        path: at,
        message: `expected at most ${String(params.limit)} characters, got ${String(value).length}${expected}`,
      };
    case 'minItems':
      return { path: at, message: `expected at least ${String(params.limit)} entr${params.limit === 1 ? 'y' : 'ies'}` };
    default:
      return { path: at, message: `${e.message ?? e.keyword}${expected}` };
  }
}

/** Levenshtein distance, for "did you mean" on misspelt keys. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        (prev[j] as number) + 1,
        (cur[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

/** Validates `value` against schemas/<schema>; returns readable problems, deduplicated (anyOf repeats). */
export function schemaProblems(schema: string, value: unknown): Problem[] {
  const v = schemaValidator(schema);
  if (v(value)) return [];
  const seen = new Set<string>();
  const out: Problem[] = [];
  // A misspelt key is the cause of the "missing" that comes with it: report it first. Then the
  // deepest paths: for an anyOf field ("0-7" or [0, 1]) the useful error is inside the branch the
  // value took, not "expected string, got a list". anyOf/propertyNames summaries add nothing.
  const depth = (e: ErrorObject) => e.instancePath.split('/').length;
  const errors = (v.errors ?? [])
    .filter((e) => (e.keyword !== 'anyOf' && e.keyword !== 'propertyNames') || (v.errors ?? []).length === 1)
    .sort(
      (x, y) =>
        Number(y.keyword === 'additionalProperties') - Number(x.keyword === 'additionalProperties') ||
        depth(y) - depth(x),
    );
  for (const e of errors) {
    const p = describeAjvError(e, value);
    const key = `${p.path}: ${p.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(p);
    }
  }
  return out;
}

/** Hosts and job files are written by hand: a few kB. Anything near this is not one. */
export const YAML_MAX_BYTES = 1024 * 1024;
/** A rank table of thousands of devices is a few MB. */
export const JSON_MAX_BYTES = 64 * 1024 * 1024;
/** YAML aliases (*a) expanded at most this many times: an alias bomb stops here, a real file never gets near. */
const YAML_MAX_ALIASES = 100;
/** Nesting deeper than this is no hosts or job file (and would overflow the stack of recursive readers). */
const YAML_MAX_DEPTH = 64;

/** A file a person named, read as text: missing, a directory, unreadable or too big are refused in words. */
export function readInputText(file: string, what: string, maxBytes: number): string {
  try {
    const size = statSync(file).size;
    if (size > maxBytes)
      throw new NpurunError('input', `${file}: too big for a ${what}: ${size} bytes, expected at most ${maxBytes}`);
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof NpurunError) throw err;
    throw fileError(file, `cannot read the ${what}`, err);
  }
}

function depthOf(text: string): number {
  let depth = 0;
  let max = 0;
  for (const c of text) {
    if (c === '[' || c === '{') max = Math.max(max, ++depth);
    else if (c === ']' || c === '}') depth = Math.max(0, depth - 1);
  }
  const indents = text.split('\n').map((l) => /^ */.exec(l)?.[0].length ?? 0);
  return Math.max(max, Math.max(0, ...indents) / 2);
}

/** YAML text to a value; broken, hostile (alias bombs, deep nesting) or duplicate-keyed YAML is an input error. */
export function parseYamlText(text: string, file: string): unknown {
  if (depthOf(text) > YAML_MAX_DEPTH)
    throw new NpurunError('input', `${file}: not valid YAML here: nested more than ${YAML_MAX_DEPTH} levels deep`);
  const { parseDocument } = require('yaml') as typeof YamlModule;
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0] as { linePos?: { line: number; col: number }[]; message: string };
    const pos = e.linePos?.[0];
    throw new NpurunError(
      'input',
      `${file}${pos ? `:${pos.line}:${pos.col}` : ''}: not valid YAML: ${e.message.split('\n')[0]}`,
    );
  }
  try {
    return doc.toJS({ maxAliasCount: YAML_MAX_ALIASES }) as unknown;
  } catch (err) {
    throw new NpurunError(
      'input',
      `${file}: refused: ${err instanceof Error ? err.message : String(err)} (at most ${YAML_MAX_ALIASES} alias expansions)`,
    );
  }
}

/** Reads a YAML file, validates it against a schema; any problem is an input error naming file, field and expectation. */
export function loadYamlFile(file: string, schema: string, what: string): unknown {
  const value = parseYamlText(readInputText(file, what, YAML_MAX_BYTES), file);
  const problems = schemaProblems(schema, value);
  if (problems.length > 0) {
    throw new NpurunError('input', `${file}: invalid ${what}: ${problems[0]!.path}: ${problems[0]!.message}`, {
      details: problems.slice(1).map((p) => `${file}: ${p.path}: ${p.message}`),
    });
  }
  return value;
}
