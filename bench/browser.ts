/**
 * `npm run bench:browser`: the browser runtime measured in Chromium (Debian's
 * /usr/bin/chromium through playwright-core): compute kernels raw vs each
 * profile, and preparation time of sql.js (688 KB), in the page's engine.
 * Prints a Markdown section (docs/browser.md quotes it). Options: --quick.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { launchChromium } from '../test/helpers/browser.js';
import { fmt, geomean, median } from './stats.js';

const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 3 : 7;
const KERNELS = ['fib', 'sieve', 'sha256', 'nbody', 'qsort'];
const root = fileURLToPath(new URL('../../', import.meta.url));
const sqlWasm = createRequire(import.meta.url).resolve('sql.js/dist/sql-wasm.wasm');

const bundle = await esbuild.build({
  entryPoints: [`${root}bench/browser/page.ts`],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  write: false,
});
const pageJs = bundle.outputFiles[0]!.text;

const server = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  const send = (type: string, body: string | Buffer): void => void res.writeHead(200, { 'content-type': type }).end(body);
  try {
    if (path === '/') send('text/html', '<!doctype html><link rel="icon" href="data:,"><script type="module" src="/page.js"></script>');
    else if (path === '/page.js') send('text/javascript', pageJs);
    else if (path === '/sql-wasm.wasm') send('application/wasm', readFileSync(sqlWasm));
    else if (/^\/benchprograms\/[a-z0-9]+\.wasm$/.test(path)) send('application/wasm', readFileSync(`${root}bench/build/${path.split('/').pop()}`));
    else res.writeHead(404).end();
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  await page.waitForFunction(() => (globalThis as any).gateBench?.ready === true);
  const lines = [`## In Chromium ${browser.version()} (bench/browser.ts${quick ? ', quick' : ''})`, ''];

  type K = Array<{ kernel: string; raw: number[]; ratios: Record<string, number[]> }>;
  const ks: K = await page.evaluate(([names, rounds]) => (globalThis as any).gateBench.kernels(names, rounds), [KERNELS, ROUNDS] as const);
  const profiles = Object.keys(ks[0]!.ratios);
  lines.push(`Compute kernels, time relative to raw (median of ${ROUNDS} rounds' ratios, min–max):`, '');
  lines.push(`| kernel | raw (ms) | ${profiles.join(' | ')} |`, `|---|---|${profiles.map(() => '---').join('|')}|`);
  for (const k of ks) {
    lines.push(`| ${k.kernel} | ${fmt(median(k.raw), 1)} | ${profiles.map((p) => `${fmt(median(k.ratios[p]!))}× (${fmt(Math.min(...k.ratios[p]!))}–${fmt(Math.max(...k.ratios[p]!))})`).join(' | ')} |`);
  }
  lines.push(`| **geomean** | | ${profiles.map((p) => `**${fmt(geomean(ks.map((k) => median(k.ratios[p]!))))}×**`).join(' | ')} |`, '');

  type P = { size: number; profiles: Record<string, { first: number; then: number[]; outSize: number }> };
  const pt: P = await page.evaluate((runs) => (globalThis as any).gateBench.prepareTimes('/sql-wasm.wasm', runs), quick ? 3 : 9);
  lines.push(`Preparing sql.js (${(pt.size / 1024).toFixed(0)} KiB) on the page's thread:`, '', '| profile | first run (ms) | then (ms, median) | output size |', '|---|---|---|---|');
  for (const [p, t] of Object.entries(pt.profiles)) lines.push(`| ${p} | ${fmt(t.first, 0)} | ${fmt(median(t.then), 0)} | ${fmt(t.outSize / pt.size)}× |`);
  lines.push('');
  console.log(lines.join('\n'));
} finally {
  await browser.close();
  server.close();
}
