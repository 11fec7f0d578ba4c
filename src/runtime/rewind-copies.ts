/**
 * Lazy rewind, the host's side (docs/runtime.md "Lazy rewind"): before a
 * rewind starts, every function on the saved stack gets its rewind copy
 * (prepare/instrument.ts RewindCopier) in its instance's funcs table. Copies
 * are generated and compiled once per prepared module and function, and
 * instantiated once per instance and function, on the first rewind that
 * needs them.
 */
import { RewindCopier } from '../prepare/instrument.js';
import { COPY_IMPORT_MODULE, InternalExport } from '../prepare/internal.js';
import type { Profile } from '../prepare/profile.js';
import { parseModule } from '../wasm/module.js';
import { RewindError, type RawStack } from './unwinder.js';

/**
 * What the copies of a prepared module are made from: the module the
 * transform instrumented (prepare/pipeline.ts rewrittenModule) and the
 * transform's options, exactly as for the prepared module (plain data: it
 * travels to executor processes).
 */
export interface RewindSource {
  module: Uint8Array;
  profile: Profile;
  unwindingImports: number[];
  breakpoints: number[];
  codeOffsetShift: number;
  /** As InstrumentOptions.fuelChunk and lazyMinBodyBytes (tests). */
  fuelChunk?: number;
  lazyMinBodyBytes?: number;
}

/** A compiled copy and its imports (listed once: WebAssembly.Module.imports allocates). */
interface CompiledCopy {
  module: WebAssembly.Module;
  imports: readonly WebAssembly.ModuleImportDescriptor[];
}

function compiledCopy(module: WebAssembly.Module): CompiledCopy {
  return { module, imports: WebAssembly.Module.imports(module) };
}

/** Compiled copies of one prepared module's functions. */
export class RewindCopyCompiler {
  private copier: RewindCopier | undefined;
  /** By function: its compiled copy and what it imports, or null when it rewinds inline. */
  private readonly compiled = new Map<number, CompiledCopy | null>();

  /**
   * @param beforeCompile Called with a copy's bytes before it is compiled
   *   (runtime/node/engine-flags.ts: the register-allocation rule for huge
   *   functions applies to copies too).
   */
  constructor(
    private readonly source: RewindSource,
    private readonly beforeCompile?: (bytes: Uint8Array) => void,
  ) {}

  /**
   * Compiles every copy now, asynchronously (where synchronous compiles of
   * larger modules are not allowed: a browser page's main thread).
   */
  async compileAll(): Promise<void> {
    const copier = this.copierOf();
    for (let func = copier.importedFunctions; func < copier.importedFunctions + copier.definedFunctions; func++) {
      if (this.compiled.has(func)) continue;
      const bytes = copier.copy(func);
      if (bytes === undefined) continue;
      if (bytes === 'inline') {
        this.compiled.set(func, null);
        continue;
      }
      this.beforeCompile?.(bytes);
      this.compiled.set(func, compiledCopy(await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>)));
    }
  }

  private copierOf(): RewindCopier {
    const s = this.source;
    this.copier ??= new RewindCopier(parseModule(s.module), {
      profile: s.profile,
      unwindingImports: new Set(s.unwindingImports),
      breakpoints: new Set(s.breakpoints),
      codeOffsetShift: s.codeOffsetShift,
      fuelChunk: s.fuelChunk,
      lazyMinBodyBytes: s.lazyMinBodyBytes,
    });
    return this.copier;
  }

  /** Index of function `func` (absolute) among the defined functions. */
  definedIndex(func: number): number {
    return func - this.copierOf().importedFunctions;
  }

  /** The copy of function `func` (absolute index); null when the prepared function rewinds itself; throws RewindError when no frame can be in it. */
  module(func: number): CompiledCopy | null {
    const known = this.compiled.get(func);
    if (known !== undefined) return known;
    const bytes = this.copierOf().copy(func);
    if (bytes === undefined) throw new RewindError(`the stack has a frame of function ${func}, which cannot be rewound (it has no call sites or checks)`);
    let copy: CompiledCopy | null = null;
    if (bytes !== 'inline') {
      this.beforeCompile?.(bytes);
      copy = compiledCopy(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>));
    }
    this.compiled.set(func, copy);
    return copy;
  }
}

/** The copies installed in one instance of a prepared module. */
export class InstanceRewindCopies {
  private readonly installed = new Set<number>();
  private table: WebAssembly.Table | undefined;

  /**
   * @param imports What the prepared module was instantiated with (copies
   *   import the same host functions, memory and runtime functions).
   * @param exports The prepared instance's exports.
   */
  constructor(
    private readonly compiler: RewindCopyCompiler,
    private readonly imports: WebAssembly.Imports,
    private readonly exports: WebAssembly.Exports,
  ) {}

  /** Puts the copies of the functions on `stack` into the funcs table (call before the rewind starts). */
  install(stack: RawStack): void {
    for (const frame of stack) {
      const func = frame.func;
      if (this.installed.has(func)) continue;
      const copy = this.compiler.module(func);
      if (copy !== null) {
        const table = this.funcsTable();
        const f = new WebAssembly.Instance(copy.module, this.importsFor(copy.imports)).exports[InternalExport.copy] as Function;
        // Slots: the defined functions, then their copies in the same order.
        table.set(table.length / 2 + this.compiler.definedIndex(func), f);
      }
      this.installed.add(func);
    }
  }

  private funcsTable(): WebAssembly.Table {
    if (!this.table) {
      const t = this.exports[InternalExport.funcs];
      const fill = this.exports[InternalExport.fillFuncs];
      if (!(t instanceof WebAssembly.Table) || typeof fill !== 'function') throw new RewindError('the prepared module has no table of rewind copies');
      // Empty until now (filling it at instantiation would cost every instance, most of which never rewind).
      (fill as () => void)();
      this.table = t;
    }
    return this.table;
  }

  private importsFor(imports: readonly WebAssembly.ModuleImportDescriptor[]): WebAssembly.Imports {
    const out: Record<string, Record<string, unknown>> = {};
    for (const i of imports) {
      let value: unknown;
      if (i.module !== COPY_IMPORT_MODULE) value = (this.imports[i.module] as Record<string, unknown> | undefined)?.[i.name];
      else if (i.kind === 'function' && i.name.startsWith(InternalExport.copyFunctionPrefix)) {
        // A defined function of the prepared module: from the lower half of the funcs table.
        value = this.funcsTable().get(this.compiler.definedIndex(Number(i.name.slice(InternalExport.copyFunctionPrefix.length))));
      } else value = this.exports[i.name];
      (out[i.module] ??= {})[i.name] = value;
    }
    return out as WebAssembly.Imports;
  }
}
