/**
 * Drivers for tests that force unwinds and rewinds at checks (the spec suite
 * and the differential fuzz test): what a runtime does, reduced to the
 * protocol of runtime/unwinder.ts.
 */
import { decodeRawStack, encodeRawStack, UnwindState, type Unwinder } from '../../src/runtime/unwinder.js';

/**
 * Calls an export of an instrumented instance to completion, unwinding and
 * rewinding whenever `shouldUnwind()` says so at a preemption check (tests
 * and tools: "force an unwind and a rewind at every check"). Returns what
 * the export finally returns; traps propagate.
 */
export function callWithUnwinds(
  unwinder: Unwinder,
  fn: (...args: unknown[]) => unknown,
  args: unknown[],
  hooks: { unwinds: number },
): unknown {
  for (;;) {
    const ret = fn(...args);
    if (unwinder.state !== UnwindState.Unwinding) return ret;
    const stack = unwinder.finishUnwind();
    hooks.unwinds++;
    // Through bytes, as between processes: the encoding is part of what is tested.
    unwinder.startRewind(decodeRawStack(encodeRawStack(stack)));
  }
}

/**
 * A `yield` for forced unwinds: when `shouldUnwind()` is true it starts an
 * unwind (the next call of the same check, after the rewind, returns at
 * once). Rewinds end here too. `refill` is the fuel given back (1: every
 * check calls yield).
 */
export function forcedYield(unwinder: Unwinder, shouldUnwind: () => boolean, active: () => boolean, refill = 1): () => void {
  return () => {
    if (unwinder.rewinding) {
      unwinder.finishRewind();
      unwinder.fuel = refill;
      return;
    }
    unwinder.fuel = refill;
    if (active() && shouldUnwind()) unwinder.startUnwind();
  };
}
