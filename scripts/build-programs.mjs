#!/usr/bin/env node
// Builds the WebAssembly test and benchmark programs:
//
//   test/programs/*.c    → test/programs/build/<name>.wasm   (clang)
//   test/programs/*.wat  → test/programs/build/<name>.wasm   (wat2wasm)
//   test/programs/attacks/*.{c,wat} → test/programs/build/attacks/<name>.wasm
//   bench/programs/*.c, *.wat → bench/build/<name>.wasm      (clang, wat2wasm)
//   examples/*.c         → examples/build/<name>.wasm        (clang)
//
// Examples are built without --allow-undefined, like the command line in
// examples/README.md, and each examples/build/<name>.wasm is then copied to
// the committed examples/<name>.wasm if their contents differ (so that the
// prebuilt modules stay current and are not touched needlessly).
//
// A C source may append flags with a first-line comment `// cflags: ...`
// (appended after the defaults, so they win, e.g. `--target=wasm32-wasi`);
// a WAT source likewise with `;; watflags: ...` (e.g. `--no-check`).
// Outputs newer than their inputs (source, sdk/c headers, this script) are
// skipped.  Options: --force (rebuild everything), --verbose (print commands).
// Environment: CLANG, WASM_LD, WAT2WASM override the tools.
//
// Plain Node ESM without dependencies; needs clang-14 (or clang), wasm-ld and
// wat2wasm only when something has to be rebuilt.

import { spawn, spawnSync } from 'node:child_process';
import { delimiter } from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// clang's wasm driver runs `wasm-opt` after linking whenever it finds one on
// PATH, and `npm run` puts node_modules/.bin (binaryen's wasm-opt) there: the
// same command would build different programs inside and outside npm. The
// tools run with node_modules/.bin taken off PATH.
const toolEnv = {
  ...process.env,
  PATH: (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => !dir.split(/[\\/]/).includes('node_modules'))
    .join(delimiter),
};
import { fileURLToPath } from 'node:url';

const scriptPath = fileURLToPath(import.meta.url);
const root = path.resolve(path.dirname(scriptPath), '..');
const sdkDir = path.join(root, 'sdk', 'c');

const INSTALL_HINT =
  'install clang-14 lld-14 wasi-libc wabt ' +
  '(Debian/Ubuntu: apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 wabt)';

const DEFAULT_CFLAGS = [
  '--target=wasm32',
  '-O2',
  '-nostdlib',
  '-mbulk-memory',
  '-msign-ext',
  '-mnontrapping-fptoint',
  '-Wl,--no-entry',
  '-Wl,--allow-undefined',
  '-Wall',
  '-I',
  sdkDir,
];

// Undefined symbols are link errors for the examples (users build them so).
const EXAMPLE_CFLAGS = DEFAULT_CFLAGS.filter((f) => f !== '-Wl,--allow-undefined');

// Imports a Gate program may have (abi.md §1.2).  With --allow-undefined a
// missing definition (memset, a compiler-rt helper, a typo) silently becomes
// an `env` import that Gate rejects at load time, so C outputs are checked.
function importAllowed(module, field) {
  if (module === 'env') return field.startsWith('__gate_') || field.startsWith('__wasi_');
  return module === 'gate' || module === 'wasi_snapshot_preview1' || module === 'wasi_unstable';
}

const args = process.argv.slice(2);
const force = args.includes('--force') || args.includes('-f');
const verbose = args.includes('--verbose') || args.includes('-v');
for (const a of args) {
  if (!['--force', '-f', '--verbose', '-v'].includes(a)) {
    console.error(`build-programs: unknown argument: ${a}\nusage: node scripts/build-programs.mjs [--force] [--verbose]`);
    process.exit(2);
  }
}

// ---------------------------------------------------------------------------
// Job discovery

function listSources(dir, exts) {
  let names;
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if (err.code === 'ENOENT') return [];
    throw err;
  }
  return names.filter((n) => exts.some((e) => n.endsWith(e))).sort().map((n) => path.join(dir, n));
}

function mtime(file) {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return -Infinity;
  }
}

const headers = listSources(sdkDir, ['.h']);

const examplesDir = path.join(root, 'examples');

const jobs = [];
for (const [srcDir, outDir, exts, cflags] of [
  [path.join(root, 'test', 'programs'), path.join(root, 'test', 'programs', 'build'), ['.c', '.wat'], DEFAULT_CFLAGS],
  [path.join(root, 'test', 'programs', 'attacks'), path.join(root, 'test', 'programs', 'build', 'attacks'), ['.c', '.wat'], DEFAULT_CFLAGS],
  [path.join(root, 'bench', 'programs'), path.join(root, 'bench', 'build'), ['.c', '.wat'], DEFAULT_CFLAGS],
  [examplesDir, path.join(examplesDir, 'build'), ['.c'], EXAMPLE_CFLAGS],
]) {
  const seen = new Map();
  for (const src of listSources(srcDir, exts)) {
    const ext = path.extname(src);
    const name = path.basename(src, ext);
    const out = path.join(outDir, `${name}.wasm`);
    if (seen.has(name)) {
      console.error(`build-programs: both ${rel(seen.get(name))} and ${rel(src)} would produce ${rel(out)}`);
      process.exit(1);
    }
    seen.set(name, src);
    const deps = [src, scriptPath];
    if (ext === '.c') deps.push(...headers, ...listSources(srcDir, ['.h']));
    const example = srcDir === examplesDir ? path.join(examplesDir, `${name}.wasm`) : undefined;
    jobs.push({ kind: ext === '.c' ? 'c' : 'wat', src, out, deps, cflags, example });
  }
}

function rel(p) {
  return path.relative(root, p) || '.';
}

const stale = jobs.filter((j) => force || mtime(j.out) < Math.max(...j.deps.map(mtime)));

// Copies built examples over the committed prebuilt modules whose content differs.
function updatePrebuiltExamples() {
  for (const job of jobs) {
    if (!job.example) continue;
    let built;
    try {
      built = fs.readFileSync(job.out);
    } catch (err) {
      if (err.code === 'ENOENT') continue;
      throw err;
    }
    let current;
    try {
      current = fs.readFileSync(job.example);
    } catch (err) {
      if (err.code !== 'ENOENT') throw err;
    }
    if (current && built.equals(current)) continue;
    const tmp = `${job.example}.tmp`;
    fs.writeFileSync(tmp, built);
    fs.renameSync(tmp, job.example);
    console.log(`build-programs: updated ${rel(job.example)}`);
  }
}

if (stale.length === 0) {
  updatePrebuiltExamples();
  console.log(`build-programs: ${jobs.length} programs up to date`);
  process.exit(0);
}

// ---------------------------------------------------------------------------
// Toolchain

function findOnPath(name) {
  if (name.includes('/')) return isExecutable(name) ? path.resolve(name) : null;
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, name);
    if (isExecutable(p)) return p;
  }
  return null;
}

function isExecutable(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function missing(what) {
  console.error(`build-programs: ${what} not found: ${INSTALL_HINT}`);
  process.exit(1);
}

const toolchain = {};

if (stale.some((j) => j.kind === 'c')) {
  const clang = process.env.CLANG ? findOnPath(process.env.CLANG) : findOnPath('clang-14') || findOnPath('clang');
  if (!clang) missing(process.env.CLANG ? `CLANG=${process.env.CLANG}` : 'clang-14 (or clang)');
  toolchain.clang = clang;

  // clang looks for a linker named `wasm-ld`; Debian's lld-14 may provide only
  // `wasm-ld-14`.  Pass an absolute -fuse-ld path, preferring the linker of
  // the same LLVM version as the compiler.
  const version = /-(\d+)$/.exec(path.basename(clang))?.[1];
  const candidates = [];
  if (process.env.WASM_LD) candidates.push(process.env.WASM_LD);
  else {
    if (version) candidates.push(`wasm-ld-${version}`, `/usr/lib/llvm-${version}/bin/wasm-ld`);
    candidates.push('wasm-ld');
    const printed = spawnSync(clang, ['--target=wasm32', '-print-prog-name=wasm-ld'], { encoding: 'utf8', env: toolEnv });
    const p = printed.status === 0 ? printed.stdout.trim() : '';
    if (path.isAbsolute(p)) candidates.push(p);
    candidates.push('wasm-ld-14', '/usr/lib/llvm-14/bin/wasm-ld');
  }
  const wasmLd = candidates.map(findOnPath).find(Boolean);
  if (!wasmLd) missing(process.env.WASM_LD ? `WASM_LD=${process.env.WASM_LD}` : 'wasm-ld (lld)');
  toolchain.wasmLd = wasmLd;

  // wasm32-wasi headers are only needed by sources asking for that target.
  const probe = spawnSync(clang, ['--target=wasm32', '--version'], { encoding: 'utf8', env: toolEnv });
  if (probe.status !== 0) missing(`a working ${clang} (${(probe.stderr || probe.error?.message || '').trim()})`);
}

if (stale.some((j) => j.kind === 'wat')) {
  const wat2wasm = findOnPath(process.env.WAT2WASM || 'wat2wasm');
  if (!wat2wasm) missing('wat2wasm (wabt)');
  toolchain.wat2wasm = wat2wasm;
}

// ---------------------------------------------------------------------------
// Building

function firstLineFlags(src, marker) {
  const first = fs.readFileSync(src, 'utf8').split('\n', 1)[0];
  const m = marker.exec(first);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
}

function commandFor(job, tmp) {
  if (job.kind === 'c') {
    const extra = firstLineFlags(job.src, /^\s*\/\/\s*cflags:(.*)$/);
    return [toolchain.clang, [...job.cflags, `-fuse-ld=${toolchain.wasmLd}`, ...extra, '-o', tmp, job.src]];
  }
  const extra = firstLineFlags(job.src, /^\s*;;\s*watflags:(.*)$/);
  return [toolchain.wat2wasm, [...extra, '-o', tmp, job.src]];
}

function run(cmd, argv) {
  return new Promise((resolve) => {
    const child = spawn(cmd, argv, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: toolEnv });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', (err) => resolve({ code: -1, output: output + String(err) }));
    child.on('close', (code) => resolve({ code, output }));
  });
}

// Minimal reader of the import section of a wasm binary.
function readImports(bytes) {
  let pos = 8;
  const u32 = () => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[pos++];
      if (b === undefined) throw new Error('truncated module');
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
  };
  const name = () => {
    const len = u32();
    const s = Buffer.from(bytes.subarray(pos, pos + len)).toString('utf8');
    pos += len;
    return s;
  };
  const limits = () => {
    const flags = bytes[pos++];
    u32();
    if (flags & 1) u32();
  };
  const imports = [];
  if (bytes.length < 8 || bytes.readUInt32LE(0) !== 0x6d736100) throw new Error('not a wasm module');
  while (pos < bytes.length) {
    const id = bytes[pos++];
    const size = u32();
    const end = pos + size;
    if (id === 2) {
      for (let n = u32(); n > 0; n--) {
        const module = name();
        const field = name();
        const kind = bytes[pos++];
        if (kind === 0) u32();
        else if (kind === 1) (pos++, limits());
        else if (kind === 2) limits();
        else if (kind === 3) pos += 2;
        else throw new Error(`unknown import kind ${kind}`);
        imports.push({ module, field, kind });
      }
      break;
    }
    pos = end;
  }
  return imports;
}

async function build(job) {
  fs.mkdirSync(path.dirname(job.out), { recursive: true });
  const tmp = `${job.out}.tmp`;
  const [cmd, argv] = commandFor(job, tmp);
  if (verbose) console.log([cmd, ...argv].join(' '));
  const { code, output } = await run(cmd, argv);
  if (code !== 0) {
    fs.rmSync(tmp, { force: true });
    const hint = /file not found|unable to execute|No such file/.test(output) ? `\n(missing toolchain parts? ${INSTALL_HINT})` : '';
    return `${rel(job.src)}: ${path.basename(cmd)} failed (exit ${code}):\n${output.trimEnd()}${hint}`;
  }
  if (job.kind === 'c') {
    let bad;
    try {
      bad = readImports(fs.readFileSync(tmp)).filter((i) => !importAllowed(i.module, i.field));
    } catch (err) {
      bad = [{ module: '?', field: String(err.message) }];
    }
    if (bad.length > 0) {
      fs.rmSync(tmp, { force: true });
      const list = bad.map((i) => `${i.module}.${i.field}`).join(', ');
      return `${rel(job.src)}: unexpected imports (a missing definition, e.g. memset or a compiler-rt helper?): ${list}`;
    }
  }
  fs.renameSync(tmp, job.out);
  if (output.trim()) process.stderr.write(`${rel(job.src)}:\n${output}`);
  if (verbose) console.log(`built ${rel(job.out)}`);
  return null;
}

const parallelism = Math.max(1, Math.min(stale.length, os.availableParallelism?.() ?? os.cpus().length));
const queue = [...stale];
const errors = [];
await Promise.all(
  Array.from({ length: parallelism }, async () => {
    for (let job; (job = queue.shift()); ) {
      const err = await build(job);
      if (err) errors.push(err);
    }
  }),
);

if (errors.length > 0) {
  for (const e of errors) console.error(`build-programs: ${e}`);
  console.error(`build-programs: ${errors.length} of ${stale.length} builds failed`);
  process.exit(1);
}
updatePrebuiltExamples();
console.log(`build-programs: built ${stale.length}, ${jobs.length - stale.length} up to date`);
