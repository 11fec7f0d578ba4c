/**
 * Every executor host passes the same suite: the in-process host (tests,
 * browser), the child-process host (CLI) and the sandboxed child process of
 * an ExecutorPool (server).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Executor } from '../../src/runtime/executor.js';
import { InProcessExecutor } from '../../src/runtime/inprocess.js';
import { ChildProcessExecutor } from '../../src/runtime/node/child-executor.js';
import { ExecutorPool } from '../../src/runtime/node/pool.js';
import { programBytes, runWithClient } from '../helpers/runtime.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { instanceServices } from '../../src/service/provider.js';
import { readSnapshot } from '../../src/snapshot/format.js';
import { parseModule } from '../../src/wasm/module.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';

const hosts: Array<[string, () => Promise<{ executor: Executor; close(): Promise<void> }>]> = [
  ['in-process', async () => ({ executor: new InProcessExecutor(), close: async () => {} })],
  ['child-process', async () => {
    const executor = new ChildProcessExecutor();
    return { executor, close: () => executor.close() };
  }],
  ['sandboxed (bwrap pool)', async () => {
    const pool = await ExecutorPool.create({ sandbox: 'bwrap' });
    return { executor: pool.executorFor('conformance'), close: () => pool.close() };
  }],
];

for (const [name, create] of hosts) {
  describe(`executor conformance: ${name}`, () => {
    let executor!: Executor;
    let close: () => Promise<void> = async () => {};
    before(async () => {
      ({ executor, close } = await create());
    });
    after(() => close());

    it('runs a program that talks to its origin client', async () => {
      const r = await runWithClient(programBytes('hello'), { executor, entry: 'repl', input: 'a' });
      assert.deepEqual(r.status, { state: 'HALTED', result: 0 });
      assert.equal(r.output, 'hello, world\n');
    });

    it('runs several instances at once, each with its own services', async () => {
      const runs = await Promise.all(
        Array.from({ length: 5 }, (_, i) => runWithClient(programBytes('hello'), { executor, entry: i % 2 ? 'greet' : 'twice' })),
      );
      runs.forEach((r, i) => assert.equal(r.output, i % 2 ? 'hello, world\n' : 'hello, world\nhello, world\n'));
    });

    it('time-slices CPU-bound instances so that others progress', async () => {
      const spinners = [0, 1].map(() =>
        runWithClient(programBytes('nomem'), { executor, entry: 'spin', onLaunch: (inst) => setTimeout(() => inst.kill(), 1500) }),
      );
      const hello = await runWithClient(programBytes('hello'), { executor, entry: 'greet' });
      assert.equal(hello.output, 'hello, world\n');
      for (const s of await Promise.all(spinners)) assert.deepEqual(s.status, { state: 'KILLED' });
    });

    it('says which function of the program a trap happened in (debuggee.wasm crash: explode, 5 calls deep)', async () => {
      const r = await runWithClient(programBytes('debuggee'), { executor, entry: 'crash' });
      assert.deepEqual(r.status, { state: 'KILLED', cause: 'UNREACHABLE', error: 'trapped in explode (test/programs/debuggee.c:47:2)' });
      assert.deepEqual(r.instance.trapLocation?.function, 6);
      // The whole stack, with source lines: crash → fall(5) … fall(0) → explode.
      const frames = r.instance.trapBacktrace!.map((f) => `${f.name}:${f.source?.line}`);
      assert.deepEqual(frames, ['explode:47', 'fall:53', 'fall:55', 'fall:55', 'fall:55', 'fall:55', 'fall:55', 'crash:62']);
    });

    it('reports traps, exits and ABI deficiencies', async () => {
      const oob = (await runWithClient(programBytes('traps'), { executor, entry: 'oob' })).status;
      assert.deepEqual({ ...oob, error: undefined }, { state: 'KILLED', cause: 'MEMORY_ACCESS_OUT_OF_BOUNDS', error: undefined });
      assert.match(oob.error ?? '', /^trapped in oob at 0x[0-9a-f]+$/);
      assert.deepEqual((await runWithClient(programBytes('traps'), { executor, entry: 'exit1' })).status, { state: 'TERMINATED', result: 1 });
      assert.deepEqual((await runWithClient(programBytes('randomseed'), { executor, entry: 'toomuch' })).status, { state: 'SUSPENDED', cause: 'ABI_DEFICIENCY' });
    });

    it('keeps a packet that arrives after a retained instance suspended, for its snapshot', async () => {
      const runtime = new Runtime({ executor, memoryLimitPages: 2048, timeResolutionNs: 1000 });
      const inst = await runtime.launch(await Program.load(programBytes('suspend'), DEFAULT_LOCAL_LIMITS), { entry: 'loop', retain: true, services: instanceServices({ principalId: 'local' }) });
      await new Promise((r) => setTimeout(r, 100));
      inst.suspend();
      assert.deepEqual(await inst.wait(), { state: 'SUSPENDED' });
      // As a service's reply still in flight when the instance suspended: a packet of service code 0 with 4 bytes of content.
      const packet = new Uint8Array([12, 0, 0, 0, 0, 0, 0, 0, 0x47, 0x41, 0x54, 0x45]);
      inst.sendToProgram(packet);
      const info = readSnapshot(parseModule(await inst.snapshot()))!;
      assert.ok(Buffer.from(info.input).includes(Buffer.from('GATE')), `the snapshot's input (${info.input.length} bytes) lacks the packet`);
      inst.release();
    });

    it('suspends and kills on request', async () => {
      const s = await runWithClient(programBytes('suspend'), { executor, entry: 'loop', onLaunch: (i) => setTimeout(() => i.suspend(), 200) });
      assert.deepEqual(s.status, { state: 'SUSPENDED' });
      const k = await runWithClient(programBytes('hello'), { executor, entry: 'multi', onLaunch: (i) => setTimeout(() => i.kill(), 200) });
      assert.deepEqual(k.status, { state: 'KILLED' });
    });

    it('kills the instance on an ABI violation', async () => {
      const r = await runWithClient(programBytes('violations'), { executor, entry: 'bad_domain' });
      assert.equal(r.status.cause, 'ABI_VIOLATION');
    });
  });
}

describe('child-process executor', () => {
  it('runs programs in another process', async () => {
    const executor = new ChildProcessExecutor();
    try {
      await runWithClient(programBytes('nop'), { executor });
      assert.ok(executor.pid !== undefined && executor.pid !== process.pid);
    } finally {
      await executor.close();
    }
  });

  it('reports the instances of a crashed executor KILLED, and the host process lives on', async () => {
    const executor = new ChildProcessExecutor();
    const r = await runWithClient(programBytes('suspend'), { executor, entry: 'loop', onLaunch: () => setTimeout(() => executor.terminate(), 300) });
    assert.equal(r.status.state, 'KILLED');
    assert.match(r.status.error ?? '', /executor process exited/);
    await executor.close();
  });
});
