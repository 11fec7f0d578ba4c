/**
 * Module acceptance rules of spec abi.md §1.1: size and count limits, the
 * supported feature set (checked down to every instruction), one memory and
 * table at most, no imported memories, tables or globals, element segments
 * inside the initial table, unique export names.
 *
 * parseModule has already checked the binary structure of every section
 * except function bodies; this adds Gate's own rules. Semantic validation
 * (operand types, index ranges inside code) is still the engine's job.
 */
import { valuesHeldAcrossBlocks } from './operand-stack.js';
import { ModuleError, ModuleLimitError } from './errors.js';
import { ImportError, goQuote } from './import-error.js';
import { ByteReader } from './leb128.js';
import { ExternalKind, SectionId, functionType, type WasmModule } from './module.js';

/** Hard cap on declared initial memory, in 64 KiB pages (2 GiB − 64 KiB). */
export const MAX_MEMORY_PAGES = 32767;
export const PAGE_SIZE = 65536;

export interface ModuleLimits {
  /** Module size in bytes (policy MaxModuleSize). */
  readonly maxModuleSize: number;
  /** Functions, imported and defined together. */
  readonly maxFunctions: number;
  readonly maxTypes: number;
  readonly maxImports: number;
  /** Parameters per function type. */
  readonly maxParams: number;
  /** Globals, imported and defined together. */
  readonly maxGlobals: number;
  readonly maxExports: number;
  /** Length of import and export names, in bytes. */
  readonly maxNameLength: number;
  /** Initial table length. */
  readonly maxTableLength: number;
  /** Element segments, and entries over all segments. */
  readonly maxElements: number;
  /**
   * Instance memory size limit in pages (policy MaxMemorySize rounded up to
   * whole pages). A module whose initial memory is larger is rejected;
   * the declared maximum is only clamped (at run time) by this value.
   */
  readonly memoryLimitPages: number;
}

/** The original server's defaults (spec abi.md §1.1, web-api.md §15). */
export const DEFAULT_SERVER_LIMITS: ModuleLimits = Object.freeze({
  maxModuleSize: 32 * 1024 * 1024,
  maxFunctions: 32768,
  maxTypes: 32768,
  maxImports: 32768,
  maxParams: 255,
  maxGlobals: 32,
  maxExports: 64,
  maxNameLength: 100000,
  maxTableLength: 10_000_000,
  maxElements: 10_000_000,
  memoryLimitPages: 512,
});

/**
 * Daemon-style limits for local use: large modules and memory, and 100
 * exports so that the original's ABI test program (78 exports) loads, as in
 * the original's own test harness.
 */
export const DEFAULT_LOCAL_LIMITS: ModuleLimits = Object.freeze({
  ...DEFAULT_SERVER_LIMITS,
  maxModuleSize: 2 ** 31 - 1,
  maxExports: 100,
  memoryLimitPages: MAX_MEMORY_PAGES,
});

const KIND_NAMES = ['function', 'table', 'memory', 'global'];

const utf8 = new TextEncoder();

function tooMany(what: string, count: number, limit: number): ModuleLimitError {
  return new ModuleLimitError(`${what} count is too large: ${count} (limit ${limit})`);
}

/** Throws ModuleError (or a subclass) if `m` is not acceptable under `limits`. */
export function validateModule(m: WasmModule, limits: ModuleLimits): void {
  if (m.bytes.length > limits.maxModuleSize) {
    throw new ModuleLimitError(`module size limit exceeded: ${m.bytes.length} bytes (limit ${limits.maxModuleSize})`);
  }

  // Types.
  if (m.types.length > limits.maxTypes) throw tooMany('type', m.types.length, limits.maxTypes);
  for (let i = 0; i < m.types.length; i++) {
    const n = m.types[i]!.params.length;
    if (n > limits.maxParams) {
      throw new ModuleLimitError(`function type #${i} has too many parameters: ${n} (limit ${limits.maxParams})`);
    }
  }

  // Imports: only functions (abi/imports.ts resolves them against the ABI).
  if (m.imports.length > limits.maxImports) throw tooMany('import', m.imports.length, limits.maxImports);
  let importedGlobals = 0;
  for (let i = 0; i < m.imports.length; i++) {
    const imp = m.imports[i]!;
    checkName(imp.module, limits, `module name of import #${i}`);
    checkName(imp.field, limits, `field name of import #${i}`);
    switch (imp.kind) {
      case ExternalKind.Function:
        break;
      case ExternalKind.Global:
        importedGlobals++;
        if (imp.global?.mutable) throw new ImportError(`unsupported mutable global in import #${i}`, imp.module, imp.field);
        throw new ImportError(`import global not supported: ${goQuote(imp.module)} ${goQuote(imp.field)}`, imp.module, imp.field);
      default:
        throw new ImportError(`import kind not supported: ${KIND_NAMES[imp.kind] ?? imp.kind}`, imp.module, imp.field);
    }
  }

  const functionCount = m.importedFunctionCount + m.functions.length;
  if (functionCount > limits.maxFunctions) throw tooMany('function', functionCount, limits.maxFunctions);

  // Table.
  if (m.tables.length > 1) throw new ModuleError('multiple tables not supported');
  const tableSize = m.tables[0]?.min ?? 0;
  if (tableSize > limits.maxTableLength) {
    throw new ModuleLimitError(`initial table size is too large: ${tableSize} (limit ${limits.maxTableLength})`);
  }

  // Memory. A declared maximum above the cap is accepted and clamped at run
  // time, as the original compiler does (toolchains commonly declare 65536).
  if (m.memories.length > 1) throw new ModuleError('multiple memories not supported');
  const memory = m.memories[0];
  if (memory !== undefined) {
    if (memory.min > MAX_MEMORY_PAGES) {
      throw new ModuleLimitError(`initial memory size is too large: ${memory.min} pages (limit ${MAX_MEMORY_PAGES})`);
    }
    if (memory.min > limits.memoryLimitPages) {
      throw new ModuleLimitError(
        `initial program memory size exceeds instance memory size limit (${memory.min} pages > ${limits.memoryLimitPages} pages)`,
      );
    }
  }

  // Globals.
  const globalCount = importedGlobals + m.globals.length;
  if (globalCount > limits.maxGlobals) throw tooMany('global', globalCount, limits.maxGlobals);

  // Exports.
  if (m.exports.length > limits.maxExports) throw tooMany('export', m.exports.length, limits.maxExports);
  const names = new Set<string>();
  for (let i = 0; i < m.exports.length; i++) {
    const e = m.exports[i]!;
    checkName(e.name, limits, `name of export #${i}`);
    if (names.has(e.name)) throw new ModuleError(`duplicate export name: ${goQuote(e.name)}`);
    names.add(e.name);
    const count = [functionCount, m.tables.length, m.memories.length, globalCount][e.kind] ?? 0;
    if (e.index >= count) {
      throw new ModuleError(`export ${goQuote(e.name)} refers to ${KIND_NAMES[e.kind]} index ${e.index} which does not exist`);
    }
  }

  // Start function.
  if (m.start !== undefined) {
    if (m.start >= functionCount) throw new ModuleError(`start function index out of bounds: ${m.start}`);
    const t = functionType(m, m.start);
    if (t !== undefined && (t.params.length > 0 || t.results.length > 0)) {
      throw new ModuleError(`invalid start function signature: start function must take no parameters and return nothing`);
    }
  }

  // Elements.
  if (m.elementSegmentCount > limits.maxElements) throw tooMany('element segment', m.elementSegmentCount, limits.maxElements);
  if (m.elementEntryCount > limits.maxElements) throw tooMany('element entry', m.elementEntryCount, limits.maxElements);
  checkElementSegments(m, tableSize, functionCount);

  // Code: decoded whole, and held values bounded (operand-stack.ts).
  for (let i = 0; i < m.bodies.length; i++) {
    const held = valuesHeldAcrossBlocks(m, i);
    if (held > MAX_VALUES_HELD_ACROSS_BLOCKS) {
      throw new ModuleLimitError(
        `function ${m.importedFunctionCount + i} holds too many operand values across blocks (${held}; limit ${MAX_VALUES_HELD_ACROSS_BLOCKS}): keep them in locals`,
        m.bodies[i]!.codeStart,
      );
    }
  }
}

/**
 * The most operand values a function body may hold across the entries of its
 * blocks, loops and ifs, summed over them (operand-stack.ts): about 40 MB of
 * V8's baseline compiler at most. Compilers keep values in locals across
 * blocks: clang's output holds none, emscripten's sql.js 152 at most.
 */
export const MAX_VALUES_HELD_ACROSS_BLOCKS = 1 << 20;

function checkName(name: string, limits: ModuleLimits, what: string): void {
  // A UTF-16 unit takes 1 to 3 UTF-8 bytes: encode only when it can matter.
  if (name.length * 3 <= limits.maxNameLength) return;
  if (name.length > limits.maxNameLength || utf8.encode(name).length > limits.maxNameLength) {
    throw new ModuleLimitError(`${what} is too long (limit ${limits.maxNameLength} bytes)`);
  }
}

/** Element segments must fit in the initial table (tables never grow) and name existing functions. */
function checkElementSegments(m: WasmModule, tableSize: number, functionCount: number): void {
  const section = m.sections.find((s) => s.id === SectionId.Element);
  if (section === undefined) return;
  const r = new ByteReader(m.bytes, section.payloadStart, section.end);
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    r.u32(); // flags, 0 (parseModule rejects other kinds)
    const at = r.pos;
    const op = r.u8();
    if (op !== 0x41) throw new ModuleError(`table segment #${i} offset must be an i32.const expression`, at);
    const offset = r.s32() >>> 0;
    if (r.u8() !== 0x0b) throw new ModuleError(`table segment #${i} offset expression is not a single constant`, at);
    const count = r.u32();
    if (offset + count > tableSize) throw new ModuleError(`table segment #${i} exceeds initial table size`, at);
    for (let j = 0; j < count; j++) {
      const f = r.u32();
      if (f >= functionCount) throw new ModuleError(`table element index out of bounds: ${f}`, r.pos);
    }
  }
}
