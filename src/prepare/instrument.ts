/**
 * Our unwind/rewind transform (docs/runtime.md "The transform"): one typed
 * pass per function that adds preemption checks and makes every call that
 * can lead to an unwind resumable, so that the host can take the wasm stack
 * apart into frames (function, call site, locals, operand values) and put
 * it back later.
 *
 * The hot path costs little: a fuel test at loop headers and at entries of
 * functions that call (as before), and after each *unwindable* call one test
 * of the state global. Operand values that live across an unwindable call
 * are moved to "slot" locals (one per stack depth and type), so that the
 * stack is empty below the call's arguments. Unwinding (cold) branches to
 * the function's save block, which hands the frame to the host through
 * imports and returns. Rewinding re-enters each function with the fuel at 0:
 * the first check's cold path asks the host for the frame, restores the
 * locals and branches, block by block, to the saved call site — call sites
 * are numbered in code order so that every block covers a contiguous range
 * of them, and each block body that contains sites begins (inside one
 * wrapper block per direct "target") with a `br_table` taken only when
 * rewinding — and re-issues the call with the saved arguments.
 *
 * That rewind code is emitted only where it runs (lazy rewind, the default):
 * the prepared module's functions hand a rewind over to copies of
 * themselves that have it, made on demand by RewindCopier (see there and
 * runtime/rewind-copies.ts).
 *
 * The transform never renumbers locals or globals of the program; it
 * appends imports (which shifts defined functions by their count), two
 * globals (fuel, state), locals, types, and (lazy rewind, checked loops)
 * a few functions and a table after the program's. It works on any module within
 * Gate's feature set; the runtime's pipeline first applies rewrite.ts.
 */
import { decodeInstructionList, InstructionList, Opcode, subopcodeAt } from '../wasm/code.js';
import { POPS, PUSH, SAT_PUSH } from '../wasm/stack-effects.js';
import { ModuleError } from '../wasm/errors.js';
import { ByteReader, ByteWriter, u32At } from '../wasm/leb128.js';
import { ExternalKind, SectionId, skipConstExpr, type FuncType, type FunctionBody, type ValTypeCode, type WasmModule } from '../wasm/module.js';
import { COPY_IMPORT_MODULE, COPY_MODULE_NAME_PREFIX, INTERNAL_IMPORT_MODULE, InternalExport, InternalImport } from './internal.js';
import type { Profile } from './profile.js';

export interface InstrumentOptions {
  profile: Profile;
  /** Function indices of imports whose calls may unwind (blocking calls). */
  unwindingImports: ReadonlySet<number>;
  /**
   * Checks a function with loops counts in a register before it charges the
   * fuel global (default FUEL_CHUNK). Tests that expect every check to call
   * the yield import when the fuel is refilled to 1 use 1.
   */
  fuelChunk?: number;
  /**
   * Debugger breakpoints: offsets of instructions (relative to the start of
   * the code section's contents) before which the code calls the runtime's
   * `breakpoint` import with the offset, at a site where the frame can be
   * unwound (SiteKind.Breakpoint). Offsets that are not instructions of
   * reachable code are ignored. Without any, the output is what it was
   * before breakpoints existed (no extra import).
   */
  breakpoints?: ReadonlySet<number>;
  /**
   * How many bytes later the function bodies start in the instrumented
   * module's code section than in the original program's (rewrite.ts may
   * append functions, and the count's LEB can grow): site offsets and
   * breakpoints are offsets in the original's code section.
   */
  codeOffsetShift?: number;
  /**
   * Where the rewind code goes (docs/runtime.md "Lazy rewind"): `lazy`
   * (default) leaves it out of the prepared module, whose functions hand a
   * rewind over to a copy of themselves made on demand (RewindCopier);
   * `inline` compiles it into every function (the transform before lazy
   * rewind; tests compare the two).
   */
  rewind?: 'lazy' | 'inline';
  /** Lazy rewind: functions whose body is smaller than this (bytes) keep their rewind code inline (default LAZY_MIN_BODY_BYTES). */
  lazyMinBodyBytes?: number;
}

export interface InstrumentResult {
  bytes: Uint8Array;
  /** Number of unwindable call sites and checks (for tests and benchmarks). */
  sites: number;
}

/** A module the transform cannot handle (beyond what validation refuses): the module's problem, like any ModuleError. */
export class InstrumentError extends ModuleError {
  constructor(message: string) {
    super(`cannot be instrumented: ${message}`, undefined, 'GATE_MODULE_LIMIT');
  }
}

/** Where a frame stopped: a call in the program's code, or one of the checks the transform adds. */
export const SiteKind = {
  /** `call` or `call_indirect` at `offset`. */
  Call: 0,
  /** The check at the function's entry (`offset` is its first instruction). */
  Entry: 1,
  /** The check at the top of the `loop` at `offset`. */
  Loop: 2,
  /** The check before the `memory.fill`/`memory.copy` at `offset`. */
  Bulk: 3,
  /** A debugger breakpoint before the instruction at `offset`. */
  Breakpoint: 4,
} as const;
export type SiteKindCode = (typeof SiteKind)[keyof typeof SiteKind];

export interface SiteLayout {
  kind: SiteKindCode;
  /** Byte offset of the instruction relative to the start of the code section's contents (as DWARF addresses wasm code). */
  offset: number;
  /** Types of the operand stack at the site, bottom first (a call's arguments included only for calls of imports and call_indirect: see args). */
  stack: ValTypeCode[];
  /**
   * A call of a defined function: the types of its arguments, which are not
   * part of the frame (the callee's frame has its parameters). A snapshot
   * made before they were left out has them on top of its operand stack.
   */
  args?: ValTypeCode[];
}

/** How frames of one function are saved: what `unwind_*` receives, in order. */
export interface FunctionLayout {
  /** Absolute function index. */
  func: number;
  /** Types of the parameters and declared locals. */
  locals: ValTypeCode[];
  /** The slot locals saved after the locals: operand stack depth and type. */
  slots: Array<{ depth: number; type: ValTypeCode }>;
  sites: SiteLayout[];
}

/**
 * Checks a function with loops counts in a register before it charges the
 * fuel global (see instrumentFunction): between two yields, at most this
 * many per frame on the stack come on top of the fuel the yield refilled.
 */
export const FUEL_CHUNK = 1000;

const I32 = 0x7f;
const I64 = 0x7e;
const F32 = 0x7d;
const F64 = 0x7c;
const VOID = 0x40;

const TYPE_INDEX: Record<number, number> = { [I32]: 0, [I64]: 1, [F32]: 2, [F64]: 3 };

/** The parts of the module every function's transform needs. */
interface ModuleContext {
  m: WasmModule;
  checksUnwind: boolean;
  unwindingImports: ReadonlySet<number>;
  /** Type of every function (imports, then defined). */
  funcTypes: FuncType[];
  globalTypes: number[];
  nImports: number;
  /** Functions appended as imports (shift of defined function indices). */
  shift: number;
  /** Per defined function: loops, calls or copies (gets a fuel local and checks). */
  checked: Uint8Array;
  /** Per defined function: calls anything (gets a check at its entry). */
  calls: Uint8Array;
  /** Per defined function: has loops with checks or bulk memory operations (keeps its fuel in a local; the others use the global). */
  looping: Uint8Array;
  /** Per loop of the module, by function and then in code order: the loop needs no check (io-suspend; its body first calls a function that checks). */
  coveredLoops: Uint8Array;
  /** Per defined function: index of its first loop in coveredLoops. */
  firstLoop: Int32Array;
  /** Per defined function: a call of it may unwind. */
  mayUnwind: Uint8Array;
  /** Per type index: a call_indirect of it may unwind. */
  indirectMayUnwind: Uint8Array;
  fuelGlobal: number;
  stateGlobal: number;
  fuelChunk: number;
  /** Function indices of the internal imports. */
  fn: Record<keyof typeof InternalImport, number>;
  /** Type indices of the internal imports (filled by typeSection). */
  importType: Partial<Record<keyof typeof InternalImport, number>>;
  /** Rewind code left to copies (InstrumentOptions.rewind); false when every function that can unwind keeps its rewind code (rewindsInline). */
  lazy: boolean;
  /** Per defined function: it keeps its rewind code even under lazy rewind (see rewindsInline). */
  keepsRewindCode: Uint8Array;
  /**
   * Lazy rewind: the types of the program's call_indirect instructions, in
   * order, each with a helper function appended to the prepared module
   * (exported as `__gate_ci<type>`) that makes the call for rewind copies:
   * a copy that imported the program's table would cost each instantiation
   * time in proportion to the table's size.
   */
  indirectHelpers: number[];
  /** Per entry of indirectHelpers: the helper's type index (filled by typeSection). */
  indirectHelperType: number[];
  /**
   * The loop helper (loopHelperBody) appended to the prepared module, when
   * a function has a checked loop: its function index, else -1; its type
   * (filled by typeSection).
   */
  loopHelper: number;
  loopHelperType: number;
  /**
   * Lazy rewind: by a function's results (typeKey of `() → results`), the
   * type of its rewind copy, which takes no parameters (it restores them
   * from its frame), so that the redirect passes none.
   */
  copyTypes: Map<string, number>;
  /** Index of the table of defined functions and their rewind copies (lazy only). */
  funcsTable: number;
  /** The internal imports appended (the breakpoint import only when there are breakpoints). */
  importKeys: Array<keyof typeof InternalImport>;
  breakpoints: ReadonlySet<number>;
  codeBase: number;
  /** The instructions of every body as analyzeModule decoded them, when kept (see KEEP_INSTRUCTIONS_MAX_CODE). */
  instructions: KeptInstructions | undefined;
}

/**
 * Instruction starts of every body, one after the other, each body's list
 * followed by its end (as InstructionList); body i's begin at `first[i]`.
 */
interface KeptInstructions {
  starts: Int32Array;
  first: Int32Array;
}

/**
 * instrument() keeps the instruction lists of the analysis for the passes
 * of each function, so that each body is decoded once, when the code
 * section is at most this large: the lists take up to four bytes per byte
 * of code (a larger module's bodies are decoded again, one at a time).
 */
const KEEP_INSTRUCTIONS_MAX_CODE = 8 << 20;

const IMPORT_TYPES: Record<keyof typeof InternalImport, FuncType> = {
  yield: { params: [], results: [] },
  unwindFrame: { params: [I32, I32], results: [] },
  unwindI32: { params: [I32], results: [] },
  unwindI64: { params: [I64], results: [] },
  unwindI32x2: { params: [I32, I32], results: [] },
  unwindI32x4: { params: [I32, I32, I32, I32], results: [] },
  unwindI32x8: { params: [I32, I32, I32, I32, I32, I32, I32, I32], results: [] },
  unwindI64x2: { params: [I64, I64], results: [] },
  unwindI64x4: { params: [I64, I64, I64, I64], results: [] },
  unwindI64x8: { params: [I64, I64, I64, I64, I64, I64, I64, I64], results: [] },
  rewindFrame: { params: [I32], results: [I32] },
  rewindI32: { params: [], results: [I32] },
  rewindI64: { params: [], results: [I64] },
  breakpoint: { params: [I32], results: [] },
};
const ALL_IMPORT_KEYS = Object.keys(InternalImport) as Array<keyof typeof InternalImport>;
const BASE_IMPORT_KEYS = ALL_IMPORT_KEYS.filter((k) => k !== 'breakpoint');

function typeKey(t: FuncType): string {
  return `${t.params.join(',')}:${t.results.join(',')}`;
}

/** Function indices placed in tables by element segments. */
function tableFunctions(m: WasmModule): number[] {
  const out: number[] = [];
  const sec = m.sections.find((s) => s.id === SectionId.Element);
  if (!sec) return out;
  const r = new ByteReader(m.bytes, sec.payloadStart, sec.end);
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    r.u32();
    skipConstExpr(r);
    const count = r.u32();
    for (let j = 0; j < count; j++) out.push(r.u32());
  }
  return out;
}

/**
 * The instructions of the body being analyzed or instrumented: each pass
 * walks this list instead of decoding again (the transform is synchronous,
 * so one list serves every function in turn).
 */
const bodyInstructions = new InstructionList();

/**
 * What analyzeModule needs of one body, appended to columns shared by all
 * bodies: the functions it calls (`direct`), the canonical types it calls
 * indirectly, per loop the function its body calls before any control
 * instruction (or -1); returns whether it has a memory.fill or
 * memory.copy, and whether it uses a segment (SCAN_*). (A function of its own, so that V8 optimizes this loop early
 * instead of recompiling analyzeModule on-stack.)
 */
function scanBody(bytes: Uint8Array, list: InstructionList, typeCanon: Int32Array, direct: IntColumn, indirect: IntColumn, firstCallee: IntColumn, indirectUsed: Uint8Array): number {
  let scanning = false;
  let bulk = 0;
  const { starts, count } = list;
  for (let k = 0; k < count; k++) {
    const pos = starts[k]!;
    const op = bytes[pos]!;
    if (scanning && (op === 0x10 || op <= 0x05 || (op >= 0x0b && op <= 0x11))) {
      scanning = false;
      if (op === 0x10) firstCallee.values[firstCallee.length - 1] = u32At(bytes, pos + 1);
    }
    if (op === 0x10) direct.push(u32At(bytes, pos + 1));
    else if (op === 0x11) {
      const t = u32At(bytes, pos + 1);
      indirect.push(typeCanon[t]!);
      indirectUsed[t] = 1;
    }
    else if (op === 0x03) {
      firstCallee.push(-1);
      scanning = true;
    } else if (op === 0xfc) {
      const sub = subopcodeAt(bytes, pos);
      if (sub === 10 || sub === 11) bulk |= SCAN_BULK;
      else if (sub === 8 || sub === 9 || sub === 12 || sub === 13 || sub === 14) bulk |= SCAN_SEGMENT;
    }
  }
  return bulk;
}

/** scanBody's findings: a memory.fill or memory.copy; a use of a data or element segment, or of the table other than call_indirect (table.copy). */
const SCAN_BULK = 1;
const SCAN_SEGMENT = 2;

/** Whole-module facts: types, which functions check, and which calls may unwind (a fixed point over the call graph). */
function analyzeModule(m: WasmModule, opts: InstrumentOptions, keepInstructions = false): ModuleContext {
  const funcTypes: FuncType[] = [];
  const globalTypes: number[] = [];
  let nImports = 0;
  for (const imp of m.imports) {
    if (imp.kind === ExternalKind.Function) {
      funcTypes.push(m.types[imp.typeIndex]!);
      nImports++;
    } else if (imp.kind === ExternalKind.Global) globalTypes.push(imp.global!.type);
  }
  for (const t of m.functions) funcTypes.push(m.types[t]!);
  for (const g of m.globals) globalTypes.push(g.type);
  const n = m.bodies.length;
  const checksUnwind = opts.profile === 'suspend-anywhere';

  // Structural type identity (call_indirect checks signatures, not indices).
  const canon = new Map<string, number>();
  const typeCanon = Int32Array.from(m.types, (t) => {
    const k = typeKey(t);
    let c = canon.get(k);
    if (c === undefined) canon.set(k, (c = canon.size));
    return c;
  });

  const checked = new Uint8Array(n);
  const looping = new Uint8Array(n);
  const calls = new Uint8Array(n);
  // Per function (its range from first[i] to first[i + 1] in each column):
  // the functions it calls, the canonical types it calls indirectly, and
  // per loop in code order the function its body calls before any control
  // instruction, or -1. (Columns rather than arrays per function: fewer
  // objects, and no arrays whose element kinds change from run to run.)
  const direct = new IntColumn();
  const directFirst = new Int32Array(n + 1);
  const indirect = new IntColumn();
  const indirectFirst = new Int32Array(n + 1);
  const loopFirstCallee = new IntColumn();
  const firstLoop = new Int32Array(n + 1);
  const bulks = new Uint8Array(n);
  const segmentUse = new Uint8Array(n);
  const indirectUsed = new Uint8Array(m.types.length);
  const breakpoints = opts.breakpoints ?? new Set<number>();
  const codeBase = (m.sections.find((s) => s.id === SectionId.Code)?.payloadStart ?? 0) + (opts.codeOffsetShift ?? 0);
  /** Per defined function: holds an instruction at a breakpoint (it gets sites, and calls of it may unwind, under both profiles). */
  const breaks = new Uint8Array(n);
  if (breakpoints.size) {
    // Bodies are in code order: one binary search per breakpoint (a crafted snapshot may bring many).
    for (const off of breakpoints) {
      const abs = codeBase + off;
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (m.bodies[mid]!.end <= abs) lo = mid + 1;
        else hi = mid;
      }
      if (lo < n && m.bodies[lo]!.codeStart <= abs) breaks[lo] = 1;
    }
  }
  const codeSection = m.sections.find((s) => s.id === SectionId.Code);
  const keep = keepInstructions && codeSection !== undefined && codeSection.end - codeSection.start <= KEEP_INSTRUCTIONS_MAX_CODE;
  const kept = new IntColumn();
  const keptFirst = new Int32Array(keep ? n + 1 : 0);
  for (let i = 0; i < n; i++) {
    directFirst[i] = direct.length;
    indirectFirst[i] = indirect.length;
    firstLoop[i] = loopFirstCallee.length;
    const list = decodeInstructionList(m.bytes, m.bodies[i]!, bodyInstructions, nImports + i);
    if (keep) {
      keptFirst[i] = kept.length;
      kept.append(list.starts, list.count + 1);
    }
    const scan = scanBody(m.bytes, list, typeCanon, direct, indirect, loopFirstCallee, indirectUsed);
    const bulk = (scan & SCAN_BULK) !== 0;
    bulks[i] = bulk ? 1 : 0;
    segmentUse[i] = scan & SCAN_SEGMENT ? 1 : 0;
    calls[i] = direct.length > directFirst[i]! || indirect.length > indirectFirst[i]! ? 1 : 0;
    checked[i] = calls[i] || loopFirstCallee.length > firstLoop[i]! || bulk || breaks[i] ? 1 : 0;
  }
  directFirst[n] = direct.length;
  indirectFirst[n] = indirect.length;
  firstLoop[n] = loopFirstCallee.length;
  if (keep) keptFirst[n] = kept.length;

  // Under io-suspend a loop whose every iteration first calls a function
  // that checks at its entry needs no check of its own (the callee's bounds
  // it). Under suspend-anywhere every loop keeps its check: it is a place
  // where a snapshot's frame can stop.
  const coveredLoops = new Uint8Array(loopFirstCallee.length);
  if (!checksUnwind) {
    const fs = loopFirstCallee.values;
    for (let k = 0; k < coveredLoops.length; k++) coveredLoops[k] = fs[k]! >= nImports && calls[fs[k]! - nImports] === 1 ? 1 : 0;
  }
  for (let i = 0; i < n; i++) {
    let uncovered = false;
    for (let k = firstLoop[i]!; k < firstLoop[i + 1]! && !uncovered; k++) uncovered = coveredLoops[k] === 0;
    looping[i] = bulks[i] || uncovered ? 1 : 0;
  }

  // Callers, indirect callers by canonical type, and table functions by canonical type.
  const callers: number[][] = Array.from({ length: n }, () => []);
  const indirectCallers: number[][] = Array.from({ length: canon.size }, () => []);
  const tableByCanon: number[][] = Array.from({ length: canon.size }, () => []);
  for (const f of tableFunctions(m)) tableByCanon[canon.get(typeKey(funcTypes[f]!))!]!.push(f);
  for (let i = 0; i < n; i++) {
    for (let k = directFirst[i]!; k < directFirst[i + 1]!; k++) {
      const c = direct.values[k]!;
      if (c >= nImports) callers[c - nImports]!.push(i);
    }
    for (let k = indirectFirst[i]!; k < indirectFirst[i + 1]!; k++) indirectCallers[indirect.values[k]!]!.push(i);
  }
  const inTable = new Set<number>(tableFunctions(m));
  /**
   * The functions from which a call may reach one of `seeds` (defined
   * functions) or an unwinding import, walked backwards over the call graph
   * (a call_indirect of a type reaches every table function of that type);
   * and per canonical type whether a call_indirect of it may.
   */
  const reaching = (seeds: (i: number) => boolean): { funcs: Uint8Array; canons: Uint8Array } => {
    const funcs = new Uint8Array(n);
    const canons = new Uint8Array(canon.size);
    const work: number[] = [];
    const mark = (f: number): void => {
      if (!funcs[f]) {
        funcs[f] = 1;
        work.push(f);
      }
    };
    const markCanon = (c: number): void => {
      if (canons[c]) return;
      canons[c] = 1;
      for (const g of indirectCallers[c]!) mark(g);
    };
    for (let i = 0; i < n; i++) {
      if (seeds(i)) mark(i);
      for (let k = directFirst[i]!; k < directFirst[i + 1]!; k++) {
        const c = direct.values[k]!;
        if (c < nImports && opts.unwindingImports.has(c)) mark(i);
      }
    }
    tableByCanon.forEach((fs, c) => {
      if (fs.some((f) => f < nImports && opts.unwindingImports.has(f))) markCanon(c);
    });
    while (work.length) {
      const f = work.pop()!;
      for (const g of callers[f]!) mark(g);
      if (inTable.has(f + nImports)) markCanon(canon.get(typeKey(funcTypes[f + nImports]!))!);
    }
    return { funcs, canons };
  };
  // Which calls may unwind: from functions that unwind themselves (a check
  // under suspend-anywhere, a breakpoint) and calls of unwinding imports.
  const { funcs: mayUnwind, canons: canonMay } = reaching((i) => (checksUnwind && checked[i] === 1) || breaks[i] === 1);
  const indirectMayUnwind = new Uint8Array(m.types.length);
  typeCanon.forEach((c, t) => (indirectMayUnwind[t] = canonMay[c]!));

  // Which functions may reach a blocking import (not only a check): see rewindsInline.
  const mayBlock = reaching(() => false).funcs;

  const importedGlobals = m.imports.filter((i) => i.kind === ExternalKind.Global).length;
  const fuelGlobal = importedGlobals + m.globals.length;
  const fn = {} as Record<keyof typeof InternalImport, number>;
  const importKeys = breakpoints.size ? ALL_IMPORT_KEYS : BASE_IMPORT_KEYS;
  importKeys.forEach((k, i) => (fn[k] = nImports + i));
  const importedTables = m.imports.filter((i) => i.kind === ExternalKind.Table).length;
  // Functions that keep their rewind code under lazy rewind (see
  // rewindsInline): those that use a segment or the table (another module
  // cannot name them), and small ones that may reach a blocking import.
  const lazyMinBody = opts.lazyMinBodyBytes ?? LAZY_MIN_BODY_BYTES;
  const keepsRewindCode = new Uint8Array(n);
  // Lazy rewind only if some function leaves its rewind code to a copy:
  // otherwise the funcs table and the copies' helpers would only cost every
  // instantiation.
  let lazy = false;
  for (let i = 0; i < n; i++) {
    const b = m.bodies[i]!;
    keepsRewindCode[i] = segmentUse[i] === 1 || (mayBlock[i] === 1 && b.end - b.start < lazyMinBody) ? 1 : 0;
    if (mayUnwind[i] === 1 && checked[i] === 1 && keepsRewindCode[i] === 0) lazy = true;
  }
  lazy &&= (opts.rewind ?? 'lazy') === 'lazy';
  const indirectHelpers = lazy ? Array.from(indirectUsed.keys()).filter((t) => indirectUsed[t] === 1) : [];
  return {
    m,
    checksUnwind,
    unwindingImports: opts.unwindingImports,
    funcTypes,
    globalTypes,
    nImports,
    shift: importKeys.length,
    checked,
    looping,
    coveredLoops,
    firstLoop,
    calls,
    mayUnwind,
    indirectMayUnwind,
    fuelGlobal,
    stateGlobal: fuelGlobal + 1,
    fuelChunk: opts.fuelChunk ?? FUEL_CHUNK,
    fn,
    importType: {},
    importKeys,
    breakpoints,
    codeBase,
    instructions: keep ? { starts: kept.values, first: keptFirst } : undefined,
    lazy,
    indirectHelpers,
    indirectHelperType: [],
    // After the program's functions, the call_indirect helpers and the funcs table's filler (lazy).
    loopHelper: looping.includes(1) ? nImports + importKeys.length + n + (lazy ? indirectHelpers.length + 1 : 0) : -1,
    loopHelperType: -1,
    copyTypes: new Map(),
    keepsRewindCode,
    funcsTable: importedTables + m.tables.length,
  };
}

/**
 * Calls `visit` for each instruction of `list`. The passes over a body are
 * functions called from this small loop rather than loops of their own: V8
 * then optimizes them early, without recompiling a whole pass on-stack (a
 * slower first preparation in a fresh process).
 */
function visitInstructions(bytes: Uint8Array, list: InstructionList, visit: (op: number, pos: number, immEnd: number) => void): void {
  const { starts, count } = list;
  for (let k = 0; k < count; k++) {
    const pos = starts[k]!;
    visit(bytes[pos]!, pos, starts[k + 1]!);
  }
}

/** A view of body `fi`'s kept instruction list (see KeptInstructions). */
const keptView = new InstructionList();

/** The instructions of defined function `fi`: kept by the analysis, or decoded now. */
function instructionsOf(ctx: ModuleContext, fi: number): InstructionList {
  const kept = ctx.instructions;
  if (!kept) return decodeInstructionList(ctx.m.bytes, ctx.m.bodies[fi]!, bodyInstructions, ctx.nImports + fi);
  const from = kept.first[fi]!;
  keptView.starts = kept.starts.subarray(from);
  keptView.count = kept.first[fi + 1]! - from - 1;
  return keptView;
}

// --- Pass 1: structure ------------------------------------------------------

/**
 * Sites and the block structure around them, in the order pass 2 meets them.
 * The numeric columns are scratch arrays shared by every function (see
 * IntColumn): longer than needed, valid up to the counts of this function,
 * and only until the next function's structure pass.
 */
interface Structure {
  sites: number;
  siteKind: Int32Array;
  siteOffset: Int32Array;
  /** Per body (function body, block/loop/if bodies, else bodies, in order of opening): its site range. */
  bodyLo: Int32Array;
  bodyHi: Int32Array;
  /**
   * Per body: its direct targets (a call site, a bulk check, or a child
   * construct with sites; each is its first site), in order, as a list:
   * how many, the first entry (-1: none); per entry, its site and the next
   * entry (-1: the last).
   */
  targetCount: Int32Array;
  targetHead: Int32Array;
  targetSite: Int32Array;
  targetNext: Int32Array;
  /** Per construct, by the id of the body it opens with: end of its whole site range (else part included). */
  frameHi: Int32Array;
  /** Per call instruction in order: its site or -1. */
  callSite: Int32Array;
  /**
   * Per body: 1 when its first target is a block or loop with sites that
   * opens right at the body's start (clang nests a `switch` as a run of
   * blocks opened together): the body's rewind dispatch can move into that
   * child.
   */
  chained: Int32Array;
  /** Per memory.fill/copy in order: its site or -1. */
  bulkSite: Int32Array;
  /** Per breakpoint met in reachable code, in order: its site. */
  breakSite: Int32Array;
}

/**
 * A growable column of integers reused from function to function: the
 * structure pass makes several entries per block and per site, and arrays
 * made per function were much of the transform's garbage.
 */
class IntColumn {
  values = new Int32Array(256);
  length = 0;

  reset(): this {
    this.length = 0;
    return this;
  }

  /** Appends `src[0..n)`. */
  append(src: Int32Array, n: number): void {
    if (this.length + n > this.values.length) {
      const next = new Int32Array(Math.max(this.length + n, 2 * this.values.length));
      next.set(this.values.subarray(0, this.length));
      this.values = next;
    }
    this.values.set(src.subarray(0, n), this.length);
    this.length += n;
  }

  /** Appends `v`; returns its index. */
  push(v: number): number {
    if (this.length === this.values.length) {
      const next = new Int32Array(2 * this.values.length);
      next.set(this.values);
      this.values = next;
    }
    this.values[this.length] = v;
    return this.length++;
  }
}

const columns = {
  siteKind: new IntColumn(),
  siteOffset: new IntColumn(),
  bodyLo: new IntColumn(),
  bodyHi: new IntColumn(),
  frameHi: new IntColumn(),
  chained: new IntColumn(),
  callSite: new IntColumn(),
  bulkSite: new IntColumn(),
  breakSite: new IntColumn(),
  targetCount: new IntColumn(),
  targetHead: new IntColumn(),
  targetTail: new IntColumn(),
  targetSite: new IntColumn(),
  targetNext: new IntColumn(),
};

/**
 * The structure pass's control stack (one entry per open construct): body
 * id in effect, body id the construct opened with, and flags (see
 * structure). Grown as needed, shared by every function.
 */
let controlStack = new Int32Array(6 * 64);

/**
 * The structure pass's state, for the function in pass: module-level, like
 * the emission pass's (see instrumentFunction), so that its helpers are not
 * closures made per function.
 */
let passCtx: ModuleContext;
let passBytes: Uint8Array;
let passSites = 0;
/** The control stack's top entry (see structure). */
let passTop = 0;
let passAnyBreakpoints = false;

// Fields of a control stack entry (see structure).
const BODY = 0;
const OPEN = 1;
const DEAD = 2;
const DEAD_FRAME = 3;
const FRESH = 4;
const AT_START = 5;

function addSite(kind: number, pos: number): number {
  columns.siteKind.push(kind);
  columns.siteOffset.push(pos - passCtx.codeBase);
  return passSites++;
}

function addTarget(inBody: number, site: number): void {
  const { targetCount, targetHead, targetTail, targetSite, targetNext } = columns;
  const entry = targetSite.push(site);
  targetNext.push(-1);
  if (targetCount.values[inBody]++ === 0) targetHead.values[inBody] = entry;
  else targetNext.values[targetTail.values[inBody]!] = entry;
  targetTail.values[inBody] = entry;
}

function newBody(): number {
  columns.chained.push(0);
  columns.bodyHi.push(passSites);
  columns.targetCount.push(0);
  columns.targetHead.push(-1);
  columns.targetTail.push(-1);
  columns.frameHi.push(passSites);
  return columns.bodyLo.push(passSites);
}

function structure(ctx: ModuleContext, fi: number, hasEntryCheck: boolean, list: InstructionList): Structure {
  const body = ctx.m.bodies[fi]!;
  for (const c of Object.values(columns)) c.reset();
  passCtx = ctx;
  passBytes = ctx.m.bytes;
  passSites = 0;
  passAnyBreakpoints = ctx.breakpoints.size > 0;
  // Body 0 is the function's: its range begins before the entry check's site.
  newBody();
  if (hasEntryCheck && ctx.checksUnwind) addSite(SiteKind.Entry, body.codeStart);
  // Control stack, from entry `top` at 6 * top: body id in effect, body id
  // the construct opened with, dead (the code that follows is unreachable),
  // dead frame (the construct opened in unreachable code), fresh (no
  // instruction yet in the body in effect), at start (the construct opened
  // at its parent body's start). Nesting is at most one per instruction.
  if (controlStack.length < 6 * (list.count + 1)) controlStack = new Int32Array(6 * Math.max(list.count + 1, 2 * (controlStack.length / 6)));
  controlStack.fill(0, 0, 6);
  controlStack[FRESH] = 1;
  passTop = 0;
  visitInstructions(passBytes, list, structureVisit);
  columns.frameHi.values[0] = passSites;
  // (the columns' arrays are final only now: a push may have grown them)
  return {
    sites: passSites,
    siteKind: columns.siteKind.values,
    siteOffset: columns.siteOffset.values,
    bodyLo: columns.bodyLo.values,
    bodyHi: columns.bodyHi.values,
    targetCount: columns.targetCount.values,
    targetHead: columns.targetHead.values,
    targetSite: columns.targetSite.values,
    targetNext: columns.targetNext.values,
    frameHi: columns.frameHi.values,
    callSite: columns.callSite.values,
    chained: columns.chained.values,
    bulkSite: columns.bulkSite.values,
    breakSite: columns.breakSite.values,
  };
}

/** One instruction of the structure pass. */
function structureVisit(op: number, pos: number): void {
  const cs = controlStack;
  const ctx = passCtx;
  const t = 6 * passTop;
  if (passAnyBreakpoints && ctx.breakpoints.has(pos - ctx.codeBase) && cs[t + DEAD] === 0) {
    const site = addSite(SiteKind.Breakpoint, pos);
    addTarget(cs[t + BODY]!, site);
    columns.breakSite.push(site);
    cs[t + FRESH] = 0;
  }
  switch (op) {
    case 0x02:
    case 0x03:
    case 0x04: {
      const dead = cs[t + DEAD]!;
      const id = newBody();
      const n = t + 6;
      cs[n + AT_START] = op !== 0x04 && cs[t + FRESH] === 1 ? 1 : 0;
      cs[t + FRESH] = 0;
      cs[n + FRESH] = 1;
      cs[n + BODY] = id;
      cs[n + OPEN] = id;
      cs[n + DEAD] = dead;
      cs[n + DEAD_FRAME] = dead;
      passTop++;
      if (op === 0x03 && dead === 0 && ctx.checksUnwind) addSite(SiteKind.Loop, pos);
      return;
    }
    case 0x05: {
      columns.bodyHi.values[cs[t + BODY]!] = passSites;
      cs[t + FRESH] = 1;
      cs[t + BODY] = newBody();
      cs[t + DEAD] = cs[t + DEAD_FRAME]!;
      return;
    }
    case 0x0b: {
      columns.bodyHi.values[cs[t + BODY]!] = passSites;
      if (passTop === 0) return;
      const open = cs[t + OPEN]!;
      columns.frameHi.values[open] = passSites;
      passTop--;
      const lo = columns.bodyLo.values[open]!;
      if (cs[t + DEAD_FRAME] === 0 && passSites > lo) {
        const parent = cs[t - 6 + BODY]!;
        if (cs[t + AT_START] === 1 && columns.targetCount.values[parent] === 0) columns.chained.values[parent] = 1;
        addTarget(parent, lo);
      }
      return;
    }
    case 0x00:
    case 0x0c:
    case 0x0e:
    case 0x0f:
      cs[t + DEAD] = 1;
      break;
    case 0x10:
    case 0x11: {
      let site = -1;
      if (cs[t + DEAD] === 0) {
        const x = u32At(passBytes, pos + 1);
        const nImports = ctx.nImports;
        const may = op === 0x10 ? (x < nImports ? ctx.unwindingImports.has(x) : ctx.mayUnwind[x - nImports] === 1) : ctx.indirectMayUnwind[x] === 1;
        if (may) {
          site = addSite(SiteKind.Call, pos);
          addTarget(cs[t + BODY]!, site);
        }
      }
      columns.callSite.push(site);
      break;
    }
    case 0xfc: {
      const sub = subopcodeAt(passBytes, pos);
      if (sub === 10 || sub === 11) {
        let site = -1;
        if (cs[t + DEAD] === 0 && ctx.checksUnwind) {
          site = addSite(SiteKind.Bulk, pos);
          addTarget(cs[t + BODY]!, site);
        }
        columns.bulkSite.push(site);
      }
      break;
    }
  }
  cs[t + FRESH] = 0;
}

// --- Pass 2: emission -------------------------------------------------------

interface Frame {
  /** 0 block, 1 loop, 2 if, 3 function. */
  kind: number;
  /** Label position (number of labels open after opening it; 0 for the function). */
  label: number;
  /** Body id in effect (then/else bodies of an if differ). */
  body: number;
  /** Stack height at the body's start. */
  base: number;
  /** Result type or VOID. */
  result: number;
  dead: boolean;
  deadFrame: boolean;
  /** Values of the enclosing body moved to slots before this construct (reloaded after its end). */
  spilled: number;
  /** Label position below the body's wrappers, their count, and how many targets have been passed. */
  wrapperBase: number;
  targets: number;
  passed: number;
  /** A loop with a check of its own: the blocks around it. (Always present, undefined otherwise: every frame has the same shape, so the per-instruction reads of a frame stay monomorphic.) */
  loop: LoopLabels | undefined;
}

/**
 * The blocks a loop is wrapped in, so that its check's call runs outside
 * it: `block $exit (result) loop $again block $cold loop … end br $exit end
 * yield … br $again end end`. Their label positions.
 */
interface LoopLabels {
  exit: number;
  again: number;
  cold: number;
}

/**
 * The instrumented body of defined function `fi` (its locals header
 * included), and, if asked, how its frames are laid out.
 */
/** Scratch buffers reused from function to function (the transform is synchronous). */
const bodyScratch = new ByteWriter(1 << 16);
/** The rewind prologue and the locals header of the body (both copied into the output before the next function). */
const restoreScratch = new ByteWriter(1 << 12);
const headerScratch = new ByteWriter(1 << 8);
let typesScratch = new Uint8Array(1 << 12);
let labelScratch = new Int32Array(1 << 10);

/**
 * Where the emitted code comes from: runs of the output (positions in the
 * emitted instruction stream, before the rewind prologue is inserted) that
 * are the original's instructions at `from` (absolute), or for a call, the
 * call at `from`.
 */
interface CodeOrigins {
  at: number[];
  from: number[];
  length: number[];
}

/**
 * The function instrumentFunction is working on: its state, shared by the
 * helpers below (module-level functions, not closures made per function:
 * V8 keeps their optimized code across major GCs, which drop the optimized
 * code of closures no longer alive). The transform is synchronous and not
 * reentrant, like the scratch buffers above.
 */
let ctx: ModuleContext;
let fi: number;
let origins: CodeOrigins | undefined;
let m: WasmModule;
let bytes: Uint8Array;
let body: FunctionBody;
let func: number;
let type: FuncType;
let hasEntryCheck: boolean;
let list: InstructionList;
let st: Structure;
let hasSites: boolean;
let localTypes: number[];
let nOriginal: number;
let F: number;
let S: number;
let C: number;
let TMP: number;
let slotBase: number;
let slotIndex: number[];
let slots: Array<{ depth: number; type: number }>;
let w: ByteWriter;
let types: Uint8Array;
let h: number;
let D: number;
let restoreAt: number;
let sitesLayout: SiteLayout[] | undefined;
let unlikely: number[];
let CHUNK: number;
let fuelInGlobal: boolean;
let frames: Frame[] = [];
let bodyCounter: number;
let pending: Frame[];
let fnFrame: Frame;
let copyFrom: number;
let callCounter: number;
let bulkCounter: number;
let breakCounter: number;
let loopCounter: number;
let anyBreakpoints: boolean;
let FG: number;
let ST: number;
/** This function's rewind code is in its body (not lazy, a segment user, or a rewind copy). */
let inlineRewind: boolean;
/** Emitting a rewind copy (RewindCopier): calls of defined functions and call_indirect go to imports of the prepared module's functions. */
let asCopy: boolean;
/** Emitting a rewind copy: the function index of each defined function it calls, and of the call_indirect helper of each type. */
let copyCallees: Map<number, number> = new Map();
let copyIndirect: Map<number, number> = new Map();
/** The function index of the loop helper in the module being emitted. */
let loopCall = -1;
let fn: Record<keyof typeof InternalImport, number>;

function slot(depth: number, t: number): number {
  const k = depth * 4 + TYPE_INDEX[t]!;
  let l = slotIndex[k];
  if (l === undefined) {
    l = slotBase + slots.length;
    slotIndex[k] = l;
    slots.push({ depth, type: t });
  }
  return l;
}

/** Records site `site`'s layout (when asked for): the operand stack, without the top `args` values (a call's arguments that are not part of the frame). */
function recordSite(site: number, args = 0): void {
  if (!sitesLayout) return;
  const layout: SiteLayout = { kind: st.siteKind[site] as SiteKindCode, offset: st.siteOffset[site]!, stack: Array.from(types.subarray(0, h - args)) as ValTypeCode[] };
  if (args) layout.args = Array.from(types.subarray(h - args, h)) as ValTypeCode[];
  sitesLayout[site] = layout;
}

function op(b: number): void {
  w.u8(b);
}

function opU(b: number, x: number): void {
  w.u8(b).u32(x);
}

function i32c(x: number): void {
  w.u8(Opcode.I32Const).s32(x);
}

function open(o: number): void {
  w.u8(o).u8(VOID);
  D++;
}

function coldIf(): void {
  unlikely.push(w.length);
  open(Opcode.If);
}

function coldBrIf(depth: number): void {
  unlikely.push(w.length);
  opU(Opcode.BrIf, depth);
}

function close(): void {
  w.u8(Opcode.End);
  D--;
}

function fuelGet(): void {
  if (fuelInGlobal) opU(Opcode.GlobalGet, FG);
  else opU(Opcode.LocalGet, F);
}

/** `global -= CHUNK - countdown` (what the countdown used). */
function charge(): void {
  opU(Opcode.GlobalGet, FG);
  opU(Opcode.LocalGet, F);
  op(Opcode.I32Add);
  i32c(CHUNK);
  op(Opcode.I32Sub);
  opU(Opcode.GlobalSet, FG);
}

/** `countdown = CHUNK`. */
function restart(): void {
  i32c(CHUNK);
  opU(Opcode.LocalSet, F);
}

/** At an exit: charge; at a branch that may not exit, restart the countdown too. */
function fuelFlush(conditional: boolean): void {
  if (fuelInGlobal) return;
  charge();
  if (conditional) restart();
}

/** The countdown ran out: `charge; if (global <= 0) { yield(); [unwound? save] } restart`. */
function outOfChunk(site: number): void {
  charge();
  opU(Opcode.GlobalGet, FG);
  i32c(0);
  op(Opcode.I32LeS);
  open(Opcode.If);
  opU(Opcode.Call, fn.yield);
  if (site >= 0) {
    recordSite(site);
    unwindCheck(site);
  }
  close();
  restart();
}

const unwindLabel = 1;

/**
 * After a site: `br_if $save (site) (state); drop`: the site number goes to
 * the save block as the branch's value (the smallest form: no `if`, no
 * local). Not hinted: measured side by side, a hint here changed nothing
 * on sql.js or the kernels, and the hints took 4–5 bytes a site.
 */
function unwindCheck(site: number): void {
  i32c(site);
  opU(Opcode.GlobalGet, ST);
  opU(Opcode.BrIf, D - unwindLabel);
  op(Opcode.Drop);
}

/** Opens the wrappers of a body (one per direct target). */
function openWrappers(f: Frame): void {
  f.wrapperBase = D;
  f.targets = inlineRewind ? st.targetCount[f.body]! : 0;
  f.passed = 0;
  for (let i = 0; i < f.targets; i++) open(Opcode.Block);
}

/** A target point: the next target's wrapper ends here. */
function passTarget(f: Frame): void {
  if (!inlineRewind) return;
  if (f.passed >= f.targets) throw new InstrumentError(`function ${func}: internal error: more targets than counted`);
  f.passed++;
  close();
}

/**
 * The rewind dispatch: from the site to the wrapper of the target that
 * contains it (in this body or in a pending enclosing one), or to
 * `fallLabel` for `fallSite`.
 */
function dispatch(f: Frame, fallSite: number, fallLabel: number): void {
  // The pending bodies and this one (the list is emptied at the end, not reallocated).
  const bodies = pending;
  bodies.push(f);
  const lo = st.bodyLo[bodies[0]!.body]!;
  const hi = st.bodyHi[bodies[0]!.body]!;
  // Label position per site (-1: no such site here), in a scratch array (one allocation per module, not per body).
  const n = hi - lo;
  if (labelScratch.length < n) labelScratch = new Int32Array(Math.max(n, 2 * labelScratch.length));
  const labels = labelScratch;
  labels.fill(-1, 0, n);
  for (let i = 0; i < bodies.length; i++) {
    const b = bodies[i]!;
    const bhi = st.bodyHi[b.body]!;
    // k: the last target at or below s; `next` the entry after it.
    let k = -1;
    let next = st.targetHead[b.body]!;
    for (let s = st.bodyLo[b.body]!; s < bhi; s++) {
      while (next >= 0 && st.targetSite[next]! <= s) {
        k++;
        next = st.targetNext[next]!;
      }
      if (s === fallSite && b === f) labels[s - lo] = fallLabel;
      else if (k >= 0) labels[s - lo] = b.wrapperBase + b.targets - k;
    }
  }
  // A br_table costs a byte or two per site, a chain of tests about eight
  // bytes per run of sites with the same label: take the smaller.
  let runs = 0;
  for (let i = 0; i < n; i++) if (i === 0 || labels[i] !== labels[i - 1]) runs++;
  if (n <= 4 * runs + 8) {
    open(Opcode.Block); // $bad: an unknown site traps
    opU(Opcode.LocalGet, S);
    if (lo !== 0) {
      i32c(lo);
      op(Opcode.I32Sub);
    }
    opU(Opcode.BrTable, n);
    for (let i = 0; i < n; i++) {
      const l = labels[i]!;
      w.u32(l < 0 ? 0 : D - l);
    }
    w.u32(0);
    close();
  } else {
    opU(Opcode.LocalGet, S);
    i32c(hi);
    op(Opcode.I32GeU);
    open(Opcode.If);
    op(Opcode.Unreachable);
    close();
    // From the last run down: the first that starts at or below the site.
    for (let i = n - 1; i >= 0; ) {
      let j = i;
      while (j > 0 && labels[j - 1] === labels[i]) j--;
      if (labels[i]! >= 0) {
        opU(Opcode.LocalGet, S);
        i32c(lo + j);
        op(Opcode.I32GeU);
        opU(Opcode.BrIf, D - labels[i]!);
      }
      i = j - 1;
    }
  }
  op(Opcode.Unreachable);
  bodies.length = 0;
}

/**
 * The entry check: `global -= 1; if (global <= 0) { [rewinding: restore,
 * dispatch] yield(); [unwound? save] }` (the F local holds global - 1
 * meanwhile: below 1 when rewinding, as the body's rewind guards expect).
 */
function check(site: number, merge: Frame | undefined, restore: boolean): void {
  opU(Opcode.GlobalGet, FG);
  i32c(1);
  op(Opcode.I32Sub);
  opU(Opcode.LocalTee, F);
  opU(Opcode.GlobalSet, FG);
  opU(Opcode.LocalGet, F);
  i32c(0);
  op(Opcode.I32LeS);
  coldIf();
  // At a function's entry the state is 0 or 2 (rewinding): an unwind only
  // returns, and the save block calls only the host.
  if (merge && !inlineRewind) {
    opU(Opcode.GlobalGet, ST);
    open(Opcode.If);
    redirect();
    close();
  } else if (merge && (restore || st.bodyHi[merge.body]! > st.bodyLo[merge.body]!)) {
    opU(Opcode.GlobalGet, ST);
    open(Opcode.If);
    const fall = D;
    if (restore) restoreAt = w.length;
    if (st.bodyHi[merge.body]! > st.bodyLo[merge.body]!) dispatch(merge, site, fall);
    close();
  }
  opU(Opcode.Call, fn.yield);
  if (site >= 0) {
    recordSite(site);
    unwindCheck(site);
  }
  close();
}

/**
 * Lazy rewind: this function hands the rewind over to its copy (installed
 * by the host in the funcs table's upper half before the rewind starts),
 * as a tail call, without arguments (the copy restores all its locals from its frame).
 */
function redirect(): void {
  i32c(m.bodies.length + fi);
  // A tail call: the copy takes this frame's place (a rewind needs no more native stack than the original calls did).
  opU(RETURN_CALL_INDIRECT, copyType(ctx, type));
  w.u32(ctx.funcsTable);
}

/** The type of the rewind copy of a function of type `t`: no parameters (the copy restores them with its other locals), the same results. */
function copyType(c: ModuleContext, t: FuncType): number {
  return c.copyTypes.get(typeKey({ params: [], results: t.results }))!;
}

/**
 * Whether defined function `fi` keeps its rewind code (lazy rewind: see
 * RewindCopier; analyzeModule decides it per function): a function that
 * uses a segment or the table (another module cannot name them), and a
 * small one that may reach a blocking import. Those are on the stack whenever a short-lived instance (a
 * request) waits for I/O, and every instance instantiates each copy it
 * rewinds into (25–50 µs each: about a tenth of a whole `call` of a small
 * program); in bytes, their rewind code is a small part of a module.
 */
function rewindsInline(ctx: ModuleContext, fi: number): boolean {
  return !ctx.lazy || ctx.keepsRewindCode[fi] === 1;
}

/** Lazy rewind leaves the rewind code of a function that may block to its copy only from this body size on (see rewindsInline). */
export const LAZY_MIN_BODY_BYTES = 1024;

/** The tail call proposal's `return_call_indirect` (V8 since 11.2, Node 20). */
const RETURN_CALL_INDIRECT = 0x13;

/** A bulk operation's check, after its charge to the countdown: `if (countdown <= 0) outOfChunk`. */
function bulkCheck(site: number): void {
  opU(Opcode.LocalGet, F);
  i32c(0);
  op(Opcode.I32LeS);
  coldIf();
  outOfChunk(site);
  close();
}

/** `block $exit (result) loop $again block $cold loop (result)`: see LoopLabels. */
function openLoopFrame(result: number): LoopLabels {
  w.u8(Opcode.Block).u8(result);
  const exit = ++D;
  open(Opcode.Loop);
  const again = D;
  open(Opcode.Block);
  const labels = { exit, again, cold: D };
  w.u8(Opcode.Loop).u8(result);
  D++;
  return labels;
}

/**
 * The check at a loop's header: `countdown -= 1; if (countdown <= 0) br
 * $cold`, with the rewind dispatch of the loop's body (a rewind reaches
 * it with the countdown below 1) before that branch when the body holds
 * other sites. The call of the
 * yield import is after the loop (closeLoopFrame): a call inside a loop,
 * even on a path never taken, makes V8 keep the loop's values in memory.
 */
function loopCheck(nf: Frame, site: number, withSites: boolean): void {
  const labels = nf.loop!;
  opU(Opcode.LocalGet, F);
  i32c(1);
  op(Opcode.I32Sub);
  opU(Opcode.LocalTee, F);
  // Without rewind code the countdown is at least 1 here (restarted at the
  // entry, by the loop helper and after every charge that used it up), so
  // it runs out exactly at 0; a rewind guard sets it to 0 (then -1 here).
  if (inlineRewind) {
    i32c(0);
    op(Opcode.I32LeS);
  } else op(Opcode.I32Eqz);
  const others = st.bodyHi[nf.body]! - st.bodyLo[nf.body]! > (site >= 0 ? 1 : 0);
  if (!withSites || !inlineRewind || (!others && pending.length === 0)) {
    coldBrIf(D - labels.cold);
    return;
  }
  coldIf();
  opU(Opcode.GlobalGet, ST);
  i32c(2);
  op(Opcode.I32Ne);
  opU(Opcode.BrIf, D - labels.cold);
  dispatch(nf, site, labels.cold);
  close();
}

/**
 * The loop helper's body: `(countdown) → countdown`, what outOfChunk does
 * for a bulk operation, plus one check paid in advance, with its caller's unwind test left to the caller:
 * `charge; if (global <= 0) { yield(); if (state) return }; global -= 1;
 * return CHUNK + 1`.
 */
function loopHelperBody(c: ModuleContext): Uint8Array {
  const b = new ByteWriter().u8(0);
  b.u8(Opcode.GlobalGet).u32(c.fuelGlobal).u8(Opcode.LocalGet).u32(0).u8(Opcode.I32Add).u8(Opcode.I32Const).s32(c.fuelChunk).u8(Opcode.I32Sub).u8(Opcode.GlobalSet).u32(c.fuelGlobal);
  b.u8(Opcode.GlobalGet).u32(c.fuelGlobal).u8(Opcode.I32Const).u8(0).u8(Opcode.I32LeS).u8(Opcode.If).u8(VOID);
  b.u8(Opcode.Call).u32(c.fn.yield);
  b.u8(Opcode.GlobalGet).u32(c.stateGlobal).u8(Opcode.If).u8(VOID).u8(Opcode.LocalGet).u32(0).u8(Opcode.Return).u8(Opcode.End);
  b.u8(Opcode.End);
  b.u8(Opcode.GlobalGet).u32(c.fuelGlobal).u8(Opcode.I32Const).u8(1).u8(Opcode.I32Sub).u8(Opcode.GlobalSet).u32(c.fuelGlobal);
  b.u8(Opcode.I32Const).s32(c.fuelChunk + 1).u8(Opcode.End);
  return b.view();
}

/** After a loop's `end`: `br $exit end $cold; countdown = loopHelper(countdown); [unwound? save] br $again end $again end $exit`. */
function closeLoopFrame(f: Frame): void {
  const labels = f.loop!;
  opU(Opcode.Br, D - labels.exit);
  close();
  // The countdown ran out: the loop helper charges, yields and restarts
  // the countdown at one more than the chunk (the check at the header runs
  // again first, and must let the body run once); a shared function, not
  // code in every loop.
  opU(Opcode.LocalGet, F);
  opU(Opcode.Call, loopCall);
  opU(Opcode.LocalSet, F);
  if (ctx.checksUnwind) {
    recordSite(st.bodyLo[f.body]!);
    unwindCheck(st.bodyLo[f.body]!);
  }
  opU(Opcode.Br, D - labels.again);
  close();
  if (f.result !== VOID) op(Opcode.Unreachable);
  close();
}

/**
 * Opens `if (countdown < 1 && state == 2) {` (closed by the caller's
 * close()): a countdown below 1 outside a check means rewinding (a
 * register test on the hot path).
 */
function openWhenRewinding(): void {
  fuelGet();
  i32c(1);
  op(Opcode.I32LtS);
  coldIf();
  opU(Opcode.GlobalGet, ST);
  i32c(2);
  op(Opcode.I32Ne);
  opU(Opcode.BrIf, 0);
}

/**
 * Frames are reused from function to function, one per depth: a frame is
 * not used once popped (endFrame pushes none while it finishes one).
 */
const framePool: Frame[] = [];

/** Opens frame (a construct's, or the function's) on the frame stack: label and wrapper base `label`, no targets passed. */
function pushFrame(kind: number, label: number, body: number, base: number, result: number, dead: boolean, spilled: number, loop: LoopLabels | undefined): Frame {
  let f = framePool[frames.length];
  if (!f) {
    f = { kind, label, body, base, result, dead, deadFrame: dead, spilled, wrapperBase: label, targets: 0, passed: 0, loop };
    framePool.push(f);
  } else {
    f.kind = kind;
    f.label = label;
    f.body = body;
    f.base = base;
    f.result = result;
    f.dead = dead;
    f.deadFrame = dead;
    f.spilled = spilled;
    f.wrapperBase = label;
    f.targets = 0;
    f.passed = 0;
    f.loop = loop;
  }
  frames.push(f);
  return f;
}

function bodyDispatch(f: Frame): void {
  if (f.targets === 0) return;
  if (st.chained[f.body]) {
    // The construct that opens next dispatches for this body too.
    pending.push(f);
    return;
  }
  // Rewind prefilter and dispatch at the start of a block or if body with targets.
  openWhenRewinding();
  dispatch(f, -1, 0);
  close();
}

/** Moves the current body's values (from `from` up) to slots, top first. */
function spill(from: number): void {
  for (let d = h - 1; d >= from; d--) opU(Opcode.LocalSet, slot(d, types[d]!));
}

function reload(from: number, to: number): void {
  for (let d = from; d < to; d++) opU(Opcode.LocalGet, slot(d, types[d]!));
}

function flush(to: number): void {
  if (to <= copyFrom) return;
  if (origins) {
    origins.at.push(w.length);
    origins.from.push(copyFrom);
    origins.length.push(to - copyFrom);
  }
  w.range(bytes, copyFrom, to);
}

function depthOf(n: number): number {
  return D - frames[frames.length - 1 - n]!.label;
}

/** Emits instruction `o` at `pos` (and what the transform puts around it). */
function visit(o: number, pos: number, immEnd: number): void {
  const f = frames[frames.length - 1]!;
  if (f.dead) {
    // Unreachable code: copied, with labels and function indices renumbered.
    switch (o) {
      case 0x02:
      case 0x03:
      case 0x04:
        if (o === 0x03) loopCounter++;
        D++;
        bodyCounter++;
        pushFrame(o === 0x03 ? 1 : o === 0x04 ? 2 : 0, D, -1, h, VOID, true, 0, undefined);
        return;
      case 0x05:
        onElse(f, immEnd);
        return;
      case 0x0b:
        endFrame(f, pos, immEnd);
        return;
      case 0x0c:
      case 0x0d:
        flush(pos);
        opU(o, depthOf(u32At(bytes, pos + 1)));
        copyFrom = immEnd;
        return;
      case 0x0e:
        flush(pos);
        brTable(pos);
        copyFrom = immEnd;
        return;
      case 0x10:
        callCounter++;
        flush(pos);
        directCall(u32At(bytes, pos + 1));
        copyFrom = immEnd;
        return;
      case 0x11:
        callCounter++;
        if (asCopy) {
          // (a copy has no table: even unreachable code calls the helper)
          flush(pos);
          emitCall(o, u32At(bytes, pos + 1), pos, immEnd);
          copyFrom = immEnd;
        }
        return;
      case 0xfc: {
        const sub = subopcodeAt(bytes, pos);
        if (sub === 10 || sub === 11) bulkCounter++;
        return;
      }
    }
    return;
  }
  if (anyBreakpoints && ctx.breakpoints.has(pos - ctx.codeBase)) {
    // A breakpoint: the whole operand stack to slots, then the runtime's
    // breakpoint import, which may unwind (the frame stops here) or, when
    // it ends a rewind, return so that the instruction runs.
    const site = st.breakSite[breakCounter++]!;
    flush(pos);
    spill(f.base);
    passTarget(f);
    recordSite(site);
    i32c(pos - ctx.codeBase);
    opU(Opcode.Call, fn.breakpoint);
    unwindCheck(site);
    reload(f.base, h);
    copyFrom = pos;
  }
  switch (o) {
    case 0x02:
    case 0x03:
    case 0x04: {
      const id = ++bodyCounter;
      const result = bytes[pos + 1]!; // VOID or a value type (Gate has no multi-value blocks)
      if (o === 0x04) h--;
      const withSites = st.frameHi[id]! > st.bodyLo[id]!;
      // A loop without a check of its own is handled as a block.
      const checkedLoop = o === 0x03 && ctx.coveredLoops[ctx.firstLoop[fi]! + loopCounter++] !== 1;
      let loop: LoopLabels | undefined;
      let spilled = 0;
      if (withSites) {
        flush(pos);
        spilled = h - f.base;
        // The condition waits in C while the values below it go to slots;
        // the rewind code overrides it (where there is none and nothing to
        // spill, it stays on the stack).
        const conditionLocal = o === 0x04 && (inlineRewind || spilled > 0);
        if (conditionLocal) opU(Opcode.LocalSet, C);
        spill(f.base);
        passTarget(f);
        if (conditionLocal) {
          if (inlineRewind) {
            // Rewinding: take the branch that holds the site.
            openWhenRewinding();
            opU(Opcode.LocalGet, S);
            i32c(st.bodyHi[id]!);
            op(Opcode.I32LtU);
            opU(Opcode.LocalSet, C);
            close();
          }
          opU(Opcode.LocalGet, C);
        }
        if (checkedLoop) loop = openLoopFrame(result);
        else {
          w.u8(o).u8(bytes[pos + 1]!);
          D++;
        }
      } else if (checkedLoop) {
        flush(pos);
        loop = openLoopFrame(result);
      } else {
        D++;
        pushFrame(o === 0x04 ? 2 : 0, D, id, h, result, false, 0, undefined);
        return;
      }
      copyFrom = immEnd;
      const nf = pushFrame(checkedLoop ? 1 : o === 0x04 ? 2 : 0, D, id, h, result, false, spilled, loop);
      if (withSites) openWrappers(nf);
      if (checkedLoop) loopCheck(nf, ctx.checksUnwind ? st.bodyLo[id]! : -1, withSites);
      else if (withSites) bodyDispatch(nf);
      return;
    }
    case 0x05:
      onElse(f, immEnd);
      return;
    case 0x0b:
      endFrame(f, pos, immEnd);
      return;
    case 0x0c: {
      const n = u32At(bytes, pos + 1);
      flush(pos);
      if (frames.length - 1 - n === 0) fuelFlush(false);
      opU(Opcode.Br, depthOf(n));
      copyFrom = immEnd;
      f.dead = true;
      return;
    }
    case 0x0d: {
      const n = u32At(bytes, pos + 1);
      flush(pos);
      copyFrom = immEnd;
      h--;
      if (frames.length - 1 - n !== 0 || fuelInGlobal) {
        opU(Opcode.BrIf, depthOf(n));
        return;
      }
      // A conditional return charges only when it returns:
      // `if (cond) { charge; br $fn }`, the result (if any) kept in a slot.
      const r = fnFrame.result;
      if (r === VOID) open(Opcode.If);
      else {
        opU(Opcode.LocalSet, C);
        opU(Opcode.LocalTee, slot(h - 1, r));
        opU(Opcode.LocalGet, C);
        open(Opcode.If);
        opU(Opcode.LocalGet, slot(h - 1, r));
      }
      charge();
      opU(Opcode.Br, depthOf(n));
      close();
      return;
    }
    case 0x0e:
      flush(pos);
      brTable(pos);
      copyFrom = immEnd;
      f.dead = true;
      return;
    case 0x0f:
      flush(pos);
      fuelFlush(false);
      copyFrom = pos;
      f.dead = true;
      return;
    case 0x00:
      f.dead = true;
      return;
    case 0x10:
    case 0x11: {
      const site = st.callSite[callCounter++]!;
      const x = u32At(bytes, pos + 1);
      const t = o === 0x10 ? ctx.funcTypes[x]! : m.types[x]!;
      const nArgs = t.params.length + (o === 0x11 ? 1 : 0);
      flush(pos);
      if (site < 0) {
        emitCall(o, x, pos, immEnd);
        h -= nArgs;
        if (t.results.length) types[h++] = t.results[0]!;
        copyFrom = immEnd;
        return;
      }
      const below = h - nArgs - f.base;
      // The arguments of a call of a defined function are not part of the
      // frame: the callee, rewound too, restores its parameters from its own
      // frame. So where nothing of this body lies below them, they stay on
      // the stack in the prepared module (its rewind code, in the copy,
      // re-issues the call with whatever the slots hold).
      const argsInFrame = o !== Opcode.Call || x < ctx.nImports;
      if (!argsInFrame && below === 0 && !inlineRewind) {
        // (the slots the copy's spill uses, allocated in the same order: both have the same frame layout)
        for (let d = h - 1; d >= f.base; d--) slot(d, types[d]!);
        recordSite(site, nArgs);
      } else {
        spill(f.base);
        passTarget(f);
        recordSite(site, argsInFrame ? 0 : nArgs);
        reload(h - nArgs, h);
      }
      emitCall(o, x, pos, immEnd);
      unwindCheck(site);
      h -= nArgs;
      if (below > 0) {
        if (t.results.length) {
          const r = t.results[0]!;
          types[h] = r;
          opU(Opcode.LocalSet, slot(h, r));
          reload(f.base, h);
          opU(Opcode.LocalGet, slot(h, r));
        } else reload(f.base, h);
      }
      if (t.results.length) types[h++] = t.results[0]!;
      copyFrom = immEnd;
      return;
    }
    case 0x1a: // drop
      h--;
      return;
    case 0x1b: // select
      h -= 2;
      return;
    case 0x20:
      types[h++] = localTypes[u32At(bytes, pos + 1)]!;
      return;
    case 0x21:
      h--;
      return;
    case 0x22:
      return;
    case 0x23:
      types[h++] = ctx.globalTypes[u32At(bytes, pos + 1)]!;
      return;
    case 0x24:
      h--;
      return;
    case 0x01:
      return;
    case 0xfc: {
      const sub = subopcodeAt(bytes, pos);
      if (sub <= 7) {
        types[h - 1] = SAT_PUSH[sub]!;
        return;
      }
      if (sub === 10 || sub === 11) {
        const site = st.bulkSite[bulkCounter++]!;
        flush(pos);
        if (site < 0) {
          // length on top: charge one unit per 64 KiB, then check
          opU(Opcode.LocalTee, TMP);
          opU(Opcode.LocalGet, F);
          opU(Opcode.LocalGet, TMP);
          i32c(16);
          op(Opcode.I32ShrU);
          op(Opcode.I32Sub);
          i32c(1);
          op(Opcode.I32Sub);
          opU(Opcode.LocalSet, F);
          bulkCheck(-1);
        } else {
          spill(f.base);
          opU(Opcode.LocalGet, F);
          opU(Opcode.LocalGet, slot(h - 1, I32));
          i32c(16);
          op(Opcode.I32ShrU);
          op(Opcode.I32Sub);
          i32c(1);
          op(Opcode.I32Sub);
          opU(Opcode.LocalSet, F);
          passTarget(f);
          bulkCheck(site);
          reload(f.base, h);
        }
        copyFrom = pos;
        h -= 3;
        return;
      }
      if (sub === 8 || sub === 12 || sub === 14) h -= 3;
      return;
    }
    default: {
      const pops = POPS[o]!;
      h -= pops;
      const push = PUSH[o]!;
      if (push) types[h++] = push;
    }
  }
}

function remap(x: number): number {
  return x < ctx.nImports ? x : x + ctx.shift;
}

function emitCall(o: number, x: number, pos: number, immEnd: number): void {
  if (origins) {
    origins.at.push(w.length);
    origins.from.push(pos);
    origins.length.push(immEnd - pos);
  }
  if (o === Opcode.Call) directCall(x);
  else if (asCopy) opU(Opcode.Call, copyIndirect.get(x)!);
  else w.range(bytes, pos, immEnd);
}

/** `call x` (x in the original's index space); in a rewind copy, a defined function is an import. */
function directCall(x: number): void {
  opU(Opcode.Call, asCopy && x >= ctx.nImports ? copyCallees.get(x)! : remap(x));
}

function brTable(pos: number): void {
  const r = new ByteReader(bytes, pos + 1);
  const n = r.u32();
  let exits = false;
  const depths: number[] = new Array<number>(n + 1);
  for (let i = 0; i <= n; i++) {
    const d = r.u32();
    if (frames.length - 1 - d === 0) exits = true;
    depths[i] = depthOf(d);
  }
  // (the index is on the stack; the store does not touch it)
  if (exits) fuelFlush(true);
  w.u8(Opcode.BrTable).u32(n);
  for (const d of depths) w.u32(d);
  h--;
}

/** `else`: a new body (of a construct opened in unreachable code, only counted). */
function onElse(f: Frame, immEnd: number): void {
  bodyCounter++;
  if (f.deadFrame) return;
  flush(immEnd);
  copyFrom = immEnd;
  elseBody(f);
}

function elseBody(f: Frame): void {
  const id = bodyCounter;
  f.body = id;
  f.dead = f.deadFrame;
  h = f.base;
  if (f.deadFrame) return;
  const withSites = st.bodyHi[id]! > st.bodyLo[id]!;
  if (withSites) {
    openWrappers(f);
    bodyDispatch(f);
  } else {
    f.targets = 0;
    f.passed = 0;
  }
}

function endFrame(f: Frame, pos: number, immEnd: number): void {
  if (!f.deadFrame && f.passed !== f.targets) throw new InstrumentError(`function ${func}: internal error: ${f.targets - f.passed} targets not reached`);
  if (f.kind === 3) {
    flush(pos);
    fuelFlush(false);
    if (hasSites) {
      op(Opcode.Return);
      close();
      emitSave();
    }
    op(Opcode.End);
    copyFrom = immEnd;
    frames.pop();
    return;
  }
  frames.pop();
  if (f.deadFrame) {
    D--;
    return;
  }
  flush(immEnd);
  copyFrom = immEnd;
  D--;
  h = f.base;
  if (f.kind === 1) closeLoopFrame(f);
  if (f.result !== VOID) types[h++] = f.result;
  if (f.spilled > 0) {
    const from = f.base - f.spilled;
    if (f.result !== VOID) {
      const top = h - 1;
      opU(Opcode.LocalSet, slot(top, f.result));
      reload(from, top);
      opU(Opcode.LocalGet, slot(top, f.result));
    } else reload(from, f.base);
  }
}

/**
 * The save block's hand-over of locals `first` to `first + count - 1` (of
 * the types `typeOf` gives) to the host: runs of 32-bit and of 64-bit
 * values (floats as their bits, so NaN payloads survive) in calls of up to
 * eight values each (SAVE_WIDTHS), to keep the cold code small.
 */
function saveValues(first: number, count: number, typeOf: (i: number) => number): void {
  let i = 0;
  while (i < count) {
    const wide = typeOf(i) === I64 || typeOf(i) === F64;
    let run = 1;
    while (i + run < count && run < 8 && (typeOf(i + run) === I64 || typeOf(i + run) === F64) === wide) run++;
    const width = SAVE_WIDTHS.find((n) => n <= run)!;
    for (let k = 0; k < width; k++) {
      const t = typeOf(i + k);
      opU(Opcode.LocalGet, first + i + k);
      if (t === F32) op(0xbc);
      else if (t === F64) op(0xbd);
    }
    opU(Opcode.Call, fn[(wide ? SAVE64 : SAVE32)[width]!]);
    i += width;
  }
}

/** How many values one call of the save block hands over (the imports `unwind_i32`, `unwind_i32x2`, …). */
const SAVE_WIDTHS = [8, 4, 2, 1];
const SAVE32: Partial<Record<number, keyof typeof InternalImport>> = { 1: 'unwindI32', 2: 'unwindI32x2', 4: 'unwindI32x4', 8: 'unwindI32x8' };
const SAVE64: Partial<Record<number, keyof typeof InternalImport>> = { 1: 'unwindI64', 2: 'unwindI64x2', 4: 'unwindI64x4', 8: 'unwindI64x8' };

/** The rewind prologue's restore of local `l` of type `t` from the host, into `rw`. */
function restoreValue(rw: ByteWriter, l: number, t: number): void {
  rw.u8(Opcode.Call).u32(t === I32 || t === F32 ? fn.rewindI32 : fn.rewindI64);
  if (t === F32) rw.u8(0xbe);
  else if (t === F64) rw.u8(0xbf);
  rw.u8(Opcode.LocalSet).u32(l);
}

function emitSave(): void {
  // (the site number is on the stack)
  i32c(func);
  opU(Opcode.Call, fn.unwindFrame);
  saveValues(0, nOriginal, (l) => localTypes[l]!);
  saveValues(slotBase, slots.length, (i) => slots[i]!.type);
  const r = type.results[0];
  if (r === I32) i32c(0);
  else if (r === I64) w.u8(0x42).u8(0);
  else if (r === F32) w.u8(0x43).u32(0).u8(0).u8(0).u8(0);
  else if (r === F64) {
    w.u8(0x44);
    for (let i = 0; i < 8; i++) w.u8(0);
  }
}

/** Appends the instrumented body (size-prefixed, as in the code section) to `out`. */
function instrumentFunction(
  context: ModuleContext,
  index: number,
  wantLayout: boolean,
  out: ByteWriter,
  codeOrigins?: CodeOrigins,
  copy = false,
): { layout: FunctionLayout | undefined; sites: number; codeStart: number; restoreAt: number; restoreLength: number; unlikely: number[] } {
  ctx = context;
  fi = index;
  origins = codeOrigins;
  m = ctx.m;
  bytes = m.bytes;
  body = m.bodies[fi]!;
  func = ctx.nImports + fi;
  type = ctx.funcTypes[func]!;
  hasEntryCheck = ctx.calls[fi] === 1;
  list = instructionsOf(ctx, fi);
  st = structure(ctx, fi, hasEntryCheck, list);
  hasSites = st.sites > 0;

  // Local types: parameters, then the declared groups.
  localTypes = [...type.params];
  const declared = new ByteReader(bytes, body.bodyStart, body.codeStart);
  const groups = declared.u32();
  const groupsStart = declared.pos;
  for (let g = 0; g < groups; g++) {
    const c = declared.u32();
    const t = declared.u8();
    for (let i = 0; i < c; i++) localTypes.push(t);
  }
  nOriginal = localTypes.length;
  F = nOriginal; // fuel
  S = nOriginal + 1; // site
  C = nOriginal + 2; // if condition
  TMP = nOriginal + 3; // bulk length
  slotBase = nOriginal + 4;
  slotIndex = []; // by depth*4 + type index → local
  slots = [];

  w = bodyScratch.reset();
  if (typesScratch.length < 1024 + (body.end - body.codeStart)) typesScratch = new Uint8Array(2 * (1024 + (body.end - body.codeStart)));
  types = typesScratch;
  h = 0;
  D = 0;
  restoreAt = -1;
  sitesLayout = wantLayout ? new Array(st.sites) : undefined;
  ({ fuelGlobal: FG, stateGlobal: ST, fn } = ctx);
  asCopy = copy;
  if (!copy) loopCall = ctx.loopHelper;
  inlineRewind = copy || rewindsInline(ctx, fi);
  // Branches from hot code to cold code (code positions of their
  // `if`/`br_if`), for the branch hint section: V8's optimizing tier then
  // moves that code out of line and keeps its register moves off the hot
  // path. Code reached only from cold code is cold already (V8 propagates
  // it), so branches there need no hint.
  unlikely = [];
  // The fuel is the global. A function with loops (or bulk operations)
  // counts its checks in a local countdown (a register) from CHUNK and
  // charges the global with what it used when the countdown runs out and
  // when it returns: calls need no syncing, and every check is charged
  // (at most CHUNK per frame late). One without loops counts in the global
  // itself (its entry check).
  CHUNK = ctx.fuelChunk;
  fuelInGlobal = ctx.looping[fi] === 0;
  frames.length = 0;
  bodyCounter = 0;

  /** Bodies whose dispatch moved into the construct opened at their start (outermost first). */
  pending = [];

  // Function prologue.
  fnFrame = pushFrame(3, 0, 0, 0, type.results[0] ?? VOID, false, 0, undefined);
  if (hasSites) {
    // $unwind: a site's unwind test branches out of it with the site number.
    w.u8(Opcode.Block).u8(I32);
    D++;
  }
  openWrappers(fnFrame);
  if (hasEntryCheck) {
    check(hasSites && st.siteKind[0] === SiteKind.Entry ? 0 : -1, hasSites ? fnFrame : undefined, hasSites);
    if (!fuelInGlobal) restart();
  } else {
    // No entry check: only loops or bulk operations, so a countdown.
    restart();
    if (hasSites) {
      // Rewinding (the state is 0 or 2 at an entry: see check): the countdown below 1 for the body's guards.
      opU(Opcode.GlobalGet, ST);
      coldIf();
      if (inlineRewind) {
        i32c(0);
        opU(Opcode.LocalSet, F);
        restoreAt = w.length;
        dispatch(fnFrame, -1, 0);
      } else redirect();
      close();
    }
  }

  copyFrom = body.codeStart;
  callCounter = 0;
  bulkCounter = 0;
  breakCounter = 0;
  loopCounter = 0;
  anyBreakpoints = ctx.breakpoints.size > 0;

  visitInstructions(bytes, list, visit);

  // The restore code needs the slot list, known only now.
  const code = w.view();
  let restore: Uint8Array | undefined;
  if (restoreAt >= 0) {
    const rw = restoreScratch.reset();
    rw.u8(Opcode.I32Const).s32(func).u8(Opcode.Call).u32(fn.rewindFrame).u8(Opcode.LocalSet).u32(S);
    for (let l = 0; l < nOriginal; l++) restoreValue(rw, l, localTypes[l]!);
    for (let i = 0; i < slots.length; i++) restoreValue(rw, slotBase + i, slots[i]!.type);
    restore = rw.view();
  }

  // Locals header: the original groups, the four scalars, the slots.
  if (slotBase + slots.length > 50000) throw new InstrumentError(`function ${func}: too many locals to instrument (${slotBase + slots.length}; the limit is 50000)`);
  const hw = headerScratch.reset();
  const runs: Array<[number, number]> = [];
  for (const s of slots) {
    const last = runs[runs.length - 1];
    if (last && last[1] === s.type) last[0]++;
    else runs.push([1, s.type]);
  }
  // A rewind copy takes no parameters: they are its first declared locals.
  const paramRuns: Array<[number, number]> = [];
  if (copy) {
    for (const t of type.params) {
      const last = paramRuns[paramRuns.length - 1];
      if (last && last[1] === t) last[0]++;
      else paramRuns.push([1, t]);
    }
  }
  hw.u32(paramRuns.length + groups + 1 + runs.length);
  for (const [c, t] of paramRuns) hw.u32(c).u8(t);
  hw.bytes(bytes.subarray(groupsStart, body.codeStart));
  hw.u32(4).u8(I32);
  for (const [c, t] of runs) hw.u32(c).u8(t);
  const header = hw.view();
  const entryStart = out.length;
  out.u32(header.length + code.length + (restore?.length ?? 0)).bytes(header);
  const prefixLength = out.length - entryStart;
  if (restore) out.bytes(code.subarray(0, restoreAt)).bytes(restore).bytes(code.subarray(restoreAt));
  else out.bytes(code);
  const layout: FunctionLayout | undefined = wantLayout
    ? { func, locals: localTypes as ValTypeCode[], slots: slots as FunctionLayout['slots'], sites: sitesLayout! }
    : undefined;
  // Hint offsets count from the body's start (its locals header), after the restore code is put in.
  const restoreLength = restore?.length ?? 0;
  for (let i = 0; i < unlikely.length; i++) unlikely[i] = header.length + unlikely[i]! + (restoreLength > 0 && unlikely[i]! >= restoreAt ? restoreLength : 0);
  return { layout, sites: st.sites, codeStart: prefixLength, restoreAt, restoreLength, unlikely };
}

// --- The module -------------------------------------------------------------

/**
 * Instruments a parsed module (see the file comment). Throws
 * InstrumentError for a module it cannot handle; the module must have
 * passed validation (wasm/validate.ts and the engine's).
 */
export function instrument(m: WasmModule, opts: InstrumentOptions): InstrumentResult {
  const ctx = analyzeModule(m, opts, true);
  const bytes = m.bytes;
  const out = new ByteWriter(bytes.length * 2 + 1024);
  out.bytes(bytes.subarray(0, 8));
  const sectionOf = (id: number) => m.sections.find((s) => s.id === id);
  const copy = (id: number): void => {
    const s = sectionOf(id);
    if (s) out.bytes(bytes.subarray(s.start, s.end));
  };
  const remap = (f: number): number => (f < ctx.nImports ? f : f + ctx.shift);
  const nDefined = m.bodies.length;

  out.section(SectionId.Type, typeSection(ctx));
  out.section(SectionId.Import, importSection(ctx).finish());
  const helpers = ctx.indirectHelpers.length;
  // Lazy rewind appends functions: the call_indirect helpers of rewind copies (ModuleContext.indirectHelpers), then the funcs table's filler.
  const appended = (ctx.lazy ? helpers + 1 : 0) + (ctx.loopHelper >= 0 ? 1 : 0);
  const fillFunction = ctx.nImports + ctx.shift + nDefined + helpers;
  const programSegments = ((): number => {
    const s = sectionOf(SectionId.Element);
    return s ? new ByteReader(bytes, s.payloadStart, s.end).u32() : 0;
  })();
  if (appended) {
    const w = new ByteWriter().u32(nDefined + appended);
    for (const t of m.functions) w.u32(t);
    for (const t of ctx.indirectHelperType) w.u32(t);
    if (ctx.lazy) w.u32(ctx.importType.yield!); // [] → []
    if (ctx.loopHelper >= 0) w.u32(ctx.loopHelperType);
    out.section(SectionId.Function, w.finish());
  } else copy(SectionId.Function);
  if (ctx.lazy) {
    // The program's tables, then the funcs table (empty until the first rewind: see the filler below).
    const w = new ByteWriter().u32(m.tables.length + 1);
    const s = sectionOf(SectionId.Table);
    if (s) {
      const r = new ByteReader(bytes, s.payloadStart, s.end);
      r.u32();
      w.bytes(bytes.subarray(r.pos, s.end));
    }
    w.u8(0x70).u8(0).u32(0);
    out.section(SectionId.Table, w.finish());
  } else copy(SectionId.Table);
  copy(SectionId.Memory);
  {
    const w = new ByteWriter().u32(m.globals.length + 2);
    const s = sectionOf(SectionId.Global);
    if (s) {
      const r = new ByteReader(bytes, s.payloadStart, s.end);
      r.u32();
      w.bytes(bytes.subarray(r.pos, s.end));
    }
    // fuel starts at 1 (the first check refills it), state at 0
    w.u8(I32).u8(1).u8(Opcode.I32Const).u8(1).u8(Opcode.End);
    w.u8(I32).u8(1).u8(Opcode.I32Const).u8(0).u8(Opcode.End);
    out.section(SectionId.Global, w.finish());
  }
  {
    // What rewind copies import from the prepared module (see copyImports).
    const copyExports = ctx.lazy ? 2 + helpers + (m.memories.length ? 1 : 0) + m.globals.length + (ctx.loopHelper >= 0 ? 1 : 0) : 0;
    const w = new ByteWriter().u32(m.exports.length + 2 + copyExports);
    for (const e of m.exports) w.name(e.name).u8(e.kind).u32(e.kind === ExternalKind.Function ? remap(e.index) : e.index);
    w.name(InternalExport.fuel).u8(ExternalKind.Global).u32(ctx.fuelGlobal);
    w.name(InternalExport.state).u8(ExternalKind.Global).u32(ctx.stateGlobal);
    if (ctx.lazy) {
      w.name(InternalExport.funcs).u8(ExternalKind.Table).u32(ctx.funcsTable);
      w.name(InternalExport.fillFuncs).u8(ExternalKind.Function).u32(fillFunction);
      if (ctx.loopHelper >= 0) w.name(InternalExport.loopHelper).u8(ExternalKind.Function).u32(ctx.loopHelper);
      ctx.indirectHelpers.forEach((t, k) => w.name(`${InternalExport.copyIndirectPrefix}${t}`).u8(ExternalKind.Function).u32(ctx.nImports + ctx.shift + nDefined + k));
      // (a program's memory is imported after rewrite.ts; a module given to instrument() directly may define it)
      if (m.memories.length) w.name(InternalExport.copyMemory).u8(ExternalKind.Memory).u32(0);
      const firstDefined = ctx.fuelGlobal - m.globals.length;
      for (let g = 0; g < m.globals.length; g++) w.name(`${InternalExport.copyGlobalPrefix}${firstDefined + g}`).u8(ExternalKind.Global).u32(firstDefined + g);
    }
    out.section(SectionId.Export, w.finish());
  }
  if (m.start !== undefined) out.section(SectionId.Start, new ByteWriter().u32(remap(m.start)).finish());
  {
    const s = sectionOf(SectionId.Element);
    if (s || ctx.lazy) {
      const r = s ? new ByteReader(bytes, s.payloadStart, s.end) : undefined;
      const n = r ? r.u32() : 0;
      const w = new ByteWriter((s ? s.end - s.start : 0) + 64 + 3 * nDefined).u32(n + (ctx.lazy ? 1 : 0));
      for (let i = 0; i < n; i++) {
        const flagsAt = r!.pos;
        r!.u32();
        skipConstExpr(r!);
        w.bytes(bytes.subarray(flagsAt, r!.pos));
        const count = r!.u32();
        w.u32(count);
        for (let j = 0; j < count; j++) w.u32(remap(r!.u32()));
      }
      if (ctx.lazy) {
        // Passive, funcref: every defined function (an active segment would cost every instantiation time in proportion).
        w.u8(1).u8(0).u32(nDefined);
        for (let i = 0; i < nDefined; i++) w.u32(ctx.nImports + ctx.shift + i);
      }
      out.section(SectionId.Element, w.finish());
    }
  }
  copy(SectionId.DataCount);
  let sites = 0;
  {
    const w = new ByteWriter(bytes.length + 1024).u32(nDefined + appended);
    const hints = new ByteWriter();
    let hinted = 0;
    for (let i = 0; i < nDefined; i++) {
      const b = m.bodies[i]!;
      if (!ctx.checked[i]) {
        w.range(bytes, b.start, b.end);
        continue;
      }
      const r = instrumentFunction(ctx, i, false, w);
      sites += r.sites;
      if (r.unlikely.length === 0) continue;
      hinted++;
      appendHints(hints, ctx.nImports + ctx.shift + i, r.unlikely);
    }
    ctx.indirectHelpers.forEach((t) => {
      // `(params…, index) → call_indirect t (params…) index`
      const params = m.types[t]!.params.length;
      const body = new ByteWriter().u8(0);
      for (let l = 0; l <= params; l++) body.u8(Opcode.LocalGet).u32(l);
      body.u8(Opcode.CallIndirect).u32(t).u32(0).u8(Opcode.End);
      w.u32(body.length).bytes(body.view());
    });
    if (ctx.lazy) {
      // The filler (called by the host before the instance's first rewind):
      // `table.grow funcs (ref.null func, 2n); table.init segment funcs (0, 0, n)`.
      const body = new ByteWriter().u8(0);
      body.u8(0xd0).u8(0x70).u8(Opcode.I32Const).s32(2 * nDefined).u8(Opcode.PrefixFC).u32(15).u32(ctx.funcsTable).u8(Opcode.Drop);
      body.u8(Opcode.I32Const).u8(0).u8(Opcode.I32Const).u8(0).u8(Opcode.I32Const).s32(nDefined);
      body.u8(Opcode.PrefixFC).u32(12).u32(programSegments).u32(ctx.funcsTable).u8(Opcode.End);
      w.u32(body.length).bytes(body.view());
    }
    if (ctx.loopHelper >= 0) {
      const body = loopHelperBody(ctx);
      w.u32(body.length).bytes(body);
    }
    if (hinted > 0) out.section(0, branchHintSection(hinted, hints));
    // (views, not copies: out.section copies them at once)
    out.section(SectionId.Code, w.view());
  }
  copy(SectionId.Data);
  return { bytes: out.finish(), sites };
}

/** One function's entry of the branch hint section: its hot-to-cold branches, each hinted unlikely. */
function appendHints(hints: ByteWriter, func: number, unlikely: number[]): void {
  hints.u32(func).u32(unlikely.length);
  for (const at of unlikely) hints.u32(at).u32(1).u8(0);
}

/** The branch hinting proposal's section (it must precede the code section). */
function branchHintSection(functions: number, hints: ByteWriter): Uint8Array {
  return new ByteWriter(hints.length + 64).name('metadata.code.branch_hint').u32(functions).bytes(hints.view()).view();
}

/** The type section: the program's types, then any the internal imports need (also fills ctx's import type indices). */
function typeSection(ctx: ModuleContext): Uint8Array {
  const { m } = ctx;
  const typeIndex = new Map<string, number>();
  m.types.forEach((t, i) => {
    const k = typeKey(t);
    if (!typeIndex.has(k)) typeIndex.set(k, i);
  });
  const extraTypes: FuncType[] = [];
  /** The index of type `t`: the program's, or one appended. */
  const typeFor = (t: FuncType): number => {
    let i = typeIndex.get(typeKey(t));
    if (i === undefined) {
      i = m.types.length + extraTypes.length;
      typeIndex.set(typeKey(t), i);
      extraTypes.push(t);
    }
    return i;
  };
  for (const k of ctx.importKeys) ctx.importType[k] = typeFor(IMPORT_TYPES[k]);
  if (ctx.loopHelper >= 0) ctx.loopHelperType = typeFor({ params: [I32 as ValTypeCode], results: [I32 as ValTypeCode] });
  ctx.indirectHelperType = ctx.indirectHelpers.map((t) => typeFor({ params: [...m.types[t]!.params, I32 as ValTypeCode], results: m.types[t]!.results }));
  if (ctx.lazy) {
    for (const t of m.types) {
      const c: FuncType = { params: [], results: t.results };
      if (!ctx.copyTypes.has(typeKey(c))) ctx.copyTypes.set(typeKey(c), typeFor(c));
    }
  }
  const w = new ByteWriter().u32(m.types.length + extraTypes.length);
  const s = m.sections.find((x) => x.id === SectionId.Type);
  if (s) {
    const r = new ByteReader(m.bytes, s.payloadStart, s.end);
    r.u32();
    w.bytes(m.bytes.subarray(r.pos, s.end));
  }
  for (const t of extraTypes) {
    w.u8(0x60).u32(t.params.length);
    for (const p of t.params) w.u8(p);
    w.u32(t.results.length);
    for (const p of t.results) w.u8(p);
  }
  return w.finish();
}

/**
 * The import section's contents: the program's imports, then the internal
 * ones (after typeSection), and `extra` more entries that the caller
 * appends to the writer returned.
 */
function importSection(ctx: ModuleContext, extra = 0): ByteWriter {
  const { m } = ctx;
  const w = new ByteWriter().u32(m.imports.length + ctx.importKeys.length + extra);
  const s = m.sections.find((x) => x.id === SectionId.Import);
  if (s) {
    const r = new ByteReader(m.bytes, s.payloadStart, s.end);
    r.u32();
    w.bytes(m.bytes.subarray(r.pos, s.end));
  }
  for (const k of ctx.importKeys) w.name(INTERNAL_IMPORT_MODULE).name(InternalImport[k]).u8(ExternalKind.Function).u32(ctx.importType[k]!);
  return w;
}

/**
 * Rewind copies (docs/runtime.md "Lazy rewind"): a module prepared with
 * `rewind: 'lazy'` has no rewind code; a rewind enters each function on
 * the saved stack with the state at 2, and the function hands over to its
 * copy in the funcs table. The copy of a function is a module of its own:
 * the function instrumented as with inline rewind (same sites, same frame
 * layout: its frames are the prepared function's), importing what the
 * prepared module has (its imports, and through exports its globals, its
 * table and its funcs table), and calling the prepared module's defined
 * functions through the funcs table. A frame that stays on the stack in a
 * copy (an event loop) keeps running there, at full speed, and unwinds and
 * rewinds as the prepared function would.
 */
export class RewindCopier {
  private readonly ctx: ModuleContext;
  private types: Uint8Array | undefined;

  /** `m` and `opts` as given to instrument() for the prepared module. */
  constructor(m: WasmModule, opts: InstrumentOptions) {
    this.ctx = analyzeModule(m, opts);
  }

  /** Number of function imports of the module (the first defined function's index). */
  get importedFunctions(): number {
    return this.ctx.nImports;
  }

  get definedFunctions(): number {
    return this.ctx.m.bodies.length;
  }

  /**
   * The copy of defined function `func` (absolute index): module bytes
   * exporting it as `InternalExport.copy`; `inline` when the prepared
   * function rewinds itself (no copy needed), undefined when it has no
   * sites (no frame can be saved from it) or is not a defined function.
   */
  copy(func: number): Uint8Array | 'inline' | undefined {
    const ctx = this.ctx;
    const { m } = ctx;
    const fi = func - ctx.nImports;
    if (!Number.isInteger(fi) || fi < 0 || fi >= m.bodies.length || !ctx.checked[fi] || !ctx.mayUnwind[fi]) return undefined;
    if (rewindsInline(ctx, fi)) return 'inline';
    this.types ??= typeSection(ctx);
    const out = new ByteWriter();
    out.bytes(m.bytes.subarray(0, 8));
    out.section(SectionId.Type, this.types);
    // What it calls: defined functions and call_indirect helpers of the prepared module, imported (in order of first call).
    const callees = new Map<number, number>();
    const indirect = new Map<number, number>();
    const list = instructionsOf(ctx, fi);
    let loops = false;
    for (let k = 0; k < list.count; k++) {
      const pos = list.starts[k]!;
      const o = m.bytes[pos];
      if (o === Opcode.Loop) loops = true;
      else if (o === Opcode.Call) {
        const x = u32At(m.bytes, pos + 1);
        if (x >= ctx.nImports && !callees.has(x)) callees.set(x, callees.size);
      } else if (o === Opcode.CallIndirect) {
        const t = u32At(m.bytes, pos + 1);
        if (!indirect.has(t)) indirect.set(t, indirect.size);
      }
    }
    // Imports: the prepared module's, then its defined globals, fuel and state (same global indices), the functions it calls, its memory.
    const defined = m.globals.length;
    const loopImport = loops && ctx.loopHelper >= 0;
    const w = importSection(ctx, defined + 2 + callees.size + indirect.size + (loopImport ? 1 : 0) + (m.memories.length ? 1 : 0));
    const firstDefined = ctx.fuelGlobal - defined;
    for (let g = 0; g < defined; g++) {
      const def = m.globals[g]!;
      w.name(COPY_IMPORT_MODULE).name(`${InternalExport.copyGlobalPrefix}${firstDefined + g}`).u8(ExternalKind.Global).u8(def.type).u8(def.mutable ? 1 : 0);
    }
    w.name(COPY_IMPORT_MODULE).name(InternalExport.fuel).u8(ExternalKind.Global).u8(I32).u8(1);
    w.name(COPY_IMPORT_MODULE).name(InternalExport.state).u8(ExternalKind.Global).u8(I32).u8(1);
    const base = ctx.nImports + ctx.shift;
    for (const [x, k] of callees) {
      w.name(COPY_IMPORT_MODULE).name(`${InternalExport.copyFunctionPrefix}${x}`).u8(ExternalKind.Function).u32(m.functions[x - ctx.nImports]!);
      callees.set(x, base + k);
    }
    for (const [t, k] of indirect) {
      w.name(COPY_IMPORT_MODULE).name(`${InternalExport.copyIndirectPrefix}${t}`).u8(ExternalKind.Function).u32(ctx.indirectHelperType[ctx.indirectHelpers.indexOf(t)]!);
      indirect.set(t, base + callees.size + k);
    }
    if (loopImport) w.name(COPY_IMPORT_MODULE).name(InternalExport.loopHelper).u8(ExternalKind.Function).u32(ctx.loopHelperType);
    if (m.memories.length) w.name(COPY_IMPORT_MODULE).name(InternalExport.copyMemory).u8(ExternalKind.Memory).u8(0).u32(m.memories[0]!.min);
    out.section(SectionId.Import, w.finish());
    out.section(SectionId.Function, new ByteWriter().u32(1).u32(copyType(ctx, m.types[m.functions[fi]!]!)).finish());
    const index = base + callees.size + indirect.size + (loopImport ? 1 : 0);
    out.section(SectionId.Export, new ByteWriter().u32(1).name(InternalExport.copy).u8(ExternalKind.Function).u32(index).finish());
    const code = new ByteWriter().u32(1);
    copyCallees = callees;
    copyIndirect = indirect;
    loopCall = loopImport ? base + callees.size + indirect.size : -1;
    const r = instrumentFunction(ctx, fi, false, code, undefined, true);
    if (r.unlikely.length) {
      const hints = new ByteWriter();
      appendHints(hints, index, r.unlikely);
      out.section(0, branchHintSection(1, hints));
    }
    out.section(SectionId.Code, code.view());
    // The module's name (name section, module name subsection): V8 puts it in stack traces, where trap-frames.ts finds frames of copies.
    const moduleName = new ByteWriter().name(`${COPY_MODULE_NAME_PREFIX}${func}`).finish();
    out.section(0, new ByteWriter().name('name').u8(0).u32(moduleName.length).bytes(moduleName).finish());
    return out.finish();
  }
}

/**
 * Frame layouts of the functions of a module as `instrument` makes them
 * (same module, same options): what a saved frame holds, for turning raw
 * frames into frames of the original module and back.
 */
export class UnwindLayouts {
  private readonly ctx: ModuleContext;
  private readonly cache = new Map<number, FunctionLayout>();
  constructor(m: WasmModule, opts: InstrumentOptions) {
    this.ctx = analyzeModule(m, opts);
  }

  /** Layout of defined function `func` (absolute index); undefined for imports, functions out of range and functions without checks. */
  get(func: number): FunctionLayout | undefined {
    const fi = func - this.ctx.nImports;
    if (!Number.isInteger(fi) || fi < 0 || fi >= this.ctx.m.bodies.length || !this.ctx.checked[fi]) return undefined;
    let l = this.cache.get(func);
    if (!l) {
      l = instrumentFunction(this.ctx, fi, true, new ByteWriter()).layout!;
      this.cache.set(func, l);
    }
    return l;
  }

  /**
   * The offset in the original code section (as SiteLayout.offset) of the
   * instruction at `bodyOffset` from the start of defined function `func`'s
   * body entry in the instrumented module (where an engine reported a trap
   * or a call); undefined when it is not one of the original's instructions
   * (code the transform added).
   */
  originalOffset(func: number, bodyOffset: number): number | undefined {
    const { ctx } = this;
    const fi = func - ctx.nImports;
    const body = Number.isInteger(fi) && fi >= 0 ? ctx.m.bodies[fi] : undefined;
    if (!body || !Number.isInteger(bodyOffset) || bodyOffset < 0) return undefined;
    if (!ctx.checked[fi]) {
      // Copied as it was.
      const at = body.start + bodyOffset;
      return at >= body.codeStart && at < body.end ? at - ctx.codeBase : undefined;
    }
    const origins: CodeOrigins = { at: [], from: [], length: [] };
    const out = new ByteWriter();
    const r = instrumentFunction(ctx, fi, false, out, origins);
    let c = bodyOffset - r.codeStart;
    if (r.restoreLength && c >= r.restoreAt) {
      // The rewind prologue was inserted here after the origins were recorded.
      if (c < r.restoreAt + r.restoreLength) return undefined;
      c -= r.restoreLength;
    }
    // The last run that starts at or before c.
    let lo = 0;
    let hi = origins.at.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (origins.at[mid]! <= c) lo = mid + 1;
      else hi = mid;
    }
    const k = lo - 1;
    if (k < 0 || c >= origins.at[k]! + origins.length[k]!) return undefined;
    // An emitted call (its function index may have another length) maps to the call; copied code byte for byte.
    const op0 = ctx.m.bytes[origins.from[k]!];
    const from = op0 === Opcode.Call || op0 === Opcode.CallIndirect ? origins.from[k]! : origins.from[k]! + (c - origins.at[k]!);
    return from - ctx.codeBase;
  }
}
