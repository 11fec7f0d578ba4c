import { ByteWriter } from '../wasm/leb128.js';
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
  copy(SectionId.Type);

  // Import section: canonical names, then the memory. Memory is imported so
  // that the host creates it with the instance's own growth limit (memory.grow
  // beyond it must return -1) and can prefill it when restoring. A module
  // without memory gets an empty one (it is never used).
  {
    const w = new ByteWriter().u32(m.imports.length + 1);
    let fi = 0;
    for (const imp of m.imports) {
      const c = opts.imports[fi++];
      if (!c || imp.kind !== ExternalKind.Function) throw new Error('rewriteModule: imports must be resolved functions');
      w.name(c.module).name(c.name).u8(ExternalKind.Function).u32(imp.typeIndex);
    }
    // The declared minimum is 0: the host creates the memory with the right
    // size (the program's initial size, or a snapshot's current one), and
    // the prepared module must not depend on it.
    const mem = m.memories[0] ?? { min: 0, max: 0 };
    w.name(MEMORY_IMPORT.module).name(MEMORY_IMPORT.name).u8(ExternalKind.Memory);
    if (mem.max === undefined) w.u8(0).u32(0);
    else w.u8(1).u32(0).u32(mem.max);
    out.section(SectionId.Import, w.finish());
  }

  copy(SectionId.Function);

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
  copy(SectionId.Code);

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

/** A global's entry, canonical: zero for mutable globals, the re-encoded constant for immutable ones. */
function globalEntry(bytes: Uint8Array, g: GlobalDef): Uint8Array {
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
