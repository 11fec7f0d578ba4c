/**
 * Breakpoints and site offsets are offsets in the *original* program's code
 * section, also when the rewrite that precedes the transform moves the
 * function bodies (a float global gets accessor functions appended, and a
 * function count of 127 becomes 129: its LEB128 grows by a byte).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InProcessExecutor } from '../../src/runtime/inprocess.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { codeOffsetShift, rewrittenModule } from '../../src/prepare/pipeline.js';
import { SiteKind } from '../../src/prepare/instrument.js';
import { parseModule } from '../../src/wasm/module.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';
import { F64, ModuleBuilder } from '../wasm/wasm-builder.js';
import { noServices } from '../helpers/runtime.js';

/** run() counts a local down from 3 in a loop; 126 more functions make 127 in all. */
function module127(): Uint8Array {
  const b = new ModuleBuilder();
  b.memory(1);
  b.global(F64, true, [0x44, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x0b]); // 1.0: gets a getter and a setter
  // (local i32) i = 3; loop: i = i - 1; br_if (i != 0) end
  const run = b.func([], [], [0x41, 3, 0x21, 0, 0x03, 0x40, 0x20, 0, 0x41, 1, 0x6b, 0x22, 0, 0x0d, 0, 0x0b, 0x0b], [[1, 0x7f]]);
  for (let i = 1; i < 127; i++) b.func([], [], [0x01, 0x0b]);
  b.export('run', 0, run);
  b.export('memory', 2, 0);
  return b.build();
}

describe('breakpoints and sites when the rewrite moves the code', () => {
  const bytes = module127();
  const m = parseModule(bytes);
  const base = m.sections.find((s) => s.id === 10)!.payloadStart;
  const loopOffset = m.bodies[0]!.codeStart + 4 - base; // after i32.const 3, local.set 0

  it('the rewrite moves the bodies by a byte, and the offsets stay the original module\'s', async () => {
    const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
    assert.equal(m.bytes[base + loopOffset], 0x03);
    assert.equal(codeOffsetShift(m, rewrittenModule(m, program.imports)), 1);
    const layout = program.unwindLayouts('suspend-anywhere').get(0)!;
    assert.deepEqual(layout.sites.map((s) => [s.kind, s.offset]), [[SiteKind.Loop, loopOffset]]);
    const withBreak = program.unwindLayouts('suspend-anywhere', [loopOffset + 2]).get(0)!;
    assert.deepEqual(withBreak.sites.map((s) => [s.kind, s.offset]), [[SiteKind.Loop, loopOffset], [SiteKind.Breakpoint, loopOffset + 2]]);
  });

  it('stops at a breakpoint given as an original offset, three times in the loop, and runs to the end past it', async () => {
    const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
    const runtime = new Runtime({ executor: new InProcessExecutor(), memoryLimitPages: 16, timeResolutionNs: 1000 });
    const breakAt = loopOffset + 2; // local.get 0 at the loop's top
    let current = program;
    const stops: number[] = [];
    for (let i = 0; i < 4; i++) {
      const inst = await runtime.launch(current, { entry: i === 0 ? 'run' : undefined, services: noServices, retain: true, breakpoints: [BigInt(breakAt)] });
      const status = await inst.wait();
      if (status.state !== 'SUSPENDED') {
        assert.deepEqual(status, { state: 'HALTED', result: 0 });
        break;
      }
      assert.equal(status.cause, 'BREAKPOINT');
      const snap = await Program.load(await inst.snapshot(), DEFAULT_LOCAL_LIMITS);
      const frame = snap.snapshot!.stack!.frames.at(-1)!;
      assert.equal(frame.offset, breakAt);
      stops.push(frame.locals[0]!.bits as number);
      inst.release();
      current = snap;
    }
    assert.deepEqual(stops, [3, 2, 1]);
  });
});
