/**
 * Entry function resolution (spec abi.md §1.3).
 */
import { GateError } from '../errors.js';
import { ExternalKind, ValType, functionType, type FuncType, type WasmModule } from '../wasm/module.js';

/**
 * The requested entry function cannot be used. The web layer answers these
 * with 404 and the message as is (it is the original's public text).
 */
export class EntryError extends GateError {
  constructor(
    code: EntryErrorCode,
    message: string,
    /** The function name that was requested. */
    readonly requested: string,
  ) {
    super(code, message);
  }
}

export type EntryErrorCode = 'GATE_ENTRY_NOT_FOUND' | 'GATE_ENTRY_WITH_START' | 'GATE_ENTRY_SUSPENDED';

export const ENTRY_NOT_FOUND_MESSAGE = 'function not exported or it cannot be used as entry function';
export const ENTRY_WITH_START_MESSAGE = 'entry function may not be specified for program with _start function';
export const ENTRY_SUSPENDED_MESSAGE = 'entry function may not be specified for suspended program';

/** An export can be an entry function iff its type is `() -> ()` or `() -> i32`. */
export function isEntryType(t: FuncType): boolean {
  if (t.params.length !== 0) return false;
  return t.results.length === 0 || (t.results.length === 1 && t.results[0] === ValType.i32);
}

/** Names of the exported functions that can be used as entry functions, in export order. */
export function entryFunctionNames(m: WasmModule): string[] {
  const names: string[] = [];
  for (const e of m.exports) {
    if (e.kind !== ExternalKind.Function) continue;
    const t = functionType(m, e.index);
    if (t !== undefined && isEntryType(t)) names.push(e.name);
  }
  return names;
}

export interface EntryOptions {
  /** The module is a snapshot: its `_start` export is not considered. */
  snapshot: boolean;
  /**
   * The snapshot hides its exports (`gate.export`) or has a non-empty call
   * stack: no function may be requested.
   */
  suspended?: boolean;
}

export interface ResolvedEntry {
  /** Export name of the entry function; undefined: none (only the start section runs). */
  entry: string | undefined;
  /** Its function index, when there is one. */
  index: number | undefined;
}

function exportedFunction(m: WasmModule, name: string): number | undefined {
  for (const e of m.exports) if (e.kind === ExternalKind.Function && e.name === name) return e.index;
  return undefined;
}

/**
 * Chooses the entry function for a run of `m`. `requested` is the function
 * name given by the client (undefined or empty: none).
 */
export function resolveEntry(m: WasmModule, requested: string | undefined, options: EntryOptions): ResolvedEntry {
  const name = requested === '' ? undefined : requested;
  if (name !== undefined && options.suspended) {
    throw new EntryError('GATE_ENTRY_SUSPENDED', ENTRY_SUSPENDED_MESSAGE, name);
  }

  // The original checks the type of `_start` only when it would become the
  // implicit entry; any exported `_start` function forbids requesting another.
  const startIndex = options.snapshot ? undefined : exportedFunction(m, '_start');

  if (name === undefined) {
    if (startIndex !== undefined) {
      const t = functionType(m, startIndex);
      if (t !== undefined && isEntryType(t)) return { entry: '_start', index: startIndex };
    }
    return { entry: undefined, index: undefined };
  }

  if (startIndex !== undefined) throw new EntryError('GATE_ENTRY_WITH_START', ENTRY_WITH_START_MESSAGE, name);
  if (name === '_start') return { entry: undefined, index: undefined };

  const index = exportedFunction(m, name);
  const t = index === undefined ? undefined : functionType(m, index);
  if (index === undefined || t === undefined || !isEntryType(t)) {
    throw new EntryError('GATE_ENTRY_NOT_FOUND', ENTRY_NOT_FOUND_MESSAGE, name);
  }
  return { entry: name, index };
}
