#!/usr/bin/env node
// Builds the browser runtime with esbuild (docs/browser.md):
//
//   src/browser/index.ts           → dist/browser/gate.js                  (ESM, the page's module)
//   src/browser/executor-worker.ts → dist/browser/gate-executor-worker.js  (ESM module worker)
//   src/browser/prepare-worker.ts  → dist/browser/gate-prepare-worker.js   (ESM module worker, optional)
//   test/browser/harness.ts        → dist/browser-test/harness.js          (test page only; imports /gate/gate.js)
//   src/console/                   → dist/console/                          (the web console gate-server serves at
//                                     /gate-0/console/: index.html, console.css, console.js with the runtime
//                                     bundled in, gate-executor-worker.js)
//
// The runtime files must stay side by side: gate.js starts its workers from
// its own URL. The build fails if anything reachable from them imports a
// node:* module (platform "browser" cannot resolve those): that is what keeps
// the core free of Node.

import { copyFileSync, mkdirSync } from 'node:fs';
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

// The console: one self-contained directory (no CDN, nothing from elsewhere),
// served with a strict Content-Security-Policy (src/server/console.ts).
await esbuild.build({
  ...common,
  sourcemap: false,
  minify: true,
  entryPoints: { console: 'src/console/main.ts', 'gate-executor-worker': 'src/browser/executor-worker.ts' },
  outdir: 'dist/console',
});
mkdirSync(path.join(root, 'dist/console'), { recursive: true });
for (const f of ['index.html', 'console.css']) copyFileSync(path.join(root, 'src/console', f), path.join(root, 'dist/console', f));

if (process.argv.includes('--verbose')) {
  for (const [file, out] of Object.entries(lib.metafile.outputs)) console.log(`${file}: ${out.bytes} bytes`);
}
