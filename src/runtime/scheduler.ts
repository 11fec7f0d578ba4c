import type { Instance, BlockedWait } from './instance.js';
import type { InstanceStatus } from './status.js';

/** Runs `fn` soon, after pending I/O callbacks (setImmediate where it exists). */
const soon: (fn: () => void) => void =
  typeof (globalThis as { setImmediate?: unknown }).setImmediate === 'function'
    ? (fn) => (globalThis as unknown as { setImmediate(f: () => void): void }).setImmediate(fn)
    : (fn) => setTimeout(fn, 0);

const MAX_TIMER_MS = 2 ** 31 - 1;

interface Blocked {
  wait: BlockedWait;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * Cooperative scheduler of the instances of one executor: runs one time
 * slice at a time, returning to the event loop between slices so that
 * packets and control messages get in.
 *
 * Fair by CPU time, as Linux's CFS: the next slice goes to the ready
 * instance that has had the least CPU. An instance that arrives or wakes
 * starts from the least that any ready instance has had, minus one slice,
 * so a program that mostly waits (a request handler) runs before endless
 * loops as soon as its input is there, while a program that slept long
 * cannot come back with credit to hog the executor. Slices shrink when
 * several instances wait for the CPU (the full slice divided among them,
 * down to a fifth of it), which bounds how long any of them waits.
 */
export class Scheduler {
  private readonly ready: Instance[] = [];
  private readonly blocked = new Map<Instance, Blocked>();
  /** CPU milliseconds each live instance has had (its "virtual runtime"). */
  private readonly cpuMs = new Map<Instance, number>();
  /** Real CPU milliseconds each live instance has had (cpuMs gives newcomers credit; this does not). */
  private readonly ranMs = new Map<Instance, number>();
  /** Never decreases: the CPU time of the instance that ran last, the floor for newcomers when none is ready. */
  private clockMs = 0;
  private scheduled = false;
  private paused = false;

  constructor(
    private readonly onStopped: (inst: Instance, status: InstanceStatus) => void,
    private readonly sliceMs = 10,
    /** Milliseconds, for measuring the CPU each slice took (tests give a virtual clock). */
    private readonly clock: () => number = () => performance.now(),
    /**
     * Where known, the process's CPU milliseconds (all threads): a slice is
     * counted as the lesser of both, so that the time the process was not
     * running at all (the kernel gave the CPU to others) is not counted as
     * the instance's computing. Else a slice preempted on a busy host looks
     * like long computing, and a request that computed 1 ms would get its
     * executor demoted (executor-main.ts).
     */
    private readonly cpuClock?: () => number,
  ) {}

  /** The most CPU time any live instance has had, in milliseconds. */
  get mostCpuMs(): number {
    let most = 0;
    for (const ms of this.ranMs.values()) most = Math.max(most, ms);
    return most;
  }

  add(inst: Instance): void {
    this.enqueue(inst);
    this.kick();
  }

  /** Re-checks a blocked instance's wait (after input, output credit, suspend or kill). */
  wake(inst: Instance): void {
    const b = this.blocked.get(inst);
    if (!b || !inst.waitSatisfied(b.wait, performance.now())) return;
    this.unblock(inst, b);
  }

  /** Stops an instance that is not running, at once. */
  stop(inst: Instance, trap: number, message?: string): void {
    const b = this.blocked.get(inst);
    if (b) {
      if (b.timer) clearTimeout(b.timer);
      this.blocked.delete(inst);
    }
    const i = this.ready.indexOf(inst);
    if (i >= 0) this.ready.splice(i, 1);
    this.cpuMs.delete(inst);
    this.ranMs.delete(inst);
    this.onStopped(inst, inst.stopNow(trap, message));
  }

  /** Wakes the instance at its deadline. Timers cannot be set further ahead than ~24.8 days, so far deadlines re-arm. */
  private arm(inst: Instance, b: Blocked): void {
    if (!Number.isFinite(b.wait.deadline)) return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(b.wait.deadline - performance.now())));
    b.timer = setTimeout(() => {
      b.timer = undefined;
      if (this.blocked.get(inst) !== b) return;
      if (performance.now() < b.wait.deadline - 1 && delay === MAX_TIMER_MS) this.arm(inst, b);
      else this.unblock(inst, b);
    }, delay);
  }

  private unblock(inst: Instance, b: Blocked): void {
    if (b.timer) clearTimeout(b.timer);
    this.blocked.delete(inst);
    this.enqueue(inst);
    this.kick();
  }

  /** Makes `inst` ready, with no more credit than one slice ahead of the others. */
  private enqueue(inst: Instance): void {
    let floor = this.ready.length ? Infinity : this.clockMs;
    for (const r of this.ready) floor = Math.min(floor, this.cpuMs.get(r)!);
    this.cpuMs.set(inst, Math.max(this.cpuMs.get(inst) ?? 0, floor - this.sliceMs));
    this.ready.push(inst);
  }

  /** Takes the ready instance that has had the least CPU (the first of equals). */
  private next(): Instance | undefined {
    let best = -1;
    for (let i = 0; i < this.ready.length; i++) {
      if (best < 0 || this.cpuMs.get(this.ready[i]!)! < this.cpuMs.get(this.ready[best]!)!) best = i;
    }
    return best < 0 ? undefined : this.ready.splice(best, 1)[0];
  }

  /** Stops running slices until resume() (the executor's output is backed up). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.kick();
  }

  private kick(): void {
    if (this.paused || this.scheduled || this.ready.length === 0) return;
    this.scheduled = true;
    soon(() => this.turn());
  }

  /**
   * Runs slices one after another while they are short: at most as many as
   * instances were ready when the turn began, until the turn has taken a
   * tenth of a slice (one long slice ends it at once). Short slices of
   * several instances (request handlers) then cost one turn of the event
   * loop, and their output leaves in one write; incoming messages wait at
   * most that much longer. Each slice's end is the next one's start, so the
   * clocks are read once per slice plus once per turn (what the scheduler
   * does between two slices of a turn, e.g. report a stop, counts to the
   * second).
   */
  private turn(): void {
    this.scheduled = false;
    let t0 = this.clock();
    let c0 = this.cpuClock?.();
    const end = t0 + this.sliceMs / 10;
    let left = this.ready.length;
    do {
      if (this.paused) return;
      const inst = this.next();
      if (!inst) return;
      t0 = this.runOne(inst, t0, c0);
      c0 = this.lastCpu;
    } while (--left > 0 && t0 < end);
    this.kick();
  }

  /** The process CPU clock's reading at the end of the last slice (undefined without a cpuClock). */
  private lastCpu: number | undefined;

  /** Runs one slice of `inst`, which starts at wall time `t0` and CPU time `c0`; returns the wall time at its end. */
  private runOne(inst: Instance, t0: number, c0: number | undefined): number {
    const slice = Math.max(this.sliceMs / 5, this.sliceMs / (1 + this.ready.length));
    const outcome = inst.runSlice(slice);
    const t1 = this.clock();
    const wall = t1 - t0;
    this.lastCpu = this.cpuClock?.();
    const ran = c0 === undefined ? wall : Math.min(wall, this.lastCpu! - c0);
    const used = this.cpuMs.get(inst)! + ran;
    this.cpuMs.set(inst, used);
    this.ranMs.set(inst, (this.ranMs.get(inst) ?? 0) + ran);
    this.clockMs = Math.max(this.clockMs, used);
    switch (outcome.kind) {
      case 'ready':
        this.ready.push(inst);
        break;
      case 'blocked': {
        const b: Blocked = { wait: outcome.wait, timer: undefined };
        this.blocked.set(inst, b);
        if (inst.waitSatisfied(b.wait, performance.now())) {
          this.unblock(inst, b);
        } else {
          this.arm(inst, b);
        }
        break;
      }
      case 'stopped':
        this.cpuMs.delete(inst);
        this.ranMs.delete(inst);
        this.onStopped(inst, outcome.status);
        break;
    }
    return t1;
  }
}
