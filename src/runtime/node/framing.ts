/**
 * Message framing between the trusted process and an executor process:
 * `u32 length` (of the rest), `u32 headerLength`, a JSON header, then an
 * optional binary payload. Both sides treat a malformed frame as fatal for
 * the connection (the executor is not trusted; the parent kills it).
 */
export interface Message {
  header: Record<string, unknown> & { t: string };
  payload?: Uint8Array;
}

/** Large enough for a whole 2 GiB memory in one snapshot message. */
export const MAX_FRAME = 2 ** 32 - 1;

export class FrameError extends Error {}

/** One frame as a single buffer. */
export function encodeFrame(header: Message['header'], payload?: Uint8Array | Uint8Array[]): Buffer {
  const pieces = encodeFramePieces(header, payload);
  return Buffer.concat(pieces);
}

/** Payloads above this size are written as pieces rather than joined into one buffer. */
const JOIN_LIMIT = 1024 * 1024;

/**
 * One frame as pieces to write in order: the head (lengths and header), then
 * the payload's parts as they are when they are large (a snapshot's memory is
 * not copied once more just to be framed).
 */
/**
 * Writes to `stream` corked until the end of this tick, so that the frames
 * one turn of the event loop produces (a call makes several) leave in one
 * write: each write to the pipe wakes the process at the other end.
 */
export function corkedWrite(stream: NodeJS.WritableStream & { cork(): void; uncork(): void; writableCorked: number }, chunk: Uint8Array): void {
  if (stream.writableCorked === 0) {
    stream.cork();
    process.nextTick(() => stream.uncork());
  }
  stream.write(chunk);
}

export function encodeFramePieces(header: Message['header'], payload?: Uint8Array | Uint8Array[]): Uint8Array[] {
  // The header is padded with spaces to a multiple of 8 bytes, so that the
  // payload starts 8-byte aligned in the frame (typed-array views need that).
  const json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json);
  const hlen = jsonBytes + ((8 - (jsonBytes % 8)) % 8);
  const parts = payload === undefined ? [] : Array.isArray(payload) ? payload : [payload];
  let plen = 0;
  for (const p of parts) plen += p.length;
  const joined = plen <= JOIN_LIMIT;
  const head = Buffer.allocUnsafe(8 + hlen + (joined ? plen : 0));
  head.writeUInt32LE(4 + hlen + plen, 0);
  head.writeUInt32LE(hlen, 4);
  head.write(json, 8);
  head.fill(0x20, 8 + jsonBytes, 8 + hlen);
  if (!joined) return [head, ...parts.filter((p) => p.length > 0)];
  let off = 8 + hlen;
  for (const p of parts) {
    head.set(p, off);
    off += p.length;
  }
  return [head];
}

/** Payloads above this size are handed out as views of the frame instead of copies. */
const COPY_LIMIT = 1024 * 1024;

/**
 * What a decoder accepts. The parent decodes what an untrusted executor
 * sends: it bounds the header, and once the header is in, the payload by what
 * a message of that type may legitimately carry, before buffering it.
 */
export interface FrameLimits {
  /** Most bytes of JSON header. */
  maxHeaderBytes: number;
  /** Most payload bytes for a message with this header; throw a FrameError to refuse the message outright. */
  maxPayloadBytes(header: Message['header']): number;
}

/** No bounds but the frame format's own (the executor decodes what its trusted parent sends). */
export const TRUSTED_FRAME_LIMITS: FrameLimits = { maxHeaderBytes: MAX_FRAME, maxPayloadBytes: () => MAX_FRAME };

/** Accumulates stream chunks and yields complete messages. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The header of the frame being received, once it is in and accepted. */
  private pending: { header: Message['header']; frameLength: number; headerLength: number } | undefined;

  constructor(private readonly limits: FrameLimits = TRUSTED_FRAME_LIMITS) {}

  /** Bytes held for incomplete frames (bounded by the limits). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): Message[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Message[] = [];
    for (;;) {
      if (!this.pending) {
        if (this.buffered < 8) break;
        const head = this.peek(8);
        const len = head.readUInt32LE(0);
        const hlen = head.readUInt32LE(4);
        if (len < 4 || len > MAX_FRAME) throw new FrameError(`invalid frame length ${len}`);
        if (hlen > len - 4) throw new FrameError(`invalid frame header length ${hlen} (the frame has ${len - 4} bytes after it)`);
        if (hlen > this.limits.maxHeaderBytes) throw new FrameError(`frame header of ${hlen} bytes is over the limit of ${this.limits.maxHeaderBytes}`);
        if (this.buffered < 8 + hlen) break;
        const header = parseHeader(this.peek(8 + hlen).subarray(8, 8 + hlen));
        const payloadLength = len - 4 - hlen;
        const max = this.limits.maxPayloadBytes(header);
        if (payloadLength > max) throw new FrameError(`a ${quoteType(header.t)} message with ${payloadLength} bytes of payload is over its limit of ${max}`);
        this.pending = { header, frameLength: len, headerLength: hlen };
      }
      const { header, frameLength, headerLength } = this.pending;
      if (this.buffered < 4 + frameLength) break;
      this.pending = undefined;
      const payload = this.take(4 + frameLength).subarray(8 + headerLength);
      // Small payloads (packets) are copied so that they do not pin the
      // frame's buffer; a large one (a snapshot's memory) is used in place.
      // (A plain Uint8Array view, not a Buffer: Buffer#slice does not copy.)
      const owned = payload.length > COPY_LIMIT ? new Uint8Array(payload.buffer, payload.byteOffset, payload.length) : new Uint8Array(payload);
      out.push({ header, payload: payload.length ? owned : undefined });
    }
    return out;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered -= n;
    return out;
  }
}

/** A message type for an error message: quoted, and short even when an executor sent a long one. */
export function quoteType(t: string): string {
  return JSON.stringify(t.length > 40 ? `${t.slice(0, 40)}…` : t);
}

function parseHeader(bytes: Buffer): Message['header'] {
  let header: unknown;
  try {
    header = JSON.parse(bytes.toString());
  } catch {
    throw new FrameError('frame header is not JSON');
  }
  if (typeof header !== 'object' || header === null || typeof (header as { t?: unknown }).t !== 'string') {
    throw new FrameError('frame header has no type');
  }
  return header as Message['header'];
}

/** Several byte arrays in one payload: their lengths go in the header (encodeFrame joins them). */
export function packParts(parts: Uint8Array[]): { lengths: number[]; payload: Uint8Array[] } {
  return { lengths: parts.map((p) => p.length), payload: parts };
}

export function unpackParts(lengths: unknown, payload: Uint8Array | undefined): Uint8Array[] {
  if (!Array.isArray(lengths) || !lengths.every((n) => Number.isInteger(n) && n >= 0)) throw new FrameError('invalid part lengths');
  const data = payload ?? new Uint8Array(0);
  if ((lengths as number[]).reduce((a, b) => a + b, 0) !== data.length) throw new FrameError('part lengths do not match the payload');
  const out: Uint8Array[] = [];
  let off = 0;
  for (const n of lengths as number[]) {
    out.push(data.subarray(off, off + n));
    off += n;
  }
  return out;
}
