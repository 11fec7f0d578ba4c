/** The executor pool: isolation of principals, crashes, replacement. */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ExecutorPool } from '../../src/runtime/node/pool.js';
import { greet, program, Responder, run } from './helpers.js';

describe('executor pool (bwrap)', async () => {
  const exits: Array<{ pid?: number; reason: string }> = [];
  const pool = await ExecutorPool.create({ sandbox: 'bwrap', onExecutorExit: (i) => exits.push(i) });
  after(() => pool.close());

  it('gives each principal its own executor process, and a principal the same one', async () => {
    const a = pool.executorFor('alice');
    const b = pool.executorFor('bob');
    assert.notEqual(a, b);
    assert.equal(pool.executorFor('alice'), a);
    await Promise.all([a.started(), b.started()]);
    assert.notEqual(a.pid, b.pid);
    for (const r of await Promise.all([greet(a), greet(b)])) assert.deepEqual(r, { status: { state: 'HALTED', result: 0 }, output: 'hello, world\n' });
  });

  it('a crashed executor takes down only its own instances; the pool replaces it', async () => {
    const victim = pool.executorFor('mallory');
    const neighbour = await Responder.start(pool.executorFor('bob'));
    const r = await run(victim, program('suspend'), {
      entry: 'loop',
      during: async () => {
        assert.equal(await neighbour.ask(), 'hello, world\n');
        victim.terminate();
      },
    });
    assert.equal(r.status.state, 'KILLED');
    assert.match(r.status.error ?? '', /executor process exited/);
    assert.ok(exits.some((e) => e.pid === victim.pid && /exited/.test(e.reason)), JSON.stringify(exits));
    assert.equal(await neighbour.ask(), 'hello, world\n');
    const replacement = pool.executorFor('mallory');
    assert.notEqual(replacement, victim);
    assert.ok(replacement.alive);
    assert.equal((await greet(replacement)).output, 'hello, world\n');
    assert.deepEqual(await neighbour.stop(), { state: 'KILLED' });
  });

  it('starts another executor for a group whose executors are full', async () => {
    const small = await ExecutorPool.create({ sandbox: 'bwrap', maxInstancesPerExecutor: 1 });
    try {
      const first = small.executorFor('g');
      const busy = await Responder.start(first);
      const second = small.executorFor('g');
      assert.notEqual(second, first);
      assert.equal((await greet(second)).output, 'hello, world\n');
      await busy.stop();
    } finally {
      await small.close();
    }
  });

  it('closes an executor that has been idle, and starts a new one when needed', async () => {
    let closed!: (info: { pid?: number; reason: string }) => void;
    const exited = new Promise<{ pid?: number; reason: string }>((res) => (closed = res));
    const idle = await ExecutorPool.create({ sandbox: 'none', idleTimeoutMs: 20, onExecutorExit: (i) => closed(i) });
    try {
      // hello is prepared (cached) before: an executor handed out and then idle
      // for longer than idleTimeoutMs while its caller prepares may be closed.
      await greet(pool.executorFor('alice'));
      const first = idle.executorFor('x');
      assert.equal((await greet(first)).output, 'hello, world\n');
      const info = await exited;
      assert.equal(info.reason, 'executor closed');
      assert.equal(info.pid, first.pid);
      const next = idle.executorFor('x');
      assert.notEqual(next, first);
      assert.equal((await greet(next)).output, 'hello, world\n');
    } finally {
      await idle.close();
    }
  });

  it('shares executors between principals when isolation is off', async () => {
    const shared = await ExecutorPool.create({ sandbox: 'none', isolatePrincipals: false });
    try {
      assert.equal(shared.executorFor('alice'), shared.executorFor('bob'));
      assert.equal((await greet(shared.executorFor('carol'))).output, 'hello, world\n');
    } finally {
      await shared.close();
    }
  });
});
