import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { parse, TomlError } from 'smol-toml';
import { GateError } from '../errors.js';
import { expandPath } from './paths.js';

/**
 * The configuration mechanism shared by every program (spec cli.md §1):
 * TOML files and `-F/-f/-d/-o` flags applied in command-line order, read
 * into one tree of lower-case dotted keys.
 */

export type ConfigValue = string | number | boolean | Date | ConfigValue[] | ConfigTree;
export interface ConfigTree {
  [key: string]: ConfigValue;
}

/** One configuration flag, in the order it was given. */
export type ConfigStep =
  | { kind: 'reset'; path: string } // -F: discard everything read so far, then read the file
  | { kind: 'file'; path: string } // -f
  | { kind: 'dir'; path: string } // -d: dir/*.toml, sorted
  | { kind: 'set'; assignment: string }; // -o key=value

/** A configuration that cannot be read or has a value of the wrong type. */
export class ConfigError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_CONFIG', message, options);
  }
}

const steps = new WeakMap<Command, ConfigStep[]>();

/**
 * Adds the four repeatable configuration flags to a command. The steps keep
 * their relative order (commander parses options left to right and calls each
 * parser in turn, so one shared list records the order across the four
 * flags); read them with configSteps().
 */
export function configFlags(cmd: Command): void {
  const list: ConfigStep[] = [];
  steps.set(cmd, list);
  const collect =
    (make: (v: string) => ConfigStep) =>
    (value: string, previous: string[] | undefined): string[] => {
      list.push(make(value));
      return [...(previous ?? []), value];
    };
  cmd
    .option('-F, --config-reset <file>', 'discard the configuration read so far (including the default files) and read FILE', collect((path) => ({ kind: 'reset', path })))
    .option('-f, --config <file>', 'read a configuration file (merged over what was read before)', collect((path) => ({ kind: 'file', path })))
    .option('-d, --config-dir <dir>', 'read DIR/*.toml in name order', collect((path) => ({ kind: 'dir', path })))
    .option('-o, --option <key=value>', 'set one configuration key (VALUE is a TOML value, or else a string)', collect((assignment) => ({ kind: 'set', assignment })));
}

/** The configuration flags given to a command that configFlags() prepared, in order. */
export function configSteps(cmd: Command): ConfigStep[] {
  return [...(steps.get(cmd) ?? [])];
}

function isTable(v: ConfigValue | undefined): v is ConfigTree {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Keys are case-insensitive: every table key is lower-cased on reading. */
function normalise(v: unknown): ConfigValue {
  if (Array.isArray(v)) return v.map(normalise);
  if (v instanceof Date) return v;
  if (typeof v === 'object' && v !== null) {
    // TomlDate and Temporal values are dates, not tables.
    if (typeof (v as { toISOString?: unknown }).toISOString === 'function') return new Date((v as Date).toISOString());
    const out: ConfigTree = Object.create(null) as ConfigTree;
    for (const [k, x] of Object.entries(v)) out[k.toLowerCase()] = normalise(x);
    return out;
  }
  if (typeof v === 'bigint') return Number(v);
  return v as string | number | boolean;
}

/** Merges src into dst: tables merge key by key, everything else replaces. */
function merge(dst: ConfigTree, src: ConfigTree): void {
  for (const [k, v] of Object.entries(src)) {
    const cur = dst[k];
    if (isTable(cur) && isTable(v)) merge(cur, v);
    else dst[k] = v;
  }
}

function parseToml(text: string, where: string): ConfigTree {
  try {
    return normalise(parse(text)) as ConfigTree;
  } catch (e) {
    if (e instanceof TomlError) {
      // `file:LINE:COLUMN: message`, then the offending lines with a caret under the place.
      const [first = '', ...context] = e.message.split('\n');
      const shown = context.filter((l) => l.trim() !== '').map((l) => `  ${l}`);
      throw new ConfigError(`${where}:${e.line}:${e.column}: ${first.replace(/^Invalid TOML document: /, '')}${shown.length ? `\n${shown.join('\n')}` : ''}`, { cause: e });
    }
    throw new ConfigError(`${where}: ${String(e)}`, { cause: e });
  }
}

function readTomlFile(path: string): ConfigTree {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read configuration file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
  return parseToml(text, path);
}

function tomlFilesIn(dir: string, missingOk: boolean): string[] {
  try {
    return readdirSync(dir)
      .filter((n) => n.endsWith('.toml'))
      .sort()
      .map((n) => join(dir, n))
      .filter((p) => statSync(p).isFile());
  } catch (e) {
    if (missingOk && (e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new ConfigError(`cannot read configuration directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
}

/** Lower-case dotted key → its path of table keys. */
function keyPath(key: string): string[] {
  const parts = key.toLowerCase().split('.');
  if (parts.some((p) => p === '')) throw new ConfigError(`invalid configuration key: ${JSON.stringify(key)}`);
  return parts;
}

/** Sets one dotted key to a value (intermediate tables are created). */
export function setConfigValue(tree: ConfigTree, key: string, value: ConfigValue): void {
  const parts = keyPath(key);
  let t = tree;
  for (const p of parts.slice(0, -1)) {
    const next = t[p];
    if (next === undefined) t = t[p] = Object.create(null) as ConfigTree;
    else if (isTable(next)) t = next;
    else throw new ConfigError(`cannot set ${key}: ${p} is not a table`);
  }
  t[parts[parts.length - 1]!] = value;
}

/** `key=value`: the value is parsed as a TOML value when it is one, else taken as a string. */
export function parseAssignment(assignment: string): { key: string; value: ConfigValue } {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new ConfigError(`option must be key=value: ${JSON.stringify(assignment)}`);
  const key = assignment.slice(0, eq).trim();
  const text = assignment.slice(eq + 1);
  keyPath(key);
  let value: ConfigValue = text;
  try {
    const t = normalise(parse(`v = ${text}`)) as ConfigTree;
    if (t['v'] !== undefined) value = t['v'];
  } catch {
    // not a TOML value: a plain string (e.g. -o http.addr=127.0.0.1:0)
  }
  return { key, value };
}

/**
 * Reads the configuration: the default files (skipped when any -F is given),
 * then each step in order. A default entry that names a directory (ends with
 * `/` or `/*.toml`) reads its *.toml files; missing default files and
 * directories are fine, missing explicit ones are errors. `${VAR}` in paths
 * is expanded (with the XDG defaults).
 *
 * `check` sees each piece before it is merged, with where it came from (a
 * file, or the -o flag), so that an error can name the file with the typo;
 * `reset` is true for the file of a -F, which replaces what came before.
 */
export function readConfig(defaultFiles: string[], configSteps: ConfigStep[], check?: (piece: ConfigTree, source: string, reset?: boolean) => void): ConfigTree {
  let tree: ConfigTree = Object.create(null) as ConfigTree;
  const mergeChecked = (piece: ConfigTree, source: string, reset = false): void => {
    check?.(piece, source, reset);
    merge(tree, piece);
  };
  if (!configSteps.some((s) => s.kind === 'reset')) {
    for (const entry of defaultFiles) {
      const path = expandPath(entry);
      const dir = /\/(\*\.toml)?$/.exec(path);
      if (dir) {
        for (const f of tomlFilesIn(path.slice(0, dir.index) || '/', true)) mergeChecked(readTomlFile(f), f);
      } else {
        let text: string;
        try {
          text = readFileSync(path, 'utf8');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw new ConfigError(`cannot read configuration file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
        }
        mergeChecked(parseToml(text, path), path);
      }
    }
  }
  for (const step of configSteps) {
    switch (step.kind) {
      case 'reset':
        tree = Object.create(null) as ConfigTree;
        mergeChecked(readTomlFile(expandPath(step.path)), expandPath(step.path), true);
        break;
      case 'file':
        mergeChecked(readTomlFile(expandPath(step.path)), expandPath(step.path));
        break;
      case 'dir':
        for (const f of tomlFilesIn(expandPath(step.path), false)) mergeChecked(readTomlFile(f), f);
        break;
      case 'set': {
        const { key, value } = parseAssignment(step.assignment);
        const piece = Object.create(null) as ConfigTree;
        setConfigValue(piece, key, value);
        check?.(piece, `-o ${step.assignment}`);
        setConfigValue(tree, key, value);
        break;
      }
    }
  }
  return tree;
}

/** The value at a dotted key, or undefined. */
export function getValue(tree: ConfigTree, key: string): ConfigValue | undefined {
  let v: ConfigValue | undefined = tree;
  for (const p of keyPath(key)) {
    if (!isTable(v)) return undefined;
    v = v[p];
  }
  return v;
}

function describe(v: ConfigValue): string {
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  if (isTable(v)) return 'a table';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function wrongType(key: string, expected: string, v: ConfigValue): ConfigError {
  return new ConfigError(`configuration key ${key.toLowerCase()} must be ${expected}, not ${describe(v)}`);
}

export function getString(tree: ConfigTree, key: string, dflt: string): string;
export function getString(tree: ConfigTree, key: string, dflt?: string): string | undefined;
export function getString(tree: ConfigTree, key: string, dflt?: string): string | undefined {
  const v = getValue(tree, key);
  if (v === undefined) return dflt;
  if (typeof v !== 'string') throw wrongType(key, 'a string', v);
  return v;
}

/** A string naming a file or directory: `${VAR}` is expanded. */
export function getPath(tree: ConfigTree, key: string, dflt: string): string;
export function getPath(tree: ConfigTree, key: string, dflt?: string): string | undefined;
export function getPath(tree: ConfigTree, key: string, dflt?: string): string | undefined {
  const v = getString(tree, key, dflt);
  return v === undefined ? undefined : expandPath(v);
}

export function getBool(tree: ConfigTree, key: string, dflt: boolean): boolean;
export function getBool(tree: ConfigTree, key: string, dflt?: boolean): boolean | undefined;
export function getBool(tree: ConfigTree, key: string, dflt?: boolean): boolean | undefined {
  const v = getValue(tree, key);
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw wrongType(key, 'true or false', v);
  return v;
}

export function getNumber(tree: ConfigTree, key: string, dflt: number): number;
export function getNumber(tree: ConfigTree, key: string, dflt?: number): number | undefined;
export function getNumber(tree: ConfigTree, key: string, dflt?: number): number | undefined {
  const v = getValue(tree, key);
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw wrongType(key, 'a number', v);
  return v;
}

/** A list of strings; a single string is accepted as a list of one (handy with -o). */
export function getStringList(tree: ConfigTree, key: string, dflt: string[] = []): string[] {
  const v = getValue(tree, key);
  if (v === undefined) return dflt;
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw wrongType(key, 'a list of strings', v);
  return v as string[];
}

/** A list of tables (TOML `[[key]]`), e.g. http.static or source.http. */
export function getTableList(tree: ConfigTree, key: string, dflt: ConfigTree[] = []): ConfigTree[] {
  const v = getValue(tree, key);
  if (v === undefined) return dflt;
  if (!Array.isArray(v) || !v.every((x) => isTable(x))) throw wrongType(key, 'a list of tables', v);
  return v as ConfigTree[];
}

/** A table (e.g. principal), or an empty one. */
export function getTable(tree: ConfigTree, key: string): ConfigTree {
  const v = getValue(tree, key);
  if (v === undefined) return Object.create(null) as ConfigTree;
  if (!isTable(v)) throw wrongType(key, 'a table', v);
  return v;
}
