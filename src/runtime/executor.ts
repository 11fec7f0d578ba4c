import type { Profile } from '../prepare/profile.js';
import type { RewindSource } from './rewind-copies.js';
import type { GlobalValue } from '../snapshot/state.js';
import type { DebugLimits } from './debug-limits.js';
import type { InstanceStatus } from './status.js';

/** A defined global of the program: its type and mutability. */
export interface GlobalType {
  type: number;
  mutable: boolean;
}

/**
 * Memory contents and global values an instance starts with, from the
 * program module or a snapshot (the prepared module holds neither).
 */
export interface InitialState {
  /** Active data segments, written into the new memory in order. */
  data: Array<{ offset: number; bytes: Uint8Array }>;
  /** Values of the mutable globals, by global index. */
  globals: Array<{ index: number; value: GlobalValue }>;
}

/** Where a restored instance continues (from a snapshot). */
export interface ResumeState {
  /** Raw frames of calls[0] (runtime/unwinder.ts encodeRawStack); empty if it has not started. */
  stack: Uint8Array;
  /** Calls still to make: `__gate_start` first if pending, then the entry function. */
  calls: string[];
  monotonicNs: bigint;
  /** Unread input stream bytes, delivered before anything else. */
  input: Uint8Array;
  /** The start of a packet the program had partly written. */
  outputTail: Uint8Array;
  /** Names of the services discovered before, in code order. */
  services: string[];
}

/**
 * Replies to the program's first CALL to a service that the executor queues
 * to the program itself, at once, instead of the trusted side sending them
 * after the CALL has reached it: a call's origin accept, whose client is
 * known to be connecting, answered without a round trip. The trusted side's
 * service still gets the CALL, and sends these replies no more. The executor
 * sets their code fields to the service's code.
 */
export interface FirstCallReplies {
  service: string;
  /** Exact size each (no padding), code field to be set. */
  packets: Uint8Array[];
}

/** What an executor hands out to make a snapshot of a stopped instance. */
export interface ExecutorSnapshot {
  memory: Uint8Array;
  globals: GlobalValue[];
  /** Unwind data, if the instance stopped with an unwound stack. */
  stack: Uint8Array | undefined;
  calls: string[];
  monotonicNs: bigint;
  input: Uint8Array;
  outputTail: Uint8Array;
}

/** Everything an executor needs to start an instance of a loaded module. */
export interface InstanceSpec {
  id: string;
  moduleKey: string;
  profile: Profile;
  entry: string | undefined;
  hasStart: boolean;
  memoryPages: { initial: number; maximum: number };
  timeResolutionNs: number;
  debug: boolean;
  /** Debug output past these is dropped in the executor (undefined: no limit). */
  debugLimits?: DebugLimits;
  /** Names of the services this instance may discover. */
  services: string[];
  /**
   * io-suspend only: longest stretch of computation without a blocking call,
   * in milliseconds. Such a profile cannot preempt, so this is what stops
   * runaway code from holding its executor forever.
   */
  computeLimitMs: number;
  /**
   * Running time the instance may use in this run, in milliseconds
   * (undefined: unlimited). Exceeding it suspends the instance where it can
   * be unwound, else kills it like the compute limit.
   */
  cpuBudgetMs?: number;
  /** Types of the program's defined globals, in order (for snapshots). */
  globalTypes: GlobalType[];
  init: InitialState;
  /** Present when the instance continues from a snapshot. */
  resume?: ResumeState;
  /** Replies the executor gives the program's first CALL to a service (not with `resume`). */
  firstCallReplies?: FirstCallReplies;
  /** Debugger breakpoints that stop the instance (code offsets; the module was prepared with them). */
  breakpoints?: number[];
  /** Keep the stopped instance until `release`, so that it can be snapshotted. */
  retain: boolean;
  /**
   * Instances of one owner (a principal) name the same group here: the
   * executor may give one a memory object another of the group used before,
   * zeroed and re-initialised. Undefined: always a fresh memory.
   */
  memoryGroup?: string;
}

/** Events of one instance, delivered to the trusted side. */
export interface InstanceEvents {
  /** A validated packet for an available service (exact size, no padding). */
  packet(packet: Uint8Array): void;
  /** Discovery allocated a code for a service name, in code order (available or not). */
  bind(code: number, name: string): void;
  /**
   * Debug output that passed the executor's limits (a copy), and how many
   * bytes were dropped there while it was gathered (`data` may be empty).
   */
  debug(data: Uint8Array, dropped: number): void;
  /**
   * The instance stopped (final for this run). `trapFrames`: when it
   * trapped, where (runtime/trap-frames.ts: function of the original
   * module and offset in its prepared body, innermost first, as the engine
   * reported it; from the untrusted side, a hint for people, never used to
   * decide anything).
   */
  stopped(status: InstanceStatus, trapFrames?: readonly number[]): void;
}

/**
 * Where instances run. Untrusted code runs only behind this interface: the
 * in-process host serves tests and the browser, the child-process host keeps
 * programs out of the server's and CLI's process.
 */
export interface Executor {
  /** Compiles a prepared module; `source` makes its rewind copies (runtime/rewind-copies.ts), needed when it was prepared with lazy rewind. */
  loadModule(key: string, bytes: Uint8Array, source?: RewindSource): Promise<void>;
  hasModule(key: string): boolean;
  createInstance(spec: InstanceSpec, events: InstanceEvents): void;
  /** A packet from a service to the program (exact size; the executor pads it). */
  deliver(id: string, packet: Uint8Array): void;
  /** The trusted side has consumed `bytes` of the instance's packets (flow control). */
  ack(id: string, bytes: number): void;
  suspend(id: string): void;
  /** State of a stopped, retained instance (see InstanceSpec.retain). */
  snapshot(id: string): Promise<ExecutorSnapshot>;
  /** Forgets a stopped, retained instance. */
  release(id: string): void;
  /** Kills the instance; with a reason, as a trap found by the trusted side (ABI violation, service failure). */
  kill(id: string, reason?: KillReason): void;
  close(): Promise<void>;
}

export interface KillReason {
  /** TrapId.AbiViolation or TrapId.InternalError. */
  trap: number;
  message: string;
}
