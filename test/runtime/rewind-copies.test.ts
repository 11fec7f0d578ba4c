/**
 * Lazy rewind (docs/runtime.md): the prepared module has no rewind code,
 * and a rewind runs copies of the functions on the stack. These tests hold
 * the copies to the transform with inline rewind: same frames, same
 * results, and clear failures.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { instrument } from '../../src/prepare/instrument.js';
import { INTERNAL_IMPORT_MODULE, InternalExport } from '../../src/prepare/internal.js';
import type { Profile } from '../../src/prepare/profile.js';
import { InstanceRewindCopies, RewindCopyCompiler } from '../../src/runtime/rewind-copies.js';
import { encodeRawStack, RewindError, Unwinder, UnwindState } from '../../src/runtime/unwinder.js';
import { parseModule } from '../../src/wasm/module.js';
import { forcedYield } from '../helpers/forced-unwinds.js';
import { runProgram } from '../helpers/runtime.js';
import { wat } from '../helpers/wat.js';

/** Recursion with values of every type in locals and on the operand stack across calls, a loop, an if and a call_indirect. */
const PROGRAM = wat(`(module
  (type $t (func (param i32 i64) (result f64)))
  (table 2 funcref)
  (elem (i32.const 0) $leaf $walk)
  (memory 1)
  (global $g (mut i64) (i64.const 7))
  (func $leaf (type $t) (param i32 i64) (result f64)
    (local f32)
    (local.set 2 (f32.convert_i32_s (local.get 0)))
    (loop $l
      (local.set 2 (f32.add (local.get 2) (f32.const 0.5)))
      (br_if $l (f32.lt (local.get 2) (f32.convert_i32_s (i32.add (local.get 0) (i32.const 3))))))
    (f64.add (f64.promote_f32 (local.get 2)) (f64.convert_i64_s (local.get 1))))
  (func $walk (type $t) (param i32 i64) (result f64)
    (local f64 i32)
    (if (result f64) (i32.le_s (local.get 0) (i32.const 0))
      (then (call_indirect (type $t) (i32.const 3) (local.get 1) (i32.const 0)))
      (else
        (f64.add
          (f64.convert_i64_s (i64.mul (global.get $g) (local.get 1)))
          (f64.mul
            (call $walk (i32.sub (local.get 0) (i32.const 1)) (i64.add (local.get 1) (i64.const 1)))
            (call_indirect (type $t) (i32.sub (local.get 0) (i32.const 1)) (i64.const 2) (i32.rem_u (local.get 0) (i32.const 2))))))))
  (func (export "run") (result f64)
    (local i32 f64)
    (loop $again
      (local.set 1 (f64.add (local.get 1) (call $walk (local.get 0) (i64.extend_i32_u (local.get 0)))))
      (global.set $g (i64.add (global.get $g) (i64.const 1)))
      (i32.store (i32.const 16) (local.get 0))
      (local.set 0 (i32.add (local.get 0) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get 0) (i32.const 6))))
    (local.get 1)))`);

interface Run {
  result: number;
  stacks: string[];
  installs: number;
}

/** Runs `run` with an unwind forced at every check; each unwound stack (encoded) is recorded. */
function forcedRun(rewind: 'lazy' | 'inline', profile: Profile): Run {
  const m = parseModule(PROGRAM);
  const out = instrument(m, { profile, unwindingImports: new Set(), fuelChunk: 1, rewind });
  const unwinder = new Unwinder();
  let active = false;
  const imports = { [INTERNAL_IMPORT_MODULE]: unwinder.imports(forcedYield(unwinder, () => true, () => active)) } as WebAssembly.Imports;
  const inst = new WebAssembly.Instance(new WebAssembly.Module(out.bytes as Uint8Array<ArrayBuffer>), imports);
  const copies = new InstanceRewindCopies(new RewindCopyCompiler({ module: PROGRAM, profile, unwindingImports: [], breakpoints: [], codeOffsetShift: 0, fuelChunk: 1 }), imports, inst.exports);
  let installs = 0;
  unwinder.bind(inst.exports, {
    install(stack) {
      installs++;
      if (rewind === 'lazy') copies.install(stack);
    },
  });
  const stacks: string[] = [];
  active = true;
  for (;;) {
    const result = (inst.exports['run'] as () => number)();
    if (unwinder.state !== UnwindState.Unwinding) return { result, stacks, installs };
    const stack = unwinder.finishUnwind();
    stacks.push(Buffer.from(encodeRawStack(stack)).toString('hex'));
    unwinder.startRewind(stack);
  }
}

describe('lazy rewind', () => {
  it('saves the frames that inline rewind saves, and computes the same, with an unwind at every check', () => {
    const raw = (new WebAssembly.Instance(new WebAssembly.Module(PROGRAM as Uint8Array<ArrayBuffer>)).exports['run'] as () => number)();
    const lazy = forcedRun('lazy', 'suspend-anywhere');
    const inline = forcedRun('inline', 'suspend-anywhere');
    assert.equal(lazy.result, raw);
    assert.equal(inline.result, raw);
    assert.ok(lazy.stacks.length > 100, `only ${lazy.stacks.length} unwinds`);
    assert.deepEqual(lazy.stacks, inline.stacks);
    // Every rewind went through the copies.
    assert.equal(lazy.installs, lazy.stacks.length);
  });

  it('makes the prepared module smaller than with inline rewind', () => {
    const m = parseModule(PROGRAM);
    for (const profile of ['suspend-anywhere', 'io-suspend'] as const) {
      const lazy = instrument(m, { profile, unwindingImports: new Set(), rewind: 'lazy' });
      const inline = instrument(m, { profile, unwindingImports: new Set(), rewind: 'inline' });
      if (profile === 'suspend-anywhere') assert.ok(lazy.bytes.length < inline.bytes.length, `${lazy.bytes.length} >= ${inline.bytes.length}`);
      // (io-suspend: nothing here can unwind, so nothing is lazy and nothing changes)
      else assert.deepEqual(lazy.bytes, inline.bytes);
    }
  });

  it('fails a rewind into a function that cannot hold a frame with a clear error, before any code runs', () => {
    const m = parseModule(PROGRAM);
    const profile = 'io-suspend';
    // Under io-suspend nothing here unwinds: no function can hold a frame.
    const bytes = instrument(m, { profile, unwindingImports: new Set() }).bytes;
    const unwinder = new Unwinder();
    const imports = { [INTERNAL_IMPORT_MODULE]: unwinder.imports(() => {}) } as WebAssembly.Imports;
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), imports);
    assert.equal(inst.exports[InternalExport.funcs], undefined);
    const copies = new InstanceRewindCopies(new RewindCopyCompiler({ module: PROGRAM, profile, unwindingImports: [], breakpoints: [], codeOffsetShift: 0 }), imports, inst.exports);
    unwinder.bind(inst.exports, copies);
    assert.throws(() => unwinder.startRewind([{ func: 1, site: 0, values: [] }]), (e: unknown) => e instanceof RewindError && /function 1, which cannot be rewound/.test(e.message));
    assert.throws(() => unwinder.startRewind([{ func: 99, site: 0, values: [] }]), RewindError);
  });

  for (const padded of [true, false]) {
    it(`reports a trap in a copy with its function (a loop that blocked, then trapped; ${padded ? 'main past 1 KiB: in its copy' : 'main small: rewound inline'})`, async () => {
      // main blocks in io (an unwind and a rewind), then traps. A function that may block keeps its rewind code inline below 1 KiB.
      const padding = padded ? '(drop (i32.const 100000))'.repeat(300) : '';
      const bytes = wat(`(module
        (import "env" "__gate_io_65536" (func $io (param i32 i32 i32 i32 i32 i32 i64 i32)))
        (memory 1)
        (func $explode (param i32) (result i32) (if (i32.eq (local.get 0) (i32.const 3)) (then unreachable)) (local.get 0))
        (func (export "main") (local i32)
          ${padding}
          (loop $l
            (call $io (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 1000000) (i32.const 0))
            (local.set 0 (call $explode (i32.add (local.get 0) (i32.const 1))))
            (br $l))))`);
      for (const profile of ['suspend-anywhere', 'io-suspend'] as const) {
        const r = await runProgram(bytes, { profile, entry: 'main' });
        assert.equal(r.status.state, 'KILLED', profile);
        assert.equal(r.status.cause, 'UNREACHABLE', profile);
        // explode (function 1) in the prepared module, called by main (function 2): in its copy there is no offset.
        assert.deepEqual(r.instance.trapBacktrace?.map((f) => [f.function, f.offset === undefined]), [[1, false], [2, padded]], profile);
      }
    });
  }
});
