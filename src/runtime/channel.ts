import { ServiceDiscovery } from '../abi/discovery.js';
import { InputQueue } from '../abi/inputqueue.js';
import { PacketStreamDecoder } from '../abi/outputstream.js';
import { Domain, setPacketCode } from '../abi/packet.js';
import type { FirstCallReplies } from './executor.js';

/**
 * How many bytes of packets an instance may have in flight to the trusted
 * side before its output stops being writable. This is what keeps a packet
 * flood from growing queues without bound.
 */
export const OUTPUT_WINDOW = 256 * 1024;

/**
 * While this much input waits unread, the program's output is not writable:
 * replies to its requests (discovery included) cannot pile up without bound
 * when it never reads. This is the backpressure the original got from a pipe.
 */
export const INPUT_LIMIT = 64 * 1024 + 65536;

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
  /** Code of the service whose first CALL is answered here (see FirstCallReplies), once discovered; -1 before. */
  private answeredCode = -1;
  private firstCall: FirstCallReplies | undefined;

  /**
   * @param services names the instance may discover
   * @param restore for an instance continuing from a snapshot: the services
   *   discovered before (code order), unread input and a partly written packet
   * @param firstCall replies queued to the program at its first CALL to a
   *   service, without waiting for the trusted side (never with `restore`)
   */
  constructor(
    services: readonly string[],
    private readonly sink: ChannelSink,
    restore?: { services: readonly string[]; input: Uint8Array; outputTail: Uint8Array },
    firstCall?: FirstCallReplies,
  ) {
    const discovery = new ServiceDiscovery(new Set(services), restore?.services ?? []);
    this.firstCall = restore ? undefined : firstCall;
    this.decoder = new PacketStreamDecoder(discovery, {
      onDiscovery: (response, bound) => {
        this.input.push(response);
        // Every code, available or not: the trusted side keeps the list in code order.
        for (const b of bound) {
          if (b.available && this.firstCall !== undefined && b.name === this.firstCall.service) this.answeredCode = b.code;
          sink.bind(b.code, b.name);
        }
      },
      onServicePacket: (packet) => {
        this.unacked += packet.length;
        if (this.answeredCode >= 0 && (packet[6]! & 0x0f) === Domain.Call && ((packet[4]! | (packet[5]! << 8)) << 16) >> 16 === this.answeredCode) {
          // Queued before the CALL goes on: whatever the service sends after its replies comes after them.
          for (const reply of this.firstCall!.packets) {
            setPacketCode(reply, this.answeredCode);
            this.input.push(reply);
          }
          this.firstCall = undefined;
          this.answeredCode = -1;
        }
        sink.packet(packet);
      },
    });
    if (restore) {
      // What the program had not read yet comes first, then the services'
      // availability on this host (spec abi.md §9.3), then anything new.
      if (restore.input.length) this.input.pushRaw(restore.input);
      const info = discovery.stateInfoPacket();
      if (info) this.input.push(info);
      if (restore.outputTail.length) this.decoder.write(restore.outputTail);
    }
  }

  /** Takes the unread input (for a snapshot of a stopped instance). */
  drainInput(): Uint8Array {
    return this.input.drain();
  }

  /** The start of a packet the program has partly written. */
  outputTail(): Uint8Array {
    return this.decoder.pendingBytes().slice();
  }

  inputBuffered(): number {
    return this.input.buffered();
  }

  readInput(dst: Uint8Array): number {
    const wasFull = this.input.buffered() > INPUT_LIMIT;
    const n = this.input.read(dst);
    // Reading may make output writable again for a program blocked on it.
    if (wasFull && this.input.buffered() <= INPUT_LIMIT) this.sink.inputReady();
    return n;
  }

  outputSpace(): number {
    if (this.closed || this.input.buffered() > INPUT_LIMIT) return 0;
    return Math.max(0, OUTPUT_WINDOW - this.unacked);
  }

  /** Takes program output (at most outputSpace() bytes); throws AbiViolation. */
  writeOutput(src: Uint8Array): number {
    if (this.closed) return 0;
    const n = Math.min(src.length, this.outputSpace());
    if (n > 0) this.decoder.write(n === src.length ? src : src.subarray(0, n));
    return n;
  }

  /**
   * A packet from the trusted side to the program. After the instance has
   * stopped, packets still arriving (replies that were in flight) are kept
   * for its snapshot.
   */
  deliver(packet: Uint8Array): void {
    this.input.push(packet);
    if (!this.closed) this.sink.inputReady();
  }

  ack(bytes: number): void {
    const wasFull = this.outputSpace() === 0;
    this.unacked = Math.max(0, this.unacked - bytes);
    if (wasFull && this.outputSpace() > 0) this.sink.inputReady();
  }

  /** The instance stopped: nothing more is written or woken. */
  close(): void {
    this.closed = true;
  }
}
