import type { WasmModule } from '../wasm/module.js';
import { asyncify } from './asyncify.js';
import type { PreparedCache } from './cache.js';
import type { Profile } from './profile.js';
import { indirectCallsMayUnwind } from './reach.js';
import { rewriteModule, type CanonicalImport } from './rewrite.js';

/**
 * Version of the instrumentation. Bump it whenever the prepared output for a
 * given input may change (this code, binaryen's version, settings): prepared
 * modules and suspended stacks are only valid for the exact same pipeline
 * (binaryen is pinned to an exact version in package.json for this reason).
 */
export const PIPELINE_VERSION = 3;

export interface PrepareOptions {
  profile: Profile;
  /** Canonical names of the module's function imports, in order. */
  imports: CanonicalImport[];
  /** Canonical imports (`module.name`) that may unwind the stack. */
  unwindingImports: ReadonlySet<string>;
  /** Optimize level of binaryen's Asyncify pass (0 = none). */
  optimizeLevel?: number;
  cache?: PreparedCache;
}

export interface PreparedModule {
  /** Cache key: covers the input bytes, the pipeline version and the options. */
  key: string;
  bytes: Uint8Array;
  profile: Profile;
  optimizeLevel: number;
  fromCache: boolean;
}

/**
 * Asyncify's own optimizations at level 1 halve code size and speed up
 * recursive code (fib 3.3× → 2.3× of raw); a separate optimize() pass after it
 * doubled preparation time for no gain in size or speed (measured on sql.js).
 */
export const DEFAULT_OPTIMIZE_LEVEL = 1;

export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const digest = await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Deterministic instrumentation of a parsed, validated module (see
 * DESIGN.md). The key covers the rewritten module, which depends only on the
 * program's code, imports and exports (not on memory contents or global
 * values): a snapshot prepares to the same bytes as its original program,
 * which is what lets an unwound stack be rewound in it.
 */
export async function prepare(m: WasmModule, opts: PrepareOptions): Promise<PreparedModule> {
  const optimizeLevel = opts.optimizeLevel ?? DEFAULT_OPTIMIZE_LEVEL;
  const rewritten = rewriteModule(m, { imports: opts.imports, checks: true });
  const key = await sha256Hex(`gate-prepare:${PIPELINE_VERSION}:${opts.profile}:${optimizeLevel}:${await sha256Hex(rewritten.bytes)}`);
  const cached = await opts.cache?.get(key);
  if (cached) return { key, bytes: cached, profile: opts.profile, optimizeLevel, fromCache: true };

  const unwinding = opts.imports
    .map((c) => `${c.module}.${c.name}`)
    .filter((name, i, all) => opts.unwindingImports.has(name) && all.indexOf(name) === i);
  const unwindingIndices = new Set<number>();
  opts.imports.forEach((c, i) => {
    if (opts.unwindingImports.has(`${c.module}.${c.name}`)) unwindingIndices.add(i);
  });
  const suspendAnywhere = opts.profile === 'suspend-anywhere';
  const bytes = asyncify(rewritten.bytes, {
    unwindingImports: unwinding,
    yieldUnwinds: suspendAnywhere,
    hasYieldStub: rewritten.yieldStubIndex !== undefined,
    optimizeLevel,
    ignoreIndirect: !indirectCallsMayUnwind(m, rewritten.calls, unwindingIndices, suspendAnywhere),
  });
  await opts.cache?.set(key, bytes);
  return { key, bytes, profile: opts.profile, optimizeLevel, fromCache: false };
}
