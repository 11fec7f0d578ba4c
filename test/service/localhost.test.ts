/**
 * gate.computer/localhost (spec services.md §8) against real HTTP servers on
 * loopback: a gate-server process running examples/localhost.wasm, then the
 * service's rules through a real ServiceSession (index order, 400/502, the
 * bound of 10 in flight, a misbehaving server, suspension).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { callPacket, Domain, packetContent, packetDomain, readHeader } from '../../src/abi/packet.js';
import { AbiViolation } from '../../src/abi/trap.js';
import { builtinServices } from '../../src/service/builtin.js';
import { decodeCall, decodeResponse, encodeCall, encodeResponse, FlatBufferError, type LocalhostRequest } from '../../src/service/localhost/flat.js';
import { mulberry32 } from '../helpers/prng.js';
import { decodeState, LOCALHOST_SERVICE_NAME, LocalhostClient, localhostService, parseLocalhostAddr, splitUri } from '../../src/service/localhost/localhost.js';
import { ServiceRegistry } from '../../src/service/registry.js';
import { newKey, request, spawnServer, type ServerProcess } from '../helpers/server.js';
import { startSession, until, type Harness } from './harness.js';

const EXAMPLE = fileURLToPath(new URL('../../../examples/localhost.wasm', import.meta.url));

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

async function startWeb(handler: (req: IncomingMessage, res: ServerResponse) => void, listen: number | string = 0): Promise<{ server: Server; seen: Seen[]; addr: string }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() });
      handler(req, res);
    });
  });
  if (typeof listen === 'string') await new Promise<void>((r) => server.listen(listen, r));
  else await new Promise<void>((r) => server.listen(listen, '127.0.0.1', r));
  const addr = typeof listen === 'string' ? `unix:${listen}` : `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return { server, seen, addr };
}

const stopWeb = (s: Server): Promise<void> => new Promise((r) => { s.closeAllConnections(); s.close(() => r()); });

/** The test of the original (localhost/instance_test.go): 201 text/plain "hellocalhost\n". */
const hello = (_req: IncomingMessage, res: ServerResponse): void => {
  res.writeHead(201, { 'Content-Type': 'text/plain', 'X-Not-Passed': 'secret' });
  res.end('hellocalhost\n');
};

describe('localhost service in gate-server', () => {
  let web: Awaited<ReturnType<typeof startWeb>>;
  let server: ServerProcess;
  let state: string;

  before(async () => {
    web = await startWeb(hello);
    state = mkdtempSync(join(tmpdir(), 'gate-localhost-test-'));
    server = await spawnServer(state, [`service.localhost.addr=${JSON.stringify(web.addr)}`, 'runtime.sandbox="none"']);
  });
  after(async () => {
    server.proc.kill('SIGTERM');
    await server.exited;
    await stopWeb(web.server);
    rmSync(state, { recursive: true, force: true });
  });

  it('examples/localhost.wasm: GET //bogus/test reaches the server as /test with Host bogus; the reply comes back', async () => {
    const r = await request(server, 'POST', `/gate-0/module/sha256/${sha256(EXAMPLE)}?action=call`, {
      headers: { 'Content-Type': 'application/wasm' },
      body: readFileSync(EXAMPLE),
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '201 text/plain\nhellocalhost\n');
    assert.equal(web.seen.length, 1);
    assert.equal(web.seen[0]!.method, 'GET');
    assert.equal(web.seen[0]!.url, '/test');
    assert.equal(web.seen[0]!.headers.host, 'bogus');
    // Only Content-Type passes from the program: it sent none.
    assert.equal(web.seen[0]!.headers['content-type'], undefined);
    assert.match(server.log(), /"extension":"localhost","services":\["gate.computer\/localhost"\]/);
  });

  it('an instance suspended while its request is in flight sends it again when resumed, and gets its reply', async () => {
    let hold = true;
    const held: ServerResponse[] = [];
    const handler = (req: IncomingMessage, res: ServerResponse): void => (hold ? void held.push(res) : hello(req, res));
    web.server.removeAllListeners('request');
    web.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      web.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '' });
      req.resume();
      handler(req, res);
    });
    web.seen.length = 0;
    const key = newKey();
    const program = readFileSync(EXAMPLE);
    const launch = await request(server, 'POST', `/gate-0/module/sha256/${sha256(EXAMPLE)}?action=launch`, { key, headers: { 'Content-Type': 'application/wasm' }, body: program });
    assert.equal(launch.status, 200, launch.text);
    const id = String(launch.headers['gate-instance']);
    const I = `/gate-0/instance/${id}`;
    await until(() => held.length === 1, 10000, 'the request at the web service');
    const closed = new Promise<void>((r) => held[0]!.on('close', () => r()));
    assert.equal((await request(server, 'POST', `${I}?action=suspend&action=wait`, { key })).headers['gate-status'], '{"state":"SUSPENDED"}');
    await closed; // the request was abandoned, not answered
    hold = false;
    assert.equal((await request(server, 'POST', `${I}?action=resume`, { key })).status, 200);
    const io = await request(server, 'POST', `${I}?action=io`, { key });
    assert.equal(io.status, 200, io.text);
    assert.equal(io.text, '201 text/plain\nhellocalhost\n');
    assert.deepEqual(web.seen.map((r) => [r.url, r.headers.host]), [['/test', 'bogus'], ['/test', 'bogus']]);
  });
});

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

const CODE = 1; // origin is 0 in these sessions

function call(req: Partial<LocalhostRequest>): Uint8Array {
  return callPacket(CODE, encodeCall({ method: 'GET', uri: '/', contentType: '', body: new Uint8Array(0), ...req }));
}

function session(addr: string, timeoutMs?: number): { h: Harness; client: LocalhostClient; registry: ServiceRegistry } {
  const client = new LocalhostClient(parseLocalhostAddr(addr), { timeoutMs });
  const registry = new ServiceRegistry();
  registry.register(localhostService(client));
  const h = startSession(builtinServices({ parent: registry }).registry);
  h.bind('origin', LOCALHOST_SERVICE_NAME);
  return { h, client, registry };
}

const replies = (h: Harness) => h.sent.filter((p) => packetDomain(p) === Domain.Call && packetContent(p).length > 0).map((p) => ({ index: readHeader(p).index, ...decodeResponse(packetContent(p)) }));
const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b ?? new Uint8Array(0));

describe('localhost service', () => {
  it('encodes and decodes the FlatBuffers tables (round trip)', () => {
    const req = { method: 'POST', uri: '//h/p?q=1', contentType: 'application/json', body: new TextEncoder().encode('{"a":1}') };
    const back = decodeCall(encodeCall(req))!;
    assert.deepEqual({ ...back, body: text(back.body) }, { ...req, body: '{"a":1}' });
    assert.deepEqual(decodeResponse(encodeResponse({ statusCode: 404 })), { statusCode: 404 });
    const res = decodeResponse(encodeResponse({ statusCode: 200, contentType: 'text/plain', body: new Uint8Array([1, 2, 3]) }));
    assert.deepEqual(res, { statusCode: 200, contentType: 'text/plain', body: new Uint8Array([1, 2, 3]) });
  });

  it('decodes any bytes a program sends either to a Call or to FlatBufferError, nothing else', () => {
    const random = mulberry32(13);
    const valid = encodeCall({ method: 'POST', uri: '//h/p', contentType: 'text/plain', body: new Uint8Array([1, 2, 3]) });
    let decoded = 0;
    for (let i = 0; i < 20000; i++) {
      let buf: Uint8Array;
      if (i % 2 === 0) {
        buf = valid.slice(0, Math.floor(random() * (valid.length + 1)));
        for (let n = Math.floor(random() * 4); n >= 0; n--) if (buf.length > 0) buf[Math.floor(random() * buf.length)] = Math.floor(random() * 256);
      } else {
        buf = Uint8Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256));
      }
      try {
        decodeCall(buf);
        decoded++;
      } catch (e) {
        assert.ok(e instanceof FlatBufferError, `${(e as Error).name}: ${(e as Error).message} for ${Buffer.from(buf).toString('hex')}`);
      }
    }
    assert.ok(decoded > 0);
  });

  it('maps uris as the original: host part to Host, path and query to the server, absolute or with a port → 400', () => {
    assert.deepEqual(splitUri('//bogus/test'), { host: 'bogus', path: '/test' });
    assert.deepEqual(splitUri('/a/b?x=1#frag'), { host: undefined, path: '/a/b?x=1' });
    assert.deepEqual(splitUri('//h?q'), { host: 'h', path: '/?q' });
    for (const bad of ['http://h/x', 'mailto:x', '//h:80/x', '//user@h/x', '//[::1]/x', '//h%41/x', '/a b', '/\u00e4']) assert.equal(splitUri(bad), undefined, bad);
  });

  it('refuses bad addresses with the key named', () => {
    for (const bad of ['ftp://x', 'http://h/path', 'unix:relative', 'localhost:80', 'http://']) {
      assert.throws(() => parseLocalhostAddr(bad), /^GATE_CONFIG|service\.localhost\.addr: /, bad);
    }
    assert.deepEqual(parseLocalhostAddr('unix:/run/x.sock'), { scheme: 'http', socketPath: '/run/x.sock', defaultHost: 'localhost' });
    assert.equal(parseLocalhostAddr('https://[::1]:8443/').hostname, '::1');
  });

  it('passes only Content-Type either way, with the body and method', async () => {
    const web = await startWeb((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Set-Cookie': 'x=y', 'X-Other': '1' });
      res.end('{"ok":true}');
    });
    const { h, client } = session(web.addr);
    try {
      h.session.handle(call({ method: 'PUT', uri: '//api.example/items/7?v=2', contentType: 'application/json', body: new TextEncoder().encode('{"n":7}') }));
      await until(() => h.sent.length === 1, 5000, 'reply');
      const seen = web.seen[0]!;
      assert.equal(seen.method, 'PUT');
      assert.equal(seen.url, '/items/7?v=2');
      assert.equal(seen.body, '{"n":7}');
      const names = Object.keys(seen.headers).filter((n) => n !== 'connection').sort();
      assert.deepEqual(names, ['content-length', 'content-type', 'host']);
      assert.equal(seen.headers.host, 'api.example');
      const [r] = replies(h);
      assert.deepEqual({ ...r, body: text(r!.body) }, { index: 0, statusCode: 200, contentType: 'application/json', body: '{"ok":true}' });
      assert.deepEqual(h.errors, []);
    } finally {
      await h.session.shutdown(false);
      client.close();
      await stopWeb(web.server);
    }
  });

  it('over a Unix socket: Host defaults to localhost', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gate-localhost-sock-'));
    const web = await startWeb(hello, join(dir, 'web.sock'));
    const { h, client } = session(web.addr);
    try {
      h.session.handle(call({ uri: '/test' }));
      await until(() => h.sent.length === 1, 5000, 'reply');
      assert.equal(web.seen[0]!.headers.host, 'localhost');
      const [r] = replies(h);
      assert.equal(r!.statusCode, 201);
      assert.equal(text(r!.body), 'hellocalhost\n');
    } finally {
      await h.session.shutdown(false);
      client.close();
      await stopWeb(web.server);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('replies by index as requests complete out of order; 400 for a bad uri, an empty reply for a Call without a Request', async () => {
    const hold = new Map<string, ServerResponse>();
    const web = await startWeb((req, res) => {
      if (req.url === '/slow') hold.set('slow', res);
      else hello(req, res);
    });
    const { h, client } = session(web.addr);
    try {
      h.session.handle(call({ uri: '/slow' })); // index 0 while pending
      h.session.handle(call({ uri: '/fast' })); // index 1 while pending
      await until(() => h.sent.length === 1 && hold.has('slow'), 5000, 'the fast reply');
      assert.deepEqual(replies(h).map((r) => [r.index, r.statusCode]), [[1, 201]]);
      hold.get('slow')!.writeHead(200).end('late');
      await until(() => h.sent.length === 2, 5000, 'the slow reply');
      // The slow one is alone in the queue by then: index 0.
      assert.deepEqual(replies(h).map((r) => [r.index, r.statusCode, text(r.body)]), [[1, 201, 'hellocalhost\n'], [0, 200, 'late']]);

      h.session.handle(call({ uri: 'http://elsewhere/x' }));
      h.session.handle(call({ uri: '//bogus:8080/x' }));
      const noRequest = callPacket(CODE, new Uint8Array([8, 0, 0, 0, 4, 0, 4, 0, 4, 0, 0, 0]) /* a Call with no fields */);
      h.session.handle(noRequest);
      await until(() => h.sent.length === 5, 5000, 'three more replies');
      assert.deepEqual(replies(h).slice(2, 4).map((r) => r.statusCode), [400, 400]);
      assert.equal(packetContent(h.sent[4]!).length, 0);
      assert.equal(web.seen.length, 2);
    } finally {
      await h.session.shutdown(false);
      client.close();
      await stopWeb(web.server);
    }
  });

  it('502 when the server dies mid-reply or floods; the program goes on, nothing else is affected', async () => {
    let written = 0;
    let bodySize = 0;
    // 64 KiB packet − header − the Response's overhead (64) − the content type and its NUL.
    const fits = 65536 - 8 - 64 - ('text/plain'.length + 1);
    const web = await startWeb((req, res) => {
      if (req.url === '/sized') {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end(Buffer.alloc(bodySize, 97));
      } else if (req.url === '/die') {
        res.writeHead(200, { 'Content-Length': '100' });
        res.write('partial');
        setTimeout(() => res.socket?.destroy(), 10);
      } else if (req.url === '/huge') {
        res.writeHead(200, { 'Content-Length': String(1 << 30) });
        res.end();
      } else if (req.url === '/flood') {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        const chunk = Buffer.alloc(16384, 120);
        const more = (): void => {
          while (written < 64 << 20) {
            written += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', more);
          }
          res.end();
        };
        res.on('close', () => res.removeAllListeners('drain'));
        more();
      } else hello(req, res);
    });
    const { h, client } = session(web.addr);
    try {
      for (const uri of ['/die', '/huge', '/flood']) {
        const before = h.sent.length;
        h.session.handle(call({ uri }));
        await until(() => h.sent.length === before + 1, 10000, uri);
        assert.equal(replies(h).at(-1)!.statusCode, 502, uri);
      }
      // The flood was cut off at about what fits in a reply, not read to its end.
      assert.ok(written < 16 << 20, `the server wrote ${written} bytes`);
      h.session.handle(call({ uri: '/ok' }));
      await until(() => h.sent.length === 4, 5000, 'reply after the failures');
      assert.equal(replies(h).at(-1)!.statusCode, 201);
      // The largest body that fits in a reply gets through, one byte more does not.
      for (const [size, status] of [[fits, 200], [fits + 1, 502]] as const) {
        bodySize = size;
        const before = h.sent.length;
        h.session.handle(call({ uri: '/sized' }));
        await until(() => h.sent.length === before + 1, 5000, `reply of ${size}`);
        const r = replies(h).at(-1)!;
        assert.equal(r.statusCode, status, `${size} bytes`);
        if (status === 200) assert.equal(r.body!.length, size);
        assert.ok(h.sent.at(-1)!.length <= 65536);
      }
      assert.deepEqual(h.errors, []);
    } finally {
      await h.session.shutdown(false);
      client.close();
      await stopWeb(web.server);
    }
  });

  it('502 when the server does not answer in time, or drips its answer; a suspension then waits no longer', async () => {
    const web = await startWeb((req, res) => {
      if (req.url === '/drip') {
        res.writeHead(200, { 'Content-Length': '1000' });
        const t = setInterval(() => res.write('x'), 50);
        res.on('close', () => clearInterval(t));
      } // '/never': no answer at all
    });
    const { h, client } = session(web.addr, 500);
    try {
      for (let i = 0; i < 10; i++) h.session.handle(call({ uri: i % 2 ? '/drip' : '/never' }));
      // Full: the 11th waits for room, which the timeouts make.
      const eleventh = h.session.handle(call({ uri: '/never' }));
      assert.ok(eleventh instanceof Promise);
      await until(() => h.sent.length === 10, 5000, 'ten 502 replies');
      assert.deepEqual(new Set(replies(h).map((r) => r.statusCode)), new Set([502]));
      await eleventh;
      const started = Date.now();
      await h.session.shutdown(true);
      assert.ok(Date.now() - started < 5000);
    } finally {
      client.close();
      await stopWeb(web.server);
    }
  });

  it('502 when the server cannot be reached', async () => {
    const web = await startWeb(hello);
    const addr = web.addr;
    await stopWeb(web.server);
    const { h, client } = session(addr);
    try {
      h.session.handle(call({ uri: '/x' }));
      await until(() => h.sent.length === 1, 5000, 'reply');
      assert.equal(replies(h)[0]!.statusCode, 502);
    } finally {
      await h.session.shutdown(false);
      client.close();
    }
  });

  it('at most 10 requests in flight: the 11th is held (the program blocks) until one completes', async () => {
    const held: ServerResponse[] = [];
    const web = await startWeb((_req, res) => held.push(res));
    const { h, client } = session(web.addr);
    try {
      const results = Array.from({ length: 11 }, (_, i) => h.session.handle(call({ uri: `/r${i}` })));
      await until(() => held.length === 10, 5000, '10 requests at the server');
      assert.ok(results.slice(0, 10).every((r) => r === undefined), 'the first 10 are taken at once');
      let eleventh = false;
      void Promise.resolve(results[10]).then(() => (eleventh = true));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(held.length, 10, 'the 11th was not sent');
      assert.equal(eleventh, false, 'the 11th packet is held');
      held[3]!.writeHead(204).end();
      await until(() => held.length === 11 && eleventh, 5000, 'the 11th request');
      assert.deepEqual(replies(h).map((r) => [r.index, r.statusCode]), [[3, 204]]);
      for (const res of held.slice(4)) res.writeHead(200).end();
      for (const res of held.slice(0, 3)) res.writeHead(200).end();
      await until(() => h.sent.length === 11, 5000, 'all replies');
    } finally {
      await h.session.shutdown(false);
      client.close();
      await stopWeb(web.server);
    }
  });

  it('suspends with its requests in flight and re-issues them when restored', async () => {
    const held: ServerResponse[] = [];
    const web = await startWeb((req, res) => (req.url === '/hold' ? held.push(res) : hello(req, res)));
    const { h, client, registry } = session(web.addr);
    try {
      h.session.handle(call({ uri: '/hold' }));
      h.session.handle(call({ uri: '/hold' }));
      await until(() => held.length === 2, 5000, 'requests at the server');
      const saved = await h.session.shutdown(true);
      const state = saved[1]!.buffer;
      const decoded = decodeState(state);
      assert.equal(decoded.requests.length, 2);
      assert.equal(decoded.replies.length, 0);
      assert.equal(decodeCall(packetContent(decoded.requests[0]!))!.uri, '/hold');

      // Restored (the same server here; another after a migration).
      const h2 = startSession(builtinServices({ parent: registry }).registry);
      h2.session.restore([{ name: 'origin', buffer: new Uint8Array(0) }, { name: LOCALHOST_SERVICE_NAME, buffer: state }]);
      await until(() => held.length === 4, 5000, 're-issued requests');
      for (const res of held.slice(2)) res.writeHead(202).end('again');
      await until(() => h2.sent.length === 2, 5000, 'replies after the restore');
      assert.deepEqual(replies(h2).map((r) => r.statusCode), [202, 202]);
      await h2.session.shutdown(false);

      // Garbage is refused, not half-restored.
      const h3 = startSession(builtinServices({ parent: registry }).registry);
      assert.throws(() => h3.session.restore([{ name: 'origin', buffer: new Uint8Array(0) }, { name: LOCALHOST_SERVICE_NAME, buffer: new Uint8Array([1, 200, 0, 0, 0]) }]), /localhost/);
    } finally {
      for (const res of held) if (!res.writableEnded) res.destroy();
      client.close();
      await stopWeb(web.server);
    }
  });

  it('a malformed Call kills the program with ABI_VIOLATION', async () => {
    const { h, client } = session('http://127.0.0.1:9');
    try {
      h.session.handle(callPacket(CODE, new Uint8Array([200, 0, 0, 0])));
      await until(() => h.errors.length === 1, 2000, 'error');
      assert.ok(h.errors[0] instanceof AbiViolation);
      assert.match(h.errors[0]!.message, /gate.computer\/localhost: the call is not a FlatBuffers Call/);
    } finally {
      await h.session.shutdown(false);
      client.close();
    }
  });
});
