import { ByteReader } from './leb128.js';
import { ModuleError } from './errors.js';

/** Standard section ids of WebAssembly 1.0 (plus data count from bulk memory). */
export const SectionId = {
  Custom: 0,
  Type: 1,
  Import: 2,
  Function: 3,
  Table: 4,
  Memory: 5,
  Global: 6,
  Export: 7,
  Start: 8,
  Element: 9,
  Code: 10,
  Data: 11,
  DataCount: 12,
} as const;

export const ValType = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c } as const;
export type ValTypeCode = (typeof ValType)[keyof typeof ValType];

export const ExternalKind = { Function: 0, Table: 1, Memory: 2, Global: 3 } as const;

export interface FuncType {
  params: ValTypeCode[];
  results: ValTypeCode[];
}

export interface Section {
  id: number;
  /** Name of a custom section. */
  name?: string;
  /** Offset of the id byte. */
  start: number;
  /** Offset of the payload (for custom sections: of the content after the name). */
  payloadStart: number;
  /** Offset just after the section. */
  end: number;
}

export interface Import {
  module: string;
  field: string;
  kind: number;
  /** Type index for function imports. */
  typeIndex: number;
  /** Global type for global imports. */
  global?: { type: number; mutable: boolean };
}

export interface Export {
  name: string;
  kind: number;
  index: number;
}

export interface Limits {
  min: number;
  max: number | undefined;
}

export interface DataSegment {
  passive: boolean;
  /** Memory offset of an active segment (from an `i32.const` offset expression; undefined otherwise). */
  offset: number | undefined;
  /** Offsets of the segment's bytes in the module. */
  start: number;
  end: number;
}

export interface FunctionBody {
  /** Offset of the body's size field. */
  start: number;
  /** Offset of the local declarations (just after the size). */
  bodyStart: number;
  /** Offset of the first instruction. */
  codeStart: number;
  /** Offset just after the final `end`. */
  end: number;
  /** Number of locals declared (not counting parameters). */
  localCount: number;
}

export interface GlobalDef {
  type: number;
  mutable: boolean;
  /** Value of a constant init expression (undefined if it is not one constant). */
  init: number | bigint | undefined;
  /** Offsets of the init expression, including its `end`. */
  initStart: number;
  initEnd: number;
}

/**
 * The structure of a module as far as Gate needs it. Parsing checks the binary
 * format of every section except function bodies (see code.ts) and leaves the
 * remaining semantic validation to the engine.
 */
export interface WasmModule {
  bytes: Uint8Array;
  sections: Section[];
  types: FuncType[];
  imports: Import[];
  /** Type index of each defined function. */
  functions: number[];
  tables: Limits[];
  memories: Limits[];
  globals: GlobalDef[];
  exports: Export[];
  start: number | undefined;
  elementSegmentCount: number;
  elementEntryCount: number;
  dataSegmentCount: number;
  dataSegments: DataSegment[];
  bodies: FunctionBody[];
  /** Number of imported functions (defined functions are numbered after them). */
  importedFunctionCount: number;
}

const MAGIC = 0x6d736100;

function readValType(r: ByteReader): ValTypeCode {
  const t = r.u8();
  if (t === 0x7f || t === 0x7e || t === 0x7d || t === 0x7c) return t;
  if (t === 0x7b) throw new ModuleError('SIMD (v128) is not supported', r.pos - 1);
  if (t === 0x70 || t === 0x6f) throw new ModuleError('reference types are not supported', r.pos - 1);
  throw new ModuleError(`invalid value type 0x${t.toString(16)}`, r.pos - 1);
}

function readLimits(r: ByteReader, what: string): Limits {
  const flags = r.u8();
  if (flags & 0x02) throw new ModuleError(`shared ${what} is not supported`, r.pos - 1);
  if (flags & 0x04) throw new ModuleError(`64-bit ${what} is not supported`, r.pos - 1);
  if (flags > 1) throw new ModuleError(`invalid ${what} limits flags 0x${flags.toString(16)}`, r.pos - 1);
  const min = r.u32();
  const max = flags & 1 ? r.u32() : undefined;
  if (max !== undefined && max < min) throw new ModuleError(`${what} maximum is smaller than its minimum`, r.pos);
  return { min, max };
}

/**
 * Where each function body entry (its size, then the body) starts in a
 * module's bytes, and where the code section ends: a scan of section
 * headers only, for modules that have already been validated or compiled
 * (an empty list if there is no code section or the bytes are cut short).
 */
export function functionBodyEntries(bytes: Uint8Array): { starts: Uint32Array; end: number } {
  try {
    const r = new ByteReader(bytes, 8, bytes.length);
    while (r.pos < bytes.length) {
      const id = r.u8();
      const size = r.u32();
      const end = r.pos + size;
      if (id === SectionId.Code) {
        const n = r.u32();
        const starts = new Uint32Array(n);
        for (let i = 0; i < n; i++) {
          starts[i] = r.pos;
          const bodySize = r.u32(); // (read before pos is: `r.pos += r.u32()` would lose the size's own bytes)
          r.pos += bodySize;
        }
        return { starts, end };
      }
      r.pos = end;
    }
  } catch {
    // (cut short: no entries)
  }
  return { starts: new Uint32Array(0), end: bytes.length };
}

/** The size in bytes of a module's largest function body entry (0 without functions). */
export function largestFunctionBody(bytes: Uint8Array): number {
  const { starts, end } = functionBodyEntries(bytes);
  let largest = 0;
  for (let i = 0; i < starts.length; i++) largest = Math.max(largest, (i + 1 < starts.length ? starts[i + 1]! : end) - starts[i]!);
  return largest;
}

/** Skips a constant expression up to and including its `end`. */
export function skipConstExpr(r: ByteReader): void {
  for (;;) {
    const op = r.u8();
    switch (op) {
      case 0x0b:
        return;
      case 0x41:
        r.s32();
        break;
      case 0x42:
        r.s64();
        break;
      case 0x43:
        r.bytesView(4);
        break;
      case 0x44:
        r.bytesView(8);
        break;
      case 0x23:
        r.u32();
        break;
      default:
        throw new ModuleError(`unsupported instruction 0x${op.toString(16)} in constant expression`, r.pos - 1);
    }
  }
}

/**
 * Reads a constant expression up to and including its `end`; returns its
 * value if it is a single constant (f32/f64 as their raw bits: number for
 * f32, bigint for f64), else undefined.
 */
export function constExprValue(r: ByteReader): number | bigint | undefined {
  const start = r.pos;
  const op = r.u8();
  let v: number | bigint | undefined;
  switch (op) {
    case 0x41:
      v = r.s32();
      break;
    case 0x42:
      v = r.s64();
      break;
    case 0x43: {
      const b = r.bytesView(4);
      v = (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
      break;
    }
    case 0x44: {
      const b = r.bytesView(8);
      v = BigInt.asUintN(64, BigInt((b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0) | (BigInt((b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24)) >>> 0) << 32n));
      break;
    }
    default:
      r.pos = start;
      skipConstExpr(r);
      return undefined;
  }
  if (r.u8() !== 0x0b) {
    r.pos = start;
    skipConstExpr(r);
    return undefined;
  }
  return v;
}

/**
 * Reads a module's sections (see WasmModule). `prepared`: a module our
 * transform made (tests and tools that inspect it), whose element section
 * (with a segment for a second table) is not read.
 */
export function parseModule(bytes: Uint8Array, opts: { prepared?: boolean } = {}): WasmModule {
  if (bytes.length < 8) throw new ModuleError('module is too short to be WebAssembly');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw new ModuleError('not a WebAssembly module (bad magic number)', 0);
  const version = view.getUint32(4, true);
  if (version !== 1) throw new ModuleError(`unsupported WebAssembly binary version ${version}`, 4);

  const m: WasmModule = {
    bytes,
    sections: [],
    types: [],
    imports: [],
    functions: [],
    tables: [],
    memories: [],
    globals: [],
    exports: [],
    start: undefined,
    elementSegmentCount: 0,
    elementEntryCount: 0,
    dataSegmentCount: 0,
    dataSegments: [],
    bodies: [],
    importedFunctionCount: 0,
  };

  const r = new ByteReader(bytes, 8);
  let lastOrdered = 0;
  // The data count section (12) sits between the element (9) and code (10) sections.
  const order = (id: number): number => (id === SectionId.DataCount ? 9.5 : id);
  while (!r.eof()) {
    const start = r.pos;
    const id = r.u8();
    const size = r.u32();
    if (size > r.remaining) throw new ModuleError(`section ${id} extends past the end of the module`, start);
    const end = r.pos + size;
    const s = new ByteReader(bytes, r.pos, end);
    const section: Section = { id, start, payloadStart: r.pos, end };
    if (id === SectionId.Custom) {
      section.name = s.name();
      section.payloadStart = s.pos;
    } else {
      if (id > SectionId.DataCount) throw new ModuleError(`unknown section id ${id}`, start);
      if (order(id) <= lastOrdered) throw new ModuleError(`section ${id} is out of order or duplicated`, start);
      lastOrdered = order(id);
      if (opts.prepared && id === SectionId.Element) s.pos = end;
      else readSection(m, id, s);
      if (!s.eof()) throw new ModuleError(`section ${id} has ${s.remaining} unexpected trailing bytes`, s.pos);
    }
    m.sections.push(section);
    r.pos = end;
  }
  if (m.functions.length !== m.bodies.length) {
    throw new ModuleError(`function and code section counts differ (${m.functions.length} vs ${m.bodies.length})`);
  }
  return m;
}

function readSection(m: WasmModule, id: number, s: ByteReader): void {
  switch (id) {
    case SectionId.Type: {
      const n = s.u32();
      for (let i = 0; i < n; i++) {
        const form = s.u8();
        if (form !== 0x60) throw new ModuleError(`invalid function type form 0x${form.toString(16)}`, s.pos - 1);
        const params: ValTypeCode[] = [];
        const np = s.u32();
        for (let j = 0; j < np; j++) params.push(readValType(s));
        const results: ValTypeCode[] = [];
        const nr = s.u32();
        for (let j = 0; j < nr; j++) results.push(readValType(s));
        if (nr > 1) throw new ModuleError('multiple results (multi-value) are not supported', s.pos);
        m.types.push({ params, results });
      }
      break;
    }
    case SectionId.Import: {
      const n = s.u32();
      for (let i = 0; i < n; i++) {
        const module = s.name();
        const field = s.name();
        const kind = s.u8();
        const imp: Import = { module, field, kind, typeIndex: -1 };
        switch (kind) {
          case ExternalKind.Function:
            imp.typeIndex = s.u32();
            if (imp.typeIndex >= m.types.length) throw new ModuleError(`import "${module}" "${field}" has invalid type index`, s.pos);
            m.importedFunctionCount++;
            break;
          case ExternalKind.Table:
            s.u8();
            readLimits(s, 'table');
            break;
          case ExternalKind.Memory:
            readLimits(s, 'memory');
            break;
          case ExternalKind.Global:
            imp.global = { type: readValType(s), mutable: s.u8() === 1 };
            break;
          default:
            throw new ModuleError(`invalid import kind ${kind} for "${module}" "${field}"`, s.pos - 1);
        }
        m.imports.push(imp);
      }
      break;
    }
    case SectionId.Function: {
      const n = s.u32();
      for (let i = 0; i < n; i++) {
        const t = s.u32();
        if (t >= m.types.length) throw new ModuleError(`function ${i} has invalid type index ${t}`, s.pos);
        m.functions.push(t);
      }
      break;
    }
    case SectionId.Table: {
      const n = s.u32();
      for (let i = 0; i < n; i++) {
        const elemType = s.u8();
        if (elemType !== 0x70) throw new ModuleError('only funcref tables are supported', s.pos - 1);
        m.tables.push(readLimits(s, 'table'));
      }
      break;
    }
    case SectionId.Memory: {
      const n = s.u32();
      for (let i = 0; i < n; i++) m.memories.push(readLimits(s, 'memory'));
      break;
    }
    case SectionId.Global: {
      const n = s.u32();
      for (let i = 0; i < n; i++) {
        const type = readValType(s);
        const mut = s.u8();
        if (mut > 1) throw new ModuleError('invalid global mutability', s.pos - 1);
        const initStart = s.pos;
        const init = constExprValue(s);
        m.globals.push({ type, mutable: mut === 1, init, initStart, initEnd: s.pos });
      }
      break;
    }
    case SectionId.Export: {
      const n = s.u32();
      for (let i = 0; i < n; i++) {
        const name = s.name();
        const kind = s.u8();
        if (kind > 3) throw new ModuleError(`export "${name}" has invalid kind ${kind}`, s.pos - 1);
        m.exports.push({ name, kind, index: s.u32() });
      }
      break;
    }
    case SectionId.Start:
      m.start = s.u32();
      break;
    case SectionId.Element: {
      const n = s.u32();
      m.elementSegmentCount = n;
      for (let i = 0; i < n; i++) {
        const flags = s.u32();
        if (flags !== 0) throw new ModuleError(`element segment kind ${flags} is not supported`, s.pos - 1);
        skipConstExpr(s);
        const count = s.u32();
        m.elementEntryCount += count;
        for (let j = 0; j < count; j++) s.u32();
      }
      break;
    }
    case SectionId.Code: {
      const n = s.u32();
      for (let i = 0; i < n; i++) {
        const start = s.pos;
        const size = s.u32();
        const bodyStart = s.pos;
        if (size > s.remaining) throw new ModuleError(`function body ${i} extends past its section`, start);
        const end = bodyStart + size;
        const b = new ByteReader(s.bytes, bodyStart, end);
        const groups = b.u32();
        let localCount = 0;
        for (let g = 0; g < groups; g++) {
          const c = b.u32();
          readValType(b);
          localCount += c;
          if (localCount > 50000) throw new ModuleError(`function body ${i} declares too many locals`, b.pos);
        }
        m.bodies.push({ start, bodyStart, codeStart: b.pos, end, localCount });
        s.pos = end;
      }
      break;
    }
    case SectionId.Data: {
      const n = s.u32();
      m.dataSegmentCount = n;
      for (let i = 0; i < n; i++) {
        const flags = s.u32();
        let offset: number | undefined;
        if (flags === 1) {
          // passive segment (bulk memory)
        } else if (flags === 0) {
          const v = constExprValue(s);
          offset = typeof v === 'number' ? v >>> 0 : undefined;
        } else {
          throw new ModuleError(`data segment kind ${flags} is not supported`, s.pos - 1);
        }
        const size = s.u32();
        const start = s.pos;
        s.bytesView(size);
        m.dataSegments.push({ passive: flags === 1, offset, start, end: s.pos });
      }
      break;
    }
    case SectionId.DataCount:
      s.u32();
      break;
  }
}

/** Function type of function index `index` (imports first). */
export function functionType(m: WasmModule, index: number): FuncType | undefined {
  if (index < m.importedFunctionCount) {
    let seen = 0;
    for (const imp of m.imports) {
      if (imp.kind !== ExternalKind.Function) continue;
      if (seen++ === index) return m.types[imp.typeIndex];
    }
    return undefined;
  }
  const t = m.functions[index - m.importedFunctionCount];
  return t === undefined ? undefined : m.types[t];
}

export function formatFuncType(t: FuncType): string {
  const name = (v: number): string => ({ 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64' })[v] ?? '?';
  return `(${t.params.map(name).join(', ')}) -> ${t.results.length ? t.results.map(name).join(', ') : '()'}`;
}
