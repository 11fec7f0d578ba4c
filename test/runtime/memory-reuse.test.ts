/**
 * Memory objects reused between instances of one group (ExecutorCore): an
 * instance never sees what another wrote. memreuse.wasm's `dirty` fills its
 * data and all memory past its heap base; `check` says "clean" only if its
 * data has its initial values and the rest is zeros.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryCache } from '../../src/prepare/cache.js';
import { ExecutorCore } from '../../src/runtime/executor-core.js';
import type { Executor, ExecutorSnapshot, InstanceEvents, InstanceSpec, KillReason } from '../../src/runtime/executor.js';
import { ChildProcessExecutor } from '../../src/runtime/node/child-executor.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';
import { noServices, programBytes } from '../helpers/runtime.js';

/** An in-process executor whose core the test can ask how many memories it reused. */
class CoreExecutor implements Executor {
  readonly core = new ExecutorCore();
  loadModule = (key: string, bytes: Uint8Array): Promise<void> => this.core.loadModule(key, bytes);
  hasModule = (key: string): boolean => this.core.hasModule(key);
  createInstance = (spec: InstanceSpec, events: InstanceEvents): void => this.core.createInstance(spec, events);
  deliver = (id: string, packet: Uint8Array): void => this.core.deliver(id, packet);
  ack = (id: string, bytes: number): void => this.core.ack(id, bytes);
  suspend = (id: string): void => this.core.suspend(id);
  snapshot = async (id: string): Promise<ExecutorSnapshot> => this.core.snapshot(id);
  release = (id: string): void => this.core.release(id);
  kill = (id: string, reason?: KillReason): void => this.core.kill(id, reason);
  close = async (): Promise<void> => {};
}

const cache = new MemoryCache();

async function setup(executor: Executor): Promise<(entry: 'dirty' | 'grow' | 'check', opts?: { group?: string; retain?: boolean; snapshot?: boolean }) => Promise<string>> {
  const runtime = new Runtime({ executor, memoryLimitPages: 16, timeResolutionNs: 1000, cache });
  const program = await Program.load(programBytes('memreuse'), DEFAULT_LOCAL_LIMITS);
  return async (entry, opts = {}) => {
    const chunks: Uint8Array[] = [];
    const inst = await runtime.launch(program, {
      entry,
      memoryGroup: opts.group,
      retain: opts.retain,
      debug: (d) => void chunks.push(Buffer.from(d)),
      services: noServices,
    });
    const status = await inst.wait();
    if (opts.snapshot) await inst.snapshot();
    inst.release();
    const log = Buffer.concat(chunks).toString();
    assert.equal(status.state, 'HALTED', `${entry}: ${JSON.stringify(status)} ${log}`);
    return log;
  };
}

describe('memory reuse', () => {
  it('gives an instance of the same group the memory another used, with only its data segments and zeros in it', async () => {
    const executor = new CoreExecutor();
    const run = await setup(executor);
    assert.equal(await run('dirty', { group: 'ed25519:a' }), 'dirty\n');
    assert.equal(await run('check', { group: 'ed25519:a' }), 'clean\n');
    assert.equal(executor.core.memoriesReused, 1, 'the second instance got the first one memory');
    // Retained instances give theirs back when released.
    assert.equal(await run('dirty', { group: 'ed25519:a', retain: true }), 'dirty\n');
    assert.equal(await run('check', { group: 'ed25519:a', retain: true }), 'clean\n');
    assert.equal(executor.core.memoriesReused, 3);
  });

  it('never gives one group the memory of another, nor reuses memory without a group', async () => {
    const executor = new CoreExecutor();
    const run = await setup(executor);
    await run('dirty', { group: 'ed25519:a' });
    assert.equal(await run('check', { group: 'ed25519:b' }), 'clean\n');
    await run('dirty');
    assert.equal(await run('check'), 'clean\n');
    assert.equal(executor.core.memoriesReused, 0);
  });

  it('does not reuse the memory of an instance that was snapshotted (the snapshot holds a view of it)', async () => {
    const executor = new CoreExecutor();
    const run = await setup(executor);
    await run('dirty', { group: 'ed25519:a', retain: true, snapshot: true });
    assert.equal(await run('check', { group: 'ed25519:a' }), 'clean\n');
    assert.equal(executor.core.memoriesReused, 0);
  });

  it('does not reuse a memory that grew', async () => {
    const executor = new CoreExecutor();
    const run = await setup(executor);
    assert.equal(await run('grow', { group: 'ed25519:a' }), 'dirty\n');
    assert.equal(await run('check', { group: 'ed25519:a' }), 'clean\n');
    assert.equal(executor.core.memoriesReused, 0);
  });

  it('keeps instances of one group apart in a child-process executor too', async () => {
    const executor = new ChildProcessExecutor();
    try {
      const run = await setup(executor);
      for (let i = 0; i < 3; i++) {
        await run('dirty', { group: 'ed25519:a', retain: true });
        assert.equal(await run('check', { group: 'ed25519:a', retain: true }), 'clean\n');
      }
    } finally {
      await executor.close();
    }
  });
});
