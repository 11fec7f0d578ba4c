import { ServiceDiscovery } from '../abi/discovery.js';
import { InputQueue } from '../abi/inputqueue.js';
import { PacketStreamDecoder } from '../abi/outputstream.js';

/**
 * How many bytes of packets an instance may have in flight to the trusted
 * side before its output stops being writable. This is what keeps a packet
 * flood from growing queues without bound.
 */
export const OUTPUT_WINDOW = 256 * 1024;

export interface ChannelSink {
  /** A validated packet for an available service. */
  packet(packet: Uint8Array): void;
  /** Discovery allocated a code for a service name (available or not). */
  bind(code: number, name: string): void;
  /** Input arrived or output space opened up: a blocked instance may continue. */
  inputReady(): void;
}

/**
 * The executor-side ends of an instance's packet streams: input queued for
 * the program, and the program's output framed, validated and answered
 * (discovery) or passed on.
 */
export class PacketChannel {
  private readonly input = new InputQueue();
  private readonly decoder: PacketStreamDecoder;
  private unacked = 0;
  private closed = false;

  constructor(
    services: readonly string[],
    private readonly sink: ChannelSink,
  ) {
    const discovery = new ServiceDiscovery(new Set(services));
    this.decoder = new PacketStreamDecoder(discovery, {
      onDiscovery: (response, bound) => {
        this.input.push(response);
        // Every code, available or not: the trusted side keeps the list in code order.
        for (const b of bound) sink.bind(b.code, b.name);
      },
      onServicePacket: (packet) => {
        this.unacked += packet.length;
        sink.packet(packet);
      },
    });
  }

  inputBuffered(): number {
    return this.input.buffered();
  }

  readInput(dst: Uint8Array): number {
    return this.input.read(dst);
  }

  outputSpace(): number {
    return Math.max(0, OUTPUT_WINDOW - this.unacked);
  }

  /** Takes program output (at most outputSpace() bytes); throws AbiViolation. */
  writeOutput(src: Uint8Array): number {
    const n = Math.min(src.length, this.outputSpace());
    if (n > 0) this.decoder.write(n === src.length ? src : src.subarray(0, n));
    return n;
  }

  /** A packet from the trusted side to the program. */
  deliver(packet: Uint8Array): void {
    if (this.closed) return;
    this.input.push(packet);
    this.sink.inputReady();
  }

  ack(bytes: number): void {
    const wasFull = this.outputSpace() === 0;
    this.unacked = Math.max(0, this.unacked - bytes);
    if (wasFull && this.outputSpace() > 0) this.sink.inputReady();
  }

  close(): void {
    this.closed = true;
  }
}
