/**
 * Packet formats of the `peer` service (docs/services.md "peer"): calls
 * from the program, their 2-byte replies, and the INFO events the service
 * sends. Names are `u8 length, bytes`.
 */
import { Domain, HEADER_SIZE, makePacket } from '../abi/packet.js';
import { AbiViolation } from '../abi/trap.js';

/** Call ops (content byte 0; bytes 1–7 are reserved and must be zero). */
export const PeerOp = { Connect: 0, Join: 1, Leave: 2, Send: 3, Receive: 4 } as const;

/** JOIN flags. */
export const JOIN_SHARED = 1;

/** Reply codes (i16). */
export const PeerError = {
  Ok: 0,
  GroupNotFound: 2,
  PeerNotFound: 3,
  Singularity: 4,
  AlreadyConnecting: 5,
  AlreadyConnected: 6,
  AlreadyJoined: 7,
  NotPermitted: 8,
  Limit: 9,
  Busy: 10,
} as const;

/** INFO event types (content byte 4). */
export const PeerEvent = { Joined: 1, Left: 2, Request: 3, Connected: 4, Message: 5, Reset: 6 } as const;

/** DATA note of the end-of-stream the service sends when the other side is gone. */
export const NOTE_PEER_GONE = -1;

/** Call content header: op and 7 reserved bytes. */
export const CALL_HEADER = 8;
/** Event content header: i32 stream, u8 event, u8 status, u16 reserved. */
export const EVENT_HEADER = 8;

export const MAX_NAME = 255;

export type PeerCall =
  | { op: typeof PeerOp.Connect; group: string; peer: string; handshake: Uint8Array }
  | { op: typeof PeerOp.Join; group: string; flags: number }
  | { op: typeof PeerOp.Leave; group: string }
  | { op: typeof PeerOp.Send; group: string; peer: string; payload: Uint8Array }
  | { op: typeof PeerOp.Receive; count: number }
  | { op: 'unknown' };

const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

class Reader {
  pos = CALL_HEADER;
  constructor(readonly content: Uint8Array, readonly what: string) {}

  name(field: string, allowEmpty = false): string {
    if (this.pos >= this.content.length) throw this.violation(`${field} is missing`);
    const n = this.content[this.pos++]!;
    if (n === 0 && !allowEmpty) throw this.violation(`${field} is empty`);
    if (this.pos + n > this.content.length) throw this.violation(`${field} runs past the end of the packet`);
    const bytes = this.content.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return utf8.decode(bytes);
    } catch {
      throw this.violation(`${field} is not UTF-8`);
    }
  }

  bytes(field: string): Uint8Array {
    if (this.pos >= this.content.length) throw this.violation(`${field} is missing`);
    const n = this.content[this.pos++]!;
    if (this.pos + n > this.content.length) throw this.violation(`${field} runs past the end of the packet`);
    const b = this.content.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  u8(field: string): number {
    if (this.pos >= this.content.length) throw this.violation(`${field} is missing`);
    return this.content[this.pos++]!;
  }

  u32(field: string): number {
    if (this.pos + 4 > this.content.length) throw this.violation(`${field} is missing`);
    const v = new DataView(this.content.buffer, this.content.byteOffset + this.pos, 4).getUint32(0, true);
    this.pos += 4;
    return v;
  }

  rest(): Uint8Array {
    const r = this.content.subarray(this.pos);
    this.pos = this.content.length;
    return r;
  }

  end(): void {
    if (this.pos !== this.content.length) throw this.violation(`${this.content.length - this.pos} unexpected bytes at the end`);
  }

  violation(problem: string): AbiViolation {
    return new AbiViolation(`peer service: malformed ${this.what} call: ${problem}`);
  }
}

/**
 * Decodes a CALL's content. Unknown ops decode as `unknown` (answered with
 * an empty reply); a known op with malformed fields throws AbiViolation.
 */
export function decodeCall(content: Uint8Array): PeerCall {
  if (content.length < CALL_HEADER) return { op: 'unknown' };
  const op = content[0]!;
  const names = ['connect', 'join', 'leave', 'send', 'receive'];
  if (op >= names.length) return { op: 'unknown' };
  const r = new Reader(content, names[op]!);
  for (let i = 1; i < CALL_HEADER; i++) if (content[i] !== 0) throw r.violation('reserved header bytes are not zero');
  switch (op) {
    case PeerOp.Connect: {
      const call = { op, group: r.name('group'), peer: r.name('peer'), handshake: r.bytes('handshake') } as const;
      r.end();
      return call;
    }
    case PeerOp.Join: {
      const flags = r.u8('flags');
      if ((flags & ~JOIN_SHARED) !== 0) throw r.violation(`unknown flags 0x${flags.toString(16)}`);
      const call = { op, flags, group: r.name('group') } as const;
      r.end();
      return call;
    }
    case PeerOp.Leave: {
      const call = { op, group: r.name('group') } as const;
      r.end();
      return call;
    }
    case PeerOp.Send:
      return { op, group: r.name('group'), peer: r.name('peer'), payload: r.rest() };
    default: {
      const count = r.u32('count');
      r.end();
      return { op: PeerOp.Receive, count };
    }
  }
}

/** The 2-byte reply to a call. */
export function replyPacket(error: number): Uint8Array {
  const p = makePacket(HEADER_SIZE + 2, 0, Domain.Call);
  new DataView(p.buffer).setInt16(HEADER_SIZE, error, true);
  return p;
}

export function emptyReply(): Uint8Array {
  return makePacket(HEADER_SIZE, 0, Domain.Call);
}

export interface EventFields {
  stream?: number;
  event: number;
  status?: number;
  group: string;
  peer?: string;
  /** Handshake (REQUEST, CONNECTED: length-prefixed) or message payload (MESSAGE: the rest). */
  handshake?: Uint8Array;
  payload?: Uint8Array;
}

/** An INFO event: i32 stream, u8 event, u8 status, u16 0, name group, name peer, then handshake or payload. */
export function eventPacket(e: EventFields): Uint8Array {
  const group = encoder.encode(e.group);
  const peer = encoder.encode(e.peer ?? '');
  const tail = e.handshake ? 1 + e.handshake.length : (e.payload?.length ?? 0);
  const size = HEADER_SIZE + EVENT_HEADER + 1 + group.length + 1 + peer.length + tail;
  const p = makePacket(size, 0, Domain.Info);
  const v = new DataView(p.buffer);
  let o = HEADER_SIZE;
  v.setInt32(o, e.stream ?? -1, true);
  p[o + 4] = e.event;
  p[o + 5] = e.status ?? 0;
  o += EVENT_HEADER;
  p[o++] = group.length;
  p.set(group, o);
  o += group.length;
  p[o++] = peer.length;
  p.set(peer, o);
  o += peer.length;
  if (e.handshake) {
    p[o++] = e.handshake.length;
    p.set(e.handshake, o);
  } else if (e.payload) {
    p.set(e.payload, o);
  }
  return p;
}

export function utf8Length(s: string): number {
  return encoder.encode(s).length;
}
