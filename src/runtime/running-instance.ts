import { HEADER_SIZE, MAX_PACKET_SIZE } from '../abi/packet.js';
import { Trap, TrapId } from '../abi/trap.js';
import type { PreparedModule } from '../prepare/pipeline.js';
import { InternalExport } from '../prepare/internal.js';
import { framesFromRaw } from './frames.js';
import { describeTrapFrame, trapBacktrace, type TrapFrame } from './backtrace.js';
import { decodeRawStack, encodeRawStack } from './unwinder.js';
import { rawFromFrames } from './frames.js';
import { writeSnapshotParts } from '../snapshot/format.js';
import type { ServiceState, SnapshotState } from '../snapshot/state.js';
import type { DebugLog } from './debug-log.js';
import { InstanceStateError } from './errors.js';
import type { Executor, InstanceEvents, InstanceSpec, KillReason } from './executor.js';
import type { Program } from './program.js';
import type { ServiceConnection } from './runtime.js';
import { isFinal, State, statusForTrap, trapOfStatus, type InstanceStatus } from './status.js';

/** A launched instance, seen from the trusted side. */
export class RunningInstance<C extends ServiceConnection = ServiceConnection> {
  private current: InstanceStatus = { state: State.Running };
  private servicesRef: C | undefined;
  private readonly done: Promise<InstanceStatus>;
  private resolveDone!: (s: InstanceStatus) => void;
  /** Each discovered service's state, saved when the instance suspended. */
  private serviceStates: ServiceState[] = [];
  private released = false;
  /**
   * Packets for the program held back while the executor has no instance to
   * take them: restored services speak first (a restored origin stream closes
   * at once), before the executor has created the instance.
   */
  private held: Uint8Array[] | undefined = [];
  /** How the executor was asked to run it, for continuing after a checkpoint. */
  private created_: { spec: InstanceSpec; events: InstanceEvents } | undefined;
  /** Set while a checkpoint waits for the executor to pause the instance. */
  private pausing: ((paused: boolean) => void) | undefined;
  /** Paused by a checkpoint: stopped in the executor, RUNNING for everyone else. */
  private paused = false;
  /** What was asked of the instance while a checkpoint had it paused, done when it continues. */
  private afterCheckpoint: 'suspend' | { kill: KillReason | undefined } | undefined;
  /** Breakpoints (debugger offsets in the code section) written into this instance's snapshots. */
  breakpoints: readonly bigint[];

  constructor(
    readonly id: string,
    private readonly executor: Executor,
    private readonly debug: DebugLog | undefined,
    private readonly program: Program,
    private readonly prepared: PreparedModule | undefined,
    private readonly retained: boolean,
  ) {
    this.done = new Promise((res) => (this.resolveDone = res));
    this.breakpoints = program.snapshot?.breakpoints ?? [];
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
    const status: InstanceStatus = this.paused ? { state: State.Suspended } : this.current;
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
      breakpoints: [...this.breakpoints],
      memory: s.memory,
      memoryMaxPages: this.program.memoryLimits?.max,
      globals: s.globals,
      input: s.input,
      output: s.outputTail,
      services: this.serviceStates,
      stack: resumable
        ? {
            profile: this.prepared.profile,
            startFunction: this.program.module.start,
            startPending,
            entry: s.calls.find((c) => c !== InternalExport.start),
            frames: s.stack ? framesFromRaw(decodeRawStack(s.stack), this.program.unwindLayouts(this.prepared.profile, this.prepared.breakpoints)) : [],
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
    if (this.pausing || this.paused) this.afterCheckpoint ??= 'suspend';
    else this.executor.suspend(this.id);
  }

  kill(): void {
    if (isFinal(this.current.state)) return;
    if (this.pausing || this.paused) this.afterCheckpoint = { kill: undefined };
    this.executor.kill(this.id);
  }

  /**
   * @internal First step of a checkpoint (Runtime.checkpoint): the executor
   * suspends the instance while its services keep running. Resolves true
   * when it is paused, false when it cannot be checkpointed now or stopped
   * for another reason meanwhile (then it stops as usual).
   */
  pauseForCheckpoint(): Promise<boolean> {
    // A run with a CPU budget is not checkpointed: the executor does not say
    // how much of it is left, so continuing would start a fresh budget (and
    // a budget's suspension would look like the checkpoint's pause).
    const ok =
      this.created_?.spec.cpuBudgetMs === undefined &&
      this.current.state === State.Running &&
      this.retained &&
      !this.released &&
      this.prepared &&
      this.created_ &&
      !this.held &&
      !this.pausing &&
      !this.paused &&
      this.servicesRef?.checkpoint &&
      this.servicesRef.canCheckpoint?.();
    if (!ok) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.pausing = resolve;
      this.executor.suspend(this.id);
    });
  }

  /**
   * @internal The services' state at the checkpoint; from here on packets
   * for the program are held for the continued instance (those sent before
   * are in the executor's input, which is part of the snapshot).
   */
  async checkpointServices(): Promise<void> {
    const states = await this.servicesRef!.checkpoint!();
    this.held = [];
    this.serviceStates = states;
  }

  /**
   * @internal Continues a paused instance in its executor from `program`,
   * the snapshot of the checkpoint (the state it was paused in), with the
   * same services; without a program (the checkpoint failed) it stops as
   * SUSPENDED like after a suspend.
   */
  continueAfterCheckpoint(program: Program | undefined): void {
    if (!this.paused) return; // It stopped meanwhile (its executor died).
    const created = this.created_!;
    const snap = program?.snapshot;
    this.paused = false;
    if (!program || !snap?.stack) {
      this.held = undefined;
      this.stopped({ state: State.Suspended });
      return;
    }
    const stack = encodeRawStack(rawFromFrames(snap.stack.frames, this.program.unwindLayouts(created.spec.profile)));
    const calls: string[] = [];
    if (snap.stack.startPending) calls.push(InternalExport.start);
    if (snap.stack.entry !== undefined) calls.push(snap.stack.entry);
    const spec: InstanceSpec = {
      ...created.spec,
      memoryPages: { initial: program.memoryLimits?.min ?? 0, maximum: created.spec.memoryPages.maximum },
      init: program.initialState(),
      // Its first call (if any) was answered in the run before the checkpoint.
      firstCallReplies: undefined,
      resume: { stack, calls, monotonicNs: snap.monotonicNs, input: snap.input, outputTail: snap.output, services: snap.services.map((s) => s.name) },
    };
    this.executor.release(this.id);
    try {
      this.executor.createInstance(spec, created.events);
    } catch (e) {
      this.held = undefined;
      this.stopped({ state: State.Killed, cause: 'INTERNAL', error: `could not continue after a checkpoint: ${e instanceof Error ? e.message : String(e)}` });
      return;
    }
    this.created(spec, created.events);
    const after = this.afterCheckpoint;
    this.afterCheckpoint = undefined;
    if (after === 'suspend') this.executor.suspend(this.id);
    else if (after) this.executor.kill(this.id, after.kill);
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
    if (this.held) this.held.push(packet);
    else this.executor.deliver(this.id, packet);
  }

  /** @internal The executor has been asked to create the instance: held packets go to it, in order. */
  created(spec: InstanceSpec, events: InstanceEvents): void {
    this.created_ = { spec, events };
    const held = this.held;
    this.held = undefined;
    for (const packet of held ?? []) this.executor.deliver(this.id, packet);
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
    // Paused by a checkpoint: killed with this reason once it continues.
    if (this.pausing || this.paused) this.afterCheckpoint = { kill: { trap, message } };
    this.executor.kill(this.id, { trap, message });
  }

  /**
   * Where the instance trapped, if it did and the engine said: the frames
   * of the program, innermost first (function, name, offset, source line).
   */
  get trapBacktrace(): TrapFrame[] | undefined {
    return this.backtrace;
  }

  /** The innermost frame of trapBacktrace. */
  get trapLocation(): TrapFrame | undefined {
    return this.backtrace?.[0];
  }

  private backtrace: TrapFrame[] | undefined;

  /** @internal */
  stopped(status: InstanceStatus, trapFrames?: readonly number[]): void {
    const pausing = this.pausing;
    if (pausing) {
      this.pausing = undefined;
      if (status.state === State.Suspended && status.cause === undefined) {
        if (this.afterCheckpoint === undefined || this.afterCheckpoint === 'suspend') {
          this.paused = true;
          pausing(true);
          return;
        }
        // Killed while the checkpoint paused it: it ends as the kill would have ended it.
        const reason = this.afterCheckpoint.kill;
        status = reason ? statusForTrap(reason.trap, reason.message) : { state: State.Killed };
      }
      pausing(false);
    }
    this.paused = false;
    this.backtrace = undefined;
    if (trapFrames && this.prepared && status.state === State.Killed) {
      let frames: TrapFrame[] = [];
      try {
        frames = trapBacktrace(this.program, this.prepared.profile, this.prepared.breakpoints, trapFrames);
      } catch {
        // (a hint for people from the untrusted side: without it, the status says only the cause)
      }
      if (frames.length) {
        this.backtrace = frames;
        // Where, for everyone who sees the status (the cause says what).
        if (status.error === undefined) status = { ...status, error: `trapped in ${describeTrapFrame(frames[0]!)}` };
      }
    }
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
