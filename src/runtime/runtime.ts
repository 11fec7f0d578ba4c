import { HEADER_SIZE, MAX_PACKET_SIZE } from '../abi/packet.js';
import { Trap, TrapCauseName, TrapId } from '../abi/trap.js';
import { PIPELINE_VERSION, type PreparedModule } from '../prepare/pipeline.js';
import { InternalExport } from '../prepare/rewrite.js';
import { SnapshotError } from '../snapshot/errors.js';
import { writeSnapshotParts } from '../snapshot/format.js';
import type { ServiceState, SnapshotState } from '../snapshot/state.js';
import { DEFAULT_LOCAL_LIMITS, type ModuleLimits } from '../wasm/validate.js';
import type { PreparedCache } from '../prepare/cache.js';
import { DEFAULT_PROFILE, type Profile } from '../prepare/profile.js';
import { ModuleLimitError } from '../wasm/errors.js';
import type { Executor, ResumeState } from './executor.js';
import { Program } from './program.js';
import { InstanceStateError } from './errors.js';
import { isFinal, State, statusForTrap, type InstanceStatus } from './status.js';

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
  /** binaryen optimize level used when preparing (see prepare/pipeline.ts). */
  optimizeLevel?: number;
  /** io-suspend: longest computation without a blocking call (default 10 s); see InstanceSpec. */
  computeLimitMs?: number;
  /** Acceptance limits for modules and snapshots loaded through load()/restore() (default: the local ones). */
  limits?: ModuleLimits;
}

export const DEFAULT_COMPUTE_LIMIT_MS = 10_000;

export interface LaunchOptions<C extends ServiceConnection> {
  /** Requested entry function (spec abi.md §1.3). */
  entry?: string;
  profile?: Profile;
  /** Receives what the program writes to fds 1 and 2; omitted: discarded. */
  debug?: (data: Uint8Array) => void;
  instanceId?: string;
  services: ServiceProvider<C>;
  /** Keep the instance's state in the executor after it stops, for snapshot() and resume. */
  retain?: boolean;
}

/**
 * The runtime's public face: launches programs (and snapshots) in an
 * executor and wires their packets to the trusted side's services.
 */
export class Runtime {
  constructor(private readonly opts: RuntimeOptions) {}

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
    const optimizeLevel = snap?.stack?.optimizeLevel ?? this.opts.optimizeLevel;
    const mem = program.memoryLimits;
    let memoryPages = { initial: 1, maximum: 1 };
    if (mem) {
      const maximum = Math.min(mem.max ?? 65536, this.opts.memoryLimitPages);
      if (mem.min > maximum) throw new ModuleLimitError('initial program memory size exceeds instance memory size limit');
      memoryPages = { initial: mem.min, maximum };
    }
    const id = launch.instanceId ?? globalThis.crypto.randomUUID();
    const executor = this.opts.executor;
    const debug = launch.debug ? new DebugLog(launch.debug) : undefined;

    if (snap?.final) {
      const inst = new RunningInstance<C>(id, executor, debug, program, undefined, false);
      inst.stoppedWithoutRun(statusOfSnapshot(snap.trap, snap.result));
      return inst;
    }

    const prepared = await program.prepare(profile, this.opts.cache, optimizeLevel);
    if (snap?.stack) {
      if (snap.stack.pipelineVersion !== PIPELINE_VERSION) {
        throw new SnapshotError(`snapshot was made by instrumentation pipeline version ${snap.stack.pipelineVersion}; this runtime has version ${PIPELINE_VERSION}`);
      }
      if (snap.stack.preparedKey !== prepared.key) {
        throw new SnapshotError("snapshot's call stack does not belong to this program's prepared code");
      }
    }
    await executor.loadModule(prepared.key, prepared.bytes);

    const retain = launch.retain ?? false;
    const inst = new RunningInstance<C>(id, executor, debug, program, prepared, retain);
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
        stack: snap.stack?.unwound ?? new Uint8Array(0),
        calls,
        monotonicNs: snap.monotonicNs,
        input: snap.input,
        outputTail: snap.output,
        services: snap.services.map((s) => s.name),
      };
    }
    executor.createInstance(
      {
        id,
        moduleKey: prepared.key,
        profile,
        entry,
        hasStart: program.hasStart,
        memoryPages,
        timeResolutionNs: this.opts.timeResolutionNs,
        debug: debug !== undefined,
        services: services.availableNames(),
        computeLimitMs: this.opts.computeLimitMs ?? DEFAULT_COMPUTE_LIMIT_MS,
        globalTypes: program.globalTypes,
        init: program.initialState(),
        resume,
        retain,
      },
      {
        packet: (p) => inst.fromProgram(p),
        bind: (code, name) => services.bind(code, name),
        debug: (d) => debug?.write(d),
        stopped: (status) => inst.stopped(status),
      },
    );
    return inst;
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

/** Status of a launched final snapshot, from its trap and result (spec snapshot.md §7). */
function statusOfSnapshot(trap: number, result: number): InstanceStatus {
  if (trap === TrapId.Exit) return { state: State.Terminated, result: result === 0 ? 0 : 1 };
  return trap === TrapId.Killed ? { state: State.Killed } : statusForTrap(trap);
}

/** Trap id recorded in a snapshot for a status (spec snapshot.md §3). */
function trapOfStatus(status: InstanceStatus): number {
  if (status.state === State.Halted || status.state === State.Terminated) return TrapId.Exit;
  if (status.state === State.Suspended) return status.cause ? Number(Object.entries(TrapCauseName).find(([, n]) => n === status.cause)?.[0] ?? TrapId.Suspended) : TrapId.Suspended;
  if (!status.cause) return TrapId.Killed;
  const id = Object.entries(TrapCauseName).find(([, n]) => n === status.cause)?.[0];
  return id !== undefined ? Number(id) : Number(status.cause) || TrapId.InternalError;
}

/** A launched instance, seen from the trusted side. */
export class RunningInstance<C extends ServiceConnection = ServiceConnection> {
  private current: InstanceStatus = { state: State.Running };
  private servicesRef: C | undefined;
  private readonly done: Promise<InstanceStatus>;
  private resolveDone!: (s: InstanceStatus) => void;

  private serviceStates: ServiceState[] = [];
  private released = false;

  constructor(
    readonly id: string,
    private readonly executor: Executor,
    private readonly debug: DebugLog | undefined,
    private readonly program: Program,
    private readonly prepared: PreparedModule | undefined,
    private readonly retained: boolean,
  ) {
    this.done = new Promise((res) => (this.resolveDone = res));
  }

  /**
   * The instance as a snapshot module (spec snapshot.md): only when it has
   * stopped, and only if it was launched with `retain`.
   */
  async snapshot(): Promise<Uint8Array> {
    const { parts, size } = await this.snapshotParts();
    if (parts.length === 1) return parts[0]!;
    const out = new Uint8Array(size);
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }

  /**
   * The snapshot as pieces to write out in order (to a file, a socket, a
   * hash) without joining them: the memory's bytes are not copied. The pieces
   * stay valid until the instance is released.
   */
  async snapshotParts(): Promise<{ parts: Uint8Array[]; size: number }> {
    const status = this.current;
    if (status.state === State.Running) throw new InstanceStateError('instance must not be running; suspend it first');
    const final = isFinal(status.state);
    if (!this.prepared) {
      // A final snapshot that was never run: its state is the module itself.
      return { parts: [this.program.bytes], size: this.program.bytes.length };
    }
    if (!this.retained || this.released) throw new InstanceStateError('instance state was not retained; launch it with retain to snapshot it');
    const s = await this.executor.snapshot(this.id);
    // V8 has unwound the stack of an instance whose call stack was exhausted:
    // there is nothing to continue from, so its snapshot is final.
    const resumable = status.state === State.Suspended && status.cause !== 'CALL_STACK_EXHAUSTED';
    const startPending = s.calls[0] === InternalExport.start;
    const state: SnapshotState = {
      trap: trapOfStatus(status),
      result: status.result ?? 0,
      final: final || (status.state === State.Suspended && !resumable),
      monotonicNs: s.monotonicNs,
      breakpoints: [],
      memory: s.memory,
      memoryMaxPages: this.program.memoryLimits?.max,
      globals: s.globals,
      input: s.input,
      output: s.outputTail,
      services: this.serviceStates,
      stack: resumable
        ? {
            pipelineVersion: PIPELINE_VERSION,
            profile: this.prepared.profile,
            optimizeLevel: this.prepared.optimizeLevel,
            preparedKey: this.prepared.key,
            startFunction: this.program.module.start,
            startPending,
            entry: s.calls.find((c) => c !== InternalExport.start),
            unwound: s.stack ?? new Uint8Array(0),
          }
        : undefined,
    };
    return writeSnapshotParts(this.program.module, state);
  }

  /** Lets the executor forget a retained instance. */
  release(): void {
    if (this.released || !this.retained) return;
    this.released = true;
    this.executor.release(this.id);
  }

  /** @internal */
  stoppedWithoutRun(status: InstanceStatus): void {
    this.current = status;
    this.resolveDone(status);
  }

  get services(): C {
    return this.servicesRef!;
  }

  get status(): InstanceStatus {
    return this.current;
  }

  /** Resolves with the status the instance stopped with. */
  wait(): Promise<InstanceStatus> {
    return this.done;
  }

  suspend(): void {
    if (this.current.state !== State.Running) throw new InstanceStateError(`instance is ${this.current.state}, not RUNNING`);
    this.executor.suspend(this.id);
  }

  kill(): void {
    if (isFinal(this.current.state)) return;
    this.executor.kill(this.id);
  }

  /** @internal */
  attach(services: C): void {
    this.servicesRef = services;
  }

  /** @internal */
  sendToProgram(packet: Uint8Array): void {
    // Replies still in flight when the instance suspends belong in its snapshot.
    const keep = this.current.state === State.Running || (this.current.state === State.Suspended && this.retained && !this.released);
    if (!keep) return;
    const size = packet.length >= HEADER_SIZE ? new DataView(packet.buffer, packet.byteOffset).getUint32(0, true) : -1;
    if (size !== packet.length || size > MAX_PACKET_SIZE) {
      this.serviceFailed(new Error(`a service sent a malformed packet (size field ${size}, length ${packet.length})`));
      return;
    }
    this.executor.deliver(this.id, packet);
  }

  /** @internal */
  fromProgram(packet: Uint8Array): void {
    let result: void | Promise<void>;
    try {
      result = this.servicesRef!.handle(packet);
    } catch (e) {
      this.serviceFailed(e);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        () => this.executor.ack(this.id, packet.length),
        (e: unknown) => this.serviceFailed(e),
      );
    } else {
      this.executor.ack(this.id, packet.length);
    }
  }

  /** @internal */
  serviceFailed(error: unknown): void {
    if (this.current.state !== State.Running) return;
    const message = error instanceof Error ? error.message : String(error);
    const trap = error instanceof Trap && error.trap === TrapId.AbiViolation ? TrapId.AbiViolation : TrapId.InternalError;
    this.executor.kill(this.id, { trap, message });
  }

  /** @internal */
  stopped(status: InstanceStatus): void {
    this.current = status;
    this.debug?.end();
    Promise.resolve(this.servicesRef?.shutdown(status.state === State.Suspended))
      .catch(() => undefined)
      .then((states) => {
        if (Array.isArray(states)) this.serviceStates = states;
        this.resolveDone(status);
      });
  }
}

/**
 * The debug log of one run: passes bytes on, and at the end adds a newline
 * if the last byte written was not one (spec abi.md §7.5: "ping" → "ping\n").
 */
class DebugLog {
  private last = 0x0a;
  constructor(private readonly sink: (data: Uint8Array) => void) {}

  write(data: Uint8Array): void {
    if (data.length === 0) return;
    this.last = data[data.length - 1]!;
    this.sink(data);
  }

  end(): void {
    if (this.last !== 0x0a) this.write(Uint8Array.of(0x0a));
  }
}
