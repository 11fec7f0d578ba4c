/**
 * The host side of unwinding and rewinding (prepare/instrument.ts makes the
 * program's side). An instrumented module imports the functions of
 * `imports()` (module `__gate`) and exports its state and fuel globals; the
 * unwinder moves frames between those functions and a `RawStack`, which
 * lives outside the program's memory.
 *
 * Unwinding: `startUnwind()` sets the state to 1; every frame on the wasm
 * stack, innermost first, calls `unwind_frame(site, func)` and then hands
 * over its values in order (`unwind_i32`/`unwind_i64`, or up to eight at a
 * time: `unwind_i32x2` … `unwind_i64x8`), and returns; the export
 * that the host called returns a dummy value, and `finishUnwind()` hands
 * out the frames, outermost first.
 *
 * Rewinding: `startRewind(stack)` sets the state to 2 and the fuel to 0;
 * the host calls the same export again; each function asks for its frame
 * with `rewind_frame(func)` (which must name the function the frame was
 * saved from) and its values with `rewind_i32`/`rewind_i64`, and re-issues
 * the call it was making. The innermost call is to a host function, which
 * calls `finishRewind()` and runs again from its beginning.
 *
 * Nothing here trusts the stack: frames and values that do not match what
 * the code asks for throw a RewindError, and the instance is lost, not
 * corrupted (the code only ever receives values of the types it asks for).
 */
import { GateError } from '../errors.js';
import { InternalExport } from '../prepare/internal.js';

export const enum UnwindState {
  Normal = 0,
  Unwinding = 1,
  Rewinding = 2,
}

/** One saved frame: the function (absolute index in the program's function index space), its site and its values (locals, then slots), 32-bit as unsigned numbers, 64-bit as unsigned bigints. */
export interface RawFrame {
  func: number;
  site: number;
  values: Array<number | bigint>;
}

/** Saved frames, outermost first. */
export type RawStack = RawFrame[];

/** A stack does not fit the code it is rewound into (a crafted or corrupt snapshot), or the rewind went wrong. */
export class RewindError extends GateError {
  constructor(message: string) {
    super('GATE_BAD_STACK', message);
  }
}

/** Functions of the `__gate` import module other than `yield`. */
export interface UnwindImports {
  unwind_frame(site: number, func: number): void;
  unwind_i32(v: number): void;
  unwind_i64(v: bigint): void;
  unwind_i32x2(...v: number[]): void;
  unwind_i32x4(...v: number[]): void;
  unwind_i32x8(...v: number[]): void;
  unwind_i64x2(...v: bigint[]): void;
  unwind_i64x4(...v: bigint[]): void;
  unwind_i64x8(...v: bigint[]): void;
  rewind_frame(func: number): number;
  rewind_i32(): number;
  rewind_i64(): bigint;
}

/** Puts the rewind copies of a stack's functions in place (runtime/rewind-copies.ts). */
export interface RewindCopyInstaller {
  install(stack: RawStack): void;
}

export class Unwinder {
  private stateGlobal: WebAssembly.Global | undefined;
  private copies: RewindCopyInstaller | undefined;
  private fuelGlobal: WebAssembly.Global | undefined;
  private frames: RawFrame[] = [];
  private current: RawFrame | undefined;
  /** Rewinding: the next frame to hand out and the next value of the current one. */
  private frameIndex = 0;
  private valueIndex = 0;
  /** Values saved so far in this unwind (bounded by maxValues). */
  private valueCount = 0;

  /**
   * @param maxValues Most values (locals and operands of all frames) one
   *   unwind may save; past it the unwind fails with a RewindError. V8's own
   *   stack limit bounds this too; this makes the bound explicit.
   */
  constructor(readonly maxValues = 4_000_000) {}

  /**
   * Finds the instrumented module's globals (call once, after
   * instantiation); `copies` installs the rewind copies of a stack's
   * functions (runtime/rewind-copies.ts; needed when the module was
   * prepared with lazy rewind, the default).
   */
  bind(exports: WebAssembly.Exports, copies?: RewindCopyInstaller): void {
    this.stateGlobal = exports[InternalExport.state] as WebAssembly.Global | undefined;
    this.fuelGlobal = exports[InternalExport.fuel] as WebAssembly.Global | undefined;
    this.copies = copies;
  }

  get state(): UnwindState {
    return (this.stateGlobal?.value ?? 0) as UnwindState;
  }

  get rewinding(): boolean {
    return this.state === UnwindState.Rewinding;
  }

  get unwinding(): boolean {
    return this.state === UnwindState.Unwinding;
  }

  set fuel(v: number) {
    if (this.fuelGlobal) this.fuelGlobal.value = v;
  }

  get fuel(): number {
    return (this.fuelGlobal?.value as number | undefined) ?? 0;
  }

  /** The import module's functions; `yieldFn` is the preemption check's slow path. */
  imports(yieldFn: () => void): Record<string, Function> {
    const fns: UnwindImports & { yield: () => void } = {
      yield: yieldFn,
      unwind_frame: (site, func) => {
        this.current = { func, site, values: [] };
        this.frames.push(this.current);
      },
      unwind_i32: (v) => {
        this.pushValue(v >>> 0);
      },
      unwind_i64: (v) => {
        this.pushValue(BigInt.asUintN(64, v));
      },
      unwind_i32x2: (...v) => this.pushValues32(v),
      unwind_i32x4: (...v) => this.pushValues32(v),
      unwind_i32x8: (...v) => this.pushValues32(v),
      unwind_i64x2: (...v) => this.pushValues64(v),
      unwind_i64x4: (...v) => this.pushValues64(v),
      unwind_i64x8: (...v) => this.pushValues64(v),
      rewind_frame: (func) => this.nextFrame(func),
      rewind_i32: () => {
        const v = this.nextValue();
        if (typeof v !== 'number') throw new RewindError(this.where('a 64-bit value where the code expects a 32-bit one'));
        return v | 0;
      },
      rewind_i64: () => {
        const v = this.nextValue();
        if (typeof v !== 'bigint') throw new RewindError(this.where('a 32-bit value where the code expects a 64-bit one'));
        return BigInt.asIntN(64, v);
      },
    };
    return fns as unknown as Record<string, Function>;
  }

  startUnwind(): void {
    this.frames = [];
    this.current = undefined;
    this.valueCount = 0;
    this.stateGlobal!.value = UnwindState.Unwinding;
  }

  /** Ends an unwind; returns the frames, outermost first. */
  finishUnwind(): RawStack {
    this.stateGlobal!.value = UnwindState.Normal;
    const frames = this.frames.reverse();
    this.frames = [];
    this.current = undefined;
    return frames;
  }

  /** Starts a rewind of `stack`; the host then calls the export the stack was unwound from. */
  startRewind(stack: RawStack): void {
    this.frames = stack;
    this.frameIndex = 0;
    this.current = undefined;
    this.valueIndex = 0;
    this.fuel = 0;
    this.stateGlobal!.value = UnwindState.Rewinding;
    // (in the rewinding state: what fails here fails the rewind)
    this.copies?.install(stack);
  }

  /** Ends a rewind once the innermost call has been re-issued; throws if frames or values are left over. */
  finishRewind(): void {
    this.checkConsumed();
    if (this.frameIndex !== this.frames.length) {
      throw new RewindError(`the stack has ${this.frames.length - this.frameIndex} more frames than the code rewound`);
    }
    this.stateGlobal!.value = UnwindState.Normal;
    this.frames = [];
    this.current = undefined;
  }

  /** Forgets a half-done unwind or rewind (after a trap); the state is normal again. */
  abort(): void {
    if (this.stateGlobal) this.stateGlobal.value = UnwindState.Normal;
    this.frames = [];
    this.current = undefined;
  }

  private pushValues32(vs: number[]): void {
    for (const v of vs) this.pushValue(v >>> 0);
  }

  private pushValues64(vs: bigint[]): void {
    for (const v of vs) this.pushValue(BigInt.asUintN(64, v));
  }

  private pushValue(v: number | bigint): void {
    if (++this.valueCount > this.maxValues) {
      throw new RewindError(`the call stack is too deep to suspend (more than ${this.maxValues} saved values)`);
    }
    this.current!.values.push(v);
  }

  private nextFrame(func: number): number {
    this.checkConsumed();
    const f = this.frames[this.frameIndex];
    if (!f) throw new RewindError(`function ${func} is entered while rewinding, but the stack has no frame left for it`);
    if (f.func !== func) throw new RewindError(`frame ${this.frameIndex} was saved in function ${f.func}, but function ${func} is rewound`);
    this.frameIndex++;
    this.current = f;
    this.valueIndex = 0;
    return f.site;
  }

  private nextValue(): number | bigint {
    const f = this.current;
    if (!f || this.valueIndex >= f.values.length) throw new RewindError(this.where('too few values'));
    return f.values[this.valueIndex++]!;
  }

  private checkConsumed(): void {
    const f = this.current;
    if (f && this.valueIndex !== f.values.length) {
      throw new RewindError(this.where(`${f.values.length - this.valueIndex} values more than the code restores`));
    }
  }

  private where(what: string): string {
    const f = this.current;
    return f ? `frame ${this.frameIndex - 1} (function ${f.func}, site ${f.site}) has ${what}` : `the stack has ${what}`;
  }
}

// --- Raw stacks as bytes (between an executor and the trusted side) ---------

/**
 * `u32 frames`, then per frame `u32 func, u32 site, u32 values, bitmap of
 * 64-bit values (ceil(values / 8) bytes), values (4 or 8 bytes each, LE)`.
 */
export function encodeRawStack(stack: RawStack): Uint8Array {
  let size = 4;
  for (const f of stack) {
    size += 12 + ((f.values.length + 7) >> 3);
    for (const v of f.values) size += typeof v === 'bigint' ? 8 : 4;
  }
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  let p = 0;
  dv.setUint32(p, stack.length, true);
  p += 4;
  for (const f of stack) {
    dv.setUint32(p, f.func, true);
    dv.setUint32(p + 4, f.site, true);
    dv.setUint32(p + 8, f.values.length, true);
    p += 12;
    const bitmap = p;
    p += (f.values.length + 7) >> 3;
    f.values.forEach((v, i) => {
      if (typeof v === 'bigint') {
        out[bitmap + (i >> 3)]! |= 1 << (i & 7);
        dv.setBigUint64(p, BigInt.asUintN(64, v), true);
        p += 8;
      } else {
        dv.setUint32(p, v >>> 0, true);
        p += 4;
      }
    });
  }
  return out;
}

/** Decodes `encodeRawStack`'s output; throws RewindError for malformed bytes. */
export function decodeRawStack(bytes: Uint8Array): RawStack {
  if (bytes.length === 0) return [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (): never => {
    throw new RewindError('malformed unwound stack');
  };
  if (bytes.length < 4) bad();
  let p = 0;
  const n = dv.getUint32(0, true);
  p = 4;
  if (n > (bytes.length - 4) / 12) bad();
  const stack: RawStack = [];
  for (let i = 0; i < n; i++) {
    if (p + 12 > bytes.length) bad();
    const func = dv.getUint32(p, true);
    const site = dv.getUint32(p + 4, true);
    const count = dv.getUint32(p + 8, true);
    p += 12;
    const bitmap = p;
    if (count > (bytes.length - p) / 4) bad();
    p += (count + 7) >> 3;
    const values: Array<number | bigint> = new Array(count);
    for (let j = 0; j < count; j++) {
      if (bytes[bitmap + (j >> 3)]! & (1 << (j & 7))) {
        if (p + 8 > bytes.length) bad();
        values[j] = dv.getBigUint64(p, true);
        p += 8;
      } else {
        if (p + 4 > bytes.length) bad();
        values[j] = dv.getUint32(p, true);
        p += 4;
      }
    }
    stack.push({ func, site, values });
  }
  if (p !== bytes.length) bad();
  return stack;
}
