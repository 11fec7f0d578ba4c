/**
 * A real C program of about 0.8 MB (bench/programs/sqlite.c: SQLite with an
 * in-memory database, wasi-libc) through the transform: time-sliced every
 * millisecond (each slice unwinds and rewinds the whole stack), and
 * suspended midway, snapshotted and restored in other executor processes,
 * it computes what it computes without any of that.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { MemoryCache } from '../../src/prepare/cache.js';
import { PROFILES, type Profile } from '../../src/prepare/profile.js';
import { ChildProcessExecutor } from '../../src/runtime/node/child-executor.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime, type RunningInstance } from '../../src/runtime/runtime.js';
import { readSnapshot } from '../../src/snapshot/format.js';
import { instanceServices, type InstanceServices } from '../../src/service/provider.js';
import { parseModule } from '../../src/wasm/module.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';

const SQLITE = readFileSync(new URL('../../../bench/build/sqlite.wasm', import.meta.url));
/** What SQLite's results hash to (the program prints it): one workload, and `repeat`'s ten. */
const RUN_CHECKSUM = 'sqlite: checksum 837379716\n';
const REPEAT_CHECKSUM = 'sqlite: checksum 548582717\n';

const cache = new MemoryCache();
const executors: ChildProcessExecutor[] = [];
after(async () => {
  await Promise.all(executors.map((e) => e.close()));
});
function newRuntime(sliceMs?: number): Runtime {
  const executor = new ChildProcessExecutor({ sliceMs });
  executors.push(executor);
  return new Runtime({ executor, memoryLimitPages: 4096, timeResolutionNs: 1000, cache });
}

async function launch(runtime: Runtime, bytes: Uint8Array, entry: string | undefined, profile?: Profile): Promise<{ inst: RunningInstance<InstanceServices>; debug: () => string }> {
  const chunks: Uint8Array[] = [];
  const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
  const inst = await runtime.launch(program, { entry, profile, retain: true, debug: (d) => void chunks.push(d), services: instanceServices({ principalId: 'local' }) });
  return { inst, debug: () => Buffer.concat(chunks).toString() };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('SQLite (a real C program) through the transform', () => {
  const sliced = newRuntime(1);
  for (const profile of PROFILES) {
    it(`gives its result under ${profile}, time-sliced every millisecond`, async () => {
      const run = await launch(sliced, SQLITE, 'run', profile);
      assert.deepEqual(await run.inst.wait(), { state: 'HALTED', result: 0 });
      assert.equal(run.debug(), RUN_CHECKSUM);
      run.inst.release();
    });
  }

  it('suspended midway three times, snapshotted and restored in other executors, finishes with the same result', async () => {
    const runtimes = [newRuntime(), newRuntime()];
    let run = await launch(runtimes[0]!, SQLITE, 'repeat', 'suspend-anywhere');
    let debug = '';
    // Three suspensions inside SQLite; one that came too early (a loaded
    // machine may not have started the program within the sleep) is
    // restored and tried again, at most 10 times in all.
    let inside = 0;
    for (let i = 0; inside < 3; i++) {
      assert.ok(i < 10, `only ${inside} of 10 suspensions landed inside SQLite`);
      await sleep(40);
      run.inst.suspend();
      assert.deepEqual(await run.inst.wait(), { state: 'SUSPENDED' });
      const bytes = await run.inst.snapshot();
      run.inst.release();
      debug += run.debug();
      const stack = readSnapshot(parseModule(bytes))!.stack;
      assert.ok(stack, 'a snapshot of a suspended instance has its stack');
      if (stack.frames.length > 3) inside++;
      run = await launch(runtimes[(i + 1) % 2]!, bytes, undefined);
    }
    assert.deepEqual(await run.inst.wait(), { state: 'HALTED', result: 0 });
    assert.equal(debug + run.debug(), REPEAT_CHECKSUM);
    run.inst.release();
  });
});
