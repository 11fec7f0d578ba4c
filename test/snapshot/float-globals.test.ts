/**
 * Float globals travel bit for bit: a signalling NaN (which a JS number
 * would quiet) and a NaN payload survive instantiation, a snapshot and a
 * restore in another executor process.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ChildProcessExecutor } from '../../src/runtime/node/child-executor.js';
import { InProcessExecutor } from '../../src/runtime/inprocess.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { instanceServices } from '../../src/service/provider.js';
import { globalValues, memoryImage } from '../../src/snapshot/format.js';
import { parseModule } from '../../src/wasm/module.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';
import { wat } from '../helpers/wat.js';

// Stores the globals' bits in memory, then waits forever (sched_yield in a loop).
const PROGRAM = wat(`(module
  (import "env" "__wasi_sched_yield" (func $sy (result i32)))
  (memory (export "memory") 1)
  (global $f (mut f32) (f32.const nan:0x200000))
  (global $d (mut f64) (f64.const -nan:0x4000000000001))
  (global $c f32 (f32.const nan:0x200001))
  (func (export "run")
    (i32.store (i32.const 0) (i32.reinterpret_f32 (global.get $f)))
    (i64.store (i32.const 8) (i64.reinterpret_f64 (global.get $d)))
    (i32.store (i32.const 16) (i32.reinterpret_f32 (global.get $c)))
    (loop $l (drop (call $sy)) (br $l))))`);

const F32_SNAN = 0x7fa00000;
const F64_SNAN = 0xfff4000000000001n;
const F32_CONST = 0x7fa00001;

const executors: ChildProcessExecutor[] = [];
after(async () => Promise.all(executors.map((e) => e.close())));

async function runAndSnapshot(runtime: Runtime, bytes: Uint8Array, entry?: string): Promise<Uint8Array> {
  const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
  const inst = await runtime.launch(program, { entry, retain: true, services: instanceServices({ principalId: 'local' }) });
  await new Promise((r) => setTimeout(r, 50));
  inst.suspend();
  assert.deepEqual(await inst.wait(), { state: 'SUSPENDED' });
  const snapshot = await inst.snapshot();
  inst.release();
  return snapshot;
}

function check(snapshot: Uint8Array, what: string): void {
  const m = parseModule(snapshot);
  assert.deepEqual(globalValues(m), [
    { type: 0x7d, bits: F32_SNAN },
    { type: 0x7c, bits: F64_SNAN },
    { type: 0x7d, bits: F32_CONST },
  ], what);
  const mem = new DataView(memoryImage(m).buffer);
  assert.equal(mem.getUint32(0, true), F32_SNAN, `${what}: the program saw the f32 global's bits`);
  assert.equal(mem.getBigUint64(8, true), F64_SNAN, `${what}: the program saw the f64 global's bits`);
  assert.equal(mem.getUint32(16, true), F32_CONST, `${what}: the program saw the immutable global's bits`);
}

describe('float globals', () => {
  it('keep signalling NaNs and payloads through run, snapshot and restore in another process', async () => {
    const here = new Runtime({ executor: new InProcessExecutor(), memoryLimitPages: 64, timeResolutionNs: 1000 });
    const child = new ChildProcessExecutor();
    executors.push(child);
    const there = new Runtime({ executor: child, memoryLimitPages: 64, timeResolutionNs: 1000 });
    const first = await runAndSnapshot(here, PROGRAM, 'run');
    check(first, 'first snapshot');
    const second = await runAndSnapshot(there, first);
    check(second, 'snapshot of the restored instance');
  });
});
