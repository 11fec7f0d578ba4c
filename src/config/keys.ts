/**
 * Unknown configuration keys are errors: a typo (`identityfle`,
 * `runtime.sandboxx`) must not silently leave the default in force. Each
 * program lists the keys it reads; checkKnownKeys() compares the tree read
 * from files and flags against that list and names the nearest known key.
 */
import { ConfigError, type ConfigTree, type ConfigValue } from './config.js';

/**
 * A known key, lower-case and dotted: `http.addr`, or for a list of tables
 * (TOML `[[source.http]]`) one entry per field, `source.http[].name`.
 */
export type KnownKey = string;

/** A key under which the program decides itself what is known (e.g. `service`: the registered services). */
export type OpenTableCheck = (path: string[], value: ConfigValue) => string | undefined;

export interface KnownKeys {
  keys: readonly KnownKey[];
  /** Top-level tables checked by their own function, which returns an error message or undefined. */
  open?: Readonly<Record<string, OpenTableCheck>>;
}

interface Node {
  /** A leaf: any value is accepted here (its type is checked where it is read). */
  leaf: boolean;
  /** For a list of tables: the schema of each entry. */
  entry?: Node;
  children: Map<string, Node>;
}

function node(): Node {
  return { leaf: false, children: new Map() };
}

function schemaOf(keys: readonly KnownKey[]): Node {
  const root = node();
  for (const key of keys) {
    let n = root;
    for (const part of key.split('.')) {
      const list = part.endsWith('[]');
      const name = list ? part.slice(0, -2) : part;
      let child = n.children.get(name);
      if (!child) n.children.set(name, (child = node()));
      if (list) n = child.entry ??= node();
      else n = child;
    }
    n.leaf = true;
  }
  return root;
}

function isTable(v: ConfigValue): v is ConfigTree {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Levenshtein distance (keys are short; the quadratic table is fine). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** The candidate nearest to `word`, if it is near enough to be a likely typo. */
export function nearest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  // A third of the length (at least 2 edits): `identityfle` → identityfile, `sandboxx` → sandbox.
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** Every leaf key under a schema node, dotted (for hints). */
function leafKeys(n: Node, prefix: string): string[] {
  const out: string[] = [];
  if (n.leaf && prefix !== '') out.push(prefix);
  if (n.entry) out.push(...leafKeys(n.entry, `${prefix}[]`));
  for (const [name, child] of n.children) out.push(...leafKeys(child, prefix === '' ? name : `${prefix}.${name}`));
  return out;
}

/** How an unknown key is named: `bogus.key` for `-o bogus.key=1`, the table `bogus` when it holds several keys. */
export function describeKey(key: string, value: ConfigValue): string {
  let k = key;
  let v = value;
  while (isTable(v)) {
    const names = Object.keys(v);
    if (names.length !== 1) return names.length === 0 ? `configuration key ${k}` : `configuration table ${k}`;
    k = `${k}.${names[0]!}`;
    v = v[names[0]!]!;
  }
  return `configuration key ${k}`;
}

function unknownKey(key: string, value: ConfigValue, parent: Node, parentKey: string, name: string): string {
  const what = `unknown ${describeKey(key, value)}`;
  const here = nearest(name, parent.children.keys());
  if (here !== undefined) return `${what} (did you mean ${parentKey === '' ? here : `${parentKey}.${here}`}?)`;
  // A key put in the wrong table (`-o sandbox=none`): a known key whose last part is near.
  const all = leafKeys(parent, parentKey);
  const byLast = new Map(all.map((k) => [k.slice(k.lastIndexOf('.') + 1).replace(/^.*\]/, ''), k]));
  const last = nearest(name, byLast.keys());
  return `${what}${last !== undefined ? ` (did you mean ${byLast.get(last)!}?)` : ''}`;
}

function walk(value: ConfigValue, n: Node, key: string, problems: string[]): void {
  if (n.leaf) return;
  if (n.entry) {
    if (!Array.isArray(value)) return; // the type is reported where the value is read
    value.forEach((item, i) => {
      if (isTable(item)) walkTable(item, n.entry!, `${key}[${i}]`, problems);
    });
    return;
  }
  if (!isTable(value)) {
    problems.push(`configuration key ${key} is a table, not a value (its keys: ${leafKeys(n, key).join(', ')})`);
    return;
  }
  walkTable(value, n, key, problems);
}

function walkTable(table: ConfigTree, n: Node, prefix: string, problems: string[]): void {
  for (const [name, value] of Object.entries(table)) {
    const key = prefix === '' ? name : `${prefix}.${name}`;
    const child = n.children.get(name);
    if (child) walk(value, child, key, problems);
    else problems.push(unknownKey(key, value, n, prefix, name));
  }
}

/**
 * Throws ConfigError naming every key of `tree` the program does not read,
 * each with the nearest known key when one is close. `source` (a file, a
 * flag) prefixes the message.
 */
export function checkKnownKeys(tree: ConfigTree, known: KnownKeys, source?: string): void {
  const where = source === undefined ? '' : `${source}: `;
  const problems: string[] = [];
  const open = known.open ?? {};
  // Open tables are leaves of the schema, so that a typo in their name gets a hint too.
  const schema = schemaOf([...known.keys, ...Object.keys(open)]);
  for (const [name, value] of Object.entries(tree)) {
    const check = Object.hasOwn(open, name) ? open[name] : undefined;
    if (check) {
      const problem = check([name], value);
      if (problem !== undefined) problems.push(problem);
    } else {
      walkTable({ [name]: value } as ConfigTree, schema, '', problems);
    }
  }
  if (problems.length === 1) throw new ConfigError(`${where}${problems[0]!}`);
  if (problems.length > 1) throw new ConfigError(`${where}${problems.length} configuration problems:\n  ${problems.join('\n  ')}`);
}
