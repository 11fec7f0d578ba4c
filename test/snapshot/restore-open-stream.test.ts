/**
 * A program suspended while a client was connected to its origin stream:
 * after a restore the stream has no client, the program is told so (FLOW
 * {id, 0}, services.md §3.4) and can accept a client of the new host. The
 * FLOW is sent while the services are restored, before the instance exists
 * in its executor: it must not be lost on the way.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { MemoryCache } from '../../src/prepare/cache.js';
import type { Executor } from '../../src/runtime/executor.js';
import { InProcessExecutor } from '../../src/runtime/inprocess.js';
import { ChildProcessExecutor } from '../../src/runtime/node/child-executor.js';
import { Runtime, type RunningInstance } from '../../src/runtime/runtime.js';
import { instanceServices, type InstanceServices } from '../../src/service/provider.js';
import { programBytes } from '../helpers/runtime.js';

const cache = new MemoryCache();
const closers: Array<() => Promise<void>> = [];
after(() => Promise.all(closers.map((c) => c())));

/** Connects a client and resolves with the first count ≥ `min` it receives ("<n>\n" lines of the counter), within 20 s. */
function countAtLeast(inst: RunningInstance<InstanceServices>, min: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no count of at least ${min} within 20 s`)), 20_000);
    let text = '';
    inst.services.origin
      .connect(null, {
        write: (c) => {
          text += Buffer.from(c).toString();
          const lines = text.split('\n');
          text = lines.pop()!;
          const hit = lines.map(Number).find((n) => n >= min);
          if (hit !== undefined) {
            clearTimeout(timer);
            resolve(hit);
          }
        },
        end: () => {},
      })
      .then(() => reject(new Error(`the stream closed before a count of ${min}`)), reject);
  });
}

for (const [name, make] of [
  ['in process', () => new InProcessExecutor()],
  ['child process', () => {
    const e = new ChildProcessExecutor();
    closers.push(() => e.close());
    return e;
  }],
] as Array<[string, () => Executor]>) {
  describe(`restore with an origin client connected at suspension (${name})`, () => {
    it('a client of the restored instance receives the count where it left off', async () => {
      const runtime = new Runtime({ executor: make(), memoryLimitPages: 2048, timeResolutionNs: 1000, cache });
      const services = instanceServices({ principalId: 'local' });
      const first = await runtime.launch(await runtime.load(programBytes('counter')), { entry: 'run', retain: true, services });
      const before = await countAtLeast(first, 2);
      // Suspended with the client still connected.
      first.suspend();
      assert.deepEqual(await first.wait(), { state: 'SUSPENDED' });
      const bytes = await first.snapshot();
      first.release();

      const second = await runtime.restore(bytes, { services: instanceServices({ principalId: 'local' }) });
      const after = await countAtLeast(second, 0);
      assert.ok(after > before, `restored count ${after} after ${before}`);
      second.kill();
      await second.wait();
    });
  });
}
