/**
 * V8 flags the runtime's code is made for, set in every Node process that
 * compiles prepared modules (executor processes, and processes that run an
 * in-process executor through the library's entry point).
 *
 * Prepared modules carry a `metadata.code.branch_hint` section (the
 * WebAssembly branch hinting proposal) that marks the transform's cold
 * paths — unwinding, rewinding, the yield at an exhausted fuel check — as
 * unlikely. V8's optimizing tier then moves that code out of line and keeps
 * its register moves off the hot path (sql.js under suspend-anywhere: about
 * 3.6× raw without the hints, 3.0× with them; docs/runtime.md). V8 11–12
 * (Node 20–22) read the section only with this flag; without it the
 * section is ignored and programs run as before, only slower.
 */
import v8 from 'node:v8';

// Before any module is compiled: importing this module is what sets it (once per process).
v8.setFlagsFromString('--experimental-wasm-branch-hinting');
