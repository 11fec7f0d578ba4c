/**
 * The heads the `endpoint` service exchanges with a program at the start of
 * each request stream (docs/services.md, sdk/c/gate-endpoint.h): the request
 * head the program reads before the request body, and the response head it
 * writes before the response body. All integers little-endian.
 *
 *   request head:  u32 size, u16 method_len, u16 header_count, u32 target_len,
 *                  u32 reserved (0), u64 body_size; method, target; headers
 *   response head: u32 size, u16 status, u16 header_count; headers
 *   header:        u16 name_len, u16 value_len, name, value
 *
 * `size` is the whole head's, its fixed part included.
 */
import { AbiViolation } from '../abi/trap.js';

export const REQUEST_HEAD_FIXED_SIZE = 24;
export const RESPONSE_HEAD_FIXED_SIZE = 8;
/** Largest request head a program is sent (the HTTP side answers 431 for more). */
export const MAX_REQUEST_HEAD_SIZE = 65536;
/** Largest response head a program may send. */
export const MAX_RESPONSE_HEAD_SIZE = 16384;

export type HeaderList = Array<[name: string, value: string]>;

export interface RequestHead {
  method: string;
  /** Path and query after /gate-0/endpoint/<id>, exactly as the client sent them (starts with `/`). */
  target: string;
  /** Lower-case names, in the client's order (repeated names stay separate). */
  headers: HeaderList;
  bodySize: number;
}

export interface ResponseHead {
  status: number;
  headers: HeaderList;
}

/** Bytes of a string that holds one byte per character (how Node gives the request line and header fields). */
function bytesOf(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** The request head as the program reads it (strings of one byte per character); undefined if it would exceed MAX_REQUEST_HEAD_SIZE or a field its length. */
export function encodeRequestHead(h: RequestHead): Uint8Array | undefined {
  const method = bytesOf(h.method);
  const target = bytesOf(h.target);
  const headers = h.headers.map(([n, v]) => [bytesOf(n), bytesOf(v)] as const);
  let size = REQUEST_HEAD_FIXED_SIZE + method.length + target.length;
  for (const [n, v] of headers) {
    if (n.length > 0xffff || v.length > 0xffff) return undefined;
    size += 4 + n.length + v.length;
  }
  if (size > MAX_REQUEST_HEAD_SIZE || method.length > 0xffff || headers.length > 0xffff) return undefined;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, size, true);
  view.setUint16(4, method.length, true);
  view.setUint16(6, headers.length, true);
  view.setUint32(8, target.length, true);
  view.setBigUint64(16, BigInt(h.bodySize), true);
  let at = REQUEST_HEAD_FIXED_SIZE;
  out.set(method, at);
  at += method.length;
  out.set(target, at);
  at += target.length;
  for (const [n, v] of headers) {
    view.setUint16(at, n.length, true);
    view.setUint16(at + 2, v.length, true);
    out.set(n, at + 4);
    out.set(v, at + 4 + n.length);
    at += 4 + n.length + v.length;
  }
  return out;
}

/**
 * Response headers the server sets or refuses to take from a program: the
 * message framing and connection are the server's, and `gate-*` names are
 * reserved for it.
 */
const RESERVED = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'proxy-connection']);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Visible ASCII, space and tab (and obs-text), never CR, LF or NUL. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Reads a complete response head (`bytes.length` is its `size`). Anything
 * malformed is the program's ABI violation.
 */
export function decodeResponseHead(bytes: Uint8Array): ResponseHead {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const status = view.getUint16(4, true);
  const count = view.getUint16(6, true);
  if (status < 200 || status > 599) throw new AbiViolation(`endpoint response status ${status} is not within 200-599`);
  const headers: HeaderList = [];
  let at = RESPONSE_HEAD_FIXED_SIZE;
  for (let i = 0; i < count; i++) {
    if (at + 4 > bytes.length) throw new AbiViolation('endpoint response head is shorter than its headers');
    const nameLen = view.getUint16(at, true);
    const valueLen = view.getUint16(at + 2, true);
    at += 4;
    if (at + nameLen + valueLen > bytes.length) throw new AbiViolation('endpoint response head is shorter than its headers');
    const name = latin1(bytes.subarray(at, at + nameLen));
    const value = latin1(bytes.subarray(at + nameLen, at + nameLen + valueLen));
    at += nameLen + valueLen;
    if (!TOKEN.test(name)) throw new AbiViolation(`endpoint response header name ${JSON.stringify(name)} is not an HTTP token`);
    if (!FIELD_VALUE.test(value)) throw new AbiViolation(`endpoint response header ${name} has a value with control characters`);
    const lower = name.toLowerCase();
    if (RESERVED.has(lower) || lower.startsWith('gate-')) throw new AbiViolation(`endpoint response header ${name} is the server's to set`);
    headers.push([name, value]);
  }
  if (at !== bytes.length) throw new AbiViolation(`endpoint response head has ${bytes.length - at} bytes after its headers`);
  return { status, headers };
}

/** Reads the `size` of a response head from its first four bytes; an impossible size is the program's ABI violation. */
export function responseHeadSize(first4: Uint8Array): number {
  const size = new DataView(first4.buffer, first4.byteOffset, 4).getUint32(0, true);
  if (size < RESPONSE_HEAD_FIXED_SIZE || size > MAX_RESPONSE_HEAD_SIZE) {
    throw new AbiViolation(`endpoint response head size ${size} is not within ${RESPONSE_HEAD_FIXED_SIZE}-${MAX_RESPONSE_HEAD_SIZE}`);
  }
  return size;
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (const c of b) s += String.fromCharCode(c);
  return s;
}
