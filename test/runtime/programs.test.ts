/**
 * The original's core tests (spec tests.md §2) against our runtime, with the
 * C and WAT test programs built by scripts/build-programs.mjs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PROFILES } from '../../src/prepare/profile.js';
import { programBytes, runWithClient } from '../helpers/runtime.js';

const hello = programBytes('hello');

for (const profile of PROFILES) {
  describe(`test programs (${profile})`, () => {
    it('nop: no function → HALTED', async () => {
      const r = await runWithClient(programBytes('nop'), { profile });
      assert.deepEqual(r.status, { state: 'HALTED', result: 0 });
    });

    it('hello greet and twice write to the origin stream', async () => {
      const greet = await runWithClient(hello, { profile, entry: 'greet' });
      assert.deepEqual(greet.status, { state: 'HALTED', result: 0 });
      assert.equal(greet.output, 'hello, world\n');
      const twice = await runWithClient(hello, { profile, entry: 'twice' });
      assert.equal(twice.output, 'hello, world\nhello, world\n');
    });

    it('hello repl answers each input chunk until EOF', async () => {
      const r = await runWithClient(hello, { profile, entry: 'repl', input: 'ping\n' });
      assert.deepEqual(r.status, { state: 'HALTED', result: 0 });
      assert.equal(r.output, 'hello, world\n');
    });

    it('hello fail exits with result 1 and a debug message', async () => {
      const r = await runWithClient(hello, { profile, entry: 'fail' });
      assert.deepEqual(r.status, { state: 'TERMINATED', result: 1 });
      assert.equal(r.debug, 'exiting with return value 1\n');
    });

    it('hello test_ext: the test service is unavailable, the call still returns', async () => {
      const r = await runWithClient(hello, { profile, entry: 'test_ext' });
      assert.equal(r.status.state, 'HALTED');
    });

    it('hello-debug writes its debug log', async () => {
      const r = await runWithClient(programBytes('hello-debug'), { profile, entry: 'debug' });
      assert.deepEqual(r.status, { state: 'HALTED', result: 0 });
      assert.equal(r.debug, 'hello, world\n');
    });

    it('randomseed dump gives distinct 16-byte seeds', async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 10; i++) {
        const r = await runWithClient(programBytes('randomseed'), { profile, entry: 'dump' });
        assert.equal(r.status.state, 'HALTED');
        assert.match(r.debug, /^[0-9a-f]+ [0-9a-f]+\n$/);
        seen.add(r.debug);
      }
      assert.equal(seen.size, 10);
    });

    for (const fn of ['toomuch', 'toomuch2']) {
      it(`randomseed ${fn}: exhausting the pool is an ABI deficiency`, async () => {
        const r = await runWithClient(programBytes('randomseed'), { profile, entry: fn });
        assert.deepEqual(r.status, { state: 'SUSPENDED', cause: 'ABI_DEFICIENCY' });
        assert.equal(r.debug, 'ping\n');
      });
    }

    it('time check', async () => {
      const r = await runWithClient(programBytes('time'), { profile, entry: 'check' });
      assert.equal(r.status.state, 'HALTED');
    });

    for (const fn of ['loop', 'loop2']) {
      it(`suspend ${fn}: a suspend request stops it SUSPENDED`, async () => {
        let requested = false;
        const suspend = (inst: { suspend(): void }): void => {
          if (requested) return;
          requested = true;
          setTimeout(() => inst.suspend(), 100);
        };
        const r = await runWithClient(programBytes('suspend'), {
          profile,
          entry: fn,
          // loop prints as it goes; loop2 prints nothing, so it gets a fixed delay.
          onDebug: (text, inst) => fn === 'loop' && /running: 0\n/.test(text) && suspend(inst),
          onLaunch: (inst) => fn === 'loop2' && setTimeout(() => suspend(inst), 300),
        });
        assert.deepEqual(r.status, { state: 'SUSPENDED' });
        if (fn === 'loop') assert.match(r.debug, /^suspend\.cpp running: 0\n/);
      });
    }
  });
}

describe('ABI test program (spec tests.md §2.8)', () => {
  const abi = programBytes('abi');
  const mod = new WebAssembly.Module(abi as Uint8Array<ArrayBuffer>);
  const names = WebAssembly.Module.exports(mod)
    .map((e) => e.name)
    .filter((n) => n.startsWith('test'));
  it('has the 46 tests and 19 trap tests', () => {
    assert.equal(names.filter((n) => n.startsWith('test_')).length, 46);
    assert.equal(names.filter((n) => n.startsWith('testtrap_')).length, 19);
  });
  for (const profile of PROFILES) {
    for (const name of names) {
      it(`${profile} ${name}`, async () => {
        const r = await runWithClient(abi, { profile, entry: name, timeResolutionNs: 1000 });
        if (name.startsWith('testtrap_')) {
          assert.deepEqual(r.status, { state: 'SUSPENDED', cause: 'ABI_DEFICIENCY' });
          assert.equal(r.debug, '');
        } else {
          assert.ok(r.status.state === 'HALTED' || r.status.state === 'TERMINATED', JSON.stringify(r.status));
          assert.equal(r.status.result, 0);
          assert.equal(r.debug, 'PASS\n');
        }
      });
    }
  }
});
