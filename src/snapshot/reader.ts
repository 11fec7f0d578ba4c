import { SnapshotError } from './errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // names may begin with U+FEFF

/** Cursor over one section's content; every failure is a SnapshotError naming the section. */
export class Reader {
  constructor(readonly b: Uint8Array, public pos: number, readonly end: number, readonly what: string) {}

  fail(msg: string): never {
    throw new SnapshotError(`invalid ${this.what} section: ${msg}`);
  }
  get remaining(): number {
    return this.end - this.pos;
  }
  u8(): number {
    if (this.pos >= this.end) this.fail('unexpected end of section');
    return this.b[this.pos++]!;
  }
  /** Four bytes, little-endian, unsigned. */
  u32le(): number {
    if (this.end - this.pos < 4) this.fail('unexpected end of section');
    const b = this.b;
    const p = this.pos;
    this.pos = p + 4;
    return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;
  }
  /** Eight bytes, little-endian, unsigned. */
  u64le(): bigint {
    const lo = this.u32le();
    return (BigInt(this.u32le()) << 32n) | BigInt(lo);
  }
  /** Unsigned LEB128 up to 32 bits (non-minimal encodings accepted, spec §5). */
  u32(): number {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const x = this.u8();
      result += (x & 0x7f) * 2 ** shift;
      if ((x & 0x80) === 0) {
        if (result > 0xffffffff) this.fail('integer does not fit in 32 bits');
        return result;
      }
    }
    return this.fail('integer representation too long');
  }
  u64(): bigint {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const x = this.u8();
      result |= BigInt(x & 0x7f) << shift;
      if ((x & 0x80) === 0) {
        if (result > 0xffffffffffffffffn) this.fail('integer does not fit in 64 bits');
        return result;
      }
    }
    return this.fail('integer representation too long');
  }
  s32(): number {
    let result = 0;
    let shift = 0;
    let x: number;
    do {
      if (shift > 28) this.fail('integer representation too long');
      x = this.u8();
      result |= (x & 0x7f) << shift;
      shift += 7;
    } while (x & 0x80);
    if (shift < 32 && x & 0x40) result |= -1 << shift;
    return result | 0;
  }
  s64(): bigint {
    let result = 0n;
    let shift = 0n;
    let x: number;
    do {
      if (shift > 63n) this.fail('integer representation too long');
      x = this.u8();
      result |= BigInt(x & 0x7f) << shift;
      shift += 7n;
    } while (x & 0x80);
    if (shift < 64n && x & 0x40) result |= -1n << shift;
    return BigInt.asIntN(64, result);
  }
  skip(n: number): void {
    if (n > this.remaining) this.fail('unexpected end of section');
    this.pos += n;
  }
  bytes(n: number): Uint8Array {
    const start = this.pos;
    this.skip(n);
    return this.b.subarray(start, this.pos);
  }
  utf8(n: number, what: string): string {
    const b = this.bytes(n);
    try {
      return utf8.decode(b);
    } catch {
      return this.fail(`${what} is not valid UTF-8`);
    }
  }
}
