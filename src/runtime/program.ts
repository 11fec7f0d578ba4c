import { BLOCKING_IMPORTS, resolveImports } from '../abi/imports.js';
import { resolveEntry } from '../abi/entry.js';
import { UnwindLayouts } from '../prepare/instrument.js';
import { codeOffsetShift, prepare, rewrittenModule, unwindingImportIndices, type PreparedModule } from '../prepare/pipeline.js';
import type { PreparedCache } from '../prepare/cache.js';
import type { Profile } from '../prepare/profile.js';
import { INTERNAL_PREFIX, type CanonicalImport } from '../prepare/rewrite.js';
import { readSnapshot, type SnapshotInfo } from '../snapshot/format.js';
import type { GlobalValue } from '../snapshot/state.js';
import { ModuleError } from '../wasm/errors.js';
import { parseModule, type WasmModule } from '../wasm/module.js';
import { validateModule, type ModuleLimits } from '../wasm/validate.js';
import type { GlobalType, InitialState } from './executor.js';
import type { RewindSource } from './rewind-copies.js';

const UNWINDING = new Set<string>(BLOCKING_IMPORTS);

/**
 * A module that passed Gate's acceptance rules (spec abi.md §1): a program,
 * or a snapshot of an instance (a program module with `gate.*` sections).
 */
export class Program {
  private constructor(
    /** The module as the runtime sees it: for a snapshot, with its hidden exports and its start function. */
    readonly module: WasmModule,
    readonly imports: CanonicalImport[],
    /** Set when the module is a snapshot. */
    readonly snapshot: SnapshotInfo | undefined,
  ) {}

  /** Reads and validates module bytes, a program or a snapshot; throws ModuleError (or SnapshotError). */
  static async load(bytes: Uint8Array, limits: ModuleLimits): Promise<Program> {
    if (bytes.length > limits.maxModuleSize) {
      throw new ModuleError(`module size ${bytes.length} exceeds the limit of ${limits.maxModuleSize} bytes`, undefined, 'GATE_MODULE_LIMIT');
    }
    const parsed = parseModule(bytes);
    // Our reader checks structure and opcodes, not types: let the engine
    // validate function bodies now, so that a bad module is the client's
    // error here rather than a failure of preparation or compilation later.
    if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) throw new ModuleError(`invalid module: ${engineValidationMessage(bytes)}`);
    const { module, snapshot } = runtimeView(parsed);
    validateModule(module, limits);
    for (const e of module.exports) {
      if (e.name.startsWith(INTERNAL_PREFIX) || e.name.startsWith('asyncify_')) {
        throw new ModuleError(`export name "${e.name}" is reserved by the runtime`);
      }
    }
    const memory = module.memories[0];
    const memoryBytes = (memory?.min ?? 0) * 65536;
    for (const d of module.dataSegments) {
      if (!d.passive && (d.offset === undefined || d.offset + (d.end - d.start) > memoryBytes)) {
        throw new ModuleError('data segment does not fit in the initial memory', d.start);
      }
    }
    const imports = resolveImports(module).map((r) => r.canonical);
    return new Program(module, imports, snapshot);
  }

  /**
   * The Program of bytes that `load` has accepted before, in this process
   * (the preparation worker gets a Program's bytes from the thread that
   * loaded it): parsed again, not validated again, which for a large module
   * is most of `load`'s time.
   */
  static loaded(bytes: Uint8Array): Program {
    const { module, snapshot } = runtimeView(parseModule(bytes));
    return new Program(module, resolveImports(module).map((r) => r.canonical), snapshot);
  }

  get bytes(): Uint8Array {
    return this.module.bytes;
  }

  get hasStart(): boolean {
    return this.module.start !== undefined;
  }

  /** The entry function to call (spec abi.md §1.3); throws EntryError. */
  entry(requested: string | undefined): string | undefined {
    return resolveEntry(this.module, requested, { snapshot: this.snapshot !== undefined, suspended: this.snapshot?.stack !== undefined }).entry;
  }

  /** Initial and maximum memory pages, or undefined if the module has no memory. */
  get memoryLimits(): { min: number; max: number | undefined } | undefined {
    return this.module.memories[0];
  }

  get globalTypes(): GlobalType[] {
    return this.module.globals.map((g) => ({ type: g.type, mutable: g.mutable }));
  }

  /** Memory contents and mutable global values an instance of this module starts with. */
  initialState(): InitialState {
    const m = this.module;
    const data = m.dataSegments
      .filter((d) => !d.passive && d.end > d.start)
      .map((d) => ({ offset: d.offset!, bytes: m.bytes.subarray(d.start, d.end) }));
    const globals: InitialState['globals'] = [];
    m.globals.forEach((g, index) => {
      if (g.mutable) globals.push({ index, value: globalValue(g.type, g.init) });
    });
    return { data, globals };
  }

  prepare(profile: Profile, cache?: PreparedCache, breakpoints: readonly number[] = []): Promise<PreparedModule> {
    // Deterministic, so one result per profile (and breakpoint set) serves
    // every launch of this Program (a server launches a cached Program per request).
    const key = preparedKey(profile, breakpoints);
    let p = this.prepared.get(key);
    if (!p) {
      p = prepare(this.module, { profile, imports: this.imports, unwindingImports: UNWINDING, cache, breakpoints });
      this.prepared.set(key, p);
      p.catch(() => this.prepared.delete(key));
    }
    return p;
  }

  /** How the prepared code saves frames (for snapshots: raw frames ⇄ frames of this module); `breakpoints` as prepared. */
  unwindLayouts(profile: Profile, breakpoints: readonly number[] = []): UnwindLayouts {
    const key = preparedKey(profile, breakpoints);
    let l = this.layouts.get(key);
    if (!l) {
      const { module, codeShift } = this.rewritten();
      l = new UnwindLayouts(module, { profile, unwindingImports: unwindingImportIndices(this.imports, UNWINDING), breakpoints: new Set(breakpoints), codeOffsetShift: codeShift });
      this.layouts.set(key, l);
    }
    return l;
  }

  /** What an executor makes the prepared module's rewind copies from (runtime/rewind-copies.ts); `breakpoints` as prepared. */
  rewindSource(profile: Profile, breakpoints: readonly number[] = []): RewindSource {
    const { module, codeShift } = this.rewritten();
    return { module: module.bytes, profile, unwindingImports: [...unwindingImportIndices(this.imports, UNWINDING)], breakpoints: [...new Set(breakpoints)].sort((a, b) => a - b), codeOffsetShift: codeShift };
  }

  /** The module the transform instruments (pipeline.ts rewrittenModule), made once. */
  private rewritten(): { module: WasmModule; codeShift: number } {
    if (!this.rewrittenMemo) {
      const module = rewrittenModule(this.module, this.imports);
      this.rewrittenMemo = { module, codeShift: codeOffsetShift(this.module, module) };
    }
    return this.rewrittenMemo;
  }

  private readonly prepared = new Map<string, Promise<PreparedModule>>();
  private readonly layouts = new Map<string, UnwindLayouts>();
  private rewrittenMemo: { module: WasmModule; codeShift: number } | undefined;
}

/**
 * The module as the runtime sees it: a snapshot hides its exports while it
 * has a stack, and keeps its start function (if still pending) in the
 * stack instead of a start section.
 */
function runtimeView(parsed: WasmModule): { module: WasmModule; snapshot: SnapshotInfo | undefined } {
  const snapshot = readSnapshot(parsed);
  return { module: snapshot ? { ...parsed, exports: snapshot.exports, start: snapshot.stack?.startFunction } : parsed, snapshot };
}

function preparedKey(profile: Profile, breakpoints: readonly number[]): string {
  return breakpoints.length ? `${profile}:${[...new Set(breakpoints)].sort((a, b) => a - b).join(',')}` : profile;
}

/** A global's value from its constant init expression (floats arrive as raw bits). */
function globalValue(type: number, init: number | bigint | undefined): GlobalValue {
  switch (type) {
    case 0x7f:
      return { type: 0x7f, value: Number(init ?? 0) | 0 };
    case 0x7e:
      return { type: 0x7e, value: BigInt.asIntN(64, BigInt(init ?? 0n)) };
    case 0x7d:
      return { type: 0x7d, bits: Number(init ?? 0) >>> 0 };
    default:
      return { type: 0x7c, bits: BigInt.asUintN(64, BigInt(init ?? 0n)) };
  }
}

/** The engine's reason for refusing a module (only called once validate() said no). */
function engineValidationMessage(bytes: Uint8Array): string {
  try {
    new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    if (e instanceof Error) return e.message.replace(/^WebAssembly\.Module\(\): /, '');
  }
  return 'the WebAssembly engine refused it';
}
