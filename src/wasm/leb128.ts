import { ModuleError } from './errors.js';

/** A cursor over a byte array that decodes the primitives of the wasm binary format. */
export class ByteReader {
  pos: number;
  constructor(readonly bytes: Uint8Array, start = 0, readonly end = bytes.length) {
    this.pos = start;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  eof(): boolean {
    return this.pos >= this.end;
  }

  u8(): number {
    if (this.pos >= this.end) throw new ModuleError('unexpected end of module data', this.pos);
    return this.bytes[this.pos++]!;
  }

  /** Unsigned LEB128 up to 32 bits. */
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.u8();
      if (shift === 28 && (b & 0x70) !== 0) throw new ModuleError('integer representation too long', this.pos - 1);
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
      shift += 7;
      if (shift > 28) throw new ModuleError('integer representation too long', this.pos);
    }
    return result >>> 0;
  }

  /** Signed LEB128 up to 32 bits. */
  s32(): number {
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      b = this.u8();
      if (shift > 28) throw new ModuleError('integer representation too long', this.pos - 1);
      result |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    if (shift < 32 && (b & 0x40)) result |= -1 << shift;
    return result | 0;
  }

  /** Signed LEB128 up to 64 bits. */
  s64(): bigint {
    let result = 0n;
    let shift = 0n;
    let b: number;
    do {
      b = this.u8();
      if (shift > 63n) throw new ModuleError('integer representation too long', this.pos - 1);
      result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
    } while (b & 0x80);
    if (shift < 64n && (b & 0x40)) result |= -1n << shift;
    return BigInt.asIntN(64, result);
  }

  /** Skips a LEB128 number of at most `maxBytes` bytes without decoding it. */
  skipLeb(maxBytes: number): void {
    for (let i = 0; i < maxBytes; i++) {
      if ((this.u8() & 0x80) === 0) return;
    }
    throw new ModuleError('integer representation too long', this.pos);
  }

  bytesView(n: number): Uint8Array {
    if (n > this.remaining) throw new ModuleError('unexpected end of module data', this.pos);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  name(): string {
    const n = this.u32();
    const view = this.bytesView(n);
    try {
      return utf8Decoder.decode(view);
    } catch {
      throw new ModuleError('name is not valid UTF-8', this.pos - n);
    }
  }
}

// ignoreBOM: a name may begin with U+FEFF, which a default TextDecoder would drop.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The unsigned LEB128 at `p`, without bounds or encoding checks: only for
 * bytes already validated (a reader that allocates nothing, for hot loops).
 */
export function u32At(b: Uint8Array, p: number): number {
  let x = b[p]!;
  if (x < 0x80) return x;
  let result = x & 0x7f;
  let shift = 7;
  do {
    x = b[++p]!;
    result |= (x & 0x7f) << shift;
    shift += 7;
  } while (x & 0x80 && shift < 35);
  return result >>> 0;
}

/** Growable output buffer for the wasm binary format. */
export class ByteWriter {
  private buf: Uint8Array;
  length = 0;
  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  u8(v: number): this {
    if (this.length >= this.buf.length) this.reserve(1);
    this.buf[this.length++] = v;
    return this;
  }

  // u32 and s32 reserve their longest encoding once and write the buffer
  // directly: the transform writes most of its output through them.
  u32(v: number): this {
    v >>>= 0;
    if (v < 0x80) return this.u8(v);
    this.reserve(5);
    const buf = this.buf;
    let at = this.length;
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      buf[at++] = b;
    } while (v !== 0);
    this.length = at;
    return this;
  }

  /** Four bytes, little-endian (fixed width, not LEB128). */
  u32le(v: number): this {
    this.reserve(4);
    const buf = this.buf;
    const at = this.length;
    buf[at] = v;
    buf[at + 1] = v >>> 8;
    buf[at + 2] = v >>> 16;
    buf[at + 3] = v >>> 24;
    this.length = at + 4;
    return this;
  }

  /** Eight bytes, little-endian, of a 64-bit value (as unsigned). */
  u64le(v: bigint): this {
    const u = BigInt.asUintN(64, v);
    this.u32le(Number(u & 0xffffffffn));
    return this.u32le(Number(u >> 32n));
  }

  s32(v: number): this {
    v |= 0;
    this.reserve(5);
    const buf = this.buf;
    let at = this.length;
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
        buf[at++] = b;
        this.length = at;
        return this;
      }
      buf[at++] = b | 0x80;
    }
  }

  s64(v: bigint): this {
    v = BigInt.asIntN(64, v);
    for (;;) {
      const b = Number(v & 0x7fn);
      v >>= 7n;
      if ((v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0)) {
        this.u8(b);
        return this;
      }
      this.u8(b | 0x80);
    }
  }

  bytes(data: Uint8Array): this {
    this.reserve(data.length);
    this.buf.set(data, this.length);
    this.length += data.length;
    return this;
  }

  /**
   * Appends `src[from..to)`. Short runs (most runs of copied instructions
   * are a few bytes) are copied byte by byte: cheaper than making a
   * subarray view for set().
   */
  range(src: Uint8Array, from: number, to: number): this {
    const n = to - from;
    this.reserve(n);
    const buf = this.buf;
    let at = this.length;
    if (n <= 32) for (let i = from; i < to; i++) buf[at++] = src[i]!;
    else buf.set(src.subarray(from, to), at);
    this.length += n;
    return this;
  }

  name(s: string): this {
    const data = new TextEncoder().encode(s);
    return this.u32(data.length).bytes(data);
  }

  /** Appends `payload` framed as a section: id byte, size, payload. */
  section(id: number, payload: Uint8Array): this {
    return this.u8(id).u32(payload.length).bytes(payload);
  }

  /** The bytes so far, without copying (valid until the next write or reset). */
  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }

  /** Empties the writer, keeping its buffer. */
  reset(): this {
    this.length = 0;
    return this;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}
