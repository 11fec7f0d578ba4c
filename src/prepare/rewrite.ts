import { ByteReader, ByteWriter } from '../wasm/leb128.js';
import { findDataSegmentUse } from '../wasm/code.js';
import { ExternalKind, SectionId, type GlobalDef, type WasmModule } from '../wasm/module.js';
import { InternalExport } from './internal.js';

export { InternalExport, INTERNAL_PREFIX } from './internal.js';

/** The prepared module imports its memory under this name. */
export const MEMORY_IMPORT = { module: 'gate', name: 'memory' } as const;

export interface CanonicalImport {
  module: 'gate' | 'wasi';
  name: string;
}

export interface RewriteOptions {
  /** Canonical name of each function import, in import order. */
  imports: CanonicalImport[];
}

export interface RewriteResult {
  bytes: Uint8Array;
}

/**
 * The first, binary stage of preparation. It rewrites the module so that the
 * runtime can drive it, without renumbering anything the program refers to:
 * imports get canonical names; the memory becomes an import; the start
 * function becomes an export (a start section would run during
 * instantiation, where the stack cannot be unwound); globals are exported
 * for the host. The code is copied as it is: instrument.ts adds the checks
 * and the unwinding.
 */
export function rewriteModule(m: WasmModule, opts: RewriteOptions): RewriteResult {
  const bytes = m.bytes;
  // Data segments are not copied (see below): a snapshot's large data
  // section must not make this buffer large.
  const dataSection = m.sections.find((s) => s.id === SectionId.Data);
  const out = new ByteWriter(bytes.length - (dataSection ? dataSection.end - dataSection.start : 0) + 1024);
  out.bytes(bytes.subarray(0, 8));

  const sectionOf = (id: number) => m.sections.find((s) => s.id === id);
  const copy = (id: number): void => {
    const s = sectionOf(id);
    if (s) out.bytes(bytes.subarray(s.start, s.end));
  };
  /** Copies a vector section with entries appended (as it is when there are none). */
  const appendVector = (id: number, extra: Uint8Array[]): void => {
    const s = sectionOf(id);
    if (!extra.length) return copy(id);
    let count = 0;
    let rest: Uint8Array = new Uint8Array(0);
    if (s) {
      const r = new ByteReader(bytes, s.payloadStart, s.end);
      count = r.u32();
      rest = bytes.subarray(r.pos, s.end);
    }
    const w = new ByteWriter(rest.length + 64).u32(count + extra.length).bytes(rest);
    for (const e of extra) w.bytes(e);
    out.section(id, w.finish());
  };
  // Float globals get a getter of their bits, mutable ones a setter too: a
  // WebAssembly.Global's value is a JS number, which quiets signalling NaNs.
  const floats = m.globals.map((g, i) => ({ g, i })).filter(({ g }) => g.type === 0x7d || g.type === 0x7c);
  const accessorTypes: number[][] = [];
  const typeOf = (params: number[], results: number[]): number => {
    const k = m.types.findIndex((t) => t.params.length === params.length && t.results.length === results.length && t.params.every((p, j) => p === params[j]) && t.results.every((r, j) => r === results[j]));
    if (k >= 0) return k;
    const j = accessorTypes.findIndex((t) => t.join() === [params.length, ...params, results.length, ...results].join());
    if (j >= 0) return m.types.length + j;
    accessorTypes.push([params.length, ...params, results.length, ...results]);
    return m.types.length + accessorTypes.length - 1;
  };
  const accessors = floats.map(({ g, i }) => {
    const int = g.type === 0x7d ? 0x7f : 0x7e;
    return { i, int, float: g.type, mutable: g.mutable, setType: typeOf([int], []), getType: typeOf([], [int]) };
  });
  if (accessorTypes.length) {
    const s = sectionOf(SectionId.Type);
    const w = new ByteWriter().u32(m.types.length + accessorTypes.length);
    if (s) {
      const r = new ByteReader(bytes, s.payloadStart, s.end);
      r.u32();
      w.bytes(bytes.subarray(r.pos, s.end));
    }
    for (const [np, ...rest] of accessorTypes) {
      w.u8(0x60).u32(np!);
      for (let j = 0; j < np!; j++) w.u8(rest[j]!);
      const nr = rest[np!]!;
      w.u32(nr);
      for (let j = 0; j < nr; j++) w.u8(rest[np! + 1 + j]!);
    }
    out.section(SectionId.Type, w.finish());
  } else copy(SectionId.Type);

  // Import section: canonical names, then the memory. Memory is imported so
  // that the host creates it with the instance's own growth limit (memory.grow
  // beyond it must return -1) and can prefill it when restoring. A module
  // without memory gets an empty one (it is never used).
  out.section(SectionId.Import, importSection(m, opts.imports, { min: 0, max: 0 }));

  appendVector(
    SectionId.Function,
    accessors.flatMap((a) => [...(a.mutable ? [new ByteWriter().u32(a.setType).finish()] : []), new ByteWriter().u32(a.getType).finish()]),
  );

  copy(SectionId.Table);

  // (The memory section became an import.)

  // Globals. Mutable globals start at zero here: the host sets
  // their values after instantiation, from the module or from a snapshot, so
  // that both prepare to the same bytes.
  {
    const globals = m.globals.map((g) => globalEntry(bytes, g));
    if (globals.length) {
      const w = new ByteWriter().u32(globals.length);
      for (const g of globals) w.bytes(g);
      out.section(SectionId.Global, w.finish());
    }
  }

  // Exports (the program's, re-encoded, + the globals and the start function)
  const exportEntries: Uint8Array[] = [];
  const exp = (name: string, kind: number, index: number): void => {
    exportEntries.push(new ByteWriter().name(name).u8(kind).u32(index).finish());
  };
  for (const e of m.exports) exp(e.name, e.kind, e.index);
  m.globals.forEach((_g, i) => exp(`${InternalExport.globalPrefix}${i}`, ExternalKind.Global, i));
  let nextAccessor = m.importedFunctionCount + m.functions.length;
  for (const a of accessors) {
    if (a.mutable) exp(`${InternalExport.globalSetPrefix}${a.i}`, ExternalKind.Function, nextAccessor++);
    exp(`${InternalExport.globalGetPrefix}${a.i}`, ExternalKind.Function, nextAccessor++);
  }
  if (m.start !== undefined) exp(InternalExport.start, ExternalKind.Function, m.start);
  {
    const w = new ByteWriter().u32(exportEntries.length);
    for (const e of exportEntries) w.bytes(e);
    out.section(SectionId.Export, w.finish());
  }

  // Start section is dropped on purpose (see above).
  copy(SectionId.Element);
  // Active data segments are applied by the host (from the module or a
  // snapshot). Only code that names segments (memory.init, data.drop) needs
  // the section, with active segments turned into empty passive ones so that
  // indices and the runtime behaviour of such instructions stay the same.
  const keepData = findDataSegmentUse(m) !== undefined;
  if (keepData) copy(SectionId.DataCount);

  // Code section: the instrumentation (instrument.ts) rewrites it.
  appendVector(
    SectionId.Code,
    accessors.flatMap((a) => {
      // (param int) global.set i (float.reinterpret_int (local.get 0)); () -> int.reinterpret_float (global.get i)
      const set = new ByteWriter().u8(0).u8(0x20).u8(0).u8(a.float === 0x7d ? 0xbe : 0xbf).u8(0x24).u32(a.i).u8(0x0b).finish();
      const get = new ByteWriter().u8(0).u8(0x23).u32(a.i).u8(a.float === 0x7d ? 0xbc : 0xbd).u8(0x0b).finish();
      return [...(a.mutable ? [new ByteWriter().u32(set.length).bytes(set).finish()] : []), new ByteWriter().u32(get.length).bytes(get).finish()];
    }),
  );

  if (keepData) {
    const w = new ByteWriter().u32(m.dataSegments.length);
    for (const d of m.dataSegments) {
      if (d.passive) w.u32(1).u32(d.end - d.start).bytes(bytes.subarray(d.start, d.end));
      else w.u32(1).u32(0);
    }
    out.section(SectionId.Data, w.finish());
  }
  // Custom sections (names, debug info) are left out: nothing downstream needs them.
  return { bytes: out.finish() };
}

/**
 * The import section of a rewritten module: the program's function imports
 * under their canonical names, then the memory (`memoryWhenAbsent` for a
 * module without one), declared with minimum 0: the host creates it with
 * the right size (the program's initial size, or a snapshot's current one),
 * and the prepared module must not depend on it.
 */
export function importSection(m: WasmModule, imports: readonly CanonicalImport[], memoryWhenAbsent: { min: number; max: number }): Uint8Array {
  const w = new ByteWriter().u32(m.imports.length + 1);
  let fi = 0;
  for (const imp of m.imports) {
    const c = imports[fi++];
    if (!c || imp.kind !== ExternalKind.Function) throw new Error('rewriteModule: imports must be resolved functions');
    w.name(c.module).name(c.name).u8(ExternalKind.Function).u32(imp.typeIndex);
  }
  const mem = m.memories[0] ?? memoryWhenAbsent;
  w.name(MEMORY_IMPORT.module).name(MEMORY_IMPORT.name).u8(ExternalKind.Memory);
  if (mem.max === undefined) w.u8(0).u32(0);
  else w.u8(1).u32(0).u32(mem.max);
  return w.finish();
}

/** A global's entry, canonical: zero for mutable globals, the re-encoded constant for immutable ones. */
export function globalEntry(bytes: Uint8Array, g: GlobalDef): Uint8Array {
  const w = new ByteWriter().u8(g.type).u8(g.mutable ? 1 : 0);
  const value = g.mutable ? undefined : g.init;
  if (!g.mutable && value === undefined) return w.bytes(bytes.subarray(g.initStart, g.initEnd)).finish();
  switch (g.type) {
    case 0x7f:
      w.u8(0x41).s32(Number(value ?? 0));
      break;
    case 0x7e:
      w.u8(0x42).s64(BigInt(value ?? 0n));
      break;
    case 0x7d: {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, Number(value ?? 0), true);
      w.u8(0x43).bytes(b);
      break;
    }
    default: {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, BigInt(value ?? 0n), true);
      w.u8(0x44).bytes(b);
    }
  }
  return w.u8(0x0b).finish();
}
