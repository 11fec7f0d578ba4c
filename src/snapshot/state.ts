import type { Profile } from '../prepare/profile.js';

/** The current value of one defined global, by its wasm type. */
export type GlobalValue =
  | { type: 0x7f; value: number } // i32 (signed)
  | { type: 0x7e; value: bigint } // i64 (signed)
  | { type: 0x7d; value: number } // f32
  | { type: 0x7c; value: number }; // f64

/** Saved state of a service of the instance (one per discovered code, in code order). */
export interface ServiceState {
  name: string;
  buffer: Uint8Array;
}

/**
 * Our `gate.stack` content (docs/snapshot.md): what is needed to continue a
 * program that had started running. The unwound stack is Asyncify's data and
 * is only meaningful to the exact prepared module it came from, which
 * `preparedKey` identifies.
 */
export interface StackState {
  /** PIPELINE_VERSION of the runtime that unwound the stack. */
  pipelineVersion: number;
  profile: Profile;
  /** Optimize level of the preparation (part of what makes the prepared module). */
  optimizeLevel: number;
  /** sha256 (hex) of the prepared module the stack belongs to. */
  preparedKey: string;
  /** Function index of the module's start function, if it has one (start sections are not kept in snapshots). */
  startFunction: number | undefined;
  /** The start function has not finished yet. */
  startPending: boolean;
  /** Export name of the entry function still to run or running, if any. */
  entry: string | undefined;
  /** Asyncify unwind data of the function running (empty if it has not started). */
  unwound: Uint8Array;
}

/** Everything a snapshot module holds besides the program's code (spec snapshot.md). */
export interface SnapshotState {
  /** Trap id (spec abi.md §7.2): 2 SUSPENDED, 4/10/27 suspending causes, 0 EXIT, killing traps… */
  trap: number;
  /** Exit result (0 or 1), meaningful with trap 0. */
  result: number;
  /** TERMINATED or KILLED: must not be resumed. */
  final: boolean;
  /** The instance's monotonic clock in nanoseconds. */
  monotonicNs: bigint;
  breakpoints: bigint[];
  /** The whole linear memory (a multiple of 65536 bytes). */
  memory: Uint8Array;
  /** Declared maximum of the original memory in pages, if any. */
  memoryMaxPages: number | undefined;
  /** Current values of all defined globals, in order. */
  globals: GlobalValue[];
  /** Input stream bytes produced for the program but not read yet (padded packets). */
  input: Uint8Array;
  /** Output not yet consumed: complete packets without padding, then an incomplete tail. */
  output: Uint8Array;
  services: ServiceState[];
  /** Present when the program had started running and not finished (or for debugging a final one). */
  stack: StackState | undefined;
}
