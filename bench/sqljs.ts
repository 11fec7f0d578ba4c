/**
 * Compute overhead on a large real-world module: sql.js 1.16 (SQLite,
 * emscripten, 688 KB) running a fixed SQL workload raw in V8 and in each
 * profile's prepared module.
 *
 * sql.js is not a Gate program (its imports are emscripten's), so the
 * prepared module is driven here directly, without the runtime: every import
 * gets a canonical name `wasi.<module>.<field>`, none of them may unwind, and
 * only the preemption check (`gate.yield`) is special — under suspend-anywhere
 * Asyncify instruments everything reachable from it, under io-suspend it is a
 * plain import. The check never unwinds here (it only refills the fuel), so
 * this measures the cost of the instrumentation on the fast path.
 *
 * The prepared module imports its memory and has no active data segments:
 * the host creates the memory, copies the original's active data segments
 * into it and sets the mutable globals through the `__gate_g<i>` exports, as
 * Program.initialState() and Instance do for Gate programs.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { INTERNAL_IMPORT_MODULE, InternalExport, InternalImport } from '../src/prepare/internal.js';
import { prepare } from '../src/prepare/pipeline.js';
import { PROFILES, type Profile } from '../src/prepare/profile.js';
import { MEMORY_IMPORT, type CanonicalImport } from '../src/prepare/rewrite.js';
import { globalValues } from '../src/snapshot/format.js';
import { ExternalKind, parseModule, type WasmModule } from '../src/wasm/module.js';
import { globalJsValue, legacyChecksOnly, legacyPrepare } from './legacy/prepare.js';
import { fmt, median, range } from './stats.js';

/** Checks between two refills of the fuel, as in the runtime (runtime/instance.ts FUEL). */
const FUEL = 20000;
const CHECKS_ONLY = 'Asyncify version: checks only (diagnostic)';
const legacyName = (p: Profile): string => `Asyncify version: ${p}`;

// The subset of sql.js's API the workload uses.
interface Statement {
  run(params: unknown[]): void;
  free(): void;
}
interface Database {
  run(sql: string): void;
  prepare(sql: string): Statement;
  exec(sql: string): Array<{ values: unknown[][] }>;
  close(): void;
}
interface SqlJs {
  Database: new () => Database;
}
type InitSqlJs = (config: { instantiateWasm(imports: WebAssembly.Imports, done: (instance: WebAssembly.Instance) => void): object }) => Promise<SqlJs>;

/**
 * The fixed workload: a table, 20 000 inserts in one transaction through a
 * prepared statement, an index, a LIKE scan, a GROUP BY over the index and a
 * recursive CTE of 200 000 rows. Returns a checksum of all results.
 */
/**
 * Runs of each variant before measuring: V8 first runs wasm as Liftoff code
 * and moves hot functions to TurboFan in the background; with 2 runs the raw
 * module was still partly in Liftoff (raw times varied 125–260 ms).
 */
export const WARMUP_RUNS = 6;

export function workload(SQL: SqlJs): number {
  const db = new SQL.Database();
  try {
    db.run('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL)');
    db.run('BEGIN');
    const st = db.prepare('INSERT INTO t (name, grp, val) VALUES (?, ?, ?)');
    for (let i = 0; i < 20000; i++) st.run([`name-${(i * 7919) % 20000}-x`, i % 97, ((i * 31) % 1000) / 7]);
    st.free();
    db.run('COMMIT');
    db.run('CREATE INDEX t_grp ON t (grp, val)');
    const q = (sql: string): unknown[][] => db.exec(sql)[0]!.values;
    let sum = Number(q("SELECT count(*) FROM t WHERE name LIKE '%12%'")[0]![0]);
    for (const [g, c, s] of q('SELECT grp, count(*), sum(val) FROM t GROUP BY grp ORDER BY grp')) {
      sum = (sum * 31 + Number(g) + Number(c) + Math.round(Number(s))) % 1e9;
    }
    sum += Number(q('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) SELECT sum(x % 1000) FROM c')[0]![0]);
    return sum % 1e9;
  } finally {
    db.close();
  }
}

/**
 * A fresh copy of the emscripten glue: sql.js keeps its module in a
 * module-level promise, so each variant needs its own evaluation of the file.
 */
function freshGlue(): InitSqlJs {
  const require = createRequire(import.meta.url);
  const path = require.resolve('sql.js/dist/sql-wasm.js');
  delete require.cache[path];
  return require(path) as InitSqlJs;
}

/** Instantiates a prepared sql.js module the way the runtime would instantiate a program. */
export function preparedInstance(original: WasmModule, module: WebAssembly.Module, glueImports: WebAssembly.Imports, initialFuel = FUEL): WebAssembly.Instance {
  const mem = original.memories[0]!;
  const memory = new WebAssembly.Memory(mem.max === undefined ? { initial: mem.min } : { initial: mem.min, maximum: mem.max });
  let fuel: WebAssembly.Global | undefined;
  const refill = (): void => {
    fuel!.value = FUEL;
  };
  const wasi: Record<string, unknown> = {};
  for (const imp of original.imports) {
    if (imp.kind !== ExternalKind.Function) throw new Error(`sql.js: unexpected non-function import ${imp.module}.${imp.field}`);
    const fn = (glueImports[imp.module] as Record<string, unknown> | undefined)?.[imp.field];
    if (typeof fn !== 'function') throw new Error(`sql.js glue does not provide ${imp.module}.${imp.field}`);
    wasi[`${imp.module}.${imp.field}`] = fn;
  }
  const imports = {
    wasi,
    [MEMORY_IMPORT.module]: {
      [MEMORY_IMPORT.name]: memory,
      // the Asyncify version's check (absent from the checks-only module, whose check calls an empty stub)
      yield: refill,
    },
    // our transform's check; nothing unwinds here, so the frame functions are never called
    [INTERNAL_IMPORT_MODULE]: {
      ...Object.fromEntries(
        Object.values(InternalImport).map((n) => [
          n,
          () => {
            throw new Error(`unexpected ${n}`);
          },
        ]),
      ),
      yield: refill,
    },
  };
  const instance = new WebAssembly.Instance(module, imports as WebAssembly.Imports);
  fuel = instance.exports[InternalExport.fuel] as WebAssembly.Global;
  fuel.value = initialFuel;
  // Active data segments (the prepared module has none) ...
  const bytes = new Uint8Array(memory.buffer);
  for (const d of original.dataSegments) {
    if (d.passive || d.end === d.start) continue;
    bytes.set(original.bytes.subarray(d.start, d.end), d.offset!);
  }
  // ... and the mutable globals (they start at zero in the prepared module).
  const values = globalValues(original);
  original.globals.forEach((g, i) => {
    if (g.mutable) (instance.exports[`${InternalExport.globalPrefix}${i}`] as WebAssembly.Global).value = globalJsValue(values[i]!);
  });
  // The glue reads the memory from the original's memory export ("O" in sql.js 1.16),
  // which the prepared module keeps: it now names the imported memory.
  const memExport = original.exports.find((e) => e.kind === ExternalKind.Memory);
  if (memExport && instance.exports[memExport.name] !== memory) throw new Error(`prepared module does not export its memory as "${memExport.name}"`);
  if (original.start !== undefined) (instance.exports[InternalExport.start] as () => void)();
  return instance;
}

export async function engine(instantiate: (imports: WebAssembly.Imports) => WebAssembly.Instance): Promise<SqlJs> {
  return freshGlue()({
    instantiateWasm(imports, done) {
      done(instantiate(imports));
      return {};
    },
  });
}

const BRANCH_HINTS = 'metadata.code.branch_hint';
const NO_HINTS = 'suspend-anywhere without branch hints (diagnostic)';
const INLINE_REWIND = 'suspend-anywhere, inline rewind';
const MID_TIER = "suspend-anywhere with V8's mid-tier register allocator for large functions (diagnostic, its own process)";

/** The module without its custom section `name`. */
function withoutCustomSection(bytes: Uint8Array, name: string): Uint8Array {
  const parts = [bytes.subarray(0, 8)];
  for (const s of parseModule(bytes, { prepared: true }).sections) if (s.name !== name) parts.push(bytes.subarray(s.start, s.end));
  return new Uint8Array(Buffer.concat(parts));
}

export async function sqljsSection(lines: string[], rounds: number, log: (s: string) => void, legacy = true): Promise<void> {
  const require = createRequire(import.meta.url);
  const bytes = new Uint8Array(await readFile(require.resolve('sql.js/dist/sql-wasm.wasm')));
  const original = parseModule(bytes);
  const imports: CanonicalImport[] = original.imports.map((i) => ({ module: 'wasi', name: `${i.module}.${i.field}` }));

  const variants: Array<{ name: string; sql?: SqlJs; error?: string; prepareMs?: number; size?: number; beforeRun?: () => void }> = [];
  const rawModule = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
  variants.push({ name: 'raw', sql: await engine((imp) => new WebAssembly.Instance(rawModule, imp)) });
  for (const profile of PROFILES as readonly Profile[]) {
    const v: (typeof variants)[number] = { name: profile };
    variants.push(v);
    try {
      const t0 = performance.now();
      // No unwinding imports: only the check matters (see above).
      const prepared = await prepare(original, { profile, imports, unwindingImports: new Set() });
      v.prepareMs = performance.now() - t0;
      v.size = prepared.bytes.length;
      log(`sql.js: prepared ${profile} in ${fmt(v.prepareMs / 1000, 1)} s`);
      const mod = new WebAssembly.Module(prepared.bytes as Uint8Array<ArrayBuffer>);
      v.sql = await engine((imp) => preparedInstance(original, mod, imp));
      if (profile === 'suspend-anywhere') {
        // Diagnostic: the same code without its branch hints (what V8 makes of it when it does not read them).
        const unhinted = withoutCustomSection(prepared.bytes, BRANCH_HINTS);
        const modUnhinted = new WebAssembly.Module(unhinted as Uint8Array<ArrayBuffer>);
        variants.push({ name: NO_HINTS, size: unhinted.length, sql: await engine((imp) => preparedInstance(original, modUnhinted, imp)) });
      }
    } catch (e) {
      v.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    }
  }

  // Our transform with its rewind code in every function (as before lazy rewind), in the same run.
  {
    const profile: Profile = 'suspend-anywhere';
    const v: (typeof variants)[number] = { name: INLINE_REWIND };
    variants.push(v);
    try {
      const t0 = performance.now();
      const prepared = await prepare(original, { profile, imports, unwindingImports: new Set(), rewind: 'inline' });
      v.prepareMs = performance.now() - t0;
      v.size = prepared.bytes.length;
      const mod = new WebAssembly.Module(prepared.bytes as Uint8Array<ArrayBuffer>);
      v.sql = await engine((imp) => preparedInstance(original, mod, imp));
    } catch (e) {
      v.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    }
  }

  // The first version's pipeline, measured in the same run.
  for (const profile of legacy ? (PROFILES as readonly Profile[]) : []) {
    const v: (typeof variants)[number] = { name: legacyName(profile) };
    variants.push(v);
    try {
      const t0 = performance.now();
      const prepared = legacyPrepare(original, imports, new Set(), profile);
      v.prepareMs = performance.now() - t0;
      v.size = prepared.length;
      log(`sql.js: prepared ${v.name} in ${fmt(v.prepareMs / 1000, 1)} s`);
      const mod = new WebAssembly.Module(prepared as Uint8Array<ArrayBuffer>);
      v.sql = await engine((imp) => preparedInstance(original, mod, imp));
    } catch (e) {
      v.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    }
  }
  {
    // Diagnostic: the fuel checks alone (no unwinding at all), fuel that never runs out.
    const checksOnly = legacyChecksOnly(original, imports);
    const mod = new WebAssembly.Module(checksOnly as Uint8Array<ArrayBuffer>);
    let fuel: WebAssembly.Global | undefined;
    const sql = await engine((imp) => {
      const inst = preparedInstance(original, mod, imp, 2 ** 31 - 1);
      fuel = inst.exports[InternalExport.fuel] as WebAssembly.Global;
      return inst;
    });
    variants.push({ name: CHECKS_ONLY, size: checksOnly.length, sql, beforeRun: () => void (fuel!.value = 2 ** 31 - 1) });
  }

  // Warm up (V8 tiers up on the first runs) and check every variant's result.
  let expected: number | undefined;
  for (const v of variants) {
    if (!v.sql) continue;
    try {
      for (let i = 0; i < WARMUP_RUNS; i++) {
        v.beforeRun?.();
        const r = workload(v.sql);
        if (v.name === 'raw') expected = r;
        else if (r !== expected) throw new Error(`checksum ${r}, raw ${expected}`);
      }
    } catch (e) {
      v.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      v.sql = undefined;
    }
  }

  const times: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v.name, []]));
  const ratios: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v.name, []]));
  for (let round = 0; round < rounds; round++) {
    const t: Record<string, number> = {};
    // Alternate the order within rounds so that no variant always runs first.
    const order = round % 2 ? [...variants].reverse() : variants;
    for (const v of order) {
      if (!v.sql) continue;
      v.beforeRun?.();
      const t0 = performance.now();
      const r = workload(v.sql);
      t[v.name] = performance.now() - t0;
      if (r !== expected) throw new Error(`sql.js ${v.name}: checksum ${r} in round ${round}, raw ${expected}`);
    }
    for (const v of variants) {
      if (t[v.name] === undefined) continue;
      times[v.name]!.push(t[v.name]!);
      ratios[v.name]!.push(t[v.name]! / t.raw!);
    }
  }
  // Diagnostic: the suspend-anywhere module under V8's default register allocation for large functions (its own process).
  let midTier: number[] | string;
  try {
    const child = fileURLToPath(new URL('./sqljs-midtier.js', import.meta.url));
    midTier = (JSON.parse(execFileSync(process.execPath, [child, String(rounds)], { encoding: 'utf8', maxBuffer: 1 << 20 })) as { ratios: number[] }).ratios;
  } catch (e) {
    midTier = e instanceof Error ? e.message : String(e);
  }
  log('sql.js: done');

  lines.push('## sql.js 1.16: SQL workload relative to raw V8', '');
  lines.push(
    `Workload (bench/sqljs.ts): CREATE TABLE, 20 000 INSERTs through a prepared statement in one transaction, CREATE INDEX, a LIKE scan, a GROUP BY over 97 groups, and a recursive CTE of 200 000 rows; checksum ${expected} (every variant checked against raw in every run). ` +
      `The prepared modules are instantiated through emscripten's \`instantiateWasm\` with the glue's imports mapped onto \`wasi.<module>.<field>\`, a host-created memory with the original's data segments and globals, and a check that only refills the fuel (${FUEL}) and never unwinds. ` +
      `No import may unwind, so suspend-anywhere makes what is reachable from a check unwindable, and io-suspend has no unwindable call at all. ` +
      `Median of ${rounds} rounds (after ${WARMUP_RUNS} warm-up runs each), order alternating between rounds; min–max in parentheses. Preparation: one uncached run with these options.`,
    '',
    `*${INLINE_REWIND}* is our transform with the rewind code in every function of the prepared module, as before lazy rewind (the transform's other changes included: the loop helper), measured in the same run. Rows *${legacyName('suspend-anywhere')}* and *${legacyName('io-suspend')}* are the first version's pipeline (fuel checks + Binaryen Asyncify, bench/legacy/), measured in the same run. *${CHECKS_ONLY}* is its fuel checks without any unwinding (a floor for check-based preemption). *${NO_HINTS}* is the suspend-anywhere module without its branch hint section, as V8 compiles it when it does not read the hints (docs/runtime.md). *${MID_TIER}* is the suspend-anywhere module under V8's default register allocation, which gives functions of more than 8192 virtual registers to its mid-tier allocator (executors turn that off, docs/runtime.md): the flag is per process, so that row is measured in a process of its own (bench/sqljs-midtier.ts), raw and instrumented alternating there in as many rounds.`,
    '',
  );
  lines.push('| variant | time (ms) | vs raw | preparation (s) | prepared size |', '|---|---|---|---|---|');
  for (const v of variants) {
    if (v.error) {
      lines.push(`| ${v.name} | fails: ${v.error.replace(/\|/g, '\\|').slice(0, 300)} | | ${v.prepareMs ? fmt(v.prepareMs / 1000, 1) : ''} | |`);
      continue;
    }
    const ratio = v.name === 'raw' ? '1' : `${fmt(median(ratios[v.name]!))}× (${range(ratios[v.name]!, 2)})`;
    const size = v.size ? `${fmt(v.size / bytes.length)}× (${(v.size / 1024).toFixed(0)} KiB)` : `${(bytes.length / 1024).toFixed(0)} KiB`;
    lines.push(`| ${v.name} | ${fmt(median(times[v.name]!), 0)} (${range(times[v.name]!, 0)}) | ${ratio} | ${v.prepareMs ? fmt(v.prepareMs / 1000, 1) : ''} | ${size} |`);
  }
  if (typeof midTier === 'string') lines.push(`| ${MID_TIER} | fails: ${midTier.replace(/\|/g, '\\|').slice(0, 300)} | | | |`);
  else lines.push(`| ${MID_TIER} | | ${fmt(median(midTier))}× (${range(midTier, 2)}) | | |`);
  lines.push('');
}
