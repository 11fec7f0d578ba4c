/**
 * A small reader of DWARF line tables (`.debug_line`, versions 2–5) in a
 * wasm module's custom sections, for the debugger: which source line an
 * instruction belongs to, and which instructions begin a source line. For
 * wasm, DWARF addresses are byte offsets relative to the start of the code
 * section's contents, the same offsets breakpoints and stack frames use.
 *
 * Only what is needed is read: the file names and the line program. A
 * malformed table gives a DwarfError; callers treat DWARF as optional.
 */
import { GateError } from '../errors.js';
import { SectionId, type WasmModule } from './module.js';

export class DwarfError extends GateError {
  constructor(message: string) {
    super('GATE_BAD_DWARF', `malformed DWARF line table: ${message}`);
  }
}

/** One row of a line table. */
export interface LineRow {
  address: number;
  /** Path of the source file (directory joined with the name when the name is relative). */
  file: string;
  line: number;
  column: number;
  isStmt: boolean;
  /** The first address after a sequence (this row's other fields mean nothing). */
  endSequence: boolean;
}

export interface SourceLocation {
  file: string;
  line: number;
  column: number;
}

class Cursor {
  pos: number;
  constructor(
    readonly b: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }
  need(n: number): void {
    if (this.pos + n > this.end) throw new DwarfError(`unexpected end at ${this.pos}`);
  }
  u8(): number {
    this.need(1);
    return this.b[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.b[this.pos]! | (this.b[this.pos + 1]! << 8);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = (this.b[this.pos]! | (this.b[this.pos + 1]! << 8) | (this.b[this.pos + 2]! << 16) | (this.b[this.pos + 3]! << 24)) >>> 0;
    this.pos += 4;
    return v;
  }
  u64(): number {
    const lo = this.u32();
    const hi = this.u32();
    if (hi > 0x1fffff) throw new DwarfError('a 64-bit value is too large');
    return hi * 2 ** 32 + lo;
  }
  uleb(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const byte = this.u8();
      result += (byte & 0x7f) * mul;
      if ((byte & 0x80) === 0) return result;
      mul *= 128;
    }
    throw new DwarfError('LEB128 number is too long');
  }
  sleb(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const byte = this.u8();
      result += (byte & 0x7f) * mul;
      mul *= 128;
      if ((byte & 0x80) === 0) return byte & 0x40 ? result - mul : result;
    }
    throw new DwarfError('LEB128 number is too long');
  }
  cstring(): string {
    const start = this.pos;
    while (this.pos < this.end && this.b[this.pos] !== 0) this.pos++;
    if (this.pos >= this.end) throw new DwarfError('unterminated string');
    return utf8.decode(this.b.subarray(start, this.pos++));
  }
  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }
}

const utf8 = new TextDecoder('utf-8');

function customSection(m: WasmModule, name: string): Uint8Array | undefined {
  const s = m.sections.find((x) => x.id === SectionId.Custom && x.name === name);
  return s ? m.bytes.subarray(s.payloadStart, s.end) : undefined;
}

function stringAt(section: Uint8Array | undefined, offset: number): string {
  if (!section || offset >= section.length) throw new DwarfError(`string offset ${offset} is outside its section`);
  let end = offset;
  while (end < section.length && section[end] !== 0) end++;
  return utf8.decode(section.subarray(offset, end));
}

function joinPath(dir: string | undefined, name: string): string {
  if (!dir || name.startsWith('/')) return name;
  return `${dir.replace(/\/+$/, '')}/${name}`;
}

// DW_FORM codes used by DWARF 5 line table headers.
const FORM = { block: 0x09, block1: 0x0a, data1: 0x0b, data2: 0x05, data4: 0x06, data8: 0x07, data16: 0x1e, string: 0x08, strp: 0x0e, lineStrp: 0x1f, udata: 0x0f, strx: 0x1a, strx1: 0x25, strx2: 0x26, strx4: 0x28 } as const;
const DW_LNCT_path = 1;
const DW_LNCT_directory_index = 2;

/** A DWARF 5 entry-format-described value: a string for path forms, a number for the others. */
function formValue(c: Cursor, form: number, offset64: boolean, str: Uint8Array | undefined, lineStr: Uint8Array | undefined): string | number {
  switch (form) {
    case FORM.string:
      return c.cstring();
    case FORM.lineStrp:
      return stringAt(lineStr, offset64 ? c.u64() : c.u32());
    case FORM.strp:
      return stringAt(str, offset64 ? c.u64() : c.u32());
    case FORM.udata:
      return c.uleb();
    case FORM.data1:
      return c.u8();
    case FORM.data2:
      return c.u16();
    case FORM.data4:
      return c.u32();
    case FORM.data8:
      return c.u64();
    case FORM.data16:
      c.skip(16);
      return 0;
    case FORM.block:
      c.skip(c.uleb());
      return 0;
    case FORM.block1:
      c.skip(c.u8());
      return 0;
    default:
      throw new DwarfError(`unsupported form 0x${form.toString(16)} in a line table header`);
  }
}

/** Every row of every line table in the module's `.debug_line`; empty without one. */
export function readLineTable(m: WasmModule): LineRow[] {
  const section = customSection(m, '.debug_line');
  if (!section) return [];
  const str = customSection(m, '.debug_str');
  const lineStr = customSection(m, '.debug_line_str');
  const rows: LineRow[] = [];
  const top = new Cursor(section, 0, section.length);
  while (top.pos < section.length) {
    let length = top.u32();
    let offset64 = false;
    if (length === 0xffffffff) {
      length = top.u64();
      offset64 = true;
    }
    const unitEnd = top.pos + length;
    if (unitEnd > section.length) throw new DwarfError('a unit extends past the section');
    const c = new Cursor(section, top.pos, unitEnd);
    top.pos = unitEnd;
    const version = c.u16();
    if (version < 2 || version > 5) throw new DwarfError(`unsupported version ${version}`);
    if (version >= 5) {
      c.u8(); // address_size
      c.u8(); // segment_selector_size
    }
    const headerLength = offset64 ? c.u64() : c.u32();
    const programStart = c.pos + headerLength;
    const minInst = c.u8();
    if (version >= 4) c.u8(); // maximum_operations_per_instruction (VLIW only)
    const defaultIsStmt = c.u8() !== 0;
    const lineBase = (c.u8() << 24) >> 24;
    const lineRange = c.u8();
    const opcodeBase = c.u8();
    if (lineRange === 0) throw new DwarfError('line_range is 0');
    const stdLengths = [0];
    for (let i = 1; i < opcodeBase; i++) stdLengths.push(c.u8());
    const dirs: string[] = [];
    const files: string[] = [];
    if (version >= 5) {
      const readEntries = (): Array<Map<number, string | number>> => {
        const formats: Array<[number, number]> = [];
        const nFormats = c.u8();
        for (let i = 0; i < nFormats; i++) formats.push([c.uleb(), c.uleb()]);
        const n = c.uleb();
        const out: Array<Map<number, string | number>> = [];
        for (let i = 0; i < n; i++) {
          const e = new Map<number, string | number>();
          for (const [kind, form] of formats) e.set(kind, formValue(c, form, offset64, str, lineStr));
          out.push(e);
        }
        return out;
      };
      for (const d of readEntries()) dirs.push(String(d.get(DW_LNCT_path) ?? ''));
      for (const f of readEntries()) {
        const dir = dirs[Number(f.get(DW_LNCT_directory_index) ?? 0)];
        files.push(joinPath(dir, String(f.get(DW_LNCT_path) ?? '')));
      }
    } else {
      dirs.push(''); // index 0: the compilation directory (not in the table)
      for (;;) {
        const d = c.cstring();
        if (d === '') break;
        dirs.push(d);
      }
      files.push(''); // DWARF < 5 numbers files from 1
      for (;;) {
        const name = c.cstring();
        if (name === '') break;
        const dir = c.uleb();
        c.uleb(); // mtime
        c.uleb(); // length
        files.push(joinPath(dirs[dir], name));
      }
    }
    c.pos = programStart;
    runProgram(c, { minInst, defaultIsStmt, lineBase, lineRange, opcodeBase, stdLengths, files }, rows);
  }
  return rows;
}

interface Header {
  minInst: number;
  defaultIsStmt: boolean;
  lineBase: number;
  lineRange: number;
  opcodeBase: number;
  stdLengths: number[];
  files: string[];
}

function runProgram(c: Cursor, h: Header, rows: LineRow[]): void {
  let address = 0;
  let file = 1;
  let line = 1;
  let column = 0;
  let isStmt = h.defaultIsStmt;
  const reset = (): void => {
    address = 0;
    file = 1;
    line = 1;
    column = 0;
    isStmt = h.defaultIsStmt;
  };
  const emit = (endSequence: boolean): void => {
    rows.push({ address, file: h.files[file] ?? `file ${file}`, line, column, isStmt, endSequence });
  };
  while (c.pos < c.end) {
    const op = c.u8();
    if (op >= h.opcodeBase) {
      const adj = op - h.opcodeBase;
      address += Math.floor(adj / h.lineRange) * h.minInst;
      line += h.lineBase + (adj % h.lineRange);
      emit(false);
      continue;
    }
    switch (op) {
      case 0: {
        const len = c.uleb();
        const end = c.pos + len;
        if (len === 0) break;
        const sub = c.u8();
        if (sub === 1) {
          emit(true);
          reset();
        } else if (sub === 2) {
          const size = len - 1;
          address = size === 8 ? c.u64() : size === 4 ? c.u32() : (() => { throw new DwarfError(`address size ${size}`); })();
        } else if (sub === 3) {
          const name = c.cstring();
          c.uleb();
          c.uleb();
          c.uleb();
          h.files.push(name);
        }
        c.pos = end;
        break;
      }
      case 1: // copy
        emit(false);
        break;
      case 2: // advance_pc
        address += c.uleb() * h.minInst;
        break;
      case 3: // advance_line
        line += c.sleb();
        break;
      case 4: // set_file
        file = c.uleb();
        break;
      case 5: // set_column
        column = c.uleb();
        break;
      case 6: // negate_stmt
        isStmt = !isStmt;
        break;
      case 7: // set_basic_block
        break;
      case 8: // const_add_pc
        address += Math.floor((255 - h.opcodeBase) / h.lineRange) * h.minInst;
        break;
      case 9: // fixed_advance_pc
        address += c.u16();
        break;
      case 10: // set_prologue_end
      case 11: // set_epilogue_begin
        break;
      default:
        // set_isa and opcodes this reader does not know: skip their uleb operands.
        for (let i = 0; i < (h.stdLengths[op] ?? 0); i++) c.uleb();
    }
  }
}

/** The source line of the instruction at `offset` (code section relative), if a line table covers it. */
export function sourceLocation(rows: readonly LineRow[], offset: number): SourceLocation | undefined {
  let best: LineRow | undefined;
  let seqStart = 0;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (r.endSequence) {
      // The sequence covers [its first address, this address).
      if (best && offset < r.address && rows[seqStart]!.address <= offset) return best.line === 0 ? undefined : { file: best.file, line: best.line, column: best.column };
      best = undefined;
      seqStart = i + 1;
      continue;
    }
    if (r.address <= offset && (!best || r.address >= best.address)) best = r;
  }
  return undefined;
}

/**
 * The offsets where source line `line` of `file` begins: per sequence, the
 * lowest address of a statement row of that line. `file` matches a table's
 * path exactly or as a suffix after a `/` (`debuggee.c` matches
 * `test/programs/debuggee.c`).
 */
export function lineOffsets(rows: readonly LineRow[], file: string, line: number): number[] {
  const out = new Set<number>();
  let seqBest: number | undefined;
  const matches = (path: string): boolean => path === file || path.endsWith(`/${file}`);
  for (const r of rows) {
    if (r.endSequence) {
      if (seqBest !== undefined) out.add(seqBest);
      seqBest = undefined;
      continue;
    }
    if (r.isStmt && r.line === line && matches(r.file) && (seqBest === undefined || r.address < seqBest)) seqBest = r.address;
  }
  return [...out].sort((a, b) => a - b);
}
