import { Trap, TrapId } from '../abi/trap.js';

/** Thrown through the program's frames by proc_exit. */
export class ExitSignal extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

/** Thrown through the program's frames when the host kills the instance. */
export class KillSignal extends Error {
  /** Set when the trusted side killed the instance for a reason (ABI violation, service failure). */
  constructor(readonly reason?: { trap: number; message: string }) {
    super('killed');
  }
}

export interface TrapOutcome {
  trap: number;
  message?: string;
}

/**
 * Maps what escaped from a call into the program to a trap id. V8 reports
 * wasm traps as WebAssembly.RuntimeError with fixed messages, and stack
 * exhaustion as a RangeError.
 */
export function classifyError(e: unknown): TrapOutcome {
  if (e instanceof Trap) return { trap: e.trap, message: e.trap === TrapId.AbiViolation || e.trap === TrapId.InternalError ? e.message : undefined };
  if (e instanceof KillSignal) return { trap: TrapId.Killed };
  if (e instanceof WebAssembly.RuntimeError) {
    const msg = e.message;
    if (/unreachable/.test(msg)) return { trap: TrapId.Unreachable };
    if (/memory access out of bounds|out of bounds memory access|data segment/.test(msg)) return { trap: TrapId.MemoryAccessOutOfBounds };
    if (/divide by zero|remainder by zero|division by zero/.test(msg)) return { trap: TrapId.IntegerDivideByZero };
    if (/integer overflow|unrepresentable|invalid conversion/.test(msg)) return { trap: TrapId.IntegerOverflow };
    if (/table index is out of bounds|undefined element|index out of bounds/.test(msg)) return { trap: TrapId.IndirectCallIndexOutOfBounds };
    if (/signature mismatch|null function/.test(msg)) return { trap: TrapId.IndirectCallSignatureMismatch };
    return { trap: TrapId.InternalError, message: `unrecognised trap: ${msg}` };
  }
  if (e instanceof RangeError && /call stack/i.test(e.message)) return { trap: TrapId.CallStackExhausted };
  const message = e instanceof Error ? e.message : String(e);
  return { trap: TrapId.InternalError, message: `internal error: ${message}` };
}
