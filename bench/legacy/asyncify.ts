import binaryen from 'binaryen';
import { InternalExport } from './rewrite.js';

export interface AsyncifyOptions {
  /** `module.name` of imports that may unwind the stack. */
  unwindingImports: string[];
  /** Whether the check stub becomes an unwinding import (suspend-anywhere) or a plain one. */
  yieldUnwinds: boolean;
  /** Whether the module has the check stub (see rewrite.ts). */
  hasYieldStub: boolean;
  /** binaryen optimize level of the asyncify pass (0 = none). */
  optimizeLevel: number;
  /** No indirect call can lead to an unwind (see reach.ts): Asyncify need not assume otherwise. */
  ignoreIndirect: boolean;
}

/** Canonical import of the preemption check (the stub becomes this import). */
export const YIELD_IMPORT = { module: 'gate', name: 'yield' } as const;

const FEATURES =
  binaryen.Features.MutableGlobals |
  binaryen.Features.NontrappingFPToInt |
  binaryen.Features.BulkMemory |
  binaryen.Features.BulkMemoryOpt |
  binaryen.Features.SignExt;

/**
 * The second stage of preparation: Binaryen's Asyncify over the rewritten
 * module, so that calls to unwinding imports (and the check stub, under
 * suspend-anywhere) can unwind and later rewind the wasm stack.
 */
export function asyncify(bytes: Uint8Array, opts: AsyncifyOptions): Uint8Array {
  // binaryen.js 132 takes the features as readBinary's second argument (its
  // typings name a readBinaryWithFeatures that the build does not export).
  const readBinary = binaryen.readBinary as unknown as (data: Uint8Array, features: binaryen.Features) => binaryen.Module;
  const mod = readBinary(bytes, FEATURES);
  try {
    if (opts.hasYieldStub) {
      const stub = binaryen.getExportInfo(mod.getExport(InternalExport.yieldStub)).value;
      mod.removeExport(InternalExport.yieldStub);
      mod.removeFunction(stub);
      mod.addFunctionImport(stub, YIELD_IMPORT.module, YIELD_IMPORT.name, binaryen.none, binaryen.none);
    }
    const imports = [...opts.unwindingImports];
    if (opts.hasYieldStub && opts.yieldUnwinds) imports.push(`${YIELD_IMPORT.module}.${YIELD_IMPORT.name}`);

    // binaryen keeps these settings globally; set all of them every time so
    // that the output depends on nothing but the arguments.
    binaryen.setOptimizeLevel(opts.optimizeLevel);
    binaryen.setShrinkLevel(0);
    binaryen.setDebugInfo(false);
    binaryen.setLowMemoryUnused(false);
    binaryen.setZeroFilledMemory(false);
    binaryen.setFastMath(false);
    binaryen.setClosedWorld(false);
    binaryen.clearPassArguments();
    // An empty list would make asyncify assume that *every* import may unwind.
    binaryen.setPassArgument('asyncify-imports', imports.length ? imports.join(',') : 'gate.__none__');
    // binaryen.js turns an empty value into a null pointer, which clears the
    // argument: any non-empty value means "present".
    if (opts.ignoreIndirect) binaryen.setPassArgument('asyncify-ignore-indirect', '1');
    mod.runPasses(['asyncify']);
    binaryen.clearPassArguments();
    return mod.emitBinary();
  } finally {
    mod.dispose();
  }
}
