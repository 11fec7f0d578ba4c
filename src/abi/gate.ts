/**
 * The Gate-specific functions `fd` and `io` (spec abi.md §3.1, §4).
 */
import type { AbiContext } from './context.js';
import { GuestMemory, IOVEC_SIZE, transferIovecs } from './memory.js';
import { maskNs } from './time.js';
import type { HostFunctions } from './wasi.js';


/** The gate host functions of one instance, keyed by canonical name. */
export function createGateFunctions(ctx: AbiContext): HostFunctions {
  const mem = new GuestMemory(ctx);

  const transfer = (iov: number, cnt: number, write: boolean): number => Math.max(0, transferIovecs(mem, ctx, iov, cnt, write));

  /** Whether any iovec has a non-zero length. */
  function anyLength(iov: number, cnt: number): boolean {
    for (let i = 0; i < cnt; i++) if (mem.getU32(iov + i * IOVEC_SIZE + 4) !== 0) return true;
    return false;
  }

  return {
    fd(): number {
      return 4;
    },

    io(
      recvIov: number,
      recvCnt: number,
      nrecvPtr: number,
      sendIov: number,
      sendCnt: number,
      nsentPtr: number,
      timeout: bigint,
      flagsPtr: number,
    ): void {
      recvIov >>>= 0;
      recvCnt |= 0; // signed counts: negative means none
      nrecvPtr >>>= 0;
      sendIov >>>= 0;
      sendCnt |= 0;
      nsentPtr >>>= 0;
      flagsPtr >>>= 0;
      mem.sync();

      const sending = anyLength(sendIov, sendCnt);
      const short = timeout >= 0n && timeout < 1000n;

      // Short-timeout fast path: with something to transfer, a sub-microsecond
      // wait is not worth it; transfer whatever is possible now.
      if (!(short && (sending || anyLength(recvIov, recvCnt)))) {
        let unwinding: boolean;
        if (short) {
          // Nothing to do and (almost) no time: just a cooperative yield.
          unwinding = ctx.yieldPoint();
        } else {
          const t = timeout < 0n ? undefined : maskNs(timeout, ctx.granularityNs);
          unwinding = t === 0n ? ctx.yieldPoint() : ctx.wait({ input: true, output: sending, timeoutNs: t });
        }
        if (unwinding) return;
        mem.sync();
      }

      const nsent = sending ? transfer(sendIov, sendCnt, true) : 0;
      const nrecv = transfer(recvIov, recvCnt, false);

      // The original stores nrecv, nsent, flags in this order (visible when they alias).
      if (nrecvPtr !== 0) mem.setU32(nrecvPtr, nrecv);
      if (nsentPtr !== 0) mem.setU32(nsentPtr, nsent);
      if (flagsPtr !== 0) {
        mem.check(flagsPtr, 8);
        // Bit 0: started or resumed. Taken only here, in the call that
        // completes, so an unwound call cannot lose it.
        mem.setU32(flagsPtr, ctx.takeStartedFlag() ? 1 : 0);
        mem.setU32(flagsPtr + 4, 0);
      }
    },
  };
}
