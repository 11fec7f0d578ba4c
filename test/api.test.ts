/** The library API as a user sees it (src/index.ts): launch, suspend, snapshot, restore, clone. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ChildProcessExecutor,
  InstanceStateError,
  ModuleError,
  Runtime,
  SnapshotError,
  instanceServices,
  readSnapshot,
} from '../src/index.js';
import { parseModule } from '../src/wasm/module.js';
import { programBytes } from './helpers/runtime.js';

describe('library API', () => {
  it('suspends, snapshots, restores and clones through the public entry point', async () => {
    const executor = new ChildProcessExecutor();
    try {
      const runtime = new Runtime({ executor, memoryLimitPages: 512, timeResolutionNs: 1 });
      const program = await runtime.load(programBytes('suspend'));
      const inst = await runtime.launch(program, { entry: 'loop', retain: true, services: instanceServices() });
      await assert.rejects(inst.snapshot(), InstanceStateError);
      await new Promise((r) => setTimeout(r, 100));
      inst.suspend();
      assert.deepEqual(await inst.wait(), { state: 'SUSPENDED' });
      const snapshot = await inst.snapshot();
      assert.ok(WebAssembly.validate(snapshot as Uint8Array<ArrayBuffer>));
      assert.equal(readSnapshot(parseModule(snapshot))?.final, false);

      const resumed = await runtime.resume(inst, { retain: true, services: instanceServices() });
      assert.equal(resumed.id, inst.id, 'resume keeps the instance id');
      const clone = await runtime.restore(snapshot, { services: instanceServices() });
      assert.notEqual(clone.id, inst.id);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(resumed.status.state, 'RUNNING');
      assert.equal(clone.status.state, 'RUNNING');
      resumed.kill();
      clone.kill();
      assert.equal((await resumed.wait()).state, 'KILLED');
      assert.equal((await clone.wait()).state, 'KILLED');
    } finally {
      await executor.close();
    }
  });

  it('gives typed errors for bad input', async () => {
    const runtime = new Runtime({ executor: new ChildProcessExecutor(), memoryLimitPages: 512, timeResolutionNs: 1 });
    try {
      await assert.rejects(runtime.load(new Uint8Array([1, 2, 3])), ModuleError);
      const bytes = programBytes('hello');
      // A gate.stack section without gate.snapshot: a malformed snapshot.
      const name = new TextEncoder().encode('gate.stack');
      const section = Uint8Array.of(0, name.length + 3, name.length, ...name, 0, 0);
      await assert.rejects(runtime.load(Uint8Array.of(...bytes, ...section)), SnapshotError);
    } finally {
      await runtime.executor.close();
    }
  });
});
