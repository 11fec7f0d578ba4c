/**
 * A random generator of valid WebAssembly modules for differential fuzzing
 * of the instrumentation transform (test/prepare/differential-fuzz.test.ts).
 *
 * Modules are generated as a small typed AST (valid by construction: the
 * generator knows the type of every expression and the labels in scope),
 * then encoded with test/wasm/wasm-builder.ts; a failing module can be
 * shrunk node by node (shrinkModule). Features: MVP + sign extension +
 * saturating float-to-int + bulk memory (memory.fill/copy); single results;
 * block types void or one value. Expressions nest freely, so values stay
 * on the operand stack across calls, blocks, loops and branches (e.g.
 * `i32.const 5; block (result i32) ... call $f ... end; i32.add`).
 *
 * Every generated program terminates: each loop has its own counter local
 * (decremented at the loop header, before any `br` back to it can be
 * taken), every defined function has a depth parameter (local 0) that each
 * call decrements, and a global call budget (global 0) bounds the total
 * number of calls. None of these (local 0, the counters, global 0) is ever
 * written by generated code, and shrinking cannot remove them (the encoder
 * emits them), so shrunk modules terminate too.
 *
 * Module shape: imports `env.block (i32) -> i32` (function 0, meant to be an
 * unwinding import), `env.mix (i64, i32) -> i64` (function 1) and sometimes
 * `env.nop<i> () -> ()`; sometimes imported mutable globals, memory and
 * table (hostEnv makes them); one memory (1 page, max 2) exported as
 * "memory"; one funcref table (the defined functions and, usually,
 * env.block) for call_indirect; mutable globals of all four types (global
 * 0: the budget, 1: a checksum of every function's locals at its end, 2: a
 * count of the places that need a preemption check); export "run" () -> i64
 * (sets the budget, calls some functions and folds their results into an
 * i64), getters "g<i>" () -> i64 with the bits of global i, and the globals
 * themselves as "G<i>" (so that a host can move an instance's state);
 * sometimes a start function.
 *
 * With `canonNaN` (the default), every place where a NaN's bits could
 * become observable (reinterpret, float stores, results, the sign operand
 * of copysign) maps NaNs to the canonical NaN: the sign and payload of a
 * NaN result are nondeterministic in wasm, and V8 does give different ones
 * in Liftoff and in TurboFan code.
 */
import { ModuleBuilder, I32, I64, F32, F64 } from '../wasm/wasm-builder.js';
import { mulberry32 } from './prng.js';

export type VT = 'i32' | 'i64' | 'f32' | 'f64';
export type BT = VT | null;
export const VTS: readonly VT[] = ['i32', 'i64', 'f32', 'f64'];
const CODE: Record<VT, number> = { i32: I32, i64: I64, f32: F32, f64: F64 };

/** Imported functions (absolute indices); then come ModuleDef.extraImports functions `env.nop<i>` () -> (). */
export const IMPORT_BLOCK = 0;
export const IMPORT_MIX = 1;

/** Number of imported functions (defined functions start there). */
export function numImports(m: ModuleDef): number {
  return 2 + m.extraImports;
}

// --- AST ---------------------------------------------------------------------

export type Expr =
  | { k: 'const'; t: VT; v: bigint /* bits, unsigned */ }
  | { k: 'local.get'; t: VT; i: number }
  | { k: 'local.tee'; t: VT; i: number; e: Expr }
  | { k: 'global.get'; t: VT; i: number }
  | { k: 'op'; t: VT; op: string; args: Expr[]; safe: boolean }
  | { k: 'load'; t: VT; op: string; offset: number; align: number; addr: Expr; safe: boolean }
  | { k: 'call'; t: VT; f: number; args: Expr[] }
  | { k: 'call_indirect'; t: VT; params: VT[]; slot: Expr; args: Expr[] }
  | { k: 'block'; t: VT; id: number; body: Stmt[]; res: Expr }
  | { k: 'if'; t: VT; id: number; cond: Expr; then: Stmt[]; thenRes: Expr; else: Stmt[]; elseRes: Expr }
  | { k: 'loop'; t: VT; id: number; exit: number; ctr: number; count: number; exitRes: Expr; body: Stmt[]; res: Expr }
  | { k: 'select'; t: VT; a: Expr; b: Expr; c: Expr }
  | { k: 'br_if'; t: VT; label: number; v: Expr; c: Expr }
  /** The following are stack-polymorphic: `t` is what the context wants. */
  | { k: 'br'; t: VT; label: number; v: Expr | null }
  | { k: 'br_table'; t: VT; labels: number[]; def: number; v: Expr | null; idx: Expr }
  | { k: 'return'; t: VT; v: Expr | null }
  | { k: 'unreachable'; t: VT }
  /** Float bits as an integer (i32 from f32, i64 from f64), NaN canonicalized under canonNaN. */
  | { k: 'canon'; t: VT; e: Expr }
  | { k: 'memory.size'; t: VT }
  | { k: 'memory.grow'; t: VT; e: Expr };

export type Stmt =
  | { k: 'local.set'; i: number; e: Expr }
  | { k: 'global.set'; i: number; e: Expr }
  | { k: 'store'; op: string; offset: number; align: number; addr: Expr; v: Expr; safe: boolean }
  | { k: 'drop'; e: Expr }
  | { k: 'fill'; d: Expr; v: Expr; n: Expr; safe: boolean }
  | { k: 'copy'; d: Expr; s: Expr; n: Expr; safe: boolean }
  | { k: 'block'; id: number; body: Stmt[] }
  | { k: 'if'; id: number; cond: Expr; then: Stmt[]; else: Stmt[] | null }
  | { k: 'loop'; id: number; exit: number; ctr: number; count: number; body: Stmt[] }
  | { k: 'br'; label: number; v: Expr | null }
  | { k: 'br_if'; label: number; v: Expr | null; c: Expr }
  | { k: 'br_table'; labels: number[]; def: number; v: Expr | null; idx: Expr }
  | { k: 'return'; v: Expr | null }
  | { k: 'call'; f: number; args: Expr[] }
  | { k: 'call_indirect'; params: VT[]; result: BT; slot: Expr; args: Expr[] }
  | { k: 'unreachable' }
  | { k: 'nop' }
  /** Only in unreachable code: instructions that pop from the polymorphic stack (e.g. `i32.add; drop`). */
  | { k: 'poly'; code: number[] };

export interface FuncDef {
  /** params[0] is the i32 depth. */
  params: VT[];
  result: BT;
  /** Declared locals (after the params): user locals, then reserved ones (counters, temporaries). */
  locals: VT[];
  /** Locals with index < userEnd (except 0) may be written by generated code. */
  userEnd: number;
  tmpF32: number;
  tmpF64: number;
  body: Stmt[];
  res: Expr | null;
  /** At the end of the body, fold the params and user locals into the checksum global (1). */
  fold: boolean;
}

export interface RunCall {
  /** Absolute index of a defined function. */
  f: number;
  args: Expr[];
}

export interface ModuleDef {
  funcs: FuncDef[];
  /**
   * Global 0 is the i32 call budget, global 1 the i64 checksum of locals
   * (see FuncDef.fold), global 2 the i64 count of places where the
   * transform must put a preemption check (see countChecks); generated code
   * only reads them.
   */
  globals: { t: VT; init: bigint }[];
  /** Absolute function indices. */
  table: number[];
  /** Extra null slots after the table's elements. */
  tableExtra: number;
  data: { offset: number; bytes: number[] }[];
  run: RunCall[];
  /** A start function: calls like run's, results folded into the checksum global. */
  start: RunCall[] | null;
  budget: number;
  depth: number;
  canonNaN: boolean;
  /** Non-zero: seed for padding LEB128 immediates in code to non-minimal lengths (valid, and what linkers emit). */
  padLeb: number;
  /** Declare every local in its own group instead of runs of one type. */
  splitLocals: boolean;
  /** call_indirect names a duplicate of the callee's type (same signature, another index). */
  dupTypes: boolean;
  /** Imported functions besides env.block and env.mix: `env.nop<i>` () -> (). */
  extraImports: number;
  /** The first globals (at most 3: budget, checksum, check count) are imported (`env.g<i>`, mutable). */
  importedGlobals: number;
  /** Memory `env.memory` and table `env.table` are imported. */
  importMemory: boolean;
  importTable: boolean;
  /**
   * Count in global 2 every loop iteration, memory.fill/copy and entry of a
   * function that contains a call (instrument.ts puts a check at each).
   */
  countChecks: boolean;
}

// --- Instructions ------------------------------------------------------------

interface OpInfo {
  code: number[];
  args: VT[];
  res: VT;
  /** div: integer division (traps on 0 / overflow; `safe` forces a divisor in 1..1024); trunc: traps; reinterp: float bits (see canon). */
  kind?: 'div' | 'trunc' | 'reinterp';
}

export const OPS = new Map<string, OpInfo>();
function def(name: string, code: number | number[], args: VT[], res: VT, kind?: OpInfo['kind']): void {
  OPS.set(name, { code: typeof code === 'number' ? [code] : code, args, res, kind });
}
def('i32.eqz', 0x45, ['i32'], 'i32');
def('i64.eqz', 0x50, ['i64'], 'i32');
['eq', 'ne', 'lt_s', 'lt_u', 'gt_s', 'gt_u', 'le_s', 'le_u', 'ge_s', 'ge_u'].forEach((n, i) => {
  def(`i32.${n}`, 0x46 + i, ['i32', 'i32'], 'i32');
  def(`i64.${n}`, 0x51 + i, ['i64', 'i64'], 'i32');
});
['eq', 'ne', 'lt', 'gt', 'le', 'ge'].forEach((n, i) => {
  def(`f32.${n}`, 0x5b + i, ['f32', 'f32'], 'i32');
  def(`f64.${n}`, 0x61 + i, ['f64', 'f64'], 'i32');
});
['clz', 'ctz', 'popcnt'].forEach((n, i) => {
  def(`i32.${n}`, 0x67 + i, ['i32'], 'i32');
  def(`i64.${n}`, 0x79 + i, ['i64'], 'i64');
});
['add', 'sub', 'mul', 'div_s', 'div_u', 'rem_s', 'rem_u', 'and', 'or', 'xor', 'shl', 'shr_s', 'shr_u', 'rotl', 'rotr'].forEach((n, i) => {
  const kind = i >= 3 && i <= 6 ? 'div' : undefined;
  def(`i32.${n}`, 0x6a + i, ['i32', 'i32'], 'i32', kind);
  def(`i64.${n}`, 0x7c + i, ['i64', 'i64'], 'i64', kind);
});
['abs', 'neg', 'ceil', 'floor', 'trunc', 'nearest', 'sqrt'].forEach((n, i) => {
  def(`f32.${n}`, 0x8b + i, ['f32'], 'f32');
  def(`f64.${n}`, 0x99 + i, ['f64'], 'f64');
});
['add', 'sub', 'mul', 'div', 'min', 'max', 'copysign'].forEach((n, i) => {
  def(`f32.${n}`, 0x92 + i, ['f32', 'f32'], 'f32');
  def(`f64.${n}`, 0xa0 + i, ['f64', 'f64'], 'f64');
});
def('i32.wrap_i64', 0xa7, ['i64'], 'i32');
def('i32.trunc_f32_s', 0xa8, ['f32'], 'i32', 'trunc');
def('i32.trunc_f32_u', 0xa9, ['f32'], 'i32', 'trunc');
def('i32.trunc_f64_s', 0xaa, ['f64'], 'i32', 'trunc');
def('i32.trunc_f64_u', 0xab, ['f64'], 'i32', 'trunc');
def('i64.extend_i32_s', 0xac, ['i32'], 'i64');
def('i64.extend_i32_u', 0xad, ['i32'], 'i64');
def('i64.trunc_f32_s', 0xae, ['f32'], 'i64', 'trunc');
def('i64.trunc_f32_u', 0xaf, ['f32'], 'i64', 'trunc');
def('i64.trunc_f64_s', 0xb0, ['f64'], 'i64', 'trunc');
def('i64.trunc_f64_u', 0xb1, ['f64'], 'i64', 'trunc');
def('f32.convert_i32_s', 0xb2, ['i32'], 'f32');
def('f32.convert_i32_u', 0xb3, ['i32'], 'f32');
def('f32.convert_i64_s', 0xb4, ['i64'], 'f32');
def('f32.convert_i64_u', 0xb5, ['i64'], 'f32');
def('f32.demote_f64', 0xb6, ['f64'], 'f32');
def('f64.convert_i32_s', 0xb7, ['i32'], 'f64');
def('f64.convert_i32_u', 0xb8, ['i32'], 'f64');
def('f64.convert_i64_s', 0xb9, ['i64'], 'f64');
def('f64.convert_i64_u', 0xba, ['i64'], 'f64');
def('f64.promote_f32', 0xbb, ['f32'], 'f64');
def('i32.reinterpret_f32', 0xbc, ['f32'], 'i32', 'reinterp');
def('i64.reinterpret_f64', 0xbd, ['f64'], 'i64', 'reinterp');
def('f32.reinterpret_i32', 0xbe, ['i32'], 'f32');
def('f64.reinterpret_i64', 0xbf, ['i64'], 'f64');
def('i32.extend8_s', 0xc0, ['i32'], 'i32');
def('i32.extend16_s', 0xc1, ['i32'], 'i32');
def('i64.extend8_s', 0xc2, ['i64'], 'i64');
def('i64.extend16_s', 0xc3, ['i64'], 'i64');
def('i64.extend32_s', 0xc4, ['i64'], 'i64');
(
  [
    ['i32', 'f32', 's'],
    ['i32', 'f32', 'u'],
    ['i32', 'f64', 's'],
    ['i32', 'f64', 'u'],
    ['i64', 'f32', 's'],
    ['i64', 'f32', 'u'],
    ['i64', 'f64', 's'],
    ['i64', 'f64', 'u'],
  ] as const
).forEach(([r, a, s], i) => def(`${r}.trunc_sat_${a}_${s}`, [0xfc, i], [a], r));

/** Ops by result type, without `reinterp` (canon covers those). */
const OPS_BY_RESULT = new Map<VT, string[]>(VTS.map((t) => [t, [...OPS].filter(([, o]) => o.res === t && o.kind !== 'reinterp').map(([n]) => n)]));

interface MemOp {
  code: number;
  t: VT;
  /** log2 of the natural alignment. */
  align: number;
}
export const LOADS = new Map<string, MemOp>([
  ['i32.load', { code: 0x28, t: 'i32', align: 2 }],
  ['i64.load', { code: 0x29, t: 'i64', align: 3 }],
  ['f32.load', { code: 0x2a, t: 'f32', align: 2 }],
  ['f64.load', { code: 0x2b, t: 'f64', align: 3 }],
  ['i32.load8_s', { code: 0x2c, t: 'i32', align: 0 }],
  ['i32.load8_u', { code: 0x2d, t: 'i32', align: 0 }],
  ['i32.load16_s', { code: 0x2e, t: 'i32', align: 1 }],
  ['i32.load16_u', { code: 0x2f, t: 'i32', align: 1 }],
  ['i64.load8_s', { code: 0x30, t: 'i64', align: 0 }],
  ['i64.load8_u', { code: 0x31, t: 'i64', align: 0 }],
  ['i64.load16_s', { code: 0x32, t: 'i64', align: 1 }],
  ['i64.load16_u', { code: 0x33, t: 'i64', align: 1 }],
  ['i64.load32_s', { code: 0x34, t: 'i64', align: 2 }],
  ['i64.load32_u', { code: 0x35, t: 'i64', align: 2 }],
]);
export const STORES = new Map<string, MemOp>([
  ['i32.store', { code: 0x36, t: 'i32', align: 2 }],
  ['i64.store', { code: 0x37, t: 'i64', align: 3 }],
  ['f32.store', { code: 0x38, t: 'f32', align: 2 }],
  ['f64.store', { code: 0x39, t: 'f64', align: 3 }],
  ['i32.store8', { code: 0x3a, t: 'i32', align: 0 }],
  ['i32.store16', { code: 0x3b, t: 'i32', align: 1 }],
  ['i64.store8', { code: 0x3c, t: 'i64', align: 0 }],
  ['i64.store16', { code: 0x3d, t: 'i64', align: 1 }],
  ['i64.store32', { code: 0x3e, t: 'i64', align: 2 }],
]);

/** Safe addresses are masked to [0, SAFE_ADDR_MASK]; offsets are at most MAX_OFFSET, so every access stays inside page 1. */
const SAFE_ADDR_MASK = 0x7ff8;
const MAX_OFFSET = 0x100;

// --- Random numbers ----------------------------------------------------------

export class Rng {
  private readonly f: () => number;
  constructor(seed: number) {
    this.f = mulberry32(seed);
  }
  next(): number {
    return this.f();
  }
  int(n: number): number {
    return Math.floor(this.f() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.f() < p;
  }
  pick<T>(a: readonly T[]): T {
    if (a.length === 0) throw new Error('pick from empty list');
    return a[this.int(a.length)]!;
  }
  u32(): number {
    return (this.f() * 4294967296) >>> 0;
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
  /** Picks by weight: entries whose weight is 0 are skipped. */
  weighted<T>(entries: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of entries) total += w;
    let x = this.f() * total;
    for (const [w, v] of entries) {
      if (w <= 0) continue;
      if ((x -= w) < 0) return v;
    }
    for (let i = entries.length - 1; i >= 0; i--) if (entries[i]![0] > 0) return entries[i]![1];
    throw new Error('nothing to pick');
  }
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
const f64buf = new Float64Array(1);
const u64buf = new BigUint64Array(f64buf.buffer);
export function f32bits(x: number): bigint {
  f32buf[0] = x;
  return BigInt(u32buf[0]!);
}
export function f64bits(x: number): bigint {
  f64buf[0] = x;
  return u64buf[0]!;
}

const I32_SPECIAL = [0, 1, -1, 2, 3, 7, 8, 16, 31, 32, 63, 64, 255, 256, 0x7fff, 0xffff, 0x10000, 0x7fffffff, -0x80000000, -2, 0x12345678];
const I64_SPECIAL = [0n, 1n, -1n, 2n, 63n, 64n, 0xffn, 0xffffffffn, 0x100000000n, 0x7fffffffffffffffn, -0x8000000000000000n, 0x123456789abcdefn];
const F32_SPECIAL = [
  0n,
  0x80000000n,
  f32bits(1),
  f32bits(-1),
  f32bits(0.5),
  f32bits(1.5),
  f32bits(-2.5),
  f32bits(3.0e9),
  f32bits(-3.0e9),
  f32bits(1e30),
  0x7fc00000n,
  0xffc00000n,
  0x7fa00001n,
  0x7f800000n,
  0xff800000n,
  1n,
  0x7f7fffffn,
  f32bits(4294967296),
  f32bits(2147483648),
];
const F64_SPECIAL = [
  0n,
  0x8000000000000000n,
  f64bits(1),
  f64bits(-1),
  f64bits(0.5),
  f64bits(1.5),
  f64bits(-2.5),
  f64bits(3.0e9),
  f64bits(-3.0e9),
  f64bits(1e300),
  0x7ff8000000000000n,
  0xfff8000000000000n,
  0x7ff4000000000001n,
  0x7ff0000000000000n,
  0xfff0000000000000n,
  1n,
  f64bits(9.2233720368547758e18),
  f64bits(2147483648),
];

function randomConst(r: Rng, t: VT): bigint {
  switch (t) {
    case 'i32': {
      const v = r.chance(0.4) ? r.pick(I32_SPECIAL) : r.chance(0.6) ? r.range(-100, 100) : r.u32();
      return BigInt.asUintN(32, BigInt(v));
    }
    case 'i64': {
      const v = r.chance(0.4) ? r.pick(I64_SPECIAL) : r.chance(0.6) ? BigInt(r.range(-1000, 1000)) : r.u64();
      return BigInt.asUintN(64, v);
    }
    case 'f32':
      return r.chance(0.4) ? r.pick(F32_SPECIAL) : r.chance(0.7) ? f32bits(r.range(-1000, 1000) / 4) : BigInt(r.u32());
    case 'f64':
      return r.chance(0.4) ? r.pick(F64_SPECIAL) : r.chance(0.7) ? f64bits(r.range(-100000, 100000) / 8) : r.u64();
  }
}

export function zero(t: VT): Expr {
  return { k: 'const', t, v: 0n };
}

// --- Generator ---------------------------------------------------------------

export interface GenOptions {
  /** Defined functions besides `run` and the getters: 1..maxFuncs. */
  maxFuncs?: number;
  /** Probability that a module does not canonicalize NaNs where float bits become observable (see the file comment: such modules can differ between two compilations). */
  exactNaN?: number;
  /** Probability of a "wide" module: over 120 functions, over 128 globals, functions with over 128 locals (LEB128 lengths of indices change when the transform appends). */
  wide?: number;
  /** Probability of each of: a start function, padded LEB128s, split local declarations, duplicate types. */
  extras?: number;
  /** Probability that a function is big (hundreds of nodes: many call sites, long dispatch tables). */
  big?: number;
  /** Probability that a module contains risky constructs (unchecked division, trapping truncation, unmasked addresses, bad indirect calls, reachable `unreachable`). */
  riskyModules?: number;
  /** Put env.block into the table (so call_indirect can reach the unwinding import). */
  importInTable?: boolean;
  /** Rough number of AST nodes per function (upper bound of a random size). */
  maxNodes?: number;
}

interface Label {
  id: number;
  /** Type of the values a branch to it carries. */
  t: BT;
}

class FuncGen {
  private labels: Label[] = [];
  private nextId = 1;
  private nodes: number;
  constructor(
    private readonly g: ModuleGen,
    private readonly f: FuncDef,
    nodes: number,
  ) {
    this.nodes = nodes;
    this.labels.push({ id: 0, t: f.result });
  }

  private get r(): Rng {
    return this.g.r;
  }

  generate(): void {
    const f = this.f;
    f.body = this.stmts(4, false);
    f.res = f.result ? this.expr(f.result, 4) : null;
  }

  private newCounter(): number {
    this.f.locals.push('i32');
    return this.f.params.length + this.f.locals.length - 1;
  }

  private readableLocals(t: VT): number[] {
    const out: number[] = [];
    const all = [...this.f.params, ...this.f.locals];
    for (let i = 0; i < this.f.userEnd; i++) if (all[i] === t) out.push(i);
    return out;
  }

  private writableLocals(t: VT): number[] {
    return this.readableLocals(t).filter((i) => i !== 0);
  }

  private globals(t: VT, writable: boolean): number[] {
    const out: number[] = [];
    this.g.m.globals.forEach((gl, i) => {
      if (gl.t === t && !(writable && i <= 2)) out.push(i);
    });
    return out;
  }

  private labelsOf(t: BT): Label[] {
    return this.labels.filter((l) => l.t === t);
  }

  private leaf(t: VT): Expr {
    const r = this.r;
    const locals = this.readableLocals(t);
    const globals = this.globals(t, false);
    const which = r.weighted([
      [3, 'const'],
      [locals.length ? 4 : 0, 'local'],
      [globals.length ? 2 : 0, 'global'],
    ] as const);
    if (which === 'local') return { k: 'local.get', t, i: r.pick(locals) };
    if (which === 'global') return { k: 'global.get', t, i: r.pick(globals) };
    return { k: 'const', t, v: randomConst(r, t) };
  }

  private risky(): boolean {
    return this.g.risky && this.r.chance(0.15);
  }

  /** A masked (in-bounds) or, rarely, raw address. */
  private addr(d: number): { addr: Expr; safe: boolean } {
    const safe = !this.risky();
    return { addr: this.expr('i32', d - 1), safe };
  }

  expr(t: VT, d: number): Expr {
    const r = this.r;
    this.nodes--;
    if (d <= 0 || this.nodes <= 0) return this.leaf(t);
    const callees = this.g.callees(t);
    const tLabels = this.labelsOf(t);
    const which = r.weighted([
      [20, 'leaf'],
      [30, 'op'],
      [5, 'load'],
      [callees.length ? 10 : 0, 'call'],
      [this.g.indirect(t).length ? 3 : 0, 'call_indirect'],
      [5, 'block'],
      [5, 'if'],
      [3, 'loop'],
      [3, 'select'],
      [this.writableLocals(t).length ? 4 : 0, 'tee'],
      [tLabels.length ? 3 : 0, 'br_if'],
      [1, 'poly'],
      [t === 'i32' || t === 'i64' ? 3 : 0, 'canon'],
      [t === 'i32' ? 0.5 : 0, 'memory'],
      [1, 'deadif'],
    ] as const);
    switch (which) {
      case 'leaf':
        return this.leaf(t);
      case 'op': {
        let names = OPS_BY_RESULT.get(t)!;
        if (!this.g.risky) names = names.filter((n) => OPS.get(n)!.kind !== 'trunc');
        const op = r.pick(names);
        const info = OPS.get(op)!;
        return { k: 'op', t, op, args: info.args.map((a) => this.expr(a, d - 1)), safe: info.kind === 'div' ? !this.risky() : true };
      }
      case 'load': {
        const ops = [...LOADS].filter(([, o]) => o.t === t);
        const [op, info] = r.pick(ops);
        const { addr, safe } = this.addr(d);
        return { k: 'load', t, op, offset: r.chance(0.5) ? 0 : r.int(MAX_OFFSET + 1), align: r.int(info.align + 1), addr, safe };
      }
      case 'call': {
        const f = r.pick(callees);
        return { k: 'call', t, f, args: this.g.paramsOf(f).map((p) => this.expr(p, d - 1)) };
      }
      case 'call_indirect':
        return this.callIndirect(t, d) as Expr;
      case 'block': {
        const id = this.nextId++;
        this.labels.push({ id, t });
        const body = this.stmts(d - 1, false);
        const res = this.expr(t, d - 1);
        this.labels.pop();
        return { k: 'block', t, id, body, res };
      }
      case 'if': {
        const cond = this.expr('i32', d - 1);
        const id = this.nextId++;
        this.labels.push({ id, t });
        const then = this.stmts(d - 1, false);
        const thenRes = this.expr(t, d - 1);
        const els = this.stmts(d - 1, false);
        const elseRes = this.expr(t, d - 1);
        this.labels.pop();
        return { k: 'if', t, id, cond, then, thenRes, else: els, elseRes };
      }
      case 'loop': {
        const ctr = this.newCounter();
        const exit = this.nextId++;
        const id = this.nextId++;
        const exitRes = this.leaf(t);
        this.labels.push({ id: exit, t }, { id, t: null });
        const body = this.stmts(d - 1, false);
        const res = this.expr(t, d - 1);
        this.labels.pop();
        this.labels.pop();
        return { k: 'loop', t, id, exit, ctr, count: r.int(7), exitRes, body, res };
      }
      case 'select':
        return { k: 'select', t, a: this.expr(t, d - 1), b: this.expr(t, d - 1), c: this.expr('i32', d - 1) };
      case 'tee':
        return { k: 'local.tee', t, i: r.pick(this.writableLocals(t)), e: this.expr(t, d - 1) };
      case 'br_if':
        return { k: 'br_if', t, label: r.pick(tLabels).id, v: this.expr(t, d - 1), c: this.cond(d - 1) };
      case 'poly': {
        const p = this.polyBranch(d);
        if (!p) return this.leaf(t);
        if (p.k === 'br') return { k: 'br', t, label: p.label, v: p.v };
        if (p.k === 'br_table') return { k: 'br_table', t, labels: p.labels, def: p.def, v: p.v, idx: p.idx };
        if (p.k === 'return') return { k: 'return', t, v: p.v };
        return this.leaf(t);
      }
      case 'canon': {
        const from: VT = t === 'i32' ? 'f32' : 'f64';
        return { k: 'canon', t, e: this.expr(from, d - 1) };
      }
      case 'memory':
        if (r.chance(0.7)) return { k: 'memory.size', t };
        return { k: 'memory.grow', t, e: { k: 'op', t: 'i32', op: 'i32.and', args: [this.expr('i32', d - 1), { k: 'const', t: 'i32', v: 1n }], safe: true } };
      case 'deadif': {
        // `unreachable` in a branch that is never taken.
        const id = this.nextId++;
        this.labels.push({ id, t });
        const elseBody = this.stmts(d - 1, false);
        const elseRes = this.expr(t, d - 1);
        this.labels.pop();
        return { k: 'if', t, id, cond: zero('i32'), then: [], thenRes: { k: 'unreachable', t }, else: elseBody, elseRes };
      }
    }
  }

  /** A condition that is true reasonably often but not always. */
  private cond(d: number): Expr {
    const r = this.r;
    if (r.chance(0.5)) return this.expr('i32', d);
    // (x & 1) or x <s small: data-dependent but balanced.
    const x = this.expr('i32', d - 1);
    if (r.chance(0.5)) return { k: 'op', t: 'i32', op: 'i32.and', args: [x, { k: 'const', t: 'i32', v: BigInt(r.range(1, 3)) }], safe: true };
    return { k: 'op', t: 'i32', op: 'i32.lt_s', args: [x, { k: 'const', t: 'i32', v: BigInt(r.range(0, 50)) }], safe: true };
  }

  /** want undefined: a statement calling any table slot (its result dropped). */
  private callIndirect(want: VT | undefined, d: number): Expr | Stmt {
    const r = this.r;
    const slot = want ? r.pick(this.g.indirect(want)) : r.int(this.g.m.table.length);
    const callee = this.g.m.table[slot]!;
    const t = want ?? this.g.resultOf(callee);
    const params = this.g.fullParamsOf(callee);
    const args = this.g.paramsOf(callee).map((p) => this.expr(p, d - 1));
    let slotExpr: Expr = { k: 'const', t: 'i32', v: BigInt(slot) };
    if (this.risky()) {
      slotExpr = r.chance(0.5) ? { k: 'const', t: 'i32', v: BigInt(r.int(this.g.m.table.length + this.g.m.tableExtra + 2)) } : this.expr('i32', d - 1);
    }
    if (want === undefined || t === null) return { k: 'call_indirect', params, result: t, slot: slotExpr, args };
    return { k: 'call_indirect', t, params, slot: slotExpr, args };
  }

  /** An unconditional branch (br, br_table, return) for the current labels, or undefined. */
  private polyBranch(d: number): Stmt | undefined {
    const r = this.r;
    const which = r.weighted([
      [3, 'br'],
      [2, 'br_table'],
      [1, 'return'],
    ] as const);
    if (which === 'return') {
      const rt = this.f.result;
      return { k: 'return', v: rt ? this.expr(rt, d - 1) : null };
    }
    const label = r.pick(this.labels);
    const v = label.t ? this.expr(label.t, d - 1) : null;
    if (which === 'br') return { k: 'br', label: label.id, v };
    const same = this.labelsOf(label.t);
    const labels = Array.from({ length: r.int(4) }, () => r.pick(same).id);
    return { k: 'br_table', labels, def: label.id, v, idx: r.chance(0.3) ? this.expr('i32', d - 1) : this.cond(d - 1) };
  }

  private stmts(d: number, dead: boolean): Stmt[] {
    const r = this.r;
    const out: Stmt[] = [];
    const n = r.int(d <= 1 ? 3 : 6);
    for (let i = 0; i < n && this.nodes > 0; i++) {
      const s = this.stmt(d, dead);
      out.push(s);
      if (s.k === 'br' || s.k === 'br_table' || s.k === 'return' || s.k === 'unreachable') {
        // Everything after is unreachable: sometimes put some code there.
        if (r.chance(0.4)) out.push(...this.stmts(1, true));
        break;
      }
    }
    return out;
  }

  private stmt(d: number, dead: boolean): Stmt {
    const r = this.r;
    this.nodes--;
    const t = r.pick(VTS);
    const wl = this.writableLocals(t);
    const wg = this.globals(t, true);
    const nested = d > 0 && this.nodes > 0;
    const voidLabels = this.labelsOf(null);
    const which = r.weighted([
      [wl.length ? 15 : 0, 'local.set'],
      [wg.length ? 7 : 0, 'global.set'],
      [10, 'store'],
      [4, 'drop'],
      [3, 'bulk'],
      [10, 'call'],
      [this.g.m.table.length ? 3 : 0, 'call_indirect'],
      [nested ? 5 : 0, 'block'],
      [nested ? 8 : 0, 'if'],
      [nested ? 6 : 0, 'loop'],
      [nested ? 3 : 0, 'switch'],
      [5, 'br_if'],
      [2, 'poly'],
      [1, 'deadunreachable'],
      [this.g.risky ? 0.5 : 0, 'trap'],
      [dead ? 3 : 0, 'polypop'],
      [dead ? 1 : 0, 'unreachable'],
      [0.5, 'nop'],
    ] as const);
    const e = (ty: VT): Expr => this.expr(ty, Math.max(d, 1) + 1);
    switch (which) {
      case 'local.set':
        return { k: 'local.set', i: r.pick(wl), e: e(t) };
      case 'global.set':
        return { k: 'global.set', i: r.pick(wg), e: e(t) };
      case 'store': {
        const [op, info] = r.pick([...STORES]);
        const { addr, safe } = this.addr(3);
        return { k: 'store', op, offset: r.chance(0.5) ? 0 : r.int(MAX_OFFSET + 1), align: r.int(info.align + 1), addr, v: e(info.t), safe };
      }
      case 'drop':
        return { k: 'drop', e: e(t) };
      case 'bulk': {
        const safe = !this.risky();
        if (r.chance(0.5)) return { k: 'fill', d: this.expr('i32', 2), v: this.expr('i32', 2), n: this.expr('i32', 2), safe };
        return { k: 'copy', d: this.expr('i32', 2), s: this.expr('i32', 2), n: this.expr('i32', 2), safe };
      }
      case 'call': {
        const f = r.pick(this.g.allCallees());
        return { k: 'call', f, args: this.g.paramsOf(f).map((p) => this.expr(p, 2)) };
      }
      case 'call_indirect':
        return this.callIndirect(undefined, 2) as Stmt;
      case 'block': {
        const id = this.nextId++;
        this.labels.push({ id, t: null });
        const body = this.stmts(d - 1, false);
        this.labels.pop();
        return { k: 'block', id, body };
      }
      case 'if': {
        const cond = this.cond(2);
        const id = this.nextId++;
        this.labels.push({ id, t: null });
        const then = this.stmts(d - 1, false);
        const els = r.chance(0.5) ? this.stmts(d - 1, false) : null;
        this.labels.pop();
        return { k: 'if', id, cond, then, else: els };
      }
      case 'loop': {
        const ctr = this.newCounter();
        const exit = this.nextId++;
        const id = this.nextId++;
        this.labels.push({ id: exit, t: null }, { id, t: null });
        const body = this.stmts(d - 1, false);
        this.labels.pop();
        this.labels.pop();
        return { k: 'loop', id, exit, ctr, count: r.int(7), body };
      }
      case 'switch': {
        // How clang lays out a `switch`: a run of blocks opened together, a
        // br_table in the innermost, each case's code after a block's end
        // (the transform shares one rewind dispatch across such a run).
        const n = 2 + r.int(4);
        const ids = Array.from({ length: n }, () => this.nextId++);
        for (const id of ids) this.labels.push({ id, t: null });
        const labels = Array.from({ length: 1 + r.int(6) }, () => r.pick(ids));
        let body: Stmt[] = [{ k: 'br_table', labels, def: r.pick(ids), v: null, idx: this.expr('i32', 2) }];
        for (let k = n - 1; k >= 1; k--) {
          this.labels.pop();
          body = [{ k: 'block', id: ids[k]!, body }, ...this.stmts(d - 1, false)];
        }
        this.labels.pop();
        return { k: 'block', id: ids[0]!, body };
      }
      case 'br_if': {
        const label = r.pick(this.labels);
        if (label.t === null && voidLabels.length && r.chance(0.5)) return { k: 'br_if', label: r.pick(voidLabels).id, v: null, c: this.cond(2) };
        return { k: 'br_if', label: label.id, v: label.t ? e(label.t) : null, c: this.cond(2) };
      }
      case 'poly':
        return this.polyBranch(3)!;
      case 'deadunreachable': {
        const id = this.nextId++;
        this.labels.push({ id, t: null });
        const els = this.stmts(Math.max(d - 1, 0), false);
        this.labels.pop();
        return { k: 'if', id, cond: zero('i32'), then: [{ k: 'unreachable' }], else: els };
      }
      case 'trap': {
        // Reachable once the budget runs low.
        const id = this.nextId++;
        const cond: Expr = { k: 'op', t: 'i32', op: 'i32.lt_u', args: [{ k: 'global.get', t: 'i32', i: 0 }, { k: 'const', t: 'i32', v: BigInt(r.range(1, 10)) }], safe: true };
        return { k: 'if', id, cond, then: [{ k: 'unreachable' }], else: null };
      }
      case 'polypop':
        return { k: 'poly', code: r.pick([[0x1a], [0x6a, 0x1a], [0x7c, 0x1a], [0x50, 0x1a], [0x92, 0x1a], [0x1a, 0x1a], [0x45, 0x04, 0x40, 0x0b]]) };
      case 'unreachable':
        return { k: 'unreachable' };
      case 'nop':
        return { k: 'nop' };
    }
  }
}

class ModuleGen {
  readonly r: Rng;
  readonly m: ModuleDef;
  readonly risky: boolean;
  readonly wide: boolean;
  constructor(seed: number, readonly opts: Required<GenOptions>) {
    this.r = new Rng(seed);
    const r = this.r;
    this.risky = r.chance(opts.riskyModules);
    this.wide = r.chance(opts.wide);
    this.m = {
      funcs: [],
      globals: [
        { t: 'i32', init: 0n },
        { t: 'i64', init: 0n },
        { t: 'i64', init: 0n },
      ],
      table: [],
      tableExtra: 0,
      data: [],
      run: [],
      start: null,
      budget: r.range(5, 300),
      depth: r.chance(0.1) ? r.range(10, 60) : r.range(1, 10),
      canonNaN: !r.chance(opts.exactNaN),
      padLeb: r.chance(opts.extras) ? r.u32() | 1 : 0,
      splitLocals: r.chance(opts.extras),
      dupTypes: r.chance(opts.extras),
      countChecks: true,
      extraImports: 0,
      importedGlobals: r.chance(opts.extras) ? r.range(1, 3) : 0,
      importMemory: r.chance(opts.extras),
      importTable: r.chance(opts.extras),
    };
    this.m.extraImports = this.wide && r.chance(0.5) ? r.range(118, 130) : r.chance(opts.extras) ? r.range(1, 3) : 0;
  }

  paramsOf(f: number): VT[] {
    if (f === IMPORT_BLOCK) return ['i32'];
    if (f === IMPORT_MIX) return ['i64', 'i32'];
    if (f < numImports(this.m)) return [];
    return this.m.funcs[f - numImports(this.m)]!.params.slice(1);
  }

  /** Params including the depth (what the function type says), as call_indirect's type. */
  fullParamsOf(f: number): VT[] {
    if (f < numImports(this.m)) return this.paramsOf(f);
    return this.m.funcs[f - numImports(this.m)]!.params;
  }

  resultOf(f: number): BT {
    return calleeResult(this.m, f);
  }

  callees(t: VT): number[] {
    const out: number[] = [];
    for (let f = 0; f < numImports(this.m) + this.m.funcs.length; f++) {
      if (this.resultOf(f) === t) {
        out.push(f);
        if (f === IMPORT_BLOCK) out.push(f, f); // the interesting one
      }
    }
    return out;
  }

  allCallees(): number[] {
    const nops = this.m.extraImports ? [numImports(this.m) - 1] : [];
    return [IMPORT_BLOCK, IMPORT_BLOCK, IMPORT_MIX, ...nops, ...this.m.funcs.map((_, i) => i + numImports(this.m))];
  }

  /** Table slots whose function returns t. */
  indirect(t: BT): number[] {
    const out: number[] = [];
    this.m.table.forEach((f, i) => {
      if (this.resultOf(f) === t) out.push(i);
    });
    return out;
  }

  generate(): ModuleDef {
    const r = this.r;
    const m = this.m;
    for (const t of VTS) {
      const n = r.range(t === 'i32' ? 0 : 1, 2);
      for (let i = 0; i < n; i++) m.globals.push({ t, init: randomConst(r, t) });
    }
    if (this.wide) {
      for (let i = r.range(120, 140); i > 0; i--) {
        const t = r.pick(VTS);
        m.globals.push({ t, init: randomConst(r, t) });
      }
    }
    const nf = this.wide ? r.range(118, 135) : r.range(1, this.opts.maxFuncs);
    for (let i = 0; i < nf; i++) {
      const params: VT[] = ['i32'];
      const np = r.int(this.wide ? 7 : 5);
      for (let j = 0; j < np; j++) params.push(r.pick(VTS));
      const locals: VT[] = [];
      const nl = this.wide && r.chance(0.1) ? r.range(120, 200) : r.int(7);
      for (let j = 0; j < nl; j++) locals.push(r.pick(VTS));
      const userEnd = params.length + locals.length;
      locals.push('f32', 'f64');
      m.funcs.push({
        params,
        result: r.chance(0.8) ? r.pick(VTS) : null,
        locals,
        userEnd,
        tmpF32: userEnd,
        tmpF64: userEnd + 1,
        body: [],
        res: null,
        fold: true,
      });
    }
    const table = m.funcs.map((_, i) => i + numImports(m));
    if (this.opts.importInTable && r.chance(0.8)) table.push(IMPORT_BLOCK);
    for (let i = table.length - 1; i > 0; i--) {
      const j = r.int(i + 1);
      [table[i], table[j]] = [table[j]!, table[i]!];
    }
    m.table = table;
    m.tableExtra = r.int(2);
    const nd = r.int(3);
    for (let i = 0; i < nd; i++) {
      const len = r.range(1, 64);
      m.data.push({ offset: r.int(SAFE_ADDR_MASK), bytes: Array.from({ length: len }, () => r.int(256)) });
    }
    for (const f of m.funcs) {
      const nodes = this.wide ? r.range(3, 15) : r.chance(this.opts.big) ? r.range(300, 1000) : r.range(10, this.opts.maxNodes);
      new FuncGen(this, f, nodes).generate();
    }
    const calls = (): RunCall[] =>
      Array.from({ length: r.range(1, 3) }, () => {
        const f = numImports(m) + (r.chance(0.6) ? 0 : r.int(m.funcs.length));
        return { f, args: this.paramsOf(f).map((t) => ({ k: 'const', t, v: randomConst(r, t) }) as Expr) };
      });
    m.run = calls();
    if (r.chance(this.opts.extras)) m.start = calls();
    return m;
  }
}

export const DEFAULT_GEN_OPTIONS: Required<GenOptions> = {
  maxFuncs: 5,
  // Off by default: V8 itself gives NaN results different signs in Liftoff and
  // in TurboFan (allowed: the sign and payload of a NaN result are
  // nondeterministic), so raw and instrumented runs may legitimately differ.
  exactNaN: 0,
  wide: 0.02,
  extras: 0.2,
  big: 0.04,
  riskyModules: 0.25,
  importInTable: true,
  maxNodes: 120,
};

/** A random module description (deterministic in `seed`). */
export function generateModule(seed: number, opts: GenOptions = {}): ModuleDef {
  return new ModuleGen(seed, { ...DEFAULT_GEN_OPTIONS, ...opts }).generate();
}

// --- Encoder -----------------------------------------------------------------

const CANON_NAN_F32 = 0x7fc00000;
const CANON_NAN_F64 = 0x7ff8000000000000n;

function blockType(t: BT): number {
  return t === null ? 0x40 : CODE[t];
}

function constBytes(t: VT, v: bigint, leb: Leb = new Leb(0)): number[] {
  switch (t) {
    case 'i32':
      return [0x41, ...leb.s(Number(BigInt.asIntN(32, v)))];
    case 'i64':
      return [0x42, ...leb.s64(BigInt.asIntN(64, v))];
    case 'f32': {
      const b = Number(BigInt.asUintN(32, v));
      return [0x43, b & 0xff, (b >>> 8) & 0xff, (b >>> 16) & 0xff, b >>> 24];
    }
    case 'f64': {
      const out = [0x44];
      let x = BigInt.asUintN(64, v);
      for (let i = 0; i < 8; i++, x >>= 8n) out.push(Number(x & 0xffn));
      return out;
    }
  }
}

/** `v` (< 2^(7n)) as an unsigned LEB128 of exactly n bytes. */
function paddedU(v: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n - 1; i++, v = Math.floor(v / 128)) out.push((v & 0x7f) | 0x80);
  out.push(v & 0x7f);
  return out;
}

/** `v` as a signed LEB128 of exactly n bytes (n at least its minimal length). */
function paddedS(v: bigint, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n - 1; i++, v >>= 7n) out.push(Number(v & 0x7fn) | 0x80);
  out.push(Number(v & 0x7fn));
  return out;
}

/** Writes LEB128s, minimal or (with a seed) sometimes padded to a random longer length. */
class Leb {
  private readonly rng: (() => number) | undefined;
  constructor(seed: number) {
    this.rng = seed ? mulberry32(seed) : undefined;
  }
  private extra(len: number, max: number): number {
    if (!this.rng || this.rng() >= 0.3) return len;
    return len + Math.floor(this.rng() * (max - len + 1));
  }
  u(v: number): number[] {
    let len = 1;
    while (len < 5 && v >= 2 ** (7 * len)) len++;
    return paddedU(v, this.extra(len, 5));
  }
  s(v: number): number[] {
    let len = 1;
    while (len < 5 && (v < -(2 ** (7 * len - 1)) || v >= 2 ** (7 * len - 1))) len++;
    if (!this.rng && len === 1) return [v & 0x7f];
    return paddedS(BigInt(v), this.extra(len, 5));
  }
  s64(v: bigint): number[] {
    let len = 1;
    while (len < 10 && (v < -(1n << BigInt(7 * len - 1)) || v >= 1n << BigInt(7 * len - 1))) len++;
    return paddedS(v, this.extra(len, 10));
  }
}

/** A label that no branch can name (the encoder's own `if` frames). */
const ANON = -1;

class FuncEncoder {
  readonly out: number[] = [];
  private labels: number[] = [];
  readonly leb: Leb;
  constructor(
    private readonly m: ModuleDef,
    private readonly b: ModuleBuilder,
    /** hasDepth: local 0 is the depth (defined functions; `run` passes m.depth). */
    private readonly f: { tmpF32: number; tmpF64: number; hasDepth: boolean },
    /** Duplicate types made so far (dupTypes). */
    private readonly dups: Map<string, number>,
    /** Seed of LEB128 padding (0: none). */
    padSeed: number,
  ) {
    this.leb = new Leb(padSeed);
  }

  private emit(...bytes: number[]): void {
    this.out.push(...bytes);
  }

  private depth(id: number): number {
    const i = this.labels.lastIndexOf(id);
    if (i < 0 || id === ANON) throw new Error(`branch to label ${id}, which is not in scope`);
    return this.labels.length - 1 - i;
  }

  private typeIndex(params: VT[], result: BT): number {
    const p = params.map((x) => CODE[x]);
    const r = result ? [CODE[result]] : [];
    const original = this.b.type(p, r);
    if (!this.m.dupTypes) return original;
    // A second type with the same signature (the builder's type() would find the first).
    const key = `${p.join()}:${r.join()}`;
    let i = this.dups.get(key);
    if (i === undefined) {
      const types = (this.b as unknown as { types: Array<{ params: number[]; results: number[] }> }).types;
      types.push({ params: p, results: r });
      i = types.length - 1;
      this.dups.set(key, i);
    }
    return i;
  }

  private depthArg(): void {
    if (this.f.hasDepth) this.emit(0x20, 0, 0x41, 1, 0x6b);
    else this.emit(0x41, ...this.leb.s(this.m.depth));
  }

  callArgs(f: number, args: Expr[]): void {
    if (f < 0) throw new Error('call of a removed function');
    if (f >= numImports(this.m)) this.depthArg();
    for (const a of args) this.expr(a);
  }

  /** Float bits of the value on the stack as an integer, NaN canonicalized under canonNaN. */
  canon(from: 'f32' | 'f64'): void {
    if (from === 'f32') {
      if (!this.m.canonNaN) return this.emit(0xbc);
      const tmp = this.leb.u(this.f.tmpF32);
      this.emit(0x22, ...tmp, 0xbc, ...constBytes('i32', BigInt(CANON_NAN_F32)), 0x20, ...tmp, 0x20, ...tmp, 0x5b, 0x1b);
    } else {
      if (!this.m.canonNaN) return this.emit(0xbd);
      const tmp = this.leb.u(this.f.tmpF64);
      this.emit(0x22, ...tmp, 0xbd, ...constBytes('i64', CANON_NAN_F64), 0x20, ...tmp, 0x20, ...tmp, 0x61, 0x1b);
    }
  }

  /** The float on the stack, a NaN replaced by the canonical NaN (a move: bits kept otherwise). */
  private canonFloat(t: 'f32' | 'f64'): void {
    if (t === 'f32') {
      const tmp = this.leb.u(this.f.tmpF32);
      this.emit(0x22, ...tmp, ...constBytes('f32', BigInt(CANON_NAN_F32)), 0x20, ...tmp, 0x20, ...tmp, 0x5b, 0x1b);
    } else {
      const tmp = this.leb.u(this.f.tmpF64);
      this.emit(0x22, ...tmp, ...constBytes('f64', CANON_NAN_F64), 0x20, ...tmp, 0x20, ...tmp, 0x61, 0x1b);
    }
  }

  private memarg(align: number, offset: number): void {
    this.emit(...this.leb.u(align), ...this.leb.u(offset));
  }

  private safeAddr(addr: Expr, safe: boolean): void {
    this.expr(addr);
    if (safe) this.emit(0x41, ...this.leb.s(SAFE_ADDR_MASK), 0x71);
  }

  private label<T>(id: number, body: () => T): T {
    this.labels.push(id);
    try {
      return body();
    } finally {
      this.labels.pop();
    }
  }

  private loopFrame(t: BT, exit: number, id: number, ctr: number, count: number, exitRes: Expr | null, body: Stmt[], res: Expr | null): void {
    const c = this.leb.u(ctr);
    this.emit(0x41, ...this.leb.s(count), 0x21, ...c);
    this.emit(0x02, blockType(t));
    this.label(exit, () => {
      this.emit(0x03, blockType(t));
      this.countCheck();
      this.label(id, () => {
        // Header: leave when the counter is 0, else decrement it.
        this.emit(0x20, ...c, 0x45, 0x04, 0x40);
        this.label(ANON, () => {
          if (exitRes) this.expr(exitRes);
          this.emit(0x0c, this.depth(exit));
        });
        this.emit(0x0b);
        this.emit(0x20, ...c, 0x41, 1, 0x6b, 0x21, ...c);
        this.stmts(body);
        if (res) this.expr(res);
      });
      this.emit(0x0b);
    });
    this.emit(0x0b);
  }

  expr(e: Expr): void {
    switch (e.k) {
      case 'const':
        return this.emit(...constBytes(e.t, e.v, this.leb));
      case 'local.get':
        return this.emit(0x20, ...this.leb.u(e.i));
      case 'local.tee':
        this.expr(e.e);
        return this.emit(0x22, ...this.leb.u(e.i));
      case 'global.get':
        return this.emit(0x23, ...this.leb.u(e.i));
      case 'op': {
        const info = OPS.get(e.op)!;
        e.args.forEach((a, i) => {
          this.expr(a);
          if (i === 1 && info.kind === 'div' && e.safe) {
            if (info.res === 'i32') this.emit(0x41, ...this.leb.s(0x3ff), 0x71, 0x41, 1, 0x6a);
            else this.emit(0x42, ...this.leb.s64(0x3ffn), 0x83, 0x42, 1, 0x7c);
          }
          // copysign would carry a NaN's sign (nondeterministic) into a number.
          if (i === 1 && (e.op === 'f32.copysign' || e.op === 'f64.copysign') && this.m.canonNaN) this.canonFloat(info.res as 'f32' | 'f64');
        });
        if (info.kind === 'reinterp') return this.canon(info.args[0] as 'f32' | 'f64');
        return this.emit(...info.code);
      }
      case 'load': {
        const info = LOADS.get(e.op)!;
        this.safeAddr(e.addr, e.safe);
        this.emit(info.code);
        return this.memarg(e.align, e.offset);
      }
      case 'call':
        this.callArgs(e.f, e.args);
        return this.emit(0x10, ...this.leb.u(e.f));
      case 'call_indirect':
        if (e.params.length > 0 && e.params.length === e.args.length + 1) this.depthArg();
        for (const a of e.args) this.expr(a);
        this.expr(e.slot);
        return this.emit(0x11, ...this.leb.u(this.typeIndex(e.params, e.t)), 0x00);
      case 'block':
        this.emit(0x02, blockType(e.t));
        this.label(e.id, () => {
          this.stmts(e.body);
          this.expr(e.res);
        });
        return this.emit(0x0b);
      case 'if':
        this.expr(e.cond);
        this.emit(0x04, blockType(e.t));
        this.label(e.id, () => {
          this.stmts(e.then);
          this.expr(e.thenRes);
          this.emit(0x05);
          this.stmts(e.else);
          this.expr(e.elseRes);
        });
        return this.emit(0x0b);
      case 'loop':
        return this.loopFrame(e.t, e.exit, e.id, e.ctr, e.count, e.exitRes, e.body, e.res);
      case 'select':
        this.expr(e.a);
        this.expr(e.b);
        this.expr(e.c);
        return this.emit(0x1b);
      case 'br_if':
        this.expr(e.v);
        this.expr(e.c);
        return this.emit(0x0d, ...this.leb.u(this.depth(e.label)));
      case 'br':
        if (e.v) this.expr(e.v);
        return this.emit(0x0c, ...this.leb.u(this.depth(e.label)));
      case 'br_table':
        if (e.v) this.expr(e.v);
        this.expr(e.idx);
        this.emit(0x0e, ...this.leb.u(e.labels.length));
        for (const l of e.labels) this.emit(...this.leb.u(this.depth(l)));
        return this.emit(...this.leb.u(this.depth(e.def)));
      case 'return':
        if (e.v) this.expr(e.v);
        return this.emit(0x0f);
      case 'unreachable':
        return this.emit(0x00);
      case 'canon':
        this.expr(e.e);
        return this.canon(e.t === 'i32' ? 'f32' : 'f64');
      case 'memory.size':
        return this.emit(0x3f, 0x00);
      case 'memory.grow':
        this.expr(e.e);
        return this.emit(0x40, 0x00);
    }
  }

  stmts(list: Stmt[]): void {
    for (const s of list) this.stmt(s);
  }

  stmt(s: Stmt): void {
    switch (s.k) {
      case 'local.set':
        this.expr(s.e);
        return this.emit(0x21, ...this.leb.u(s.i));
      case 'global.set':
        this.expr(s.e);
        return this.emit(0x24, ...this.leb.u(s.i));
      case 'store': {
        let info = STORES.get(s.op)!;
        this.safeAddr(s.addr, s.safe);
        this.expr(s.v);
        if (this.m.canonNaN && (info.t === 'f32' || info.t === 'f64')) {
          this.canon(info.t);
          info = STORES.get(info.t === 'f32' ? 'i32.store' : 'i64.store')!;
        }
        this.emit(info.code);
        return this.memarg(s.align, s.offset);
      }
      case 'drop':
        this.expr(s.e);
        return this.emit(0x1a);
      case 'fill':
        this.expr(s.d);
        if (s.safe) this.emit(0x41, ...this.leb.s(0x7fff), 0x71);
        this.expr(s.v);
        this.expr(s.n);
        if (s.safe) this.emit(0x41, ...this.leb.s(0x1ff), 0x71);
        this.countCheck();
        return this.emit(0xfc, 11, 0x00);
      case 'copy':
        this.expr(s.d);
        if (s.safe) this.emit(0x41, ...this.leb.s(0x7fff), 0x71);
        this.expr(s.s);
        if (s.safe) this.emit(0x41, ...this.leb.s(0x7fff), 0x71);
        this.expr(s.n);
        if (s.safe) this.emit(0x41, ...this.leb.s(0x1ff), 0x71);
        this.countCheck();
        return this.emit(0xfc, 10, 0x00, 0x00);
      case 'block':
        this.emit(0x02, 0x40);
        this.label(s.id, () => this.stmts(s.body));
        return this.emit(0x0b);
      case 'if':
        this.expr(s.cond);
        this.emit(0x04, 0x40);
        this.label(s.id, () => {
          this.stmts(s.then);
          if (s.else) {
            this.emit(0x05);
            this.stmts(s.else);
          }
        });
        return this.emit(0x0b);
      case 'loop':
        return this.loopFrame(null, s.exit, s.id, s.ctr, s.count, null, s.body, null);
      case 'br':
        if (s.v) this.expr(s.v);
        return this.emit(0x0c, ...this.leb.u(this.depth(s.label)));
      case 'br_if':
        if (s.v) this.expr(s.v);
        this.expr(s.c);
        this.emit(0x0d, ...this.leb.u(this.depth(s.label)));
        if (s.v) this.emit(0x1a);
        return;
      case 'br_table':
        if (s.v) this.expr(s.v);
        this.expr(s.idx);
        this.emit(0x0e, ...this.leb.u(s.labels.length));
        for (const l of s.labels) this.emit(...this.leb.u(this.depth(l)));
        return this.emit(...this.leb.u(this.depth(s.def)));
      case 'return':
        if (s.v) this.expr(s.v);
        return this.emit(0x0f);
      case 'call': {
        this.callArgs(s.f, s.args);
        this.emit(0x10, ...this.leb.u(s.f));
        if (calleeResult(this.m, s.f) !== null) this.emit(0x1a);
        return;
      }
      case 'call_indirect':
        if (s.params.length > 0 && s.params.length === s.args.length + 1) this.depthArg();
        for (const a of s.args) this.expr(a);
        this.expr(s.slot);
        this.emit(0x11, ...this.leb.u(this.typeIndex(s.params, s.result)), 0x00);
        if (s.result !== null) this.emit(0x1a);
        return;
      case 'unreachable':
        return this.emit(0x00);
      case 'nop':
        return this.emit(0x01);
      case 'poly':
        return this.emit(...s.code);
    }
  }

  /** global 2 += 1 (see ModuleDef.countChecks). */
  countCheck(): void {
    if (this.m.countChecks) this.emit(0x23, 2, 0x42, 1, 0x7c, 0x24, 2);
  }

  /** Function body with the entry guard (depth and budget). */
  funcBody(f: FuncDef): void {
    this.labels = [0];
    if (containsCall(f)) this.countCheck();
    // if (depth <= 0 | budget == 0) return <zero>; budget--
    this.emit(0x20, 0, 0x41, 0, 0x4c, 0x23, 0, 0x45, 0x72, 0x04, 0x40);
    if (f.result) this.emit(...constBytes(f.result, 0n, this.leb));
    this.emit(0x0f, 0x0b);
    this.emit(0x23, 0, 0x41, 1, 0x6b, 0x24, 0);
    this.stmts(f.body);
    if (f.res) this.expr(f.res);
    if (f.fold) {
      // checksum = checksum * 31 + bits(local), for the params and user locals
      const all = [...f.params, ...f.locals];
      for (let i = 0; i < f.userEnd; i++) {
        this.emit(0x23, 1, 0x42, 31, 0x7e, 0x20, ...this.leb.u(i));
        foldToI64(this, all[i]!);
        this.emit(0x7c, 0x24, 1);
      }
    }
    this.emit(0x0b);
  }
}

/** Whether any node under `n` (itself included) satisfies `pred`. */
function anyNode(n: object, pred: (n: Expr | Stmt) => boolean): boolean {
  if ('k' in n && pred(n as Expr | Stmt)) return true;
  for (const v of Object.values(n)) {
    if (Array.isArray(v)) {
      for (const x of v) if (x !== null && typeof x === 'object' && anyNode(x as object, pred)) return true;
    } else if (v !== null && typeof v === 'object' && anyNode(v as object, pred)) return true;
  }
  return false;
}

function containsCall(f: FuncDef): boolean {
  const isCall = (n: Expr | Stmt): boolean => n.k === 'call' || n.k === 'call_indirect';
  return f.body.some((s) => anyNode(s, isCall)) || (f.res !== null && anyNode(f.res, isCall));
}

function calleeResult(m: ModuleDef, f: number): BT {
  if (f === IMPORT_BLOCK) return 'i32';
  if (f === IMPORT_MIX) return 'i64';
  if (f < numImports(m)) return null;
  return m.funcs[f - numImports(m)]!.result;
}

function localGroups(types: VT[], split: boolean): [number, number][] {
  const out: [number, number][] = [];
  for (const t of types) {
    const last = out[out.length - 1];
    if (last && last[1] === CODE[t] && !split) last[0]++;
    else out.push([1, CODE[t]]);
  }
  return out;
}

/** Absolute index of function `run` (after the defined functions; then come the getters and the start function). */
export function runIndex(m: ModuleDef): number {
  return numImports(m) + m.funcs.length;
}

/** Encodes a module description; throws if it is malformed (e.g. a branch to a label that is not in scope). */
export function encodeModule(m: ModuleDef): Uint8Array<ArrayBuffer> {
  const b = new ModuleBuilder();
  const dups = new Map<string, number>();
  let padSeed = m.padLeb;
  const encoder = (f: { tmpF32: number; tmpF64: number; hasDepth: boolean }): FuncEncoder =>
    new FuncEncoder(m, b, f, dups, padSeed ? (padSeed = (padSeed + 0x9e3779b9) >>> 0 || 1) : 0);
  b.importFunc('env', 'block', [I32], [I32]);
  b.importFunc('env', 'mix', [I64, I32], [I64]);
  for (let i = 0; i < m.extraImports; i++) b.importFunc('env', `nop${i}`, []);
  for (let i = 0; i < m.importedGlobals; i++) b.importGlobal('env', `g${i}`, CODE[m.globals[i]!.t], true);
  if (m.importMemory) b.importMemory('env', 'memory', 1);
  if (m.importTable) b.importTable('env', 'table', m.table.length + m.tableExtra);
  for (const f of m.funcs) {
    const enc = encoder({ tmpF32: f.tmpF32, tmpF64: f.tmpF64, hasDepth: true });
    enc.funcBody(f);
    b.func(
      f.params.map((p) => CODE[p]),
      f.result ? [CODE[f.result]] : [],
      enc.out,
      localGroups(f.locals, m.splitLocals),
    );
  }
  /** Sets the budget, then makes the calls; each result: acc = acc * 31 + bits(result). */
  const calls = (enc: FuncEncoder, list: RunCall[], acc: () => number[], setAcc: () => number[]): void => {
    const code = enc.out;
    enc.countCheck();
    code.push(...constBytes('i32', BigInt(m.budget), enc.leb), 0x24, ...enc.leb.u(0));
    for (const c of list) {
      code.push(...acc(), 0x42, 31, 0x7e);
      enc.callArgs(c.f, c.args);
      code.push(0x10, ...enc.leb.u(c.f));
      foldToI64(enc, calleeResult(m, c.f));
      code.push(0x7c, ...setAcc());
    }
  };
  // run: () -> i64. Locals: acc i64 (0), tmp f32 (1), tmp f64 (2).
  {
    const enc = encoder({ tmpF32: 1, tmpF64: 2, hasDepth: false });
    calls(
      enc,
      m.run,
      () => [0x20, ...enc.leb.u(0)],
      () => [0x21, ...enc.leb.u(0)],
    );
    enc.out.push(0x20, ...enc.leb.u(0), 0x0b);
    b.func([], [I64], enc.out, localGroups(['i64', 'f32', 'f64'], m.splitLocals));
  }
  // Getters: g<i>: () -> i64, the bits of global i.
  m.globals.forEach((gl, i) => {
    const enc = encoder({ tmpF32: 0, tmpF64: 1, hasDepth: false });
    enc.out.push(0x23, ...enc.leb.u(i));
    foldToI64(enc, gl.t);
    enc.out.push(0x0b);
    b.func([], [I64], enc.out, localGroups(['f32', 'f64'], m.splitLocals));
  });
  // Start: like run, into the checksum global.
  if (m.start) {
    const enc = encoder({ tmpF32: 0, tmpF64: 1, hasDepth: false });
    calls(
      enc,
      m.start,
      () => [0x23, ...enc.leb.u(1)],
      () => [0x24, ...enc.leb.u(1)],
    );
    enc.out.push(0x0b);
    b.start(b.func([], [], enc.out, localGroups(['f32', 'f64'], m.splitLocals)));
  }
  if (!m.importTable) b.table(m.table.length + m.tableExtra);
  if (!m.importMemory) b.memory(1, 2);
  m.globals.forEach((gl, i) => i >= m.importedGlobals && b.global(CODE[gl.t], true, [...constBytes(gl.t, gl.init), 0x0b]));
  b.exportFunc('run', runIndex(m));
  m.globals.forEach((_, i) => b.exportFunc(`g${i}`, runIndex(m) + 1 + i));
  m.globals.forEach((_, i) => b.export(`G${i}`, 3, i));
  b.export('memory', 2, 0);
  if (m.table.length) b.element(0, m.table);
  for (const d of m.data) b.data(d.offset, d.bytes);
  return b.build() as Uint8Array<ArrayBuffer>;
}

function foldToI64(enc: FuncEncoder, t: BT): void {
  switch (t) {
    case null:
      return void enc.out.push(0x42, 0);
    case 'i32':
      return void enc.out.push(0xad);
    case 'i64':
      return;
    case 'f32':
      enc.canon('f32');
      return void enc.out.push(0xad);
    case 'f64':
      return enc.canon('f64');
  }
}

/**
 * The `env` imports of a module (fresh memory, table and globals each
 * call): `block` and `mix` are the caller's.
 */
export function hostEnv(
  m: ModuleDef,
  fns: { block: (x: number) => number; mix: (a: bigint, b: number) => bigint; nop?: () => void },
): Record<string, unknown> {
  const env: Record<string, unknown> = { block: fns.block, mix: fns.mix };
  for (let i = 0; i < m.extraImports; i++) env[`nop${i}`] = fns.nop ?? (() => {});
  for (let i = 0; i < m.importedGlobals; i++) {
    const g = m.globals[i]!;
    if (g.t === 'i32') env[`g${i}`] = new WebAssembly.Global({ value: 'i32', mutable: true }, Number(BigInt.asIntN(32, g.init)));
    else if (g.t === 'i64') env[`g${i}`] = new WebAssembly.Global({ value: 'i64', mutable: true }, BigInt.asIntN(64, g.init));
    else throw new Error('only integer globals are imported');
  }
  if (m.importMemory) env['memory'] = new WebAssembly.Memory({ initial: 1, maximum: 2 });
  if (m.importTable) env['table'] = new WebAssembly.Table({ initial: m.table.length + m.tableExtra, element: 'anyfunc' });
  return env;
}

/** A module that validates (a generated one always should; this is the safety net). */
export function generateValid(seed: number, opts: GenOptions = {}): { def: ModuleDef; bytes: Uint8Array<ArrayBuffer> } {
  for (let attempt = 0; ; attempt++) {
    const def = generateModule(attempt === 0 ? seed : (seed ^ (attempt * 0x9e3779b9)) >>> 0, opts);
    const bytes = encodeModule(def);
    if (WebAssembly.validate(bytes)) return { def, bytes };
    if (attempt >= 10) throw new Error(`seed ${seed}: no valid module after ${attempt + 1} attempts`);
  }
}

// --- Shrinking ---------------------------------------------------------------

type Edit = () => void;

function isExprArray(x: unknown): x is Expr[] {
  return Array.isArray(x);
}

/** Child expression slots of an expression or statement: [holder, key] pairs, with the type the slot wants (undefined: any). */
function exprSlots(node: Expr | Stmt): Array<{ get: () => Expr; set: (e: Expr) => void }> {
  const out: Array<{ get: () => Expr; set: (e: Expr) => void }> = [];
  const rec = node as unknown as Record<string, unknown>;
  for (const key of ['e', 'addr', 'v', 'c', 'a', 'b', 'cond', 'res', 'thenRes', 'elseRes', 'exitRes', 'slot', 'idx', 'd', 's', 'n']) {
    const x = rec[key];
    if (x && typeof x === 'object' && !Array.isArray(x) && 'k' in (x as object)) {
      // 's' and 'd' of fill/copy are expressions; on other nodes they do not exist.
      out.push({ get: () => rec[key] as Expr, set: (e) => (rec[key] = e) });
    }
  }
  const args = rec['args'];
  if (isExprArray(args)) args.forEach((_, i) => out.push({ get: () => args[i]!, set: (e) => (args[i] = e) }));
  return out;
}

function stmtLists(node: Expr | Stmt): Stmt[][] {
  const out: Stmt[][] = [];
  const rec = node as unknown as Record<string, unknown>;
  for (const key of ['body', 'then', 'else']) {
    const x = rec[key];
    if (Array.isArray(x)) out.push(x as Stmt[]);
  }
  return out;
}

function exprType(e: Expr): VT {
  return e.t;
}

/** All direct sub-expressions (for "replace by a child of the same type"). */
function childExprs(e: Expr): Expr[] {
  const out = exprSlots(e).map((s) => s.get());
  return out;
}

function isZeroConst(e: Expr): boolean {
  return e.k === 'const' && e.v === 0n;
}

/** Every small edit of `m` (each mutates m in place), in a deterministic order. */
function collectEdits(m: ModuleDef): Edit[] {
  const edits: Edit[] = [];
  for (const f of m.funcs) if (f.fold) edits.push(() => (f.fold = false));
  if (m.start) edits.push(() => (m.start = null));
  if (m.start && m.start.length > 1) m.start.forEach((_, i) => edits.push(() => m.start!.splice(i, 1)));
  if (m.padLeb) edits.push(() => (m.padLeb = 0));
  if (m.splitLocals) edits.push(() => (m.splitLocals = false));
  if (m.dupTypes) edits.push(() => (m.dupTypes = false));
  if (m.countChecks) edits.push(() => (m.countChecks = false));
  if (m.extraImports) edits.push(() => renumberImports(m, 0));
  if (m.importedGlobals) edits.push(() => (m.importedGlobals = 0));
  if (m.importMemory) edits.push(() => (m.importMemory = false));
  if (m.importTable) edits.push(() => (m.importTable = false));
  if (!m.canonNaN) edits.push(() => (m.canonNaN = true));
  // Whole functions: empty body.
  for (const f of m.funcs) {
    if (f.body.length || (f.res && !isZeroConst(f.res))) {
      edits.push(() => {
        f.body = [];
        if (f.result) f.res = zero(f.result);
      });
    }
  }
  // Run calls.
  m.run.forEach((_, i) => {
    if (m.run.length > 1) edits.push(() => m.run.splice(i, 1));
  });
  // Data segments.
  m.data.forEach((_, i) => edits.push(() => m.data.splice(i, 1)));
  // Unreferenced functions and globals, table entries.
  edits.push(...removalEdits(m));

  const visitList = (list: Stmt[]): void => {
    list.forEach((s, i) => {
      edits.push(() => list.splice(i, 1));
      const inner = stmtLists(s);
      if (inner.length) {
        for (const l of inner) edits.push(() => list.splice(i, 1, ...l));
        if (inner.length > 1) edits.push(() => list.splice(i, 1, ...inner.flat()));
      }
      if (s.k === 'loop' && s.count > 1) edits.push(() => (s.count = 1));
      if (s.k === 'if' && s.else) edits.push(() => (s.else = null));
      visitNode(s);
    });
  };
  const visitSlot = (slot: { get: () => Expr; set: (e: Expr) => void }): void => {
    const e = slot.get();
    const t = exprType(e);
    if (!isZeroConst(e)) edits.push(() => slot.set(zero(t)));
    for (const c of childExprs(e)) if (exprType(c) === t && c.k !== 'const') edits.push(() => slot.set(c));
    if (e.k === 'loop' && e.count > 1) edits.push(() => (e.count = 1));
    visitNode(e);
  };
  const visitNode = (n: Expr | Stmt): void => {
    for (const l of stmtLists(n)) visitList(l);
    for (const s of exprSlots(n)) visitSlot(s);
  };
  for (const f of m.funcs) {
    visitList(f.body);
    if (f.res) visitSlot({ get: () => f.res!, set: (e) => (f.res = e) });
  }
  // Fewer calls, shallower recursion.
  if (m.budget > 1) edits.push(() => (m.budget = Math.max(1, m.budget >> 1)));
  if (m.depth > 1) edits.push(() => (m.depth = Math.max(1, m.depth >> 1)));
  // Simplify constants.
  for (const c of m.run) c.args.forEach((a, i) => !isZeroConst(a) && edits.push(() => (c.args[i] = zero(a.t))));
  return edits;
}

function forEachNode(m: ModuleDef, cb: (n: Expr | Stmt) => void): void {
  const visit = (n: Expr | Stmt): void => {
    cb(n);
    for (const l of stmtLists(n)) l.forEach(visit);
    for (const s of exprSlots(n)) visit(s.get());
  };
  for (const f of m.funcs) {
    f.body.forEach(visit);
    if (f.res) visit(f.res);
  }
  for (const c of [...m.run, ...(m.start ?? [])]) c.args.forEach(visit);
}

/** Changes the number of extra imports, renumbering the defined functions (calls of removed imports become -1, which does not encode). */
function renumberImports(m: ModuleDef, extra: number): void {
  const old = numImports(m);
  const shift = 2 + extra - old;
  const remap = (f: number): number => (f >= old ? f + shift : f < 2 + extra ? f : -1);
  m.extraImports = extra;
  m.table = m.table.map(remap).filter((f) => f >= 0);
  for (const c of [...m.run, ...(m.start ?? [])]) c.f = remap(c.f);
  forEachNode(m, (n) => {
    if (n.k === 'call') n.f = remap(n.f);
  });
}

function removalEdits(m: ModuleDef): Edit[] {
  const edits: Edit[] = [];
  // Table entries (call_indirect constants then point elsewhere: still a valid program).
  m.table.forEach((_, i) => edits.push(() => m.table.splice(i, 1)));
  if (m.tableExtra) edits.push(() => (m.tableExtra = 0));
  // Functions that nothing calls (directly, through the table or from run).
  const used = new Set<number>(m.table);
  for (const c of [...m.run, ...(m.start ?? [])]) used.add(c.f);
  forEachNode(m, (n) => {
    if (n.k === 'call') used.add(n.f);
  });
  m.funcs.forEach((_, i) => {
    const abs = i + numImports(m);
    if (used.has(abs)) return;
    edits.push(() => {
      m.funcs.splice(i, 1);
      const remap = (f: number): number => (f > abs ? f - 1 : f);
      m.table = m.table.map(remap);
      for (const c of [...m.run, ...(m.start ?? [])]) c.f = remap(c.f);
      forEachNode(m, (n) => {
        if (n.k === 'call') n.f = remap(n.f);
      });
    });
  });
  // Globals other than the budget and the checksum that nothing uses.
  const usedG = new Set<number>([0, 1, 2]);
  forEachNode(m, (n) => {
    if (n.k === 'global.get' || n.k === 'global.set') usedG.add(n.i);
  });
  m.globals.forEach((_, i) => {
    if (usedG.has(i)) return;
    edits.push(() => {
      m.globals.splice(i, 1);
      forEachNode(m, (n) => {
        if ((n.k === 'global.get' || n.k === 'global.set') && n.i > i) n.i--;
      });
    });
  });
  return edits;
}

/**
 * Greedy shrinking: applies single edits while `fails(bytes)` stays true.
 * Edits that make the module malformed or invalid are skipped.
 */
export function shrinkModule(
  def: ModuleDef,
  fails: (def: ModuleDef, bytes: Uint8Array<ArrayBuffer>) => boolean,
  log: (msg: string) => void = () => {},
  maxSteps = 5000,
): ModuleDef {
  let cur = structuredClone(def);
  let steps = 0;
  let progress = true;
  while (progress && steps < maxSteps) {
    progress = false;
    const n = collectEdits(cur).length;
    for (let k = 0; k < n && steps < maxSteps; k++) {
      const cand = structuredClone(cur);
      const edits = collectEdits(cand);
      if (k >= edits.length) break;
      edits[k]!();
      let bytes: Uint8Array<ArrayBuffer>;
      try {
        bytes = encodeModule(cand);
      } catch {
        continue;
      }
      if (!WebAssembly.validate(bytes)) continue;
      steps++;
      if (fails(cand, bytes)) {
        cur = cand;
        progress = true;
        log(`shrink: ${bytes.length} bytes`);
        k--; // the same index is now a different edit
      }
    }
  }
  return cur;
}
