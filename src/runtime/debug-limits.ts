/**
 * How much debug output (fds 1 and 2) one instance may produce: a token
 * bucket of bytes. Output past it is dropped and counted, never queued: a
 * program that writes without end costs neither memory nor an operator's log.
 */
export interface DebugLimits {
  /** Bytes per second the bucket refills with: the sustained rate. */
  rateBytesPerSecond: number;
  /** The bucket's size: what may pass at once after a quiet spell (also what passes first). */
  burstBytes: number;
}

/** A server's defaults (configurable as principal.debugrate and principal.debugburst). */
export const DEFAULT_DEBUG_LIMITS: Readonly<DebugLimits> = Object.freeze({ rateBytesPerSecond: 64 * 1024, burstBytes: 1024 * 1024 });

/** Most bytes of debug output in one message from an executor (larger writes are split). */
export const DEBUG_CHUNK_BYTES = 64 * 1024;

export function checkDebugLimits(limits: DebugLimits): DebugLimits {
  const { rateBytesPerSecond: rate, burstBytes: burst } = limits;
  if (!(Number.isFinite(rate) && rate >= 0) || !(Number.isSafeInteger(burst) && burst >= 0)) {
    throw new RangeError(`debug output limits must be non-negative numbers (rate ${rate} bytes/s, burst ${burst} bytes)`);
  }
  return limits;
}

/** A token bucket of bytes, full at the start. */
export class ByteBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly size: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = size;
    this.last = now();
  }

  /** Takes up to `n` bytes' worth; returns how many may pass. */
  take(n: number): number {
    this.refill();
    const granted = Math.min(n, Math.floor(this.tokens));
    this.tokens -= granted;
    return granted;
  }

  /** Takes `n` bytes' worth if all of it is there. */
  takeAll(n: number): boolean {
    this.refill();
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.size, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
  }
}
