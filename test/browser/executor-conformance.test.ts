/**
 * The executor conformance suite (test/runtime/executor-conformance.test.ts)
 * against the browser host: WorkerExecutor in real Chromium, each case run
 * by the test page (test/browser/harness.ts) with the same programs and
 * expectations; plus what only this host has: losing its worker.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openTestPage, type TestPage } from '../helpers/browser.js';
import type { RunReport, RunRequest } from './harness.js';

let tp!: TestPage;

async function run(req: RunRequest): Promise<RunReport> {
  return tp.page.evaluate((r) => (globalThis as any).gateHarness.run(r), req);
}

async function runAll(reqs: RunRequest[]): Promise<RunReport[]> {
  return tp.page.evaluate((r) => (globalThis as any).gateHarness.runAll(r), reqs);
}

describe('executor conformance: browser (Web Worker in Chromium)', () => {
  before(async () => {
    tp = await openTestPage();
  });
  after(async () => {
    await tp?.close();
  });

  it('runs a program that talks to its origin client', async () => {
    const r = await run({ program: 'hello', entry: 'repl', input: 'a' });
    assert.deepEqual(r.status, { state: 'HALTED', result: 0 });
    assert.equal(r.output, 'hello, world\n');
  });

  it('runs several instances at once, each with its own services', async () => {
    const runs = await runAll(Array.from({ length: 5 }, (_, i) => ({ program: 'hello', entry: i % 2 ? 'greet' : 'twice' })));
    runs.forEach((r, i) => assert.equal(r.output, i % 2 ? 'hello, world\n' : 'hello, world\nhello, world\n'));
  });

  it('time-slices CPU-bound instances so that others progress', async () => {
    const [s1, s2, hello] = await runAll([
      { program: 'nomem', entry: 'spin', killAfterMs: 1500 },
      { program: 'nomem', entry: 'spin', killAfterMs: 1500 },
      { program: 'hello', entry: 'greet' },
    ]);
    assert.equal(hello!.output, 'hello, world\n');
    for (const s of [s1!, s2!]) {
      assert.deepEqual(s.status, { state: 'KILLED' });
      assert.ok(hello!.endedAt < s.endedAt, 'hello ended while the spinners still ran');
    }
  });

  it('reports traps, exits and ABI deficiencies', async () => {
    const oob = (await run({ program: 'traps', entry: 'oob' })).status;
    assert.deepEqual({ ...oob, error: undefined }, { state: 'KILLED', cause: 'MEMORY_ACCESS_OUT_OF_BOUNDS', error: undefined });
    assert.match(String(oob.error), /^trapped in oob at 0x[0-9a-f]+$/);
    assert.deepEqual((await run({ program: 'traps', entry: 'exit1' })).status, { state: 'TERMINATED', result: 1 });
    assert.deepEqual((await run({ program: 'randomseed', entry: 'toomuch' })).status, { state: 'SUSPENDED', cause: 'ABI_DEFICIENCY' });
  });

  it('suspends and kills on request', async () => {
    const s = await run({ program: 'suspend', entry: 'loop', suspendAfterMs: 200 });
    assert.deepEqual(s.status, { state: 'SUSPENDED' });
    const k = await run({ program: 'hello', entry: 'multi', killAfterMs: 200 });
    assert.deepEqual(k.status, { state: 'KILLED' });
  });

  it('kills the instance on an ABI violation', async () => {
    const r = await run({ program: 'violations', entry: 'bad_domain' });
    assert.equal(r.status.cause, 'ABI_VIOLATION');
  });

  it('an instance whose worker is terminated ends KILLED (INTERNAL), and the page goes on with a new worker', async () => {
    const r = await run({ program: 'suspend', entry: 'loop', ownWorker: true, closeWorkerAfterMs: 200 });
    assert.equal(r.status.state, 'KILLED');
    assert.equal(r.status.cause, 'INTERNAL');
    assert.equal(r.status.error, 'executor closed');
    const after = await run({ program: 'hello', entry: 'greet' });
    assert.equal(after.output, 'hello, world\n');
  });

  it('the page saw no errors', () => {
    assert.deepEqual(tp.errors, []);
  });
});
