import { ByteBucket, DEBUG_CHUNK_BYTES, type DebugLimits } from './debug-limits.js';

/**
 * Where a run's debug output goes. Returns false when it could not take the
 * bytes (e.g. its reader is slow): they are then counted as dropped.
 */
export type DebugSink = (data: Uint8Array) => boolean | void;

/** Drop notices are written at most this often (and at the end). */
const NOTICE_INTERVAL_MS = 1000;

/**
 * The debug log of one run on the trusted side: passes bytes on, and at the
 * end adds a newline if the last byte written was not one (spec abi.md §7.5:
 * "ping" → "ping\n").
 *
 * With limits it also enforces them, whatever the executor did (it is not
 * trusted): its bucket holds twice the burst and a message more, so that
 * output the executor let through, gathered into messages and delayed on the
 * way, is not cut twice. Bytes dropped here, in
 * the executor or by the sink are reported in the log itself, as a line
 * "[gate: N bytes of debug output dropped …]" at most once a second and at
 * the end.
 */
export class DebugLog {
  private last = 0x0a;
  private readonly bucket: ByteBucket | undefined;
  /** Dropped and not reported yet. */
  private unreported = 0;
  private lastNotice = -Infinity;
  /** All bytes dropped in this run. */
  droppedBytes = 0;

  constructor(
    private readonly sink: DebugSink,
    private readonly limits?: DebugLimits,
  ) {
    this.bucket = limits ? new ByteBucket(limits.rateBytesPerSecond, 2 * limits.burstBytes + DEBUG_CHUNK_BYTES) : undefined;
  }

  /**
   * `dropped`: bytes the executor dropped while gathering these (reported
   * after them: where exactly among them is not known).
   */
  write(data: Uint8Array, dropped = 0): void {
    const n = this.bucket ? this.bucket.take(data.length) : data.length;
    if (n > 0) {
      if (this.unreported > 0 && performance.now() - this.lastNotice >= NOTICE_INTERVAL_MS) this.notice();
      this.pass(n === data.length ? data : data.subarray(0, n));
    }
    this.drop(data.length - n + dropped);
  }

  end(): void {
    if (this.unreported > 0) this.notice();
    if (this.last !== 0x0a) this.pass(Uint8Array.of(0x0a));
  }

  private drop(n: number): void {
    this.unreported += n;
    this.droppedBytes += n;
  }

  private pass(data: Uint8Array): void {
    if (this.sink(data) === false) this.drop(data.length);
    else this.last = data[data.length - 1]!;
  }

  private notice(): void {
    const why = this.limits
      ? `over the limit of ${this.limits.rateBytesPerSecond} bytes/s after ${this.limits.burstBytes} bytes, or not read in time`
      : 'not read in time';
    const text = `${this.last === 0x0a ? '' : '\n'}[gate: ${this.unreported} bytes of debug output dropped: ${why}]\n`;
    this.lastNotice = performance.now();
    // The notice is not counted against the limits; refused, it is retried later.
    if (this.sink(new TextEncoder().encode(text)) === false) return;
    this.unreported = 0;
    this.last = 0x0a;
  }
}
