import type { Profile } from '../prepare/profile.js';

/** The current value of one defined global, by its wasm type; floats as their bit patterns (NaN payloads, signalling NaNs and -0 kept exactly). */
export type GlobalValue =
  | { type: 0x7f; value: number } // i32 (signed)
  | { type: 0x7e; value: bigint } // i64 (signed)
  | { type: 0x7d; bits: number } // f32 bits (unsigned)
  | { type: 0x7c; bits: bigint }; // f64 bits (unsigned)

/** Saved state of a service of the instance (one per discovered code, in code order). */
export interface ServiceState {
  name: string;
  buffer: Uint8Array;
}

/** A value of a frame, by its wasm type: 32-bit types as unsigned numbers, 64-bit ones as unsigned bigints (floats as their bit patterns). */
export type StackValue =
  | { type: 0x7f | 0x7d; bits: number }
  | { type: 0x7e | 0x7c; bits: bigint };

/**
 * One frame of a suspended call stack, in terms of the original module:
 * where the function stopped (a call, or a check the runtime adds at the
 * function's entry, at a loop's top or before a bulk memory operation, each
 * named by the offset of its instruction), its locals and its operand stack.
 */
export interface StackFrame {
  /** Function index (imports count). */
  func: number;
  /** SiteKind (prepare/instrument.ts): 0 call, 1 entry check, 2 loop check, 3 bulk memory check. */
  kind: number;
  /** Byte offset of the instruction, relative to the start of the code section's contents. */
  offset: number;
  /** Parameters and declared locals, in order. */
  locals: StackValue[];
  /** The operand stack at that instruction, bottom first (a call's arguments included). */
  stack: StackValue[];
}

/**
 * Our `gate.stack` content (docs/snapshot.md): what is needed to continue a
 * program that had started running. Frames are described in terms of the
 * original module, so a stack does not depend on how the runtime instruments
 * the code; the profile is kept because the checks where a frame can stop
 * differ between profiles.
 */
export interface StackState {
  profile: Profile;
  /** Function index of the module's start function, if it has one (start sections are not kept in snapshots). */
  startFunction: number | undefined;
  /** The start function has not finished yet. */
  startPending: boolean;
  /** Export name of the entry function still to run or running, if any. */
  entry: string | undefined;
  /** Frames of the function running (start or entry), outermost first; empty if it has not started. */
  frames: StackFrame[];
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
