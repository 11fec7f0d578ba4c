/** Builders for program-side packets used by the stream tests. */
import { DISCOVERY_CODE, Domain, makePacket } from '../../src/abi/packet.js';

const encoder = new TextEncoder();

/** A discovery request (exact size) for `names`; `count` overrides the u16 count field. */
export function discoveryRequest(names: Array<string | Uint8Array>, count = names.length, domain: number = Domain.Call): Uint8Array {
  const encoded = names.map((n) => (typeof n === 'string' ? encoder.encode(n) : n));
  const size = 10 + encoded.reduce((s, n) => s + 1 + n.length, 0);
  const p = makePacket(size, DISCOVERY_CODE, domain);
  new DataView(p.buffer).setUint16(8, count, true);
  let off = 10;
  for (const n of encoded) {
    p[off++] = n.length;
    p.set(n, off);
    off += n.length;
  }
  return p;
}

/** Parses a discovery response/state packet into [domain, states]. */
export function parseStates(p: Uint8Array): { domain: number; count: number; states: number[]; size: number } {
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const count = v.getUint16(8, true);
  return { domain: p[6]!, count, states: [...p.subarray(10, 10 + count)], size: v.getUint32(0, true) };
}

/** The stream form of packets: each padded with zeros to 8 bytes. */
export function frame(...packets: Uint8Array[]): Uint8Array {
  const total = packets.reduce((s, p) => s + ((p.length + 7) & ~7), 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of packets) {
    out.set(p, off);
    off += (p.length + 7) & ~7;
  }
  return out;
}
