/**
 * Debug output limits (RuntimeOptions.debugLimits) with real programs, in
 * process and in an executor process: what passes is exact, what is dropped
 * is counted in a notice, and a large write is split into messages the
 * trusted side accepts.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { InProcessExecutor } from '../../src/runtime/inprocess.js';
import { ChildProcessExecutor } from '../../src/runtime/node/child-executor.js';
import type { Executor } from '../../src/runtime/executor.js';
import { programBytes, runProgram } from '../helpers/runtime.js';

const flood = programBytes('debugflood');
const BIG = 'z'.repeat(200 * 1024 - 1) + '\n';

const child = new ChildProcessExecutor();
after(() => child.close());

for (const [name, executor] of [
  ['in process', new InProcessExecutor()],
  ['in an executor process', child],
] as Array<[string, Executor]>) {
  describe(`debug output limits ${name}`, () => {
    it('without limits: a 200 KiB write arrives whole', async () => {
      const r = await runProgram(flood, { executor, entry: 'big' });
      assert.equal(r.status.state, 'HALTED');
      assert.equal(r.debug, BIG);
    });

    it('under its limits: output arrives exactly', async () => {
      const r = await runProgram(flood, { executor, entry: 'small', debugLimits: { rateBytesPerSecond: 0, burstBytes: 100 } });
      assert.equal(r.debug, 'small: ok\n');
    });

    it('past its burst (and no rate): cut, with the dropped bytes counted', async () => {
      const r = await runProgram(flood, { executor, entry: 'big', debugLimits: { rateBytesPerSecond: 0, burstBytes: 100 * 1024 } });
      assert.equal(r.status.state, 'HALTED');
      assert.equal(
        r.debug,
        `${'z'.repeat(100 * 1024)}\n[gate: ${100 * 1024} bytes of debug output dropped: over the limit of 0 bytes/s after ${100 * 1024} bytes, or not read in time]\n`,
      );
    });

    it('a program writing without end: output stays near its rate, and it can be killed', async () => {
      let seen = 0;
      const r = await runProgram(flood, {
        executor,
        entry: 'lines',
        debugLimits: { rateBytesPerSecond: 64 * 1024, burstBytes: 64 * 1024 },
        onDebug: (text, inst) => {
          seen = text.length;
          if (/bytes of debug output dropped/.test(text)) inst.kill();
        },
      });
      assert.equal(r.status.state, 'KILLED');
      assert.match(r.debug, /^(x{1023}\n)+/);
      const drop = /\[gate: (\d+) bytes of debug output dropped/.exec(r.debug);
      assert.ok(drop && Number(drop[1]) > 0, r.debug.slice(-200));
      assert.ok(seen < 1024 * 1024, `${seen} bytes passed`);
    });
  });
}
