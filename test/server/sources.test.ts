/**
 * HTTP module sources against real source servers on loopback (hardening
 * issue #12): a source URI stays below `<addr>/<name>/` however it is
 * encoded, and a body is read no further than its declared length.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { sourceUrl } from '../../src/server/sources.js';
import { SERVER_PRINCIPAL_LIMITS } from '../../src/server/index.js';
import { programBytes } from '../helpers/runtime.js';
import { request, startTestServer, type TestServer } from '../helpers/server.js';

const hello = programBytes('hello');

interface Source {
  addr: string;
  /** Paths the source was asked for, as they arrived. */
  seen: string[];
  server: Server;
}

async function startSource(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Omit<Source, 'addr'> & { port: number }> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.url ?? '');
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, seen, server };
}

const close = (s: Server): Promise<void> => new Promise((r) => { s.closeAllConnections(); s.close(() => r()); });

describe('module source paths', () => {
  let source: Source;
  let server: TestServer;

  before(async () => {
    // The source's prefix is /base/test/; /secret.wasm and /base/secret.wasm lie outside it.
    const s = await startSource((req, res) => {
      if (req.url === '/base/test/hello' || req.url === '/secret.wasm' || req.url === '/base/secret.wasm') {
        res.writeHead(200, { 'Content-Length': hello.length });
        res.end(hello);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    source = { ...s, addr: `http://127.0.0.1:${s.port}/base` };
    server = await startTestServer({ sources: [{ name: 'test', addr: source.addr }] });
  });
  after(async () => {
    await server.stop();
    await close(source.server);
  });

  it('fetches what is below the prefix', async () => {
    const r = await request(server, 'POST', '/gate-0/module/test/hello?action=call&function=greet');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'hello, world\n');
    assert.deepEqual(source.seen, ['/base/test/hello']);
  });

  for (const path of ['%252e%252e/secret.wasm', '%252e%252e/%252e%252e/secret.wasm', '.%252e/secret.wasm', '%252E%252E/secret.wasm', '..%5C..%5Csecret.wasm', '..%5Csecret.wasm', 'x%252F..%252F..%252Fsecret.wasm', '%253F/../secret.wasm', 'hello%2523/../../secret.wasm']) {
    it(`never leaves the prefix: ${path}`, async () => {
      source.seen.length = 0;
      const r = await request(server, 'POST', `/gate-0/module/test/${path}?action=call&function=greet`);
      // 404 from the source (the literal name does not exist there) or from the server (refused, or redirected first).
      assert.ok(r.status === 404 || r.status === 301, `${r.status} ${r.text}`);
      for (const seen of source.seen) assert.ok(seen.startsWith('/base/test/'), `the source was asked for ${seen}`);
    });
  }

  it('builds URLs that keep encoded characters literal', () => {
    const addr = 'http://127.0.0.1:1/base';
    assert.equal(sourceUrl(addr, 'test', '%2e%2e/x')?.href, 'http://127.0.0.1:1/base/test/%252e%252e/x');
    assert.equal(sourceUrl(addr, 'test', '..\\x')?.href, 'http://127.0.0.1:1/base/test/..%5Cx');
    assert.equal(sourceUrl(addr, 'test', 'a?b#c')?.href, 'http://127.0.0.1:1/base/test/a%3Fb%23c');
    assert.equal(sourceUrl(addr, 'test', 'http://evil.example/x')?.origin, 'http://127.0.0.1:1');
    assert.ok(sourceUrl(addr, 'test', 'http://evil.example/x')?.pathname.startsWith('/base/test/'));
    assert.equal(sourceUrl(addr, 'test', 'javascript:x')?.href, 'http://127.0.0.1:1/base/test/javascript%3Ax');
    assert.equal(sourceUrl(addr, 'test', '../x'), undefined);
    assert.equal(sourceUrl(addr, 'test', 'a/./x'), undefined);
  });
});

describe('module source bodies', () => {
  const limit = 1024 * 1024;
  const flood = 64 * 1024 * 1024;
  let written = 0;
  let source: Source;
  let server: TestServer;

  /** Sends `headers`, then up to 64 MiB of body as fast as the connection takes it; counts what it wrote. */
  function floodWith(status: number, headers: Record<string, string | number>) {
    return (_req: IncomingMessage, res: ServerResponse): void => {
      res.writeHead(status, headers);
      const chunk = Buffer.alloc(64 * 1024, 1);
      const more = (): void => {
        while (written < flood) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      res.on('close', () => res.removeAllListeners('drain'));
      more();
    };
  }

  let handler: (req: IncomingMessage, res: ServerResponse) => void = () => undefined;
  before(async () => {
    const s = await startSource((req, res) => handler(req, res));
    source = { ...s, addr: `http://127.0.0.1:${s.port}` };
    server = await startTestServer({ sources: [{ name: 'test', addr: source.addr }], limits: { ...SERVER_PRINCIPAL_LIMITS, maxModuleSize: limit } });
  });
  after(async () => {
    await server.stop();
    await close(source.server);
  });

  const cases: Array<{ name: string; status: number; headers: Record<string, string | number>; answer: number; text: RegExp }> = [
    { name: '206 claiming a small whole module', status: 206, headers: { 'Content-Range': 'bytes 0-99/100' }, answer: 502, text: /^source test sent a body that does not match its declared length 100\n/ },
    { name: '206 claiming the size limit', status: 206, headers: { 'Content-Range': `bytes 0-${limit - 1}/${limit}` }, answer: 502, text: /does not match its declared length/ },
    { name: '206 beyond the size limit', status: 206, headers: { 'Content-Range': `bytes 0-${flood - 1}/${flood}` }, answer: 400, text: /^program size limit exceeded\n/ },
    // HTTP framing ends the body at 100 bytes: a module of 100 bytes of junk.
    { name: '200 with a short Content-Length', status: 200, headers: { 'Content-Length': 100 }, answer: 400, text: /^not a WebAssembly module/ },
    { name: '200 without Content-Length', status: 200, headers: {}, answer: 502, text: /^source test sent no Content-Length\n/ },
  ];
  for (const c of cases) {
    it(`stops reading a flood: ${c.name}`, async () => {
      written = 0;
      handler = floodWith(c.status, c.headers);
      const r = await request(server, 'POST', '/gate-0/module/test/big?action=call');
      assert.equal(r.status, c.answer, r.text);
      assert.match(r.text, c.text);
      // What the source got to write is bounded by socket buffers, not by what it wanted to send.
      assert.ok(written < 16 * 1024 * 1024, `the source wrote ${written} bytes`);
      // The server is fine afterwards.
      assert.equal((await request(server, 'GET', '/gate-0/')).status, 200);
    });
  }
});
