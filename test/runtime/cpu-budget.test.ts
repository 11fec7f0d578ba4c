/** The CPU budget of an instance (RuntimeOptions / LaunchOptions cpuBudgetMs). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InProcessExecutor } from '../../src/runtime/inprocess.js';
import { Program } from '../../src/runtime/program.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';
import { noServices, programBytes, runProgram } from '../helpers/runtime.js';

describe('CPU budget', () => {
  it('suspends a computing instance (suspend-anywhere) with no special cause, and a resumed one gets a new budget', async () => {
    const executor = new InProcessExecutor();
    const runtime = new Runtime({ executor, memoryLimitPages: 64, timeResolutionNs: 1000, cpuBudgetMs: 100 });
    const program = await Program.load(programBytes('attacks/attacks'), DEFAULT_LOCAL_LIMITS);
    const first = await runtime.launch(program, { entry: 'spin', services: noServices, retain: true });
    assert.deepEqual(await first.wait(), { state: 'SUSPENDED' });
    const second = await runtime.resume(first, { services: noServices, retain: true });
    assert.deepEqual(await second.wait(), { state: 'SUSPENDED' });
    second.release();
  });

  it('kills a computing io-suspend instance like the compute limit', async () => {
    const executor = new InProcessExecutor();
    const runtime = new Runtime({ executor, memoryLimitPages: 64, timeResolutionNs: 1000 });
    const program = await Program.load(programBytes('attacks/attacks'), DEFAULT_LOCAL_LIMITS);
    const inst = await runtime.launch(program, { entry: 'spin', profile: 'io-suspend', cpuBudgetMs: 100, services: noServices });
    const status = await inst.wait();
    assert.equal(status.state, 'KILLED');
    assert.equal(status.cause, 'INTERNAL');
    assert.match(status.error ?? '', /CPU budget of 100 ms/);
  });

  it('does not touch programs that finish within it', async () => {
    const r = await runProgram(programBytes('traps'), { entry: 'ret1' });
    assert.deepEqual(r.status, { state: 'HALTED', result: 0 });
  });

  it('rejects a budget that is not a positive number', async () => {
    const runtime = new Runtime({ executor: new InProcessExecutor(), memoryLimitPages: 64, timeResolutionNs: 1000 });
    const program = await Program.load(programBytes('traps'), DEFAULT_LOCAL_LIMITS);
    await assert.rejects(runtime.launch(program, { entry: 'ret1', cpuBudgetMs: 0, services: noServices }), RangeError);
  });
});
