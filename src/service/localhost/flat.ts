/**
 * The FlatBuffers encoding of the localhost service's schema (the original's
 * localhost/localhost.fbs), written out by hand: it is four small tables.
 *
 *   table Request  { method:string; uri:string; content_type:string; body:[ubyte]; }
 *   table Response { status_code:uint16; content_type:string; body:[ubyte]; }
 *   union Function { Request }
 *   table Call     { function:Function; }   // fields: function_type (ubyte), function (table)
 *
 * The reader checks every offset against the buffer: the program wrote it,
 * and a malformed buffer is its protocol error, never an exception elsewhere.
 */

/** A buffer that is not a valid FlatBuffers `Call`. */
export class FlatBufferError extends Error {}

export interface LocalhostRequest {
  method: string;
  uri: string;
  contentType: string;
  body: Uint8Array;
}

export interface LocalhostResponse {
  statusCode: number;
  contentType?: string;
  body?: Uint8Array;
}

/** Union type of Function's Request member. */
const FUNCTION_REQUEST = 1;

class Reader {
  private readonly view: DataView;
  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  private check(pos: number, size: number): void {
    if (!Number.isSafeInteger(pos) || pos < 0 || pos + size > this.buf.length) throw new FlatBufferError(`offset ${pos} (+${size}) is outside the ${this.buf.length}-byte buffer`);
  }

  u8(pos: number): number {
    this.check(pos, 1);
    return this.view.getUint8(pos);
  }
  u16(pos: number): number {
    this.check(pos, 2);
    return this.view.getUint16(pos, true);
  }
  u32(pos: number): number {
    this.check(pos, 4);
    return this.view.getUint32(pos, true);
  }
  i32(pos: number): number {
    this.check(pos, 4);
    return this.view.getInt32(pos, true);
  }

  /** The position of the table a uoffset at `pos` points to. */
  indirect(pos: number): number {
    const target = pos + this.u32(pos);
    this.check(target, 4);
    return target;
  }

  /** Position of field `id` of the table at `table`, or undefined when absent. */
  field(table: number, id: number): number | undefined {
    const vtable = table - this.i32(table);
    const vsize = this.u16(vtable);
    if (vsize < 4 || vsize % 2 !== 0) throw new FlatBufferError(`vtable size ${vsize} is invalid`);
    const tsize = this.u16(vtable + 2);
    const slot = 4 + 2 * id;
    if (slot + 2 > vsize) return undefined;
    const off = this.u16(vtable + slot);
    if (off === 0) return undefined;
    if (off >= tsize) throw new FlatBufferError(`field offset ${off} is outside its ${tsize}-byte table`);
    return table + off;
  }

  /** A [ubyte] or string field: its bytes (a view), or undefined when absent. */
  bytes(table: number, id: number): Uint8Array | undefined {
    const f = this.field(table, id);
    if (f === undefined) return undefined;
    const vec = this.indirect(f);
    const len = this.u32(vec);
    this.check(vec + 4, len);
    return this.buf.subarray(vec + 4, vec + 4 + len);
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function text(bytes: Uint8Array | undefined, what: string): string {
  if (bytes === undefined) return '';
  try {
    return decoder.decode(bytes);
  } catch {
    throw new FlatBufferError(`${what} is not UTF-8`);
  }
}

/**
 * Decodes a `Call` buffer: its Request, or undefined when the Call has no
 * function of a known type. Throws FlatBufferError for a malformed buffer.
 */
export function decodeCall(buf: Uint8Array): LocalhostRequest | undefined {
  const r = new Reader(buf);
  const call = r.indirect(0);
  const typeField = r.field(call, 0);
  const functionType = typeField === undefined ? 0 : r.u8(typeField);
  const fnField = r.field(call, 1);
  if (functionType !== FUNCTION_REQUEST || fnField === undefined) return undefined;
  const req = r.indirect(fnField);
  return {
    method: text(r.bytes(req, 0), 'Request.method'),
    uri: text(r.bytes(req, 1), 'Request.uri'),
    contentType: text(r.bytes(req, 2), 'Request.content_type'),
    body: r.bytes(req, 3) ?? new Uint8Array(0),
  };
}

/** Decodes a `Response` buffer (tests, and clients written in TypeScript). */
export function decodeResponse(buf: Uint8Array): LocalhostResponse {
  const r = new Reader(buf);
  const res = r.indirect(0);
  const status = r.field(res, 0);
  const out: LocalhostResponse = { statusCode: status === undefined ? 0 : r.u16(status) };
  const ct = r.bytes(res, 1);
  if (ct !== undefined) out.contentType = text(ct, 'Response.content_type');
  const body = r.bytes(res, 2);
  if (body !== undefined) out.body = body.slice();
  return out;
}

const encoder = new TextEncoder();

/** One field of a table being encoded: its id in the schema, its kind and value. */
interface FieldSpec {
  id: number;
  kind: 'u8' | 'u16' | 'vector' | 'string' | 'table';
  value: number | Uint8Array;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

/**
 * Lays out one table followed by its out-of-line data:
 *   root uoffset | vtable | table (soffset, then 4-, 2- and 1-byte slots) | vectors and nested tables
 * Everything out of line starts 4-byte aligned; strings end with a NUL as
 * FlatBuffers requires. A `table` field's value is a buffer encodeTable made.
 */
function encodeTable(fields: FieldSpec[]): Uint8Array {
  const maxId = fields.reduce((m, f) => Math.max(m, f.id), -1);
  const vsize = 4 + 2 * (maxId + 1);
  const vtablePos = 4;
  const tablePos = align4(vtablePos + vsize);
  // Table layout: soffset, then the 4-byte offsets, then 2-byte, then 1-byte scalars.
  const order = [...fields].sort((a, b) => size(b) - size(a));
  const slot = new Map<FieldSpec, number>();
  let tsize = 4;
  for (const f of order) {
    const s = size(f);
    tsize = (tsize + s - 1) & ~(s - 1);
    slot.set(f, tsize);
    tsize += s;
  }
  let pos = align4(tablePos + tsize);
  const vectorPos = new Map<FieldSpec, number>();
  for (const f of order) {
    if (f.kind === 'vector' || f.kind === 'string') {
      vectorPos.set(f, pos);
      pos = align4(pos + 4 + (f.value as Uint8Array).length + (f.kind === 'string' ? 1 : 0));
    } else if (f.kind === 'table') {
      vectorPos.set(f, pos);
      pos = align4(pos + (f.value as Uint8Array).length);
    }
  }
  const buf = new Uint8Array(pos);
  const v = new DataView(buf.buffer);
  v.setUint32(0, tablePos, true);
  v.setUint16(vtablePos, vsize, true);
  v.setUint16(vtablePos + 2, tsize, true);
  for (const f of fields) v.setUint16(vtablePos + 4 + 2 * f.id, slot.get(f)!, true);
  v.setInt32(tablePos, tablePos - vtablePos, true);
  for (const f of order) {
    const at = tablePos + slot.get(f)!;
    if (f.kind === 'u8') v.setUint8(at, f.value as number);
    else if (f.kind === 'u16') v.setUint16(at, f.value as number, true);
    else {
      const target = vectorPos.get(f)!;
      v.setUint32(at, target - at, true);
      const bytes = f.value as Uint8Array;
      if (f.kind === 'table') {
        // A nested table encoded by encodeTable: its root offset is relative to its own start.
        const inner = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        v.setUint32(at, target + inner.getUint32(0, true) - at, true);
        buf.set(bytes, target); // (its own root offset stays behind as unused bytes)
      } else {
        v.setUint32(target, bytes.length, true);
        buf.set(bytes, target + 4);
      }
    }
  }
  return buf;
}

function size(f: FieldSpec): number {
  return f.kind === 'u8' ? 1 : f.kind === 'u16' ? 2 : 4;
}

/** Encodes a `Response` (the service's reply content). */
export function encodeResponse(res: LocalhostResponse): Uint8Array {
  const fields: FieldSpec[] = [{ id: 0, kind: 'u16', value: res.statusCode }];
  if (res.contentType !== undefined && res.contentType !== '') fields.push({ id: 1, kind: 'string', value: encoder.encode(res.contentType) });
  if (res.body !== undefined && res.body.length > 0) fields.push({ id: 2, kind: 'vector', value: res.body });
  return encodeTable(fields);
}

/** Encodes a `Call{function: Request}` (what a program sends; tests and TypeScript clients). */
export function encodeCall(req: LocalhostRequest): Uint8Array {
  const fields: FieldSpec[] = [];
  if (req.method !== '') fields.push({ id: 0, kind: 'string', value: encoder.encode(req.method) });
  if (req.uri !== '') fields.push({ id: 1, kind: 'string', value: encoder.encode(req.uri) });
  if (req.contentType !== '') fields.push({ id: 2, kind: 'string', value: encoder.encode(req.contentType) });
  if (req.body.length > 0) fields.push({ id: 3, kind: 'vector', value: req.body });
  const request = encodeTable(fields);
  return encodeTable([
    { id: 0, kind: 'u8', value: FUNCTION_REQUEST },
    { id: 1, kind: 'table', value: request },
  ]);
}

/** Bytes a Response adds around its content type and body (header, vtable, table, vector lengths, padding). */
export const RESPONSE_OVERHEAD = 64;
