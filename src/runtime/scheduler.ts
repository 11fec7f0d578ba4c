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
 * slice at a time, round robin, returning to the event loop between slices
 * so that packets and control messages get in.
 */
export class Scheduler {
  private readonly ready: Instance[] = [];
  private readonly blocked = new Map<Instance, Blocked>();
  private scheduled = false;
  private paused = false;

  constructor(
    private readonly onStopped: (inst: Instance, status: InstanceStatus) => void,
    private readonly sliceMs = 10,
  ) {}


  add(inst: Instance): void {
    this.ready.push(inst);
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
    this.ready.push(inst);
    this.kick();
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

  private turn(): void {
    this.scheduled = false;
    if (this.paused) return;
    const inst = this.ready.shift();
    if (!inst) return;
    const outcome = inst.runSlice(this.sliceMs);
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
        this.onStopped(inst, outcome.status);
        break;
    }
    this.kick();
  }
}
