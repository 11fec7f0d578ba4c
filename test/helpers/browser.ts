/**
 * Real Chromium for the browser runtime's tests: Debian's /usr/bin/chromium
 * driven by playwright-core (no browser download), and a small loopback HTTP
 * server for the test page, the bundled runtime (dist/browser/) and the test
 * programs (test/programs/build/).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Chromium from Debian's `chromium` package (.ci/run installs it); GATE_CHROMIUM overrides. */
export const CHROMIUM = process.env.GATE_CHROMIUM ?? '/usr/bin/chromium';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
};

/** URL prefixes of the test server and the directories they serve. */
const MOUNTS: Array<[string, string]> = [
  ['/gate/', join(ROOT, 'dist/browser')],
  ['/test/', join(ROOT, 'dist/browser-test')],
  ['/programs/', join(ROOT, 'test/programs/build')],
];

const PAGE = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>gate browser runtime test</title><link rel="icon" href="data:,">
<script type="module" src="/test/harness.js"></script></head><body></body></html>`;

export interface TestPage {
  page: Page;
  url: string;
  /** Console errors and uncaught exceptions of the page (and its workers) so far. */
  errors: string[];
  close(): Promise<void>;
}

function serveFile(path: string): { body: Buffer; type: string } | undefined {
  for (const [prefix, dir] of MOUNTS) {
    if (!path.startsWith(prefix)) continue;
    const file = normalize(join(dir, decodeURIComponent(path.slice(prefix.length))));
    if (!file.startsWith(dir + '/') || !existsSync(file)) return undefined;
    return { body: readFileSync(file), type: TYPES[extname(file)] ?? 'application/octet-stream' };
  }
  return undefined;
}

/**
 * The test page's server. With `api`, requests under /gate-0/ are passed on
 * to that gate-server, so that the page and the API share an origin (as a
 * console served by gate-server does): the spec exposes only Gate-Status of
 * instance responses to other origins, not a snapshot's Location.
 */
export async function startStaticServer(api?: () => string | undefined): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const target = api?.();
    if (target && path.startsWith('/gate-0/')) {
      const upstream = httpRequest(`${target}${req.url}`, { method: req.method, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
      return;
    }
    const found = path === '/' ? { body: PAGE, type: TYPES['.html']! } : serveFile(path);
    if (!found) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': found.type, 'cache-control': 'no-store' }).end(found.body);
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server };
}

/** Starts Chromium headless; as root it needs --no-sandbox (Chromium refuses to run its sandbox as root). */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium package (.ci/run does) or set GATE_CHROMIUM`);
  const args = process.getuid?.() === 0 ? ['--no-sandbox'] : [];
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

/** The test page with the harness loaded (window.gateHarness); `api` as for startStaticServer. */
export async function openTestPage(api?: () => string | undefined): Promise<TestPage> {
  for (const f of ['dist/browser/gate.js', 'dist/browser/gate-executor-worker.js', 'dist/browser-test/harness.js']) {
    if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: run \`npm run build:browser\` (npm test does)`);
  }
  const { url, server } = await startStaticServer(api);
  const browser = await launchChromium();
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('worker', (w) => w.on('console', (m) => m.type() === 'error' && errors.push(`worker: ${m.text()}`)));
  await page.goto(url);
  await page.waitForFunction(() => (globalThis as unknown as { gateHarness?: { ready: boolean } }).gateHarness?.ready === true, undefined, { timeout: 30_000 });
  return {
    page,
    url,
    errors,
    close: async () => {
      await browser.close();
      await new Promise((res) => server.close(res));
    },
  };
}
