/**
 * Clients that hang up in the middle of an HTTP exchange (server/stream.ts):
 * a call's instance is killed, an `io` client's stream is closed as if its
 * connection broke, and the server goes on serving. Real server, real
 * executor processes, hello's `multi` (greets every client, forever) and
 * `repl` (greets each chunk of input, ends at end of stream).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { programBytes } from '../helpers/runtime.js';
import { newKey, request, startTestServer, type TestServer } from '../helpers/server.js';

const hello = programBytes('hello');
const H = createHash('sha256').update(hello).digest('hex');
const key = newKey();

async function eventually(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`not ${what} within 10 s`);
}

/** Starts a streaming POST, sends one chunk, and resolves once the program's greeting arrived. */
function greetedOnce(server: TestServer, path: string): Promise<{ req: ClientRequest; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${server.url}${path}`, { method: 'POST', headers: { Authorization: `Bearer ${server.token(key)}` } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => {
        text += d.toString();
        if (text === 'hello, world\n') resolve({ req, headers: res.headers });
      });
      res.on('error', () => undefined);
    });
    req.on('error', (e) => {
      if (!req.destroyed) reject(e);
    });
    req.write('x');
  });
}

describe('clients that hang up mid-exchange', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
    assert.equal((await request(server, 'PUT', `/gate-0/module/sha256/${H}?action=pin`, { key, headers: { 'Content-Type': 'application/wasm' }, body: hello })).status, 201);
  });
  after(() => server.stop());

  it('a call: its instance is killed, and the next call is served', async () => {
    // multi greets and accepts again, forever: only the kill ends it.
    const { req } = await greetedOnce(server, `/gate-0/module/sha256/${H}?action=call&function=multi`);
    assert.equal(server.instances.runningCount, 1);
    req.destroy();
    await eventually('killed', () => server.instances.runningCount === 0);
    const next = await request(server, 'POST', `/gate-0/module/sha256/${H}?action=call&function=greet`, { key });
    assert.equal(next.status, 200);
    assert.equal(next.body.toString(), 'hello, world\n');
  });

  it('io: the stream closes as if the connection broke, and the program ends at its end of stream', async () => {
    const launched = await request(server, 'POST', `/gate-0/module/sha256/${H}?action=launch&function=repl`, { key });
    assert.equal(launched.status, 200);
    const id = String(launched.headers['gate-instance']);
    const { req } = await greetedOnce(server, `/gate-0/instance/${id}?action=io`);
    req.destroy();
    const waited = await request(server, 'POST', `/gate-0/instance/${id}?action=wait`, { key });
    assert.equal(waited.status, 200);
    assert.equal(waited.headers['gate-status'], '{"state":"HALTED"}');
  });
});
