/**
 * The ABI's import table and resolver (spec abi.md §1.2, §3).
 *
 * Every function import of a program is mapped to a canonical name: module
 * `gate` (functions `fd`, `io`) or `wasi` (WASI preview1 function names).
 * The preparation step rewrites imports to these names so that the host
 * object from createHostImports binds directly.
 */
import { MAX_PACKET_SIZE } from './packet.js';
import { ImportError, goQuote } from '../wasm/import-error.js';
import { ExternalKind, ValType, type FuncType, type ValTypeCode, type WasmModule } from '../wasm/module.js';

export { ImportError } from '../wasm/import-error.js';

export type CanonicalModule = 'gate' | 'wasi';

export interface CanonicalName {
  module: CanonicalModule;
  name: string;
}

export interface ResolvedImport {
  /** Module name as written in the program. */
  module: string;
  /** Field name as written in the program. */
  field: string;
  canonical: CanonicalName;
  /** Importing random_get: the process needs its 16 random bytes at start. */
  needsRandom: boolean;
  /** Function index of the import (imports come first in the function index space). */
  index: number;
}

const { i32, i64 } = ValType;

function sig(params: ValTypeCode[], results: ValTypeCode[] = [i32]): FuncType {
  return { params, results };
}

/** Maximum packet size; `io_N`/`fd_N` suffixes must be at least this. */

/** Signatures of the gate module's functions (by canonical name). */
export const GATE_SIGNATURES: Readonly<Record<string, FuncType>> = Object.freeze({
  fd: sig([]),
  io: sig([i32, i32, i32, i32, i32, i32, i64, i32], []),
});

/** Signatures of the WASI functions a program may import (spec abi.md §3.2). */
export const WASI_SIGNATURES: Readonly<Record<string, FuncType>> = Object.freeze({
  args_get: sig([i32, i32]),
  args_sizes_get: sig([i32, i32]),
  clock_res_get: sig([i32, i32]),
  clock_time_get: sig([i32, i64, i32]),
  environ_get: sig([i32, i32]),
  environ_sizes_get: sig([i32, i32]),
  fd_advise: sig([i32, i64, i64, i32]),
  fd_allocate: sig([i32, i64, i64]),
  fd_close: sig([i32]),
  fd_datasync: sig([i32]),
  fd_fdstat_get: sig([i32, i32]),
  fd_fdstat_set_flags: sig([i32, i32]),
  fd_fdstat_set_rights: sig([i32, i64, i64]),
  fd_filestat_get: sig([i32, i32]),
  fd_filestat_set_size: sig([i32, i64]),
  fd_filestat_set_times: sig([i32, i64, i64, i32]),
  fd_pread: sig([i32, i32, i32, i64, i32]),
  fd_prestat_dir_name: sig([i32, i32, i32]),
  fd_prestat_get: sig([i32, i32]),
  fd_pwrite: sig([i32, i32, i32, i64, i32]),
  fd_read: sig([i32, i32, i32, i32]),
  fd_readdir: sig([i32, i32, i32, i64, i32]),
  fd_renumber: sig([i32, i32]),
  fd_seek: sig([i32, i64, i32, i32]),
  fd_sync: sig([i32]),
  fd_tell: sig([i32, i32]),
  fd_write: sig([i32, i32, i32, i32]),
  path_create_directory: sig([i32, i32, i32]),
  path_filestat_get: sig([i32, i32, i32, i32, i32]),
  path_filestat_set_times: sig([i32, i32, i32, i32, i64, i64, i32]),
  path_link: sig([i32, i32, i32, i32, i32, i32, i32]),
  path_open: sig([i32, i32, i32, i32, i32, i64, i64, i32, i32]),
  path_readlink: sig([i32, i32, i32, i32, i32, i32]),
  path_remove_directory: sig([i32, i32, i32]),
  path_rename: sig([i32, i32, i32, i32, i32, i32]),
  path_symlink: sig([i32, i32, i32, i32, i32]),
  path_unlink_file: sig([i32, i32, i32]),
  poll_oneoff: sig([i32, i32, i32, i32]),
  proc_exit: sig([i32], []),
  proc_raise: sig([i32]),
  random_get: sig([i32, i32]),
  sched_yield: sig([]),
  sock_recv: sig([i32, i32, i32, i32, i32, i32]),
  sock_send: sig([i32, i32, i32, i32, i32]),
  sock_shutdown: sig([i32, i32]),
});

/**
 * Canonical names (`module.name`) of
 * the host functions that may call AbiContext.wait, yieldPoint or
 * abiDeficiency and therefore unwind the program's stack. Kept in sync with
 * gate.ts and wasi.ts (a test checks every other function never blocks).
 */
export const BLOCKING_IMPORTS: readonly string[] = Object.freeze([
  'gate.io',
  'wasi.fd_read',
  'wasi.fd_write',
  'wasi.poll_oneoff',
  'wasi.sched_yield',
  'wasi.random_get',
  'wasi.clock_time_get',
  'wasi.fd_close',
  'wasi.fd_renumber',
  'wasi.fd_fdstat_set_rights',
  'wasi.proc_raise',
]);

export function isBlockingImport(name: CanonicalName): boolean {
  return BLOCKING_IMPORTS.includes(`${name.module}.${name.name}`);
}

/** The ABI signature of a canonical function, or undefined if it does not exist. */
export function abiSignature(name: CanonicalName): FuncType | undefined {
  const table = name.module === 'gate' ? GATE_SIGNATURES : WASI_SIGNATURES;
  return Object.hasOwn(table, name.name) ? table[name.name] : undefined;
}

const TYPE_NAMES: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64' };

/** Formats a function type like the original (wag's `wa.FuncType.String`): `(i32, i64) i32`. */
export function formatSignature(t: FuncType): string {
  const name = (v: number): string => TYPE_NAMES[v] ?? `0x${v.toString(16)}`;
  let s = `(${t.params.map(name).join(', ')})`;
  if (t.results.length === 1) s += ` ${name(t.results[0]!)}`;
  else if (t.results.length > 1) s += ` (${t.results.map(name).join(', ')})`;
  return s;
}

function sameSignature(a: FuncType, b: FuncType): boolean {
  if (a.params.length !== b.params.length || a.results.length !== b.results.length) return false;
  for (let i = 0; i < a.params.length; i++) if (a.params[i] !== b.params[i]) return false;
  for (let i = 0; i < a.results.length; i++) if (a.results[i] !== b.results[i]) return false;
  return true;
}

function isDigits(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/**
 * Maps one (module, field) pair to its canonical name, or throws ImportError.
 * Does not check the signature (see resolveImport).
 */
export function canonicalImportName(module: string, field: string): CanonicalName {
  let m = module;
  let f = field;
  if (m === 'env') {
    if (f.startsWith('__gate_')) {
      m = 'gate';
      f = f.slice(7);
    } else if (f.startsWith('__wasi_')) {
      m = 'wasi_snapshot_preview1';
      f = f.slice(7);
    }
  }

  if (m === 'gate') {
    const i = f.lastIndexOf('_');
    if (i > 0) {
      const prefix = f.slice(0, i);
      const suffix = f.slice(i + 1);
      if (prefix === 'fd' || prefix === 'io') {
        // The suffix is the largest packet the program can receive. It is
        // validated and then ignored: the host never sends more than 65536
        // bytes. Values too large for 32 bits are accepted if they are
        // plain digits (the original's parser behaves so).
        if (suffix.startsWith('0') || !isDigits(suffix)) {
          throw new ImportError(`invalid size suffix in symbol: ${f}`, module, field);
        }
        if (suffix.length <= 10 && Number(suffix) < MAX_PACKET_SIZE) {
          throw new ImportError(`value of symbol size suffix is too small: ${f}`, module, field);
        }
        return { module: 'gate', name: prefix };
      }
    }
  } else if (m === 'wasi_snapshot_preview1' || m === 'wasi_unstable') {
    if (Object.hasOwn(WASI_SIGNATURES, f)) return { module: 'wasi', name: f };
  }

  throw new ImportError(`import function not supported: ${goQuote(module)} ${goQuote(field)}`, module, field);
}

/** Resolves one function import with its signature; throws ImportError. */
export function resolveImport(module: string, field: string, type: FuncType): CanonicalName {
  const canonical = canonicalImportName(module, field);
  const expected = abiSignature(canonical)!;
  if (!sameSignature(expected, type)) {
    throw new ImportError(
      `function ${module}.${field} ${formatSignature(expected)} imported with wrong signature ${formatSignature(type)}`,
      module,
      field,
    );
  }
  return canonical;
}

/**
 * Resolves every import of `m` against the ABI, in import order (one entry
 * per function import). Global, table and memory imports are rejected.
 */
export function resolveImports(m: WasmModule): ResolvedImport[] {
  const out: ResolvedImport[] = [];
  let index = 0;
  for (const imp of m.imports) {
    if (imp.kind !== ExternalKind.Function) {
      if (imp.kind === ExternalKind.Global) {
        throw new ImportError(`import global not supported: ${goQuote(imp.module)} ${goQuote(imp.field)}`, imp.module, imp.field);
      }
      throw new ImportError(`import kind not supported: ${imp.kind === ExternalKind.Table ? 'table' : 'memory'}`, imp.module, imp.field);
    }
    const type = m.types[imp.typeIndex];
    if (type === undefined) throw new ImportError(`import ${goQuote(imp.module)} ${goQuote(imp.field)} has invalid type index`, imp.module, imp.field);
    const canonical = resolveImport(imp.module, imp.field, type);
    out.push({
      module: imp.module,
      field: imp.field,
      canonical,
      needsRandom: canonical.module === 'wasi' && canonical.name === 'random_get',
      index: index++,
    });
  }
  return out;
}

/** Whether any resolved import makes the program need random bytes at process start. */
export function needsRandom(imports: readonly ResolvedImport[]): boolean {
  return imports.some((i) => i.needsRandom);
}
