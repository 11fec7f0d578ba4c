/**
 * `npm run bench`: compute kernels raw in V8 vs each instrumentation
 * profile, preparation time, sql.js raw vs prepared (bench/sqljs.ts), and
 * suspend/snapshot/restore latency in both executor hosts
 * (bench/snapshot.ts), executor start time with and without the sandbox
 * and launch latency in a warm executor (bench/sandbox.ts). Side-by-side variants are measured alternately
 * within rounds, in one process. Writes bench/RESULTS.md (not with --only, unless --out says where). Options: --quick
 * (fewer rounds), --out FILE, --only SECTION[,SECTION] (kernels, prepare,
 * sqljs, snapshot, sandbox, launch, launch-cold, http, endpoint, density, connections, neighbours, migration, cluster, stop, peers).
 */
import '../src/runtime/node/engine-flags.js';
import { execSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { prepare } from '../src/prepare/pipeline.js';
import { BLOCKING_IMPORTS } from '../src/abi/imports.js';
import { PROFILES, type Profile } from '../src/prepare/profile.js';
import type { CanonicalImport } from '../src/prepare/rewrite.js';
import { PacketChannel } from '../src/runtime/channel.js';
import { Instance } from '../src/runtime/instance.js';
import { RewindCopyCompiler } from '../src/runtime/rewind-copies.js';
import { Program } from '../src/runtime/program.js';
import { DEFAULT_LOCAL_LIMITS } from '../src/wasm/validate.js';
import { parseModule } from '../src/wasm/module.js';
import { fmt, geomean, median } from './stats.js';
import { globalJsValue, legacyPrepare } from './legacy/prepare.js';
import { snapshotSection } from './snapshot.js';
import { sandboxSection } from './sandbox.js';
import { launchSection } from './launch.js';
import { launchColdSection } from './launch-cold.js';
import { httpSection } from './http.js';
import { endpointSection } from './endpoint.js';
import { densitySection } from './density.js';
import { connectionsSection } from './connections.js';
import { neighboursSection } from './neighbours.js';
import { migrationSection } from './migration.js';
import { clusterSection } from './cluster.js';
import { stopSection } from './stop.js';
import { peersSection } from './peers.js';
import { sqljsSection } from './sqljs.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
/** --no-legacy: leave out the Asyncify version's rows (its preparation of sql.js takes minutes); for development. */
const legacy = !args.includes('--no-legacy');
const outIndex = args.indexOf('--out');
/** --out FILE; without it, bench/RESULTS.md, unless --only picks sections: a partial run prints its tables and leaves the full results file alone. */
const outFile = outIndex >= 0 ? args[outIndex + 1]! : args.includes('--only') ? undefined : fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url));
const ROUNDS = quick ? 3 : 7;
const onlyIndex = args.indexOf('--only');
/** --only a,b: run only these sections (kernels, prepare, sqljs, snapshot, sandbox, launch, launch-cold, http, endpoint, density, connections, neighbours, migration, cluster, stop, peers); for development. */
const only = onlyIndex >= 0 ? new Set(args[onlyIndex + 1]!.split(',')) : undefined;
const want = (section: string): boolean => !only || only.has(section);
const niceIndex = args.indexOf('--neighbours-nice');
/** --neighbours-nice 5,10: the neighbours section measures only these anonymous.nice values (default 0, 5 and 10); for development. */
const neighboursNice = niceIndex >= 0 ? args[niceIndex + 1]!.split(',').map(Number) : undefined;
const KERNELS = ['fib', 'sieve', 'sha256', 'nbody', 'qsort'];
const buildDir = new URL('../../bench/build/', import.meta.url);

interface Runner {
  name: string;
  run(): { ms: number; result: unknown };
}

function rawRunner(bytes: Uint8Array): Runner {
  const mod = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
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

/** `inline`: the transform with its rewind code in every function (as before lazy rewind; the other changes of the transform included), for comparison in the same run. */
async function profileRunner(bytes: Uint8Array, profile: Profile, inline = false): Promise<Runner> {
  const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
  const prepared = inline
    ? await prepare(program.module, { profile, imports: program.imports, unwindingImports: new Set(BLOCKING_IMPORTS), rewind: 'inline' })
    : await program.prepare(profile);
  const mod = new WebAssembly.Module(prepared.bytes as Uint8Array<ArrayBuffer>);
  const rewindCopies = inline ? undefined : new RewindCopyCompiler(program.rewindSource(profile));
  const mem = program.memoryLimits;
  return {
    name: inline ? inlineName(profile) : profile,
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
      // 10 ms slices: the suspend-anywhere profile really unwinds and rewinds at each.
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

/**
 * The first version's pipeline (bench/legacy/: fuel checks + Binaryen
 * Asyncify), instantiated directly: its check only refills the fuel and never
 * unwinds, so this is its cost on the fast path (a lower bound of what it cost
 * in the runtime, which also sliced).
 */
async function legacyRunner(bytes: Uint8Array, profile: Profile): Promise<Runner> {
  const program = await Program.load(bytes, DEFAULT_LOCAL_LIMITS);
  const prepared = legacyPrepare(program.module, program.imports, new Set(), profile);
  const mod = new WebAssembly.Module(prepared as Uint8Array<ArrayBuffer>);
  const mem = program.memoryLimits;
  return {
    name: legacyName(profile),
    run() {
      const memory = new WebAssembly.Memory(mem ? { initial: mem.min, maximum: mem.max ?? 65536 } : { initial: 0, maximum: 0 });
      let fuel: WebAssembly.Global | undefined;
      const inst = new WebAssembly.Instance(mod, { gate: { memory, yield: () => void (fuel!.value = 20000) } });
      fuel = inst.exports.__gate_fuel as WebAssembly.Global;
      fuel.value = 20000;
      const init = program.initialState();
      for (const d of init.data) new Uint8Array(memory.buffer).set(d.bytes, d.offset);
      for (const g of init.globals) (inst.exports[`__gate_g${g.index}`] as WebAssembly.Global).value = globalJsValue(g.value);
      if (program.hasStart) (inst.exports.__gate_start as () => void)();
      const t0 = performance.now();
      const result = (inst.exports.run as () => unknown)();
      return { ms: performance.now() - t0, result };
    },
  };
}

const legacyName = (p: Profile): string => `Asyncify version: ${p}`;
const inlineName = (p: Profile): string => `${p}, inline rewind`;

async function kernels(lines: string[]): Promise<void> {
  lines.push('## Compute kernels: time relative to raw V8', '');
  const variants = [...PROFILES, ...PROFILES.map(inlineName), ...(legacy ? PROFILES.map(legacyName) : [])];
  lines.push(
    `Median of ${ROUNDS} rounds of per-round ratios; variants alternate within each round. Instrumented runs go through the runtime's Instance with 10 ms time slices (they really unwind and rewind at each). The *inline rewind* columns are our transform with its rewind code in every function of the prepared module, as before lazy rewind (docs/runtime.md). The *Asyncify version* columns are the first version's pipeline (bench/legacy/) measured in the same run, instantiated directly with a check that never unwinds.`,
    '',
  );
  lines.push(`| kernel | raw (ms) | ${variants.join(' | ')} |`, `|---|---|${variants.map(() => '---').join('|')}|`);
  const perProfile: Record<string, number[]> = Object.fromEntries(variants.map((p) => [p, []]));
  for (const k of KERNELS) {
    const bytes = new Uint8Array(await readFile(new URL(`${k}.wasm`, buildDir)));
    const runners = [
      rawRunner(bytes),
      ...(await Promise.all(PROFILES.map((p) => profileRunner(bytes, p)))),
      ...(await Promise.all(PROFILES.map((p) => profileRunner(bytes, p, true)))),
      ...(legacy ? await Promise.all(PROFILES.map((p) => legacyRunner(bytes, p))) : []),
    ];
    for (const r of runners) r.run(); // warm up (and tier up)
    const ratios: Record<string, number[]> = Object.fromEntries(variants.map((p) => [p, []]));
    const raws: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const times: Record<string, number> = {};
      let expected: unknown;
      for (const r of runners) {
        const { ms, result } = r.run();
        if (r.name === 'raw') expected = result;
        else if (result !== expected) throw new Error(`${k}: ${r.name} computed ${String(result)}, raw ${String(expected)}`);
        times[r.name] = ms;
      }
      raws.push(times.raw!);
      for (const p of variants) ratios[p]!.push(times[p]! / times.raw!);
    }
    const cells = variants.map((p) => {
      const r = median(ratios[p]!);
      perProfile[p]!.push(r);
      return `${fmt(r)}× (${fmt(Math.min(...ratios[p]!))}–${fmt(Math.max(...ratios[p]!))})`;
    });
    lines.push(`| ${k} | ${fmt(median(raws), 1)} | ${cells.join(' | ')} |`);
    process.stderr.write(`bench: ${k} done\n`);
  }
  lines.push(`| **geomean** | | ${variants.map((p) => `**${fmt(geomean(perProfile[p]!))}×**`).join(' | ')} |`, '');
}

async function prepareTimes(lines: string[]): Promise<void> {
  const require = createRequire(import.meta.url);
  const sqlWasm = require.resolve('sql.js/dist/sql-wasm.wasm');
  // `gate`: a Gate program, with its own imports (the ABI's blocking calls block); otherwise foreign imports, all treated as blocking.
  const modules: Array<[string, Uint8Array, 'gate' | 'foreign']> = [
    ['sha256 (C kernel)', new Uint8Array(await readFile(new URL('sha256.wasm', buildDir))), 'foreign'],
    ['sql.js 1.16 (SQLite, emscripten)', new Uint8Array(await readFile(sqlWasm)), 'foreign'],
    ['bench/programs/sqlite.c (SQLite, Gate program)', new Uint8Array(await readFile(new URL('sqlite.wasm', buildDir))), 'gate'],
  ];
  lines.push('## Preparation time (binary rewrite + our transform)', '');
  lines.push(
    "First run in this process (JavaScript not yet optimized, as in a fresh prepare worker) and the median of the runs after it. The foreign imports of sha256 and sql.js are treated as blocking (the costliest case: every function that may reach one is unwindable, and those under 1 KiB keep their rewind code, docs/runtime.md); the Gate program has the ABI's imports, of which the ABI's blocking calls block. *inline rewind*: our transform with its rewind code in every function, as before lazy rewind (docs/runtime.md), for comparison.",
    '',
    '| module | size | profile | first run (ms) | then (ms) | MB/s (then) | output size |',
    '|---|---|---|---|---|---|---|',
  );
  for (const [name, bytes, kind] of modules) {
    const program = kind === 'gate' ? await Program.load(bytes, DEFAULT_LOCAL_LIMITS) : undefined;
    const m = program?.module ?? parseModule(bytes);
    // Foreign imports are treated as blocking ones: the costliest case for io-suspend.
    const imports: CanonicalImport[] = program?.imports ?? m.imports.map((i) => ({ module: 'wasi', name: `${i.module}.${i.field}` }));
    const unwinding = program ? new Set(BLOCKING_IMPORTS) : new Set(imports.map((i) => `${i.module}.${i.name}`));
    for (const [profile, rewind] of PROFILES.flatMap((p) => [[p, 'lazy'] as const, [p, 'inline'] as const])) {
      const times: number[] = [];
      let size = 0;
      const runs = quick ? 4 : 10;
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        const p = await prepare(m, { profile, imports, unwindingImports: unwinding, rewind });
        times.push(performance.now() - t0);
        size = p.bytes.length;
      }
      const t = median(times.slice(1));
      lines.push(`| ${name} | ${(bytes.length / 1024).toFixed(0)} KiB | ${rewind === 'inline' ? inlineName(profile) : profile} | ${fmt(times[0]!, 0)} | ${fmt(t, 0)} | ${fmt(bytes.length / 1e6 / (t / 1000), 2)} | ${fmt(size / bytes.length)}× |`);
      process.stderr.write(`bench: prepare ${name} ${profile} done\n`);
    }
  }
  lines.push('');
}

async function main(): Promise<void> {
  // (binaryen's package exports do not include its package.json)
  const version = async (pkg: string): Promise<string> =>
    (JSON.parse(await readFile(new URL(`../../node_modules/${pkg}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;
  const started = performance.now();
  let commit = 'unknown commit';
  try {
    const git = (cmd: string): string => execSync(`git ${cmd}`, { cwd: fileURLToPath(new URL('../..', import.meta.url)), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    // Measured code can differ from the commit: name what was changed (outside bench/).
    const changed = git('status --porcelain --untracked-files=all -- src test package.json')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.slice(3));
    commit = `commit ${git('rev-parse --short HEAD').trim()}${changed.length ? ` with uncommitted changes in ${changed.join(', ')}` : ''}`;
  } catch {
    // not a git checkout
  }
  const lines: string[] = [
    '# Benchmark results',
    '',
    `Machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version} (V8 ${process.versions.v8}); binaryen ${await version('binaryen')}, sql.js ${await version('sql.js')}; ${commit}. ${new Date().toISOString()}${quick ? ' (quick run)' : ''}${only ? ` (sections: ${[...only].join(', ')})` : ''}`,
    '',
  ];
  const log = (s: string): void => void process.stderr.write(`bench: ${s}\n`);
  if (want('kernels')) await kernels(lines);
  if (want('prepare')) await prepareTimes(lines);
  if (want('sqljs')) await sqljsSection(lines, quick ? 3 : 9, log, legacy);
  if (want('snapshot')) await snapshotSection(lines, quick ? 5 : 15, log);
  if (want('sandbox')) await sandboxSection(lines, quick ? 5 : 20, log);
  if (want('launch')) await launchSection(lines, quick ? 300 : 3000, log);
  if (want('launch-cold')) await launchColdSection(lines, quick ? 3 : 5, log);
  if (want('http')) await httpSection(lines, quick ? 2 : 3, quick ? 2 : 5, log);
  if (want('endpoint')) await endpointSection(lines, quick ? 2 : 3, quick ? 2 : 5, log);
  if (want('density')) await densitySection(lines, quick, log);
  if (want('connections')) await connectionsSection(lines, quick, log);
  if (want('neighbours')) await neighboursSection(lines, quick, log, neighboursNice);
  if (want('migration')) await migrationSection(lines, quick ? 3 : 7, log);
  if (want('cluster')) await clusterSection(lines, quick ? 3 : 5, log);
  if (want('stop')) await stopSection(lines, quick, log);
  if (want('peers')) await peersSection(lines, quick, log);
  lines.push(`Whole run: ${fmt((performance.now() - started) / 1000, 0)} s.`, '');
  const text = lines.join('\n');
  if (outFile) await writeFile(outFile, text);
  else log('--only without --out: bench/RESULTS.md is left as it is (the tables follow)');
  process.stdout.write(`${text}\n`);
}

await main();
