/**
 * What the ABI's host functions need from the runtime. The runtime implements
 * this per instance; the functions in abi/ stay free of scheduling details.
 *
 * Blocking: a host function that would block calls `wait`, `yieldPoint` or
 * `abiDeficiency`. If that returns `true`, the runtime has started unwinding
 * the program's stack and the host function must return at once (any return
 * value is ignored). When the instance is rewound later, the same host
 * function is called again from the beginning with the same arguments; a
 * `wait` or `yieldPoint` in that repeated call returns `false` (the awaited
 * condition has come true, the timeout has passed, or the slice is fresh), so
 * it must recompute its result rather than remember anything between calls.
 */
export interface AbiContext {
  /** The program's linear memory as it is now (fetch again after anything that may grow it). */
  memory(): Uint8Array;

  /** Appends bytes written to fd 1 or 2 to the debug log (dropped if logging is off). */
  debugWrite(data: Uint8Array): void;

  /** Number of bytes of the input packet stream buffered for the program. */
  inputBuffered(): number;
  /** Moves up to `dst.length` buffered input bytes into `dst`; returns the count. */
  readInput(dst: Uint8Array): number;
  /** How many output bytes the program may write now (0: not writable). */
  outputSpace(): number;
  /** Appends program output bytes (at most `outputSpace()` are taken); returns the count. */
  writeOutput(src: Uint8Array): number;

  /** Returns and clears the "started or resumed" flag reported by `io`. */
  takeStartedFlag(): boolean;

  /** Time resolution granularity G in nanoseconds (a power of two, spec abi.md §5.1). */
  readonly granularityNs: bigint;
  /** Wall-clock time, nanoseconds since the epoch (unmasked). */
  realtimeNs(): bigint;
  /** The instance's monotonic clock, nanoseconds (unmasked; starts near 1 s and continues across restores). */
  monotonicNs(): bigint;

  /**
   * Takes up to `n` bytes from the instance's random pool (16 bytes per
   * process start). Returns fewer than `n` when the pool runs dry.
   */
  takeRandom(n: number): Uint8Array;

  /** Blocks until the condition holds or the timeout passes (see above). */
  wait(cond: WaitCondition): boolean;
  /** A point where the instance may be preempted (time slice over, suspend or kill requested). */
  yieldPoint(): boolean;
  /** Suspends the instance with cause ABI_DEFICIENCY; the call is retried on resume. Always returns true. */
  abiDeficiency(): boolean;

  /** proc_exit: ends the instance (never returns). */
  exit(status: number): never;
}

export interface WaitCondition {
  /** Wake when input is buffered. */
  input: boolean;
  /** Wake when output space is available. */
  output: boolean;
  /** Relative timeout in nanoseconds; undefined waits indefinitely. */
  timeoutNs: bigint | undefined;
}
