import { test } from 'node:test';
import assert from 'node:assert/strict';
import binaryen from 'binaryen';

import { decodeInstructions, findDataSegmentUse } from '../../src/wasm/code.js';
import { ModuleError } from '../../src/wasm/errors.js';
import { parseModule, type WasmModule } from '../../src/wasm/module.js';
import { ModuleBuilder, I32, sleb, sleb64, uleb } from './wasm-builder.js';

interface Visit {
  op: number;
  sub: number;
  pos: number;
  end: number;
}

/** A module with one function () -> () (or the given type) whose code is `code`. */
function moduleWith(code: number[], params: number[] = [], results: number[] = []): WasmModule {
  const b = new ModuleBuilder();
  b.memory(1);
  b.table(1);
  b.func(params, results, code);
  return parseModule(b.build());
}

function decode(m: WasmModule, index = 0): Visit[] {
  const out: Visit[] = [];
  decodeInstructions(m.bytes, m.bodies[index]!, (op, sub, pos, end) => out.push({ op, sub, pos, end }), m.importedFunctionCount + index);
  return out;
}

function rejects(code: number[], pattern: RegExp): void {
  const m = moduleWith(code);
  assert.throws(() => decode(m), (e: unknown) => e instanceof ModuleError && pattern.test(e.message), `code ${code.map((c) => c.toString(16))}`);
}

test('visits every instruction with exact positions and immediates', () => {
  const code = [
    0x02, 0x40, // block
    0x03, 0x7f, // loop (result i32)
    0x41, ...sleb(-1000000), // i32.const
    0x0d, 0x00, // br_if 0 (consumes the i32; value stays for the loop result? shape irrelevant here)
    0x41, 0x01,
    0x0b, // end loop
    0x1a, // drop
    0x0b, // end block
    0x42, ...sleb64(-(2n ** 62n)), 0x1a, // i64.const, drop
    0x43, 0, 0, 0x80, 0x3f, 0x1a, // f32.const 1.0, drop
    0x44, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x1a, // f64.const 1.0, drop
    0x41, 0x00, 0x28, 0x02, ...uleb(100000), 0x1a, // i32.load align=2 offset=100000
    0x3f, 0x00, 0x1a, // memory.size
    0x41, 0x00, 0x0e, 0x02, 0x00, 0x00, 0x00, // br_table 0 0 0
    0x0b,
  ];
  const m = moduleWith(code);
  const visits = decode(m);
  const start = m.bodies[0]!.codeStart;
  const ops = visits.map((v) => v.op);
  assert.deepEqual(ops, [0x02, 0x03, 0x41, 0x0d, 0x41, 0x0b, 0x1a, 0x0b, 0x42, 0x1a, 0x43, 0x1a, 0x44, 0x1a, 0x41, 0x28, 0x1a, 0x3f, 0x1a, 0x41, 0x0e, 0x0b]);
  // Positions are contiguous: each instruction starts where the previous ended.
  assert.equal(visits[0]!.pos, start);
  for (let i = 1; i < visits.length; i++) assert.equal(visits[i]!.pos, visits[i - 1]!.end);
  assert.equal(visits.at(-1)!.end, m.bodies[0]!.end);
  assert.ok(visits.every((v) => v.sub === -1));
  // Spot-check immediate lengths.
  assert.equal(visits[2]!.end - visits[2]!.pos, 1 + sleb(-1000000).length);
  assert.equal(visits[10]!.end - visits[10]!.pos, 5);
  assert.equal(visits[12]!.end - visits[12]!.pos, 9);
  assert.equal(visits[15]!.end - visits[15]!.pos, 2 + uleb(100000).length);
  assert.equal(visits[20]!.end - visits[20]!.pos, 5);
});

test('0xFC instructions report their sub-opcode', () => {
  const code = [
    0x43, 0, 0, 0, 0, 0xfc, 0x00, 0x1a, // i32.trunc_sat_f32_s
    0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0xfc, 0x07, 0x1a, // i64.trunc_sat_f64_u
    0x41, 0, 0x41, 0, 0x41, 0, 0xfc, 0x08, 0x00, 0x00, // memory.init 0 0
    0xfc, 0x09, 0x00, // data.drop 0
    0x41, 0, 0x41, 0, 0x41, 0, 0xfc, 0x0a, 0x00, 0x00, // memory.copy
    0x41, 0, 0x41, 0, 0x41, 0, 0xfc, 0x0b, 0x00, // memory.fill
    0x41, 0, 0x41, 0, 0x41, 0, 0xfc, 0x0c, 0x00, 0x00, // table.init 0 0
    0xfc, 0x0d, 0x00, // elem.drop 0
    0x41, 0, 0x41, 0, 0x41, 0, 0xfc, 0x0e, 0x00, 0x00, // table.copy
    0x43, 0, 0, 0, 0, 0xfc, 0x80, 0x00, 0x1a, // i32.trunc_sat_f32_s with a padded sub-opcode
    0x0b,
  ];
  const visits = decode(moduleWith(code)).filter((v) => v.op === 0xfc);
  assert.deepEqual(visits.map((v) => v.sub), [0, 7, 8, 9, 10, 11, 12, 13, 14, 0]);
  assert.deepEqual(visits.map((v) => v.end - v.pos), [2, 2, 4, 3, 4, 3, 4, 3, 4, 3]);
});

test('findDataSegmentUse finds memory.init and data.drop (padded sub-opcodes too), not 0xFC bytes in immediates', () => {
  const find = (bodies: number[][]): ReturnType<typeof findDataSegmentUse> => {
    const b = new ModuleBuilder().memory(1).dataCount().data(undefined, [1, 2, 3]);
    for (const code of bodies) b.func([], [], code);
    return findDataSegmentUse(parseModule(b.build()));
  };
  const immediates = [0x41, 0xfc, 0x08, 0x1a, 0x41, 0xfc, 0x09, 0x1a, 0x0b]; // i32.const with LEB bytes 0xfc 0x08, 0xfc 0x09
  assert.equal(find([immediates, immediates]), undefined);
  assert.equal(find([[0x41, 0, 0x41, 0, 0x41, 0, 0xfc, 0x0a, 0, 0, 0x0b]]), undefined); // memory.copy
  assert.deepEqual(find([immediates, [0xfc, 0x09, 0x00, 0x0b]]), { op: 'data.drop', func: 1 });
  assert.deepEqual(find([immediates, [0x41, 0, 0x41, 0, 0x41, 0, 0xfc, 0x88, 0x80, 0x00, 0x00, 0x00, 0x0b]]), { op: 'memory.init', func: 1 }); // sub-opcode 8 in 3 bytes
  assert.deepEqual(find([[0xfc, 0x89, 0x00, 0x00, 0x0b]]), { op: 'data.drop', func: 0 }); // sub-opcode 9 in 2 bytes
});

test('sign-extension instructions are accepted', () => {
  const code = [0x41, 0x00, 0xc0, 0xc1, 0x1a, 0x42, 0x00, 0xc2, 0xc3, 0xc4, 0x1a, 0x0b];
  assert.equal(decode(moduleWith(code)).length, 10);
});

test('rejects instructions outside the supported feature set, naming function and offset', () => {
  const m = moduleWith([0x01, 0xfd, 0x0c, ...new Array(16).fill(0), 0x1a, 0x0b]);
  const body = m.bodies[0]!;
  assert.throws(
    () => decode(m),
    (e: unknown) => {
      assert.ok(e instanceof ModuleError);
      assert.equal(e.code, 'GATE_BAD_MODULE');
      assert.equal(e.offset, body.codeStart + 1);
      assert.match(e.message, /^function 0: SIMD instructions are not supported \(opcode 0xfd\) \(at byte offset \d+\)$/);
      return true;
    },
  );

  rejects([0xfe, 0x03, 0x00, 0x0b], /threads/);
  rejects([0x06, 0x40, 0x0b, 0x0b], /exception handling/);
  rejects([0x08, 0x00, 0x0b], /exception handling/);
  rejects([0x12, 0x00, 0x0b], /tail calls/);
  rejects([0x13, 0x00, 0x00, 0x0b], /tail calls/);
  rejects([0x41, 0, 0x41, 0, 0x41, 0, 0x1c, 0x01, 0x7f, 0x1a, 0x0b], /reference types/); // select t*
  rejects([0xd0, 0x70, 0x1a, 0x0b], /reference types/); // ref.null
  rejects([0xd2, 0x00, 0x1a, 0x0b], /reference types/); // ref.func
  rejects([0x41, 0, 0x25, 0x00, 0x1a, 0x0b], /reference types/); // table.get
  rejects([0x41, 0, 0xfc, 0x0f, 0x00, 0x1a, 0x0b], /reference types/); // table.grow
  rejects([0xfc, 0x10, 0x00, 0x1a, 0x0b], /reference types/); // table.size
  rejects([0xfc, 0x12, 0x0b], /unknown instruction opcode 0xfc 18/);
  rejects([0xfb, 0x00, 0x0b], /garbage collection/);
  rejects([0x14, 0x00, 0x0b], /typed function references/);
  rejects([0x02, 0x00, 0x0b, 0x0b], /multi-value/); // type-index block type
  rejects([0x02, 0x7b, 0x0b, 0x0b], /SIMD/);
  rejects([0x02, 0x70, 0x0b, 0x0b], /reference-typed block type/);
  rejects([0x02, 0x50, 0x0b, 0x0b], /invalid block type/);
  rejects([0x27, 0x0b], /unknown instruction opcode 0x27/);
  rejects([0xc5, 0x0b], /unknown instruction opcode 0xc5/);
  rejects([0xff, 0x0b], /unknown instruction opcode 0xff/);
  rejects([0x41, 0, 0x11, 0x00, 0x01, 0x0b], /table index 1 is not supported/); // call_indirect table 1
  rejects([0x3f, 0x01, 0x1a, 0x0b], /memory index 1 is not supported/);
  rejects([0x41, 0, 0x28, 0x42, 0x00, 0x00, 0x1a, 0x0b], /multiple memories/); // memarg with memory index flag
});

test('rejects malformed bodies', () => {
  rejects([0x01], /not terminated by an end instruction/);
  rejects([0x02, 0x40, 0x0b], /not terminated/); // block end consumes the only end
  rejects([0x0b, 0x01], /1 bytes after the final end/);
  rejects([0x41], /unexpected end of code/);
  rejects([0x41, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x1a, 0x0b], /too long/); // 6-byte s32
  rejects([0x41, 0x80, 0x80, 0x80, 0x80, 0x10, 0x1a, 0x0b], /too long/); // s32 fifth byte with bad sign extension
  rejects([0x42, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0x1a, 0x0b], /too long/);
  rejects([0x20, 0x80, 0x80, 0x80, 0x80, 0x10, 0x1a, 0x0b], /too long/); // u32 beyond 32 bits
  rejects([0x43, 0, 0, 0x0b], /unexpected end/); // f32.const truncated (the end byte is taken as data)
  rejects([0x41, 0, 0x0e, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x0b], /unexpected end/); // br_table with a huge count
});

test('accepts the extremes of LEB encodings', () => {
  const code = [
    0x41, 0xff, 0xff, 0xff, 0xff, 0x07, 0x1a, // i32.const 2^31-1
    0x41, 0x80, 0x80, 0x80, 0x80, 0x78, 0x1a, // i32.const -2^31
    0x42, ...sleb64(2n ** 63n - 1n), 0x1a,
    0x42, ...sleb64(-(2n ** 63n)), 0x1a,
    0x20, 0x80, 0x80, 0x80, 0x80, 0x00, 0x1a, // local.get 0 padded to 5 bytes
    0x0b,
  ];
  const visits = decode(moduleWith(code, [I32]));
  assert.equal(visits.length, 11);
});

test('agrees with binaryen-emitted code and the engine on a varied function', () => {
  const wat = `(module
    (memory 1)
    (table 2 funcref)
    (type $t (func (param i32) (result i32)))
    (global $g (mut i64) (i64.const 0))
    (func $f (type $t) (param i32) (result i32)
      (local $x i64) (local $y f64)
      (block $out
        (loop $l
          (br_if $out (i32.eqz (local.get 0)))
          (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
          (i64.store offset=8 (i32.const 0) (i64.extend_i32_s (local.get 0)))
          (global.set $g (i64.add (global.get $g) (i64.load offset=8 (i32.const 0))))
          (local.set $y (f64.convert_i64_s (global.get $g)))
          (drop (i32.trunc_sat_f64_s (local.get $y)))
          (memory.fill (i32.const 0) (i32.const 0) (i32.const 16))
          (memory.copy (i32.const 16) (i32.const 0) (i32.const 16))
          (br $l)))
      (if (result i32) (i32.extend8_s (local.get 0))
        (then (call_indirect (type $t) (i32.const 1) (i32.const 0)))
        (else (select (i32.const 1) (i32.const 2) (local.get 0)))))
    (elem (i32.const 0) $f $f)
    (export "f" (func $f)))`;
  const mod = binaryen.parseText(wat);
  mod.setFeatures(binaryen.Features.MVP | binaryen.Features.BulkMemory | binaryen.Features.NontrappingFPToInt | binaryen.Features.SignExt);
  const bytes = mod.emitBinary();
  mod.dispose();
  assert.ok(WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>));
  const m = parseModule(bytes);
  const visits = decode(m);
  assert.ok(visits.some((v) => v.op === 0x03));
  assert.ok(visits.some((v) => v.op === 0xfc && v.sub === 11));
  assert.ok(visits.some((v) => v.op === 0xfc && v.sub === 2)); // i32.trunc_sat_f64_s
  assert.equal(visits.at(-1)!.end, m.bodies[0]!.end);
});

test('decodes fast (no allocation per instruction)', () => {
  // A long body of mixed instructions.
  const unit = [0x20, 0x00, 0x41, ...sleb(123456), 0x6a, 0x21, 0x00, 0x41, 0x00, 0x28, 0x02, 0x04, 0x1a, 0x03, 0x40, 0x0b];
  const reps = 40000;
  const code: number[] = [];
  for (let i = 0; i < reps; i++) code.push(...unit);
  code.push(0x0b);
  const m = moduleWith(code, [I32]);
  let count = 0;
  const visit = (): void => {
    count++;
  };
  const body = m.bodies[0]!;
  for (let i = 0; i < 20; i++) decodeInstructions(m.bytes, body, visit); // warm up
  count = 0;
  const rounds = 20;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) decodeInstructions(m.bytes, body, visit);
  const ns = Number(process.hrtime.bigint() - t0);
  const perInstruction = ns / count;
  assert.equal(count, rounds * (reps * 9 + 1));
  // The target is ~10 ns (5–10 ns measured on an idle machine). This only
  // guards against gross regressions: shared CI machines are noisy.
  assert.ok(perInstruction < 300, `${perInstruction.toFixed(1)} ns per instruction`);
  console.log(`decodeInstructions: ${perInstruction.toFixed(2)} ns per instruction`);
});
