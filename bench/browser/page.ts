/**
 * The browser benchmark's page side (bundled by bench/browser.ts): compute
 * kernels raw vs each profile, and preparation time, in the page's own
 * WebAssembly engine. Same method as bench/run.ts's kernels section:
 * variants alternate within rounds, instrumented runs go through the
 * runtime's Instance with 10 ms slices.
 */
import { prepare } from '../../src/prepare/pipeline.js';
import { PROFILES, type Profile } from '../../src/prepare/profile.js';
import type { CanonicalImport } from '../../src/prepare/rewrite.js';
import { PacketChannel } from '../../src/runtime/channel.js';
import { Instance } from '../../src/runtime/instance.js';
import { Program } from '../../src/runtime/program.js';
import { RewindCopyCompiler } from '../../src/runtime/rewind-copies.js';
import { parseModule } from '../../src/wasm/module.js';
import { DEFAULT_LOCAL_LIMITS } from '../../src/wasm/validate.js';

interface Runner {
  name: string;
  run(): { ms: number; result: unknown };
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function rawRunner(bytes: Uint8Array): Promise<Runner> {
  const mod = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  return {
    name: 'raw',
    run() {
      const inst = new WebAssembly.Instance(mod, {});
      const t0 = performance.now();
      const result = (inst.exports.run as () => number)();
      return { ms: performance.now() - t0, result };
    },
  };
}

async function profileRunner(bytes: Uint8Array, profile: Profile): Promise<Runner> {
  const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
  const prepared = await program.prepare(profile);
  const mod = await WebAssembly.compile(prepared.bytes as Uint8Array<ArrayBuffer>);
  // Compiled ahead, asynchronously: a page's main thread may not compile synchronously (the executor worker may).
  const rewindCopies = new RewindCopyCompiler(program.rewindSource(profile));
  await rewindCopies.compileAll();
  const mem = program.memoryLimits;
  return {
    name: profile,
    run() {
      const channel = new PacketChannel([], { packet() {}, bind() {}, inputReady() {} });
      const inst = new Instance({
        id: 'bench',
        profile,
        module: mod,
        rewindCopies,
        memoryPages: mem ? { initial: mem.min, maximum: mem.max ?? 65536 } : { initial: 1, maximum: 1 },
        hasStart: program.hasStart,
        entry: 'run',
        globalTypes: program.globalTypes,
        init: program.initialState(),
        timeResolutionNs: 1,
        channel,
        debug: undefined,
        randomPool: new Uint8Array(16),
      });
      const t0 = performance.now();
      for (;;) {
        const o = inst.runSlice(10);
        if (o.kind === 'stopped') {
          if (o.status.state !== 'HALTED') throw new Error(`${profile}: ${JSON.stringify(o.status)}`);
          break;
        }
      }
      return { ms: performance.now() - t0, result: inst.lastReturn };
    },
  };
}

/** Per kernel: raw times and each profile's per-round ratios to raw. */
async function kernels(names: string[], rounds: number): Promise<Array<{ kernel: string; raw: number[]; ratios: Record<string, number[]> }>> {
  const out = [];
  for (const k of names) {
    const bytes = await fetchBytes(`/benchprograms/${k}.wasm`);
    const runners = [await rawRunner(bytes), ...(await Promise.all(PROFILES.map((p) => profileRunner(bytes, p))))];
    for (const r of runners) r.run(); // warm up (and tier up)
    const raw: number[] = [];
    const ratios: Record<string, number[]> = Object.fromEntries(PROFILES.map((p) => [p, []]));
    for (let round = 0; round < rounds; round++) {
      let expected: unknown;
      let rawMs = 0;
      for (const r of runners) {
        const { ms, result } = r.run();
        if (r.name === 'raw') {
          expected = result;
          rawMs = ms;
          raw.push(ms);
        } else {
          if (result !== expected) throw new Error(`${k}: ${r.name} computed ${String(result)}, raw ${String(expected)}`);
          ratios[r.name]!.push(ms / rawMs);
        }
      }
    }
    out.push({ kernel: k, raw, ratios });
  }
  return out;
}

/** Preparation times of a module (binary rewrite + transform), first run and then `runs` more, per profile. */
async function prepareTimes(url: string, runs: number): Promise<{ size: number; profiles: Record<string, { first: number; then: number[]; outSize: number }> }> {
  const bytes = await fetchBytes(url);
  const m = parseModule(bytes);
  // Foreign imports are treated as blocking ones, as bench/run.ts does: the costliest case for io-suspend.
  const imports: CanonicalImport[] = m.imports.map((i) => ({ module: 'wasi', name: `${i.module}.${i.field}` }));
  const unwinding = new Set(imports.map((i) => `${i.module}.${i.name}`));
  const profiles: Record<string, { first: number; then: number[]; outSize: number }> = {};
  for (const profile of PROFILES) {
    const times: number[] = [];
    let outSize = 0;
    for (let i = 0; i <= runs; i++) {
      const t0 = performance.now();
      const p = await prepare(m, { profile, imports, unwindingImports: unwinding });
      times.push(performance.now() - t0);
      outSize = p.bytes.length;
    }
    profiles[profile] = { first: times[0]!, then: times.slice(1), outSize };
  }
  return { size: bytes.length, profiles };
}

(globalThis as unknown as { gateBench: unknown }).gateBench = { kernels, prepareTimes, ready: true };
