import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryCache } from '../../src/prepare/cache.js';
import { prepare } from '../../src/prepare/pipeline.js';
import { InternalExport, rewriteModule } from '../../src/prepare/rewrite.js';
import { parseModule } from '../../src/wasm/module.js';
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
  it('puts checks after loops and at entries of recursive functions only', () => {
    const r = rewriteModule(parseModule(LOOPS), { imports: IMPORTS, checks: true });
    assert.equal(r.loopChecks, 1);
    assert.equal(r.entryChecks, 2); // fib and run call; leaf does not
    const mod = new WebAssembly.Module(r.bytes as Uint8Array<ArrayBuffer>);
    const imports = WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name}:${i.kind}`);
    assert.deepEqual(imports, ['wasi.sched_yield:function', 'gate.memory:memory']);
    const exports = WebAssembly.Module.exports(mod).map((e) => e.name);
    for (const name of ['run', InternalExport.start, InternalExport.fuel, `${InternalExport.globalPrefix}0`, InternalExport.yieldStub]) {
      assert.ok(exports.includes(name), `missing export ${name}`);
    }
  });

  it('drops the start section so that instantiation runs no program code', () => {
    const r = rewriteModule(parseModule(LOOPS), { imports: IMPORTS, checks: false });
    const m = parseModule(r.bytes);
    assert.equal(m.start, undefined);
    assert.ok(m.exports.some((e) => e.name === InternalExport.start));
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

  it('produces modules with the asyncify control exports', async () => {
    for (const profile of ['suspend-anywhere', 'io-suspend'] as const) {
      const p = await prepare(parseModule(LOOPS), { profile, imports: IMPORTS, unwindingImports: new Set(['wasi.sched_yield']) });
      const mod = new WebAssembly.Module(p.bytes as Uint8Array<ArrayBuffer>);
      const names = WebAssembly.Module.exports(mod).map((e) => e.name);
      for (const n of ['asyncify_start_unwind', 'asyncify_stop_unwind', 'asyncify_start_rewind', 'asyncify_stop_rewind', 'asyncify_get_state']) {
        assert.ok(names.includes(n), `${profile}: missing ${n}`);
      }
    }
  });
});
