/**
 * Packet wire format (spec abi.md §8): 8-byte little-endian header
 * `u32 size, i16 code, u8 domain, u8 index`, content, then zero padding to a
 * multiple of 8 bytes in the stream.
 */
export const HEADER_SIZE = 8;
export const MAX_PACKET_SIZE = 65536;
/** Content offset of DATA packets (header + i32 id + i32 note). */
export const DATA_HEADER_SIZE = 16;

export const Domain = { Call: 0, Info: 1, Flow: 2, Data: 3 } as const;
export type DomainCode = (typeof Domain)[keyof typeof Domain];

/** Service code of discovery packets. */
export const DISCOVERY_CODE = -1;
export const MAX_SERVICES = 256;

export interface PacketHeader {
  size: number;
  code: number;
  domain: number;
  index: number;
}

export function align8(n: number): number {
  return (n + 7) & ~7;
}

export function readHeader(p: Uint8Array, offset = 0): PacketHeader {
  const v = new DataView(p.buffer, p.byteOffset + offset, HEADER_SIZE);
  return { size: v.getUint32(0, true), code: v.getInt16(4, true), domain: v.getUint8(6), index: v.getUint8(7) };
}

/** A new packet of `size` bytes (header included) with the header filled in. */
export function makePacket(size: number, code: number, domain: number, index = 0): Uint8Array {
  const p = new Uint8Array(size);
  const v = new DataView(p.buffer);
  v.setUint32(0, size, true);
  v.setInt16(4, code, true);
  v.setUint8(6, domain);
  v.setUint8(7, index);
  return p;
}

export function packetCode(p: Uint8Array): number {
  return new DataView(p.buffer, p.byteOffset, HEADER_SIZE).getInt16(4, true);
}

export function packetDomain(p: Uint8Array): number {
  return p[6]! & 0x0f;
}

export function setPacketCode(p: Uint8Array, code: number): void {
  new DataView(p.buffer, p.byteOffset, HEADER_SIZE).setInt16(4, code, true);
}

/** A CALL packet carrying `content`. */
export function callPacket(code: number, content: Uint8Array = new Uint8Array(0), index = 0): Uint8Array {
  const p = makePacket(HEADER_SIZE + content.length, code, Domain.Call, index);
  p.set(content, HEADER_SIZE);
  return p;
}

export function infoPacket(code: number, content: Uint8Array = new Uint8Array(0)): Uint8Array {
  const p = makePacket(HEADER_SIZE + content.length, code, Domain.Info);
  p.set(content, HEADER_SIZE);
  return p;
}

export interface FlowEntry {
  id: number;
  value: number;
}

export function flowPacket(code: number, entries: FlowEntry[]): Uint8Array {
  const p = makePacket(HEADER_SIZE + entries.length * 8, code, Domain.Flow);
  const v = new DataView(p.buffer);
  entries.forEach((e, i) => {
    v.setInt32(HEADER_SIZE + i * 8, e.id, true);
    v.setInt32(HEADER_SIZE + i * 8 + 4, e.value, true);
  });
  return p;
}

export function readFlowEntries(p: Uint8Array): FlowEntry[] {
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const size = Math.min(v.getUint32(0, true), p.byteLength);
  const out: FlowEntry[] = [];
  for (let off = HEADER_SIZE; off + 8 <= size; off += 8) {
    out.push({ id: v.getInt32(off, true), value: v.getInt32(off + 4, true) });
  }
  return out;
}

export function dataPacket(code: number, id: number, data: Uint8Array = new Uint8Array(0), note = 0): Uint8Array {
  const p = makePacket(DATA_HEADER_SIZE + data.length, code, Domain.Data);
  const v = new DataView(p.buffer);
  v.setInt32(8, id, true);
  v.setInt32(12, note, true);
  p.set(data, DATA_HEADER_SIZE);
  return p;
}

export interface DataPacketFields {
  id: number;
  note: number;
  data: Uint8Array;
}

export function readDataPacket(p: Uint8Array): DataPacketFields {
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const size = Math.min(v.getUint32(0, true), p.byteLength);
  return { id: v.getInt32(8, true), note: v.getInt32(12, true), data: p.subarray(DATA_HEADER_SIZE, size) };
}

/** Content bytes of a packet (after the header, before padding). */
export function packetContent(p: Uint8Array): Uint8Array {
  const size = new DataView(p.buffer, p.byteOffset, HEADER_SIZE).getUint32(0, true);
  return p.subarray(HEADER_SIZE, Math.min(size, p.byteLength));
}
