/**
 * Unsigned LEB128 varints holding 0..2^31−1, as used by service state
 * buffers (the original's internal/varint: Go's Uvarint, up to 10 bytes,
 * non-minimal encodings accepted, values above 2^31−1 rejected).
 */
import { GateError } from '../errors.js';

export const MAX_VARINT_VALUE = 0x7fffffff;

/** A service state buffer cannot be decoded. */
export class ServiceStateError extends GateError {
  constructor(message: string) {
    super('GATE_SERVICE_STATE', message);
  }
}

export class VarintReader {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.bytes.length) throw new ServiceStateError('end of data while decoding varint');
      const b = this.bytes[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (value > MAX_VARINT_VALUE) throw new ServiceStateError('varint value out of range');
      if ((b & 0x80) === 0) return value;
      scale *= 128;
    }
    throw new ServiceStateError('varint is too long');
  }

  bytesView(n: number): Uint8Array {
    if (n > this.remaining) throw new ServiceStateError('unexpected end of serialized state');
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

export class VarintWriter {
  private readonly out: number[] = [];

  varint(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > MAX_VARINT_VALUE) throw new RangeError(`varint value out of range: ${v}`);
    while (v >= 0x80) {
      this.out.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    this.out.push(v);
    return this;
  }

  bytes(b: Uint8Array): this {
    for (const x of b) this.out.push(x);
    return this;
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}
