import { ByteBucket, DEBUG_CHUNK_BYTES, type DebugLimits } from './debug-limits.js';

/**
 * One instance's debug output inside its executor. A write never blocks the
 * program and never queues more than one chunk: bytes past the instance's
 * limits are dropped here and only counted. What passes is gathered into
 * chunks of at most DEBUG_CHUNK_BYTES, sent when full or at the end of the
 * current turn (after the time slice), so that a program writing one byte at
 * a time costs one message per slice, not one per byte.
 */
export class DebugOutput {
  private readonly bucket: ByteBucket | undefined;
  private chunk: Uint8Array | undefined;
  private used = 0;
  private dropped = 0;
  private flushQueued = false;

  /** `send` gets a copy it may keep, and the bytes dropped while it was gathered (since the last call). */
  constructor(
    private readonly send: (data: Uint8Array, dropped: number) => void,
    limits: DebugLimits | undefined,
  ) {
    this.bucket = limits ? new ByteBucket(limits.rateBytesPerSecond, limits.burstBytes) : undefined;
  }

  /** `data` may be a view of the program's memory: it is copied before this returns. */
  write(data: Uint8Array): void {
    const n = this.bucket ? this.bucket.take(data.length) : data.length;
    for (let off = 0; off < n; ) {
      this.chunk ??= new Uint8Array(DEBUG_CHUNK_BYTES);
      const k = Math.min(n - off, DEBUG_CHUNK_BYTES - this.used);
      this.chunk.set(data.subarray(off, off + k), this.used);
      this.used += k;
      off += k;
      if (this.used === DEBUG_CHUNK_BYTES) this.flush();
    }
    // Counted after the chunks sent above: the bytes dropped come after them.
    this.dropped += data.length - n;
    if ((this.used > 0 || this.dropped > 0) && !this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
  }

  /** Sends what is gathered (before the instance's end is reported). */
  flush(): void {
    if (this.used === 0 && this.dropped === 0) return;
    const data = this.chunk!.slice(0, this.used);
    const dropped = this.dropped;
    this.used = 0;
    this.dropped = 0;
    this.send(data, dropped);
  }
}
