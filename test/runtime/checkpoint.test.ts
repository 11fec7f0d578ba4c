/**
 * Runtime.checkpoint: the state of a running instance as a snapshot module,
 * taken while it runs on with its services (an origin client stays
 * connected), and restorable like any snapshot.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryCache } from '../../src/prepare/cache.js';
import { InProcessExecutor } from '../../src/runtime/inprocess.js';
import { Runtime, type RunningInstance } from '../../src/runtime/runtime.js';
import { State } from '../../src/runtime/status.js';
import { instanceServices, type InstanceServices } from '../../src/service/provider.js';
import { programBytes } from '../helpers/runtime.js';

const cache = new MemoryCache();
const counter = programBytes('counter');

function newRuntime(): Runtime {
  return new Runtime({ executor: new InProcessExecutor(), memoryLimitPages: 2048, timeResolutionNs: 1000, cache });
}

/** A client of the counter's origin: the counts it has received, and a way to wait for one. */
function countClient(inst: RunningInstance<InstanceServices>): { next(until: (n: number) => boolean): Promise<number>; ended: Promise<void> } {
  let text = '';
  let waiters: Array<{ until: (n: number) => boolean; resolve(n: number): void }> = [];
  const ended = inst.services.origin.connect(null, {
    write: (chunk) => {
      text += Buffer.from(chunk).toString('utf8');
      const lines = text.split('\n');
      text = lines.pop()!;
      for (const line of lines) {
        const n = Number(line);
        waiters = waiters.filter((w) => (w.until(n) ? (w.resolve(n), false) : true));
      }
    },
    end: () => undefined,
  });
  return { next: (until) => new Promise((resolve) => waiters.push({ until, resolve })), ended };
}

async function launchCounter(runtime: Runtime): Promise<RunningInstance<InstanceServices>> {
  return runtime.launch(await runtime.load(counter), { entry: 'run', retain: true, services: instanceServices({ principalId: 'local' }) });
}

describe('Runtime.checkpoint', () => {
  it('takes a running instance\'s state while its origin client stays connected, and the state restores', async () => {
    const runtime = newRuntime();
    const inst = await launchCounter(runtime);
    const client = countClient(inst);
    let streamEnded = false;
    void client.ended.then(() => (streamEnded = true));
    const before = await client.next((n) => n >= 3);
    const first = await runtime.checkpoint(inst);
    assert.ok(first, 'a checkpoint');
    assert.equal(inst.status.state, State.Running);
    // The same client keeps receiving counts, through a second checkpoint too.
    const later = await client.next((n) => n > before + 2);
    assert.ok(await runtime.checkpoint(inst));
    await client.next((n) => n > later + 2);
    assert.equal(streamEnded, false);
    inst.kill();
    assert.equal((await inst.wait()).state, State.Killed);

    // The first checkpoint, restored elsewhere: it counts on from where it was, and accepts a new client.
    const other = newRuntime();
    const restored = await other.restore(first, { retain: true, services: instanceServices({ principalId: 'local' }) });
    const after = await countClient(restored).next(() => true);
    assert.ok(after >= before, `count went back from ${before} to ${after}`);
    restored.kill();
    await restored.wait();
  });

  it('a kill while a checkpoint has the instance paused ends it KILLED', async () => {
    const runtime = newRuntime();
    const inst = await launchCounter(runtime);
    await countClient(inst).next((n) => n >= 1);
    const checkpoint = runtime.checkpoint(inst);
    inst.kill();
    assert.equal(await checkpoint, undefined);
    assert.equal((await inst.wait()).state, State.Killed);
  });

  it('a suspend while a checkpoint has the instance paused suspends it after the checkpoint', async () => {
    const runtime = newRuntime();
    const inst = await launchCounter(runtime);
    await countClient(inst).next((n) => n >= 1);
    const checkpoint = runtime.checkpoint(inst);
    inst.suspend();
    await checkpoint;
    assert.equal((await inst.wait()).state, State.Suspended);
  });

  it('does not checkpoint a run with a CPU budget (continuing would renew the budget); it runs on untouched', async () => {
    const runtime = newRuntime();
    const inst = await runtime.launch(await runtime.load(counter), { entry: 'run', retain: true, cpuBudgetMs: 60_000, services: instanceServices({ principalId: 'local' }) });
    const client = countClient(inst);
    const before = await client.next((n) => n >= 1);
    assert.equal(await runtime.checkpoint(inst), undefined);
    await client.next((n) => n > before);
    inst.kill();
    assert.equal((await inst.wait()).state, State.Killed);
  });
});
