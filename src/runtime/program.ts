import { BLOCKING_IMPORTS, resolveImports } from '../abi/imports.js';
import { resolveEntry } from '../abi/entry.js';
import { prepare, sha256Hex, type PreparedModule } from '../prepare/pipeline.js';
import type { PreparedCache } from '../prepare/cache.js';
import type { Profile } from '../prepare/profile.js';
import { INTERNAL_PREFIX, type CanonicalImport } from '../prepare/rewrite.js';
import { ModuleError } from '../wasm/errors.js';
import { parseModule, type WasmModule } from '../wasm/module.js';
import { validateModule, type ModuleLimits } from '../wasm/validate.js';

const UNWINDING = new Set<string>(BLOCKING_IMPORTS);

/** A module that passed Gate's acceptance rules (spec abi.md §1). */
export class Program {
  private constructor(
    readonly hash: string,
    readonly module: WasmModule,
    readonly imports: CanonicalImport[],
  ) {}

  /** Reads, validates and resolves the imports of module bytes; throws ModuleError. */
  static async load(bytes: Uint8Array, limits: ModuleLimits): Promise<Program> {
    if (bytes.length > limits.maxModuleSize) {
      throw new ModuleError(`module size ${bytes.length} exceeds the limit of ${limits.maxModuleSize} bytes`, undefined, 'GATE_MODULE_LIMIT');
    }
    const module = parseModule(bytes);
    validateModule(module, limits);
    for (const e of module.exports) {
      if (e.name.startsWith(INTERNAL_PREFIX) || e.name.startsWith('asyncify_')) {
        throw new ModuleError(`export name "${e.name}" is reserved by the runtime`);
      }
    }
    const imports = resolveImports(module).map((r) => r.canonical);
    return new Program(await sha256Hex(bytes), module, imports);
  }

  get bytes(): Uint8Array {
    return this.module.bytes;
  }

  get hasStart(): boolean {
    return this.module.start !== undefined;
  }

  /** The entry function to call (spec abi.md §1.3); throws EntryError. */
  entry(requested: string | undefined): string | undefined {
    return resolveEntry(this.module, requested, { snapshot: false }).entry;
  }

  /** Initial and maximum memory pages, or undefined if the module has no memory. */
  get memoryLimits(): { min: number; max: number | undefined } | undefined {
    return this.module.memories[0];
  }

  prepare(profile: Profile, cache?: PreparedCache, optimizeLevel?: number): Promise<PreparedModule> {
    return prepare(this.module, this.hash, { profile, imports: this.imports, unwindingImports: UNWINDING, cache, optimizeLevel });
  }
}
