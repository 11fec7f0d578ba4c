/**
 * Frames and validates the program's output byte stream (spec abi.md §8).
 *
 * The program writes packets padded to 8 bytes, in chunks of any size; a
 * packet may span many writes. Each complete packet is validated as the
 * original runtime does (§8.2) and then either answered here (discovery) or
 * passed on for the trusted side. The first violation throws AbiViolation
 * and the decoder stays failed: the instance is to be killed.
 */
import type { DiscoveryBinding, ServiceDiscovery } from './discovery.js';
import { DATA_HEADER_SIZE, DISCOVERY_CODE, Domain, HEADER_SIZE, MAX_PACKET_SIZE, align8 } from './packet.js';
import { AbiViolation } from './trap.js';

export interface PacketStreamSink {
  /** A discovery response to queue to the program's input, and the codes the request allocated. */
  onDiscovery(response: Uint8Array, bound: DiscoveryBinding[]): void;
  /**
   * A validated packet for an available service: exact size (no padding), a
   * fresh copy the receiver owns, high bits of the domain byte cleared.
   */
  onServicePacket(packet: Uint8Array): void;
}

/** Largest number of bytes the decoder ever holds: one maximal packet with its padding. */
export const MAX_PENDING_BYTES = align8(MAX_PACKET_SIZE);

export class PacketStreamDecoder {
  private readonly header = new Uint8Array(HEADER_SIZE);
  private headerLength = 0;
  /** Buffer of the packet being assembled (padded length), once its header is known. */
  private current: Uint8Array | undefined;
  private currentSize = 0;
  private currentLength = 0;
  private failure: AbiViolation | undefined;

  constructor(
    private readonly discovery: ServiceDiscovery,
    private readonly sink: PacketStreamSink,
  ) {}

  /**
   * Consumes a chunk of the program's output. Complete packets are handled
   * (and the sink called) before this returns; an incomplete tail is kept.
   * Throws AbiViolation on the first invalid packet, and again on every later
   * call.
   */
  write(bytes: Uint8Array): void {
    if (this.failure) throw this.failure;
    try {
      this.consume(bytes);
    } catch (e) {
      if (e instanceof AbiViolation) {
        this.failure = e;
        this.current = undefined;
        this.headerLength = 0;
      }
      throw e;
    }
  }

  /** Bytes of an incomplete packet currently buffered (at most MAX_PENDING_BYTES). */
  pending(): number {
    return this.current ? this.currentLength : this.headerLength;
  }

  /** A copy of the buffered incomplete packet's bytes (raw stream bytes, for a snapshot's output buffer). */
  pendingBytes(): Uint8Array {
    return this.current ? this.current.slice(0, this.currentLength) : this.header.slice(0, this.headerLength);
  }

  private consume(bytes: Uint8Array): void {
    let off = 0;
    while (off < bytes.length) {
      if (this.current) {
        const n = Math.min(this.current.length - this.currentLength, bytes.length - off);
        this.current.set(bytes.subarray(off, off + n), this.currentLength);
        this.currentLength += n;
        off += n;
        if (this.currentLength === this.current.length) {
          const buf = this.current;
          this.current = undefined;
          this.handle(buf.length === this.currentSize ? buf : buf.slice(0, this.currentSize));
        }
        continue;
      }

      if (this.headerLength === 0 && bytes.length - off >= HEADER_SIZE) {
        // Fast path: the header is in this chunk; maybe the whole packet too.
        const size = readSize(bytes, off);
        const total = align8(size);
        if (bytes.length - off >= total) {
          this.handle(bytes.slice(off, off + size));
          off += total;
        } else {
          this.startPacket(size, total);
          const n = bytes.length - off;
          this.current!.set(bytes.subarray(off), 0);
          this.currentLength = n;
          off += n;
        }
        continue;
      }

      const n = Math.min(HEADER_SIZE - this.headerLength, bytes.length - off);
      this.header.set(bytes.subarray(off, off + n), this.headerLength);
      this.headerLength += n;
      off += n;
      if (this.headerLength === HEADER_SIZE) {
        this.headerLength = 0;
        const size = readSize(this.header, 0);
        const total = align8(size);
        this.startPacket(size, total);
        this.current!.set(this.header, 0);
        this.currentLength = HEADER_SIZE;
        if (total === HEADER_SIZE) {
          this.current = undefined;
          this.handle(this.header.slice());
        }
      }
    }
  }

  private startPacket(size: number, total: number): void {
    this.current = new Uint8Array(total);
    this.currentSize = size;
    this.currentLength = 0;
  }

  /** Validates one complete packet (exact size, owned by us) and dispatches it. */
  private handle(p: Uint8Array): void {
    const code = (p[4]! | (p[5]! << 8)) << 16 >> 16;
    if (code === DISCOVERY_CODE) {
      const { response, bound } = this.discovery.handleRequest(p);
      this.sink.onDiscovery(response, bound);
      return;
    }
    if (code < DISCOVERY_CODE) throw new AbiViolation(`invalid code in incoming packet: ${code}`);
    if (code >= this.discovery.count) throw new AbiViolation(`invalid service code in packet: ${code}`);
    const domain = p[6]! & 0x0f;
    if (domain > Domain.Data) throw new AbiViolation(`invalid domain in packet: ${domain}`);
    if (domain === Domain.Data && p.length < DATA_HEADER_SIZE) {
      throw new AbiViolation(`data packet is too short: ${p.length} bytes`);
    }
    // Packets to unavailable services are dropped silently (abi.md §8.2).
    if (!this.discovery.isAvailable(code)) return;
    p[6] = domain;
    this.sink.onServicePacket(p);
  }
}

/** Reads and checks the size field; a bad size is reported before any content is buffered. */
function readSize(bytes: Uint8Array, off: number): number {
  const size = (bytes[off]! | (bytes[off + 1]! << 8) | (bytes[off + 2]! << 16) | (bytes[off + 3]! << 24)) >>> 0;
  if (size < HEADER_SIZE || size > MAX_PACKET_SIZE) throw new AbiViolation(`runtime: invalid op packet size: ${size}`);
  return size;
}
