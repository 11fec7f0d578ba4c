/**
 * The web console's files at /gate-0/console/ (src/server/console.ts) over
 * plain HTTP: what is served and with which headers, what is not, and the
 * server's own origin, which may use the API exactly while the console is
 * served (a page of another origin still may not).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { newKey, request, spawnServer, startTestServer, type TestServer } from '../helpers/server.js';

const key = newKey();

describe('the console route', () => {
  let server!: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server?.stop());

  it('serves the console page and its files with a strict Content-Security-Policy', async () => {
    const page = await request(server, 'GET', '/gate-0/console/');
    assert.equal(page.status, 200);
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(page.text, /<script type="module" src="console.js">/);
    const csp = String(page.headers['content-security-policy']);
    for (const d of ["default-src 'none'", "script-src 'self' 'wasm-unsafe-eval'", "connect-src 'self'", "frame-ancestors 'none'", "form-action 'none'"]) assert.ok(csp.includes(d), `${d} in ${csp}`);
    assert.ok(!csp.includes('unsafe-inline'), csp);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.equal(page.headers['x-frame-options'], 'DENY');
    for (const [file, type] of [['console.js', 'text/javascript; charset=utf-8'], ['gate-executor-worker.js', 'text/javascript; charset=utf-8'], ['console.css', 'text/css; charset=utf-8'], ['tally.wasm', 'application/wasm']]) {
      const r = await request(server, 'GET', `/gate-0/console/${file}`);
      assert.equal(r.status, 200, file);
      assert.equal(r.headers['content-type'], type, file);
      assert.equal(r.headers['content-security-policy'], csp, file);
    }
    const head = await request(server, 'HEAD', '/gate-0/console/console.js');
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
  });

  it('serves nothing else there', async () => {
    assert.equal((await request(server, 'GET', '/gate-0/console')).headers.location, '/gate-0/console/');
    for (const p of ['/gate-0/console/index.html', '/gate-0/console/nope.js', '/gate-0/console/console.js.map', '/gate-0/console/sub/console.js']) {
      assert.equal((await request(server, 'GET', p)).status, 404, p);
    }
    // Paths are cleaned (redirected) before anything is looked up.
    const twice = await request(server, 'GET', '/gate-0/console//console.js');
    assert.equal(twice.status, 301);
    assert.equal(twice.headers.location, '/gate-0/console/console.js');
    const post = await request(server, 'POST', '/gate-0/console/');
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD, OPTIONS');
  });

  it("lets the server's own origin use the API, and no other", async () => {
    const own = new URL(server.url).origin;
    const ok = await request(server, 'POST', '/gate-0/instance/', { key, headers: { Origin: own } });
    assert.equal(ok.status, 200, ok.text);
    // (The test server allows 'null', the spec's test configuration.)
    for (const origin of ['https://example.net', 'http://127.0.0.1:1', 'http://localhost' + own.slice(own.lastIndexOf(':'))]) {
      assert.equal((await request(server, 'POST', '/gate-0/instance/', { key, headers: { Origin: origin } })).status, 403, origin);
    }
  });
});

describe('http.console = false', () => {
  it('serves no console, and the own origin is refused like any other', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gate-console-off-'));
    const server = await spawnServer(dir, ['http.console=false']);
    try {
      assert.equal((await request(server, 'GET', '/gate-0/console/')).status, 404);
      assert.equal((await request(server, 'POST', '/gate-0/instance/', { key, headers: { Origin: new URL(server.url).origin } })).status, 403);
      assert.equal((await request(server, 'POST', '/gate-0/instance/', { key })).status, 200);
    } finally {
      server.proc.kill();
      await server.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
