/**
 * Service discovery, answered on the executor side (spec abi.md §9).
 *
 * The program sends a CALL packet with code −1 listing service names; every
 * name gets the next service code (in request order, across requests), and
 * the response lists the states of *all* codes allocated so far. Which names
 * are available is decided by the trusted side beforehand and handed in as a
 * set; this class only keeps the numbering and validates the request.
 */
import { GateError } from '../errors.js';
import { DISCOVERY_CODE, Domain, HEADER_SIZE, MAX_SERVICES, makePacket } from './packet.js';
import { AbiViolation } from './trap.js';

/** Offset of the u16 count in discovery requests and responses. */
const COUNT_OFFSET = HEADER_SIZE;
/** Header + u16 count. */
const DISCOVERY_HEADER_SIZE = HEADER_SIZE + 2;
const MAX_NAME_LENGTH = 127;
/** Bit 0 of a service state byte. */
export const SERVICE_STATE_AVAIL = 1;

/** One code allocated by discovery. */
export interface DiscoveryBinding {
  code: number;
  name: string;
  /**
   * Whether the program may use the service. Unavailable codes are reported
   * too, so that the trusted side can keep every code's name in order (they
   * are part of a suspended instance's service list).
   */
  available: boolean;
}

export interface DiscoveryResult {
  /** The response packet (exact size, no padding) to queue to the program. */
  response: Uint8Array;
  /** Codes allocated by this request, in code order. */
  bound: DiscoveryBinding[];
}

// fatal: a name that is not valid UTF-8 cannot equal any registered name, and
// lossy decoding could make two different byte strings look alike.
// ignoreBOM: keep a leading U+FEFF instead of silently dropping it (same reason).
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lossyDecoder = new TextDecoder('utf-8', { ignoreBOM: true });

export class ServiceDiscovery {
  private readonly available: ReadonlySet<string>;
  private readonly serviceNames: string[] = [];
  private readonly states: number[] = [];
  /** Names bound to an available code; discovering one again is a violation. */
  private readonly boundAvailable = new Set<string>();

  /**
   * @param available names the program may discover in this run.
   * @param restored names of the codes discovered before the instance was
   *   suspended, in code order (from the snapshot). They keep their codes;
   *   availability is re-evaluated against `available`. If a name occurs more
   *   than once, only its first code can be available — the same rule as
   *   discovery itself, so that one service never serves two codes.
   */
  constructor(available: ReadonlySet<string>, restored: readonly string[] = []) {
    if (restored.length > MAX_SERVICES) {
      throw new GateError(
        'GATE_DISCOVERY_RESTORE',
        `cannot restore ${restored.length} service bindings: a program may discover at most ${MAX_SERVICES} services`,
      );
    }
    this.available = available;
    for (const name of restored) this.allocate(name, available.has(name) && !this.boundAvailable.has(name));
  }

  /** Number of codes allocated so far. */
  get count(): number {
    return this.serviceNames.length;
  }

  isAvailable(code: number): boolean {
    return this.states[code] === SERVICE_STATE_AVAIL;
  }

  /** Names of all allocated codes, in code order (undecodable names are shown lossily; they are never available). */
  names(): string[] {
    return this.serviceNames.slice();
  }

  /**
   * Handles one discovery request (exact packet, header included; padding
   * beyond the header's size is ignored). Throws AbiViolation with the
   * runtime's messages (abi.md §8.2) for malformed requests.
   */
  handleRequest(packet: Uint8Array): DiscoveryResult {
    if (packet.length < HEADER_SIZE) {
      // The stream decoder never passes such a packet; callers outside it might.
      throw new AbiViolation(`service discovery packet is too short: ${packet.length} bytes`);
    }
    const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
    const size = Math.min(view.getUint32(0, true), packet.length);
    const domain = packet[6]! & 0x0f;
    if (domain !== Domain.Call) {
      throw new AbiViolation(`service discovery packet has wrong domain: ${domain}`);
    }
    if (size < DISCOVERY_HEADER_SIZE) {
      throw new AbiViolation(`service discovery packet is too short: ${size} bytes`);
    }

    // Beyond 256 codes only the first names are processed; the rest are not
    // even parsed (the program learns this from the response count).
    const requested = view.getUint16(COUNT_OFFSET, true);
    const accepted = Math.min(requested, MAX_SERVICES - this.count);

    const names: Uint8Array[] = [];
    let off = DISCOVERY_HEADER_SIZE;
    for (let i = 0; i < accepted; i++) {
      if (off >= size) throw new AbiViolation('name data is truncated in service discovery packet');
      const len = packet[off]!;
      off++;
      if (len === 0 || len > MAX_NAME_LENGTH) {
        throw new AbiViolation('service name length in discovery packet is out of bounds');
      }
      if (size - off < len) throw new AbiViolation('name data is truncated in service discovery packet');
      names.push(packet.subarray(off, off + len));
      off += len;
    }

    // Decide everything before committing, so that a violation leaves no trace.
    const decided: Array<{ name: string; available: boolean }> = [];
    const seen = new Set<string>();
    for (const bytes of names) {
      let name: string;
      let decodable = true;
      try {
        name = strictDecoder.decode(bytes);
      } catch {
        name = lossyDecoder.decode(bytes);
        decodable = false;
      }
      const available = decodable && this.available.has(name);
      if (available) {
        if (this.boundAvailable.has(name) || seen.has(name)) throw new AbiViolation('duplicate service');
        seen.add(name);
      }
      decided.push({ name, available });
    }

    const bound: DiscoveryBinding[] = [];
    for (const d of decided) bound.push({ code: this.allocate(d.name, d.available), name: d.name, available: d.available });
    return { response: this.statesPacket(Domain.Call), bound };
  }

  /**
   * The INFO-domain service state packet (abi.md §9.3) queued to the program
   * when a run starts with services already discovered (resume/restore);
   * undefined when nothing has been discovered.
   */
  stateInfoPacket(): Uint8Array | undefined {
    return this.count === 0 ? undefined : this.statesPacket(Domain.Info);
  }

  private allocate(name: string, available: boolean): number {
    const code = this.serviceNames.length;
    this.serviceNames.push(name);
    this.states.push(available ? SERVICE_STATE_AVAIL : 0);
    if (available) this.boundAvailable.add(name);
    return code;
  }

  private statesPacket(domain: number): Uint8Array {
    const count = this.count;
    const p = makePacket(DISCOVERY_HEADER_SIZE + count, DISCOVERY_CODE, domain);
    new DataView(p.buffer).setUint16(COUNT_OFFSET, count, true);
    for (let i = 0; i < count; i++) p[DISCOVERY_HEADER_SIZE + i] = this.states[i]!;
    return p;
  }
}
