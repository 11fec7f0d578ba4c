#!/usr/bin/env node
// Builds the browser runtime with esbuild (docs/browser.md):
//
//   src/browser/index.ts           → dist/browser/gate.js                  (ESM, the page's module)
//   src/browser/executor-worker.ts → dist/browser/gate-executor-worker.js  (ESM module worker)
//   src/browser/prepare-worker.ts  → dist/browser/gate-prepare-worker.js   (ESM module worker, optional)
//   test/browser/harness.ts        → dist/browser-test/harness.js          (test page only; imports /gate/gate.js)
//
// The runtime files must stay side by side: gate.js starts its workers from
// its own URL. The build fails if anything reachable from them imports a
// node:* module (platform "browser" cannot resolve those): that is what keeps
// the core free of Node.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const common = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  logLevel: 'warning',
  absWorkingDir: root,
};

const lib = await esbuild.build({
  ...common,
  entryPoints: {
    gate: 'src/browser/index.ts',
    'gate-executor-worker': 'src/browser/executor-worker.ts',
    'gate-prepare-worker': 'src/browser/prepare-worker.ts',
  },
  outdir: 'dist/browser',
  metafile: true,
});

// The test harness uses the runtime bundle as a page would (one copy of it, loaded from /gate/).
const runtimeAsPageImport = {
  name: 'runtime-as-page-import',
  setup(build) {
    build.onResolve({ filter: /\/src\/browser\/index\.js$/ }, () => ({ path: '/gate/gate.js', external: true }));
  },
};
await esbuild.build({
  ...common,
  entryPoints: { harness: 'test/browser/harness.ts' },
  outdir: 'dist/browser-test',
  plugins: [runtimeAsPageImport],
});

if (process.argv.includes('--verbose')) {
  for (const [file, out] of Object.entries(lib.metafile.outputs)) console.log(`${file}: ${out.bytes} bytes`);
}
