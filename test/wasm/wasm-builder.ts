/**
 * A small hand-written WebAssembly binary builder for tests: enough of the
 * format to produce real modules with exactly the bytes a test needs,
 * including ones binaryen would refuse to emit.
 */
import { ByteWriter } from '../../src/wasm/leb128.js';

export const I32 = 0x7f;
export const I64 = 0x7e;
export const F32 = 0x7d;
export const F64 = 0x7c;

interface TypeDef {
  params: number[];
  results: number[];
}

type ImportDesc =
  | { kind: 0; type: number }
  | { kind: 1; min: number; max?: number }
  | { kind: 2; min: number; max?: number }
  | { kind: 3; type: number; mutable: boolean };

interface FuncDef {
  type: number;
  locals: [number, number][];
  code: number[];
}

function section(w: ByteWriter, id: number, body: (s: ByteWriter) => void): void {
  const s = new ByteWriter();
  body(s);
  w.section(id, s.finish());
}

function limits(s: ByteWriter, min: number, max?: number): void {
  if (max === undefined) s.u8(0).u32(min);
  else s.u8(1).u32(min).u32(max);
}

export class ModuleBuilder {
  private types: TypeDef[] = [];
  private imports: { module: string; field: string; desc: ImportDesc }[] = [];
  private funcs: FuncDef[] = [];
  private tables: { min: number; max?: number }[] = [];
  private memories: { min: number; max?: number }[] = [];
  private globals: { type: number; mutable: boolean; init: number[] }[] = [];
  private exports: { name: string; kind: number; index: number }[] = [];
  private startIndex: number | undefined;
  private elements: { offset: number[]; funcs: number[] }[] = [];
  private datas: { offset: number[] | undefined; bytes: number[] }[] = [];
  private customs: { name: string; bytes: number[] }[] = [];
  private withDataCount = false;
  /** Raw bodies that replace the generated code section entries (by defined function index). */
  private rawBodies = new Map<number, number[]>();

  type(params: number[], results: number[] = []): number {
    const i = this.types.findIndex((t) => t.params.join() === params.join() && t.results.join() === results.join());
    if (i >= 0) return i;
    this.types.push({ params, results });
    return this.types.length - 1;
  }

  private importedFunctions(): number {
    return this.imports.filter((i) => i.desc.kind === 0).length;
  }

  importFunc(module: string, field: string, params: number[], results: number[] = []): number {
    if (this.funcs.length > 0) throw new Error('add imports before functions');
    const type = this.type(params, results);
    this.imports.push({ module, field, desc: { kind: 0, type } });
    return this.importedFunctions() - 1;
  }

  importTable(module: string, field: string, min: number): this {
    this.imports.push({ module, field, desc: { kind: 1, min } });
    return this;
  }

  importMemory(module: string, field: string, min: number): this {
    this.imports.push({ module, field, desc: { kind: 2, min } });
    return this;
  }

  importGlobal(module: string, field: string, type: number, mutable = false): this {
    this.imports.push({ module, field, desc: { kind: 3, type, mutable } });
    return this;
  }

  /** Adds a function; `code` is the instruction bytes including the final `end` (0x0b). Returns its function index. */
  func(params: number[], results: number[], code: number[], locals: [number, number][] = []): number {
    this.funcs.push({ type: this.type(params, results), locals, code });
    return this.importedFunctions() + this.funcs.length - 1;
  }

  /** Replaces the whole body (locals + code, without the size) of defined function `definedIndex`. */
  rawBody(definedIndex: number, bytes: number[]): this {
    this.rawBodies.set(definedIndex, bytes);
    return this;
  }

  table(min: number, max?: number): this {
    this.tables.push({ min, max });
    return this;
  }

  memory(min: number, max?: number): this {
    this.memories.push({ min, max });
    return this;
  }

  global(type: number, mutable: boolean, init: number[]): number {
    this.globals.push({ type, mutable, init });
    return this.globals.length - 1;
  }

  export(name: string, kind: number, index: number): this {
    this.exports.push({ name, kind, index });
    return this;
  }

  exportFunc(name: string, index: number): this {
    return this.export(name, 0, index);
  }

  start(index: number): this {
    this.startIndex = index;
    return this;
  }

  /** Element segment with an i32.const offset (or raw offset expression bytes including `end`). */
  element(offset: number | number[], funcs: number[]): this {
    const expr = typeof offset === 'number' ? [0x41, ...sleb(offset), 0x0b] : offset;
    this.elements.push({ offset: expr, funcs });
    return this;
  }

  data(offset: number | undefined, bytes: number[]): this {
    this.datas.push({ offset: offset === undefined ? undefined : [0x41, ...sleb(offset), 0x0b], bytes });
    return this;
  }

  /** Adds a data count section (what memory.init and data.drop need). */
  dataCount(): this {
    this.withDataCount = true;
    return this;
  }

  custom(name: string, bytes: number[]): this {
    this.customs.push({ name, bytes });
    return this;
  }

  build(): Uint8Array {
    const w = new ByteWriter();
    w.bytes(new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
    if (this.types.length) {
      section(w, 1, (s) => {
        s.u32(this.types.length);
        for (const t of this.types) {
          s.u8(0x60).u32(t.params.length);
          t.params.forEach((p) => s.u8(p));
          s.u32(t.results.length);
          t.results.forEach((r) => s.u8(r));
        }
      });
    }
    if (this.imports.length) {
      section(w, 2, (s) => {
        s.u32(this.imports.length);
        for (const i of this.imports) {
          s.name(i.module).name(i.field).u8(i.desc.kind);
          const d = i.desc;
          if (d.kind === 0) s.u32(d.type);
          else if (d.kind === 1) {
            s.u8(0x70);
            limits(s, d.min, d.max);
          } else if (d.kind === 2) limits(s, d.min, d.max);
          else s.u8(d.type).u8(d.mutable ? 1 : 0);
        }
      });
    }
    if (this.funcs.length) {
      section(w, 3, (s) => {
        s.u32(this.funcs.length);
        this.funcs.forEach((f) => s.u32(f.type));
      });
    }
    if (this.tables.length) {
      section(w, 4, (s) => {
        s.u32(this.tables.length);
        for (const t of this.tables) {
          s.u8(0x70);
          limits(s, t.min, t.max);
        }
      });
    }
    if (this.memories.length) {
      section(w, 5, (s) => {
        s.u32(this.memories.length);
        this.memories.forEach((m) => limits(s, m.min, m.max));
      });
    }
    if (this.globals.length) {
      section(w, 6, (s) => {
        s.u32(this.globals.length);
        for (const g of this.globals) s.u8(g.type).u8(g.mutable ? 1 : 0).bytes(new Uint8Array(g.init));
      });
    }
    if (this.exports.length) {
      section(w, 7, (s) => {
        s.u32(this.exports.length);
        for (const e of this.exports) s.name(e.name).u8(e.kind).u32(e.index);
      });
    }
    if (this.startIndex !== undefined) section(w, 8, (s) => s.u32(this.startIndex!));
    if (this.elements.length) {
      section(w, 9, (s) => {
        s.u32(this.elements.length);
        for (const e of this.elements) {
          s.u32(0).bytes(new Uint8Array(e.offset)).u32(e.funcs.length);
          e.funcs.forEach((f) => s.u32(f));
        }
      });
    }
    if (this.withDataCount) section(w, 12, (s) => s.u32(this.datas.length));
    if (this.funcs.length) {
      section(w, 10, (s) => {
        s.u32(this.funcs.length);
        this.funcs.forEach((f, i) => {
          const raw = this.rawBodies.get(i);
          const b = new ByteWriter();
          if (raw) b.bytes(new Uint8Array(raw));
          else {
            b.u32(f.locals.length);
            for (const [n, t] of f.locals) b.u32(n).u8(t);
            b.bytes(new Uint8Array(f.code));
          }
          const body = b.finish();
          s.u32(body.length).bytes(body);
        });
      });
    }
    if (this.datas.length) {
      section(w, 11, (s) => {
        s.u32(this.datas.length);
        for (const d of this.datas) {
          if (d.offset === undefined) s.u32(1);
          else s.u32(0).bytes(new Uint8Array(d.offset));
          s.u32(d.bytes.length).bytes(new Uint8Array(d.bytes));
        }
      });
    }
    for (const c of this.customs) {
      const s = new ByteWriter();
      s.name(c.name).bytes(new Uint8Array(c.bytes));
      w.section(0, s.finish());
    }
    return w.finish();
  }
}

/** Signed LEB128 bytes of a 32-bit value. */
export function sleb(v: number): number[] {
  return [...new ByteWriter().s32(v).finish()];
}

/** Unsigned LEB128 bytes of a 32-bit value. */
export function uleb(v: number): number[] {
  return [...new ByteWriter().u32(v).finish()];
}

/** Signed LEB128 bytes of a 64-bit value. */
export function sleb64(v: bigint): number[] {
  return [...new ByteWriter().s64(v).finish()];
}
