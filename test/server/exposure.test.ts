/**
 * What a gate-server process exposes by default (hardening issue #12): no
 * browser origin may use the API, the access policy is an explicit choice
 * (this repository's etc/gate-server.toml makes it for `./bin/gate-server`),
 * and metrics are served only on a listener of their own.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import WebSocket from 'ws';
import { programBytes } from '../helpers/runtime.js';
import { request, spawnServerWithArgs, type ServerProcess } from '../helpers/server.js';

const hello = programBytes('hello');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'gate-test-exposure-'));
  dirs.push(d);
  return d;
}

async function stop(server: ServerProcess): Promise<void> {
  server.proc.kill('SIGTERM');
  await server.exited;
}

const base = (dir: string): string[] => ['-o', 'http.addr="127.0.0.1:0"', '-o', `state.dir=${JSON.stringify(dir)}`, '-o', 'runtime.sandbox="none"'];

describe('gate-server defaults', () => {
  it('refuses to start without an access policy', async () => {
    const dir = stateDir();
    let exitCode: number | null | undefined;
    await assert.rejects(
      spawnServerWithArgs(['-F', '/dev/null', ...base(dir)]).catch((e: Error) => {
        exitCode = Number(/exited \((\d+)\)/.exec(e.message)?.[1]);
        throw e;
      }),
      /access\.policy must be set \(valid values: public, ssh\)/,
    );
    assert.equal(exitCode, 2);
  });

  it('with the shipped configuration: public on loopback, no origins, no metrics, and says so', async () => {
    // No -F: the repository's etc/gate-server.toml is read, as by `./bin/gate-server`.
    const server = await spawnServerWithArgs(base(stateDir()));
    try {
      assert.match(server.log(), /"addr":"127\.0\.0\.1:0".*access\.policy = \\"public\\": anyone who can connect to 127\.0\.0\.1:0 may run programs/);
      // The README's first steps: an anonymous call of an uploaded module.
      const call = await request(server, 'POST', '/gate-0/module/sha256/' + sha256(hello) + '?action=call&function=greet', { headers: { 'Content-Type': 'application/wasm' }, body: hello });
      assert.equal(call.status, 200);
      assert.equal(call.text, 'hello, world\n');
      // A web page's request, even from a sandboxed frame (Origin: null), is refused.
      for (const origin of ['null', 'https://example.net', 'http://127.0.0.1:6473']) {
        const r = await request(server, 'POST', '/gate-0/module/sha256/' + sha256(hello) + '?action=call&function=greet', { headers: { 'Content-Type': 'application/wasm', Origin: origin }, body: hello });
        assert.equal(r.status, 403, origin);
        assert.equal(r.headers['access-control-allow-origin'], undefined);
      }
      assert.equal((await request(server, 'GET', '/gate-0/', { headers: { Origin: 'null' } })).status, 403);
      // Browsers always send Origin with a websocket: none gets one.
      assert.equal(await upgradeStatus(`${server.url.replace(/^http/, 'ws')}/gate-0/module/sha256/${sha256(hello)}?action=call&function=greet`, 'null'), 403);
      assert.equal(await upgradeStatus(`${server.url.replace(/^http/, 'ws')}/gate-0/module/sha256/${sha256(hello)}?action=call&function=greet`, undefined), 101);
      assert.equal((await request(server, 'GET', '/gate-0/')).status, 200);
      assert.equal((await request(server, 'GET', '/metrics')).status, 404);
    } finally {
      await stop(server);
    }
  });

  it('allows the origins and serves the metrics it is told to', async () => {
    const server = await spawnServerWithArgs([...base(stateDir()), '-o', 'http.origins=["null"]', '-o', 'metrics.addr="127.0.0.1:0"']);
    try {
      const ok = await request(server, 'GET', '/gate-0/', { headers: { Origin: 'null' } });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers['access-control-allow-origin'], 'null');
      assert.equal((await request(server, 'GET', '/gate-0/', { headers: { Origin: 'https://example.net' } })).status, 403);
      assert.equal((await request(server, 'GET', '/metrics')).status, 404);
      const m = /"url":"(http:\/\/[^"]+)\/metrics","msg":"serving metrics"/.exec(server.log());
      assert.ok(m, server.log());
      const metrics = await request({ url: m[1]!, token: server.token }, 'GET', '/metrics');
      assert.equal(metrics.status, 200);
      assert.match(metrics.text, /gate_http_requests_total\{method="GET",status="200"\} \d+/);
    } finally {
      await stop(server);
    }
  });

  it('refuses a metrics address that is not host:port', async () => {
    await assert.rejects(spawnServerWithArgs([...base(stateDir()), '-o', 'metrics.addr="localhost"']), /metrics\.addr must be host:port, not "localhost"/);
  });
});

/** The HTTP status a websocket upgrade gets (101 when it opens). */
function upgradeStatus(url: string, origin: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, origin === undefined ? {} : { origin });
    ws.on('open', () => {
      ws.terminate();
      resolve(101);
    });
    ws.on('unexpected-response', (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    ws.on('error', reject);
  });
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
