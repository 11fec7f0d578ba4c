import { ByteReader, ByteWriter } from '../wasm/leb128.js';
import { decodeInstructions } from '../wasm/code.js';
import { ExternalKind, SectionId, type WasmModule } from '../wasm/module.js';
import { cyclicFunctions } from './callgraph.js';

/** Names the prepared module exports for the runtime (never visible to programs). */
export const InternalExport = {
  fuel: '__gate_fuel',
  start: '__gate_start',
  yieldStub: '__gate_yield_stub',
  globalPrefix: '__gate_g',
} as const;

export const INTERNAL_PREFIX = '__gate_';

/** The prepared module imports its memory under this name. */
export const MEMORY_IMPORT = { module: 'gate', name: 'memory' } as const;

export interface CanonicalImport {
  module: 'gate' | 'wasi';
  name: string;
}

export interface RewriteOptions {
  /** Canonical name of each function import, in import order. */
  imports: CanonicalImport[];
  /** Inject preemption checks (loop headers and entries of recursive functions). */
  checks: boolean;
}

export interface RewriteResult {
  bytes: Uint8Array;
  /** Index of the appended stub function the checks call (undefined without checks). */
  yieldStubIndex: number | undefined;
  loopChecks: number;
  entryChecks: number;
}

const OP_LOOP = 0x03;
const OP_CALL = 0x10;
const OP_CALL_INDIRECT = 0x11;

/**
 * The first, binary stage of preparation. It rewrites the module so that the
 * runtime can drive it, without renumbering anything the program refers to:
 * imports get canonical names; the start function becomes an export (a start
 * section would run during instantiation, where the stack cannot be unwound);
 * memory and globals are exported for the host; a fuel global and a stub
 * function are appended, and the stub is called from a fuel check after every
 * `loop` and at the entry of functions on call-graph cycles. The binaryen
 * stage later turns the stub into an import.
 */
export function rewriteModule(m: WasmModule, opts: RewriteOptions): RewriteResult {
  const bytes = m.bytes;
  const out = new ByteWriter(bytes.length + 1024);
  out.bytes(bytes.subarray(0, 8));

  const funcCount = m.importedFunctionCount + m.functions.length;
  const fuelGlobal = m.globals.length;
  const yieldStubIndex = opts.checks ? funcCount : undefined;

  // The stub's type: () -> (). Reuse an existing one if present.
  let voidType = m.types.findIndex((t) => t.params.length === 0 && t.results.length === 0);
  const addVoidType = opts.checks && voidType < 0;
  if (addVoidType) voidType = m.types.length;

  const sectionOf = (id: number) => m.sections.find((s) => s.id === id);
  const copy = (id: number): void => {
    const s = sectionOf(id);
    if (s) out.bytes(bytes.subarray(s.start, s.end));
  };
  const payloadOf = (id: number): Uint8Array | undefined => {
    const s = sectionOf(id);
    return s ? bytes.subarray(s.payloadStart, s.end) : undefined;
  };
  /** Re-encodes a vector section with extra entries appended. */
  const extendVector = (id: number, extra: Uint8Array[]): void => {
    const payload = payloadOf(id);
    let count = 0;
    let rest: Uint8Array = new Uint8Array(0);
    if (payload) {
      const r = new ByteReader(payload);
      count = r.u32();
      rest = payload.subarray(r.pos);
    }
    const w = new ByteWriter(rest.length + 64).u32(count + extra.length).bytes(rest);
    for (const e of extra) w.bytes(e);
    out.section(id, w.finish());
  };

  // Type section
  if (addVoidType) extendVector(SectionId.Type, [Uint8Array.of(0x60, 0, 0)]);
  else copy(SectionId.Type);

  // Import section: canonical names, then the memory. Memory is imported so
  // that the host creates it with the instance's own growth limit (memory.grow
  // beyond it must return -1) and can prefill it when restoring. A module
  // without memory gets a private page, so that the host always has somewhere
  // to borrow for unwinding.
  {
    const w = new ByteWriter().u32(m.imports.length + 1);
    let fi = 0;
    for (const imp of m.imports) {
      const c = opts.imports[fi++];
      if (!c || imp.kind !== ExternalKind.Function) throw new Error('rewriteModule: imports must be resolved functions');
      w.name(c.module).name(c.name).u8(ExternalKind.Function).u32(imp.typeIndex);
    }
    const mem = m.memories[0] ?? { min: 1, max: 1 };
    w.name(MEMORY_IMPORT.module).name(MEMORY_IMPORT.name).u8(ExternalKind.Memory);
    if (mem.max === undefined) w.u8(0).u32(mem.min);
    else w.u8(1).u32(mem.min).u32(mem.max);
    out.section(SectionId.Import, w.finish());
  }

  // Function section (+ stub)
  if (opts.checks) extendVector(SectionId.Function, [new ByteWriter().u32(voidType).finish()]);
  else copy(SectionId.Function);

  copy(SectionId.Table);

  // (The memory section became an import.)

  // Globals (+ fuel)
  if (opts.checks) extendVector(SectionId.Global, [Uint8Array.of(0x7f, 1, 0x41, 0, 0x0b)]);
  else copy(SectionId.Global);

  // Exports (+ internal ones)
  const extraExports: Uint8Array[] = [];
  const exp = (name: string, kind: number, index: number): void => {
    extraExports.push(new ByteWriter().name(name).u8(kind).u32(index).finish());
  };
  m.globals.forEach((_g, i) => exp(`${InternalExport.globalPrefix}${i}`, ExternalKind.Global, i));
  if (opts.checks) {
    exp(InternalExport.fuel, ExternalKind.Global, fuelGlobal);
    exp(InternalExport.yieldStub, ExternalKind.Function, yieldStubIndex!);
  }
  if (m.start !== undefined) exp(InternalExport.start, ExternalKind.Function, m.start);
  extendVector(SectionId.Export, extraExports);

  // Start section is dropped on purpose (see above).
  copy(SectionId.Element);
  copy(SectionId.DataCount);

  // Code section
  let loopChecks = 0;
  let entryChecks = 0;
  const codeSec = sectionOf(SectionId.Code);
  if (codeSec || opts.checks) {
    const bodies: Uint8Array[] = [];
    if (!opts.checks) {
      if (codeSec) out.bytes(bytes.subarray(codeSec.start, codeSec.end));
    } else {
      const callees: number[][] = [];
      const indirect: boolean[] = [];
      const loopEnds: number[][] = [];
      for (const body of m.bodies) {
        const calls: number[] = [];
        const loops: number[] = [];
        let hasIndirect = false;
        decodeInstructions(bytes, body, (op, _sub, pos, immEnd) => {
          if (op === OP_LOOP) loops.push(immEnd);
          else if (op === OP_CALL) calls.push(new ByteReader(bytes, pos + 1, immEnd).u32());
          else if (op === OP_CALL_INDIRECT) hasIndirect = true;
        });
        callees.push(calls);
        indirect.push(hasIndirect);
        loopEnds.push(loops);
      }
      const cyclic = cyclicFunctions(m, callees, indirect);
      const check = checkSequence(fuelGlobal, yieldStubIndex!);
      m.bodies.forEach((body, i) => {
        const loops = loopEnds[i]!;
        const atEntry = cyclic.has(i);
        const w = new ByteWriter(body.end - body.bodyStart + (loops.length + 1) * check.length);
        w.bytes(bytes.subarray(body.bodyStart, body.codeStart));
        if (atEntry) {
          w.bytes(check);
          entryChecks++;
        }
        let pos = body.codeStart;
        for (const at of loops) {
          w.bytes(bytes.subarray(pos, at)).bytes(check);
          pos = at;
        }
        loopChecks += loops.length;
        w.bytes(bytes.subarray(pos, body.end));
        bodies.push(w.finish());
      });
      bodies.push(Uint8Array.of(0, 0x0b)); // the stub: no locals, empty body
      const cw = new ByteWriter().u32(bodies.length);
      for (const b of bodies) cw.u32(b.length).bytes(b);
      out.section(SectionId.Code, cw.finish());
    }
  }

  copy(SectionId.Data);
  // Custom sections (names, debug info) are left out: nothing downstream needs them.
  return { bytes: out.finish(), yieldStubIndex, loopChecks, entryChecks };
}

/**
 * `if (fuel == 0) yield(); fuel -= 1;` — the host refills fuel in yield()
 * and decides there whether the time slice is over.
 */
function checkSequence(fuel: number, yieldFn: number): Uint8Array {
  return new ByteWriter()
    .u8(0x23).u32(fuel) // global.get
    .u8(0x45) // i32.eqz
    .u8(0x04).u8(0x40) // if (void)
    .u8(0x10).u32(yieldFn) // call
    .u8(0x0b) // end
    .u8(0x23).u32(fuel)
    .u8(0x41).s32(1) // i32.const 1
    .u8(0x6b) // i32.sub
    .u8(0x24).u32(fuel) // global.set
    .finish();
}
