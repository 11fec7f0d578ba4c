/**
 * Run by bench/sqljs.ts in a process of its own: the sql.js workload raw
 * and prepared for suspend-anywhere, with V8's default for large functions
 * (its mid-tier register allocator above 8192 virtual registers, which
 * executor processes turn off: runtime/node/engine-flags.ts). The flag is
 * process-wide, so this cannot share a process with the other rows. Prints
 * the per-round ratios as JSON.
 */
import v8 from 'node:v8';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { prepare } from '../src/prepare/pipeline.js';
import type { CanonicalImport } from '../src/prepare/rewrite.js';
import { parseModule } from '../src/wasm/module.js';
import { engine, preparedInstance, WARMUP_RUNS, workload } from './sqljs.js';

// As in executors, but for the register allocator.
v8.setFlagsFromString('--experimental-wasm-branch-hinting');

const rounds = Number(process.argv[2] ?? 3);
const bytes = new Uint8Array(await readFile(createRequire(import.meta.url).resolve('sql.js/dist/sql-wasm.wasm')));
const original = parseModule(bytes);
const imports: CanonicalImport[] = original.imports.map((i) => ({ module: 'wasi', name: `${i.module}.${i.field}` }));
const prepared = await prepare(original, { profile: 'suspend-anywhere', imports, unwindingImports: new Set() });
const rawModule = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
const preparedModule = new WebAssembly.Module(prepared.bytes as Uint8Array<ArrayBuffer>);
const raw = await engine((imp) => new WebAssembly.Instance(rawModule, imp));
const sa = await engine((imp) => preparedInstance(original, preparedModule, imp));
let expected = 0;
for (let i = 0; i < WARMUP_RUNS; i++) {
  expected = workload(raw);
  if (workload(sa) !== expected) throw new Error('suspend-anywhere: wrong checksum');
}
const ratios: number[] = [];
for (let round = 0; round < rounds; round++) {
  const t: number[] = [];
  for (const sql of round % 2 ? [sa, raw] : [raw, sa]) {
    const t0 = performance.now();
    if (workload(sql) !== expected) throw new Error('wrong checksum');
    t.push(performance.now() - t0);
  }
  ratios.push(round % 2 ? t[0]! / t[1]! : t[1]! / t[0]!);
}
process.stdout.write(JSON.stringify({ ratios }));
