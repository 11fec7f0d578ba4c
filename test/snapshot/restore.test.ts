/**
 * Suspend, snapshot and restore end to end: real programs, restored in other
 * executor processes, many times in a row (issue: snapshots).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { MemoryCache } from '../../src/prepare/cache.js';
import { PROFILES, type Profile } from '../../src/prepare/profile.js';
import type { Executor } from '../../src/runtime/executor.js';
import { ChildProcessExecutor } from '../../src/runtime/node/child-executor.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime, type RunningInstance } from '../../src/runtime/runtime.js';
import { instanceServices, type InstanceServices } from '../../src/service/provider.js';
import { parseModule } from '../../src/wasm/module.js';
import { encodeStack, readSnapshot } from '../../src/snapshot/format.js';
import { SnapshotError } from '../../src/snapshot/errors.js';
import type { StackFrame, StackState } from '../../src/snapshot/state.js';
import { ByteWriter } from '../../src/wasm/leb128.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';
import { programBytes } from '../helpers/runtime.js';

const cache = new MemoryCache();
const executors: ChildProcessExecutor[] = [];
after(async () => {
  await Promise.all(executors.map((e) => e.close()));
});

function newRuntime(executor?: Executor): Runtime {
  const e = executor ?? new ChildProcessExecutor();
  if (e instanceof ChildProcessExecutor) executors.push(e);
  return new Runtime({ executor: e, memoryLimitPages: 2048, timeResolutionNs: 1000, cache });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Run {
  inst: RunningInstance<InstanceServices>;
  debug: () => string;
}

async function start(runtime: Runtime, bytes: Uint8Array, entry?: string, profile?: Profile): Promise<Run> {
  const chunks: Uint8Array[] = [];
  const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
  const inst = await runtime.launch(program, {
    entry,
    profile,
    retain: true,
    debug: (d) => void chunks.push(d),
    services: instanceServices({ principalId: 'local' }),
  });
  return { inst, debug: () => Buffer.concat(chunks).toString() };
}

async function waitFor(run: Run, pattern: RegExp, timeoutMs = 20000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = run.debug().match(pattern);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; debug so far: ${run.debug().slice(-500)}`);
    if (run.inst.status.state !== 'RUNNING') throw new Error(`instance stopped ${JSON.stringify(run.inst.status)} before ${pattern}`);
    await sleep(20);
  }
}

/** The snapshot with its gate.stack content replaced. */
function withStack(bytes: Uint8Array, stack: StackState): Uint8Array {
  const m = parseModule(bytes);
  const sec = m.sections.find((s) => s.name === 'gate.stack')!;
  const content = encodeStack(stack);
  const name = new TextEncoder().encode('gate.stack');
  const payload = new ByteWriter().u32(name.length).bytes(name).bytes(content).finish();
  const section = new ByteWriter().section(0, payload).finish();
  return Buffer.concat([bytes.subarray(0, sec.start), section, bytes.subarray(sec.end)]);
}

async function suspendAndSnapshot(run: Run): Promise<Uint8Array> {
  run.inst.suspend();
  assert.deepEqual(await run.inst.wait(), { state: 'SUSPENDED' });
  const bytes = await run.inst.snapshot();
  run.inst.release();
  return bytes;
}

for (const profile of PROFILES) {
  describe(`snapshot and restore across processes (${profile})`, () => {
    const a = newRuntime();
    const b = newRuntime();

    it('suspend.wasm loop continues counting, 6 times in a row, alternating processes', async () => {
      let run = await start(a, programBytes('suspend'), 'loop', profile);
      let last = Number((await waitFor(run, /running: (\d+)\n/))[1]);
      for (let round = 0; round < 6; round++) {
        const bytes = await suspendAndSnapshot(run);
        const lines = [...run.debug().matchAll(/running: (\d+)\n/g)].map((m) => Number(m[1]));
        last = lines[lines.length - 1]!;
        const info = readSnapshot(parseModule(bytes))!;
        assert.equal(info.final, false);
        assert.ok(info.stack, 'a suspended snapshot has a stack');
        run = await start(round % 2 ? a : b, bytes);
        const next = Number((await waitFor(run, /running: (\d+)\n/))[1]);
        assert.equal(next, last + 1, `round ${round}: continued from ${last}`);
      }
      run.inst.kill();
      await run.inst.wait();
    });

    it('suspend.wasm loop2 keeps its local and memory values in step', async () => {
      let run = await start(a, programBytes('suspend'), 'loop2', profile);
      for (let round = 0; round < 5; round++) {
        await sleep(150);
        const bytes = await suspendAndSnapshot(run);
        run = await start(round % 2 ? a : b, bytes);
      }
      await sleep(150);
      run.inst.suspend();
      // loop2 returns (HALTED) only on a mismatch.
      assert.deepEqual(await run.inst.wait(), { state: 'SUSPENDED' });
    });

    it('a program in deep recursion continues with every frame intact', async () => {
      const run = await start(a, programBytes('counter'), 'deep', profile);
      await waitFor(run, /deep: bottom/);
      const bytes = await suspendAndSnapshot(run);
      const restored = await start(b, bytes);
      assert.deepEqual(await restored.inst.wait(), { state: 'HALTED', result: 0 });
      assert.match(restored.debug(), /deep \d+ ok/);
    });

    it('a snapshot from before call arguments were left out of frames restores (deep recursion, arguments on every frame)', async () => {
      const run = await start(a, programBytes('counter'), 'deep', profile);
      await waitFor(run, /deep: bottom/);
      const bytes = await suspendAndSnapshot(run);
      // As such a snapshot had it: each call of a defined function with its arguments on top of the operand stack (any values: they are dropped).
      const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
      const stack = readSnapshot(program.module)!.stack!;
      const layouts = program.unwindLayouts(stack.profile);
      let withArgs = 0;
      const frames = stack.frames.map((f): StackFrame => {
        const args = layouts.get(f.func)!.sites.find((s) => s.kind === f.kind && s.offset === f.offset)!.args ?? [];
        if (args.length) withArgs++;
        return { ...f, stack: [...f.stack, ...args.map((type) => (type === 0x7e || type === 0x7c ? { type, bits: 0x5a5an } : { type, bits: 0x5a5a }))] as StackFrame['stack'] };
      });
      assert.ok(withArgs >= 10000, `only ${withArgs} frames call a defined function`);
      const restored = await start(b, withStack(bytes, { ...stack, frames }));
      assert.deepEqual(await restored.inst.wait(), { state: 'HALTED', result: 0 });
      assert.match(restored.debug(), /deep \d+ ok/);
    });

    it('a 64 MiB memory survives byte for byte', async () => {
      const run = await start(a, programBytes('snaptest'), 'bigmem', profile);
      await waitFor(run, /bigmem filled/, 60000);
      const bytes = await suspendAndSnapshot(run);
      assert.equal(readSnapshot(parseModule(bytes))!.stack !== undefined, true);
      const restored = await start(b, bytes);
      await waitFor(restored, /bigmem verified/, 60000);
      restored.inst.suspend();
      assert.deepEqual(await restored.inst.wait(), { state: 'SUSPENDED' });
      restored.inst.release();
    });
  });
}

describe('snapshots', () => {
  const a = newRuntime();
  const b = newRuntime();

  it('the monotonic clock continues from where it stopped', async () => {
    const run = await start(a, programBytes('snaptest'), 'clock');
    await waitFor(run, /clock \d+\n/);
    await sleep(200);
    const bytes = await suspendAndSnapshot(run);
    const readings = [...run.debug().matchAll(/clock (\d+)\n/g)].map((m) => BigInt(m[1]!));
    const lastSeen = readings[readings.length - 1]!;
    const saved = readSnapshot(parseModule(bytes))!.monotonicNs;
    assert.ok(saved >= lastSeen, 'the snapshot holds the clock at suspension');
    await sleep(2500); // time spent suspended does not count
    const restored = await start(b, bytes);
    const resumedAt = BigInt((await waitFor(restored, /resumed at (\d+)\n/))[1]!);
    // Readings are masked to the time resolution (1 µs here: granularity 1024 ns).
    assert.ok(resumedAt + 1024n >= saved, `clock went back: ${resumedAt} < ${saved}`);
    assert.ok(resumedAt - saved < 2_000_000_000n, `clock counted the suspension: +${resumedAt - saved} ns`);
    restored.inst.kill();
    await restored.inst.wait();
  });

  it('clones: one snapshot restored twice gives two independent instances', async () => {
    const run = await start(a, programBytes('snaptest'), 'clone');
    await sleep(200);
    const bytes = await suspendAndSnapshot(run);
    const [x, y] = await Promise.all([start(a, bytes), start(b, bytes)]);
    const mx = await waitFor(x, /resumed random ([0-9a-f]+) local (\d+) memory (\d+)\n/);
    const my = await waitFor(y, /resumed random ([0-9a-f]+) local (\d+) memory (\d+)\n/);
    assert.equal(mx[2], my[2], 'both continue from the same state');
    assert.equal(mx[2], mx[3]);
    assert.notEqual(mx[1], my[1], 'each gets its own random pool');
    x.inst.kill();
    assert.deepEqual(await x.inst.wait(), { state: 'KILLED' });
    await sleep(100);
    assert.equal(y.inst.status.state, 'RUNNING', 'killing one clone leaves the other running');
    const again = await suspendAndSnapshot(y);
    const z = await start(a, again);
    const mz = await waitFor(z, /resumed random ([0-9a-f]+) local (\d+) memory (\d+)\n/);
    assert.ok(Number(mz[2]) > Number(my[2]), 'the clone went on counting on its own');
    z.inst.kill();
    await z.inst.wait();
  });

  it('an ABI deficiency is retried on resume', async () => {
    const run = await start(a, programBytes('randomseed'), 'toomuch2');
    assert.deepEqual(await run.inst.wait(), { state: 'SUSPENDED', cause: 'ABI_DEFICIENCY' });
    const bytes = await run.inst.snapshot();
    run.inst.release();
    const restored = await start(b, bytes);
    // The second random_get(10) gets a fresh 16-byte pool and succeeds.
    assert.deepEqual(await restored.inst.wait(), { state: 'HALTED', result: 0 });
  });

  it('a never-started instance suspended at once runs from the beginning when restored', async () => {
    const run = await start(a, programBytes('hello-debug'), 'debug');
    run.inst.suspend();
    const status = await run.inst.wait();
    if (status.state === 'SUSPENDED') {
      const bytes = await run.inst.snapshot();
      const restored = await start(b, bytes);
      assert.deepEqual(await restored.inst.wait(), { state: 'HALTED', result: 0 });
      assert.equal(run.debug() + restored.debug(), 'hello, world\n');
    } else {
      assert.deepEqual(status, { state: 'HALTED', result: 0 }); // it finished first
    }
  });

  it('a halted instance can be snapshotted and a function run on the snapshot', async () => {
    const run = await start(a, programBytes('hello-debug'), 'debug');
    assert.deepEqual(await run.inst.wait(), { state: 'HALTED', result: 0 });
    const bytes = await run.inst.snapshot();
    const info = readSnapshot(parseModule(bytes))!;
    assert.equal(info.final, false);
    assert.equal(info.stack, undefined);
    const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
    const chunks: Uint8Array[] = [];
    const again = await b.launch(program, { entry: 'debug', debug: (d) => void chunks.push(d), services: instanceServices() });
    assert.deepEqual(await again.wait(), { state: 'HALTED', result: 0 });
    assert.equal(Buffer.concat(chunks).toString(), 'hello, world\n');
  });

  it('a terminated instance gives a final snapshot that restores stopped', async () => {
    const run = await start(a, programBytes('hello'), 'fail');
    assert.deepEqual(await run.inst.wait(), { state: 'TERMINATED', result: 1 });
    const bytes = await run.inst.snapshot();
    assert.equal(readSnapshot(parseModule(bytes))!.final, true);
    const restored = await start(b, bytes);
    assert.deepEqual(await restored.inst.wait(), { state: 'TERMINATED', result: 1 });
    assert.equal(restored.debug(), '');
  });

  it('refuses a stack that does not fit the code, with a message naming the frame', async () => {
    const run = await start(a, programBytes('suspend'), 'loop');
    await waitFor(run, /running: 0/);
    const bytes = await suspendAndSnapshot(run);
    const stack = readSnapshot(parseModule(bytes))!.stack!;
    assert.ok(stack.frames.length >= 1);
    const frame = stack.frames[0]!;
    const cases: Array<[string, StackFrame[], RegExp]> = [
      ['unknown offset', [{ ...frame, offset: frame.offset + 1 }, ...stack.frames.slice(1)], /frame 0 .*no place where a frame can stop/],
      ['local of another type', [{ ...frame, locals: frame.locals.map((v, i) => (i === 0 ? { type: 0x7e as const, bits: 0n } : v)) }, ...stack.frames.slice(1)], /frame 0 .*locals .* do not match/],
      ['extra operand', [{ ...frame, stack: [...frame.stack, { type: 0x7f as const, bits: 1 }] }, ...stack.frames.slice(1)], /frame 0 .*operand stack .* does not match/],
      ['an imported function', [{ ...frame, func: 0 }, ...stack.frames.slice(1)], /function 0 is not a defined function/],
    ];
    for (const [name, frames, pattern] of cases) {
      await assert.rejects(start(b, withStack(bytes, { ...stack, frames })), (e: Error) => e instanceof SnapshotError && pattern.test(e.message), name);
    }
    // Frames that fit their functions but not each other (the chain is only
    // known while rewinding): the instance is lost with a clear status, the executor runs on.
    const swapped = await start(b, withStack(bytes, { ...stack, frames: [...stack.frames, ...stack.frames] }));
    const status = await swapped.inst.wait();
    assert.equal(status.state, 'KILLED');
    assert.match(status.error ?? '', /the stack could not be rewound/);
    const again = await start(b, bytes);
    await waitFor(again, /running: \d+/);
    again.inst.kill();
    await again.inst.wait();
  });

  it('refuses a stack saved by the Asyncify version (GTS1)', async () => {
    const run = await start(a, programBytes('suspend'), 'loop');
    await waitFor(run, /running: 0/);
    const bytes = await suspendAndSnapshot(run);
    const old = bytes.slice();
    old.set(new TextEncoder().encode('GTS1'), Buffer.from(bytes).indexOf(Buffer.from('GTS2')));
    await assert.rejects(start(b, old), /earlier Gate-TS \(Asyncify/);
  });

  it('after a restore the program first receives the services\' states (INFO packet)', async () => {
    const run = await start(a, programBytes('snaptest'), 'info');
    await waitFor(run, /discovered\n/);
    await sleep(100);
    const bytes = await suspendAndSnapshot(run);
    const restored = await start(b, bytes);
    assert.deepEqual(await restored.inst.wait(), { state: 'HALTED', result: 0 });
    // code -1, INFO domain, one service, available.
    assert.equal(restored.debug(), 'first packet code -1 domain 1 count 1 state 1\n');
  });

  it('restores service state: a pending origin accept is served by a client of the new host', async () => {
    const run = await start(a, programBytes('hello'), 'multi');
    await waitFor(run, /multi: accepting stream\n/);
    const bytes = await suspendAndSnapshot(run);
    const restored = await start(b, bytes);
    const out: Uint8Array[] = [];
    await restored.inst.services.origin.connect(null, { write: (c) => void out.push(c.slice()), end: () => {} });
    assert.equal(Buffer.concat(out).toString(), 'hello, world\n');
    restored.inst.kill();
    await restored.inst.wait();
  });

  it('several computing instances in one executor all make progress', async () => {
    const runs = await Promise.all([0, 1, 2].map(() => start(a, programBytes('snaptest'), 'clock')));
    await Promise.all(runs.map((r) => waitFor(r, /clock \d+\n(?:.|\n)*clock \d+\n/)));
    for (const r of runs) {
      r.inst.kill();
      await r.inst.wait();
    }
  });
});
