/**
 * The ipfs module source (`source.ipfs.addr`, spec web-api.md §8) against a
 * small HTTP server speaking the part of an IPFS node's API Gate uses
 * (`POST /api/v0/cat?arg=/ipfs/<hash>&length=<n>`, X-Content-Length). No IPFS
 * daemon is needed: the behaviour on the wire is what is tested.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { programBytes } from '../helpers/runtime.js';
import { newKey, request, spawnServer, type ServerProcess } from '../helpers/server.js';

const hello = programBytes('hello');
const HASH = 'QmHelloWasm0123456789abcdefABCDEF';
const MAX_MODULE_SIZE = 1024 * 1024;
const GATE_SERVER = new URL('../../../bin/gate-server', import.meta.url).pathname;

describe('ipfs module source', () => {
  let api: Server;
  let server: ServerProcess;
  let state: string;
  const seen: Array<{ method: string; url: string }> = [];
  let handler: (req: IncomingMessage, res: ServerResponse) => void;

  /** What an IPFS node answers: the object with X-Content-Length, chunked (as go-ipfs does). */
  const ipfsNode = (req: IncomingMessage, res: ServerResponse): void => {
    const u = new URL(req.url ?? '', 'http://x');
    if (req.method !== 'POST' || u.pathname !== '/api/v0/cat') {
      res.writeHead(405);
      res.end();
      return;
    }
    if (u.searchParams.get('arg') !== `/ipfs/${HASH}`) {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end('{"Message":"no link named","Code":0,"Type":"error"}');
      return;
    }
    res.writeHead(200, { 'X-Content-Length': String(hello.length), 'Content-Type': 'text/plain' });
    res.write(hello.subarray(0, 100));
    res.end(hello.subarray(100));
  };

  before(async () => {
    handler = ipfsNode;
    api = createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '' });
      handler(req, res);
    });
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    const port = (api.address() as { port: number }).port;
    state = mkdtempSync(join(tmpdir(), 'gate-ipfs-test-'));
    server = await spawnServer(state, [`source.ipfs.addr="http://127.0.0.1:${port}"`, 'runtime.sandbox="none"', `principal.maxmodulesize=${MAX_MODULE_SIZE}`]);
  });
  after(async () => {
    server.proc.kill('SIGTERM');
    await server.exited;
    api.closeAllConnections();
    await new Promise<void>((r) => api.close(() => r()));
    rmSync(state, { recursive: true, force: true });
  });

  it('lists ipfs among the sources and calls a module fetched from it', async () => {
    const list = await request(server, 'GET', '/gate-0/module/');
    assert.deepEqual((JSON.parse(list.text) as string[]).sort(), ['ipfs', 'sha256']);
    seen.length = 0;
    const r = await request(server, 'POST', `/gate-0/module/ipfs/${HASH}?action=call&function=greet`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, 'hello, world\n');
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.method, 'POST');
    const u = new URL(seen[0]!.url, 'http://x');
    assert.equal(u.pathname, '/api/v0/cat');
    assert.equal(u.searchParams.get('arg'), `/ipfs/${HASH}`);
    assert.equal(u.searchParams.get('length'), String(MAX_MODULE_SIZE + 1));
  });

  it('pins a module by its IPFS name; it is then known by its SHA-256', async () => {
    const key = newKey();
    const r = await request(server, 'POST', `/gate-0/module/ipfs/${HASH}?action=pin`, { key });
    assert.equal(r.status, 201, r.text);
    const sha = createHash('sha256').update(hello).digest('hex');
    assert.equal(r.headers.location, `/gate-0/module/sha256/${sha}`);
    const known = await request(server, 'POST', `/gate-0/module/sha256/${sha}?action=call&function=greet`, { key });
    assert.equal(known.status, 200, known.text);
    assert.equal(known.text, 'hello, world\n');
  });

  it('404 for an unknown or malformed name (a malformed one never reaches the node)', async () => {
    seen.length = 0;
    assert.equal((await request(server, 'POST', '/gate-0/module/ipfs/QmUnknown?action=call')).status, 404);
    assert.equal(seen.length, 1);
    for (const bad of ['Qm..%2Fetc', 'Qm-x', 'a%20b', 'Qm/x']) {
      seen.length = 0;
      const r = await request(server, 'POST', `/gate-0/module/ipfs/${bad}?action=call`);
      assert.equal(r.status, 404, bad);
      assert.equal(seen.length, 0, `${bad} reached the node`);
    }
  });

  it('refuses a missing X-Content-Length (502), a module too large (400), and another status (502)', async () => {
    try {
      handler = (_req, res) => {
        res.writeHead(200);
        res.end(hello);
      };
      let r = await request(server, 'POST', `/gate-0/module/ipfs/${HASH}?action=call`);
      assert.equal(r.status, 502);
      assert.match(r.text, /X-Content-Length/);

      handler = (_req, res) => {
        res.writeHead(200, { 'X-Content-Length': String(MAX_MODULE_SIZE + 1) });
        res.end(); // the node would send more; Gate does not read it
      };
      r = await request(server, 'POST', `/gate-0/module/ipfs/${HASH}?action=call`);
      assert.equal(r.status, 400);
      assert.match(r.text, /program size limit exceeded/);

      handler = (_req, res) => {
        res.writeHead(500);
        res.end();
      };
      r = await request(server, 'POST', `/gate-0/module/ipfs/${HASH}?action=call`);
      assert.equal(r.status, 502);

      handler = (_req, res) => {
        res.writeHead(200, { 'X-Content-Length': '100000' });
        res.end(hello); // shorter than declared
      };
      r = await request(server, 'POST', `/gate-0/module/ipfs/${HASH}?action=call`);
      assert.equal(r.status, 502);
      assert.match(r.text, /declared length/);
    } finally {
      handler = ipfsNode;
    }
    assert.equal((await request(server, 'GET', '/gate-0/')).status, 200);
  });

  it('refuses a bad source.ipfs.addr, or an http source named ipfs beside it, naming the key (exit 2)', async () => {
    const run = (opts: string[]): Promise<{ code: number | null; stderr: string }> =>
      new Promise((resolve) => {
        const args = ['-F', '/dev/null', '-o', 'access.policy="public"', '-o', 'http.addr="127.0.0.1:0"', '-o', `state.dir=${JSON.stringify(join(state, 'refused'))}`];
        for (const o of opts) args.push('-o', o);
        const child = spawn(process.execPath, [GATE_SERVER, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        child.on('close', (code) => resolve({ code, stderr }));
      });
    let r = await run(['source.ipfs.addr="ipfs.example:5001"']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "gate-server: source.ipfs.addr must be the http:// or https:// URL of an IPFS node's API (http://HOST:PORT, no path)\n");
    r = await run(['source.ipfs.addr="http://127.0.0.1:5001"', 'source.http=[{name="ipfs", addr="http://x"}]']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'gate-server: source.http[0].name "ipfs" is taken by source.ipfs.addr\n');
  });
});
