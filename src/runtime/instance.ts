import type { AbiContext, WaitCondition } from '../abi/context.js';
import { createHostImports } from '../abi/host.js';
import { granularityFor } from '../abi/time.js';
import { Trap, TrapId } from '../abi/trap.js';
import type { Profile } from '../prepare/profile.js';
import { INTERNAL_IMPORT_MODULE, InternalExport, InternalImport } from '../prepare/internal.js';
import { MEMORY_IMPORT } from '../prepare/rewrite.js';
import type { GlobalValue } from '../snapshot/state.js';
import type { PacketChannel } from './channel.js';
import type { ExecutorSnapshot, GlobalType, InitialState, KillReason, ResumeState } from './executor.js';
import { InternalRuntimeError } from './errors.js';
import { State, statusForTrap, type InstanceStatus } from './status.js';
import { ExitSignal, KillSignal, classifyError } from './traps.js';
import { trapFramesOf } from './trap-frames.js';
import { InstanceRewindCopies, type RewindCopyCompiler } from './rewind-copies.js';
import { decodeRawStack, encodeRawStack, RewindError, Unwinder, UnwindState, type RawStack } from './unwinder.js';

/** Checks run between two calls of the yield import (fuel is refilled there). */
const FUEL = 20000;

/** Names of the functions each compiled module imports from `gate` and `wasi` (computed once per module). */
const importedByModule = new WeakMap<WebAssembly.Module, { gate: string[]; wasi: string[] }>();

function importedFunctions(module: WebAssembly.Module): { gate: string[]; wasi: string[] } {
  let names = importedByModule.get(module);
  if (names === undefined) {
    names = { gate: [], wasi: [] };
    for (const i of WebAssembly.Module.imports(module)) {
      if (i.kind === 'function' && (i.module === 'gate' || i.module === 'wasi')) names[i.module].push(i.name);
    }
    importedByModule.set(module, names);
  }
  return names;
}

export interface InstanceOptions {
  id: string;
  profile: Profile;
  /** Compiled prepared module. */
  module: WebAssembly.Module;
  /** Its rewind copies (prepared with lazy rewind). */
  rewindCopies?: RewindCopyCompiler;
  /** Initial and maximum memory in pages (maximum already capped by policy). */
  memoryPages: { initial: number; maximum: number };
  hasStart: boolean;
  entry: string | undefined;
  /** Time resolution in nanoseconds (spec abi.md §5.1). */
  timeResolutionNs: number;
  channel: PacketChannel;
  /** Gets a view of the program's memory: it must copy what it keeps. */
  debug: ((data: Uint8Array) => void) | undefined;
  /** A memory to use instead of a new one: of memoryPages' sizes, all zeros (ExecutorCore reuses them). */
  memory?: WebAssembly.Memory;
  /** Random bytes for the 16-byte pool. */
  randomPool: Uint8Array;
  /** io-suspend: longest computation without a blocking call (see InstanceSpec). */
  computeLimitMs?: number;
  /** Running time this instance may use in this run (see InstanceSpec.cpuBudgetMs). */
  cpuBudgetMs?: number;
  globalTypes: GlobalType[];
  init: InitialState;
  resume?: ResumeState;
  /** Debugger breakpoints that stop the instance (code offsets). */
  breakpoints?: ReadonlySet<number>;
}

/** Why the instance's stack was unwound. */
type UnwindReason = 'wait' | 'yield' | 'deficiency' | 'breakpoint';

/** What one slice of execution ended with. */
export type SliceOutcome =
  | { kind: 'ready' } // preempted; runnable at once
  | { kind: 'blocked'; wait: BlockedWait } // waits for I/O or time
  | { kind: 'stopped'; status: InstanceStatus };

export interface BlockedWait {
  input: boolean;
  output: boolean;
  /** performance.now() milliseconds; Infinity for none. */
  deadline: number;
}


/**
 * One program instance inside an executor: its wasm instance, the state of an
 * unwound stack, and the AbiContext its host functions run against.
 *
 * Blocking works with our transform (prepare/instrument.ts): a host
 * function that must wait starts an unwind; the program's frames hand
 * themselves to the Unwinder (outside linear memory) and return. To continue,
 * the host starts a rewind and calls the same export again; the frames
 * restore themselves and the same host function is called again.
 */
export class Instance implements AbiContext {
  readonly id: string;
  readonly granularityNs: bigint;
  private readonly opts: InstanceOptions;
  private readonly memoryObject: WebAssembly.Memory;
  private readonly wasm: WebAssembly.Instance;
  private readonly unwinder = new Unwinder();
  private readonly calls: string[] = [];

  /** The unwound frames of calls[0], outermost first. */
  private stack: RawStack | undefined;
  private unwindReason: UnwindReason | undefined;
  private pendingWait: BlockedWait | undefined;
  /** Set while a host function is being repeated after a rewind. */
  private reentered = false;
  private startedFlag = true;
  private sliceDeadline = 0;
  private computeDeadline = Infinity;
  /** Running time left in this run's CPU budget (ms). */
  private budgetLeftMs: number;
  /** performance.now() at which the budget runs out during the current slice. */
  private budgetDeadline = Infinity;
  private suspendRequested = false;
  private killRequested = false;
  private killReason: KillReason | undefined;
  private running = false;
  private finalStatus: InstanceStatus | undefined;
  /** The monotonic clock when the instance stopped (it does not advance while stopped). */
  private stoppedMonotonicNs: bigint | undefined;
  /** What the last entry function returned (ignored by the ABI; benchmarks check it). */
  lastReturn: unknown;
  private random: Uint8Array;
  private readonly monotonicBaseMs: number;
  private readonly monotonicStartNs: bigint;

  constructor(opts: InstanceOptions) {
    this.opts = opts;
    this.id = opts.id;
    this.granularityNs = granularityFor(BigInt(Math.round(opts.timeResolutionNs)));
    this.random = opts.randomPool;
    this.budgetLeftMs = opts.cpuBudgetMs ?? Infinity;
    this.monotonicBaseMs = performance.now();
    this.monotonicStartNs = opts.resume?.monotonicNs ?? 1_000_000_000n;
    this.memoryObject = opts.memory ?? new WebAssembly.Memory({ initial: opts.memoryPages.initial, maximum: opts.memoryPages.maximum });

    const host = createHostImports(this);
    const imported = importedFunctions(opts.module);
    const imports = {
      gate: { ...this.rewindable(host.gate, imported.gate), [MEMORY_IMPORT.name]: this.memoryObject },
      wasi: this.rewindable(host.wasi, imported.wasi),
      [INTERNAL_IMPORT_MODULE]: { ...this.unwinder.imports(() => this.yieldImport()), [InternalImport.breakpoint]: (offset: number) => this.breakpointImport(offset) },
    };
    this.wasm = new WebAssembly.Instance(opts.module, imports as WebAssembly.Imports);
    this.unwinder.bind(this.wasm.exports, opts.rewindCopies && new InstanceRewindCopies(opts.rewindCopies, imports as WebAssembly.Imports, this.wasm.exports));
    this.unwinder.fuel = FUEL;
    this.applyInitialState(opts.init);
    if (opts.resume) {
      this.calls.push(...opts.resume.calls);
      const frames = decodeRawStack(opts.resume.stack);
      if (frames.length > 0) this.stack = frames;
    } else {
      if (opts.hasStart) this.calls.push(InternalExport.start);
      if (opts.entry !== undefined) this.calls.push(opts.entry);
    }
  }

  /**
   * Wraps host functions so that a call made while rewinding first finishes
   * the rewind (the stack is back in place), and
   * so that a repeated call's `reentered` state ends with it.
   */
  private rewindable(fns: Record<string, Function>, names: readonly string[]): Record<string, Function> {
    const out: Record<string, Function> = {};
    // Only what the module imports (a program uses a few of the ABI's dozens of functions).
    for (const name of names) {
      const fn = fns[name];
      // Left out: instantiation then says which import is missing.
      if (fn === undefined) continue;
      const self = this;
      out[name] = function (this: unknown) {
        if (self.rewinding) self.finishRewind();
        try {
          // apply with `arguments` allocates no array (a rest parameter would, on every host call)
          return fn.apply(undefined, arguments as unknown as unknown[]);
        } finally {
          self.reentered = false;
        }
      };
    }
    return out;
  }

  private applyInitialState(init: InitialState): void {
    const mem = new Uint8Array(this.memoryObject.buffer);
    for (const d of init.data) {
      if (d.offset + d.bytes.length > mem.length) throw new InternalRuntimeError(`data segment at ${d.offset} does not fit in memory`);
      mem.set(d.bytes, d.offset);
    }
    for (const { index, value } of init.globals) {
      if (value.type === 0x7d || value.type === 0x7c) {
        // Through the setter of its bits (a JS number would quiet a signalling NaN).
        const set = this.wasm.exports[`${InternalExport.globalSetPrefix}${index}`] as ((bits: number | bigint) => void) | undefined;
        if (!set) throw new InternalRuntimeError(`global ${index} has no setter in the prepared module`);
        set(value.type === 0x7d ? value.bits | 0 : BigInt.asIntN(64, value.bits));
        continue;
      }
      const global = this.wasm.exports[`${InternalExport.globalPrefix}${index}`] as WebAssembly.Global | undefined;
      if (!global) throw new InternalRuntimeError(`global ${index} is not exported by the prepared module`);
      global.value = value.value;
    }
  }

  /** Its memory object (ExecutorCore reuses it once the instance is gone). */
  get memoryObjectInUse(): WebAssembly.Memory {
    return this.memoryObject;
  }

  /** The state a snapshot needs; only for a stopped instance. */
  snapshotState(): ExecutorSnapshot {
    const globals: GlobalValue[] = this.opts.globalTypes.map((t, i) => {
      if (t.type === 0x7d || t.type === 0x7c) {
        const bits = (this.wasm.exports[`${InternalExport.globalGetPrefix}${i}`] as () => number | bigint)();
        return t.type === 0x7d ? { type: 0x7d, bits: Number(bits) >>> 0 } : { type: 0x7c, bits: BigInt.asUintN(64, BigInt(bits)) };
      }
      const v = (this.wasm.exports[`${InternalExport.globalPrefix}${i}`] as WebAssembly.Global).value as number | bigint;
      return { type: t.type, value: v } as GlobalValue;
    });
    return {
      // A view, not a copy: a stopped instance never runs again (it is
      // continued from its snapshot), so its memory no longer changes.
      memory: new Uint8Array(this.memoryObject.buffer),
      globals,
      stack: this.stack ? encodeRawStack(this.stack) : undefined,
      calls: [...this.calls],
      monotonicNs: this.stoppedMonotonicNs ?? this.monotonicNs(),
      input: this.opts.channel.drainInput(),
      outputTail: this.opts.channel.outputTail(),
    };
  }

  private get rewinding(): boolean {
    return this.unwinder.rewinding;
  }

  /** Asks the instance to stop at its next check point (suspend-anywhere) or blocking call. */
  requestSuspend(): void {
    this.suspendRequested = true;
  }

  /** Asks the instance to stop KILLED (or with the reason's trap) at its next check point or host call. */
  requestKill(reason?: KillReason): void {
    this.killRequested = true;
    this.killReason ??= reason;
  }

  /** Whether the instance is inside runSlice (a host function is calling out). */
  get isRunning(): boolean {
    return this.running;
  }

  /** Whether a blocked instance's wait is over. */
  waitSatisfied(w: BlockedWait, now: number): boolean {
    return (
      (w.input && this.opts.channel.inputBuffered() > 0) ||
      (w.output && this.opts.channel.outputSpace() > 0) ||
      now >= w.deadline ||
      this.suspendRequested ||
      this.killRequested
    );
  }

  /** Ends the instance from outside while it is not running (blocked or ready). */
  stopNow(trap: number, message?: string): InstanceStatus {
    return this.finish(statusForTrap(trap, message));
  }

  /** Runs the instance until it blocks, is preempted, or stops. */
  runSlice(sliceMs: number): SliceOutcome {
    if (this.finalStatus) return { kind: 'stopped', status: this.finalStatus };
    if (this.killRequested) return { kind: 'stopped', status: this.finish(this.killReason ? statusForTrap(this.killReason.trap, this.killReason.message) : { state: State.Killed }) };
    // Between slices the instance is always at a point it can continue
    // from, so a used-up budget suspends it under both profiles.
    if (this.suspendRequested || this.budgetLeftMs <= 0) return { kind: 'stopped', status: this.finish({ state: State.Suspended }) };
    const now = performance.now();
    this.budgetDeadline = now + this.budgetLeftMs;
    this.sliceDeadline = Math.min(now + sliceMs, this.budgetDeadline);
    this.computeDeadline = now + (this.opts.computeLimitMs ?? Infinity);
    this.running = true;
    try {
      while (this.calls.length) {
        const name = this.calls[0]!;
        const fn = this.wasm.exports[name] as (() => unknown) | undefined;
        if (typeof fn !== 'function') throw new Trap(TrapId.NoFunction);
        if (this.stack) this.unwinder.startRewind(this.stack);
        const ret = fn();
        if (this.unwinder.unwinding) {
          this.finishUnwind();
          return this.afterUnwind();
        }
        this.calls.shift();
        this.lastReturn = ret;
      }
      return { kind: 'stopped', status: this.finish({ state: State.Halted, result: 0 }) };
    } catch (e) {
      return { kind: 'stopped', status: this.afterThrow(e) };
    } finally {
      this.running = false;
      // Time in the slice, host calls included: what the instance took from its executor.
      this.budgetLeftMs -= performance.now() - now;
    }
  }

  private afterUnwind(): SliceOutcome {
    const reason = this.unwindReason;
    this.unwindReason = undefined;
    if (reason === 'deficiency') return { kind: 'stopped', status: this.finish({ state: State.Suspended, cause: 'ABI_DEFICIENCY' }) };
    if (reason === 'breakpoint' && !this.killRequested) return { kind: 'stopped', status: this.finish(statusForTrap(TrapId.Breakpoint)) };
    if (this.killRequested) return { kind: 'stopped', status: this.finish(this.killReason ? statusForTrap(this.killReason.trap, this.killReason.message) : { state: State.Killed }) };
    if (this.suspendRequested || performance.now() >= this.budgetDeadline) return { kind: 'stopped', status: this.finish({ state: State.Suspended }) };
    if (reason === 'wait') {
      const wait = this.pendingWait!;
      this.pendingWait = undefined;
      return { kind: 'blocked', wait };
    }
    return { kind: 'ready' };
  }

  /** Where the instance trapped, if it did (trap-frames.ts). */
  trapFrames: number[] | undefined;

  private afterThrow(e: unknown): InstanceStatus {
    const state = this.unwinder.state;
    if (state !== UnwindState.Normal) {
      // A trap in the middle of unwinding or rewinding: the stack does not
      // match the code (a crafted snapshot), or the native stack ran out
      // while rewinding. The program's memory is intact; its stack is lost.
      this.unwinder.abort();
      this.stack = undefined;
      if (classifyError(e).trap === TrapId.CallStackExhausted) return this.finish(statusForTrap(TrapId.CallStackExhausted));
      const why = e instanceof RewindError ? e.message : e instanceof Error ? e.message : String(e);
      const detail = state === UnwindState.Rewinding ? `the stack could not be rewound: ${why}` : `the stack could not be unwound: ${why}`;
      return this.finish(statusForTrap(TrapId.InternalError, detail));
    }
    if (e instanceof ExitSignal) {
      return this.finish({ state: State.Terminated, result: e.status === 0 ? 0 : 1 });
    }
    if (e instanceof KillSignal) return this.finish(e.reason ? statusForTrap(e.reason.trap, e.reason.message) : { state: State.Killed });
    const { trap, message } = classifyError(e);
    if (e instanceof WebAssembly.RuntimeError) this.trapFrames = trapFramesOf(e, this.opts.module);
    return this.finish(statusForTrap(trap, message));
  }

  private finish(status: InstanceStatus): InstanceStatus {
    if (!this.finalStatus) {
      this.stoppedMonotonicNs = this.monotonicNs();
      // A kill request overrides ordinary outcomes (abi.md §7.1).
      if (this.killRequested && (status.state === State.Suspended || status.state === State.Halted || status.state === State.Terminated)) {
        status = { state: State.Killed };
      }
      this.finalStatus = status;
    }
    return this.finalStatus;
  }

  // --- Unwinding -----------------------------------------------------------

  private startUnwind(reason: UnwindReason): void {
    this.unwindReason = reason;
    this.unwinder.startUnwind();
  }

  private finishUnwind(): void {
    this.stack = this.unwinder.finishUnwind();
  }

  private finishRewind(): void {
    this.unwinder.finishRewind();
    this.unwinder.fuel = FUEL;
    this.stack = undefined;
    this.reentered = true;
  }

  private yieldImport(): void {
    if (this.rewinding) this.finishRewind();
    this.unwinder.fuel = FUEL;
    if (this.reentered) {
      this.reentered = false;
      return;
    }
    if (this.killRequested) throw new KillSignal(this.killReason);
    const now = performance.now();
    if (this.opts.profile !== 'suspend-anywhere') {
      if (now >= this.computeDeadline) {
        throw new Trap(TrapId.InternalError, `computed for over ${this.opts.computeLimitMs} ms without a blocking call, which the io-suspend profile cannot preempt`);
      }
      if (now >= this.budgetDeadline) {
        throw new Trap(TrapId.InternalError, `used up its CPU budget of ${this.opts.cpuBudgetMs} ms while computing, and the io-suspend profile cannot preempt it`);
      }
      return;
    }
    if (this.suspendRequested || now >= this.sliceDeadline) this.startUnwind('yield');
  }

  /**
   * The code reached a breakpoint (prepare/instrument.ts): a configured one
   * stops the instance there (SUSPENDED, cause BREAKPOINT). Reached again
   * at the end of the rewind that continues from it, it lets the
   * instruction run: resuming goes past the breakpoint.
   */
  private breakpointImport(offset: number): void {
    if (this.rewinding) {
      this.finishRewind();
      this.reentered = false;
      return;
    }
    if (this.killRequested) throw new KillSignal(this.killReason);
    if (this.opts.breakpoints?.has(offset)) this.startUnwind('breakpoint');
  }

  // --- AbiContext ----------------------------------------------------------

  memory(): Uint8Array {
    return new Uint8Array(this.memoryObject.buffer);
  }

  debugWrite(data: Uint8Array): void {
    this.opts.debug?.(data);
  }

  inputBuffered(): number {
    return this.opts.channel.inputBuffered();
  }

  readInput(dst: Uint8Array): number {
    return this.opts.channel.readInput(dst);
  }

  outputSpace(): number {
    return this.opts.channel.outputSpace();
  }

  writeOutput(src: Uint8Array): number {
    return this.opts.channel.writeOutput(src);
  }

  takeStartedFlag(): boolean {
    const f = this.startedFlag;
    this.startedFlag = false;
    return f;
  }

  realtimeNs(): bigint {
    return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  }

  monotonicNs(): bigint {
    return this.monotonicStartNs + BigInt(Math.round((performance.now() - this.monotonicBaseMs) * 1e6));
  }

  takeRandom(n: number): Uint8Array {
    const take = Math.min(n, this.random.length);
    const out = this.random.subarray(0, take);
    this.random = this.random.subarray(take);
    return out;
  }

  wait(cond: WaitCondition): boolean {
    if (this.reentered) {
      this.reentered = false;
      return false;
    }
    if (this.killRequested) throw new KillSignal(this.killReason);
    const ch = this.opts.channel;
    if ((cond.input && ch.inputBuffered() > 0) || (cond.output && ch.outputSpace() > 0)) return false;
    if (cond.timeoutNs !== undefined && cond.timeoutNs <= 0n) return false;
    const deadline = cond.timeoutNs === undefined ? Infinity : performance.now() + Number(cond.timeoutNs) / 1e6;
    this.pendingWait = { input: cond.input, output: cond.output, deadline };
    this.startUnwind('wait');
    return true;
  }

  yieldPoint(): boolean {
    if (this.reentered) {
      this.reentered = false;
      return false;
    }
    if (this.killRequested) throw new KillSignal(this.killReason);
    if (this.suspendRequested || performance.now() >= this.sliceDeadline) {
      this.startUnwind('yield');
      return true;
    }
    return false;
  }

  abiDeficiency(): boolean {
    this.startUnwind('deficiency');
    return true;
  }

  exit(status: number): never {
    throw new ExitSignal(status);
  }
}
