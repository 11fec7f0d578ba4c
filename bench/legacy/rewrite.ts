/**
 * The first version's preparation (binary rewrite with fuel checks + Binaryen Asyncify),
 * kept only so that benchmarks can measure it beside our own transform in one run.
 * Never on the load path of gate-server, gate-daemon or gate run.
 */
import { ByteReader, ByteWriter } from '../../src/wasm/leb128.js';
import { decodeInstructions, findDataSegmentUse, Opcode } from '../../src/wasm/code.js';
import { ExternalKind, SectionId, type FunctionBody, type WasmModule } from '../../src/wasm/module.js';
import { globalEntry, importSection } from '../../src/prepare/rewrite.js';
import type { CallInfo } from './reach.js';

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
  calls: CallInfo;
}


/**
 * The first, binary stage of preparation. It rewrites the module so that the
 * runtime can drive it, without renumbering anything the program refers to:
 * imports get canonical names; the start function becomes an export (a start
 * section would run during instantiation, where the stack cannot be unwound);
 * memory and globals are exported for the host; a fuel global and a stub
 * function are appended, and the stub is called from a fuel check after every
 * `loop`, at the entry of every function that calls, and before bulk memory
 * operations (charged by length). The binaryen
 * stage later turns the stub into an import.
 */
export function rewriteModule(m: WasmModule, opts: RewriteOptions): RewriteResult {
  const bytes = m.bytes;
  // Data segments are not copied (see below): a snapshot's large data
  // section must not make this buffer large.
  const dataSection = m.sections.find((s) => s.id === SectionId.Data);
  const out = new ByteWriter(bytes.length - (dataSection ? dataSection.end - dataSection.start : 0) + 1024);
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
  out.section(SectionId.Import, importSection(m, opts.imports, { min: 1, max: 1 }));

  // Function section (+ stub)
  if (opts.checks) extendVector(SectionId.Function, [new ByteWriter().u32(voidType).finish()]);
  else copy(SectionId.Function);

  copy(SectionId.Table);

  // (The memory section became an import.)

  // Globals (+ fuel). Mutable globals start at zero here: the host sets
  // their values after instantiation, from the module or from a snapshot, so
  // that both prepare to the same bytes.
  {
    const globals = m.globals.map((g) => globalEntry(bytes, g));
    if (opts.checks) globals.push(Uint8Array.of(0x7f, 1, 0x41, 0, 0x0b));
    if (globals.length) {
      const w = new ByteWriter().u32(globals.length);
      for (const g of globals) w.bytes(g);
      out.section(SectionId.Global, w.finish());
    }
  }

  // Exports (the program's, re-encoded, + internal ones)
  const exportEntries: Uint8Array[] = [];
  const exp = (name: string, kind: number, index: number): void => {
    exportEntries.push(new ByteWriter().name(name).u8(kind).u32(index).finish());
  };
  for (const e of m.exports) exp(e.name, e.kind, e.index);
  m.globals.forEach((_g, i) => exp(`${InternalExport.globalPrefix}${i}`, ExternalKind.Global, i));
  if (opts.checks) {
    exp(InternalExport.fuel, ExternalKind.Global, fuelGlobal);
    exp(InternalExport.yieldStub, ExternalKind.Function, yieldStubIndex!);
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

  // Code section
  let loopChecks = 0;
  let entryChecks = 0;
  const calls: CallInfo = { callees: [], indirect: [], checked: [] };
  const codeSec = sectionOf(SectionId.Code);
  if (codeSec || opts.checks) {
    const bodies: Uint8Array[] = [];
    if (!opts.checks) {
      if (codeSec) out.bytes(bytes.subarray(codeSec.start, codeSec.end));
    } else {
      // First pass: what each function does that the checks care about.
      const infos = m.bodies.map((body) => scanBody(bytes, body));
      infos.forEach((f) => {
        calls.callees.push(f.callees.map((c) => c.target));
        calls.indirect.push(f.indirectCalls.length > 0);
        calls.checked.push(f.checked);
      });
      const base = m.importedFunctionCount;
      m.bodies.forEach((body, i) => {
        const f = infos[i]!;
        if (!f.checked) {
          // No loop, no call, no bulk operation: bounded straight-line code
          // that neither checks nor touches the fuel.
          bodies.push(bytes.slice(body.bodyStart, body.end));
          return;
        }
        const type = m.types[m.functions[i]!]!;
        // Fuel lives in a local while the function runs (V8 keeps it in a
        // register); the global is synced around calls into functions that
        // check and at every exit, so callers see what callees used.
        const fuelLocal = type.params.length + body.localCount;
        const scratch = fuelLocal + 1;
        const check = localCheck(fuelGlobal, fuelLocal, yieldStubIndex!);
        const store = Uint8Array.of(0x20, ...uleb(fuelLocal), 0x24, ...uleb(fuelGlobal)); // local.get; global.set
        const load = Uint8Array.of(0x23, ...uleb(fuelGlobal), 0x21, ...uleb(fuelLocal)); // global.get; local.set
        const inserts: Array<{ at: number; order: number; code: Uint8Array }> = [];
        for (const at of f.loops) inserts.push({ at, order: 1, code: check });
        for (const at of f.bulk) {
          inserts.push({ at, order: 2, code: concatBytes(bulkCharge(fuelLocal, scratch), check) });
        }
        const synced = (c: { target: number }): boolean => c.target >= base && infos[c.target - base]?.checked === true;
        for (const c of [...f.callees.filter(synced), ...f.indirectCalls]) {
          inserts.push({ at: c.pos, order: 2, code: store });
          inserts.push({ at: c.end, order: 0, code: load });
        }
        for (const at of f.exits) inserts.push({ at, order: 2, code: store });
        inserts.sort((a, b) => a.at - b.at || a.order - b.order);

        const w = new ByteWriter(body.end - body.bodyStart + 64 + inserts.reduce((n, x) => n + x.code.length, 0));
        const r = new ByteReader(bytes, body.bodyStart, body.codeStart);
        const groups = r.u32();
        w.u32(groups + 1).bytes(bytes.subarray(r.pos, body.codeStart)).u32(2).u8(0x7f);
        w.bytes(load);
        // Entry checks in every function that calls: between two checks the
        // program then runs only straight-line code of bounded length.
        if (f.callees.length || f.indirectCalls.length) {
          w.bytes(check);
          entryChecks++;
        }
        let pos = body.codeStart;
        for (const x of inserts) {
          w.bytes(bytes.subarray(pos, x.at)).bytes(x.code);
          pos = x.at;
        }
        loopChecks += f.loops.length;
        w.bytes(bytes.subarray(pos, body.end));
        bodies.push(w.finish());
      });
      bodies.push(Uint8Array.of(0, 0x0b)); // the stub: no locals, empty body
      const cw = new ByteWriter().u32(bodies.length);
      for (const b of bodies) cw.u32(b.length).bytes(b);
      out.section(SectionId.Code, cw.finish());
    }
  }

  if (keepData) {
    const w = new ByteWriter().u32(m.dataSegments.length);
    for (const d of m.dataSegments) {
      if (d.passive) w.u32(1).u32(d.end - d.start).bytes(bytes.subarray(d.start, d.end));
      else w.u32(1).u32(0);
    }
    out.section(SectionId.Data, w.finish());
  }
  // Custom sections (names, debug info) are left out: nothing downstream needs them.
  return { bytes: out.finish(), yieldStubIndex, loopChecks, entryChecks, calls };
}

/**
 * `fuel -= 1; if (fuel <= 0) { yield(); fuel = global }` on the local copy of
 * the fuel — the host refills the global in yield() and decides there whether
 * the time slice is over.
 */
function localCheck(fuelGlobal: number, fuelLocal: number, yieldFn: number): Uint8Array {
  return new ByteWriter()
    .u8(0x20).u32(fuelLocal) // local.get
    .u8(0x41).s32(1) // i32.const 1
    .u8(0x6b) // i32.sub
    .u8(0x22).u32(fuelLocal) // local.tee
    .u8(0x41).s32(0)
    .u8(0x4c) // i32.le_s
    .u8(0x04).u8(0x40) // if (void)
    .u8(0x10).u32(yieldFn) // call
    .u8(0x23).u32(fuelGlobal) // global.get
    .u8(0x21).u32(fuelLocal) // local.set
    .u8(0x0b) // end
    .finish();
}

/**
 * Before memory.fill / memory.copy (length on top of the stack): one unit of
 * fuel per 64 KiB, so that a loop of huge copies still reaches yield() in time.
 */
function bulkCharge(fuelLocal: number, scratch: number): Uint8Array {
  return new ByteWriter()
    .u8(0x22).u32(scratch) // local.tee (the length stays on the stack)
    .u8(0x20).u32(fuelLocal)
    .u8(0x20).u32(scratch) // local.get
    .u8(0x41).s32(16)
    .u8(0x76) // i32.shr_u
    .u8(0x6b) // i32.sub
    .u8(0x21).u32(fuelLocal) // local.set
    .finish();
}

function uleb(v: number): number[] {
  return Array.from(new ByteWriter().u32(v).finish());
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

interface BodyInfo {
  /** Offsets just after each `loop` and its block type. */
  loops: number[];
  /** Offsets of memory.fill / memory.copy. */
  bulk: number[];
  /** Direct calls: target, offset of the call and just after it. */
  callees: Array<{ target: number; pos: number; end: number }>;
  indirectCalls: Array<{ pos: number; end: number }>;
  /** Offsets of instructions that leave the function (return, branches to its label, its final end). */
  exits: number[];
  /** Whether the function gets checks (it loops, calls or copies). */
  checked: boolean;
}

function scanBody(bytes: Uint8Array, body: FunctionBody): BodyInfo {
  const info: BodyInfo = { loops: [], bulk: [], callees: [], indirectCalls: [], exits: [], checked: false };
  let depth = 0;
  decodeInstructions(bytes, body, (op, sub, pos, immEnd) => {
    switch (op) {
      case 0x02: // block
      case 0x04: // if
        depth++;
        break;
      case Opcode.Loop:
        depth++;
        info.loops.push(immEnd);
        break;
      case 0x0b: // end
        if (depth === 0) info.exits.push(pos);
        else depth--;
        break;
      case 0x0c: // br
      case 0x0d: // br_if
        if (new ByteReader(bytes, pos + 1, immEnd).u32() === depth) info.exits.push(pos);
        break;
      case 0x0e: {
        // br_table: any target may be the function's own label
        const r = new ByteReader(bytes, pos + 1, immEnd);
        const n = r.u32();
        let exits = false;
        for (let k = 0; k <= n; k++) if (r.u32() === depth) exits = true;
        if (exits) info.exits.push(pos);
        break;
      }
      case 0x0f: // return
        info.exits.push(pos);
        break;
      case Opcode.Call:
        info.callees.push({ target: new ByteReader(bytes, pos + 1, immEnd).u32(), pos, end: immEnd });
        break;
      case Opcode.CallIndirect:
        info.indirectCalls.push({ pos, end: immEnd });
        break;
      case 0xfc:
        if (sub === 10 || sub === 11) info.bulk.push(pos);
        break;
    }
  });
  info.checked = info.loops.length > 0 || info.bulk.length > 0 || info.callees.length > 0 || info.indirectCalls.length > 0;
  return info;
}
