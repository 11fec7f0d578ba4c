/**
 * Instruction decoder for function bodies.
 *
 * This is the single place that knows how long every supported instruction
 * is. Validation uses it to reject instructions outside Gate's feature set;
 * the preparation pipeline uses it to find loop headers and call sites. It is
 * built for speed (a table lookup and a jump per instruction, no allocation):
 * LEB128 values are returned through a module-level variable instead of a
 * result object, and a body decodes into a reusable list of instruction
 * starts (InstructionList) that several passes can walk without decoding
 * again.
 *
 * Supported: WebAssembly 1.0 (MVP), sign-extension (0xC0–0xC4), non-trapping
 * float-to-int (0xFC 0–7) and bulk memory (0xFC 8–14). Everything else is
 * rejected with a ModuleError naming the function and the byte offset.
 * Semantic validation (types, indexes, label depths) is left to the engine.
 */
import { SectionId, type FunctionBody, type WasmModule } from './module.js';
import { ModuleError } from './errors.js';
import { u32At } from './leb128.js';

/**
 * Called once per instruction, in order. `pos` is the offset of the opcode
 * byte in the module, `immEnd` the offset just after the instruction's
 * immediates. For 0xFC-prefixed instructions `opcode` is 0xFC and
 * `subopcode` the u32 after the prefix; otherwise `subopcode` is -1.
 * The function's final `end` is visited too.
 */
export type InstructionVisitor = (opcode: number, subopcode: number, pos: number, immEnd: number) => void;

export const Opcode = {
  Unreachable: 0x00,
  Nop: 0x01,
  Block: 0x02,
  Loop: 0x03,
  If: 0x04,
  Else: 0x05,
  End: 0x0b,
  Br: 0x0c,
  BrIf: 0x0d,
  BrTable: 0x0e,
  Return: 0x0f,
  Call: 0x10,
  CallIndirect: 0x11,
  Drop: 0x1a,
  Select: 0x1b,
  LocalGet: 0x20,
  LocalSet: 0x21,
  LocalTee: 0x22,
  GlobalGet: 0x23,
  GlobalSet: 0x24,
  MemorySize: 0x3f,
  MemoryGrow: 0x40,
  I32Const: 0x41,
  I64Const: 0x42,
  F32Const: 0x43,
  F64Const: 0x44,
  I32Eqz: 0x45,
  I32Ne: 0x47,
  I32LtS: 0x48,
  I32LtU: 0x49,
  I32LeS: 0x4c,
  I32GeU: 0x4f,
  I32Add: 0x6a,
  I32Sub: 0x6b,
  I32ShrU: 0x76,
  PrefixFC: 0xfc,
} as const;

/** Sub-opcodes of the 0xFC prefix that Gate accepts: 0–7 are the saturating float-to-int conversions, then bulk memory. */
export const SubopcodeFC = {
  MemoryInit: 8,
  DataDrop: 9,
  MemoryCopy: 10,
  MemoryFill: 11,
  TableInit: 12,
  ElemDrop: 13,
  TableCopy: 14,
} as const;

// Immediate kinds; 0 (the table default) marks an opcode that is not supported.
const K_NONE = 1;
const K_BLOCK = 2;
const K_END = 3;
const K_U32 = 4;
const K_BR_TABLE = 5;
const K_CALL_INDIRECT = 6;
const K_MEMARG = 7;
const K_ZERO = 8;
const K_S32 = 9;
const K_S64 = 10;
const K_F32 = 11;
const K_F64 = 12;
const K_PREFIX_FC = 13;

const KIND = new Uint8Array(256);
const REASON: (string | undefined)[] = new Array<string | undefined>(256);

function fill(from: number, to: number, kind: number): void {
  for (let i = from; i <= to; i++) KIND[i] = kind;
}
function reason(ops: readonly number[], why: string): void {
  for (const op of ops) REASON[op] = why;
}

fill(0x00, 0x01, K_NONE); // unreachable, nop
fill(0x02, 0x04, K_BLOCK); // block, loop, if
KIND[0x05] = K_NONE; // else
KIND[0x0b] = K_END;
KIND[0x0c] = K_U32; // br
KIND[0x0d] = K_U32; // br_if
KIND[0x0e] = K_BR_TABLE;
KIND[0x0f] = K_NONE; // return
KIND[0x10] = K_U32; // call
KIND[0x11] = K_CALL_INDIRECT;
KIND[0x1a] = K_NONE; // drop
KIND[0x1b] = K_NONE; // select
fill(0x20, 0x24, K_U32); // local.get/set/tee, global.get/set
fill(0x28, 0x3e, K_MEMARG); // loads and stores
KIND[0x3f] = K_ZERO; // memory.size
KIND[0x40] = K_ZERO; // memory.grow
KIND[0x41] = K_S32;
KIND[0x42] = K_S64;
KIND[0x43] = K_F32;
KIND[0x44] = K_F64;
fill(0x45, 0xbf, K_NONE); // numeric
fill(0xc0, 0xc4, K_NONE); // sign-extension
KIND[0xfc] = K_PREFIX_FC;

reason([0x06, 0x07, 0x08, 0x09, 0x0a, 0x18, 0x19, 0x1f], 'exception handling instructions are not supported');
reason([0x12, 0x13], 'tail calls are not supported');
reason([0x14, 0x15, 0xd3, 0xd4, 0xd5, 0xd6], 'typed function references are not supported');
reason([0x1c, 0x25, 0x26, 0xd0, 0xd1, 0xd2], 'reference types are not supported');
reason([0xfb], 'garbage collection instructions are not supported');
reason([0xfd], 'SIMD instructions are not supported');
reason([0xfe], 'threads (atomic instructions) are not supported');

/** Last value decoded by readU32 (a side channel so that decoding allocates nothing). */
let lebValue = 0;

function where(funcIndex: number): string {
  return funcIndex >= 0 ? `function ${funcIndex}` : 'function body';
}

function truncated(funcIndex: number, pos: number): ModuleError {
  return new ModuleError(`${where(funcIndex)}: unexpected end of code`, pos);
}

function tooLong(funcIndex: number, pos: number): ModuleError {
  return new ModuleError(`${where(funcIndex)}: integer representation too long`, pos);
}

/** Decodes an unsigned 32-bit LEB128 at `p` into lebValue; returns the offset after it. */
function readU32(b: Uint8Array, p: number, end: number, fi: number): number {
  if (p >= end) throw truncated(fi, p);
  let x = b[p]!;
  if (x < 0x80) {
    lebValue = x;
    return p + 1;
  }
  let result = x & 0x7f;
  for (let shift = 7; shift < 28; shift += 7) {
    if (++p >= end) throw truncated(fi, p);
    x = b[p]!;
    result |= (x & 0x7f) << shift;
    if (x < 0x80) {
      lebValue = result >>> 0;
      return p + 1;
    }
  }
  if (++p >= end) throw truncated(fi, p);
  x = b[p]!;
  if (x & 0xf0) throw tooLong(fi, p);
  lebValue = (result | (x << 28)) >>> 0;
  return p + 1;
}

/** Skips a signed 32-bit LEB128 (checking its encoding); returns the offset after it. */
function skipS32(b: Uint8Array, p: number, end: number, fi: number): number {
  for (let i = 0; i < 4; i++) {
    if (p >= end) throw truncated(fi, p);
    if (b[p++]! < 0x80) return p;
  }
  if (p >= end) throw truncated(fi, p);
  const x = b[p]!;
  // Fifth byte: 4 payload bits, the rest must be sign extension.
  const high = x & 0xf8;
  if (high !== 0 && high !== 0x78) throw tooLong(fi, p);
  return p + 1;
}

/** Skips a signed 64-bit LEB128 (checking its encoding); returns the offset after it. */
function skipS64(b: Uint8Array, p: number, end: number, fi: number): number {
  for (let i = 0; i < 9; i++) {
    if (p >= end) throw truncated(fi, p);
    if (b[p++]! < 0x80) return p;
  }
  if (p >= end) throw truncated(fi, p);
  const x = b[p]!;
  // Tenth byte: 1 payload bit, the rest must be sign extension.
  if (x !== 0 && x !== 0x7f) throw tooLong(fi, p);
  return p + 1;
}

function readZero(b: Uint8Array, p: number, end: number, fi: number, what: string): number {
  const at = p;
  p = readU32(b, p, end, fi);
  if (lebValue !== 0) throw new ModuleError(`${where(fi)}: ${what} index ${lebValue} is not supported (only one ${what} is allowed)`, at);
  return p;
}

function blockType(b: Uint8Array, p: number, end: number, fi: number): number {
  if (p >= end) throw truncated(fi, p);
  const t = b[p]!;
  switch (t) {
    case 0x40:
    case 0x7f:
    case 0x7e:
    case 0x7d:
    case 0x7c:
      return p + 1;
    case 0x7b:
      throw new ModuleError(`${where(fi)}: SIMD (v128) block type is not supported`, p);
    case 0x70:
    case 0x6f:
    case 0x64:
    case 0x63:
      throw new ModuleError(`${where(fi)}: reference-typed block type is not supported`, p);
  }
  if ((t & 0x40) === 0) {
    // A non-negative s33: a type index, i.e. a multi-value block type.
    throw new ModuleError(`${where(fi)}: block types with parameters or multiple results (multi-value) are not supported`, p);
  }
  throw new ModuleError(`${where(fi)}: invalid block type 0x${t.toString(16)}`, p);
}

function unsupported(op: number, fi: number, pos: number): ModuleError {
  const why = REASON[op];
  const hex = `0x${op.toString(16).padStart(2, '0')}`;
  return new ModuleError(`${where(fi)}: ${why === undefined ? `unknown instruction opcode ${hex}` : `${why} (opcode ${hex})`}`, pos);
}

/** Skips the immediates of 0xFC sub-opcode `sub` (> 7), starting at `p`. */
function skipFCImmediates(b: Uint8Array, p: number, end: number, fi: number, pos: number, sub: number): number {
  switch (sub) {
    case 8: // memory.init dataidx memidx
      p = readU32(b, p, end, fi);
      return readZero(b, p, end, fi, 'memory');
    case 9: // data.drop dataidx
    case 13: // elem.drop elemidx
      return readU32(b, p, end, fi);
    case 10: // memory.copy dst src
      p = readZero(b, p, end, fi, 'memory');
      return readZero(b, p, end, fi, 'memory');
    case 11: // memory.fill mem
      return readZero(b, p, end, fi, 'memory');
    case 12: // table.init elemidx tableidx
      p = readU32(b, p, end, fi);
      return readZero(b, p, end, fi, 'table');
    case 14: // table.copy dst src
      p = readZero(b, p, end, fi, 'table');
      return readZero(b, p, end, fi, 'table');
    case 15:
    case 16:
    case 17:
      throw new ModuleError(`${where(fi)}: reference types are not supported (opcode 0xfc ${sub})`, pos);
    default:
      throw new ModuleError(`${where(fi)}: unknown instruction opcode 0xfc ${sub}`, pos);
  }
}

/**
 * The instructions of one function body, decoded once so that several passes
 * can walk them as plain loops (a pass over an array is several times
 * cheaper than a callback per instruction). `starts[i]` is the offset of
 * instruction i's opcode in the module, for i < count; `starts[count]` is the
 * body's end, so instruction i's immediates end at `starts[i + 1]`. The final
 * `end` is the last instruction. A list is reused from body to body: its
 * array only grows.
 */
export class InstructionList {
  starts: Int32Array = new Int32Array(1024);
  count = 0;

  /** Room for `n` starts plus the end. */
  reserve(n: number): void {
    if (n + 1 > this.starts.length) {
      const next = new Int32Array(Math.max(n + 1, 2 * this.starts.length));
      next.set(this.starts.subarray(0, this.count + 1));
      this.starts = next;
    }
  }
}

/** The 0xFC sub-opcode of the prefixed instruction at `pos` (the decoder has checked its encoding). */
export function subopcodeAt(bytes: Uint8Array, pos: number): number {
  return u32At(bytes, pos + 1);
}

/**
 * Decodes the instructions of `body` (from its first instruction to its
 * final `end`) into `list` (see InstructionList). Throws ModuleError for
 * unsupported or malformed instructions, a body that ends early, or bytes
 * after the final `end`. `funcIndex` (index in the function index space)
 * only names the function in error messages.
 */
export function decodeInstructionList(bytes: Uint8Array, body: FunctionBody, list: InstructionList, funcIndex = -1): InstructionList {
  const end = body.end;
  if (end > bytes.length) throw truncated(funcIndex, bytes.length);
  const fi = funcIndex;
  let p = body.codeStart;
  let depth = 0;
  // Every instruction takes at least one byte: one reservation per body.
  list.count = 0;
  list.reserve(end - p);
  const starts = list.starts;
  let count = 0;
  for (;;) {
    if (p >= end) throw new ModuleError(`${where(fi)}: body is not terminated by an end instruction`, end);
    const pos = p;
    const op = bytes[p++]!;
    starts[count++] = pos;
    switch (KIND[op]) {
      case K_NONE:
        break;
      case K_BLOCK:
        p = blockType(bytes, p, end, fi);
        depth++;
        break;
      case K_END:
        if (depth === 0) {
          if (p !== end) throw new ModuleError(`${where(fi)}: ${end - p} bytes after the final end instruction`, p);
          starts[count] = end;
          list.count = count;
          return list;
        }
        depth--;
        break;
      case K_U32:
        // Inline the common one-byte case; readU32 handles the rest.
        if (p < end && bytes[p]! < 0x80) p++;
        else p = readU32(bytes, p, end, fi);
        break;
      case K_BR_TABLE: {
        p = readU32(bytes, p, end, fi);
        // Each target takes at least one byte: a cheap bound that stops a
        // huge count from spinning before the truncation is noticed.
        const n = lebValue;
        if (n > end - p) throw truncated(fi, end);
        for (let i = 0; i <= n; i++) p = readU32(bytes, p, end, fi);
        break;
      }
      case K_CALL_INDIRECT:
        p = readU32(bytes, p, end, fi);
        p = preparedCode ? readU32(bytes, p, end, fi) : readZero(bytes, p, end, fi, 'table');
        break;
      case K_MEMARG: {
        const at = p;
        p = readU32(bytes, p, end, fi);
        if (lebValue >= 0x40) throw new ModuleError(`${where(fi)}: memory access with memory index is not supported (multiple memories)`, at);
        if (p < end && bytes[p]! < 0x80) p++;
        else p = readU32(bytes, p, end, fi);
        break;
      }
      case K_ZERO:
        p = readZero(bytes, p, end, fi, 'memory');
        break;
      case K_S32:
        if (p < end && bytes[p]! < 0x80) p++;
        else p = skipS32(bytes, p, end, fi);
        break;
      case K_S64:
        p = skipS64(bytes, p, end, fi);
        break;
      case K_F32:
        p += 4;
        if (p > end) throw truncated(fi, end);
        break;
      case K_F64:
        p += 8;
        if (p > end) throw truncated(fi, end);
        break;
      case K_PREFIX_FC:
        p = readU32(bytes, p, end, fi);
        if (lebValue > 7) p = skipFCImmediates(bytes, p, end, fi, pos, lebValue);
        break;
      default:
        if (preparedCode && op === RETURN_CALL_INDIRECT) {
          p = readU32(bytes, p, end, fi);
          p = readU32(bytes, p, end, fi);
          break;
        }
        throw unsupported(op, fi, pos);
    }
  }
}

/** Set while decodePreparedInstructions runs: our transform's output also has `return_call_indirect` and tables other than 0. */
let preparedCode = false;
const RETURN_CALL_INDIRECT = 0x13;

/** decodeInstructions for a module our transform made (prepare/instrument.ts): for tests and tools that inspect its output. */
export function decodePreparedInstructions(bytes: Uint8Array, body: FunctionBody, visit: InstructionVisitor): void {
  preparedCode = true;
  try {
    decodeInstructions(bytes, body, visit);
  } finally {
    preparedCode = false;
  }
}

/** Scratch list of decodeInstructions (a visitor that decodes again gets its own). */
let visitScratch: InstructionList | undefined = new InstructionList();

/**
 * Calls `visit` for each instruction of `body`, in order (see
 * decodeInstructionList; the body is decoded before the first visit, so a
 * malformed body throws without any). `funcIndex` only names the function
 * in error messages.
 */
export function decodeInstructions(bytes: Uint8Array, body: FunctionBody, visit: InstructionVisitor, funcIndex = -1): void {
  const list = visitScratch ?? new InstructionList();
  visitScratch = undefined;
  try {
    decodeInstructionList(bytes, body, list, funcIndex);
    const { starts, count } = list;
    for (let i = 0; i < count; i++) {
      const pos = starts[i]!;
      const op = bytes[pos]!;
      visit(op, op === Opcode.PrefixFC ? subopcodeAt(bytes, pos) : -1, pos, starts[i + 1]!);
    }
  } finally {
    visitScratch = list;
  }
}

/** Where code names data segments by index (memory.init, data.drop). */
export interface DataSegmentUse {
  op: 'memory.init' | 'data.drop';
  /** Absolute function index. */
  func: number;
}

/** The next 0xFC byte at or after `from` that may begin a memory.init or data.drop (see findDataSegmentUse), or -1. */
function nextDataSegmentPrefix(bytes: Uint8Array, from: number): number {
  for (let p = bytes.indexOf(Opcode.PrefixFC, from); p >= 0; p = bytes.indexOf(Opcode.PrefixFC, p + 1)) {
    const low = (bytes[p + 1] ?? 0) & 0x7f;
    if (low === SubopcodeFC.MemoryInit || low === SubopcodeFC.DataDrop) return p;
  }
  return -1;
}

/**
 * The first memory.init or data.drop in the module's code, if any. Both are
 * only valid with a data count section, so without one nothing is decoded.
 */
export function findDataSegmentUse(m: WasmModule): DataSegmentUse | undefined {
  if (!m.sections.some((s) => s.id === SectionId.DataCount)) return undefined;
  const list = new InstructionList();
  const bytes = m.bytes;
  // Both are 0xFC-prefixed, with a sub-opcode whose LEB128 begins with a
  // byte of low bits 8 or 9: a body without such a pair of bytes anywhere
  // has neither, and most bodies need no decoding. `fc` is the next such
  // pair at or after the body (native searches, resumed only past it:
  // linear in all).
  let fc = 0;
  for (let i = 0; i < m.bodies.length; i++) {
    const func = m.importedFunctionCount + i;
    const body = m.bodies[i]!;
    if (fc < body.codeStart) {
      fc = nextDataSegmentPrefix(bytes, body.codeStart);
      if (fc < 0) break;
    }
    if (fc >= body.end) continue;
    const { starts, count } = decodeInstructionList(bytes, body, list, func);
    for (let k = 0; k < count; k++) {
      const pos = starts[k]!;
      if (bytes[pos] !== Opcode.PrefixFC) continue;
      const sub = subopcodeAt(bytes, pos);
      if (sub === SubopcodeFC.MemoryInit || sub === SubopcodeFC.DataDrop) return { op: sub === SubopcodeFC.MemoryInit ? 'memory.init' : 'data.drop', func };
    }
  }
  return undefined;
}
