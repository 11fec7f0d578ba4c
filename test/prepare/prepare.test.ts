import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryCache } from '../../src/prepare/cache.js';
import { prepare } from '../../src/prepare/pipeline.js';
import { InternalExport, rewriteModule } from '../../src/prepare/rewrite.js';
import { parseModule, SectionId } from '../../src/wasm/module.js';
import { decodePreparedInstructions, Opcode } from '../../src/wasm/code.js';
import { ByteReader } from '../../src/wasm/leb128.js';
import { instrument } from '../../src/prepare/instrument.js';
import { INTERNAL_IMPORT_MODULE } from '../../src/prepare/internal.js';
import { runProgram } from '../helpers/runtime.js';
import { wat } from '../helpers/wat.js';

const LOOPS = wat(`(module
  (import "env" "__wasi_sched_yield" (func $sy (result i32)))
  (memory 1)
  (global $g (mut i32) (i32.const 7))
  (func $fib (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2)) (then (local.get 0))
      (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1))) (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func $leaf (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func (export "run") (result i32)
    (local $i i32) (local $s i32)
    (loop $l
      (local.set $s (i32.add (local.get $s) (call $fib (i32.const 20))))
      (local.set $s (call $leaf (local.get $s)))
      (drop (call $sy))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10))))
    (local.get $s))
  (start $st)
  (func $st (global.set $g (i32.const 9))))`);

const IMPORTS = [{ module: 'wasi' as const, name: 'sched_yield' }];

describe('rewrite', () => {
  it('drops the start section so that instantiation runs no program code', () => {
    const r = rewriteModule(parseModule(LOOPS), { imports: IMPORTS });
    const m = parseModule(r.bytes);
    assert.equal(m.start, undefined);
    assert.ok(m.exports.some((e) => e.name === InternalExport.start));
  });
});

describe('instrument', () => {
  it('adds checks and sites: every loop and calling function under suspend-anywhere, only blocking paths under io-suspend', () => {
    const m = parseModule(rewriteModule(parseModule(LOOPS), { imports: IMPORTS }).bytes);
    // suspend-anywhere: the loop's check, the entry checks of fib and run, 3 call sites in run's loop
    // (fib, leaf is a leaf, sched_yield) and 2 in fib.
    const anywhere = instrument(m, { profile: 'suspend-anywhere', unwindingImports: new Set([0]) });
    assert.equal(anywhere.sites, 1 + 2 + 2 + 2);
    // io-suspend: only the call of sched_yield.
    const io = instrument(m, { profile: 'io-suspend', unwindingImports: new Set([0]) });
    assert.equal(io.sites, 1);
    const mod = new WebAssembly.Module(anywhere.bytes as Uint8Array<ArrayBuffer>);
    const imports = WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name}:${i.kind}`);
    assert.deepEqual(imports.slice(0, 2), ['wasi.sched_yield:function', 'gate.memory:memory']);
    assert.ok(imports.includes(`${INTERNAL_IMPORT_MODULE}.yield:function`));
    const exports = WebAssembly.Module.exports(mod).map((e) => e.name);
    for (const name of ['run', InternalExport.start, InternalExport.fuel, InternalExport.state, `${InternalExport.globalPrefix}0`]) {
      assert.ok(exports.includes(name), `missing export ${name}`);
    }
  });
  it('marks the cold branches of the checks in a branch hint section that V8 can read, and only those', () => {
    // A program's own hint section (here: garbage) never reaches the engine.
    const name = new TextEncoder().encode('metadata.code.branch_hint');
    const payload = [name.length, ...name, 1, 5, 1, 3, 1, 1];
    const withHints = new Uint8Array([...LOOPS, 0, payload.length, ...payload]);
    assert.ok(parseModule(withHints).sections.some((s) => s.name === 'metadata.code.branch_hint'));
    const m = parseModule(rewriteModule(parseModule(withHints), { imports: IMPORTS }).bytes);
    for (const profile of ['suspend-anywhere', 'io-suspend'] as const) {
      const r = instrument(m, { profile, unwindingImports: new Set([0]) });
      const out = parseModule(r.bytes, { prepared: true });
      const at = out.sections.findIndex((s) => s.name === 'metadata.code.branch_hint');
      assert.ok(at >= 0, `${profile}: no branch hint section`);
      assert.equal(out.sections.filter((s) => s.name === 'metadata.code.branch_hint').length, 1);
      // The proposal places it before the code section.
      assert.equal(out.sections[at + 1]!.id, SectionId.Code, profile);
      const section = out.sections[at]!;
      const reader = new ByteReader(r.bytes, section.payloadStart, section.end);
      const nImports = out.imports.filter((i) => i.kind === 0).length;
      const stateGlobal = out.exports.find((e) => e.name === InternalExport.state)!.index;
      let lastFunc = -1;
      let hints = 0;
      for (let n = reader.u32(); n > 0; n--) {
        const func = reader.u32();
        assert.ok(func > lastFunc && func >= nImports, `${profile}: function ${func} out of order`);
        lastFunc = func;
        const body = out.bodies[func - nImports]!;
        const starts = new Map<number, number>();
        // The instruction before each (a site's state test, `global.get $state; br_if`, is not hinted: see instrument.ts unwindCheck).
        const before = new Map<number, number>();
        let last = -1;
        decodePreparedInstructions(r.bytes, body, (op, _sub, pos) => {
          starts.set(pos - body.bodyStart, op);
          before.set(pos - body.bodyStart, last);
          last = pos;
        });
        let lastOffset = -1;
        for (let k = reader.u32(); k > 0; k--) {
          const offset = reader.u32();
          assert.ok(offset > lastOffset, `${profile}: offsets out of order in function ${func}`);
          lastOffset = offset;
          assert.equal(reader.u32(), 1);
          assert.equal(reader.u8(), 0, 'every hint says "unlikely"');
          const op = starts.get(offset);
          assert.ok(op === Opcode.If || op === Opcode.BrIf, `${profile}: function ${func} offset ${offset} is ${op === undefined ? 'not an instruction' : `opcode 0x${op.toString(16)}`}`);
          const prev = before.get(offset)!;
          assert.ok(!(r.bytes[prev] === Opcode.GlobalGet && r.bytes[prev + 1] === stateGlobal), `${profile}: function ${func} offset ${offset}: a site's state test is hinted`);
          hints++;
        }
      }
      assert.ok(reader.eof());
      // At least the checks: fib's entry and the loop's header.
      assert.ok(hints >= 2, `${profile}: ${hints} hints`);
    }
  });
});

describe('prepare', () => {
  it('is deterministic and cached by content', async () => {
    const m = parseModule(LOOPS);
    const cache = new MemoryCache();
    const opts = { profile: 'suspend-anywhere' as const, imports: IMPORTS, unwindingImports: new Set(['wasi.sched_yield']), cache };
    const a = await prepare(m, opts);
    const b = await prepare(parseModule(LOOPS), { ...opts, cache: undefined });
    assert.deepEqual(a.bytes, b.bytes);
    assert.equal(a.fromCache, false);
    const c = await prepare(m, opts);
    assert.equal(c.fromCache, true);
    assert.equal(c.key, a.key);
    const io = await prepare(m, { ...opts, profile: 'io-suspend' });
    assert.notEqual(io.key, a.key);
    assert.ok(io.bytes.length < a.bytes.length, 'io-suspend instruments less code');
  });

});

describe('indirect calls', () => {
  const IO = `(import "env" "__gate_io_65536" (func $io (param i32 i32 i32 i32 i32 i32 i64 i32)))`;
  const blocking = wat(`(module ${IO}
    (type $v (func))
    (memory 1)
    (table 1 funcref)
    (elem (i32.const 0) $wait)
    (func $wait (call $io (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 50000000) (i32.const 0)))
    (func (export "main") (call_indirect (type $v) (i32.const 0)) (call_indirect (type $v) (i32.const 0))))`);
  const leafTable = wat(`(module ${IO}
    (type $c (func (param i32 i32) (result i32)))
    (memory 1)
    (table 1 funcref)
    (elem (i32.const 0) $cmp)
    (func $cmp (param i32 i32) (result i32) (i32.sub (local.get 0) (local.get 1)))
    (func (export "main")
      (drop (call_indirect (type $c) (i32.const 1) (i32.const 2) (i32.const 0)))
      (call $io (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 50000000) (i32.const 0))))`);

  it('knows when a table function may unwind', () => {
    const io = new Set([0]);
    for (const [bytes, sites] of [[blocking, 3], [leafTable, 1]] as const) {
      const m = parseModule(rewriteModule(parseModule(bytes), { imports: [{ module: 'gate', name: 'io' }] }).bytes);
      // blocking: wait's call of io and main's two indirect calls; leafTable: only the call of io
      assert.equal(instrument(m, { profile: 'io-suspend', unwindingImports: io }).sites, sites);
    }
  });

  it('blocks and resumes correctly through an indirect call (both profiles)', async () => {
    for (const profile of ['io-suspend', 'suspend-anywhere'] as const) {
      const { status } = await runProgram(blocking, { profile, entry: 'main' });
      assert.deepEqual(status, { state: 'HALTED', result: 0 }, profile);
      const leaf = await runProgram(leafTable, { profile, entry: 'main' });
      assert.deepEqual(leaf.status, { state: 'HALTED', result: 0 }, profile);
    }
  });
});
