import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PROFILES } from '../../src/prepare/profile.js';
import { programBytes, runProgram } from '../helpers/runtime.js';
import { wat } from '../helpers/wat.js';

describe('instances', () => {
  for (const profile of PROFILES) {
    describe(profile, () => {
      it('runs the empty module to HALTED', async () => {
        const { status } = await runProgram(programBytes('nop'), { profile });
        assert.deepEqual(status, { state: 'HALTED', result: 0 });
      });

      it('runs the start function before the entry function', async () => {
        const { status, debug } = await runProgram(programBytes('start'), { profile, entry: 'main' });
        assert.deepEqual(status, { state: 'HALTED', result: 0 });
        assert.equal(debug, 'start\nmain\n');
      });

      it('runs a module without memory', async () => {
        const { status } = await runProgram(programBytes('nomem'), { profile, entry: 'ret' });
        assert.equal(status.state, 'HALTED');
      });

    });
  }

  it('kills a spinning instance on request', async () => {
    const { status } = await runProgram(programBytes('nomem'), {
      profile: 'suspend-anywhere',
      entry: 'spin',
      onLaunch: (inst) => setTimeout(() => inst.kill(), 50),
    });
    assert.deepEqual(status, { state: 'KILLED' });
  });

  it('stops runaway code under io-suspend at the compute limit', async () => {
    const { status } = await runProgram(programBytes('nomem'), { profile: 'io-suspend', entry: 'spin', computeLimitMs: 200 });
    assert.equal(status.state, 'KILLED');
    assert.equal(status.cause, 'INTERNAL');
    assert.match(status.error ?? '', /without a blocking call/);
  });

  it('suspends a spinning instance under suspend-anywhere', async () => {
    const { status } = await runProgram(programBytes('nomem'), {
      profile: 'suspend-anywhere',
      entry: 'spin',
      onLaunch: (inst) => setTimeout(() => inst.suspend(), 50),
    });
    assert.deepEqual(status, { state: 'SUSPENDED' });
  });

  it('keeps waiting on a timeout too far ahead for one timer', async () => {
    // io with nothing to transfer and a ~146-year timeout, then a trap if it ever returns.
    const bytes = wat(`(module
      (import "env" "__gate_io_65536" (func $io (param i32 i32 i32 i32 i32 i32 i64 i32)))
      (memory 1)
      (func (export "main")
        (call $io (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 4611686018427387904) (i32.const 0))
        unreachable))`);
    for (const profile of PROFILES) {
      const { status } = await runProgram(bytes, { profile, entry: 'main', onLaunch: (inst) => setTimeout(() => inst.kill(), 300) });
      assert.deepEqual(status, { state: 'KILLED' }, profile);
    }
  });
});
