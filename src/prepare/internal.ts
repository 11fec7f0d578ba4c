/**
 * Names shared by the instrumented module and the runtime that drives it.
 * Kept apart from the transform so that executors load only this.
 */

/** Names the prepared module exports for the runtime (never visible to programs). */
export const InternalExport = {
  /** i32 global: preemption fuel (see instrument.ts). */
  fuel: '__gate_fuel',
  /** i32 global: 0 normal, 1 unwinding, 2 rewinding. */
  state: '__gate_state',
  start: '__gate_start',
  globalPrefix: '__gate_g',
  /** Setter and getter of a mutable float global's bits (an integer of its width). */
  globalSetPrefix: '__gate_gs',
  globalGetPrefix: '__gate_gg',
  /** Lazy rewind (instrument.ts RewindCopier): the table of defined functions and, above them, their rewind copies. */
  funcs: '__gate_funcs',
  /** Lazy rewind: fills the funcs table (called before an instance's first rewind). */
  fillFuncs: '__gate_fill',
  /** The loop helper (instrument.ts loopHelperBody), for rewind copies to import. */
  loopHelper: '__gate_loop',
  /** Lazy rewind: a call_indirect of type N for rewind copies (instrument.ts ModuleContext.indirectHelpers); the program's defined globals by absolute index and its memory, for copies to import. */
  copyIndirectPrefix: '__gate_ci',
  /** Lazy rewind: how a rewind copy imports defined function N (the host takes it from the funcs table). */
  copyFunctionPrefix: 'f',
  copyGlobalPrefix: '__gate_cg',
  copyMemory: '__gate_cmem',
  /** What a rewind copy module exports: its one function. */
  copy: 'f',
} as const;

/** A rewind copy of function N is the module named this + N (its name section; V8 shows it in stack traces). */
export const COPY_MODULE_NAME_PREFIX = '__gate_copy_';

/** Module name under which a rewind copy imports the prepared module's exports (InternalExport). */
export const COPY_IMPORT_MODULE = '__gate_p';

export const INTERNAL_PREFIX = '__gate_';

/** Module name of the runtime's own imports (programs cannot import from it: abi/imports.ts knows only `gate`, `wasi` and `env`). */
export const INTERNAL_IMPORT_MODULE = '__gate';

/** The runtime's imports, in the order the transform appends them. */
export const InternalImport = {
  yield: 'yield',
  unwindFrame: 'unwind_frame',
  unwindI32: 'unwind_i32',
  unwindI64: 'unwind_i64',
  rewindFrame: 'rewind_frame',
  rewindI32: 'rewind_i32',
  rewindI64: 'rewind_i64',
  /** Several values at once, in order (the save block's calls: prepare/instrument.ts saveValues). */
  unwindI32x2: 'unwind_i32x2',
  unwindI32x4: 'unwind_i32x4',
  unwindI32x8: 'unwind_i32x8',
  unwindI64x2: 'unwind_i64x2',
  unwindI64x4: 'unwind_i64x4',
  unwindI64x8: 'unwind_i64x8',
  /** (i32 offset): a debugger breakpoint; present only in modules prepared with breakpoints. */
  breakpoint: 'breakpoint',
} as const;
