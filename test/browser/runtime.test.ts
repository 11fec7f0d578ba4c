/**
 * The browser runtime (dist/browser/gate.js) in real Chromium: the original's
 * test programs run in a Web Worker executor, with the built-in services and
 * a service defined by the page, and suspended instances continue from their
 * snapshots. The page side is test/browser/harness.ts.
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

describe('browser runtime in Chromium', () => {
  before(async () => {
    tp = await openTestPage();
  });
  after(async () => {
    await tp?.close();
  });

  for (const profile of ['suspend-anywhere', 'io-suspend'] as const) {
    it(`hello greet and repl write to the page's origin stream (${profile})`, async () => {
      const greet = await run({ program: 'hello', entry: 'greet', profile });
      assert.deepEqual(greet.status, { state: 'HALTED', result: 0 });
      assert.equal(greet.output, 'hello, world\n');
      const repl = await run({ program: 'hello', entry: 'repl', input: 'ping\n', profile });
      assert.deepEqual(repl.status, { state: 'HALTED', result: 0 });
      assert.equal(repl.output, 'hello, world\n');
    });

    it(`randomseed dump gives distinct 16-byte seeds (${profile})`, async () => {
      const runs = await runAll(Array.from({ length: 5 }, () => ({ program: 'randomseed', entry: 'dump', profile })));
      for (const r of runs) {
        assert.equal(r.status.state, 'HALTED');
        assert.match(r.debug, /^[0-9a-f]+ [0-9a-f]+\n$/);
      }
      assert.equal(new Set(runs.map((r) => r.debug)).size, 5);
    });

    it(`time check (${profile})`, async () => {
      const r = await run({ program: 'time', entry: 'check', profile });
      assert.deepEqual(r.status, { state: 'HALTED', result: 0 });
    });

    it(`suspend loop stops SUSPENDED on request and continues from its snapshot (${profile})`, async () => {
      const first = await run({ program: 'suspend', entry: 'loop', profile, suspendOnDebug: { text: 'running: 0\n', delayMs: 100 }, keep: 'loop' });
      assert.deepEqual(first.status, { state: 'SUSPENDED' });
      assert.match(first.debug, /^suspend\.cpp running: 0\n/);
      assert.ok(first.snapshotBytes! > 0);
      // The snapshot resumes the loop where it stopped: its count goes on.
      const last = Number(/running: (\d+)\n$/.exec(first.debug)![1]);
      const second = await run({ snapshot: 'loop', suspendOnDebug: { text: 'running: ', delayMs: 0 } });
      assert.deepEqual(second.status, { state: 'SUSPENDED' });
      assert.match(second.debug, new RegExp(`^suspend\\.cpp running: ${last + 1}\\n`));
    });

    it(`suspend loop2 keeps its stack and memory in step across two resumes (${profile})`, async () => {
      const a = await run({ program: 'suspend', entry: 'loop2', profile, suspendAfterMs: 300, keep: 'loop2-a' });
      assert.deepEqual(a.status, { state: 'SUSPENDED' });
      const b = await run({ snapshot: 'loop2-a', suspendAfterMs: 300, keep: 'loop2-b' });
      assert.deepEqual(b.status, { state: 'SUSPENDED' });
      const c = await run({ snapshot: 'loop2-b', suspendAfterMs: 300 });
      assert.deepEqual(c.status, { state: 'SUSPENDED' }, 'loop2 returns 1 (HALTED) if its two counters ever disagree');
    });
  }

  it('a service defined by the page echoes calls and receives INFO packets', async () => {
    const r = await run({ program: 'services', entry: 'ext', testService: true });
    assert.deepEqual(r.status, { state: 'HALTED', result: 0 });
    assert.equal(r.debug, 'echo=0102030405060708\nreply=bye\n');
    assert.deepEqual(r.testService, {
      calls: ['0102030405060708', Buffer.from('bye').toString('hex')],
      infos: ['hi'],
      shutdowns: [false],
      principalId: 'local',
      instanceId: r.id,
    });
  });

  it('built-in catalog, identity, random and scope answer in the browser', async () => {
    for (const entry of ['catalog', 'identity', 'random', 'scope']) {
      const r = await run({ program: 'services', entry });
      assert.deepEqual(r.status, { state: 'HALTED', result: 0 }, `${entry}: ${r.debug}`);
    }
  });

  it('prepares in a preparation worker (WorkerPreparer): programs and snapshots run the same', async () => {
    const greet = await run({ program: 'hello', entry: 'greet', prepareInWorker: true });
    assert.ok(tp.page.workers().some((w) => w.url().endsWith('/gate/gate-prepare-worker.js')), 'the preparation worker runs');
    assert.deepEqual(greet.status, { state: 'HALTED', result: 0 });
    assert.equal(greet.output, 'hello, world\n');
    const first = await run({ program: 'suspend', entry: 'loop2', prepareInWorker: true, suspendAfterMs: 300, keep: 'prepared-in-worker' });
    assert.deepEqual(first.status, { state: 'SUSPENDED' });
    const second = await run({ snapshot: 'prepared-in-worker', prepareInWorker: true, suspendAfterMs: 300 });
    assert.deepEqual(second.status, { state: 'SUSPENDED' });
  });

  it('the page saw no errors', () => {
    assert.deepEqual(tp.errors, []);
  });
});
