import type { PreparedCache } from '../prepare/cache.js';
import type { PreparedModule } from '../prepare/pipeline.js';
import { DEFAULT_PROFILE, type Profile } from '../prepare/profile.js';
import { InternalExport } from '../prepare/internal.js';
import { SiteKind } from '../prepare/instrument.js';
import type { ServiceState } from '../snapshot/state.js';
import { ModuleLimitError } from '../wasm/errors.js';
import { DEFAULT_LOCAL_LIMITS, type ModuleLimits } from '../wasm/validate.js';
import { checkDebugLimits, type DebugLimits } from './debug-limits.js';
import { DebugLog, type DebugSink } from './debug-log.js';
import { InstanceStateError } from './errors.js';
import type { Executor, FirstCallReplies, InstanceEvents, InstanceSpec, ResumeState } from './executor.js';
import { rawFromFrames } from './frames.js';
import { Program } from './program.js';
import { RunningInstance } from './running-instance.js';
import { State, statusOfSnapshot } from './status.js';
import { encodeRawStack } from './unwinder.js';

export { RunningInstance } from './running-instance.js';

/** The trusted side's services of one instance (implemented by service/session.ts). */
export interface ServiceConnection {
  /** Names the instance may discover. */
  availableNames(): string[];
  bind(code: number, name: string): void;
  /** A packet from the program; may complete asynchronously. */
  handle(packet: Uint8Array): void | Promise<void>;
  /** The program stopped; with `suspend`, returns each discovered service's state in code order. */
  shutdown(suspend: boolean): Promise<ServiceState[] | void> | ServiceState[] | void;
  /** Re-creates the services of a snapshot before the instance continues. */
  restore(states: ServiceState[]): void | Promise<void>;
  /**
   * Replies the executor may give the program's first CALL to a service
   * itself (see FirstCallReplies); asked once per run of an instance that
   * does not continue from a snapshot, just before it is created. Omitted or
   * undefined: none.
   */
  firstCallReplies?(): FirstCallReplies | undefined;
  /** Whether checkpoint() is possible now. Omitted (with checkpoint): never. */
  canCheckpoint?(): boolean;
  /** Each discovered service's state as `shutdown(true)` would give it, while they all keep running (for a checkpoint). */
  checkpoint?(): Promise<ServiceState[]>;
}

export interface ServiceHooks {
  instanceId: string;
  /** Sends a packet to the program. */
  send(packet: Uint8Array): void;
  /** A service failed: the instance is killed (ABI_VIOLATION for AbiViolation, else INTERNAL). */
  fail(error: unknown): void;
}

export type ServiceProvider<C extends ServiceConnection = ServiceConnection> = (hooks: ServiceHooks) => C;

export interface RuntimeOptions {
  executor: Executor;
  /** Memory growth limit per instance in 64 KiB pages (spec abi.md §1.5). */
  memoryLimitPages: number;
  /** Time resolution in nanoseconds (spec abi.md §5.1). */
  timeResolutionNs: number;
  profile?: Profile;
  cache?: PreparedCache;
  /** io-suspend: longest computation without a blocking call (default 10 s); see InstanceSpec. */
  computeLimitMs?: number;
  /**
   * How much debug output each instance may produce (a server sets
   * DEFAULT_DEBUG_LIMITS or its configuration); undefined: no limit, as for
   * `gate run -d`. Past it output is dropped, in the executor and again here.
   */
  debugLimits?: DebugLimits;
  /**
   * Running time an instance may use in one run (launch or resume), in
   * milliseconds; undefined = unlimited. Past it, a suspend-anywhere instance
   * is SUSPENDED (it can be resumed with a new budget); an io-suspend one is
   * suspended at its next blocking call, or KILLED (INTERNAL) like the
   * compute limit if it computes on. LaunchOptions.cpuBudgetMs overrides it.
   */
  cpuBudgetMs?: number;
  /**
   * Prepares programs instead of Program.prepare in this thread (e.g. a
   * PreparePool of worker threads, so that a server's event loop never runs
   * the transform); `cache` is then the preparer's business.
   */
  preparer?: (program: Program, profile: Profile, breakpoints: readonly number[]) => Promise<PreparedModule>;
  /** Acceptance limits for modules and snapshots loaded through load()/restore() (default: the local ones). */
  limits?: ModuleLimits;
}

export const DEFAULT_COMPUTE_LIMIT_MS = 10_000;

export interface LaunchOptions<C extends ServiceConnection> {
  /** Requested entry function (spec abi.md §1.3). */
  entry?: string;
  profile?: Profile;
  /** Receives what the program writes to fds 1 and 2 (within RuntimeOptions.debugLimits); omitted: discarded. */
  debug?: DebugSink;
  instanceId?: string;
  services: ServiceProvider<C>;
  /** Keep the instance's state in the executor after it stops, for snapshot() and resume. */
  retain?: boolean;
  /** Its owner (e.g. the principal's id): instances of one owner may reuse each other's memory objects, reset (InstanceSpec.memoryGroup). */
  memoryGroup?: string;
  /** This instance's CPU budget for this run (see RuntimeOptions.cpuBudgetMs). */
  cpuBudgetMs?: number;
  /** Debugger breakpoints kept in the instance's snapshots (default: the snapshot's own). */
  breakpoints?: readonly bigint[];
}

/**
 * The runtime's public face: launches programs (and snapshots) in an
 * executor and wires their packets to the trusted side's services.
 */
export class Runtime {
  constructor(private readonly opts: RuntimeOptions) {
    if (opts.debugLimits) checkDebugLimits(opts.debugLimits);
  }

  get executor(): Executor {
    return this.opts.executor;
  }

  /** Reads and validates module bytes (a program or a snapshot) under this runtime's limits. */
  load(bytes: Uint8Array): Promise<Program> {
    return Program.load(bytes, this.opts.limits ?? DEFAULT_LOCAL_LIMITS);
  }

  /** Launches an instance from snapshot bytes (see launch). */
  async restore<C extends ServiceConnection>(bytes: Uint8Array, launch: LaunchOptions<C>): Promise<RunningInstance<C>> {
    return this.launch(await this.load(bytes), launch);
  }

  /**
   * Starts an instance of a program, or continues one from a snapshot (a
   * Program loaded from snapshot bytes): a suspended snapshot resumes where it
   * stopped, a halted one runs the requested function (if any) on its state,
   * a final one gives a stopped instance with the recorded status.
   */
  async launch<C extends ServiceConnection>(program: Program, launch: LaunchOptions<C>): Promise<RunningInstance<C>> {
    const snap = program.snapshot;
    const entry = program.entry(launch.entry);
    const profile = snap?.stack?.profile ?? launch.profile ?? this.opts.profile ?? DEFAULT_PROFILE;
    const mem = program.memoryLimits;
    let memoryPages = { initial: 0, maximum: 0 };
    if (mem) {
      const maximum = Math.min(mem.max ?? 65536, this.opts.memoryLimitPages);
      if (mem.min > maximum) throw new ModuleLimitError('initial program memory size exceeds instance memory size limit');
      memoryPages = { initial: mem.min, maximum };
    }
    const cpuBudgetMs = launch.cpuBudgetMs ?? this.opts.cpuBudgetMs;
    if (cpuBudgetMs !== undefined && !(cpuBudgetMs > 0 && Number.isFinite(cpuBudgetMs))) {
      throw new RangeError(`cpuBudgetMs must be a positive number of milliseconds (or undefined for no budget), not ${cpuBudgetMs}`);
    }
    const id = launch.instanceId ?? globalThis.crypto.randomUUID();
    const executor = this.opts.executor;
    const debugLimits = this.opts.debugLimits;
    const debug = launch.debug ? new DebugLog(launch.debug, debugLimits) : undefined;

    if (snap?.final) {
      const inst = new RunningInstance<C>(id, executor, debug, program, undefined, false);
      inst.stoppedWithoutRun(statusOfSnapshot(snap.trap, snap.result));
      return inst;
    }

    // Breakpoints (docs/debugging.md): the configured ones stop the
    // instance; a frame stopped at one that is no longer configured still
    // needs its site in the code to continue from it.
    const enabled = breakpointOffsets(launch.breakpoints ?? snap?.breakpoints ?? []);
    const instrumented = [...new Set([...enabled, ...(snap?.stack?.frames ?? []).filter((f) => f.kind === SiteKind.Breakpoint).map((f) => f.offset)])].sort((a, b) => a - b);
    const prepared = this.opts.preparer ? await this.opts.preparer(program, profile, instrumented) : await program.prepare(profile, this.opts.cache, instrumented);
    // The frames must fit the code (checked before anything runs); the executor gets them raw.
    const stack = snap?.stack ? encodeRawStack(rawFromFrames(snap.stack.frames, program.unwindLayouts(profile, prepared.breakpoints))) : new Uint8Array(0);
    if (!executor.hasModule(prepared.key)) await executor.loadModule(prepared.key, prepared.bytes, program.rewindSource(profile, prepared.breakpoints));

    const retain = launch.retain ?? false;
    const inst = new RunningInstance<C>(id, executor, debug, program, prepared, retain);
    if (launch.breakpoints) inst.breakpoints = launch.breakpoints;
    const services = launch.services({
      instanceId: id,
      send: (packet) => inst.sendToProgram(packet),
      fail: (error) => inst.serviceFailed(error),
    });
    inst.attach(services);
    let resume: ResumeState | undefined;
    if (snap) {
      // Services first: the restored output below may hold packets for them.
      await services.restore(snap.services);
      const calls: string[] = [];
      if (snap.stack) {
        if (snap.stack.startPending) calls.push(InternalExport.start);
        if (snap.stack.entry !== undefined) calls.push(snap.stack.entry);
      } else if (entry !== undefined) {
        calls.push(entry);
      }
      resume = {
        stack,
        calls,
        monotonicNs: snap.monotonicNs,
        input: snap.input,
        outputTail: snap.output,
        services: snap.services.map((s) => s.name),
      };
    }
    const firstCallReplies = resume === undefined ? services.firstCallReplies?.() : undefined;
    const spec: InstanceSpec = {
      id,
      moduleKey: prepared.key,
      profile,
      entry,
      hasStart: program.hasStart,
      memoryPages,
      timeResolutionNs: this.opts.timeResolutionNs,
      debug: debug !== undefined,
      ...(debug && debugLimits ? { debugLimits } : {}),
      services: services.availableNames(),
      computeLimitMs: this.opts.computeLimitMs ?? DEFAULT_COMPUTE_LIMIT_MS,
      ...(cpuBudgetMs !== undefined ? { cpuBudgetMs } : {}),
      globalTypes: program.globalTypes,
      init: program.initialState(),
      resume,
      ...(firstCallReplies ? { firstCallReplies } : {}),
      retain,
      ...(launch.memoryGroup !== undefined ? { memoryGroup: launch.memoryGroup } : {}),
      ...(enabled.length ? { breakpoints: enabled } : {}),
    };
    const events: InstanceEvents = {
      packet: (p) => inst.fromProgram(p),
      bind: (code, name) => services.bind(code, name),
      debug: (d, dropped) => debug?.write(d, dropped),
      stopped: (status, trapFrames) => inst.stopped(status, trapFrames),
    };
    executor.createInstance(spec, events);
    inst.created(spec, events);
    return inst;
  }

  /**
   * A checkpoint of a running instance: its state as a snapshot module
   * (spec snapshot.md), taken without stopping it for anyone else. The
   * executor suspends it; its services give their state while they keep
   * running (origin clients stay connected); the snapshot is written, and the
   * instance continues in the same executor from that snapshot, exactly as a
   * restore from it would, with the same services. Packets services send
   * meanwhile are held and delivered after. Undefined when the instance
   * cannot be checkpointed now (not running, not retained, or a service
   * without checkpoint support is bound); it then runs on untouched.
   */
  async checkpoint(instance: RunningInstance<ServiceConnection>): Promise<Uint8Array | undefined> {
    if (!(await instance.pauseForCheckpoint())) return undefined;
    let bytes: Uint8Array | undefined;
    let program: Program | undefined;
    try {
      await instance.checkpointServices();
      bytes = await instance.snapshot();
      program = await this.load(bytes);
    } catch {
      // Without its state it cannot continue: it stops as if suspended (see continueAfterCheckpoint).
      program = undefined;
    }
    instance.continueAfterCheckpoint(program);
    return program ? bytes : undefined;
  }

  /**
   * Continues a stopped (suspended or halted) instance under the same id:
   * takes its snapshot, releases it and launches the snapshot. With `entry`,
   * a halted instance runs that function.
   */
  async resume<C extends ServiceConnection>(instance: RunningInstance<ServiceConnection>, launch: LaunchOptions<C>): Promise<RunningInstance<C>> {
    if (instance.status.state !== State.Suspended && instance.status.state !== State.Halted) {
      throw new InstanceStateError(`only a SUSPENDED or HALTED instance can be resumed; it is ${instance.status.state}`);
    }
    const bytes = await instance.snapshot();
    instance.release();
    return this.restore(bytes, { ...launch, instanceId: instance.id });
  }
}

/** Breakpoints as code offsets (ones beyond any code cannot be instructions and are left out). */
function breakpointOffsets(bs: readonly bigint[]): number[] {
  return bs.filter((b) => b <= 0xffffffffn).map(Number);
}
