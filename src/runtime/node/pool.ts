/**
 * A pool of executor processes for a server: sandboxed (or, on the
 * operator's explicit choice, not), one or more per group of instances.
 * Instances of different groups (principals) never share a process unless
 * `isolatePrincipals` is false, so that a program that breaks out of the
 * wasm sandbox into its executor finds only its own principal's instances.
 */
import { ChildProcessExecutor, type ExecutorExit } from './child-executor.js';
import { checkSandbox, DEFAULT_EXECUTOR_MEMORY_BYTES, Sandbox, SandboxUnavailableError, type SandboxMode } from './sandbox/sandbox.js';

export interface ExecutorPoolOptions {
  /** 'none' = plain child processes (still an empty environment, rlimits and a cgroup where possible). */
  sandbox: SandboxMode;
  /** The bubblewrap binary (default: found in /usr/bin, /bin, /usr/local/bin or PATH). */
  bwrapPath?: string;
  /** Instances of different groups never share an executor process (default true). */
  isolatePrincipals?: boolean;
  /** Running (or retained) instances per executor before another is started for the group (default 64). */
  maxInstancesPerExecutor?: number;
  nodeArgs?: string[];
  /** Per executor: the cgroup's memory cap and RLIMIT_DATA (default 4 GiB). */
  memoryLimitBytes?: number;
  /** Logging: an executor process went away (crash, kill, OOM, idle close). */
  onExecutorExit?(info: ExecutorExit): void;
  /** An executor without instances is closed after this long (default 60 s; 0 = kept until close). */
  idleTimeoutMs?: number;
  /**
   * A demoted executor without instances is closed to make room for one at the group's priority (see
   * MAX_EXECUTORS_WITH_DEMOTED) only if it was not handed out within this long (default 10 s): its caller may still be
   * preparing a module for it.
   */
  handOutGraceMs?: number;
  /** Scheduler time slice in executors (default 10 ms). */
  sliceMs?: number;
  /** Tests only: another executor main module (e.g. a probe of the sandbox). */
  executorMain?: string;
}

/** How the executors of a group run (each request decides for an executor it starts; ignored when principals are not isolated). */
export interface ExecutorPlacement {
  /** Nice steps below the server's CPU priority (0-19; default 0). */
  nice?: number;
  /**
   * Demotion: an executor one of whose instances has had this much CPU (ms)
   * goes to the lowest priority, and new instances of the group go to
   * another executor (at most MAX_EXECUTORS_WITH_DEMOTED per group; past
   * that, to the least loaded). Default: never.
   */
  demoteAfterMs?: number;
}

/**
 * Executors a group may have while some are demoted: its new instances share a demoted one past this. To stay under
 * it, a demoted one without instances is closed first (it never runs at the group's priority again): else, after a
 * few hostile programs had come and gone, the group's new instances would all have to share one.
 */
export const MAX_EXECUTORS_WITH_DEMOTED = 3;

export const DEFAULT_HAND_OUT_GRACE_MS = 10_000;

export const DEFAULT_MAX_INSTANCES_PER_EXECUTOR = 64;
export const DEFAULT_EXECUTOR_IDLE_MS = 60_000;
const SHARED = '\0shared';

/**
 * The most memory one instance may have in an executor whose cap is
 * `executorBytes`: what is left after node's own needs (its heap must still
 * be able to grow when wasm memories have taken the rest, or V8 aborts).
 */
export function instanceMemoryCap(executorBytes: number): number {
  return Math.max(16 * 1024 * 1024, Math.floor(executorBytes * 0.75) - 64 * 1024 * 1024);
}

export class ExecutorPool {
  private readonly groups = new Map<string, ChildProcessExecutor[]>();
  private readonly idleTimers = new Map<ChildProcessExecutor, ReturnType<typeof setInterval>>();
  /** When executorFor last returned each executor (its caller may still be preparing a module). */
  private readonly handedOut = new WeakMap<ChildProcessExecutor, number>();
  private closed = false;

  private constructor(
    private readonly opts: ExecutorPoolOptions,
    readonly sandbox: Sandbox,
  ) {}

  /**
   * Prepares the pool; with sandbox 'bwrap' it first checks that bubblewrap
   * really works here and rejects with SandboxUnavailableError if not.
   */
  static async create(opts: ExecutorPoolOptions): Promise<ExecutorPool> {
    if (opts.sandbox !== 'bwrap' && opts.sandbox !== 'none') {
      throw new SandboxUnavailableError(`unknown sandbox mode ${JSON.stringify(opts.sandbox)} (use "bwrap" or "none")`);
    }
    if (opts.sandbox === 'bwrap') {
      const check = await checkSandbox({ bwrapPath: opts.bwrapPath });
      if (!check.available) throw new SandboxUnavailableError(check.reason ?? 'unknown reason');
    }
    return new ExecutorPool(opts, Sandbox.create({ mode: opts.sandbox, memoryLimitBytes: opts.memoryLimitBytes, bwrapPath: opts.bwrapPath }));
  }

  /** What protects executors of this pool, e.g. "bubblewrap, seccomp, rlimits, cgroup v1 (memory, pids)". */
  describe(): string {
    return this.sandbox.describe();
  }

  /**
   * A live executor for instances of `group` (a principal id, or e.g.
   * 'anonymous'): the least loaded of the group's executors with room, or a
   * new one. Dead executors are dropped here, so a crash only costs the
   * instances that were in it.
   */
  executorFor(group: string, placement: ExecutorPlacement = {}): ChildProcessExecutor {
    if (this.closed) throw new SandboxUnavailableError('the executor pool is closed');
    const key = this.opts.isolatePrincipals === false ? SHARED : group;
    const max = this.opts.maxInstancesPerExecutor ?? DEFAULT_MAX_INSTANCES_PER_EXECUTOR;
    let list = this.liveExecutors(key);
    let best: ChildProcessExecutor | undefined;
    for (const e of list) if (e.load < max && !e.demoted && (!best || e.load < best.load)) best = e;
    if (!best) list = this.closeEmptyDemoted(list);
    if (!best && list.length >= MAX_EXECUTORS_WITH_DEMOTED) {
      for (const e of list) if (e.load < max && (!best || e.load < best.load)) best = e;
    }
    if (!best) {
      // A process shared by all principals keeps the server's priority.
      best = this.start(key, key === SHARED ? {} : placement);
      list.push(best);
    }
    this.groups.set(key, list);
    this.handedOut.set(best, performance.now());
    best.activate();
    return best;
  }

  /** The group's executors that are alive. */
  private liveExecutors(key: string): ChildProcessExecutor[] {
    return (this.groups.get(key) ?? []).filter((e) => e.alive);
  }

  /** At MAX_EXECUTORS_WITH_DEMOTED, closes demoted executors without instances (not handed out lately, see handOutGraceMs), oldest first. */
  private closeEmptyDemoted(list: ChildProcessExecutor[]): ChildProcessExecutor[] {
    const now = performance.now();
    let rest = list;
    for (const e of list) {
      if (rest.length < MAX_EXECUTORS_WITH_DEMOTED) break;
      if (e.demoted && e.load === 0 && now - (this.handedOut.get(e) ?? 0) >= (this.opts.handOutGraceMs ?? DEFAULT_HAND_OUT_GRACE_MS)) {
        rest = rest.filter((x) => x !== e);
        void e.close();
      }
    }
    return rest;
  }

  /** Executor processes alive now (for metrics and tests). */
  get size(): number {
    let n = 0;
    for (const list of this.groups.values()) n += list.filter((e) => e.alive).length;
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.idleTimers.values()) clearInterval(t);
    this.idleTimers.clear();
    const all = [...this.groups.values()].flat();
    this.groups.clear();
    await Promise.all(all.map((e) => e.close()));
    this.sandbox.dispose();
  }

  private start(key: string, placement: ExecutorPlacement, spare = false): ChildProcessExecutor {
    const executor = new ChildProcessExecutor({
      nice: placement.nice,
      demoteAfterMs: placement.demoteAfterMs,
      spare,
      // A replacement is started at once, so that the next request does not wait for a process to start; as a spare,
      // idle where the sandbox's cgroup can raise it when it is handed out, so that its start costs nobody CPU.
      onDemoted: () => {
        if (this.closed) return;
        let list = this.liveExecutors(key);
        if (list.some((e) => !e.demoted)) return;
        list = this.closeEmptyDemoted(list);
        if (list.length >= MAX_EXECUTORS_WITH_DEMOTED) return;
        list.push(this.start(key, placement, true));
        this.groups.set(key, list);
      },
      nodeArgs: this.opts.nodeArgs,
      sliceMs: this.opts.sliceMs,
      instanceMemoryCapBytes: instanceMemoryCap(this.opts.memoryLimitBytes ?? DEFAULT_EXECUTOR_MEMORY_BYTES),
      launch: this.sandbox,
      main: this.opts.executorMain,
      onExit: (info) => {
        const t = this.idleTimers.get(executor);
        if (t) clearInterval(t);
        this.idleTimers.delete(executor);
        const list = this.groups.get(key);
        if (list) {
          const rest = list.filter((e) => e !== executor);
          if (rest.length) this.groups.set(key, rest);
          else this.groups.delete(key);
        }
        this.opts.onExecutorExit?.(info);
      },
    });
    const idleMs = this.opts.idleTimeoutMs ?? DEFAULT_EXECUTOR_IDLE_MS;
    if (idleMs > 0) {
      // Idle = no instance at two consecutive looks, idleMs apart, and not
      // handed out within idleMs (the caller may be preparing its module).
      let idleBefore = false;
      const timer = setInterval(() => {
        const idle = executor.load === 0 && performance.now() - (this.handedOut.get(executor) ?? 0) >= idleMs;
        if (idle && idleBefore) {
          // Out of the pool first: executorFor must not hand out a closing executor.
          const list = this.groups.get(key)?.filter((e) => e !== executor);
          if (list?.length) this.groups.set(key, list);
          else this.groups.delete(key);
          void executor.close();
        }
        idleBefore = idle;
      }, idleMs);
      timer.unref();
      this.idleTimers.set(executor, timer);
    }
    return executor;
  }
}
