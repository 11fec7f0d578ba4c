/**
 * Bounded, deterministic fuzzing of module loading: mutated versions of
 * valid modules must either load or fail with a GateError — never another
 * exception (a JS RangeError or TypeError would mean an unchecked path that
 * hostile input can reach) and never hang.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import binaryen from 'binaryen';

import { resolveImports } from '../../src/abi/imports.js';
import { resolveEntry } from '../../src/abi/entry.js';
import { GateError } from '../../src/errors.js';
import { decodeInstructions } from '../../src/wasm/code.js';
import { parseModule } from '../../src/wasm/module.js';
import { DEFAULT_LOCAL_LIMITS, DEFAULT_SERVER_LIMITS, validateModule } from '../../src/wasm/validate.js';
import { ModuleBuilder, I32, I64, uleb } from './wasm-builder.js';
import { mulberry32 } from '../helpers/prng.js';

function binaryenSeed(): Uint8Array {
  const wat = `(module
    (type $io (func (param i32 i32 i32 i32 i32 i32 i64 i32)))
    (import "env" "__gate_io_65536" (func $io (type $io)))
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_unstable" "random_get" (func $random (param i32 i32) (result i32)))
    (import "env" "__wasi_clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
    (memory 1 16)
    (table 4 funcref)
    (global $counter (mut i32) (i32.const 0))
    (global $big i64 (i64.const -1234567890123))
    (data (i32.const 16) "hello, world\\n")
    (elem (i32.const 1) $loop $main)
    (func $loop (param $n i32) (result i32)
      (local $acc i64) (local $f f32)
      (block $done
        (loop $again
          (br_if $done (i32.eqz (local.get $n)))
          (local.set $acc (i64.add (local.get $acc) (i64.extend_i32_u (local.get $n))))
          (local.set $f (f32.convert_i32_s (local.get $n)))
          (drop (i32.trunc_sat_f32_s (local.get $f)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $again)))
      (memory.copy (i32.const 100) (i32.const 16) (i32.const 13))
      (memory.fill (i32.const 200) (i32.const 0) (i32.const 8))
      (block $x (block $y (br_table $x $y $x (i32.wrap_i64 (local.get $acc)))))
      (i32.extend16_s (i32.wrap_i64 (local.get $acc))))
    (func $main
      (global.set $counter (call_indirect (param i32) (result i32) (i32.const 10) (i32.const 1)))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (drop (call $random (i32.const 300) (i32.const 16)))
      (drop (call $clock (i32.const 1) (i64.const 1000) (i32.const 320)))
      (call $io (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const -1) (i32.const 0))
      (if (i32.gt_s (memory.grow (i32.const 1)) (i32.const 0)) (then (unreachable))))
    (export "memory" (memory 0))
    (export "_start" (func $main))
    (export "loop" (func $loop))
    (start $main))`;
  const mod = binaryen.parseText(wat);
  mod.setFeatures(binaryen.Features.MVP | binaryen.Features.BulkMemory | binaryen.Features.NontrappingFPToInt | binaryen.Features.SignExt);
  const bytes = mod.emitBinary();
  mod.dispose();
  return bytes;
}

function builderSeed(): Uint8Array {
  const b = new ModuleBuilder();
  b.importFunc('gate', 'fd_65536', [], [I32]);
  b.importFunc('wasi_snapshot_preview1', 'proc_exit', [I32]);
  const f = b.func([I32, I64], [I32], [0x20, 0x00, 0x20, 0x01, 0xa7, 0x6a, 0x41, ...uleb(300), 0x6c, 0x0b], [[2, I32], [1, I64]]);
  const g = b.func([], [], [0x02, 0x40, 0x03, 0x40, 0x41, 0x00, 0x0d, 0x01, 0x0c, 0x00, 0x0b, 0x0b, 0x41, 0x01, 0x10, 0x01, 0x0b]);
  b.table(3).memory(1, 2).global(I32, true, [0x41, 0x05, 0x0b]);
  b.exportFunc('f', f).exportFunc('g', g).export('m', 2, 0);
  b.element(0, [f, g, f]);
  b.data(8, [1, 2, 3, 4]);
  b.custom('name', [0, 1, 2, 3]);
  b.custom('gate.snapshot', [1, 0]);
  return b.build();
}

const EMPTY = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);

function mutate(seed: Uint8Array, rand: () => number): Uint8Array {
  const int = (n: number): number => Math.floor(rand() * n);
  let bytes = Uint8Array.from(seed);
  const rounds = 1 + int(3);
  for (let r = 0; r < rounds; r++) {
    switch (int(7)) {
      case 0: {
        // Bit flips.
        const n = 1 + int(8);
        for (let i = 0; i < n && bytes.length > 0; i++) bytes[int(bytes.length)]! ^= 1 << int(8);
        break;
      }
      case 1:
        // Truncation.
        bytes = bytes.slice(0, int(bytes.length + 1));
        break;
      case 2: {
        // Replace a byte range with a LEB128 of random value and size (possibly over-long or unterminated).
        const at = int(bytes.length + 1);
        const value = [0, 1, 0x7f, 0x80, 0xffff, 0x10000, 0x7fffffff, 0xffffffff, int(0x100000000)][int(9)]!;
        const leb = [...uleb(value)];
        const pad = int(4);
        for (let i = 0; i < pad; i++) {
          leb[leb.length - 1]! |= 0x80;
          leb.push(i === pad - 1 && rand() < 0.8 ? 0x00 : 0x80);
        }
        const remove = int(6);
        bytes = Uint8Array.from([...bytes.subarray(0, at), ...leb, ...bytes.subarray(Math.min(bytes.length, at + remove))]);
        break;
      }
      case 3: {
        // Inserted bytes.
        const at = int(bytes.length + 1);
        const ins = Array.from({ length: 1 + int(16) }, () => int(256));
        bytes = Uint8Array.from([...bytes.subarray(0, at), ...ins, ...bytes.subarray(at)]);
        break;
      }
      case 4: {
        // Deleted bytes.
        const at = int(bytes.length + 1);
        bytes = Uint8Array.from([...bytes.subarray(0, at), ...bytes.subarray(at + 1 + int(8))]);
        break;
      }
      case 5: {
        // Interesting byte values (opcodes of unsupported features, LEB edges, section ids).
        const vals = [0x00, 0x01, 0x0b, 0x40, 0x41, 0x60, 0x70, 0x7b, 0x7f, 0x80, 0xfc, 0xfd, 0xfe, 0xff];
        const n = 1 + int(4);
        for (let i = 0; i < n && bytes.length > 0; i++) bytes[int(bytes.length)] = vals[int(vals.length)]!;
        break;
      }
      case 6: {
        // Duplicate a random slice (repeats sections and entries).
        const from = int(bytes.length + 1);
        const len = int(Math.min(64, bytes.length - from) + 1);
        const at = int(bytes.length + 1);
        const slice = bytes.slice(from, from + len);
        bytes = Uint8Array.from([...bytes.subarray(0, at), ...slice, ...bytes.subarray(at)]);
        break;
      }
    }
  }
  return bytes;
}

/** Loads `bytes` the way the server does; returns whether it was accepted. */
function load(bytes: Uint8Array): boolean {
  const m = parseModule(bytes);
  // The resolver and the decoder must also cope with modules that did not pass validation.
  try {
    resolveImports(m);
  } catch (e) {
    if (!(e instanceof GateError)) throw e;
  }
  for (let i = 0; i < m.bodies.length; i++) {
    try {
      decodeInstructions(m.bytes, m.bodies[i]!, () => {}, i);
    } catch (e) {
      if (!(e instanceof GateError)) throw e;
    }
  }
  validateModule(m, DEFAULT_LOCAL_LIMITS);
  validateModule(m, DEFAULT_SERVER_LIMITS);
  resolveImports(m);
  resolveEntry(m, undefined, { snapshot: false });
  return true;
}

test('seeds are valid', () => {
  for (const seed of [binaryenSeed(), builderSeed(), EMPTY]) {
    assert.ok(load(seed));
    assert.ok(WebAssembly.validate(seed as Uint8Array<ArrayBuffer>));
  }
});

test('mutated modules load or fail with a GateError', { timeout: 20000 }, () => {
  const seeds = [binaryenSeed(), builderSeed(), EMPTY];
  const rand = mulberry32(0x6a7e);
  const iterations = 30000;
  const t0 = Date.now();
  let accepted = 0;
  const codes = new Map<string, number>();
  for (let i = 0; i < iterations; i++) {
    const seed = seeds[i % seeds.length]!;
    const bytes = mutate(seed, rand);
    const start = Date.now();
    try {
      if (load(bytes)) accepted++;
    } catch (e) {
      if (!(e instanceof GateError)) {
        assert.fail(`iteration ${i}: ${String(e)}\n${(e as Error).stack}\nmodule: ${Buffer.from(bytes).toString('hex')}`);
      }
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
    assert.ok(Date.now() - start < 1000, `iteration ${i} took ${Date.now() - start} ms`);
  }
  const elapsed = Date.now() - t0;
  assert.ok(elapsed < 20000, `fuzzing took ${elapsed} ms`);
  // Sanity: the mutations reach both outcomes.
  assert.ok(accepted > 0 && accepted < iterations, `accepted ${accepted}`);
  console.log(`fuzz: ${iterations} modules in ${elapsed} ms, ${accepted} accepted, errors ${JSON.stringify(Object.fromEntries(codes))}`);
});
