/**
 * V8 flags the runtime's code is made for, set in every Node process that
 * compiles prepared modules (executor processes, and processes that run an
 * in-process executor through the library's entry point).
 *
 * Branch hints. Prepared modules carry a `metadata.code.branch_hint`
 * section (the WebAssembly branch hinting proposal) that marks the
 * transform's cold paths — unwinding, rewinding, the yield at an exhausted
 * fuel check — as unlikely. V8's optimizing tier then moves that code out
 * of line and keeps its register moves off the hot path. V8 11–12
 * (Node 20–22) read the section only with `--experimental-wasm-branch-hinting`;
 * without it the section is ignored and programs run as before, only slower.
 *
 * Register allocation of large functions. TurboFan gives a function with
 * more than 8192 virtual registers to its "mid-tier" register allocator,
 * which is fast to run but keeps values in stack slots and emits moves at
 * every block boundary. The transform's unwind and rewind paths push large
 * functions over that line (sql.js's 35 KB VDBE interpreter becomes 74 KB
 * with about 4× the registers), and their code then grew from 100 KB to
 * 1.26 MB of machine code and ran 8.5× slower than the original: most of
 * the cost of suspend-anywhere on sql.js was instruction-cache misses in
 * that code (docs/runtime.md). So the fallback is off, and every function
 * gets the linear-scan allocator. Its cost grows about with the square of a
 * function's size (74 KB body: 5 s on a background thread and 177 MB of
 * compiler memory), which is why V8 has the fallback: a module with a body
 * larger than TOP_TIER_BODY_LIMIT turns it back on, for the rest of the
 * process's life (engineBeforeCompile), so that no program can make the
 * compiler take more than a bounded time and memory per function.
 */
import v8 from 'node:v8';
import { largestFunctionBody } from '../../wasm/module.js';

/**
 * Largest function body (bytes, in the prepared module) compiled with the
 * linear-scan register allocator: about 210 MB of compiler memory and 6 s
 * on one background thread at most (measured: 177 MB and 5 s for sql.js's
 * 74 KB VDBE under suspend-anywhere; the SQLite Gate program's largest is
 * 66 KB), and Node's V8 optimizes at most 4 functions at once.
 */
export const TOP_TIER_BODY_LIMIT = 80 * 1024;

let midTierFallback = false;

// Before any module is compiled: importing this module is what sets them (once per process).
v8.setFlagsFromString('--experimental-wasm-branch-hinting');
v8.setFlagsFromString('--no-turbo-use-mid-tier-regalloc-for-huge-functions');

/**
 * Call before compiling a prepared module in this process: a module with a
 * function body over TOP_TIER_BODY_LIMIT turns V8's mid-tier fallback for
 * huge functions back on (V8 reads the flag when it compiles a function, so
 * the module's later tier-ups see it). Returns whether the fallback is on.
 */
export function engineBeforeCompile(bytes: Uint8Array): boolean {
  if (!midTierFallback && largestFunctionBody(bytes) > TOP_TIER_BODY_LIMIT) {
    midTierFallback = true;
    v8.setFlagsFromString('--turbo-use-mid-tier-regalloc-for-huge-functions');
  }
  return midTierFallback;
}
