/**
 * A minimal AbiContext over a real WebAssembly.Memory, recording what the
 * host functions ask of the runtime. Blocking calls return `false` unless
 * `unwind` is set, which makes the next one report an unwind (as the runtime
 * does when it suspends the program there).
 */
import type { AbiContext, WaitCondition } from '../../src/abi/context.js';

export class ExitSignal extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

export class FakeContext implements AbiContext {
  readonly wasmMemory: WebAssembly.Memory;
  log: number[] = [];
  input: number[] = [];
  output: number[] = [];
  /** Output space left; outputSpace() reports it. */
  space = 65536;
  started = true;
  granularityNs = 1024n;
  realtime = 1_700_000_000_123_456_789n;
  monotonic = 1_123_456_789n;
  pool: number[] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
  waits: WaitCondition[] = [];
  yields = 0;
  deficiencies = 0;
  takenFlags = 0;
  /** Number of upcoming blocking calls (wait or yieldPoint) that report an unwind. */
  unwind = 0;
  /** Called on wait, e.g. to deliver input or advance time. */
  onWait: ((c: WaitCondition) => void) | undefined;

  constructor(pages = 1, maximum = 4) {
    this.wasmMemory = new WebAssembly.Memory({ initial: pages, maximum });
  }

  /** A fresh view per call, like a runtime that does not cache one. */
  memory(): Uint8Array {
    return new Uint8Array(this.wasmMemory.buffer);
  }

  get bytes(): Uint8Array {
    return new Uint8Array(this.wasmMemory.buffer);
  }

  get view(): DataView {
    return new DataView(this.wasmMemory.buffer);
  }

  debugWrite(data: Uint8Array): void {
    this.log.push(...data);
  }

  inputBuffered(): number {
    return this.input.length;
  }

  readInput(dst: Uint8Array): number {
    const n = Math.min(dst.length, this.input.length);
    dst.set(this.input.splice(0, n));
    return n;
  }

  outputSpace(): number {
    return this.space;
  }

  writeOutput(src: Uint8Array): number {
    const n = Math.min(src.length, this.space);
    this.output.push(...src.subarray(0, n));
    this.space -= n;
    return n;
  }

  takeStartedFlag(): boolean {
    this.takenFlags++;
    const f = this.started;
    this.started = false;
    return f;
  }

  realtimeNs(): bigint {
    return this.realtime;
  }

  monotonicNs(): bigint {
    return this.monotonic;
  }

  takeRandom(n: number): Uint8Array {
    return Uint8Array.from(this.pool.splice(0, n));
  }

  private unwinding(): boolean {
    if (this.unwind > 0) {
      this.unwind--;
      return true;
    }
    return false;
  }

  wait(cond: WaitCondition): boolean {
    this.waits.push(cond);
    this.onWait?.(cond);
    return this.unwinding();
  }

  yieldPoint(): boolean {
    this.yields++;
    return this.unwinding();
  }

  abiDeficiency(): boolean {
    this.deficiencies++;
    return true;
  }

  exit(status: number): never {
    throw new ExitSignal(status);
  }

  /** Whether anything blocking was requested. */
  get blocked(): boolean {
    return this.waits.length > 0 || this.yields > 0 || this.deficiencies > 0;
  }
}
