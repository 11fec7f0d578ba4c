/**
 * The first version's pipeline (fuel checks of the old rewrite + Binaryen
 * Asyncify), for side-by-side benchmark rows only.
 */
import type { Profile } from '../../src/prepare/profile.js';
import type { GlobalValue } from '../../src/snapshot/state.js';
import type { WasmModule } from '../../src/wasm/module.js';
import { asyncify } from './asyncify.js';
import { indirectCallsMayUnwind } from './reach.js';
import { rewriteModule, type CanonicalImport } from './rewrite.js';

/** Asyncify's optimize level in the first version. */
const OPTIMIZE_LEVEL = 1;

export function legacyPrepare(m: WasmModule, imports: CanonicalImport[], unwinding: ReadonlySet<string>, profile: Profile): Uint8Array {
  const rewritten = rewriteModule(m, { imports, checks: true });
  const names = imports.map((c) => `${c.module}.${c.name}`).filter((n, i, all) => unwinding.has(n) && all.indexOf(n) === i);
  const indices = new Set<number>();
  imports.forEach((c, i) => {
    if (unwinding.has(`${c.module}.${c.name}`)) indices.add(i);
  });
  const suspendAnywhere = profile === 'suspend-anywhere';
  return asyncify(rewritten.bytes, {
    unwindingImports: names,
    yieldUnwinds: suspendAnywhere,
    hasYieldStub: rewritten.yieldStubIndex !== undefined,
    optimizeLevel: OPTIMIZE_LEVEL,
    ignoreIndirect: !indirectCallsMayUnwind(m, rewritten.calls, indices, suspendAnywhere),
  });
}

/** The binary rewrite alone: fuel checks without Asyncify (the check calls an empty stub). */
export function legacyChecksOnly(m: WasmModule, imports: CanonicalImport[]): Uint8Array {
  return rewriteModule(m, { imports, checks: true }).bytes;
}

/** A global's value as a JS value (for WebAssembly.Global.value: floats lose signalling NaNs, which benchmarks do not mind). */
export function globalJsValue(g: GlobalValue): number | bigint {
  if (g.type === 0x7d) return new Float32Array(new Uint32Array([g.bits]).buffer)[0]!;
  if (g.type === 0x7c) return new Float64Array(new BigUint64Array([g.bits]).buffer)[0]!;
  return g.value;
}
