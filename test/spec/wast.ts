/**
 * A runner for the JSON command files that `wast2json` makes of the
 * WebAssembly spec test suite (.wast), running every module several ways
 * side by side: raw V8, and instrumented (suspend-anywhere with and without
 * forced unwinds, io-suspend). The rule for an instrumented way is "every
 * assertion that passes raw passes instrumented, with the same outcome":
 * results are compared with the raw run's (bit patterns of floats
 * included, through a wasm wrapper so that NaN payloads never cross JS),
 * traps by message; the file's own expectation decides only whether the raw
 * run passed (some expectations of these old files no longer hold in V8).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import type { Profile } from '../../src/prepare/profile.js';
import { INTERNAL_IMPORT_MODULE } from '../../src/prepare/internal.js';
import { Unwinder } from '../../src/runtime/unwinder.js';
import { InstanceRewindCopies, RewindCopyCompiler } from '../../src/runtime/rewind-copies.js';
import { callWithUnwinds, forcedYield } from '../helpers/forced-unwinds.js';
import { ByteWriter } from '../../src/wasm/leb128.js';
import { ExternalKind, parseModule, type WasmModule } from '../../src/wasm/module.js';

// --- wast2json -------------------------------------------------------------

/**
 * Converts every .wast file of `suiteDir` into `outDir` (FILE.json plus its
 * modules), a few processes at a time. Returns the base names, sorted.
 */
export async function convertSuite(suiteDir: string, outDir: string, parallel = 4): Promise<string[]> {
  const run = promisify(execFile);
  const names = fs
    .readdirSync(suiteDir)
    .filter((f) => f.endsWith('.wast'))
    .map((f) => f.slice(0, -'.wast'.length))
    .sort();
  fs.mkdirSync(outDir, { recursive: true });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const name = names[next++]!;
      // wast2json reports errors in modules of assert_invalid/assert_malformed on stderr but still writes them (exit 0).
      await run('wast2json', [path.join(suiteDir, `${name}.wast`), '-o', path.join(outDir, `${name}.json`)], { maxBuffer: 1 << 24 });
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, names.length) }, worker));
  return names;
}

/** Whether `wast2json` can be run. */
export async function haveWast2json(): Promise<boolean> {
  try {
    await promisify(execFile)('wast2json', ['--version']);
    return true;
  } catch {
    return false;
  }
}

// --- JSON commands ---------------------------------------------------------

export interface SpecValue {
  type: string;
  /** Unsigned decimal (floats as their bits), `nan:canonical`, `nan:arithmetic`, `null`; absent for result types of traps. */
  value?: string;
}

export interface SpecAction {
  type: 'invoke' | 'get';
  module?: string;
  field: string;
  args?: SpecValue[];
}

export interface SpecCommand {
  type: string;
  line: number;
  filename?: string;
  name?: string;
  as?: string;
  action?: SpecAction;
  expected?: SpecValue[];
  text?: string;
  module_type?: 'binary' | 'text';
}

// --- Ways --------------------------------------------------------------------

export type Instrument = (m: WasmModule, opts: { profile: Profile; unwindingImports: ReadonlySet<number>; fuelChunk?: number }) => { bytes: Uint8Array };

export interface Way {
  name: string;
  /** Undefined: raw V8. */
  profile?: Profile;
  /** Unwind (and rewind) at preemption checks (see `forcedSchedule`). */
  forced?: boolean;
}

export const RAW: Way = { name: 'raw' };
export const INSTRUMENTED_WAYS: Way[] = [
  { name: 'suspend-anywhere', profile: 'suspend-anywhere' },
  { name: 'suspend-anywhere forced', profile: 'suspend-anywhere', forced: true },
  { name: 'io-suspend', profile: 'io-suspend' },
];

export interface RunOptions {
  /** Undefined: run raw only. */
  instrument?: Instrument;
  ways?: Way[];
  /**
   * Forced mode unwinds at each of the first `forcedEvery` checks of an
   * invocation, then only at checks number 2^k (unwinding at every check of
   * a deep recursion costs depth² frames).
   */
  forcedEvery?: number;
}

export interface WayCounts {
  /** Assertions (and actions) with the expected outcome (instrumented: also the raw one). */
  pass: number;
  /** Raw: did not meet the file's expectation. Instrumented: raw passed and this way's outcome differs. */
  fail: number;
  /** Instrumented ways: raw failed and this way did the same. */
  sameAsRawFailure: number;
  /** Instrumented ways: raw failed and this way did something else (not an error, see `notes`). */
  differsWhereRawFails: number;
  na: number;
  modules: number;
  modulesNA: number;
  modulesFailed: number;
  unwinds: number;
  /** Invocations during which at least one unwind happened. */
  callsUnwound: number;
}

export interface Mismatch {
  way: string;
  line: number;
  command: string;
  module: string | undefined;
  expected: string;
  got: string;
}

export interface FileReport {
  file: string;
  assertions: number;
  /** Assertions on text-format modules (assert_malformed/assert_invalid of .wat): nothing to run. */
  skippedText: number;
  ways: Record<string, WayCounts>;
  /** Why modules were not applicable, per way: reason → count. */
  naReasons: Record<string, Map<string, number>>;
  mismatches: Mismatch[];
  /** Assertions that fail raw (expectations V8 no longer meets): `line N command: got …`. */
  rawFailures: string[];
  notes: string[];
}

// --- Values ------------------------------------------------------------------

const VALTYPE: Record<string, number> = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, externref: 0x6f, funcref: 0x70 };

const hostRefs = new Map<number, object>();
function hostRef(n: number): object {
  let r = hostRefs.get(n);
  if (!r) hostRefs.set(n, (r = { hostRef: n }));
  return r;
}

const scratch = new DataView(new ArrayBuffer(8));

function f32FromBits(bits: number): number {
  scratch.setUint32(0, bits, true);
  return scratch.getFloat32(0, true);
}
function f64FromBits(bits: bigint): number {
  scratch.setBigUint64(0, bits, true);
  return scratch.getFloat64(0, true);
}
function f32Bits(v: number): number {
  scratch.setFloat32(0, v, true);
  return scratch.getUint32(0, true);
}
function f64Bits(v: number): bigint {
  scratch.setFloat64(0, v, true);
  return scratch.getBigUint64(0, true);
}

/** An argument for a call: floats as their bits when `wrapped`. */
function argValue(v: SpecValue, wrapped: boolean): unknown {
  const s = v.value ?? '0';
  switch (v.type) {
    case 'i32':
      return Number(s) | 0;
    case 'i64':
      return BigInt.asIntN(64, BigInt(s));
    case 'f32':
      return wrapped ? Number(s) | 0 : f32FromBits(Number(s) >>> 0);
    case 'f64':
      return wrapped ? BigInt.asIntN(64, BigInt(s)) : f64FromBits(BigInt.asUintN(64, BigInt(s)));
    case 'externref':
      return s === 'null' ? null : hostRef(Number(s));
    case 'funcref':
      return null;
    default:
      throw new Error(`unknown value type ${v.type}`);
  }
}

function refString(v: unknown): string {
  if (v === null) return 'null';
  for (const [n, r] of hostRefs) if (r === v) return `ref.extern ${n}`;
  return typeof v === 'function' ? 'ref.func' : `ref ${typeof v}`;
}

/** A result as `type:bits` (unsigned decimal), from a wrapped call (floats as bits) or a direct one. */
function resultString(type: string | undefined, v: unknown, wrapped: boolean): string {
  switch (type) {
    case 'i32':
      return `i32:${(v as number) >>> 0}`;
    case 'i64':
      return `i64:${BigInt.asUintN(64, v as bigint)}`;
    case 'f32':
      return `f32:${wrapped ? (v as number) >>> 0 : f32Bits(v as number)}`;
    case 'f64':
      return `f64:${wrapped ? BigInt.asUintN(64, v as bigint) : f64Bits(v as number)}`;
    case 'externref':
    case 'funcref':
      return `${type}:${refString(v)}`;
    default:
      if (typeof v === 'bigint') return `i64:${BigInt.asUintN(64, v)}`;
      if (typeof v === 'number') return `number:${v}`;
      return `${typeof v}:${refString(v)}`;
  }
}

function matches(expected: SpecValue, got: string): boolean {
  const [type, bits] = [got.slice(0, got.indexOf(':')), got.slice(got.indexOf(':') + 1)];
  if (type !== expected.type) return false;
  const want = expected.value;
  if (want === undefined) return true;
  if (type === 'f32' && want.startsWith('nan:')) {
    const b = Number(bits);
    return want === 'nan:canonical' ? (b & 0x7fffffff) === 0x7fc00000 : (b & 0x7fc00000) === 0x7fc00000;
  }
  if (type === 'f64' && want.startsWith('nan:')) {
    const b = BigInt(bits);
    return want === 'nan:canonical'
      ? (b & 0x7fffffffffffffffn) === 0x7ff8000000000000n
      : (b & 0x7ff8000000000000n) === 0x7ff8000000000000n;
  }
  if (type === 'externref' || type === 'funcref') return bits === (want === 'null' ? 'null' : `ref.extern ${want}`);
  return bits === want;
}

// --- Float-safe calls --------------------------------------------------------

/**
 * A wasm function that imports `f` and takes and returns floats as their
 * bits, so that NaN payloads never pass through JS numbers. Undefined when
 * the signature has no floats or cannot be wrapped (several results).
 */
const wrapperModules = new Map<string, WebAssembly.Module>();
const wrappers = new WeakMap<Function, Map<string, Function | null>>();

function wrapperModule(params: string[], results: string[]): WebAssembly.Module {
  const key = `${params.join(',')}>${results.join(',')}`;
  let mod = wrapperModules.get(key);
  if (mod) return mod;
  const asBits = (t: string): number => (t === 'f32' ? VALTYPE.i32! : t === 'f64' ? VALTYPE.i64! : VALTYPE[t]!);
  const out = new ByteWriter();
  out.bytes(new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
  const types = new ByteWriter();
  types.u32(2);
  types.u8(0x60).u32(params.length);
  for (const p of params) types.u8(VALTYPE[p]!);
  types.u32(results.length);
  for (const r of results) types.u8(VALTYPE[r]!);
  types.u8(0x60).u32(params.length);
  for (const p of params) types.u8(asBits(p));
  types.u32(results.length);
  for (const r of results) types.u8(asBits(r));
  out.section(1, types.finish());
  out.section(2, new ByteWriter().u32(1).name('m').name('f').u8(0).u32(0).finish());
  out.section(3, new ByteWriter().u32(1).u32(1).finish());
  out.section(7, new ByteWriter().u32(1).name('f').u8(0).u32(1).finish());
  const body = new ByteWriter();
  body.u32(0); // no locals
  params.forEach((p, i) => {
    body.u8(0x20).u32(i);
    if (p === 'f32') body.u8(0xbe);
    if (p === 'f64') body.u8(0xbf);
  });
  body.u8(0x10).u32(0);
  if (results[0] === 'f32') body.u8(0xbc);
  if (results[0] === 'f64') body.u8(0xbd);
  body.u8(0x0b);
  const b = body.finish();
  out.section(10, new ByteWriter().u32(1).u32(b.length).bytes(b).finish());
  mod = new WebAssembly.Module(out.finish() as Uint8Array<ArrayBuffer>);
  wrapperModules.set(key, mod);
  return mod;
}

function floatWrapper(f: Function, params: string[], results: string[] | undefined): Function | null {
  if (results === undefined || results.length > 1) return null;
  if (![...params, ...results].some((t) => t === 'f32' || t === 'f64')) return null;
  if (![...params, ...results].every((t) => t in VALTYPE)) return null;
  const key = `${params.join(',')}>${results.join(',')}`;
  let perFn = wrappers.get(f);
  if (!perFn) wrappers.set(f, (perFn = new Map()));
  let w = perFn.get(key);
  if (w === undefined) {
    try {
      const inst = new WebAssembly.Instance(wrapperModule(params, results), { m: { f } });
      w = inst.exports.f as Function;
    } catch {
      w = null; // the export's real type differs from what the command says: call it directly
    }
    perFn.set(key, w);
  }
  return w;
}

// --- Outcomes ----------------------------------------------------------------

type Outcome =
  | { kind: 'values'; values: string[] }
  | { kind: 'trap'; message: string }
  | { kind: 'exhaustion' }
  | { kind: 'error'; message: string }
  | { kind: 'na'; reason: string };

/** Outcome of compiling and instantiating a module. */
type ModOutcome =
  | { kind: 'ok' }
  | { kind: 'refused'; by: string; message: string }
  | { kind: 'link'; message: string }
  | { kind: 'trap'; message: string }
  | { kind: 'exhaustion' }
  | { kind: 'error'; message: string }
  | { kind: 'na'; reason: string };

function errorOutcome(e: unknown): Outcome {
  if (e instanceof WebAssembly.RuntimeError) return { kind: 'trap', message: e.message };
  if (e instanceof RangeError && /call stack/i.test(e.message)) return { kind: 'exhaustion' };
  const err = e as Error;
  return { kind: 'error', message: `${err?.constructor?.name ?? typeof e}: ${err?.message ?? String(e)}` };
}

function show(o: Outcome | ModOutcome): string {
  switch (o.kind) {
    case 'values':
      return o.values.length ? o.values.join(' ') : '(no values)';
    case 'trap':
      return `trap "${o.message}"`;
    case 'exhaustion':
      return 'call stack exhausted';
    case 'error':
      return `error ${o.message}`;
    case 'na':
      return `n/a (${o.reason})`;
    case 'ok':
      return 'instantiated';
    case 'refused':
      return `refused by ${o.by}: ${o.message}`;
    case 'link':
      return `link error "${o.message}"`;
  }
}

function sameOutcome(a: Outcome, b: Outcome): boolean {
  if (a.kind !== b.kind) return false;
  switch (a.kind) {
    case 'values':
      return a.values.join(' ') === (b as typeof a).values.join(' ');
    case 'trap':
    case 'error':
      return a.message === (b as typeof a).message;
    default:
      return true;
  }
}

function shortReason(message: string): string {
  return message.replace(/ \(at byte offset \d+\)$/, '').replace(/"[^"]*"/g, '"…"').replace(/\d+/g, 'N');
}

// --- Per-way state -----------------------------------------------------------

interface Loaded {
  exports: WebAssembly.Exports;
  call(fn: Function, args: unknown[]): unknown;
}

/**
 * A module of a way. `tainted`: a module that is not applicable in this way
 * imported from it, so its state may differ from the raw run's (that module
 * could have changed its table, memory or globals, or called its functions).
 */
type Slot = { ok: Loaded; file: string; tainted?: string; deps: OkSlot[] } | { na: string } | { failed: string };
type OkSlot = Extract<Slot, { ok: Loaded }>;

/** Why a module's behaviour may differ from the raw run's: it or a module it imports from is tainted. */
function taint(slot: OkSlot): string | undefined {
  return slot.tainted ?? slot.deps.map(taint).find((t) => t !== undefined);
}

interface Prepared {
  module?: WebAssembly.Module;
  /** Its rewind copies (instrumented ways). */
  copies?: RewindCopyCompiler;
  /** Not applicable (outside Gate's ABI or feature set): the reason. */
  na?: string;
  /** Refused (parse, instrument or compile error): who and why. */
  refused?: { by: string; message: string };
  /** Something odd but not wrong (reported as a note). */
  note?: string;
  /** The original module's imports (for modules that are not applicable), if V8 accepts it. */
  originalImports?: WebAssembly.ModuleImportDescriptor[];
}

function spectest(): Record<string, unknown> {
  const nop = (): void => {};
  return {
    print: nop,
    print_i32: nop,
    print_i64: nop,
    print_f32: nop,
    print_f64: nop,
    print_i32_f32: nop,
    print_f64_f64: nop,
    global_i32: new WebAssembly.Global({ value: 'i32' }, 666),
    global_i64: new WebAssembly.Global({ value: 'i64' }, 666n),
    global_f32: new WebAssembly.Global({ value: 'f32' }, 666.6),
    global_f64: new WebAssembly.Global({ value: 'f64' }, 666.6),
    table: new WebAssembly.Table({ initial: 10, maximum: 20, element: 'anyfunc' }),
    memory: new WebAssembly.Memory({ initial: 1, maximum: 2 }),
  };
}

class WayState {
  current: Slot | undefined;
  readonly named = new Map<string, Slot>();
  readonly registered = new Map<string, Slot>();
  readonly spectest = spectest();
  /** Why modules were not applicable: reason → count. */
  readonly naReasons = new Map<string, number>();
  constructor(
    readonly way: Way,
    readonly counts: WayCounts,
  ) {}

  /** A module that is not applicable in this way was linked to (or would have been) `mod`'s imports. */
  taintImporters(imports: WebAssembly.ModuleImportDescriptor[], reason: string): void {
    for (const imp of imports) {
      const slot = this.registered.get(imp.module);
      if (slot && 'ok' in slot) slot.tainted ??= `a module importing from it is n/a: ${reason}`;
    }
  }

  /** The modules `mod` imports from. */
  depsOf(mod: WebAssembly.Module): OkSlot[] {
    const deps: OkSlot[] = [];
    for (const imp of WebAssembly.Module.imports(mod)) {
      const slot = this.registered.get(imp.module);
      if (slot && 'ok' in slot && !deps.includes(slot)) deps.push(slot);
    }
    return deps;
  }

  /** The import object for `mod`, or the reason it cannot be linked in this way. */
  importsFor(mod: WebAssembly.Module): Record<string, Record<string, unknown>> | { na: string } {
    const imports: Record<string, Record<string, unknown>> = {};
    for (const imp of WebAssembly.Module.imports(mod)) {
      if (imp.module in imports) continue;
      if (imp.module === 'spectest') {
        imports.spectest = this.spectest;
        continue;
      }
      const slot = this.registered.get(imp.module);
      if (slot && 'na' in slot) return { na: `imports from a module that is not applicable (${slot.na})` };
      if (slot && 'ok' in slot && taint(slot)) return { na: `imports from a module whose state may differ (${taint(slot)})` };
      // Unknown or failed modules: an empty object, so that linking fails with a LinkError.
      imports[imp.module] = slot && 'ok' in slot ? (slot.ok.exports as Record<string, unknown>) : {};
    }
    return imports;
  }
}

function newCounts(): WayCounts {
  return { pass: 0, fail: 0, sameAsRawFailure: 0, differsWhereRawFails: 0, na: 0, modules: 0, modulesNA: 0, modulesFailed: 0, unwinds: 0, callsUnwound: 0 };
}

/** Why Gate's ABI cannot express this module, if it cannot. */
export function notApplicable(m: WasmModule): string | undefined {
  for (const imp of m.imports) {
    if (imp.kind === ExternalKind.Memory) return 'imports a memory';
    if (imp.kind === ExternalKind.Table) return 'imports a table';
    if (imp.kind === ExternalKind.Global) return 'imports a global';
  }
  if (m.tables.length > 1) return 'uses several tables';
  return undefined;
}

// --- The runner --------------------------------------------------------------

export class SpecRunner {
  private readonly ways: Way[];
  private readonly forcedEvery: number;

  constructor(private readonly opts: RunOptions = {}) {
    this.ways = opts.instrument ? [RAW, ...(opts.ways ?? INSTRUMENTED_WAYS)] : [RAW];
    this.forcedEvery = opts.forcedEvery ?? 1000;
  }

  /** Runs one converted file (`dir/name.json` and its modules). */
  runFile(dir: string, name: string): FileReport {
    const json = JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8')) as { commands: SpecCommand[] };
    const report: FileReport = { file: `${name}.wast`, assertions: 0, skippedText: 0, ways: {}, naReasons: {}, mismatches: [], rawFailures: [], notes: [] };
    const states = this.ways.map((w) => {
      const s = new WayState(w, (report.ways[w.name] = newCounts()));
      report.naReasons[w.name] = s.naReasons;
      return s;
    });
    /** Prepared modules per profile, by file name. */
    const prepared = new Map<string, Prepared>();
    const bytesOf = (filename: string): Uint8Array => new Uint8Array(fs.readFileSync(path.join(dir, filename)));

    const prepare = (way: Way, filename: string): Prepared => {
      // (forced ways count fuel in chunks of 1: their own preparation)
      const key = `${way.profile ?? 'raw'}${way.forced ? ' forced' : ''}:${filename}`;
      let p = prepared.get(key);
      if (p) return p;
      const bytes = bytesOf(filename);
      p = this.prepare(way, bytes);
      if (p.na) {
        try {
          p.originalImports = WebAssembly.Module.imports(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>));
        } catch {
          // refused raw too
        }
      }
      prepared.set(key, p);
      if (p.note) report.notes.push(`${filename}: ${p.note}`);
      return p;
    };

    for (const c of json.commands) {
      switch (c.type) {
        case 'module': {
          const raw = this.instantiate(states[0]!, prepare(RAW, c.filename!), c);
          for (let i = 1; i < states.length; i++) {
            const s = states[i]!;
            const o = this.instantiate(s, prepare(s.way, c.filename!), c);
            if (o.kind === 'na') continue;
            if (raw.kind === 'ok' && o.kind !== 'ok') {
              report.mismatches.push({ way: s.way.name, line: c.line, command: 'module', module: c.filename, expected: show(raw), got: show(o) });
            } else if (raw.kind !== 'ok' && o.kind === 'ok') {
              report.notes.push(`${s.way.name}: line ${c.line} (${c.filename}): instantiated, but raw: ${show(raw)}`);
            }
          }
          break;
        }
        case 'register':
          for (const s of states) {
            const slot = c.name ? s.named.get(c.name) : s.current;
            s.registered.set(c.as!, slot ?? { failed: 'no module to register' });
          }
          break;
        case 'assert_malformed':
        case 'assert_invalid':
          if (c.module_type === 'text') {
            report.skippedText++;
            break;
          }
          this.assertion(report, states, c, (s) => {
            const p = prepare(s.way, c.filename!);
            return { kind: 'values', values: [p.refused ? 'refused' : 'accepted'] };
          }, (o) => o.kind === 'values' && o.values[0] === 'refused');
          break;
        case 'assert_unlinkable':
        case 'assert_uninstantiable':
          this.assertion(report, states, c, (s) => {
            const o = this.instantiate(s, prepare(s.way, c.filename!), c, false);
            if (o.kind === 'na') return o;
            // Link errors are compared by kind only: their messages name import indices.
            return o.kind === 'trap' ? o : { kind: 'values', values: [o.kind] };
          }, (o) => (c.type === 'assert_unlinkable' ? o.kind === 'values' && o.values[0] === 'link' : o.kind === 'trap'));
          break;
        case 'assert_return':
          this.assertion(report, states, c, (s) => this.act(s, c.action!, c.expected), (o) =>
            o.kind === 'values' && o.values.length === c.expected!.length && c.expected!.every((e, i) => matches(e, o.values[i]!)),
          );
          break;
        case 'assert_trap':
          this.assertion(report, states, c, (s) => this.act(s, c.action!, c.expected), (o) => o.kind === 'trap');
          break;
        case 'assert_exhaustion':
          this.assertion(report, states, c, (s) => this.act(s, c.action!, c.expected), (o) => o.kind === 'exhaustion');
          break;
        case 'action':
          this.assertion(report, states, c, (s) => this.act(s, c.action!, c.expected), (o) => o.kind === 'values');
          break;
        default:
          report.notes.push(`line ${c.line}: unknown command ${c.type}`);
      }
    }
    return report;
  }

  /** Runs an assertion in every way and counts it. */
  private assertion(report: FileReport, states: WayState[], c: SpecCommand, run: (s: WayState) => Outcome, ok: (o: Outcome) => boolean): void {
    report.assertions++;
    const raw = run(states[0]!);
    const rawPass = ok(raw);
    const rawCounts = states[0]!.counts;
    if (rawPass) rawCounts.pass++;
    else {
      rawCounts.fail++;
      report.rawFailures.push(`line ${c.line} ${describe(c)}${c.text ? ` (expects "${c.text}")` : ''}: got ${show(raw)}`);
    }
    for (let i = 1; i < states.length; i++) {
      const s = states[i]!;
      const o = run(s);
      if (o.kind === 'na') {
        s.counts.na++;
        continue;
      }
      const same = sameOutcome(raw, o);
      if (rawPass) {
        if (same) s.counts.pass++;
        else {
          s.counts.fail++;
          report.mismatches.push({ way: s.way.name, line: c.line, command: describe(c), module: moduleOf(s, c), expected: show(raw), got: show(o) });
        }
      } else if (same) {
        s.counts.sameAsRawFailure++;
      } else {
        s.counts.differsWhereRawFails++;
        report.notes.push(`${s.way.name}: line ${c.line} ${describe(c)}: raw (which fails the assertion) ${show(raw)}, here ${show(o)}`);
      }
    }
  }

  /** Parses, checks and instruments (or, raw, just compiles) module bytes. */
  private prepare(way: Way, bytes: Uint8Array): Prepared {
    if (!way.profile) {
      try {
        return { module: new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>) };
      } catch (e) {
        return { refused: { by: 'V8', message: (e as Error).message } };
      }
    }
    let m: WasmModule;
    try {
      m = parseModule(bytes);
    } catch (e) {
      // Outside Gate's feature set (or malformed): parseModule refuses it.
      return { na: `parseModule: ${shortReason((e as Error).message)}`, refused: { by: 'parseModule', message: (e as Error).message } };
    }
    // As the runtime does (runtime/program.ts): the engine validates the
    // module before it is instrumented (instrument() expects valid input).
    if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) {
      const p: Prepared = { refused: { by: 'V8 validation', message: compileError(bytes) } };
      try {
        const out = this.opts.instrument!(m, { profile: way.profile, unwindingImports: new Set(), fuelChunk: way.forced ? 1 : undefined }).bytes;
        if (WebAssembly.validate(out as Uint8Array<ArrayBuffer>)) p.note = `instrument (${way.profile}) makes this invalid module valid (${p.refused!.message})`;
      } catch {
        // refused: fine
      }
      return p;
    }
    const na = notApplicable(m);
    let out: Uint8Array;
    try {
      out = this.opts.instrument!(m, { profile: way.profile, unwindingImports: new Set(), fuelChunk: way.forced ? 1 : undefined }).bytes;
    } catch (e) {
      const err = e as Error;
      const message = `${err?.constructor?.name}: ${err?.message ?? String(e)}`;
      return { na: na ?? `instrument: ${shortReason(message)}`, refused: { by: 'instrument', message } };
    }
    try {
      const module = new WebAssembly.Module(out as Uint8Array<ArrayBuffer>);
      const copies = new RewindCopyCompiler({ module: bytes, profile: way.profile, unwindingImports: [], breakpoints: [], codeOffsetShift: 0, fuelChunk: way.forced ? 1 : undefined });
      return na ? { na, module, copies } : { module, copies };
    } catch (e) {
      return { refused: { by: 'V8 (instrumented bytes)', message: (e as Error).message }, ...(na ? { na } : {}) };
    }
  }

  /**
   * Instantiates a prepared module in a way; a `module` command (`define`)
   * makes it the current one (and names it).
   */
  private instantiate(s: WayState, p: Prepared, c: SpecCommand, define = true): ModOutcome {
    const outcome = ((): { o: ModOutcome; loaded?: Loaded } => {
      if (p.na) return { o: { kind: 'na', reason: p.na } };
      if (!p.module) return { o: { kind: 'refused', by: p.refused!.by, message: p.refused!.message } };
      const imports = s.importsFor(p.module);
      if ('na' in imports) return { o: { kind: 'na', reason: imports.na as string } };
      try {
        const loaded = s.way.profile ? this.instantiateInstrumented(s, p.module, p.copies!, imports as Record<string, Record<string, unknown>>) : instantiateRaw(p.module, imports as Record<string, Record<string, unknown>>);
        return { o: { kind: 'ok' }, loaded };
      } catch (e) {
        if (e instanceof WebAssembly.LinkError) return { o: { kind: 'link', message: e.message } };
        const o = errorOutcome(e);
        return { o: o as ModOutcome };
      }
    })();
    const { o, loaded } = outcome;
    if (o.kind === 'na' && p.originalImports) s.taintImporters(p.originalImports, o.reason);
    if (define) {
      const slot: Slot = loaded ? { ok: loaded, file: c.name ? `${c.name} (${c.filename})` : c.filename!, deps: s.depsOf(p.module!) } : o.kind === 'na' ? { na: o.reason } : { failed: show(o) };
      s.current = slot;
      if (c.name) s.named.set(c.name, slot);
      if (o.kind === 'ok') s.counts.modules++;
      else if (o.kind === 'na') {
        s.counts.modulesNA++;
        s.naReasons.set(o.reason, (s.naReasons.get(o.reason) ?? 0) + 1);
      } else s.counts.modulesFailed++;
    }
    return o;
  }

  private instantiateInstrumented(s: WayState, mod: WebAssembly.Module, copies: RewindCopyCompiler, imports: Record<string, Record<string, unknown>>): Loaded {
    const unwinder = new Unwinder();
    let active = false;
    let checks = 0;
    const every = this.forcedEvery;
    const shouldUnwind = s.way.forced
      ? (): boolean => {
          checks++;
          return checks <= every || (checks & (checks - 1)) === 0;
        }
      : (): boolean => false;
    const all = { ...imports, [INTERNAL_IMPORT_MODULE]: unwinder.imports(forcedYield(unwinder, shouldUnwind, () => active)) };
    const inst = new WebAssembly.Instance(mod, all as WebAssembly.Imports);
    unwinder.bind(inst.exports, new InstanceRewindCopies(copies, all as WebAssembly.Imports, inst.exports));
    const counts = s.counts;
    return {
      exports: inst.exports,
      call(fn, args) {
        const hooks = { unwinds: 0 };
        let ok = false;
        active = true;
        checks = 0;
        try {
          const r = callWithUnwinds(unwinder, fn as (...a: unknown[]) => unknown, args, hooks);
          ok = true;
          return r;
        } finally {
          active = false;
          counts.unwinds += hooks.unwinds;
          if (hooks.unwinds) counts.callsUnwound++;
          if (!ok) unwinder.abort();
        }
      },
    };
  }

  /** Performs an invoke or get action in a way. */
  private act(s: WayState, a: SpecAction, expected: SpecValue[] | undefined): Outcome {
    const slot = a.module ? s.named.get(a.module) : s.current;
    if (!slot) return { kind: 'error', message: 'no module' };
    if ('na' in slot) return { kind: 'na', reason: slot.na };
    if ('failed' in slot) return { kind: 'error', message: `module failed: ${slot.failed}` };
    const tainted = taint(slot);
    if (tainted) return { kind: 'na', reason: tainted };
    const ex = slot.ok.exports[a.field];
    const resultTypes = expected?.map((e) => e.type);
    if (a.type === 'get') {
      if (!(ex instanceof WebAssembly.Global)) return { kind: 'error', message: `no global export "${a.field}"` };
      return { kind: 'values', values: [resultString(resultTypes?.[0], ex.value, false)] };
    }
    if (typeof ex !== 'function') return { kind: 'error', message: `no function export "${a.field}"` };
    const args = a.args ?? [];
    const wrapper = floatWrapper(ex, args.map((v) => v.type), resultTypes);
    const wrapped = wrapper !== null;
    try {
      const r = slot.ok.call(wrapper ?? ex, args.map((v) => argValue(v, wrapped)));
      const types = resultTypes ?? [];
      if (types.length === 0) return { kind: 'values', values: r === undefined ? [] : [resultString(undefined, r, false)] };
      if (types.length === 1) return { kind: 'values', values: [resultString(types[0], r, wrapped)] };
      const arr = r as unknown[];
      return { kind: 'values', values: types.map((t, i) => resultString(t, arr[i], false)) };
    } catch (e) {
      return errorOutcome(e);
    }
  }
}

function compileError(bytes: Uint8Array): string {
  try {
    new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    return 'valid';
  } catch (e) {
    return (e as Error).message;
  }
}

function instantiateRaw(mod: WebAssembly.Module, imports: Record<string, Record<string, unknown>>): Loaded {
  const inst = new WebAssembly.Instance(mod, imports as WebAssembly.Imports);
  return { exports: inst.exports, call: (fn, args) => fn(...args) };
}

function moduleOf(s: WayState, c: SpecCommand): string | undefined {
  if (c.filename) return c.filename;
  const slot = c.action?.module ? s.named.get(c.action.module) : s.current;
  return slot && 'ok' in slot ? slot.file : c.action?.module;
}

/** A command as one line (`invoke "f" (i32:1, f32:0x7fc00000)`). */
export function describe(c: SpecCommand): string {
  const a = c.action;
  if (!a) return `${c.type} ${c.filename ?? ''}`.trim();
  const arg = (v: SpecValue): string => {
    if ((v.type === 'f32' || v.type === 'f64') && v.value !== undefined) {
      return `${v.type}:0x${BigInt(v.value).toString(16)}`;
    }
    return `${v.type}:${v.value}`;
  };
  const target = a.module ? `${a.module} ` : '';
  return `${c.type} ${a.type} ${target}"${a.field}"(${(a.args ?? []).map(arg).join(', ')})`;
}

/** Sums counts over files. */
export function addCounts(into: WayCounts, c: WayCounts): void {
  for (const k of Object.keys(c) as (keyof WayCounts)[]) into[k] += c[k];
}

export { newCounts };
