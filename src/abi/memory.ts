/**
 * Bounds-checked access to the program's linear memory for host functions.
 *
 * Every access is checked against the memory's current length and fails
 * with the MEMORY_ACCESS_OUT_OF_BOUNDS trap, as a wasm load or store would
 * (spec abi.md §3: "other invalid addresses cause a wasm memory-access
 * trap"); a JS RangeError must never escape. Pointers are wasm32 addresses:
 * callers convert them with `>>> 0`.
 */
import type { AbiContext } from './context.js';
import { Trap, TrapId } from './trap.js';

const EMPTY = new Uint8Array(0);

export function outOfBounds(): Trap {
  return new Trap(TrapId.MemoryAccessOutOfBounds);
}

export class GuestMemory {
  /** The current memory bytes (valid after sync()). */
  u8: Uint8Array = EMPTY;
  private dv: DataView = new DataView(EMPTY.buffer);

  constructor(private readonly ctx: AbiContext) {}

  /**
   * Picks up the current memory. Call at the start of every host function:
   * memory.grow replaces the buffer. The DataView is only recreated when the
   * underlying region changed, so steady-state calls allocate nothing.
   */
  sync(): this {
    const m = this.ctx.memory();
    if (m !== this.u8) {
      const dv = this.dv;
      if (m.buffer !== dv.buffer || m.byteOffset !== dv.byteOffset || m.byteLength !== dv.byteLength) {
        this.dv = new DataView(m.buffer, m.byteOffset, m.byteLength);
      }
      this.u8 = m;
    }
    return this;
  }

  /** Throws the out-of-bounds trap unless [ptr, ptr+size) lies in memory. */
  check(ptr: number, size: number): void {
    if (ptr + size > this.u8.length) throw outOfBounds();
  }

  /** A view of [ptr, ptr+len), bounds-checked. */
  bytes(ptr: number, len: number): Uint8Array {
    if (ptr + len > this.u8.length) throw outOfBounds();
    return this.u8.subarray(ptr, ptr + len);
  }

  getU8(ptr: number): number {
    if (ptr + 1 > this.u8.length) throw outOfBounds();
    return this.u8[ptr]!;
  }

  getU16(ptr: number): number {
    if (ptr + 2 > this.u8.length) throw outOfBounds();
    return this.dv.getUint16(ptr, true);
  }

  getU32(ptr: number): number {
    if (ptr + 4 > this.u8.length) throw outOfBounds();
    return this.dv.getUint32(ptr, true);
  }

  getU64(ptr: number): bigint {
    if (ptr + 8 > this.u8.length) throw outOfBounds();
    return this.dv.getBigUint64(ptr, true);
  }

  setU8(ptr: number, v: number): void {
    if (ptr + 1 > this.u8.length) throw outOfBounds();
    this.u8[ptr] = v;
  }

  setU16(ptr: number, v: number): void {
    if (ptr + 2 > this.u8.length) throw outOfBounds();
    this.dv.setUint16(ptr, v, true);
  }

  setU32(ptr: number, v: number): void {
    if (ptr + 4 > this.u8.length) throw outOfBounds();
    this.dv.setUint32(ptr, v, true);
  }

  setU64(ptr: number, v: bigint): void {
    if (ptr + 8 > this.u8.length) throw outOfBounds();
    this.dv.setBigUint64(ptr, BigInt.asUintN(64, v), true);
  }

  /** Stores a non-negative integer below 2^53 as u64 without going through BigInt. */
  setU64Number(ptr: number, v: number): void {
    if (ptr + 8 > this.u8.length) throw outOfBounds();
    this.dv.setUint32(ptr, v >>> 0, true);
    this.dv.setUint32(ptr + 4, Math.floor(v / 0x100000000), true);
  }
}

/** Size of an iovec / ciovec: {u32 ptr, u32 len}. */
export const IOVEC_SIZE = 8;

/**
 * Moves bytes between the program's iovecs and the packet stream, in order,
 * stopping at the first short transfer (spec abi.md §3–§4). Returns the
 * number of bytes transferred, or -1 if the stream was not ready for the
 * first non-empty iovec. `mem` must be synced.
 */
export function transferIovecs(mem: GuestMemory, ctx: AbiContext, iov: number, cnt: number, write: boolean): number {
  let total = 0;
  for (let i = 0; i < cnt; i++) {
    const e = iov + i * IOVEC_SIZE;
    const ptr = mem.getU32(e);
    const len = mem.getU32(e + 4);
    if (len === 0) continue;
    const buf = mem.bytes(ptr, len);
    const n = write ? ctx.writeOutput(buf) : ctx.readInput(buf);
    total += n;
    if (n < len) return total === 0 ? -1 : total;
  }
  return total;
}
