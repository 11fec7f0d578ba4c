/**
 * Where a wasm trap happened, frame by frame, in terms the trusted side can
 * map back to the original program (runtime/program.ts `trapBacktrace`):
 * V8 names each wasm frame of a RuntimeError's stack
 * `wasm-function[N]:0xOFFSET`, N in the prepared module's function index
 * space and OFFSET from the start of the prepared module. The executor
 * turns them into (function of the original module, offset from the start
 * of the prepared function's body entry); it keeps only where each prepared
 * module's bodies start, not the module's bytes.
 */
import { functionBodyEntries } from '../wasm/module.js';
import { COPY_MODULE_NAME_PREFIX, INTERNAL_IMPORT_MODULE } from '../prepare/internal.js';

const COPY_FRAME = new RegExp(`^${COPY_MODULE_NAME_PREFIX}(\\d+)-`);

/** At most this many frames travel (the innermost ones). */
export const MAX_TRAP_FRAMES = 64;

interface CodeLayout {
  /** Function imports of the program (before the runtime's `__gate` ones). */
  programImports: number;
  /** The runtime's appended function imports. */
  internalImports: number;
  /** Per defined function: byte offset of its body entry (its size) in the module. */
  bodyStarts: Uint32Array;
}

const layouts = new WeakMap<WebAssembly.Module, CodeLayout>();

/** Remembers where the bodies of a compiled prepared module start (call it where the module is compiled). */
export function recordCodeLayout(module: WebAssembly.Module, bytes: Uint8Array): void {
  layouts.set(module, { ...importCounts(module), bodyStarts: functionBodyEntries(bytes).starts });
}

function importCounts(module: WebAssembly.Module): { programImports: number; internalImports: number } {
  let programImports = 0;
  let internalImports = 0;
  for (const i of WebAssembly.Module.imports(module)) {
    if (i.kind !== 'function') continue;
    if (i.module === INTERNAL_IMPORT_MODULE) internalImports++;
    else programImports++;
  }
  return { programImports, internalImports };
}

/**
 * The wasm frames of a trap, innermost first, as a flat list `[function,
 * bodyOffset, …]`: the function in the original module's index space, and
 * the offset from its prepared body entry (-1 when unknown). Frames of the
 * runtime's own imports are left out.
 */
export function trapFramesOf(e: Error, module: WebAssembly.Module): number[] {
  const layout = layouts.get(module) ?? { ...importCounts(module), bodyStarts: new Uint32Array(0) };
  const out: number[] = [];
  const re = /wasm:\/\/wasm\/([^:\s]*):wasm-function\[(\d+)\]:0x([0-9a-f]+)/g;
  const stack = e.stack ?? '';
  for (let m = re.exec(stack); m && out.length < 2 * MAX_TRAP_FRAMES; m = re.exec(stack)) {
    const copy = COPY_FRAME.exec(m[1]!);
    if (copy) {
      // A rewind copy (prepare/instrument.ts RewindCopier), named after its function: the offset is in the copy, not the prepared body.
      out.push(Number(copy[1]), -1);
      continue;
    }
    const prepared = Number(m[2]);
    const offset = parseInt(m[3]!, 16);
    const defined = prepared - layout.programImports - layout.internalImports;
    if (defined < 0) continue;
    const start = layout.bodyStarts[defined];
    out.push(layout.programImports + defined, start === undefined || offset < start ? -1 : offset - start);
  }
  return out;
}
