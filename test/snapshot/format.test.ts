/**
 * The snapshot module format (spec snapshot.md, docs/snapshot.md): round
 * trips through writeSnapshot → parseModule → readSnapshot / memoryImage /
 * globalValues, section order, the data section rule, refusals, and every
 * reader error message.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GateError } from '../../src/errors.js';
import { BLOCK_SIZE, findDataSegments, MAX_DATA_SEGMENTS } from '../../src/snapshot/data.js';
import { SnapshotError, SnapshotUnsupportedError } from '../../src/snapshot/errors.js';
import {
  decodeStack,
  encodeStack,
  globalValues,
  memoryImage,
  readSnapshot,
  unwrapExports,
  writeSnapshot,
  writeSnapshotParts,
  type SnapshotInfo,
} from '../../src/snapshot/format.js';
import type { GlobalValue, SnapshotState, StackState } from '../../src/snapshot/state.js';
import { ByteWriter } from '../../src/wasm/leb128.js';
import { parseModule, SectionId, type WasmModule } from '../../src/wasm/module.js';
import { programBytes } from '../helpers/runtime.js';
import { wat } from '../helpers/wat.js';
import { xorshift32 } from '../helpers/prng.js';

const PAGE = 65536;

// --- helpers ----------------------------------------------------------------

function randomBytes(next: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = next() & 0xff;
  return b;
}

function zeroGlobals(m: WasmModule): GlobalValue[] {
  return m.globals.map((g): GlobalValue => {
    switch (g.type) {
      case 0x7e:
        return { type: 0x7e, value: 0n };
      case 0x7d:
        return { type: 0x7d, bits: 0 };
      case 0x7c:
        return { type: 0x7c, bits: 0n };
      default:
        return { type: 0x7f, value: 0 };
    }
  });
}

function baseState(m: WasmModule, memory?: Uint8Array): SnapshotState {
  return {
    trap: 2,
    result: 0,
    final: false,
    monotonicNs: 1335544320n,
    breakpoints: [],
    memory: memory ?? new Uint8Array((m.memories[0]?.min ?? 0) * PAGE),
    memoryMaxPages: m.memories[0]?.max,
    globals: zeroGlobals(m),
    input: new Uint8Array(0),
    output: new Uint8Array(0),
    services: [],
    stack: undefined,
  };
}

function sampleStack(overrides: Partial<StackState> = {}): StackState {
  return {
    profile: 'suspend-anywhere',
    startFunction: undefined,
    startPending: false,
    entry: 'loop',
    frames: [
      {
        func: 3,
        kind: 0,
        offset: 0x1234,
        // a signalling NaN in each float type: bits must survive as they are
        locals: [{ type: 0x7f, bits: 7 }, { type: 0x7e, bits: 0xffffffffffffffffn }, { type: 0x7d, bits: 0x7fa00000 }, { type: 0x7c, bits: 0x7ff4000000000001n }],
        stack: [{ type: 0x7f, bits: 0xffffffff }],
      },
      { func: 5, kind: 2, offset: 0x20, locals: [], stack: [] },
    ],
    ...overrides,
  };
}

function custom(name: string, content: Uint8Array | number[]): Uint8Array {
  const c = content instanceof Uint8Array ? content : Uint8Array.from(content);
  return new ByteWriter().section(0, new ByteWriter().name(name).bytes(c).finish()).finish();
}

/** A module assembled from section bytes. */
function assemble(sections: Uint8Array[]): Uint8Array {
  const w = new ByteWriter().bytes(Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  for (const s of sections) w.bytes(s);
  return w.finish();
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

function label(s: { id: number; name?: string }): string | number {
  return s.id === 0 ? s.name! : s.id;
}

function labels(m: WasmModule): (string | number)[] {
  return m.sections.map(label);
}

function sameBytes(a: Uint8Array, b: Uint8Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  // One comparison instead of a deep-equal over millions of elements.
  assert.ok(Buffer.compare(a, b) === 0, `${what}: contents differ`);
}

/** Section labels spec §2 prescribes for `program` in `state`. */
function expectedOrder(program: WasmModule, state: SnapshotState): (string | number)[] {
  const has = (id: number): boolean => program.sections.some((s) => s.id === id);
  const hasExports = has(SectionId.Export) || program.sections.some((s) => s.name === 'gate.export');
  const out: (string | number)[] = [];
  for (const id of [1, 2, 3, 4]) if (has(id)) out.push(id);
  out.push(5);
  if (program.globals.length) out.push(6);
  out.push('gate.snapshot');
  if (hasExports) out.push(state.stack ? 'gate.export' : 7);
  if (has(9)) out.push(9);
  if (has(12)) out.push(12);
  const buffered = state.input.length > 0 || state.output.length > 0 || state.services.length > 0;
  // A module without functions gets an empty code section only where gate.buffer or gate.stack must follow one.
  if (has(10) || buffered || state.stack) out.push(10);
  if (buffered) out.push('gate.buffer');
  if (state.stack) out.push('gate.stack');
  out.push(11);
  let last = -1;
  program.sections.forEach((s, i) => {
    if (s.id !== 0) last = i;
  });
  for (const s of program.sections.slice(last + 1)) if (!s.name!.startsWith('gate.')) out.push(s.name!);
  return out;
}

/** Writes, checks validity and order, reads back and compares with the state. */
function roundTrip(program: WasmModule, state: SnapshotState): { bytes: Uint8Array; m: WasmModule; info: SnapshotInfo } {
  const bytes = writeSnapshot(program, state);
  assert.ok(WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>), 'snapshot validates');
  new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
  const parts = writeSnapshotParts(program, state);
  assert.equal(parts.size, bytes.length);
  sameBytes(concat(parts.parts), bytes, 'writeSnapshotParts');

  const m = parseModule(bytes);
  assert.deepEqual(labels(m), expectedOrder(program, state));
  assert.equal(m.start, undefined, 'no start section');
  const info = readSnapshot(m);
  assert.ok(info, 'is a snapshot');
  assert.equal(info.trap, state.trap);
  assert.equal(info.result, state.result);
  assert.equal(info.final, state.final);
  assert.equal(info.monotonicNs, state.monotonicNs);
  assert.deepEqual(info.breakpoints, [...new Set(state.breakpoints)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  sameBytes(info.input, state.input, 'input');
  sameBytes(info.output, state.output, 'output');
  assert.deepEqual(
    info.services.map((s) => [s.name, [...s.buffer]]),
    state.services.map((s) => [s.name, [...s.buffer]]),
  );
  assert.deepEqual(info.stack, state.stack);
  sameBytes(memoryImage(m), state.memory, 'memory');
  assert.equal(m.memories[0]!.max, state.memoryMaxPages);
  assert.deepEqual(globalValues(m), state.globals);
  assert.deepEqual(
    m.globals.map((g) => g.mutable),
    program.globals.map((g) => g.mutable),
  );
  return { bytes, m, info };
}

const hello = parseModule(programBytes('hello'));
const suspend = parseModule(programBytes('suspend'));
const counter = parseModule(programBytes('counter'));

// --- round trips ---------------------------------------------------------------

describe('writeSnapshot round trips', () => {
  for (const [name, program] of [['hello', hello], ['suspend', suspend], ['counter', counter]] as const) {
    it(`${name}: all-zero memory → no data segments`, () => {
      const { m } = roundTrip(program, baseState(program));
      assert.equal(m.dataSegmentCount, 0);
    });

    it(`${name}: the program's own initial memory`, () => {
      const state = baseState(program, memoryImage(program));
      state.globals = globalValues(program);
      roundTrip(program, state);
    });

    it(`${name}: sparse random memory, grown, with a maximum`, () => {
      const next = xorshift32(name.length * 7919);
      const mem = new Uint8Array(9 * PAGE);
      for (let k = 0; k < 500; k++) mem[next() % mem.length] = (next() % 255) + 1;
      const state = { ...baseState(program, mem), memoryMaxPages: 100 };
      roundTrip(program, state);
    });

    it(`${name}: dense random memory with stack, buffers and exports hidden`, () => {
      const next = xorshift32(0xc0ffee + name.length);
      const state: SnapshotState = {
        ...baseState(program, randomBytes(next, 4 * PAGE)),
        globals: program.globals.map((g) => (g.type === 0x7f ? { type: 0x7f, value: (next() | 0) } : zeroGlobals(program)[0]!)),
        breakpoints: [300n, 7n, 300n, 2n ** 64n - 1n],
        input: randomBytes(next, 16),
        output: randomBytes(next, 13),
        services: [
          { name: 'origin', buffer: new Uint8Array(0) },
          { name: 'test', buffer: randomBytes(next, 5) },
          { name: '_nonexistent', buffer: new Uint8Array(0) },
        ],
        stack: sampleStack({ startFunction: 3, startPending: true }),
      };
      const { m, info } = roundTrip(program, state);
      assert.deepEqual(m.exports, [], 'exports are hidden from the engine');
      assert.deepEqual(info.exports, program.exports);
      const orig = program.sections.find((s) => s.id === SectionId.Export)!;
      sameBytes(info.exportSection!, program.bytes.subarray(orig.payloadStart, orig.end), 'export section payload');
      const unwrapped = parseModule(unwrapExports(m));
      assert.deepEqual(unwrapped.exports, program.exports);
      assert.ok(WebAssembly.validate(unwrapExports(m) as Uint8Array<ArrayBuffer>));
      assert.deepEqual(readSnapshot(unwrapped)!.exports, program.exports);
    });

    it(`${name}: final snapshot without stack keeps the export section`, () => {
      const state = { ...baseState(program), trap: 0, result: 1, final: true, monotonicNs: 2n ** 64n - 1n };
      const { m, info } = roundTrip(program, state);
      assert.deepEqual(m.exports, program.exports);
      assert.deepEqual(info.exports, program.exports);
      assert.equal(unwrapExports(m), m.bytes);
    });
  }

  it('a 64 MiB memory with half of its pages dirty', (t) => {
    const next = xorshift32(64);
    const mem = new Uint8Array(1024 * PAGE);
    const words = new Uint32Array(mem.buffer);
    for (let p = 0; p < 1024; p += 2) {
      for (let i = (p * PAGE) / 4; i < ((p + 1) * PAGE) / 4; i++) words[i] = next();
    }
    const state = baseState(hello, mem);
    const t0 = performance.now();
    writeSnapshot(hello, state);
    const t1 = performance.now();
    writeSnapshotParts(hello, state);
    const t2 = performance.now();
    t.diagnostic(`64 MiB, 512 dirty pages: writeSnapshot ${(t1 - t0).toFixed(1)} ms, writeSnapshotParts ${(t2 - t1).toFixed(1)} ms (first call)`);
    const { m } = roundTrip(hello, state);
    assert.equal(m.dataSegmentCount, 512);
  });

  it('never-started instance: stack without unwound data, exports hidden', () => {
    const state = { ...baseState(suspend), trap: 0, stack: sampleStack({ entry: undefined, frames: [], profile: 'io-suspend' }) };
    roundTrip(suspend, state);
  });

  it('the worked example of spec §6.4: input 16 bytes, three services with empty buffers', () => {
    const input = new Uint8Array(16);
    input.set([13, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 2, 3, 4, 5]);
    const state: SnapshotState = {
      ...baseState(suspend),
      globals: [{ type: 0x7f, value: 66592 }],
      input,
      services: ['origin', 'test', '_nonexistent'].map((name) => ({ name, buffer: new Uint8Array(0) })),
      stack: sampleStack(),
    };
    const { m } = roundTrip(suspend, state);
    assert.deepEqual(labels(m).slice(0, 13), [1, 2, 3, 4, 5, 6, 'gate.snapshot', 'gate.export', 10, 'gate.buffer', 'gate.stack', 11, 'name']);
  });

  it('services alone (all buffers empty) still get a gate.buffer section', () => {
    const state = { ...baseState(hello), services: [{ name: 'origin', buffer: new Uint8Array(0) }] };
    const { m } = roundTrip(hello, state);
    assert.ok(labels(m).includes('gate.buffer'));
  });

  it('all global types, negative integers, NaN, -0 and infinities', () => {
    const program = parseModule(
      wat(`(module (memory 1 3)
        (global (mut i32) (i32.const 1)) (global i32 (i32.const 2)) (global (mut i32) (i32.const 3))
        (global (mut i64) (i64.const 4)) (global i64 (i64.const 5)) (global (mut i64) (i64.const 6))
        (global (mut f32) (f32.const 7)) (global f32 (f32.const 8)) (global (mut f32) (f32.const 9))
        (global (mut f64) (f64.const 10)) (global f64 (f64.const 11)) (global (mut f64) (f64.const 12))
        (global (mut f32) (f32.const 13)) (global (mut f64) (f64.const 14))
        (func (export "f")))`),
    );
    assert.equal(program.globals.length, 14);
    const globals: GlobalValue[] = [
      { type: 0x7f, value: -1 },
      { type: 0x7f, value: -0x80000000 },
      { type: 0x7f, value: 0x7fffffff },
      { type: 0x7e, value: -1n },
      { type: 0x7e, value: -(2n ** 63n) },
      { type: 0x7e, value: 2n ** 63n - 1n },
      { type: 0x7d, bits: 0x7fa00000 }, // signalling NaN
      { type: 0x7d, bits: 0x80000000 }, // -0
      { type: 0x7d, bits: 0xbf8ccccd }, // -1.1
      { type: 0x7c, bits: 0x7ff4000000000001n }, // signalling NaN with a payload
      { type: 0x7c, bits: 0x8000000000000000n }, // -0
      { type: 0x7c, bits: 0xfff0000000000000n }, // -Infinity
      { type: 0x7d, bits: 0x7f800000 }, // Infinity
      { type: 0x7c, bits: 1n }, // 5e-324
    ];
    const { m } = roundTrip(program, { ...baseState(program), globals, memoryMaxPages: 3 });
    assert.deepEqual(
      m.globals.map((g) => g.mutable),
      [true, false, true, true, false, true, true, false, true, true, false, true, true, true],
    );
  });

  it('a module without exports, memory or globals', () => {
    const program = parseModule(wat('(module (func $f) (start $f))'));
    const state = { ...baseState(program), stack: sampleStack({ startFunction: 0, startPending: true, entry: undefined }) };
    const { m } = roundTrip(program, state);
    assert.deepEqual(labels(m), [1, 3, 5, 'gate.snapshot', 10, 'gate.stack', 11]);
  });

  it('a module without functions: an empty code section before gate.buffer and gate.stack', () => {
    const program = parseModule(wat('(module)'));
    const stack = sampleStack({ entry: undefined, frames: [] });
    const { m } = roundTrip(program, { ...baseState(program), stack, input: new Uint8Array([1, 2]) });
    assert.deepEqual(labels(m), [5, 'gate.snapshot', 10, 'gate.buffer', 'gate.stack', 11]);
    assert.deepEqual(labels(roundTrip(program, baseState(program)).m), [5, 'gate.snapshot', 11]);
  });

  it('keeps element and data count sections, drops the start section and custom sections between standard ones', () => {
    const program = parseModule(
      wat(`(module (memory 1) (table 2 funcref) (elem (i32.const 0) $a $b)
        (data (i32.const 8) "hello")
        (func $a (memory.fill (i32.const 0) (i32.const 0) (i32.const 0)))
        (func $b (export "b") (call_indirect (i32.const 0)))
        (start $a))`),
    );
    const withCustom = assemble([
      ...program.sections.flatMap((s) => {
        const raw = program.bytes.subarray(s.start, s.end);
        return s.id === SectionId.Code ? [custom('between', [1, 2, 3]), raw] : [raw];
      }),
      custom('name', [0]),
      custom('gate.stack', [1]),
      custom('producers', [0]),
    ]);
    const p2 = parseModule(withCustom);
    const mem = new Uint8Array(PAGE);
    mem.set([1, 2, 3], 300);
    const { m } = roundTrip(p2, { ...baseState(p2, mem), stack: sampleStack({ startFunction: 0, startPending: true }) });
    assert.deepEqual(labels(m), [1, 3, 4, 5, 'gate.snapshot', 'gate.export', 9, 12, 10, 'gate.stack', 11, 'name', 'producers']);
    assert.equal(m.dataSegmentCount, 1);
  });

  it('snapshot of a snapshot replaces the Gate sections and keeps the original export section', () => {
    const next = xorshift32(99);
    const s1 = roundTrip(hello, {
      ...baseState(hello, randomBytes(next, 3 * PAGE)),
      stack: sampleStack(),
      input: randomBytes(next, 8),
      breakpoints: [1n, 2n],
    });
    // Resumed and halted: no stack, exports visible again.
    const s2 = roundTrip(s1.m, { ...baseState(s1.m, randomBytes(next, 4 * PAGE)), trap: 0 });
    assert.deepEqual(s2.m.exports, hello.exports);
    const exp = (m: WasmModule): Uint8Array => {
      const s = m.sections.find((x) => x.id === SectionId.Export)!;
      return m.bytes.subarray(s.start, s.end);
    };
    const origExport = exp(hello);
    sameBytes(exp(s2.m), origExport, 'export section after unwrapping');
    // Suspended again: wrapped again, with the same content.
    const s3 = roundTrip(s2.m, { ...baseState(s2.m), stack: sampleStack({ entry: 'repl' }), services: [{ name: 'origin', buffer: Uint8Array.of(1) }] });
    const wrap = s3.m.sections.find((s) => s.name === 'gate.export')!;
    sameBytes(s3.m.bytes.subarray(wrap.payloadStart, wrap.end), origExport, 'gate.export content');
    // And once more from the wrapped one, still hidden.
    const s4 = roundTrip(s3.m, { ...baseState(s3.m), stack: sampleStack() });
    assert.deepEqual(s4.info.exports, hello.exports);
    for (const s of [s2, s3, s4]) {
      const names = labels(s.m).filter((l) => typeof l === 'string');
      assert.equal(new Set(names).size, names.length, 'no duplicated custom sections');
    }
    // Same program and state → same bytes (a snapshot's identity is its hash).
    sameBytes(writeSnapshot(s3.m, { ...baseState(s3.m), stack: sampleStack() }), s4.bytes, 'deterministic');
  });
});

// --- data section -------------------------------------------------------------

describe('regenerated data section', () => {
  it('trims segments to their first and last non-zero byte', () => {
    const mem = new Uint8Array(PAGE);
    mem[1001] = 7;
    mem[1003] = 9;
    const s = findDataSegments(mem);
    assert.equal(s.count, 1);
    assert.deepEqual([s.start[0], s.end[0]], [1001, 1004]);
  });

  it('an all-zero aligned block splits; shorter zero runs do not', () => {
    const mem = new Uint8Array(PAGE);
    mem[10] = 1;
    mem[10 + 50] = 2; // 49 zero bytes between: same segment
    mem[BLOCK_SIZE * 3] = 3; // block 2 is all zero: new segment
    mem[PAGE - 1] = 4;
    const s = findDataSegments(mem);
    assert.deepEqual(
      Array.from({ length: s.count }, (_, i) => [s.start[i], s.end[i]]),
      [
        [10, 61],
        [BLOCK_SIZE * 3, BLOCK_SIZE * 3 + 1],
        [PAGE - 1, PAGE],
      ],
    );
    const state = baseState(hello, mem);
    const { m } = roundTrip(hello, state);
    assert.equal(m.dataSegmentCount, 3);
  });

  it(`keeps at most ${MAX_DATA_SEGMENTS} segments (the engines' limit)`, () => {
    const mem = new Uint8Array(256 * PAGE); // 16 MiB: 131072 alternating blocks
    for (let i = 0; i < mem.length; i += 2 * BLOCK_SIZE) mem[i] = 1 + ((i >> 7) % 255);
    const { m } = roundTrip(hello, baseState(hello, mem));
    assert.equal(m.dataSegmentCount, MAX_DATA_SEGMENTS);
  });

  it('memoryImage rejects a segment that does not fit and ignores passive ones', () => {
    const m = parseModule(wat('(module (memory 1) (data (i32.const 65535) "ab"))'));
    assert.throws(() => memoryImage(m), (e) => e instanceof SnapshotError && /does not fit/.test(e.message));
    const p = parseModule(wat('(module (memory 1) (data "ab") (data (i32.const 3) "c"))'));
    assert.deepEqual([...memoryImage(p).subarray(0, 5)], [0, 0, 0, 99, 0]);
  });
});

// --- refusals and invalid states ------------------------------------------------

describe('writeSnapshot refuses', () => {
  const refused = (text: string, pattern: RegExp): void => {
    const program = parseModule(wat(text));
    assert.throws(
      () => writeSnapshot(program, baseState(program)),
      (e) => e instanceof SnapshotUnsupportedError && e.code === 'GATE_SNAPSHOT_UNSUPPORTED' && pattern.test(e.message),
    );
  };

  it('passive data segments', () => {
    refused('(module (memory 1) (data "abc") (func (export "f")))', /passive data segments/);
  });

  it('memory.init and data.drop', () => {
    refused('(module (memory 1) (data (i32.const 0) "abc") (func (export "f") (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 0))))', /memory\.init.*function 0/);
    refused('(module (memory 1) (data (i32.const 0) "abc") (func $g) (func (export "f") (data.drop 0)))', /data\.drop.*function 1/);
  });

  it('inconsistent states', () => {
    const bad = (change: Partial<SnapshotState>, pattern: RegExp): void => {
      assert.throws(
        () => writeSnapshot(hello, { ...baseState(hello), ...change }),
        (e) => e instanceof SnapshotError && e.code === 'GATE_BAD_SNAPSHOT' && pattern.test(e.message),
      );
    };
    bad({ memory: new Uint8Array(1000) }, /page size/);
    bad({ memoryMaxPages: 2 }, /maximum/);
    bad({ globals: [] }, /1 globals/);
    bad({ globals: [{ type: 0x7e, value: 1n }] }, /type/);
    bad({ globals: [{ type: 0x7f, value: 2 ** 31 }] }, /signed 32-bit/);
    bad({ breakpoints: Array.from({ length: 101 }, (_, i) => BigInt(i)) }, /too many breakpoints/);
    bad({ monotonicNs: -1n }, /monotonic/);
    bad({ services: [{ name: '', buffer: new Uint8Array(0) }] }, /1 to 127 bytes/);
    bad({ services: [{ name: 'x'.repeat(128), buffer: new Uint8Array(0) }] }, /1 to 127 bytes/);
    bad({ stack: sampleStack({ frames: [{ func: 1, kind: 7, offset: 0, locals: [], stack: [] }] }) }, /site kind 7/);
    bad({ stack: sampleStack({ entry: '' }) }, /must not be empty/);
    bad({ stack: sampleStack({ startPending: true }) }, /pending start/);
  });

  it('does not refuse 100 breakpoints given with duplicates', () => {
    const bps = Array.from({ length: 150 }, (_, i) => BigInt(i % 100));
    roundTrip(hello, { ...baseState(hello), breakpoints: bps });
  });
});

// --- gate.stack encoding -----------------------------------------------------------

describe('gate.stack encoding', () => {
  it('round trips and pads to a multiple of 8', () => {
    for (const s of [
      sampleStack(),
      sampleStack({ startFunction: 0, startPending: true, entry: undefined, frames: [] }),
      sampleStack({ startFunction: 0xfffffffe, entry: 'ünïcode ✓', frames: Array.from({ length: 300 }, (_, i) => ({ func: i, kind: i % 4, offset: 0xffffffff - i, locals: [{ type: 0x7e as const, bits: BigInt(i) }], stack: [] })) }),
    ]) {
      const b = encodeStack(s);
      assert.equal(b.length % 8, 0);
      assert.deepEqual([...b.subarray(0, 4)], [...new TextEncoder().encode('GTS2')]);
      assert.deepEqual(decodeStack(b), s);
    }
  });

  const enc = encodeStack(sampleStack({ entry: 'ab', frames: [{ func: 1, kind: 0, offset: 2, locals: [{ type: 0x7f, bits: 5 }], stack: [] }] }));
  // Layout: magic 0..3, profile 4, start 5, flags 6, entry length 7, "ab" 8..9,
  // frame count 10, func 11, kind 12, offset 13, local count 14, type 15,
  // value 16..19, operand count 20, padding 21..23.
  const mutated = (f: (b: Uint8Array) => Uint8Array | void): Uint8Array => {
    const b = enc.slice();
    return f(b) ?? b;
  };
  const cases: [string, Uint8Array, RegExp][] = [
    ['foreign stack', mutated((b) => void b.set([0, 0, 0, 0], 0)), /not a GTS2 stack .*another Gate implementation/],
    ['stack of the Asyncify version', mutated((b) => void b.set(new TextEncoder().encode('GTS1'), 0)), /earlier Gate-TS \(Asyncify/],
    ['unknown profile', mutated((b) => void (b[4] = 2)), /unknown profile 2/],
    ['unknown flags', mutated((b) => void (b[6] = 2)), /unknown flags/],
    ['pending start without start', mutated((b) => void (b[6] = 1)), /pending but there is none/],
    ['entry name not UTF-8', mutated((b) => void (b[8] = 0xff)), /entry function name is not valid UTF-8/],
    ['frames past the end', mutated((b) => void (b[10] = 100)), /100 frames do not fit/],
    ['unknown site kind', mutated((b) => void (b[12] = 5)), /unknown site kind 5/],
    ['values past the end', mutated((b) => void (b[14] = 100)), /100 values do not fit/],
    ['unknown value type', mutated((b) => void (b[15] = 0x70)), /unknown value type 0x70/],
    ['non-zero padding', mutated((b) => void (b[b.length - 1] = 1)), /padding is not zero/],
    ['size not a multiple of 8', mutated((b) => b.subarray(0, b.length - 1)), /not a multiple of 8/],
    ['padding of 8 or more', concat([enc, new Uint8Array(8)]), /padding is less than 8/],
    ['truncated', enc.subarray(0, 16), /unexpected end|do not fit/],
  ];
  for (const [name, bytes, pattern] of cases) {
    it(`rejects: ${name}`, () => {
      assert.throws(() => decodeStack(bytes), (e) => e instanceof SnapshotError && e.code === 'GATE_BAD_SNAPSHOT' && pattern.test(e.message));
    });
  }
});

// --- reader placement and content errors ---------------------------------------------

describe('readSnapshot errors (spec §7)', () => {
  const full = writeSnapshot(hello, {
    ...baseState(hello),
    input: Uint8Array.of(1, 2, 3),
    services: [{ name: 'origin', buffer: Uint8Array.of(4) }],
    stack: sampleStack(),
  });
  const fm = parseModule(full);
  const raw = new Map(fm.sections.map((s) => [label(s), fm.bytes.subarray(s.start, s.end)]));
  const order = fm.sections.map(label);

  /** Reassembles `full` with its sections in `ls` order (labels, or literal section bytes). */
  const build = (ls: (string | number | Uint8Array)[]): WasmModule =>
    parseModule(assemble(ls.map((l) => (l instanceof Uint8Array ? l : raw.get(l)!))));
  const without = (...drop: (string | number)[]): (string | number)[] => order.filter((l) => !drop.includes(l));
  const insertAfter = (ls: (string | number | Uint8Array)[], after: string | number, x: string | number | Uint8Array): (string | number | Uint8Array)[] => {
    const i = ls.indexOf(after);
    return [...ls.slice(0, i + 1), x, ...ls.slice(i + 1)];
  };
  const rejects = (m: WasmModule, message: string | RegExp): void => {
    assert.throws(
      () => readSnapshot(m),
      (e) => e instanceof SnapshotError && e.code === 'GATE_BAD_SNAPSHOT' && (typeof message === 'string' ? e.message === message : message.test(e.message)),
    );
  };

  it('the unchanged module reads', () => {
    assert.ok(readSnapshot(fm));
    assert.equal(readSnapshot(hello), undefined);
  });

  const snapshotContent = (bytes: number[]): Uint8Array => custom('gate.snapshot', bytes);
  const cases: [string, () => WasmModule, string | RegExp][] = [
    ['multiple gate.snapshot sections in wasm module', () => build(insertAfter(order, 'gate.snapshot', 'gate.snapshot')), ''],
    ['gate.snapshot section appears too late in wasm module', () => build(insertAfter(without('gate.snapshot', 'gate.export'), 10, 'gate.snapshot')), ''],
    ['gate.export section without gate.snapshot section', () => build(without('gate.snapshot')), ''],
    ['gate.export section is too short', () => build(order.map((l) => (l === 'gate.export' ? custom('gate.export', [7]) : l))), ''],
    ['gate.export section does not contain a standard export section', () => build(order.map((l) => (l === 'gate.export' ? custom('gate.export', [6, 0]) : l))), ''],
    ['multiple gate.export sections in wasm module', () => build(insertAfter(order, 'gate.export', 'gate.export')), ''],
    ['gate.export section appears too late in wasm module', () => build(insertAfter(without('gate.export'), 10, 'gate.export')), ''],
    ['gate.export section appears too early in wasm module', () => build([1, 2, 3, 4, 'gate.snapshot', 'gate.export', 5, 6, 10, 'gate.buffer', 'gate.stack', 11]), ''],
    ['wasm module has both an export section and a gate.export section', () => build(insertAfter(order, 'gate.export', new ByteWriter().section(7, Uint8Array.of(0)).finish())), ''],
    ['gate.buffer section appears too early in wasm module', () => build(insertAfter(without('gate.buffer'), 'gate.export', 'gate.buffer')), ''],
    ['gate.buffer section appears too late in wasm module', () => build(insertAfter(without('gate.buffer'), 11, 'gate.buffer')), ''],
    ['gate.buffer section appears too late in wasm module (after gate.stack)', () => build(insertAfter(without('gate.buffer'), 'gate.stack', 'gate.buffer')), 'gate.buffer section appears too late in wasm module'],
    ['multiple gate.buffer sections in wasm module', () => build(insertAfter(order, 'gate.buffer', 'gate.buffer')), ''],
    ['gate.buffer section without gate.snapshot section', () => build(without('gate.snapshot', 'gate.export')), ''],
    ['gate.stack section appears too early in wasm module', () => build(insertAfter(without('gate.stack'), 'gate.export', 'gate.stack')), ''],
    ['gate.stack section appears too late in wasm module', () => build(insertAfter(without('gate.stack'), 11, 'gate.stack')), ''],
    ['multiple gate.stack sections in wasm module', () => build(insertAfter(order, 'gate.stack', 'gate.stack')), ''],
    ['gate.stack section without gate.snapshot section', () => build(without('gate.snapshot', 'gate.export', 'gate.buffer')), ''],
    ['snapshot has too many breakpoints', () => build(order.map((l) => (l === 'gate.snapshot' ? snapshotContent([0, 0, 2, 0, 0, 101]) : l))), ''],
    ['invalid gate.snapshot section: unexpected end of section', () => build(order.map((l) => (l === 'gate.snapshot' ? snapshotContent([0, 0, 2, 0, 0, 2, 1]) : l))), ''],
    ['invalid buffer section in wasm module', () => build(order.map((l) => (l === 'gate.buffer' ? custom('gate.buffer', [4, 0, 0, 1, 2, 3]) : l))), ''],
    ['invalid buffer section in wasm module (truncated header)', () => build(order.map((l) => (l === 'gate.buffer' ? custom('gate.buffer', [0, 0, 1, 3, 0x61]) : l))), 'invalid buffer section in wasm module'],
    ['service name length out of bounds (0)', () => build(order.map((l) => (l === 'gate.buffer' ? custom('gate.buffer', [0, 0, 1, 0, 0, 0]) : l))), 'service name length out of bounds'],
    ['service name length out of bounds (128)', () => build(order.map((l) => (l === 'gate.buffer' ? custom('gate.buffer', [0, 0, 1, 128, ...new Array(130).fill(0x61)]) : l))), 'service name length out of bounds'],
    ['foreign gate.stack', () => build(order.map((l) => (l === 'gate.stack' ? custom('gate.stack', [2, 0, 0, 0, 0, 0, 0, 0]) : l))), /not a GTS2 stack/],
    ['gate.export refers to an unknown function', () => build(order.map((l) => (l === 'gate.export' ? custom('gate.export', [7, 6, 1, 1, 0x66, 0, 0xff, 0x7f]) : l))), 'invalid gate.export section: export "f" refers to unknown function 16383'],
    ['gate.export with a bad size', () => build(order.map((l) => (l === 'gate.export' ? custom('gate.export', [7, 9, 0]) : l))), /export section size 9 does not match/],
    ['gate.export with duplicate names', () => build(order.map((l) => (l === 'gate.export' ? custom('gate.export', [7, 9, 2, 1, 0x66, 0, 1, 1, 0x66, 0, 2]) : l))), /duplicate export name "f"/],
  ];
  for (const [name, make, message] of cases) {
    it(name, () => rejects(make(), message === '' ? name : message));
  }

  it('ignores bytes after the breakpoints and unknown flag bits (forward compatibility)', () => {
    const m = build(order.map((l) => (l === 'gate.snapshot' ? snapshotContent([5, 0x83, 0x00, 27, 1, 0x80, 0x01, 1, 42, 0xff, 0xff]) : l)));
    const info = readSnapshot(m)!;
    assert.deepEqual(
      { trap: info.trap, result: info.result, final: info.final, t: info.monotonicNs, b: info.breakpoints },
      { trap: 27, result: 1, final: true, t: 128n, b: [42n] },
    );
  });

  it('accepts non-minimal LEB128 (the original writes sizes that way)', () => {
    const m = build(order.map((l) => (l === 'gate.buffer' ? custom('gate.buffer', [0x81, 0x80, 0x00, 0x80, 0x00, 0x80, 0x00, 9]) : l)));
    assert.deepEqual([...readSnapshot(m)!.input], [9]);
  });

  it('every error is a GateError with code GATE_BAD_SNAPSHOT', () => {
    assert.ok(new SnapshotError('x') instanceof GateError);
    assert.equal(new SnapshotError('x').code, 'GATE_BAD_SNAPSHOT');
  });
});
