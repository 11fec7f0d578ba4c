/**
 * Instances as HTTP endpoints: test/programs/kv.c serves a key-value API
 * through the endpoint service, queried with plain HTTP clients (fetch, and
 * node:http for raw paths) at /gate-0/endpoint/<id>/…, across suspension,
 * resumption and cloning; limits, malformed answers and path tricks.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { programBytes } from '../helpers/runtime.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newKey, request, spawnServer, startTestServer, within, type Target, type TestServer } from '../helpers/server.js';

const K = '/gate-0/module/sha256/';
const I = '/gate-0/instance/';
const E = '/gate-0/endpoint/';
const kvWasm = programBytes('kv');
const KV = createHash('sha256').update(kvWasm).digest('hex');
const key = newKey();
const LIMITS = { maxRequests: 4, maxBodySize: 8192, timeoutMs: 1500 };

async function launchKv(server: Target): Promise<string> {
  const r = await request(server, 'POST', `${K}${KV}?action=pin&action=launch`, { key, headers: { 'Content-Type': 'application/wasm' }, body: kvWasm });
  assert.equal(r.status, 201, r.text);
  const id = String(r.headers['gate-instance']);
  await listening(server, id);
  return id;
}

/** Waits until the instance listens (its first accept call has reached the service). */
async function listening(server: Target, id: string): Promise<void> {
  await within(20_000, `endpoint ${id} listening`, (async () => {
    for (;;) {
      const r = await fetch(`${server.url}${E}${id}/count`);
      await r.arrayBuffer();
      if (r.status === 200) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })());
}

async function status(server: TestServer, id: string): Promise<unknown> {
  return JSON.parse((await request(server, 'POST', `${I}${id}`, { key })).text).status;
}

/** A request with the path exactly as given (fetch would resolve dot segments). */
function raw(server: TestServer, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(server.url);
    const req = httpRequest({ hostname, port, path, method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends a PUT declaring `length` body bytes but only `sent`, then waits; what the server answers until it closes the connection. */
function slowBody(server: TestServer, path: string, length: number, sent: string): Promise<string> {
  const { hostname, port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(`PUT ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Length: ${length}\r\n\r\n${sent}`);
    });
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => (text += c));
    socket.on('close', () => resolve(text));
    socket.on('error', reject);
  });
}

describe('endpoint', () => {
  it('serves a key-value API over plain HTTP, and keeps it across suspend and resume (503 while suspended)', async () => {
    const server = await startTestServer({ endpoints: LIMITS, checkpointIntervalMs: 0 });
    try {
      const id = await launchKv(server);
      const at = `${server.url}${E}${id}`;
      assert.equal((await fetch(`${at}/kv/colour`, { method: 'PUT', body: 'blue' })).status, 204);
      const got = await fetch(`${at}/kv/colour`);
      assert.equal(got.status, 200);
      assert.equal(await got.text(), 'blue');
      assert.equal(got.headers.get('content-type'), 'text/plain; charset=utf-8');
      // The server's own headers: the page is sandboxed away from the API's origin.
      assert.equal(got.headers.get('content-security-policy'), 'sandbox allow-scripts allow-forms');
      assert.equal(got.headers.get('x-content-type-options'), 'nosniff');
      const missing = await fetch(`${at}/kv/size`);
      assert.equal(missing.status, 404);
      assert.equal(await missing.text(), 'no such key\n');
      const wrong = await fetch(`${at}/kv/colour`, { method: 'POST', body: 'x' });
      assert.equal(wrong.status, 405);
      assert.equal(wrong.headers.get('allow'), 'GET, PUT, DELETE');
      await wrong.arrayBuffer();
      const echo = await fetch(`${at}/echo/a%20b?q=1&r`, { method: 'POST', headers: { 'X-Test': 'yes' }, body: 'body bytes' });
      assert.equal(await echo.text(), 'POST\n/echo/a%20b?q=1&r\nyes\n\nbody bytes');
      // The program's own credentials pass; a token for the server's API never reaches it.
      const basic = await fetch(`${at}/echo`, { headers: { Authorization: 'Basic dTpw' } });
      assert.equal(await basic.text(), 'GET\n/echo\n\nBasic dTpw\n');
      const token = await fetch(`${at}/echo`, { headers: { Authorization: `Bearer ${server.token(key)}` } });
      assert.equal(await token.text(), 'GET\n/echo\n\n\n');

      // Suspended between requests: 503 with Retry-After (nothing waits), then everything is back.
      assert.equal((await request(server, 'POST', `${I}${id}?action=suspend&action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED"}');
      const during = await fetch(`${at}/kv/colour`);
      assert.equal(during.status, 503);
      assert.equal(during.headers.get('retry-after'), '1');
      assert.equal(await during.text(), 'the instance is suspended; retry when it runs\n');
      assert.equal((await request(server, 'POST', `${I}${id}?action=resume`, { key })).status, 200);
      await listening(server, id);
      const after = await fetch(`${at}/kv/colour`);
      assert.equal(after.status, 200);
      assert.equal(await after.text(), 'blue');
      assert.equal((await fetch(`${at}/kv/colour`, { method: 'DELETE' })).status, 204);
      assert.equal((await fetch(`${at}/kv/colour`)).status, 404);
      const count = await fetch(`${at}/count`);
      assert.ok(Number(await count.text()) >= 8);

      // Deleted: not found (not "suspended") from then on.
      await request(server, 'POST', `${I}${id}?action=suspend&action=wait`, { key });
      assert.equal((await request(server, 'POST', `${I}${id}?action=delete`, { key })).status, 200);
      assert.equal((await fetch(`${at}/count`)).status, 404);
    } finally {
      await server.stop();
    }
  });

  it('a request in flight when the instance is suspended gets 503; after resuming (and in a clone), the program closes its restored stream and serves on', async () => {
    const server = await startTestServer({ endpoints: { ...LIMITS, timeoutMs: 20_000 }, checkpointIntervalMs: 0 });
    try {
      const id = await launchKv(server);
      const at = `${server.url}${E}${id}`;
      assert.equal((await fetch(`${at}/kv/a`, { method: 'PUT', body: '1' })).status, 204);
      // /ignore is accepted and left open: its stream is in the snapshot.
      const base = Number(await (await fetch(`${at}/count`)).text());
      const inFlight = fetch(`${at}/ignore`);
      await within(10_000, 'the request being accepted', (async () => {
        // Each poll is counted too: /ignore has been served when the count is ahead of the polls.
        for (let polls = 1; ; polls++) {
          if (Number(await (await fetch(`${at}/count`)).text()) >= base + polls + 1) return;
        }
      })());
      // A clone now copies the open stream too: the copy has no client for it, closes it, and serves.
      const cloned = await request(server, 'POST', `${I}${id}?action=clone`, { key });
      assert.equal(cloned.status, 200, cloned.text);
      const copy = String(cloned.headers['gate-instance']);
      await listening(server, copy);
      assert.equal(await (await fetch(`${server.url}${E}${copy}/kv/a`)).text(), '1');
      assert.deepEqual(await status(server, copy), { state: 'RUNNING' });
      assert.equal((await request(server, 'POST', `${I}${id}?action=suspend&action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED"}');
      const r = await inFlight;
      assert.equal(r.status, 503);
      assert.equal(r.headers.get('retry-after'), '1');
      assert.equal(await r.text(), 'the instance was suspended before it answered; retry when it runs\n');
      assert.equal((await request(server, 'POST', `${I}${id}?action=resume`, { key })).status, 200);
      await listening(server, id);
      assert.equal(await (await fetch(`${at}/kv/a`)).text(), '1');
      assert.equal((await fetch(`${at}/kv/b`, { method: 'PUT', body: '2' })).status, 204);
      assert.equal(await (await fetch(`${at}/kv/b`)).text(), '2');
      assert.deepEqual(await status(server, id), { state: 'RUNNING' });
    } finally {
      await server.stop();
    }
  });

  it('comes back after a restart of the server, and a clone listens under its own id with the same data and fresh randomness', async () => {
    const first = await startTestServer({ endpoints: LIMITS, checkpointIntervalMs: 0 });
    let second: TestServer | undefined;
    try {
      const id = await launchKv(first);
      assert.equal((await fetch(`${first.url}${E}${id}/kv/k`, { method: 'PUT', body: 'v1' })).status, 204);
      await first.stop(true);
      second = await startTestServer({ stateDir: first.stateDir, endpoints: LIMITS, checkpointIntervalMs: 0 });
      await listening(second, id);
      assert.equal(await (await fetch(`${second.url}${E}${id}/kv/k`)).text(), 'v1');

      const r = await request(second, 'POST', `${I}${id}?action=clone`, { key });
      assert.equal(r.status, 200, r.text);
      const copy = String(r.headers['gate-instance']);
      await listening(second, copy);
      assert.equal(await (await fetch(`${second.url}${E}${copy}/kv/k`)).text(), 'v1');
      assert.equal((await fetch(`${second.url}${E}${copy}/kv/k`, { method: 'PUT', body: 'v2' })).status, 204);
      assert.equal(await (await fetch(`${second.url}${E}${copy}/kv/k`)).text(), 'v2');
      assert.equal(await (await fetch(`${second.url}${E}${id}/kv/k`)).text(), 'v1');
      const seeds = await Promise.all([id, copy].map(async (i) => (await fetch(`${second!.url}${E}${i}/seed`)).text()));
      assert.match(seeds[0]!, /^[0-9a-f]+$/);
      assert.notEqual(seeds[0], seeds[1]);
      assert.notEqual(seeds[1], '0');
    } finally {
      await (second ?? first).stop();
    }
  });

  it('bounds requests: body size, unframed bodies, the time to answer, requests in progress per principal', async () => {
    const server = await startTestServer({ endpoints: LIMITS, checkpointIntervalMs: 0 });
    try {
      const id = await launchKv(server);
      const at = `${server.url}${E}${id}`;
      const big = await fetch(`${at}/kv/big`, { method: 'PUT', body: 'x'.repeat(LIMITS.maxBodySize + 1) });
      assert.equal(big.status, 413);
      assert.equal(await big.text(), `an endpoint request body may have at most ${LIMITS.maxBodySize} bytes\n`);
      const chunked = await raw(server, 'PUT', `${E}${id}/kv/c`, { 'Transfer-Encoding': 'chunked' }, 'abc');
      assert.equal(chunked.status, 411);
      // Within the server's limit but over the program's: the program says so.
      const fits = await fetch(`${at}/kv/big`, { method: 'PUT', body: 'x'.repeat(5000) });
      assert.equal(fits.status, 413);
      assert.equal(await fits.text(), 'value too large\n');

      // A body that never comes: 504 after the timeout, the connection closed; the program (which got a
      // cut-off request) goes on serving.
      const stalled = await slowBody(server, `${E}${id}/kv/slow`, 4000, 'abc');
      assert.match(stalled, /^HTTP\/1\.1 504 Gateway Timeout\r\n/);
      assert.match(stalled, /\r\nConnection: close\r\n/i);
      assert.equal((await fetch(`${at}/kv/slow`)).status, 404);

      // A request the program never answers gets 504 after the timeout; the program goes on serving.
      const ignored = await fetch(`${at}/ignore`);
      assert.equal(ignored.status, 504);
      assert.equal(await ignored.text(), 'the program did not answer in time\n');
      assert.equal((await fetch(`${at}/count`)).status, 200);

      // LIMITS.maxRequests in progress for this principal: the next one is turned away at once.
      const slow = Array.from({ length: LIMITS.maxRequests }, () => fetch(`${at}/ignore`));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const over = await fetch(`${at}/count`);
      assert.equal(over.status, 503);
      assert.equal(over.headers.get('retry-after'), '1');
      assert.deepEqual((await Promise.all(slow)).map((r) => r.status), Array(LIMITS.maxRequests).fill(504));
      assert.equal((await fetch(`${at}/count`)).status, 200);
      assert.deepEqual(await status(server, id), { state: 'RUNNING' });
    } finally {
      await server.stop();
    }
  });

  it('keeps everything after the id away from the server\'s routes', async () => {
    const server = await startTestServer({ endpoints: LIMITS, checkpointIntervalMs: 0 });
    try {
      const id = await launchKv(server);
      // Dot segments and encoded ones reach the program as sent; the API never sees them.
      for (const target of [`/echo/../../../instance/${id}`, '/echo/%2e%2e/%2e%2e/module/', '/echo//x/./y']) {
        const r = await raw(server, 'POST', `${E}${id}${target}`, { Authorization: `Bearer ${server.token(key)}` });
        assert.equal(r.status, 200, target);
        assert.equal(r.text, `POST\n${target}\n\n\n`);
      }
      // Not even when it does not start like a route of the program's.
      const up = await raw(server, 'GET', `${E}${id}/../../instance/`, { Authorization: `Bearer ${server.token(key)}` });
      assert.equal(up.status, 404);
      assert.equal(up.text, 'not found\n');
      // Without a slash after the id: redirected into the endpoint.
      const bare = await raw(server, 'GET', `${E}${id}?a=1`);
      assert.equal(bare.status, 301);
      assert.equal(bare.headers.location, `${E}${id}/?a=1`);
      for (const bad of [`${E}`, `${E}not-a-uuid/`, `${E}${globalThis.crypto.randomUUID()}/`, `${E}${id.toUpperCase()}/count`]) {
        assert.equal((await raw(server, 'GET', bad)).status, 404, bad);
      }
      // A websocket upgrade is not an endpoint request (and not routed to the API).
      const ws = await raw(server, 'GET', `${E}${id}/count`, { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' });
      assert.notEqual(ws.status, 101);
      assert.equal((await fetch(`${server.url}${E}${id}/count`)).status, 200);
    } finally {
      await server.stop();
    }
  });

  it('a malformed answer is the program\'s ABI violation (502 for its client); the server and other endpoints go on', async () => {
    const server = await startTestServer({ endpoints: LIMITS, checkpointIntervalMs: 0 });
    try {
      const good = await launchKv(server);
      const bad = await launchKv(server);
      const r = await fetch(`${server.url}${E}${bad}/bad`);
      assert.equal(r.status, 502);
      assert.equal(await r.text(), 'the program did not answer\n');
      const w = await within(10_000, 'the violator stopping', request(server, 'POST', `${I}${bad}?action=wait`, { key }));
      assert.equal(w.headers['gate-status'], '{"state":"KILLED","cause":"ABI_VIOLATION","error":"endpoint response status 99 is not within 200-599"}', `${w.status} ${w.text}`);
      assert.equal((await fetch(`${server.url}${E}${bad}/count`)).status, 404);
      assert.equal((await fetch(`${server.url}${E}${good}/count`)).status, 200);
    } finally {
      await server.stop();
    }
  });

  it('a gate-server process with endpoint.enabled serves them; bad endpoint settings are configuration errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gate-endpoint-'));
    const proc = await spawnServer(dir, ['endpoint.enabled=true', 'endpoint.maxbodysize=16', 'endpoint.timeout=5']);
    try {
      const id = await launchKv(proc);
      assert.equal((await fetch(`${proc.url}${E}${id}/kv/x`, { method: 'PUT', body: 'small' })).status, 204);
      assert.equal((await fetch(`${proc.url}${E}${id}/kv/x`, { method: 'PUT', body: 'seventeen bytes!!' })).status, 413);
      assert.equal(await (await fetch(`${proc.url}${E}${id}/kv/x`)).text(), 'small');
    } finally {
      proc.proc.kill('SIGTERM');
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    }
    const server = new URL('../../../bin/gate-server', import.meta.url).pathname;
    const config = (...o: string[]): { status: number | null; stderr: string } => {
      const r = spawnSync(process.execPath, [server, '-F', '/dev/null', '-o', 'access.policy="public"', ...o.flatMap((x) => ['-o', x])], { encoding: 'utf8', timeout: 20_000 });
      return { status: r.status, stderr: r.stderr };
    };
    assert.deepEqual(config('endpoint.enabled=true', 'endpoint.maxrequests=0'), { status: 2, stderr: 'gate-server: endpoint.maxrequests must be a whole number of at least 1\n' });
    assert.deepEqual(config('endpoint.timeout=5'), { status: 2, stderr: 'gate-server: endpoint.timeout is set but endpoints are off (set endpoint.enabled = true)\n' });
  });

  it('is off by default: the service is not there and the path is not found', async () => {
    const server = await startTestServer({ checkpointIntervalMs: 0 });
    try {
      const r = await request(server, 'POST', `${K}${KV}?action=pin&action=launch`, { key, headers: { 'Content-Type': 'application/wasm' }, body: kvWasm });
      const id = String(r.headers['gate-instance']);
      // kv exits with status 1 when it cannot discover the service.
      assert.equal((await request(server, 'POST', `${I}${id}?action=wait`, { key })).headers['gate-status'], '{"state":"TERMINATED","result":1}');
      assert.equal((await fetch(`${server.url}${E}${id}/count`)).status, 404);
    } finally {
      await server.stop();
    }
  });
});
