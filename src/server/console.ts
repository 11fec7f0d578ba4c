/**
 * The web console's static files at /gate-0/console/ (docs/browser.md): a
 * fixed set of files built by scripts/build-browser.mjs into dist/console/,
 * plus the example module it offers (examples/tally.wasm). Served with a
 * strict Content-Security-Policy: only the console's own scripts, styles,
 * worker and same-origin connections (the API and its websockets); wasm
 * compilation is allowed for the runtime that runs moved instances.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError } from './errors.js';

export const PACKAGE_ROOT = new URL('../../../', import.meta.url);
const BUILT = new URL('dist/console/', PACKAGE_ROOT);

/** The console's files: path under /gate-0/console/ → where it is and its type. */
export const CONSOLE_FILES: ReadonlyMap<string, { url: URL; type: string }> = new Map([
  ['', { url: new URL('index.html', BUILT), type: 'text/html; charset=utf-8' }],
  ['console.js', { url: new URL('console.js', BUILT), type: 'text/javascript; charset=utf-8' }],
  ['gate-executor-worker.js', { url: new URL('gate-executor-worker.js', BUILT), type: 'text/javascript; charset=utf-8' }],
  ['console.css', { url: new URL('console.css', BUILT), type: 'text/css; charset=utf-8' }],
  ['tally.wasm', { url: new URL('examples/tally.wasm', PACKAGE_ROOT), type: 'application/wasm' }],
]);

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self'",
  "connect-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const HEADERS = {
  'Content-Security-Policy': CONSOLE_CSP,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-cache',
};

/** Answers GET/HEAD of a console file (`file` is the path below /gate-0/console/). */
export async function serveConsole(file: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const entry = CONSOLE_FILES.get(file);
  if (!entry) throw new HttpError(404, '404 page not found');
  let body: Buffer;
  try {
    body = await readFile(entry.url);
  } catch {
    throw new HttpError(404, 'the console is not built: run `npm run build:browser` in the checkout');
  }
  res.writeHead(200, { ...HEADERS, 'Content-Type': entry.type, 'Content-Length': body.length });
  res.end(req.method === 'HEAD' ? undefined : body);
}
