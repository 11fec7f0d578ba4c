/**
 * The host→program byte stream (spec abi.md §8.1): packets queued for the
 * program, each followed by zero padding to a multiple of 8 bytes, read by
 * the program in pieces of any size.
 *
 * Chunks are kept as a list and copied only once, into the program's
 * buffer, so queueing and reading cost O(bytes) in total.
 */
import { GateError } from '../errors.js';
import { HEADER_SIZE, MAX_PACKET_SIZE, align8 } from './packet.js';

/** Source of padding bytes; only ever read from. */
const ZEROS = new Uint8Array(8);

export class InputQueue {
  private chunks: Uint8Array[] = [];
  /** Index of the first unread chunk in `chunks`. */
  private head = 0;
  /** Bytes of chunks[head] already read. */
  private offset = 0;
  private total = 0;

  /**
   * Queues a packet (exact size; its size field must match) and its padding.
   * The queue keeps a reference: the caller must not modify the packet
   * afterwards.
   */
  push(packet: Uint8Array): void {
    const n = packet.length;
    if (n < HEADER_SIZE || n > MAX_PACKET_SIZE) {
      throw new GateError('GATE_INVALID_PACKET', `cannot queue a packet of ${n} bytes to the program (must be 8–65536)`);
    }
    const size = new DataView(packet.buffer, packet.byteOffset, HEADER_SIZE).getUint32(0, true);
    if (size !== n) {
      throw new GateError('GATE_INVALID_PACKET', `packet size field ${size} does not match its length ${n}`);
    }
    this.append(packet);
    const pad = align8(n) - n;
    if (pad > 0) this.append(ZEROS.subarray(0, pad));
  }

  /** Queues bytes that are already framed and padded (e.g. a snapshot's input buffer). */
  pushRaw(bytes: Uint8Array): void {
    if (bytes.length > 0) this.append(bytes);
  }

  /** Bytes waiting to be read. */
  buffered(): number {
    return this.total;
  }

  /** Moves up to `dst.length` bytes into `dst`; returns the count. */
  read(dst: Uint8Array): number {
    let done = 0;
    while (done < dst.length && this.head < this.chunks.length) {
      const chunk = this.chunks[this.head]!;
      const n = Math.min(chunk.length - this.offset, dst.length - done);
      dst.set(chunk.subarray(this.offset, this.offset + n), done);
      done += n;
      this.offset += n;
      if (this.offset === chunk.length) {
        this.head++;
        this.offset = 0;
      }
    }
    this.total -= done;
    this.compact();
    return done;
  }

  /** Removes and returns everything buffered (for a snapshot's input buffer). */
  drain(): Uint8Array {
    const out = new Uint8Array(this.total);
    this.read(out);
    return out;
  }

  private append(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** Drops consumed chunk references so that memory is released; amortised O(1). */
  private compact(): void {
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head > 64 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}
