/**
 * What anonymous programs may use of the CPU, against a real server with
 * real executor processes (plain and, where it works here, in bubblewrap):
 * their executors run at a lower CPU priority than signed principals' (read
 * from the kernel, /proc/<pid>/task/<tid>/stat), one whose program computes
 * long drops to the lowest priority and new anonymous requests go to another
 * executor, and an anonymous run that has
 * used its CPU budget ends SUSPENDED while a signed one runs on. Where the
 * cpu cgroup controller is ours, the executor's cgroup holds its priority
 * (read from the cgroup's files): its weight from the start, idle once
 * demoted, and a replacement starts idle until it is handed out.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { getPriority } from 'node:os';
import { basename } from 'node:path';
import { DEFAULT_ANONYMOUS_LIMITS } from '../../src/server/anonymous.js';
import { ExecutorPool, MAX_EXECUTORS_WITH_DEMOTED, type ExecutorPlacement } from '../../src/runtime/node/pool.js';
import type { ChildProcessExecutor } from '../../src/runtime/node/child-executor.js';
import { checkSandbox } from '../../src/runtime/node/sandbox/sandbox.js';
import { Cgroups, niceWeight } from '../../src/runtime/node/sandbox/cgroup.js';
import { programBytes } from '../helpers/runtime.js';
import { newKey, request, startTestServer, within, type TestServer } from '../helpers/server.js';

const hello = programBytes('hello');
const attacks = programBytes('attacks/attacks');
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const K = '/gate-0/module/sha256/';

/** A call of `spin` held open (its instance runs until `hangUp`). */
function spinCall(server: TestServer, token?: string): { hangUp(): void } {
  let req: ClientRequest;
  const headers: Record<string, string> = { 'Content-Type': 'application/wasm' };
  if (token) headers.Authorization = `Bearer ${token}`;
  req = httpRequest(`${server.url}${K}${sha256(attacks)}?action=call&function=spin`, { method: 'POST', headers }, (res) => res.resume());
  req.on('error', () => undefined);
  req.end(attacks);
  return { hangUp: () => req.destroy() };
}

async function eventually(what: string, f: () => boolean): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (f()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`never: ${what}`);
}

/** `pid` and its descendants (bubblewrap starts node as a grandchild). */
function processTree(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) for (const [child, ppid] of parent) if (ppid === tree[i]) tree.push(child);
  return tree;
}

/** The executor's node process (under bubblewrap, a descendant of the process the pool started). */
function executorNode(executor: ChildProcessExecutor): number {
  const node = processTree(executor.pid!).find((p) => {
    try {
      // node itself, not bubblewrap or the launcher whose arguments name it.
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      return basename(argv[0]!) === basename(process.execPath) && argv.some((a) => a.endsWith('executor-main.js'));
    } catch {
      return false;
    }
  });
  assert.ok(node, `no executor-main process under pid ${executor.pid}`);
  return node;
}

/** The nice value of every thread of the executor's node process, as the kernel has it (stat field 19). */
function executorThreadNice(executor: ChildProcessExecutor): number[] {
  const node = executorNode(executor);
  return readdirSync(`/proc/${node}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${node}/task/${tid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

/** The nice value of the executor's session (autogroup), or undefined where the kernel does not group by session. */
function executorSessionNice(executor: ChildProcessExecutor): number | undefined {
  if (!autogroups) return undefined;
  const m = / nice (-?\d+)/.exec(readFileSync(`/proc/${executorNode(executor)}/autogroup`, 'utf8'));
  assert.ok(m, 'an autogroup line');
  return Number(m[1]);
}

/**
 * The executor's own cpu cgroup directory (under /sys/fs/cgroup), or undefined when it is in none of ours (yet: the
 * process the pool started joins it first thing, and everything it then starts is in it too).
 */
function executorCpuCgroup(executor: ChildProcessExecutor): string | undefined {
  for (const line of readFileSync(`/proc/${executor.pid}/cgroup`, 'utf8').split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m || !/\/gate-executor-[^/]+$/.test(m[2]!)) continue;
    if (m[1] === '') return `/sys/fs/cgroup${existsSync('/sys/fs/cgroup/cgroup.controllers') ? '' : '/unified'}${m[2]}`;
    if (m[1]!.split(',').includes('cpu')) return `/sys/fs/cgroup/cpu${m[2]}`;
  }
  return undefined;
}

/** What the executor's cpu cgroup says: idle or not, and its weight (v1 cpu.shares; v2 cpu.weight.nice as a weight). */
function executorCpu(executor: ChildProcessExecutor): { idle: boolean; weight: number } {
  const dir = executorCpuCgroup(executor);
  assert.ok(dir, 'the executor is in a cpu cgroup of ours');
  const read = (f: string): string => readFileSync(`${dir}/${f}`, 'utf8').trim();
  const idle = read('cpu.idle') === '1';
  const weight = existsSync(`${dir}/cpu.shares`) ? Number(read('cpu.shares')) : niceWeight(Number(read('cpu.weight.nice')));
  return { idle, weight };
}

const cpuCgroups = Cgroups.detect()?.cpu === true;

const autogroups = ((): boolean => {
  try {
    return readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'utf8').trim() === '1';
  } catch {
    return false;
  }
})();

const modes: Array<'none' | 'bwrap'> = ['none'];
const sandbox = await checkSandbox();
if (sandbox.available) modes.push('bwrap');

for (const mode of modes) {
  describe(`anonymous executors' CPU priority (sandbox ${mode})`, () => {
    let server: TestServer;
    let pool: ExecutorPool;
    const handedOut: Array<{ group: string; placement?: ExecutorPlacement; executor: ChildProcessExecutor }> = [];

    before(async () => {
      pool = await ExecutorPool.create({ sandbox: mode });
      server = await startTestServer({
        // All anonymous instances in one group; demoted only after an hour of CPU (the next suite demotes).
        anonymous: { ...DEFAULT_ANONYMOUS_LIMITS, nice: 7, executors: 1, demoteAfterMs: 3_600_000 },
        executors: {
          executorFor: (group, placement) => {
            const executor = pool.executorFor(group, placement);
            handedOut.push({ group, placement, executor });
            return executor;
          },
          close: () => pool.close(),
        },
      });
    });
    after(() => server.stop());

    it('runs anonymous programs 7 nice steps (anonymous.nice) below the server, signed ones at its priority', async () => {
      const base = getPriority();
      const anonymous = spinCall(server);
      const signed = spinCall(server, server.token(newKey()));
      try {
        await eventually('both loops run', () => server.instances.runningCount === 2);
        const anonymousExecutors = new Set(handedOut.filter((h) => h.group.startsWith('anonymous')).map((h) => h.executor));
        const signedExecutors = new Set(handedOut.filter((h) => !h.group.startsWith('anonymous')).map((h) => h.executor));
        assert.equal(anonymousExecutors.size, 1);
        assert.equal(signedExecutors.size, 1);
        const [anonymousExecutor] = anonymousExecutors;
        const [signedExecutor] = signedExecutors;
        assert.notEqual(anonymousExecutor, signedExecutor);
        // The server counts an instance as running before its executor's node has loaded executor-main, which lowers the
        // threads first thing: wait for that (bounded), then check every thread.
        const target = Math.min(19, base + 7);
        const lowered = (): number[] => {
          try {
            return executorThreadNice(anonymousExecutor!);
          } catch {
            return [];
          }
        };
        await eventually('every thread of the anonymous executor is lowered', () => {
          const nice = lowered();
          return nice.length > 1 && nice.every((n) => n === target);
        });
        assert.deepEqual(new Set(lowered()), new Set([target]), 'every thread of the anonymous executor is lowered');
        assert.deepEqual(new Set(executorThreadNice(signedExecutor!)), new Set([base]), "the signed principal's executor keeps the server's priority");
        if (autogroups) {
          // Each executor is its own session: where the kernel shares CPU between sessions first, the session's value is what counts.
          await eventually("the anonymous executor's session is lowered", () => executorSessionNice(anonymousExecutor!) === Math.min(19, base + 7));
          assert.equal(executorSessionNice(signedExecutor!), 0);
        }
      } finally {
        anonymous.hangUp();
        signed.hangUp();
        await eventually('the loops are gone', () => server.instances.runningCount === 0);
      }
    });
  });
}

for (const mode of modes) {
  describe(`demotion of anonymous executors that compute long (sandbox ${mode})`, () => {
    let server: TestServer;
    let pool: ExecutorPool;
    const handedOut: Array<{ group: string; executor: ChildProcessExecutor }> = [];

    before(async () => {
      pool = await ExecutorPool.create({ sandbox: mode, handOutGraceMs: 0 });
      server = await startTestServer({
        anonymous: { ...DEFAULT_ANONYMOUS_LIMITS, nice: 7, executors: 1, demoteAfterMs: 100 },
        executors: {
          executorFor: (group, placement) => {
            const executor = pool.executorFor(group, placement);
            handedOut.push({ group, executor });
            return executor;
          },
          close: () => pool.close(),
        },
      });
    });
    after(() => server.stop());

    it('drops the executor of an endless loop to nice 19 and serves the next anonymous request from another executor', async () => {
      const base = getPriority();
      const loop = spinCall(server);
      try {
        await eventually('the loop runs', () => server.instances.runningCount === 1);
        const demoted = handedOut.at(-1)!.executor;
        await eventually('its executor is demoted', () => demoted.demoted);
        assert.deepEqual(new Set(executorThreadNice(demoted)), new Set([19]));
        if (autogroups) await eventually('its session is demoted', () => executorSessionNice(demoted) === 19);
        await eventually('a replacement executor is started at once, before any request needs it', () => pool.size === 2);
        const reply = await request(server, 'POST', `${K}${sha256(hello)}?action=call&function=greet`, { headers: { 'Content-Type': 'application/wasm' }, body: hello });
        assert.equal(reply.text, 'hello, world\n');
        const next = handedOut.at(-1)!;
        assert.equal(next.group, handedOut[0]!.group, 'the same anonymous group');
        assert.notEqual(next.executor, demoted, 'not the demoted executor');
        assert.equal(next.executor.demoted, false);
        assert.deepEqual(new Set(executorThreadNice(next.executor)), new Set([Math.min(19, base + 7)]));
      } finally {
        loop.hangUp();
        await eventually('the loop is gone', () => server.instances.runningCount === 0);
      }
    });

    it('closes demoted executors that have no instance left to make room, so that a group is never left with demoted ones only', async () => {
      // Three loops one after the other in the one anonymous group: each demotes the executor it runs in.
      for (let i = 0; i < 3; i++) {
        const loop = spinCall(server);
        try {
          await eventually(`loop ${i + 1} runs`, () => server.instances.runningCount === 1);
          const executor = handedOut.at(-1)!.executor;
          await eventually(`loop ${i + 1}'s executor is demoted`, () => executor.demoted);
        } finally {
          loop.hangUp();
          await eventually(`loop ${i + 1} is gone`, () => server.instances.runningCount === 0);
        }
      }
      assert.ok(pool.size <= MAX_EXECUTORS_WITH_DEMOTED, `at most ${MAX_EXECUTORS_WITH_DEMOTED} executors in the group, not ${pool.size}`);
      const reply = await request(server, 'POST', `${K}${sha256(hello)}?action=call&function=greet`, { headers: { 'Content-Type': 'application/wasm' }, body: hello });
      assert.equal(reply.text, 'hello, world\n');
      assert.equal(handedOut.at(-1)!.executor.demoted, false, 'served by an executor at the group priority, not a demoted one');
    });
  });
}

if (cpuCgroups) {
  for (const mode of modes) {
    describe(`anonymous executors' CPU priority in their cpu cgroups (sandbox ${mode})`, () => {
      let server: TestServer;
      let pool: ExecutorPool;
      const handedOut: ChildProcessExecutor[] = [];

      before(async () => {
        pool = await ExecutorPool.create({ sandbox: mode });
        server = await startTestServer({
          anonymous: { ...DEFAULT_ANONYMOUS_LIMITS, nice: 7, executors: 1, demoteAfterMs: 100 },
          executors: {
            executorFor: (group, placement) => {
              const executor = pool.executorFor(group, placement);
              handedOut.push(executor);
              return executor;
            },
            close: () => pool.close(),
          },
        });
      });
      after(() => server.stop());

      it("holds an anonymous executor at anonymous.nice's weight from outside, makes it idle once demoted, and starts its replacement idle until it is handed out", async () => {
        const weight = niceWeight(Math.min(19, getPriority() + 7));
        const loop = spinCall(server);
        try {
          await eventually('the loop runs', () => server.instances.runningCount === 1);
          const executor = handedOut.at(-1)!;
          await eventually('its executor has joined its cgroup', () => executorCpuCgroup(executor) !== undefined);
          assert.deepEqual(executorCpu(executor), { idle: false, weight });
          await eventually('its executor is demoted', () => executor.demoted);
          assert.equal(executorCpu(executor).idle, true, "the demoted executor's cgroup is idle");
          // The replacement: the group's other executor, started before anyone asked for it.
          const cgroupsBefore = new Set(handedOut.map((e) => executorCpuCgroup(e)));
          let spare: string | undefined;
          await eventually('a replacement is started', () => {
            spare = spareCgroup(cgroupsBefore);
            return spare !== undefined;
          });
          assert.equal(readFileSync(`${spare}/cpu.idle`, 'utf8').trim(), '1', 'the replacement starts idle');
          const reply = await request(server, 'POST', `${K}${sha256(hello)}?action=call&function=greet`, { headers: { 'Content-Type': 'application/wasm' }, body: hello });
          assert.equal(reply.text, 'hello, world\n');
          const next = handedOut.at(-1)!;
          assert.notEqual(next, executor);
          assert.equal(executorCpuCgroup(next), spare, 'the request went to the replacement');
          assert.deepEqual(executorCpu(next), { idle: false, weight }, 'handed out, it runs at the weight of anonymous.nice');
        } finally {
          loop.hangUp();
          await eventually('the loop is gone', () => server.instances.runningCount === 0);
        }
      });
    });
  }
}

/** A cpu cgroup of this process's executors that is not in `known` (v1: under the cpu hierarchy's root; v2: beside the executors'). */
function spareCgroup(known: Set<string | undefined>): string | undefined {
  const dirs = new Set<string>();
  for (const k of known) if (k) dirs.add(k.slice(0, k.lastIndexOf('/')));
  for (const dir of dirs) {
    for (const name of readdirSync(dir)) {
      const path = `${dir}/${name}`;
      if (name.startsWith(`gate-executor-${process.pid}-`) && !known.has(path) && readFileSync(`${path}/cgroup.procs`, 'utf8').trim() !== '') return path;
    }
  }
  return undefined;
}

describe('CPU budget of anonymous runs', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ anonymous: { ...DEFAULT_ANONYMOUS_LIMITS, cpuTimeMs: 200 } });
  });
  after(() => server.stop());

  it('ends an anonymous endless loop SUSPENDED once it has used anonymous.cputime, while a signed one runs on', async () => {
    const signed = spinCall(server, server.token(newKey()));
    try {
      await eventually('the signed loop runs', () => server.instances.runningCount === 1);
      const reply = await within(60_000, 'the anonymous loop ends', request(server, 'POST', `${K}${sha256(attacks)}?action=call&function=spin`, { headers: { 'Content-Type': 'application/wasm', TE: 'trailers' }, body: attacks }));
      assert.equal(reply.status, 200);
      assert.equal(reply.trailers['gate-status'], '{"state":"SUSPENDED"}');
      assert.equal(server.instances.runningCount, 1, 'the signed loop (no budget) still runs');
      const next = await request(server, 'POST', `${K}${sha256(hello)}?action=call&function=greet`, { headers: { 'Content-Type': 'application/wasm' }, body: hello });
      assert.equal(next.text, 'hello, world\n', 'anonymous callers are served after it');
    } finally {
      signed.hangUp();
      await eventually('the signed loop is gone', () => server.instances.runningCount === 0);
    }
  });
});

describe('anonymous.nice and anonymous.cputime in gate-server', () => {
  it('refuses values out of range with a message naming the key and what it accepts', () => {
    const server = new URL('../../../bin/gate-server', import.meta.url).pathname;
    const config = (o: string): { status: number | null; stderr: string } => {
      const r = spawnSync(process.execPath, [server, '-F', '/dev/null', '-o', 'access.policy="public"', '-o', o], { encoding: 'utf8', timeout: 20_000 });
      return { status: r.status, stderr: r.stderr };
    };
    assert.deepEqual(config('anonymous.nice=20'), { status: 2, stderr: "gate-server: anonymous.nice must be a whole number from 0 (the server's priority) to 19 (the lowest)\n" });
    assert.deepEqual(config('anonymous.cputime=-1'), { status: 2, stderr: 'gate-server: anonymous.cputime must be a number of milliseconds (0: unlimited)\n' });
  });
});
