import { parseModule, SectionId, type WasmModule } from '../wasm/module.js';
import type { PreparedCache } from './cache.js';
import { instrument } from './instrument.js';
import type { Profile } from './profile.js';
import { rewriteModule, type CanonicalImport } from './rewrite.js';

/**
 * Version of the instrumentation. Bump it whenever the prepared output for a
 * given input may change: prepared modules are cached under keys that
 * include it. Snapshots do not depend on it: their stacks are frames of the
 * original module (docs/snapshot.md), which any later pipeline can rewind.
 */
export const PIPELINE_VERSION = 7;

export interface PrepareOptions {
  profile: Profile;
  /** Canonical names of the module's function imports, in order. */
  imports: CanonicalImport[];
  /** Canonical imports (`module.name`) that may unwind the stack. */
  unwindingImports: ReadonlySet<string>;
  cache?: PreparedCache;
  /** Debugger breakpoints to instrument (code offsets, see InstrumentOptions.breakpoints). */
  breakpoints?: readonly number[];
  /** InstrumentOptions.rewind (benchmarks compare the two; the runtime uses the default, lazy). */
  rewind?: 'lazy' | 'inline';
}

export interface PreparedModule {
  /** Cache key: covers the input bytes, the pipeline version and the options. */
  key: string;
  bytes: Uint8Array;
  profile: Profile;
  fromCache: boolean;
  /** The breakpoints instrumented (sorted): frames are laid out for exactly these. */
  breakpoints: readonly number[];
}

export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const digest = await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Function indices of the imports that may unwind. */
export function unwindingImportIndices(imports: CanonicalImport[], unwinding: ReadonlySet<string>): Set<number> {
  const out = new Set<number>();
  imports.forEach((c, i) => {
    if (unwinding.has(`${c.module}.${c.name}`)) out.add(i);
  });
  return out;
}

/**
 * The module the transform instruments: the program with canonical import
 * names, its memory imported, its start function and globals exported
 * (rewrite.ts). It depends only on the program's code, imports and
 * exports, not on memory contents or global values, so a snapshot prepares
 * to the same bytes as its original program.
 */
export function rewrittenModule(m: WasmModule, imports: CanonicalImport[]): WasmModule {
  return parseModule(rewriteModule(m, { imports }).bytes);
}

/**
 * How many bytes later the function bodies start in `rewritten`'s code
 * section than in `original`'s: rewriteModule appends accessor functions,
 * and the function count's LEB128 may grow (or a padded one shrink).
 */
export function codeOffsetShift(original: WasmModule, rewritten: WasmModule): number {
  const o = original.sections.find((s) => s.id === SectionId.Code);
  const r = rewritten.sections.find((s) => s.id === SectionId.Code);
  if (!o || !r || !original.bodies.length) return 0;
  return rewritten.bodies[0]!.start - r.payloadStart - (original.bodies[0]!.start - o.payloadStart);
}

/** Deterministic instrumentation of a parsed, validated module (see DESIGN.md). */
export async function prepare(m: WasmModule, opts: PrepareOptions): Promise<PreparedModule> {
  const rewritten = rewrittenModule(m, opts.imports);
  const breakpoints = [...new Set(opts.breakpoints ?? [])].sort((a, b) => a - b);
  // Without breakpoints the key is what it was before they existed (cached modules stay valid).
  const breaks = breakpoints.length ? `:break=${breakpoints.join(',')}` : '';
  const inline = opts.rewind === 'inline' ? ':inline' : '';
  const key = await sha256Hex(`gate-prepare:${PIPELINE_VERSION}:${opts.profile}${breaks}${inline}:${await sha256Hex(rewritten.bytes)}`);
  const cached = await opts.cache?.get(key);
  if (cached) return { key, bytes: cached, profile: opts.profile, fromCache: true, breakpoints };
  const { bytes } = instrument(rewritten, { profile: opts.profile, unwindingImports: unwindingImportIndices(opts.imports, opts.unwindingImports), breakpoints: new Set(breakpoints), codeOffsetShift: codeOffsetShift(m, rewritten), rewind: opts.rewind });
  await opts.cache?.set(key, bytes);
  return { key, bytes, profile: opts.profile, fromCache: false, breakpoints };
}
