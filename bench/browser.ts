/**
 * `npm run bench:browser`: the browser runtime measured in Chromium (Debian's
 * /usr/bin/chromium through playwright-core): compute kernels raw vs each
 * profile, preparation time of sql.js (688 KB) and of the SQLite Gate program
 * (bench/programs/sqlite.c, 804 KB), in the page's engine, and
 * migration gate-server → page → gate-server of bench/programs/idle.wat
 * instances (1 page, 1 MiB dense) through the HTTP API.
 * Prints a Markdown section (docs/browser.md quotes it). Options: --quick.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { launchChromium, openTestPage } from '../test/helpers/browser.js';
import { newKey, request, startTestServer, type TestServer } from '../test/helpers/server.js';
import { benchWat } from './field.js';
import { fmt, geomean, median, summary } from './stats.js';

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
  // sql.js (emscripten) and the largest Gate program built here (SQLite against gate.h, as bench/launch-cold.ts sends it).
  const modules: Array<[string, string]> = [
    ['sql.js 1.16 (emscripten)', '/sql-wasm.wasm'],
    ['bench/programs/sqlite.c (a Gate program)', '/benchprograms/sqlite.wasm'],
  ];
  lines.push("Preparing modules on the page's thread (binary rewrite + transform; first run in the page, then the median of the runs after it):", '', '| module | size | profile | first run (ms) | then (ms, median) | MB/s (then) | output size |', '|---|---|---|---|---|---|---|');
  for (const [name, url] of modules) {
    const pt: P = await page.evaluate(([u, runs]) => (globalThis as any).gateBench.prepareTimes(u, runs), [url, quick ? 3 : 9] as const);
    for (const [p, t] of Object.entries(pt.profiles)) {
      const then = median(t.then);
      lines.push(`| ${name} | ${(pt.size / 1024).toFixed(0)} KiB | ${p} | ${fmt(t.first, 0)} | ${fmt(then, 0)} | ${fmt(pt.size / 1e6 / (then / 1000))} | ${fmt(t.outSize / pt.size)}× |`);
    }
  }
  lines.push('');
  await browser.close();
  lines.push(...(await migration(quick ? 3 : 7)));
  console.log(lines.join('\n'));
} finally {
  await browser.close();
  server.close();
}

/**
 * The harness's `migrate` (test/browser/harness.ts) on idle instances: each
 * round moves each instance from the server into the page and back.
 */
async function migration(rounds: number): Promise<string[]> {
  let gate: TestServer | undefined;
  const tp = await openTestPage(() => gate?.url);
  const key = newKey();
  try {
    gate = await startTestServer({ origins: [new URL(tp.url).origin] });
    const g = gate;
    await tp.page.exposeFunction('gateToken', () => g.token(key));
    const idle = benchWat('idle');
    const hash = createHash('sha256').update(idle).digest('hex');
    const cases = [
      { name: '1 page', entry: 'idle' },
      { name: '1 MiB (dense)', entry: 'idle1m' },
    ];
    const ids = new Map<string, string>();
    for (const c of cases) {
      const r = await request(g, 'POST', `/gate-0/module/sha256/${hash}?action=pin&action=launch&function=${c.entry}`, { key, headers: { 'Content-Type': 'application/wasm' }, body: idle });
      if (r.status !== 201) throw new Error(`launch ${c.entry}: ${r.status} ${r.text}`);
      ids.set(c.name, String(r.headers['gate-instance']));
    }
    await new Promise((r) => setTimeout(r, 500));
    type Ms = Record<string, number>;
    const samples = new Map<string, { ms: Ms[]; down: number; up: number }>(cases.map((c) => [c.name, { ms: [], down: 0, up: 0 }]));
    for (let round = 0; round <= rounds; round++) {
      for (const c of cases) {
        const origin = new URL(tp.url).origin;
        const r: { ms: Ms; status: { state: string }; downloadedBytes: number; snapshotBytes: number } = await tp.page.evaluate(
          (req) => (globalThis as any).gateHarness.migrate(req),
          { server: origin, id: ids.get(c.name)! },
        );
        if (r.status.state !== 'SUSPENDED') throw new Error(`${c.name}: ${JSON.stringify(r.status)} in the page`);
        if (round === 0) continue; // warm-up
        const s = samples.get(c.name)!;
        s.ms.push(r.ms);
        s.down = r.downloadedBytes;
        s.up = r.snapshotBytes;
      }
    }
    const kib = (n: number): string => (n >= 1024 * 1024 ? `${fmt(n / 1024 / 1024, 1)} MiB` : `${fmt(n / 1024, 1)} KiB`);
    const col = (ms: Ms[], k: string): string => summary(ms.map((m) => m[k]!));
    const total = (ms: Ms[], keys: string[]): string => summary(ms.map((m) => keys.reduce((a, k) => a + m[k]!, 0)));
    const out = [
      `Migration gate-server → page → gate-server through the HTTP API (gate-server in the benchmark's process, no sandbox; the page reaches it through a same-origin proxy), ${rounds} round trips per size after one warm-up. Milliseconds, median (min–max):`,
      '',
      '| instance memory | snapshot down / up | server: suspend + snapshot + download | page: load + launch | **server → running in the page** | page: suspend + snapshot | upload + launch | **page → running on the server** |',
      '|---|---|---|---|---|---|---|---|',
    ];
    for (const c of cases) {
      const s = samples.get(c.name)!;
      out.push(
        `| ${c.name} | ${kib(s.down)} / ${kib(s.up)} | ${total(s.ms, ['suspend', 'snapshot', 'download'])} | ${col(s.ms, 'resume')} | **${total(s.ms, ['suspend', 'snapshot', 'download', 'resume'])}** | ${col(s.ms, 'suspendHere')} | ${total(s.ms, ['upload', 'launch'])} | **${total(s.ms, ['suspendHere', 'upload', 'launch'])}** |`,
      );
    }
    out.push('');
    return out;
  } finally {
    await tp.close();
    await gate?.stop();
  }
}
