/**
 * Deterministic, bounded fuzzing of the snapshot reader: mutated snapshot
 * modules (byte flips, truncation, insertion, moved, duplicated and dropped
 * sections, random Gate sections) must either read or be rejected with a
 * GateError — never another exception. Whatever reads must survive
 * memoryImage, globalValues, unwrapExports and a re-snapshot, and the
 * re-snapshot must read back the same values.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GateError } from '../../src/errors.js';
import { globalValues, memoryImage, readSnapshot, unwrapExports, writeSnapshot, type SnapshotInfo } from '../../src/snapshot/format.js';
import type { SnapshotState } from '../../src/snapshot/state.js';
import { ByteWriter } from '../../src/wasm/leb128.js';
import { parseModule, type WasmModule } from '../../src/wasm/module.js';
import { programBytes } from '../helpers/runtime.js';
import { wat } from '../helpers/wat.js';
import { xorshift32 } from '../helpers/prng.js';

const PAGE = 65536;
/** Fuzzed modules may declare huge memories; images beyond this are not built (time, not correctness). */
const MAX_IMAGE_PAGES = 16;

function custom(name: string, content: Uint8Array): Uint8Array {
  return new ByteWriter().section(0, new ByteWriter().name(name).bytes(content).finish()).finish();
}

function stateOf(m: WasmModule, globals: SnapshotState['globals'], memory: Uint8Array): SnapshotState {
  return {
    trap: 2,
    result: 0,
    final: false,
    monotonicNs: 77n,
    breakpoints: [5n, 9n],
    memory,
    memoryMaxPages: m.memories[0]?.max,
    globals,
    input: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8),
    output: Uint8Array.of(9, 9),
    services: [
      { name: 'origin', buffer: new Uint8Array(0) },
      { name: 'x', buffer: Uint8Array.of(1) },
    ],
    stack: {
      profile: 'io-suspend',
      startFunction: 1,
      startPending: false,
      entry: 'run',
      frames: [{ func: 1, kind: 0, offset: 12, locals: [{ type: 0x7f, bits: 3 }], stack: [{ type: 0x7c, bits: 1n }] }],
    },
  };
}

function bases(): Uint8Array[] {
  const hello = parseModule(programBytes('hello'));
  const mem = new Uint8Array(3 * PAGE);
  mem.set([1, 2, 3], 1000);
  mem.set([4, 5], 70000);
  const withStack = writeSnapshot(hello, stateOf(hello, globalValues(hello), mem));
  const suspend = parseModule(programBytes('suspend'));
  const noStack = writeSnapshot(suspend, { ...stateOf(suspend, globalValues(suspend), memoryImage(suspend)), stack: undefined, final: true });
  const w = parseModule(
    wat(`(module (memory 1 2) (table 1 funcref) (elem (i32.const 0) $f)
      (global (mut i64) (i64.const -5)) (global f32 (f32.const 1.5)) (global (mut f64) (f64.const -0))
      (data (i32.const 16) "abc")
      (func $f (export "f") (memory.fill (i32.const 0) (i32.const 0) (i32.const 0))))`),
  );
  const small = writeSnapshot(w, stateOf(w, globalValues(w), memoryImage(w)));
  return [withStack, noStack, small];
}

/** Byte ranges of each section of `bytes` (for structural mutations). */
function sectionRanges(m: WasmModule): [number, number][] {
  return m.sections.map((s) => [s.start, s.end]);
}

function mutate(base: Uint8Array, baseModule: WasmModule, next: () => number): Uint8Array {
  let b = base.slice();
  const n = 1 + (next() % 4);
  const ranges = sectionRanges(baseModule);
  const gate = baseModule.sections.filter((s) => s.name?.startsWith('gate.'));
  for (let k = 0; k < n; k++) {
    const op = next() % 10;
    // Most byte mutations land in Gate sections, where the reader's own code is.
    const pos = (): number => {
      if (gate.length && next() % 4 !== 0) {
        const s = gate[next() % gate.length]!;
        return Math.min(b.length - 1, s.start + (next() % (s.end - s.start)));
      }
      return 8 + (next() % Math.max(1, b.length - 8));
    };
    const interesting = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 100, 101, 128];
    switch (op) {
      case 0:
      case 1:
      case 2:
        b[pos()] ^= 1 << (next() % 8);
        break;
      case 3:
      case 4:
        b[pos()] = next() % 2 ? interesting[next() % interesting.length]! : next() & 0xff;
        break;
      case 5:
        b = b.subarray(0, 8 + (next() % (b.length - 8)));
        break;
      case 6: {
        const at = pos();
        const ins = Uint8Array.from({ length: 1 + (next() % 8) }, () => next() & 0xff);
        const out = new Uint8Array(b.length + ins.length);
        out.set(b.subarray(0, at));
        out.set(ins, at);
        out.set(b.subarray(at), at + ins.length);
        b = out;
        break;
      }
      default: {
        // Structural: drop, duplicate or move one section of the base, or add a random Gate section.
        if (b.length !== base.length) break;
        const [s, e] = ranges[next() % ranges.length]!;
        const sec = base.subarray(s, e);
        const rest = [...base.subarray(0, s), ...base.subarray(e)];
        const kind = next() % 4;
        let piece: Uint8Array = sec;
        if (kind === 3) {
          const names = ['gate.snapshot', 'gate.export', 'gate.buffer', 'gate.stack'];
          piece = custom(names[next() % 4]!, Uint8Array.from({ length: next() % 24 }, () => (next() % 3 === 0 ? 0 : next() & 0xff)));
        }
        // Insert at some section boundary of the remaining bytes.
        const bounds = [8, ...ranges.map(([, end]) => (end <= s ? end : end - (e - s))).filter((x) => x >= 8 && x <= rest.length)];
        const at = bounds[next() % bounds.length]!;
        const arr = kind === 0 ? rest : [...rest.slice(0, at), ...piece, ...rest.slice(at)];
        if (kind === 2) arr.splice(s, 0, ...sec); // duplicate: keep the original too
        b = Uint8Array.from(arr);
        break;
      }
    }
  }
  return b;
}

function expectGateError(e: unknown, what: string, seed: number): void {
  if (!(e instanceof GateError)) {
    assert.fail(`iteration ${seed}: ${what} threw a non-GateError: ${e instanceof Error ? e.stack : String(e)}`);
  }
}

/** Everything the reader exposes must survive; a re-snapshot must read back the same values. */
function exercise(m: WasmModule, info: SnapshotInfo, seed: number): void {
  let memory: Uint8Array | undefined;
  let globals: SnapshotState['globals'] | undefined;
  try {
    if ((m.memories[0]?.min ?? 0) <= MAX_IMAGE_PAGES) memory = memoryImage(m);
  } catch (e) {
    expectGateError(e, 'memoryImage', seed);
  }
  try {
    globals = globalValues(m);
  } catch (e) {
    expectGateError(e, 'globalValues', seed);
  }
  try {
    unwrapExports(m);
  } catch (e) {
    expectGateError(e, 'unwrapExports', seed);
  }
  if (!memory || !globals) return;
  const state: SnapshotState = {
    ...info,
    memory,
    memoryMaxPages: m.memories[0]?.max,
    globals,
  };
  let out: Uint8Array;
  try {
    out = writeSnapshot(m, state);
  } catch (e) {
    expectGateError(e, 'writeSnapshot', seed);
    return;
  }
  const again = readSnapshot(parseModule(out))!;
  assert.deepEqual(
    { ...again, exportSection: undefined },
    { ...info, breakpoints: [...new Set(info.breakpoints)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), exportSection: undefined },
    `iteration ${seed}: re-snapshot reads back differently`,
  );
}

describe('snapshot reader fuzz', () => {
  // GATE_FUZZ_SEED / GATE_FUZZ_ITERATIONS explore further; the default run is fixed and bounded.
  const seed = Number(process.env.GATE_FUZZ_SEED ?? 0x5eed);
  const iterations = Number(process.env.GATE_FUZZ_ITERATIONS ?? 25_000);

  it('mutated snapshot modules read or fail with a GateError', (t) => {
    const deadline = performance.now() + (process.env.GATE_FUZZ_ITERATIONS ? Infinity : 10_000);
    const modules = bases().map((b) => ({ bytes: b, m: parseModule(b) }));
    const next = xorshift32(seed);
    const counts = { iterations: 0, unparsable: 0, rejected: 0, read: 0 };
    for (let i = 0; i < iterations && performance.now() < deadline; i++) {
      counts.iterations++;
      const base = modules[i % modules.length]!;
      const bytes = mutate(base.bytes, base.m, next);
      let m: WasmModule;
      try {
        m = parseModule(bytes);
      } catch (e) {
        expectGateError(e, 'parseModule', i);
        counts.unparsable++;
        continue;
      }
      let info: SnapshotInfo | undefined;
      try {
        info = readSnapshot(m);
      } catch (e) {
        expectGateError(e, 'readSnapshot', i);
        counts.rejected++;
        continue;
      }
      counts.read++;
      if (info) exercise(m, info, i);
    }
    t.diagnostic(`seed ${seed}: ${JSON.stringify(counts)}`);
    // The mutations must reach every outcome, or the fuzzer tests nothing.
    assert.ok(counts.unparsable > 100 && counts.rejected > 100 && counts.read > 100, JSON.stringify(counts));
  });
});
