/**
 * The executor's scheduler picks by CPU time had: scripted tasks stand in for
 * instances here (the scheduler only calls runSlice and waitSatisfied), so
 * the order of slices is observable exactly. Real instances under the
 * scheduler are covered by the executor conformance and program tests.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler } from '../../src/runtime/scheduler.js';
import type { Instance, SliceOutcome } from '../../src/runtime/instance.js';
import { State } from '../../src/runtime/status.js';

interface Slice {
  task: string;
  sliceMs: number;
}

let virtualMs = 0;
const clock = (): number => virtualMs;
function busy(ms: number): void {
  virtualMs += ms;
}

/** A task that spins for its whole slice, or works `workMs` per wake-up and then waits for `wake()`. */
class Task {
  woken = false;
  constructor(
    readonly name: string,
    private readonly log: Slice[],
    private readonly kind: 'spin' | { workMs: number },
  ) {}

  runSlice(sliceMs: number): SliceOutcome {
    this.log.push({ task: this.name, sliceMs });
    if (this.kind === 'spin') {
      busy(sliceMs);
      return { kind: 'ready' };
    }
    busy(this.kind.workMs);
    this.woken = false;
    return { kind: 'blocked', wait: { input: true, output: false, deadline: Infinity } };
  }

  waitSatisfied(): boolean {
    return this.woken;
  }

  stopNow(): { state: string } {
    return { state: State.Killed };
  }
}

const asInstance = (t: Task): Instance => t as unknown as Instance;
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !cond(); i++) await tick();
  assert.ok(cond(), 'the scheduler did not get there');
}

describe('scheduler', () => {
  it('alternates between equal spinning instances and divides the slice among those waiting', async () => {
    const log: Slice[] = [];
    const s = new Scheduler(() => undefined, 10, clock);
    const a = new Task('a', log, 'spin');
    const b = new Task('b', log, 'spin');
    s.add(asInstance(a));
    s.add(asInstance(b));
    await until(() => log.length >= 8);
    s.pause();
    const names = log.slice(0, 8).map((l) => l.task).join('');
    assert.equal(names, 'abababab');
    // With one other instance ready, each gets half the slice.
    assert.ok(log.every((l) => l.sliceMs === 5), JSON.stringify(log));
    s.stop(asInstance(a), 0);
    s.stop(asInstance(b), 0);
  });

  it('runs an instance that wakes before spinning ones that have had more CPU', async () => {
    const log: Slice[] = [];
    const s = new Scheduler(() => undefined, 4, clock);
    const spins = [new Task('x', log, 'spin'), new Task('y', log, 'spin')];
    for (const t of spins) s.add(asInstance(t));
    await until(() => log.length >= 10);
    const waker = new Task('w', log, { workMs: 0.1 });
    s.add(asInstance(waker));
    const at = log.length;
    await until(() => log.length >= at + 3);
    // The newcomer runs at most one slice after it arrived (the one under way when it came).
    assert.ok(log.slice(at, at + 2).some((l) => l.task === 'w'), JSON.stringify(log.slice(at)));
    for (let round = 0; round < 5; round++) {
      await until(() => log.length >= at + 10 * (round + 1));
      const before = log.length;
      waker.woken = true;
      s.wake(asInstance(waker));
      await until(() => log.length >= before + 2);
      assert.equal(log[before]!.task, 'w', `woken in round ${round}: ${JSON.stringify(log.slice(before))}`);
    }
    s.pause();
    for (const t of [...spins, waker]) s.stop(asInstance(t), 0);
  });

  it('gives an instance that slept long no more than one slice of credit', async () => {
    const log: Slice[] = [];
    const s = new Scheduler(() => undefined, 4, clock);
    const spin = new Task('x', log, 'spin');
    s.add(asInstance(spin));
    const sleeper = new Task('z', log, { workMs: 0 });
    s.add(asInstance(sleeper));
    await until(() => log.filter((l) => l.task === 'x').length >= 50);
    // Now the sleeper turns into a spinning program and wakes: it may run
    // first, but the old spinner runs again within two of its slices.
    (sleeper as unknown as { kind: string }).kind = 'spin';
    sleeper.woken = true;
    s.wake(asInstance(sleeper));
    const at = log.length;
    await until(() => log.length >= at + 6);
    s.pause();
    const after = log.slice(at, at + 6).map((l) => l.task).join('');
    assert.match(after, /x/);
    assert.ok(!/zzz/.test(after), after);
    s.stop(asInstance(spin), 0);
    s.stop(asInstance(sleeper), 0);
  });

  it("counts a slice as the lesser of its wall time and the process's CPU time, so that waiting for a CPU is not computing", async () => {
    let wallMs = 0;
    let cpuMs = 0;
    const log: Slice[] = [];
    const s = new Scheduler(() => undefined, 10, () => wallMs, () => cpuMs);
    // A request that computes 1 ms, but whose process the kernel preempted for 100 ms meanwhile (a busy host).
    const preempted = { ...new Task('p', log, { workMs: 0 }), runSlice(sliceMs: number): SliceOutcome {
      log.push({ task: 'p', sliceMs });
      wallMs += 101;
      cpuMs += 1;
      return { kind: 'blocked', wait: { input: true, output: false, deadline: Infinity } };
    }, waitSatisfied: () => false, stopNow: () => ({ state: State.Killed }) };
    s.add(preempted as unknown as Instance);
    await until(() => log.length === 1);
    assert.equal(s.mostCpuMs, 1, 'the 100 ms it waited for a CPU are not counted');
    s.stop(preempted as unknown as Instance, 0);
    // A slice during which other threads of the process (GC, compilers) had CPU too: no more than its wall time.
    const busyBeside = { ...preempted, runSlice(sliceMs: number): SliceOutcome {
      log.push({ task: 'b', sliceMs });
      wallMs += 5;
      cpuMs += 30;
      return { kind: 'blocked', wait: { input: true, output: false, deadline: Infinity } };
    } };
    s.add(busyBeside as unknown as Instance);
    await until(() => log.length === 2);
    assert.equal(s.mostCpuMs, 5);
    s.stop(busyBeside as unknown as Instance, 0);
  });

  it('runs the short slices of instances ready together in one turn, reading the clocks once per slice plus once per turn; a long slice ends the turn', async () => {
    let wallMs = 0;
    let cpuMs = 0;
    let cpuReads = 0;
    const log: Slice[] = [];
    // Slices of 100 ms: a turn goes on while it has taken less than 10 ms.
    const s = new Scheduler(() => undefined, 100, () => wallMs, () => (cpuReads++, cpuMs));
    /** A task whose one slice takes `wall` ms and `cpu` ms of the process's CPU, then waits for ever. */
    const task = (name: string, wall: number, cpu: number) => ({
      ...new Task(name, log, { workMs: 0 }),
      runSlice(sliceMs: number): SliceOutcome {
        log.push({ task: name, sliceMs });
        wallMs += wall;
        cpuMs += cpu;
        return { kind: 'blocked', wait: { input: true, output: false, deadline: Infinity } };
      },
      waitSatisfied: () => false,
      stopNow: () => ({ state: State.Killed }),
    });
    const short = [task('a', 2, 1), task('b', 1, 3), task('c', 3, 3)];
    for (const t of short) s.add(t as unknown as Instance);
    await until(() => log.length === 3);
    assert.equal(cpuReads, 4, 'three slices in one turn');
    // Each still counts the lesser of its own wall and CPU time.
    assert.equal(s.mostCpuMs, 3);
    for (const t of short) s.stop(t as unknown as Instance, 0);

    cpuReads = 0;
    const long = task('l', 50, 50);
    const after = task('n', 1, 1);
    s.add(long as unknown as Instance);
    s.add(after as unknown as Instance);
    await until(() => log.length === 5);
    assert.deepEqual(log.slice(3).map((l) => l.task), ['l', 'n']);
    assert.equal(cpuReads, 4, 'the long slice ended its turn: the next one had a turn of its own');
    s.stop(long as unknown as Instance, 0);
    s.stop(after as unknown as Instance, 0);
  });
});
