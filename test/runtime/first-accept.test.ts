/**
 * A call's first origin accept answered in the executor (FirstCallReplies):
 * the client of a call connects as soon as the instance is launched, so the
 * executor gives the program its accept reply and send credit at once, and
 * the trusted side's origin service pairs that accept with the client when
 * the CALL reaches it. Real hello program, in process and in a child process.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { callPacket, flowPacket } from '../../src/abi/packet.js';
import { MemoryCache } from '../../src/prepare/cache.js';
import { InProcessExecutor } from '../../src/runtime/inprocess.js';
import type { Executor, InstanceEvents, InstanceSpec } from '../../src/runtime/executor.js';
import { ChildProcessExecutor } from '../../src/runtime/node/child-executor.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime, type RunningInstance } from '../../src/runtime/runtime.js';
import { OriginAbortedError, OriginClosedError, type OriginOutput } from '../../src/service/origin.js';
import { instanceServices, type InstanceServices } from '../../src/service/provider.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';
import { programBytes } from '../helpers/runtime.js';

const cache = new MemoryCache();
const hello = await Program.load(programBytes('hello'), DEFAULT_LOCAL_LIMITS);

function collector(): { output: OriginOutput; text(): string } {
  const chunks: Buffer[] = [];
  return { output: { write: (c) => void chunks.push(Buffer.from(c)), end: () => {} }, text: () => Buffer.concat(chunks).toString() };
}

/** Launches hello's `entry` as a call does: retained, its client connecting at once. */
function launchCall(runtime: Runtime, entry: string, clientConnects = true): Promise<RunningInstance<InstanceServices>> {
  return runtime.launch(hello, { entry, retain: true, services: instanceServices({ principalId: 'local', clientConnects }) });
}

const hosts: Array<{ name: string; make(): Executor }> = [
  { name: 'in process', make: () => new InProcessExecutor() },
  { name: 'child process', make: () => new ChildProcessExecutor() },
];

for (const host of hosts) {
  describe(`first accept answered in the executor (${host.name})`, () => {
    const executor = host.make();
    const runtime = new Runtime({ executor, memoryLimitPages: 2048, timeResolutionNs: 1000, cache });
    after(() => executor.close());

    it('greets the call’s client', async () => {
      const inst = await launchCall(runtime, 'greet');
      const c = collector();
      await inst.services.origin.connect(null, c.output);
      assert.deepEqual(await inst.wait(), { state: 'HALTED', result: 0 });
      assert.equal(c.text(), 'hello, world\n');
    });

    it('answers later accepts from the trusted side as before', async () => {
      const inst = await launchCall(runtime, 'multi');
      const first = collector();
      const second = collector();
      await inst.services.origin.connect(null, first.output);
      await inst.services.origin.connect(null, second.output);
      assert.equal(first.text(), 'hello, world\n');
      assert.equal(second.text(), 'hello, world\n');
      assert.deepEqual(inst.services.origin.streamIds(), []);
      inst.kill();
      assert.equal((await inst.wait()).state, 'KILLED');
    });

    it('closes the stream at once when the client gave up before the program accepted', async () => {
      const inst = await launchCall(runtime, 'repl');
      const gaveUp = new AbortController();
      gaveUp.abort(new Error('client disconnected'));
      await assert.rejects(inst.services.origin.connect(null, collector().output, gaveUp.signal), OriginAbortedError);
      // repl reads until end of stream: it sees the stream it was given end, instead of waiting for a client forever.
      assert.deepEqual(await inst.wait(), { state: 'HALTED', result: 0 });
    });

    it('turns the client away when the program ends without accepting', async () => {
      const inst = await launchCall(runtime, 'test_ext');
      await assert.rejects(inst.services.origin.connect(null, collector().output), OriginClosedError);
      assert.deepEqual(await inst.wait(), { state: 'HALTED', result: 0 });
    });

    it('answers the accept from the trusted side after a checkpoint taken before the program accepted', async () => {
      const inst = await launchCall(runtime, 'greet');
      const c = collector();
      const connected = inst.services.origin.connect(null, c.output);
      // Paused before its first slice: the replies the executor held are gone with the instance it continues from.
      assert.ok(await runtime.checkpoint(inst), 'checkpointed');
      await connected;
      assert.deepEqual(await inst.wait(), { state: 'HALTED', result: 0 });
      assert.equal(c.text(), 'hello, world\n');
    });
  });
}

describe('an executor that answers an accept the trusted side did not hand it', () => {
  /** Gives every instance accept replies of its own, as a compromised executor could. */
  class AnsweringExecutor extends InProcessExecutor {
    override createInstance(spec: InstanceSpec, events: InstanceEvents): void {
      const reply = new Uint8Array(8);
      super.createInstance({ ...spec, firstCallReplies: { service: 'origin', packets: [callPacket(0, reply), flowPacket(0, [{ id: 0, value: 32767 }])] } }, events);
    }
  }

  it('is caught: the program’s data on a stream the origin never opened kills it with ABI_VIOLATION', async () => {
    const runtime = new Runtime({ executor: new AnsweringExecutor(), memoryLimitPages: 2048, timeResolutionNs: 1000, cache });
    // Nobody connects (and the trusted side answered nothing ahead).
    const inst = await launchCall(runtime, 'greet', false);
    const status = await inst.wait();
    assert.equal(status.state, 'KILLED');
    assert.equal(status.cause, 'ABI_VIOLATION');
  });
});
