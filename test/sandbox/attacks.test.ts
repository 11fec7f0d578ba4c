/**
 * The attack suite: hostile programs run in a sandboxed executor next to a
 * well-behaved instance (hello `multi`) in the SAME executor process. Each
 * attack ends with its documented outcome (docs/security.md), and the
 * neighbour answers a client while the attack runs and after it.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Profile } from '../../src/prepare/profile.js';
import { ExecutorPool, instanceMemoryCap } from '../../src/runtime/node/pool.js';
import type { InstanceStatus } from '../../src/runtime/status.js';
import { program, Responder, run, type LaunchOpts } from './helpers.js';

const attacks = program('attacks/attacks');
const traps = program('traps');
const violations = program('violations');
const randomseed = program('randomseed');

describe('attack suite (bwrap executor, one neighbour)', async () => {
  const pool = await ExecutorPool.create({ sandbox: 'bwrap', memoryLimitBytes: 1024 ** 3 });
  after(() => pool.close());
  const executor = pool.executorFor('attacker');
  const neighbour = await Responder.start(executor);
  after(() => neighbour.stop());

  /** Runs the attack; the neighbour must answer while it runs (unless it ends first) and after. */
  async function attack(bytes: Uint8Array, opts: LaunchOpts & { stopAfterAnswer?: boolean; client?: boolean }): Promise<{ status: InstanceStatus; debug: string }> {
    assert.equal(pool.executorFor('attacker'), executor, 'the attack runs in the neighbour’s executor');
    const r = await run(executor, bytes, {
      ...opts,
      during: async (inst) => {
        assert.equal(await neighbour.ask(), 'hello, world\n');
        if (opts.stopAfterAnswer) inst.kill();
      },
    });
    assert.equal(await neighbour.ask(), 'hello, world\n');
    assert.ok(executor.alive);
    return r;
  }

  const profiles: Profile[] = ['suspend-anywhere', 'io-suspend'];

  it('infinite loop: SUSPENDED when its CPU budget is used (suspend-anywhere)', async () => {
    const r = await attack(attacks, { entry: 'spin', cpuBudgetMs: 300 });
    assert.deepEqual(r.status, { state: 'SUSPENDED' });
  });

  it('infinite loop: KILLED (INTERNAL) at its CPU budget under io-suspend', async () => {
    const r = await attack(attacks, { entry: 'spin', cpuBudgetMs: 300, profile: 'io-suspend' });
    assert.equal(r.status.state, 'KILLED');
    assert.equal(r.status.cause, 'INTERNAL');
    assert.match(r.status.error ?? '', /CPU budget of 300 ms/);
  });

  for (const profile of profiles) {
    it(`deep recursion: SUSPENDED CALL_STACK_EXHAUSTED (${profile})`, async () => {
      const r = await attack(traps, { entry: 'stack_exhaust', profile });
      assert.deepEqual(r.status, { state: 'SUSPENDED', cause: 'CALL_STACK_EXHAUSTED' });
    });

    it(`memory bomb: grows to the instance limit, then traps (${profile})`, async () => {
      const r = await attack(attacks, { entry: 'membomb', memoryLimitPages: 256, debug: true, profile });
      assert.deepEqual({ ...r.status, error: undefined }, { state: 'KILLED', cause: 'UNREACHABLE', error: undefined });
      assert.match(String(r.status.error), /^trapped in membomb/);
      assert.match(r.debug, /pages=256\n/);
    });
  }

  it('random_get abuse: SUSPENDED ABI_DEFICIENCY once the pool is dry', async () => {
    assert.deepEqual((await attack(attacks, { entry: 'random_forever' })).status, { state: 'SUSPENDED', cause: 'ABI_DEFICIENCY' });
    assert.deepEqual((await attack(randomseed, { entry: 'toomuch' })).status, { state: 'SUSPENDED', cause: 'ABI_DEFICIENCY' });
  });

  it('packet flood: throttled; the flooder is killed on request', async () => {
    const r = await attack(violations, { entry: 'flood', stopAfterAnswer: true });
    assert.deepEqual(r.status, { state: 'KILLED' });
  });

  const packetAttacks: Array<[string, string, RegExp]> = [
    ['malformed packet (header size 4)', 'size_small', /invalid op packet size: 4/],
    ['malformed packet (bad code)', 'bad_code', /invalid code in incoming packet/],
    ['malformed discovery', 'discovery_truncated', /name data is truncated/],
    ['oversized packet', 'size_large', /invalid op packet size: 65544/],
    ['writing without flow credit', 'no_credit', /write stream buffer overflow/],
    ['rediscovery of a service', 'rediscover', /duplicate service/],
  ];
  for (const [name, entry, message] of packetAttacks) {
    it(`${name}: KILLED ABI_VIOLATION`, async () => {
      // no_credit writes to an accepted origin stream: a client connects.
      const r = await attack(violations, { entry, client: true });
      assert.equal(r.status.state, 'KILLED');
      assert.equal(r.status.cause, 'ABI_VIOLATION');
      assert.match(r.status.error ?? '', message);
    });
  }

  it('endless debug output: taken without bound on memory, SUSPENDED at its CPU budget', async () => {
    let seen = 0;
    const r = await attack(attacks, { entry: 'debug_forever', cpuBudgetMs: 500, onDebug: (n) => (seen = n) });
    assert.deepEqual(r.status, { state: 'SUSPENDED' });
    assert.ok(seen > 1024 * 1024, `only ${seen} bytes of debug output`);
  });

  it('endless debug output without a budget: killed on request', async () => {
    const r = await attack(attacks, { entry: 'debug_forever', onDebug: () => {}, stopAfterAnswer: true });
    assert.deepEqual(r.status, { state: 'KILLED' });
  });
});

describe('executor memory cap (RLIMIT_DATA, cgroup)', async () => {
  const pool = await ExecutorPool.create({ sandbox: 'bwrap', memoryLimitBytes: 512 * 1024 ** 2 });
  after(() => pool.close());

  it('one instance cannot grow past what its executor can hold: memory.grow returns -1, it traps, the neighbour lives', async () => {
    const executor = pool.executorFor('bomber');
    const neighbour = await Responder.start(executor);
    const r = await run(executor, attacks, { entry: 'membomb', memoryLimitPages: 16384, debug: true });
    assert.deepEqual({ ...r.status, error: undefined }, { state: 'KILLED', cause: 'UNREACHABLE', error: undefined });
    const pages = Number(/pages=(\d+)/.exec(r.debug)?.[1]);
    assert.equal(pages * 65536, instanceMemoryCap(512 * 1024 ** 2), r.debug);
    assert.equal(await neighbour.ask(), 'hello, world\n');
    assert.ok(executor.alive);
    await neighbour.stop();
  });
});
