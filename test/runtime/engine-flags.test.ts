/**
 * The executor's V8 policy for large functions (runtime/node/engine-flags.ts):
 * the mid-tier register allocator stays off until a module with a function
 * body over TOP_TIER_BODY_LIMIT is compiled in the process, and then stays
 * on. (node --test runs each file in its own process, so the process-wide
 * state starts fresh here.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { engineBeforeCompile, TOP_TIER_BODY_LIMIT } from '../../src/runtime/node/engine-flags.js';
import { ByteWriter } from '../../src/wasm/leb128.js';
import { functionBodyEntries, largestFunctionBody, parseModule } from '../../src/wasm/module.js';
import { programBytes } from '../helpers/runtime.js';

/** A module of functions `() -> ()` whose bodies are `nops` nops each. */
function moduleWithBodies(...nops: number[]): Uint8Array {
  const w = new ByteWriter().bytes(Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  const section = (id: number, content: ByteWriter): void => void w.u8(id).u32(content.length).bytes(content.view());
  section(1, new ByteWriter().u32(1).u8(0x60).u32(0).u32(0));
  const funcs = new ByteWriter().u32(nops.length);
  for (let i = 0; i < nops.length; i++) funcs.u32(0);
  section(3, funcs);
  const code = new ByteWriter().u32(nops.length);
  for (const n of nops) code.u32(n + 2).u32(0).bytes(new Uint8Array(n).fill(0x01)).u8(0x0b); // size, no locals, nops, end
  section(10, code);
  return w.finish();
}

test('largestFunctionBody agrees with the full parser on a real program', () => {
  const bytes = programBytes('hello');
  const m = parseModule(bytes);
  const { starts } = functionBodyEntries(bytes);
  assert.equal(starts.length, m.bodies.length);
  const largest = Math.max(...m.bodies.map((b, i) => b.end - starts[i]!));
  assert.equal(largestFunctionBody(bytes), largest);
  assert.equal(largestFunctionBody(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0])), 0);
  assert.equal(largestFunctionBody(bytes.subarray(0, 20)), 0, 'bytes cut short have no bodies');
});

test('the mid-tier fallback comes back, for good, once a module has a body over the limit', () => {
  const small = moduleWithBodies(10, TOP_TIER_BODY_LIMIT - 100);
  const large = moduleWithBodies(10, TOP_TIER_BODY_LIMIT + 10);
  assert.ok(largestFunctionBody(small) <= TOP_TIER_BODY_LIMIT);
  assert.ok(largestFunctionBody(large) > TOP_TIER_BODY_LIMIT);
  assert.equal(engineBeforeCompile(small), false);
  assert.equal(engineBeforeCompile(large), true);
  assert.equal(engineBeforeCompile(small), true, 'the fallback stays on');
  // Both are real modules the engine accepts and runs.
  for (const bytes of [small, large]) {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>));
    assert.equal(Object.keys(instance.exports).length, 0);
  }
});
