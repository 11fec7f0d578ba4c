/**
 * A trap's backtrace in terms of the original program: the frames an
 * executor reported (trap-frames.ts: function, offset in the prepared body)
 * mapped back through the transform to offsets in the original code
 * section, with function names (name section) and source lines (DWARF),
 * when the module has them.
 */
import type { Profile } from '../prepare/profile.js';
import { functionNames } from '../wasm/debug-info.js';
import { readLineTable, sourceLocation, type LineRow, type SourceLocation } from '../wasm/dwarf-line.js';
import type { WasmModule } from '../wasm/module.js';
import type { Program } from './program.js';

/** One frame of a trap's backtrace, innermost first. */
export interface TrapFrame {
  /** Function index in the program. */
  function: number;
  /** Its name from the name section, if any. */
  name?: string;
  /** Byte offset of the trapping instruction (innermost frame) or of the call (the others), relative to the code section's contents; absent when unknown. */
  offset?: number;
  /** Source file, line and column from the module's DWARF line table, if any. */
  source?: SourceLocation;
}

const lineTables = new WeakMap<WasmModule, LineRow[]>();

/** The module's DWARF line table (empty when it has none or it cannot be read: DWARF is for people, never needed). */
export function sourceLines(m: WasmModule): LineRow[] {
  let rows = lineTables.get(m);
  if (!rows) {
    try {
      rows = readLineTable(m);
    } catch {
      rows = [];
    }
    lineTables.set(m, rows);
  }
  return rows;
}

/** Maps an executor's flat `[function, bodyOffset, …]` (untrusted: anything that does not fit is left out). */
export function trapBacktrace(program: Program, profile: Profile, breakpoints: readonly number[], raw: readonly number[]): TrapFrame[] {
  const m = program.module;
  const defined = m.importedFunctionCount + m.functions.length;
  const names = functionNames(m);
  const layouts = program.unwindLayouts(profile, breakpoints);
  const out: TrapFrame[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const func = raw[i]!;
    if (func < m.importedFunctionCount || func >= defined) continue;
    const frame: TrapFrame = { function: func };
    const name = names.get(func);
    if (name !== undefined) frame.name = name;
    const offset = raw[i + 1]! >= 0 ? layouts.originalOffset(func, raw[i + 1]!) : undefined;
    if (offset !== undefined) {
      frame.offset = offset;
      const source = sourceLocation(sourceLines(m), offset);
      if (source) frame.source = source;
    }
    out.push(frame);
  }
  return out;
}

/** `name (file:line:column)`, `function 12 at 0x1f`: a frame for people. */
export function describeTrapFrame(f: TrapFrame): string {
  const what = f.name ?? `function ${f.function}`;
  if (f.source) return `${what} (${f.source.file}:${f.source.line}:${f.source.column})`;
  return f.offset === undefined ? what : `${what} at 0x${f.offset.toString(16)}`;
}
